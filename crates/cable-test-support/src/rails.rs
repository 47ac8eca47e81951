//! The Rails reference app (`interop/rails`): Rails' own ActionCable server, from Debian's
//! packages, under puma, started by the app's own scripts as the JavaScript tests start it
//! (`js-client/test/support/rails.mjs`).
//!
//! Never skipped: without Ruby's ActionCable, `start.sh` fails naming the packages to install
//! (`scripts/test.sh` installs them), and so does the test.

use crate::process::spare_port;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The origin the app allows (`http://localhost` or `http://127.0.0.1` on any port, as a Rails
/// app in development does); Rails refuses an upgrade without one.
pub const RAILS_ORIGIN: &str = "http://localhost";

/// The Rails reference app on a spare port (async adapter), stopped with its `stop.sh` on drop.
#[derive(Debug)]
pub struct RailsApp {
    port: u16,
    state: PathBuf,
}

fn app_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/rails")
}

impl RailsApp {
    /// Starts the app with `interop/rails/start.sh` (which returns once it answers, at most
    /// 15 s), its state in a directory of its own.
    ///
    /// # Panics
    /// When the app cannot start; the message has the script's output (an install hint when
    /// Ruby's ActionCable is missing).
    pub fn start() -> RailsApp {
        let port = spare_port();
        let state =
            std::env::temp_dir().join(format!("cable-test-{}-rails-{port}", std::process::id()));
        std::fs::create_dir_all(&state).expect("create the app's state directory");
        let output = Command::new(app_dir().join("start.sh"))
            .env("PORT", port.to_string())
            .env("RAILS_STATE_DIR", &state)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run interop/rails/start.sh: {e}"));
        let app = RailsApp { port, state };
        assert!(
            output.status.success(),
            "the Rails reference app did not start ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        app
    }

    /// `ws://127.0.0.1:<port>/cable`
    pub fn cable_url(&self) -> String {
        format!("ws://127.0.0.1:{}/cable", self.port)
    }

    /// `http://127.0.0.1:<port>`, for its control routes (`POST /broadcast?stream=…`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RailsApp {
    fn drop(&mut self) {
        let _ = Command::new(app_dir().join("stop.sh"))
            .env("RAILS_STATE_DIR", &self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
