//! # actioncable-rails
//!
//! What a Rails app hands its users, read in Rust from the app's own `secret_key_base`: its
//! signed and encrypted cookies and its cookie-store session (so a user logged in to the Rails
//! app is known to the cable), Turbo's signed stream names and AnyCable's signed streams.
//!
//! Everything here follows Rails' own source and is tested against values Rails' Ruby code
//! made; see `docs/rails.md` for moving a Rails app's cable over.

mod error;
mod json;
mod key_generator;
mod verifier;

pub use error::RailsError;
pub use key_generator::{KeyDigest, KeyGenerator, RAILS_ITERATIONS};
pub use verifier::{HmacDigest, MessageVerifier};

pub mod signed_streams;
pub mod turbo;
