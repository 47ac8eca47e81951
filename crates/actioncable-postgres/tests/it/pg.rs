//! Real PostgreSQL for the tests: the shared helpers ([`TestDb`], [`PgServer`], [`psql`] in
//! `cable_test_support::postgres`), and an independent listener ([`RawListener`]) that shows
//! what is on the wire.
//!
//! Nothing is mocked. A missing server or program fails the test with an install hint; it is
//! never skipped. Every wait is bounded by [`WAIT`].

use crate::support::WAIT;
pub(crate) use cable_test_support::postgres::{PgServer, TestDb};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// A plain `LISTEN`ing session of its own: what any PostgreSQL client on the channel gets.
pub(crate) struct RawListener {
    /// Kept: dropping it ends the session.
    _client: tokio_postgres::Client,
    notes: mpsc::UnboundedReceiver<(String, String)>,
}

impl RawListener {
    pub(crate) async fn start(url: &str, channels: &[&str]) -> RawListener {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        let (tx, notes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                if let AsyncMessage::Notification(n) = message {
                    let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
                }
            }
        });
        for channel in channels {
            let quoted = format!("\"{}\"", channel.replace('"', "\"\""));
            client
                .batch_execute(&format!("LISTEN {quoted}"))
                .await
                .expect("LISTEN");
        }
        RawListener {
            _client: client,
            notes,
        }
    }

    /// The next notification: (channel, payload).
    pub(crate) async fn next(&mut self) -> (String, String) {
        tokio::time::timeout(WAIT, self.notes.recv())
            .await
            .unwrap_or_else(|_| panic!("no notification within {WAIT:?}"))
            .expect("the listener runs")
    }
}
