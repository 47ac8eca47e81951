//! Hotwire's Turbo Streams on a Rust cable: a chat room page written the Rails way, with no
//! JavaScript of its own.
//!
//! `GET /?room=lobby` renders the room: its recent messages in `<div id="messages">`, a form
//! that posts to `/messages`, and `<turbo-cable-stream-source>` with the room's stream name
//! signed as Rails' `turbo_stream_from` signs it. The page loads `@hotwired/turbo` and
//! `@hotwired/turbo-rails` (ES modules from `js-client/node_modules`, found through an import
//! map), whose element subscribes to `Turbo::StreamsChannel` on `/cable` with the stock
//! `@rails/actioncable` consumer.
//!
//! `POST /messages` broadcasts `TurboStream::append("messages", …)` to the room's stream, the
//! user's text escaped; every page open on the room appends it without a reload, exactly as
//! with Rails' `broadcast_append_to`. Turbo posts the form with `fetch` and gets a
//! `<turbo-stream>` back that resets the form; any other client gets `303 See Other` back to
//! the room.
//!
//! Posts must come from this site (an `Origin` of another site, or `Sec-Fetch-Site:
//! cross-site`, gets 403). There are no users or passwords: anyone who can reach the page can
//! post to any room. Rooms keep their last [`HISTORY`] messages in memory, for at most
//! [`MAX_ROOMS`] rooms.

use actioncable::{Cable, CableHandle};
use actioncable_rails::turbo::{Html, StreamsChannel, TurboStream, TurboStreams, stream_name_from};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Router, middleware};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tower_http::services::ServeFile;

/// Messages a room keeps for the page (older ones are dropped).
pub const HISTORY: usize = 50;
/// Rooms that keep a history; messages to further rooms are broadcast but not kept.
pub const MAX_ROOMS: usize = 100;
/// The longest message, in characters.
pub const MAX_TEXT: usize = 500;

/// Where the web page's JavaScript comes from when `TURBO_ASSETS` is unset: the repository's
/// `js-client` folder (`npm ci` there installs the packages).
pub const DEFAULT_ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../js-client");

/// The ES modules the page loads, inside a `js-client` folder, and the URL each is served at.
const MODULES: [(&str, &str); 2] = [
    // @hotwired/turbo's `module` entry.
    (
        "/vendor/turbo.esm.js",
        "node_modules/@hotwired/turbo/dist/turbo.es2017-esm.js",
    ),
    // @rails/actioncable's `module` entry: turbo-rails imports it as `@rails/actioncable/src`.
    (
        "/vendor/actioncable.esm.js",
        "node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js",
    ),
];

/// @hotwired/turbo-rails' `module` entry is `app/javascript/turbo/index.js`, whose files import
/// each other without the `.js` suffix: each is served under both names.
const TURBO_RAILS_DIR: &str = "node_modules/@hotwired/turbo-rails/app/javascript/turbo";
const TURBO_RAILS_URL: &str = "/vendor/turbo-rails";

/// The import map: the bare names the modules import, mapped to where they are served.
const IMPORT_MAP: &str = r#"{"imports":{"@hotwired/turbo-rails":"/vendor/turbo-rails/index.js","@hotwired/turbo":"/vendor/turbo.esm.js","@rails/actioncable/src":"/vendor/actioncable.esm.js"}}"#;

/// The page's own module: loading turbo-rails defines `<turbo-cable-stream-source>` and starts
/// Turbo Drive.
const APP_JS: &str = "import \"@hotwired/turbo-rails\";\n";

const STYLE_CSS: &str = include_str!("style.css");

/// The settings of the app.
#[derive(Clone)]
pub struct Settings {
    /// Turbo's verifier: signs the page's stream names, checks the ones pages subscribe with.
    pub turbo: TurboStreams,
    /// The `js-client` folder whose `node_modules` holds the page's JavaScript.
    pub assets: PathBuf,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("turbo", &self.turbo)
            .field("assets", &self.assets)
            .finish()
    }
}

