//! # actioncable-solid-cable
//!
//! The Solid Cable [`PubSub`](actioncable::PubSub) adapter for [`actioncable`]: broadcasts are
//! rows of Rails 8's `solid_cable_messages` table, written and polled exactly as the
//! `solid_cable` gem does, on PostgreSQL, MySQL/MariaDB or SQLite.

mod adapter;
mod config;
mod db;
mod link;
mod sql;
mod window;
mod wire;

pub use adapter::SolidCablePubSub;
pub use config::{Database, SolidCableConfig, SolidCableConfigError};
pub use wire::{channel_hash, parse_rails_duration};
