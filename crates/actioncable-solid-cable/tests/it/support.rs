//! What the tests share: the adapters' fixture (`StreamChannel`, its node, client methods) and
//! timings from `cable-test-support`; one test database of each kind ([`TestDatabase`]) with its
//! own client for raw SQL (`psql`, `mariadb`, Python's `sqlite3` module), and values computed
//! independently of this crate (Python's `hashlib`).

pub(crate) use cable_test_support::adapter::*;
pub(crate) use cable_test_support::*;

use actioncable_solid_cable::{SolidCableConfig, SolidCablePubSub};
use cable_test_support::mysql::MysqlDb;
use cable_test_support::postgres::TestDb;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The polling interval of most tests (the gem's default is 0.1 s).
pub(crate) const INTERVAL: Duration = Duration::from_millis(50);

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Postgres,
    Mysql,
    Sqlite,
}

/// A database of the test's own: a fresh database on the shared PostgreSQL (5432) or MariaDB
/// (3306), or a fresh SQLite file. Dropped with the test.
#[derive(Debug)]
pub(crate) enum TestDatabase {
    Postgres(TestDb),
    Mysql(MysqlDb),
    Sqlite(SqliteFile),
}

impl TestDatabase {
    pub(crate) fn new(kind: Kind) -> TestDatabase {
        match kind {
            Kind::Postgres => TestDatabase::Postgres(TestDb::create()),
            Kind::Mysql => TestDatabase::Mysql(MysqlDb::create()),
            Kind::Sqlite => TestDatabase::Sqlite(SqliteFile::create()),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            TestDatabase::Postgres(_) => Kind::Postgres,
            TestDatabase::Mysql(_) => Kind::Mysql,
            TestDatabase::Sqlite(_) => Kind::Sqlite,
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            TestDatabase::Postgres(db) => db.url(),
            TestDatabase::Mysql(db) => db.url(),
            TestDatabase::Sqlite(file) => format!("sqlite://{}", file.path.display()),
        }
    }

    /// Runs `sql` through the database's own client, not this crate: one line a row, columns
    /// separated by `|`.
    pub(crate) fn sql(&self, sql: &str) -> String {
        match self {
            TestDatabase::Postgres(db) => db.psql(sql),
            TestDatabase::Mysql(db) => db.sql(sql).replace('\t', "|"),
            TestDatabase::Sqlite(file) => file.sql(sql),
        }
    }

    /// A configuration for this database with test timings.
    pub(crate) fn config(&self) -> SolidCableConfig {
        config(&self.url())
    }

    /// The SQL literal of `bytes` for a binary column, as Rails quotes one.
    pub(crate) fn binary(&self, bytes: &[u8]) -> String {
        binary_literal(self.kind(), bytes)
    }
}

/// Rails' quoting of a binary value: PostgreSQL's `'\x…'` (`escape_bytea`), MySQL's and
/// SQLite's `x'…'`.
pub(crate) fn binary_literal(kind: Kind, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match kind {
        Kind::Postgres => format!("'\\x{hex}'"),
        Kind::Mysql | Kind::Sqlite => format!("x'{hex}'"),
    }
}

/// Test timings: a 50 ms poll, quick reconnections.
pub(crate) fn config(url: &str) -> SolidCableConfig {
    SolidCableConfig::from_url(url)
        .expect("a valid URL")
        .polling_interval(INTERVAL)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// A cable node of `StreamChannel` on `pubsub`, returned once the adapter's two connections are
/// up: a broadcast made while a connection is still being (re)tried fails at once, by design,
/// and on a loaded machine the first attempt can miss.
pub(crate) async fn node(pubsub: &SolidCablePubSub) -> Node {
    let node = node_now(pubsub).await;
    cable_test_support::eventually("the adapter's connections up", || pubsub.is_connected()).await;
    node
}

/// A cable node of `StreamChannel` on `pubsub`, at once, whether or not the database answers.
pub(crate) async fn node_now(pubsub: &SolidCablePubSub) -> Node {
    stream_node(Arc::new(pubsub.clone())).await
}

/// An SQLite file in a scratch directory of its own, deleted on drop.
#[derive(Debug)]
pub(crate) struct SqliteFile {
    pub(crate) path: PathBuf,
    dir: PathBuf,
}

/// Runs SQL with Python's `sqlite3` module (the SQLite that Python links, not this crate's):
/// `SELECT`s print their rows, anything else runs as a script.
const PYTHON_SQLITE: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
sql = sys.argv[2]
if sql.lstrip().upper().startswith(("SELECT", "PRAGMA", "WITH")):
    for row in db.execute(sql).fetchall():
        print("|".join("" if v is None else (v.hex() if isinstance(v, bytes) else str(v)) for v in row))
else:
    db.executescript(sql)
db.commit()
"#;

impl SqliteFile {
    fn create() -> SqliteFile {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cable-test-{}-sqlite-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        SqliteFile {
            path: dir.join("cable.sqlite3"),
            dir,
        }
    }

    fn sql(&self, sql: &str) -> String {
        let output = Command::new("python3")
            .args(["-c", PYTHON_SQLITE])
            .arg(&self.path)
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e}): apt-get install python3"));
        assert!(
            output.status.success(),
            "python3 sqlite3 failed on {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `channel_hash` of `channel` computed by Python's `hashlib`, independently of this crate:
/// the first 8 bytes of the SHA-256 digest as a signed big-endian integer (Ruby's
/// `Digest::SHA256.digest(channel).unpack1("q>")`).
pub(crate) fn python_channel_hash(channel: &str) -> i64 {
    let output = Command::new("python3")
        .args([
            "-c",
            "import hashlib, sys; \
             print(int.from_bytes(hashlib.sha256(sys.argv[1].encode()).digest()[:8], 'big', signed=True))",
            channel,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): apt-get install python3"));
    assert!(output.status.success(), "python3 failed");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("python3 printed an integer")
}

/// One test per database, each in a module named after the test: `$name::postgres`,
/// `$name::mysql`, `$name::sqlite`, each calling `$name(Kind::…)`.
macro_rules! each_database {
    ($name:ident) => {
        mod $name {
            use crate::support::Kind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Kind::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$name(Kind::Mysql).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Kind::Sqlite).await
            }
        }
    };
}
pub(crate) use each_database;
