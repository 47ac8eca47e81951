//! # actioncable-rails
//!
//! What a Rails app hands its users, read in Rust from the app's own `secret_key_base`: its
//! signed and encrypted cookies and its cookie-store session (so a user logged in to the Rails
//! app is known to the cable), Turbo's signed stream names and AnyCable's signed streams.
//!
//! Everything here follows Rails' own source and is tested against values Rails' Ruby code
//! made; see `docs/rails.md` for moving a Rails app's cable over.
//!
//! ## Cookies and sessions
//!
//! Rails' own `ApplicationCable::Connection` knows the user from the cookies the browser sends
//! with the WebSocket upgrade; so does a [`Connection`](actioncable::Connection) here.
//! [`RailsCookies`] holds the app's cookie keys, derived once from its `secret_key_base`, and
//! its [`jar`](RailsCookies::jar) reads `cookies.encrypted[...]`, `cookies.signed[...]` and the
//! cookie-store [session](RailsCookieJar::session) (with Devise's
//! [user](RailsSession::warden_user_key)). `?` on a [`RailsError`] rejects the connection and
//! logs why at debug level, never the cookie:
//!
//! ```
//! use actioncable::{async_trait, Cable, ConnectRequest, Connection, Identity, Reject};
//! use actioncable_rails::{KeyDigest, RailsCookies};
//!
//! struct AppConnection {
//!     cookies: RailsCookies,
//! }
//!
//! #[async_trait]
//! impl Connection for AppConnection {
//!     async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
//!         // `cookies.encrypted[:user_id]`, as the Rails app set it when the user signed in.
//!         let user_id: u64 = self.cookies.jar(req.headers()).encrypted("user_id")?.ok_or(Reject::Unauthorized)?;
//!         Ok(Identity::new("current_user", user_id.to_string()))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use actioncable::testing::{TestCable, TestRequest};
//!
//! // Rails 7+ defaults; `KeyDigest::Sha1` for apps on older ones.
//! let cookies = RailsCookies::new("the app's secret_key_base", KeyDigest::Sha256)?;
//! // What the Rails app's `cookies.encrypted[:user_id] = 42` sent the browser.
//! let cookie = format!("user_id={}", cookies.encrypt_cookie("user_id", &42, None)?);
//!
//! let cable = TestCable::new(Cable::builder().connection(AppConnection { cookies }))?;
//! let conn = cable.connect(TestRequest::new().header("cookie", cookie)).await?;
//! assert_eq!(conn.identity().get("current_user"), Some("42"));
//! assert!(cable.connect(TestRequest::new().header("cookie", "user_id=42")).await.is_err());
//! # Ok(()) }
//! ```
//!
//! **What is read.** Encrypted cookies and cookie-store sessions of Rails 5.2 and later
//! (AES-256-GCM, `use_authenticated_cookie_encryption`, on from `load_defaults 5.2`); signed
//! cookies with `signed_cookie_digest` SHA1 (the default) or SHA256; keys derived with SHA1
//! (up to 6.1's defaults) or SHA256 (7.0's), with [rotations](RailsCookies::rotate) for a new
//! secret or digest, as `cookies_rotations`; cookies with their purpose and expiry (6.0+) or
//! without (5.2); JSON values (`cookies_serializer :json`, what apps have had since 4.1's
//! generated initializer and 7.0's defaults). Cookies written here carry the purpose, which
//! Rails reads from 6.0 on. [`MessageVerifier`] and [`MessageEncryptor`] read and write
//! both metadata envelopes (see [`Metadata`]).
//!
//! **What is not.** Cookies holding Ruby's Marshal format (`cookies_serializer :marshal`, or
//! `:hybrid` before a cookie was rewritten) are refused with [`RailsError::MarshalPayload`]:
//! loading Marshal means instantiating whatever Ruby classes it names. AES-256-CBC cookies
//! (before Rails 5.2, or with `use_authenticated_cookie_encryption = false`) are refused with
//! [`RailsError::LegacyCipher`]. Only Rails' default cookie salts are used. Sessions kept
//! elsewhere (Redis, the database) leave only their id in the cookie.

mod error;
mod json;
mod key_generator;
mod verifier;

pub use error::RailsError;
pub use key_generator::{KeyDigest, KeyGenerator, RAILS_ITERATIONS};
pub use verifier::{HmacDigest, MessageVerifier};

mod cookies;
mod encryptor;
mod metadata;
mod session;

pub use cookies::{RailsCookieJar, RailsCookies};
pub use encryptor::MessageEncryptor;
pub use metadata::Metadata;
pub use session::{RailsSession, WardenUser};
pub mod signed_streams;
pub mod turbo;

pub use signed_streams::{PubSubChannel, SignedStreams};
pub use turbo::{Html, StreamsChannel, TurboStream, TurboStreams};
