//! The statements, per database: the gem's schema as Rails' schema loader would create it, the
//! poll, the insert and the trim. Text only, no I/O.

use crate::wire::TABLE;
use std::fmt::Write as _;

/// Which SQL the database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

/// `db/cable_schema.rb` (`create_table "solid_cable_messages"`: `channel` binary limit 1024,
/// `payload` binary limit 536870912, `created_at` datetime, `channel_hash` integer limit 8, an
/// index on each of the three) as Rails 7.1+ types it for each database:
///
/// - PostgreSQL: `bigserial` key, `bytea` (Rails ignores a binary limit there), `timestamp(6)`
///   (datetime precision 6, `datetime_type` `:timestamp`), `bigint`;
/// - MySQL/MariaDB: `bigint auto_increment` key, `varbinary(1024)` (a binary limit up to
///   0xfff), `longblob` (a limit from 16 MiB up), `datetime(6)`, `bigint`, InnoDB;
/// - SQLite: `integer PRIMARY KEY AUTOINCREMENT`, `blob(1024)`, `blob(536870912)`,
///   `datetime(6)`, `integer(8)`.
///
/// `IF NOT EXISTS` throughout, so a table made by the Rails migration is left as it is.
pub(crate) fn create_table(dialect: Dialect) -> Vec<String> {
    let index = |column: &str, quote: &str| {
        format!(
            "CREATE INDEX IF NOT EXISTS {quote}index_{TABLE}_on_{column}{quote} \
             ON {quote}{TABLE}{quote} ({quote}{column}{quote})"
        )
    };
    match dialect {
        Dialect::Postgres => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, \
                 channel bytea NOT NULL, payload bytea NOT NULL, \
                 created_at timestamp(6) NOT NULL, channel_hash bigint NOT NULL)"
            ),
            index("channel", ""),
            index("channel_hash", ""),
            index("created_at", ""),
        ],
        // MySQL has no `CREATE INDEX IF NOT EXISTS` (MariaDB has): the indexes go inside the
        // table's statement, as Rails' MySQL adapter writes them.
        Dialect::Mysql => vec![format!(
            "CREATE TABLE IF NOT EXISTS `{TABLE}` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             `channel` varbinary(1024) NOT NULL, `payload` longblob NOT NULL, \
             `created_at` datetime(6) NOT NULL, `channel_hash` bigint NOT NULL, \
             INDEX `index_{TABLE}_on_channel` (`channel`), \
             INDEX `index_{TABLE}_on_channel_hash` (`channel_hash`), \
             INDEX `index_{TABLE}_on_created_at` (`created_at`)) ENGINE=InnoDB"
        )],
        Dialect::Sqlite => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS \"{TABLE}\" (\"id\" integer PRIMARY KEY AUTOINCREMENT NOT NULL, \
                 \"channel\" blob(1024) NOT NULL, \"payload\" blob(536870912) NOT NULL, \
                 \"created_at\" datetime(6) NOT NULL, \"channel_hash\" integer(8) NOT NULL)"
            ),
            index("channel", "\""),
            index("channel_hash", "\""),
            index("created_at", "\""),
        ],
    }
}

/// The largest id, 0 for an empty table (the gem's `Message.maximum(:id) || 0`).
pub(crate) fn max_id(dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres => format!("SELECT COALESCE(MAX(id), 0)::bigint FROM {TABLE}"),
        Dialect::Mysql | Dialect::Sqlite => format!("SELECT COALESCE(MAX(id), 0) FROM {TABLE}"),
    }
}

/// `SolidCable::Message.broadcast`'s `insert`: the four columns, the id from the database.
pub(crate) fn insert(dialect: Dialect) -> String {
    match dialect {
        // created_at goes as Rails' text and is read by the server as a timestamp, as Rails'
        // quoted literal is.
        Dialect::Postgres => format!(
            "INSERT INTO {TABLE} (channel, payload, created_at, channel_hash) \
             VALUES ($1, $2, $3::text::timestamp, $4) RETURNING id::bigint"
        ),
        Dialect::Mysql => format!(
            "INSERT INTO `{TABLE}` (`channel`, `payload`, `created_at`, `channel_hash`) \
             VALUES (?, ?, ?, ?)"
        ),
        Dialect::Sqlite => format!(
            "INSERT INTO \"{TABLE}\" (\"channel\", \"payload\", \"created_at\", \"channel_hash\") \
             VALUES (?1, ?2, ?3, ?4)"
        ),
    }
}

/// PostgreSQL's poll, one statement for every stream: `$1` low, `$2` the settled streams'
/// hashes, `$3` the young streams' hashes and `$4` the id they start after, `$5` the handled
/// ids to leave out, `$6` the batch size.
pub(crate) fn poll_postgres() -> String {
    format!(
        "SELECT id::bigint, channel, payload FROM {TABLE} \
         WHERE id > $1 AND (channel_hash = ANY($2) OR (channel_hash = ANY($3) AND id > $4)) \
         AND id <> ALL($5) ORDER BY id LIMIT $6"
    )
}

