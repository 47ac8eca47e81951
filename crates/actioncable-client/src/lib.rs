//! An ActionCable consumer for Rust: what the stock `@rails/actioncable` JavaScript consumer
//! does, on tokio, with typed subscriptions.
//!
//! It talks to any ActionCable server — Rails, AnyCable, this project's `actioncable` — over
//! the `actioncable-v1-json` protocol, and behaves as the stock consumer does, because servers
//! and their operators count on that behaviour:
//!
//! - it **resubscribes** every subscription after each `welcome`, and repeats an unconfirmed
//!   `subscribe` every 500 ms until it is confirmed or rejected (Rails' `SubscriptionGuarantor`);
//! - it takes a connection as **stale** when nothing arrived for 6 s (two missed pings), and
//!   then reconnects, polling every 6–12 s while healthy and 15 % later after each failed
//!   attempt, with jitter, so that thousands of clients of a restarted server do not come back
//!   at the same instant ([`monitor`] has the numbers and where they come from);
//! - a server `disconnect` with `reconnect: false` (a rejected connection, a revoked user)
//!   **stops** it for good.
//!
//! ```no_run
//! use actioncable_client::{Consumer, Event};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Debug, Deserialize)]
//! struct Echo {
//!     text: String,
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), actioncable_client::Error> {
//!     let consumer = Consumer::connect("ws://127.0.0.1:3000/cable")?;
//!     let mut echo = consumer.subscribe::<Echo>("EchoChannel")?;
//!     while let Some(event) = echo.recv().await {
//!         match event {
//!             Event::Connected { .. } => echo.perform("echo", json!({ "text": "hello" })).await?,
//!             Event::Received(reply) => {
//!                 println!("{}", reply.text);
//!                 break;
//!             }
//!             Event::Disconnected { reason, reconnect: true } => eprintln!("{reason}; reconnecting"),
//!             Event::Disconnected { reconnect: false, .. } | Event::Rejected => break,
//!             _ => {}
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # The parts
//!
//! - [`Consumer`] (`consumer.js`): one connection, built with [`ConsumerBuilder`] (headers,
//!   cookies, a token in the query, `Origin`, timings); cloneable; [`Consumer::state`] tells
//!   where the connection stands.
//! - [`Subscription`] (`subscription.js`): [`Event`]s as a [`Stream`](futures_util::Stream),
//!   messages deserialized into the subscription's type with serde; `perform`, `send`,
//!   `unsubscribe`; a [`SubscriptionHandle`] performs from other tasks.
//! - [`Error`]: the one error type. Nothing a server sends makes the consumer panic or fail: a
//!   frame it cannot read is dropped, a message of the wrong shape is an
//!   [`Event::Undecodable`].
//!
//! # Features
//!
//! | feature | what |
//! |---|---|
//! | `ext` | AnyCable's extended protocol, `actioncable-v1-ext-json`, offered when asked for (`ConsumerBuilder::extended_protocol`): a dropped connection resumes its session, and each subscription is sent the messages it missed, from the stream positions it saw (the project's `docs/reliability.md`) |
//!
//! # Where it differs from the stock consumer
//!
//! On purpose, and documented where it happens (see the `connection` module's source): a
//! stale socket is dropped at once and its subscriptions told so; an attempt still connecting
//! when the connection is found stale is started again; `reconnected` is told per
//! subscription; a consumer that stopped is not reopened (build a new one); and `perform` on a
//! disconnected cable is an error ([`Error::NotConnected`]) where the stock consumer returns
//! `false`. Only `ws://` URLs: the crate does not build TLS.

mod connection;
mod consumer;
mod error;
#[cfg(feature = "ext")]
mod history;
pub mod monitor;
mod socket;
mod subscription;
mod wire;

pub use consumer::{ConnectionState, Consumer, ConsumerBuilder, DisconnectReason};
pub use error::Error;
pub use subscription::{Event, Subscription, SubscriptionHandle};
pub use wire::{EXT_PROTOCOL, PROTOCOL, UNSUPPORTED_PROTOCOL};

#[cfg(test)]
mod tests {
    /// The README shows the crate docs' example (compiled here as a doctest; the README's copy
    /// is not compiled, the `actioncable` crate compiles the README's blocks without this
    /// crate), so the two must stay the same.
    #[test]
    fn the_readme_shows_the_crate_docs_example() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split_once("## Consuming a cable in Rust")
            .expect("the README's client section")
            .1;
        let block = section
            .split_once("```rust,ignore\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .expect("the README's client example")
            .0;
        let docs = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let example = docs
            .split_once("```no_run\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .expect("the crate docs' example")
            .0;
        assert_eq!(block, example);
    }
}
