//! The web page: `js-client/public/` at `/`, and the clients' ES modules read straight from
//! `js-client/node_modules` (`npm ci` puts them there; nothing is copied into the repository):
//! the stock `@rails/actioncable` consumer at [`CONSUMER_MODULE_URL`], and the `@anycable/web`
//! client with the two packages it imports at [`VENDOR_PACKAGES`]' URLs, for the page's
//! `?client=anycable` mode (the extended protocol: no message lost across reconnects).
//!
//! [`security_headers`] adds to every answer a Content-Security-Policy that admits only the
//! site's own scripts, styles and connections (`/cable` included: `connect-src 'self'` covers
//! the same origin's `ws:`/`wss:`), no framing, `nosniff` and a referrer policy. The one inline
//! script it admits is the page's import map, by its hash ([`IMPORT_MAP_HASH`]): the
//! `@anycable/*` modules import each other by bare name, which only an import map resolves, and
//! an import map cannot be an external file.

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

/// The npm packages of the `@anycable/web` client, each served whole at its URL: the URL, and
/// the package's folder inside the `js-client` folder. `public/index.html`'s import map names
/// the same URLs.
pub const VENDOR_PACKAGES: [(&str, &str); 3] = [
    ("/vendor/anycable-web", "node_modules/@anycable/web"),
    ("/vendor/anycable-core", "node_modules/@anycable/core"),
    ("/vendor/nanoevents", "node_modules/nanoevents"),
];

/// The SHA-256 of the import map in `public/index.html` (the text between its `<script>`
/// tags), as CSP writes it. Change the map and this together: the test `import_map_hash_matches`
/// prints the new value.
pub const IMPORT_MAP_HASH: &str = import_map_hash!();

macro_rules! import_map_hash {
    () => {
        "sha256-86lvLy0DoQjlO6ChC87m7FHpWAPaEdAKChw4lwGFFyM="
    };
}
use import_map_hash;

/// The page's Content-Security-Policy: scripts, styles and connections from this origin only,
/// no inline script or style but the import map ([`IMPORT_MAP_HASH`]), no plugins, no `<base>`,
/// forms to this origin, never framed. Images may also be `data:` URLs (the page's blank
/// favicon).
pub const CONTENT_SECURITY_POLICY: &str = concat!(
    "default-src 'none'; script-src 'self' '",
    import_map_hash!(),
    "'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'"
);

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

    /// The folders of [`VENDOR_PACKAGES`] that are missing.
    fn missing_packages(&self) -> Vec<&'static str> {
        VENDOR_PACKAGES
            .iter()
            .filter(|(_, dir)| !self.root.join(dir).join("package.json").is_file())
            .map(|(_, dir)| *dir)
            .collect()
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
        } else if let [first, ..] = self.missing_packages()[..] {
            problems.push(format!(
                "the @anycable/web client is not installed ({first} is missing): run `npm ci` in \
                 {}; until then the page's ?client=anycable mode shows an error (the stock \
                 consumer's page works)",
                root.display()
            ));
        }
        problems
    }

    /// Adds the page to `router`: the consumer module at [`CONSUMER_MODULE_URL`], and the
    /// public folder for every path no route takes (so `/` is `index.html`).
    pub fn serve(&self, router: Router) -> Router {
        let router =
            router.route_service(CONSUMER_MODULE_URL, ServeFile::new(self.consumer_module()));
        VENDOR_PACKAGES
            .iter()
            .fold(router, |router, (url, dir)| {
                router.nest_service(url, ServeDir::new(self.root.join(dir)))
            })
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
        let problems = Assets::new(&page_only).problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("@anycable/web"), "{problems:?}");

        for (_, dir) in VENDOR_PACKAGES {
            std::fs::create_dir_all(page_only.join(dir)).unwrap();
            std::fs::write(page_only.join(dir).join("package.json"), "{}").unwrap();
        }
        assert_eq!(Assets::new(&page_only).problems(), Vec::<String>::new());

        for dir in [empty, page_only] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    /// The CSP admits exactly the import map `public/index.html` carries, and the map names the
    /// URLs the packages are served at.
    #[test]
    fn import_map_hash_matches() {
        use base64::Engine;
        use sha2::Digest;
        let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../js-client/public/index.html");
        let html = std::fs::read_to_string(&page).unwrap();
        let open = r#"<script type="importmap">"#;
        let start = html.find(open).expect("an import map") + open.len();
        let map = &html[start..start + html[start..].find("</script>").unwrap()];
        let digest = sha2::Sha256::digest(map.as_bytes());
        let hash = format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        assert_eq!(hash, IMPORT_MAP_HASH, "set IMPORT_MAP_HASH to {hash}");
        assert!(CONTENT_SECURITY_POLICY.contains(&format!("'{hash}'")));
        let map: serde_json::Value = serde_json::from_str(map).unwrap();
        for (url, dir) in VENDOR_PACKAGES {
            assert!(
                map["imports"]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|v| v.as_str().unwrap().starts_with(&format!("{url}/"))),
                "{url} ({dir}) is in the import map"
            );
        }
    }
}
