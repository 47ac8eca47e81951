//! SQLite storage: chat messages, notifications, and each user's session version.
//!
//! Storage is bounded by [`Retention`]: each insert deletes what falls outside it (the oldest
//! messages of a room beyond its last N, the oldest notifications of a user beyond their last N,
//! and the oldest rows of each table beyond a total), in the same transaction.
//!
//! One connection behind a `std::sync::Mutex`; every query runs on Tokio's blocking pool
//! (`spawn_blocking`) and holds the lock only inside that closure, so no lock ever spans an
//! `.await` and the async workers never block on disk.

use rusqlite::{Connection, params};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use time::macros::format_description;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The query task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A stored chat message, as the HTTP API and `history` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Row id.
    pub id: i64,
    /// Who said it.
    pub user: String,
    /// The trimmed text.
    pub text: String,
    /// When, RFC 3339 UTC.
    pub sent_at: String,
}

/// A room with messages, as `GET /rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomActivity {
    /// The room's name.
    pub room: String,
    /// How many messages it has.
    pub messages: u32,
    /// When its newest message was sent, RFC 3339 UTC.
    pub last_message_at: String,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Row id.
    pub id: i64,
    /// Whom it is for.
    pub user: String,
    /// The text.
    pub message: String,
    /// Its kind (`info` by default).
    pub kind: String,
    /// An optional link.
    pub link: Option<String>,
    /// Whether its owner marked it read.
    pub read: bool,
    /// When, RFC 3339 UTC.
    pub created_at: String,
}

/// A new notification, before it is stored.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// Whom it is for.
    pub user: String,
    /// The text.
    pub message: String,
    /// Its kind.
    pub kind: String,
    /// An optional link.
    pub link: Option<String>,
}

/// The demo's database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    retention: Retention,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db(..)")
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    message TEXT NOT NULL,
    kind TEXT NOT NULL,
    link TEXT,
    read INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user, id);
CREATE TABLE IF NOT EXISTS sessions (
    user TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
";

/// How much the database keeps. Each insert trims its table to these bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The last N messages of each room.
    pub messages_per_room: u32,
    /// The last N messages over all rooms.
    pub messages_total: u32,
    /// The last N notifications of each user.
    pub notifications_per_user: u32,
    /// The last N notifications over all users.
    pub notifications_total: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            messages_per_room: 1000,
            messages_total: 100_000,
            notifications_per_user: 200,
            notifications_total: 100_000,
        }
    }
}

impl Db {
    /// Opens (creating if needed) the database at `path` with the default [`Retention`];
    /// `:memory:` keeps it in memory.
    ///
    /// # Errors
    /// When the file cannot be opened or the schema cannot be created.
    pub fn open(path: &str) -> Result<Db, DbError> {
        Db::open_with(path, Retention::default())
    }