/// The poll as one statement with its numbers written in (MySQL and SQLite take no arrays).
/// Every value is an integer this crate computed, never text from outside.
pub(crate) fn poll_inline(dialect: Dialect, poll: &Poll<'_>) -> String {
    let (q, table) = match dialect {
        Dialect::Mysql => ("`", TABLE),
        Dialect::Postgres | Dialect::Sqlite => ("\"", TABLE),
    };
    let mut sql = format!(
        "SELECT {q}id{q}, {q}channel{q}, {q}payload{q} FROM {q}{table}{q} WHERE {q}id{q} > {}",
        poll.low
    );
    let mut streams = Vec::new();
    if !poll.settled.is_empty() {
        streams.push(format!("{q}channel_hash{q} IN ({})", list(poll.settled)));
    }
    if !poll.young.is_empty() {
        streams.push(format!(
            "({q}channel_hash{q} IN ({}) AND {q}id{q} > {})",
            list(poll.young),
            poll.young_after
        ));
    }
    if streams.is_empty() {
        streams.push("1 = 0".to_owned());
    }
    let _ = write!(sql, " AND ({})", streams.join(" OR "));
    if !poll.exclude.is_empty() {
        let _ = write!(sql, " AND {q}id{q} NOT IN ({})", list(poll.exclude));
    }
    let _ = write!(sql, " ORDER BY {q}id{q} LIMIT {}", poll.limit);
    sql
}

fn list(ids: &[i64]) -> String {
    let mut text = String::with_capacity(ids.len() * 21);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "{id}");
    }
    text
}

/// One poll: rows above `low` of the streams, less the ids already handled.
#[derive(Debug)]
pub(crate) struct Poll<'a> {
    pub(crate) low: i64,
    /// Hashes of the streams subscribed long enough that `low` passed their start.
    pub(crate) settled: &'a [i64],
    /// Hashes of streams subscribed more recently, which start above `young_after`.
    pub(crate) young: &'a [i64],
    pub(crate) young_after: i64,
    pub(crate) exclude: &'a [i64],
    pub(crate) limit: u32,
}

/// The trim (`SolidCable::TrimJob#perform`): the ids of up to `batch` rows created before the
/// cut-off, locked (`FOR UPDATE SKIP LOCKED`, or `FOR UPDATE` without `use_skip_locked`), then
/// deleted. PostgreSQL does it in one statement (`$1` the cut-off, `$2` the batch size); MySQL
/// cannot `LIMIT` an `IN` subquery, so it runs [`trim_select`] and [`trim_delete`] in one
/// transaction, as the gem does everywhere.
pub(crate) fn trim_postgres(skip_locked: bool) -> String {
    format!(
        "DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} \
         WHERE created_at < $1::text::timestamp LIMIT $2 {})",
        lock(skip_locked)
    )
}

/// SQLite's trim, in one statement: it has no row locks (Rails' Arel leaves the lock out
/// there) and writes one transaction at a time.
pub(crate) fn trim_sqlite() -> String {
    format!(
        "DELETE FROM \"{TABLE}\" WHERE \"id\" IN (SELECT \"id\" FROM \"{TABLE}\" \
         WHERE \"created_at\" < ?1 LIMIT ?2)"
    )
}

/// MySQL's first trim statement: the ids to delete, locked.
pub(crate) fn trim_select(skip_locked: bool) -> String {
    format!(
        "SELECT `id` FROM `{TABLE}` WHERE `created_at` < ? LIMIT ? {}",
        lock(skip_locked)
    )
}

/// MySQL's second trim statement, for the ids the first one returned (integers written in).
pub(crate) fn trim_delete(ids: &[i64]) -> String {
    format!("DELETE FROM `{TABLE}` WHERE `id` IN ({})", list(ids))
}

fn lock(skip_locked: bool) -> &'static str {
    if skip_locked {
        "FOR UPDATE SKIP LOCKED"
    } else {
        "FOR UPDATE"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inline_poll_lists_streams_and_exclusions() {
        let poll = Poll {
            low: 10,
            settled: &[1, -2],
            young: &[3],
            young_after: 15,
            exclude: &[11, 12],
            limit: 100,
        };
        assert_eq!(
            poll_inline(Dialect::Sqlite, &poll),
            "SELECT \"id\", \"channel\", \"payload\" FROM \"solid_cable_messages\" WHERE \"id\" > 10 \
             AND (\"channel_hash\" IN (1,-2) OR (\"channel_hash\" IN (3) AND \"id\" > 15)) \
             AND \"id\" NOT IN (11,12) ORDER BY \"id\" LIMIT 100"
        );
        let only = Poll {
            low: 0,
            settled: &[7],
            young: &[],
            young_after: 0,
            exclude: &[],
            limit: 5,
        };
        assert_eq!(
            poll_inline(Dialect::Mysql, &only),
            "SELECT `id`, `channel`, `payload` FROM `solid_cable_messages` WHERE `id` > 0 \
             AND (`channel_hash` IN (7)) ORDER BY `id` LIMIT 5"
        );
    }

    #[test]
    fn the_schema_names_rails_indexes() {
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            let ddl = create_table(dialect).join(";");
            for column in ["channel", "channel_hash", "created_at"] {
                assert!(
                    ddl.contains(&format!("index_solid_cable_messages_on_{column}")),
                    "{dialect:?}: {ddl}"
                );
            }
        }
    }
}