/// What keeps the page from working, one message each, for startup warnings (empty when all is
/// in place; the cable works either way).
pub fn asset_problems(assets: &Path) -> Vec<String> {
    let mut missing: Vec<PathBuf> = MODULES.iter().map(|(_, file)| assets.join(file)).collect();
    missing.push(assets.join(TURBO_RAILS_DIR).join("index.js"));
    missing.retain(|file| !file.is_file());
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "the page's JavaScript is not installed ({} missing): run `npm ci` in {}, or set \
         TURBO_ASSETS to the repository's js-client folder",
        missing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        assets.display()
    )]
}

/// The app: the page, `POST /messages`, the JavaScript, and the cable at `/cable`, with its
/// handle (for broadcasts and shutdown).
///
/// # Errors
/// When the cable's settings are invalid.
pub fn app(settings: Settings) -> Result<(Router, CableHandle), actioncable::ConfigError> {
    let cable = Cable::builder_with_state(settings.turbo.clone())
        .channel::<StreamsChannel>()
        .build()?;
    let handle = cable.handle();
    let state = Arc::new(AppState {
        turbo: settings.turbo,
        handle: handle.clone(),
        rooms: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    let mut router = Router::new()
        .route("/", get(page))
        .route("/messages", axum::routing::post(post_message))
        .route("/app.js", get(|| async { javascript(APP_JS) }))
        .route("/style.css", get(|| async { stylesheet() }));
    for (url, file) in MODULES {
        router = router.route_service(url, ServeFile::new(settings.assets.join(file)));
    }
    router = serve_turbo_rails(router, &settings.assets.join(TURBO_RAILS_DIR));
    let router = router
        .with_state(state)
        .layer(middleware::map_response(security_headers))
        .merge(cable.router("/cable"))
        // Liveness (the process answers) and readiness (not while shutting down or while the
        // pub/sub adapter is down): docs/operations.md.
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(handle.readiness_router("/ready"));
    Ok((router, handle))
}

/// Each `.js` file of turbo-rails' module folder, at `/vendor/turbo-rails/<name>.js` and
/// `/vendor/turbo-rails/<name>` (how its files import each other).
fn serve_turbo_rails(mut router: Router<Arc<AppState>>, dir: &Path) -> Router<Arc<AppState>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return router;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(stem), Some("js")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        router = router
            .route_service(
                &format!("{TURBO_RAILS_URL}/{stem}.js"),
                ServeFile::new(&path),
            )
            .route_service(&format!("{TURBO_RAILS_URL}/{stem}"), ServeFile::new(&path));
    }
    router
}

struct AppState {
    turbo: TurboStreams,
    handle: CableHandle,
    rooms: Mutex<HashMap<String, VecDeque<Html>>>,
    next_id: AtomicU64,
}

impl AppState {
    fn history(&self, room: &str) -> Vec<Html> {
        let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .get(room)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remember(&self, room: &str, message: Html) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if !rooms.contains_key(room) && rooms.len() >= MAX_ROOMS {
            return;
        }
        let history = rooms.entry(room.to_owned()).or_default();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(message);
    }
}

/// The stream of a room: Rails' `turbo_stream_from "rooms", room`.
pub fn room_stream(room: &str) -> String {
    stream_name_from(&[&"rooms", &room])
}