    /// Opens the database at `path`, keeping what `retention` allows.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with(path: &str, retention: Retention) -> Result<Db, DbError> {
        let conn = if path == ":memory:" {
            let conn = Connection::open_in_memory()?;
            conn.execute_batch(SCHEMA)?;
            conn
        } else {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            // Several nodes may share one file (scripts/cluster.sh, docker-compose) and start
            // at the same moment: switching to WAL and creating the schema can then find the
            // file locked, which `busy_timeout` does not cover. Retry for a while.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                // WAL lets readers (a `sqlite3` shell, another node) look while one writes.
                let setup = conn
                    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                    .and_then(|_| conn.execute_batch(SCHEMA));
                match setup {
                    Ok(()) => break,
                    Err(e) if is_locked(&e) && std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            conn
        };
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            retention,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let result = tokio::task::spawn_blocking(move || {
            // A panic in an earlier query poisons the lock but leaves SQLite consistent.
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await?;
        Ok(result?)
    }

    /// Stores a chat message and returns it.
    pub async fn add_message(
        &self,
        room: &str,
        user: &str,
        text: &str,
    ) -> Result<Message, DbError> {
        let (room, user, text) = (room.to_owned(), user.to_owned(), text.to_owned());
        let sent_at = now_rfc3339();
        let keep = self.retention;
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO messages (room, user, text, sent_at) VALUES (?1, ?2, ?3, ?4)",
                params![room, user, text, sent_at],
            )?;
            let id = tx.last_insert_rowid();
            // Older than the room's Nth newest message; then (ids only grow) every row more
            // than N ids back.
            tx.execute(
                "DELETE FROM messages WHERE room = ?1 AND id < (
                     SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
                 )",
                params![room, keep.messages_per_room.saturating_sub(1)],
            )?;
            tx.execute(
                "DELETE FROM messages WHERE id <= ?1",
                params![id - i64::from(keep.messages_total)],
            )?;
            tx.commit()?;
            Ok(Message {
                id,
                user,
                text,
                sent_at,
            })
        })
        .await
    }

    /// The last `limit` messages of `room`, oldest first.
    pub async fn recent_messages(&self, room: &str, limit: u32) -> Result<Vec<Message>, DbError> {
        let room = room.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, user, text, sent_at FROM (
                     SELECT id, user, text, sent_at FROM messages
                     WHERE room = ?1 ORDER BY id DESC LIMIT ?2
                 ) ORDER BY id ASC",
            )?;
            let rows = stmt.query_map(params![room, limit], |r| {
                Ok(Message {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    text: r.get(2)?,
                    sent_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// The `limit` rooms with the most recent messages, most recent first.
    pub async fn active_rooms(&self, limit: u32) -> Result<Vec<RoomActivity>, DbError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT room, COUNT(*), MAX(sent_at) FROM messages
                 GROUP BY room ORDER BY MAX(id) DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit], |r| {
                Ok(RoomActivity {
                    room: r.get(0)?,
                    messages: r.get(1)?,
                    last_message_at: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Stores a notification (unread) and returns it.
    pub async fn add_notification(&self, new: NewNotification) -> Result<Notification, DbError> {
        let created_at = now_rfc3339();
        let keep = self.retention;
        self.call(move |c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO notifications (user, message, kind, link, read, created_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![new.user, new.message, new.kind, new.link, created_at],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM notifications WHERE user = ?1 AND id < (
                     SELECT id FROM notifications WHERE user = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2
                 )",
                params![new.user, keep.notifications_per_user.saturating_sub(1)],
            )?;
            tx.execute(
                "DELETE FROM notifications WHERE id <= ?1",
                params![id - i64::from(keep.notifications_total)],
            )?;
            tx.commit()?;
            Ok(Notification {
                id,
                user: new.user,
                message: new.message,
                kind: new.kind,
                link: new.link,
                read: false,
                created_at,
            })
        })
        .await
    }

    /// The newest `limit` notifications of `user`, newest first.
    pub async fn notifications_for(
        &self,
        user: &str,
        limit: u32,
    ) -> Result<Vec<Notification>, DbError> {
        let user = user.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, user, message, kind, link, read, created_at FROM notifications
                 WHERE user = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![user, limit], |r| {
                Ok(Notification {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    message: r.get(2)?,
                    kind: r.get(3)?,
                    link: r.get(4)?,
                    read: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Marks notification `id` read if it belongs to `user`; returns whether it does.
    pub async fn mark_read(&self, id: i64, user: &str) -> Result<bool, DbError> {
        let user = user.to_owned();
        self.call(move |c| {
            let changed = c.execute(
                "UPDATE notifications SET read = 1 WHERE id = ?1 AND user = ?2",
                params![id, user],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    /// The session version of `user`: 0 until their first logout, then one more per logout.
    /// Credentials carry the version they were issued with and are good only while it is the
    /// current one.
    pub async fn session_version(&self, user: &str) -> Result<i64, DbError> {
        let user = user.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare_cached("SELECT version FROM sessions WHERE user = ?1")?;
            let version = stmt
                .query_row(params![user], |r| r.get(0))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(0),
                    e => Err(e),
                })?;
            Ok(version)
        })
        .await
    }

    /// Ends every session of `user` (the next version), returning the new version.
    pub async fn end_sessions(&self, user: &str) -> Result<i64, DbError> {
        let user = user.to_owned();
        self.call(move |c| {
            c.query_row(
                "INSERT INTO sessions (user, version) VALUES (?1, 1)
                 ON CONFLICT (user) DO UPDATE SET version = version + 1
                 RETURNING version",
                params![user],
                |r| r.get(0),
            )
        })
        .await
    }
}

/// Now, as RFC 3339 UTC with milliseconds: `2026-11-25T18:00:00.123Z`.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

fn rfc3339(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let at = at.to_offset(time::UtcOffset::UTC);
    // Formatting a UTC date with a fixed description only fails for years past 9999.
    at.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Whether SQLite refused because another connection holds the file.
fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(
            rfc3339(datetime!(2026-11-25 18:00:00.123456 UTC)),
            "2026-11-25T18:00:00.123Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-11-25 19:00:00 +01:00)),
            "2026-11-25T18:00:00.000Z"
        );
        let now = now_rfc3339();
        assert_eq!(now.len(), 24, "{now}");
        assert!(now.ends_with('Z'));
    }

    #[tokio::test]
    async fn messages_and_notifications_round_trip() {
        let db = Db::open(":memory:").unwrap();
        for i in 0..5 {
            db.add_message("lobby", "alice", &format!("m{i}"))
                .await
                .unwrap();
        }
        db.add_message("other", "bob", "elsewhere").await.unwrap();
        let last3 = db.recent_messages("lobby", 3).await.unwrap();
        let texts: Vec<_> = last3.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["m2", "m3", "m4"]);
        let rooms = db.active_rooms(10).await.unwrap();
        let rooms: Vec<_> = rooms
            .iter()
            .map(|r| (r.room.as_str(), r.messages))
            .collect();
        assert_eq!(rooms, [("other", 1), ("lobby", 5)], "most recent first");
        assert_eq!(db.active_rooms(1).await.unwrap().len(), 1);

        let n = db
            .add_notification(NewNotification {
                user: "bob".into(),
                message: "hi".into(),
                kind: "info".into(),
                link: None,
            })
            .await
            .unwrap();
        assert!(!n.read);
        assert!(!db.mark_read(n.id, "alice").await.unwrap());
        assert!(!db.mark_read(n.id + 100, "bob").await.unwrap());
        assert!(db.mark_read(n.id, "bob").await.unwrap());
        assert!(db.mark_read(n.id, "bob").await.unwrap(), "idempotent");
        let list = db.notifications_for("bob", 10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].read);
        assert!(db.notifications_for("alice", 10).await.unwrap().is_empty());
    }

    fn note(user: &str, message: &str) -> NewNotification {
        NewNotification {
            user: user.into(),
            message: message.into(),
            kind: "info".into(),
            link: None,
        }
    }

    #[tokio::test]
    async fn retention_keeps_the_last_n_per_room_and_per_user() {
        let db = Db::open_with(
            ":memory:",
            Retention {
                messages_per_room: 3,
                messages_total: 1000,
                notifications_per_user: 2,
                notifications_total: 1000,
            },
        )
        .unwrap();
        for i in 0..10 {
            db.add_message("lobby", "alice", &format!("m{i}"))
                .await
                .unwrap();
        }
        db.add_message("other", "bob", "o1").await.unwrap();
        let texts = |m: Vec<Message>| m.into_iter().map(|m| m.text).collect::<Vec<_>>();
        assert_eq!(
            texts(db.recent_messages("lobby", 200).await.unwrap()),
            ["m7", "m8", "m9"]
        );
        assert_eq!(
            texts(db.recent_messages("other", 200).await.unwrap()),
            ["o1"]
        );
        let rooms = db.active_rooms(10).await.unwrap();
        assert_eq!(rooms[1].messages, 3, "{rooms:?}");

        for i in 0..5 {
            db.add_notification(note("bob", &format!("n{i}")))
                .await
                .unwrap();
        }
        db.add_notification(note("carol", "c")).await.unwrap();
        let list = db.notifications_for("bob", 200).await.unwrap();
        let messages: Vec<_> = list.iter().map(|n| n.message.as_str()).collect();
        assert_eq!(messages, ["n4", "n3"]);
        assert_eq!(db.notifications_for("carol", 200).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn retention_bounds_each_table_in_total() {
        let db = Db::open_with(
            ":memory:",
            Retention {
                messages_per_room: 100,
                messages_total: 5,
                notifications_per_user: 100,
                notifications_total: 4,
            },
        )
        .unwrap();
        // Spread over many rooms and users, as someone dodging the per-room bound would.
        for i in 0..20 {
            db.add_message(&format!("room-{i}"), "mallory", "x")
                .await
                .unwrap();
            db.add_notification(note(&format!("user{i}"), "x"))
                .await
                .unwrap();
        }
        let rooms = db.active_rooms(100).await.unwrap();
        let total: u32 = rooms.iter().map(|r| r.messages).sum();
        assert_eq!(total, 5, "{rooms:?}");
        assert_eq!(rooms[0].room, "room-19");
        let mut notifications = 0;
        for i in 0..20 {
            notifications += db
                .notifications_for(&format!("user{i}"), 10)
                .await
                .unwrap()
                .len();
        }
        assert_eq!(notifications, 4);
        assert_eq!(db.notifications_for("user19", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn session_versions_start_at_zero_and_grow_with_each_logout() {
        let db = Db::open(":memory:").unwrap();
        assert_eq!(db.session_version("alice").await.unwrap(), 0);
        assert_eq!(db.end_sessions("alice").await.unwrap(), 1);
        assert_eq!(db.end_sessions("alice").await.unwrap(), 2);
        assert_eq!(db.session_version("alice").await.unwrap(), 2);
        assert_eq!(db.session_version("bob").await.unwrap(), 0);
    }
}
