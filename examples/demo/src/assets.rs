//! The web page: `js-client/public/` at `/`, and the stock `@rails/actioncable` consumer's ES
//! module at [`CONSUMER_MODULE_URL`], read straight from `js-client/node_modules` (`npm ci`
//! puts it there; nothing is copied into the repository). The page's modules import it by that
//! URL (an import map would be an inline script, which the page's CSP does not allow).
//!
//! [`security_headers`] adds to every answer a Content-Security-Policy that admits only the
//! site's own scripts, styles and connections (`/cable` included: `connect-src 'self'` covers
//! the same origin's `ws:`/`wss:`), no framing, `nosniff` and a referrer policy.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use std::path::{Path, PathBuf};
use tower_http::services::{ServeDir, ServeFile};

/// Where the page imports the consumer from (see the import map in `public/index.html`).
pub const CONSUMER_MODULE_URL: &str = "/vendor/actioncable.esm.js";

/// The consumer's ES module inside the `js-client` folder: the package's `module` entry.
pub const CONSUMER_MODULE_PATH: &str =
    "node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js";

/// The page's Content-Security-Policy: scripts, styles and connections from this origin only,
/// no inline script or style, no plugins, no `<base>`, forms to this origin, never framed.
/// Images may also be `data:` URLs (the page's blank favicon).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The headers [`security_headers`] sets on every answer.
pub const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    // For browsers that predate `frame-ancestors`.
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // Full URLs to this site only; other sites (a notification's link) learn nothing.
    (header::REFERRER_POLICY, "same-origin"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
];

/// Adds [`SECURITY_HEADERS`] to every answer of `router` (the page, its assets, the API, and
/// `/cable`'s refusals), replacing any of the same name.
pub fn security_headers(router: Router) -> Router {
    router.layer(axum::middleware::map_response(add_security_headers))
}

async fn add_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The web page's files: a `js-client` folder (`DEMO_ASSETS`).
#[derive(Debug, Clone)]
pub struct Assets {
    root: PathBuf,
}

impl Assets {
    /// The page served from `root` (a `js-client` folder).
    pub fn new(root: impl Into<PathBuf>) -> Assets {
        Assets { root: root.into() }
    }

    /// The `js-client` folder, resolved when it exists (for messages).
    pub fn root(&self) -> PathBuf {
        self.root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone())
    }

    /// The folder served at `/`.
    pub fn public_dir(&self) -> PathBuf {
        self.root.join("public")
    }

    /// The file served at [`CONSUMER_MODULE_URL`].
    pub fn consumer_module(&self) -> PathBuf {
        self.root.join(CONSUMER_MODULE_PATH)
    }

    /// What keeps the page from working, one message each, for startup warnings. Empty when
    /// all is in place. The HTTP API and `/cable` work either way.
    pub fn problems(&self) -> Vec<String> {
        let root = self.root();
        let mut problems = Vec::new();
        if !self.public_dir().join("index.html").is_file() {
            problems.push(format!(
                "the web page is missing: no public/index.html in {}; set DEMO_ASSETS to the \
                 repository's js-client folder (the HTTP API and /cable work without it)",
                root.display()
            ));
        } else if !self.consumer_module().is_file() {
            problems.push(format!(
                "the @rails/actioncable consumer is not installed ({} is missing): run `npm ci` \
                 in {} (or start the demo with scripts/demo.sh, which does), then reload the \
                 page; until then it shows an error instead of the chat",
                Path::new(CONSUMER_MODULE_PATH).display(),
                root.display()
            ));
        }
        problems
    }

    /// Adds the page to `router`: the consumer module at [`CONSUMER_MODULE_URL`], and the
    /// public folder for every path no route takes (so `/` is `index.html`).
    pub fn serve(&self, router: Router) -> Router {
        router
            .route_service(CONSUMER_MODULE_URL, ServeFile::new(self.consumer_module()))
            .fallback_service(ServeDir::new(self.public_dir()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("example-demo-assets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn problems_name_the_fix() {
        let empty = temp_dir("empty");
        let problems = Assets::new(&empty).problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("DEMO_ASSETS"), "{problems:?}");

        let page_only = temp_dir("page-only");
        std::fs::create_dir_all(page_only.join("public")).unwrap();
        std::fs::write(page_only.join("public/index.html"), "<!doctype html>").unwrap();
        let problems = Assets::new(&page_only).problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("npm ci"), "{problems:?}");

        let module = page_only.join(CONSUMER_MODULE_PATH);
        std::fs::create_dir_all(module.parent().unwrap()).unwrap();
        std::fs::write(&module, "export {}").unwrap();
        assert_eq!(Assets::new(&page_only).problems(), Vec::<String>::new());

        for dir in [empty, page_only] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