/// Whether `room` is a room name: 1 to 32 of `a-z`, `0-9`, `-`, `_`, starting with a letter or
/// digit.
pub fn valid_room(room: &str) -> bool {
    let mut chars = room.chars();
    room.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// One message as it appears in `#messages`.
fn message_html(id: u64, text: &str) -> Html {
    let mut html = Html::trusted(format!(r#"<p class="message" id="message_{id}">"#));
    html.push_text(text).push_trusted("</p>");
    html
}

/// The form, also what a Turbo submission gets back (fresh, so the field is empty again).
fn form_html(room: &str) -> Html {
    let mut html = Html::trusted(
        r#"<form id="new_message" action="/messages" method="post"><input type="hidden" name="room" value=""#,
    );
    html.push_text(room).push_trusted(&format!(
        r#""><label for="message_text">Message</label><input id="message_text" name="text" required maxlength="{MAX_TEXT}" autocomplete="off" autofocus><button type="submit">Send</button></form>"#
    ));
    html
}

#[derive(Deserialize)]
struct RoomQuery {
    room: Option<String>,
}

async fn page(State(state): State<Arc<AppState>>, Query(query): Query<RoomQuery>) -> Response {
    let room = query.room.unwrap_or_else(|| "lobby".to_owned());
    if !valid_room(&room) {
        return bad_request("a room is 1 to 32 of a-z, 0-9, - and _");
    }
    let mut messages = Html::new();
    for message in state.history(&room) {
        messages.push_html(&message);
    }
    let mut html = Html::trusted(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>#"#,
    );
    html.push_text(&room)
        .push_trusted(r#" · Turbo Streams on actioncable-rs</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/style.css"><script type="importmap">"#)
        .push_trusted(IMPORT_MAP)
        .push_trusted(r#"</script><script type="module" src="/app.js"></script></head><body>"#)
        .push_html(&state.turbo.turbo_stream_from(&room_stream(&room)))
        .push_trusted(r#"<header><h1>#"#)
        .push_text(&room)
        .push_trusted(r#"</h1><p class="status" role="status"></p></header><main><div id="messages" role="log" aria-label="Messages">"#)
        .push_html(&messages)
        .push_trusted("</div>")
        .push_html(&form_html(&room))
        .push_trusted("</main></body></html>");
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html.into_string(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct NewMessage {
    room: String,
    text: String,
}

/// Turbo's content type for `<turbo-stream>` answers.
const TURBO_STREAM_TYPE: &str = "text/vnd.turbo-stream.html";

async fn post_message(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<NewMessage>,
) -> Response {
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "posts must come from this site").into_response();
    }
    if !valid_room(&form.room) {
        return bad_request("a room is 1 to 32 of a-z, 0-9, - and _");
    }
    let text = form.text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        return bad_request("a message is 1 to 500 characters");
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let message = message_html(id, text);
    state.remember(&form.room, message.clone());
    let update = TurboStream::append("messages", message);
    if let Err(error) = state
        .handle
        .broadcast(&room_stream(&form.room), &update)
        .await
    {
        tracing::error!(%error, "the message could not be broadcast");
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(TURBO_STREAM_TYPE));
    if wants_stream {
        let reset = TurboStream::replace("new_message", form_html(&form.room));
        return (
            [(
                header::CONTENT_TYPE,
                "text/vnd.turbo-stream.html; charset=utf-8",
            )],
            reset.to_string(),
        )
            .into_response();
    }
    // The room name is made of URL-safe characters (`valid_room`).
    Redirect::to(&format!("/?room={}", form.room)).into_response()
}

/// A post from another site: its `Origin` is not this host, or the browser says so.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if text("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => {
            origin != format!("http://{host}") && origin != format!("https://{host}")
        }
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn bad_request(why: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, why).into_response()
}

fn javascript(source: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        source,
    )
        .into_response()
}

fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

/// The page's Content-Security-Policy: scripts from this site plus the one inline import map
/// (by its hash), connections to this site (`/cable` included), no framing, forms to this site.
/// Styles may be inline because Turbo's progress bar adds a `<style>` element.
pub fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(IMPORT_MAP));
    format!(
        "default-src 'none'; script-src 'self' 'sha256-{hash}'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

async fn security_headers(mut response: Response) -> Response {
    static CSP: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    let csp = CSP.get_or_init(|| {
        HeaderValue::from_str(&content_security_policy())
            .unwrap_or_else(|_| unreachable!("the policy is ASCII"))
    });
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for ok in ["lobby", "a", "room-1_b", "0"] {
            assert!(valid_room(ok), "{ok}");
        }
        for bad in ["", "Lobby", "-a", "a b", "a/b", "é", &"a".repeat(33)] {
            assert!(!valid_room(bad), "{bad}");
        }
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(!cross_site(&headers(&[("host", "a:1")])));
        assert!(!cross_site(&headers(&[
            ("host", "a:1"),
            ("origin", "http://a:1")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "a:1"),
            ("origin", "http://b:1")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "a:1"),
            ("sec-fetch-site", "cross-site")
        ])));
    }

    #[test]
    fn user_text_is_escaped_in_messages() {
        assert_eq!(
            message_html(3, "<script>x</script>").as_str(),
            r#"<p class="message" id="message_3">&lt;script&gt;x&lt;/script&gt;</p>"#
        );
    }
}
