// Test support for the Rails reference app (../interop/rails): Rails' own ActionCable server, from
// Debian's packages, under puma. The side-by-side, smoke and Rails interop tests compare our
// servers with it, and with its port to this framework, examples/rails-twin.
//
// These tests never skip. Without Ruby's ActionCable they fail, naming the packages to install
// (scripts/test.sh installs them); without the twin binary they fail naming the build command.

import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, withTimeout } from "./consumer.mjs";
import { JS_CLIENT_DIR } from "./demo.mjs";
import { SCRIPT_MS } from "./timing.mjs";

export const RAILS_APP_DIR = join(JS_CLIENT_DIR, "..", "interop", "rails");
export const TWIN_BIN = process.env.RAILS_TWIN_BIN || join(JS_CLIENT_DIR, "..", "target", "debug", "example-rails-twin");
const LIB_SH = join(JS_CLIENT_DIR, "..", "scripts", "lib.sh");

/**
 * Why the Rails reference app cannot run here (a sentence naming the packages to install), or
 * false. Asks scripts/lib.sh's rails_missing, the check scripts/test.sh makes too.
 */
export function railsMissing() {
  try {
    const why = execFileSync("bash", ["-c", 'source "$1"; rails_missing && echo "install: apt-get install ${RAILS_PACKAGES[*]}"', "_", LIB_SH],
      { encoding: "utf8", timeout: SCRIPT_MS });
    return `the Rails reference app cannot run: ${why.trim().replace(/\n/g, "; ")}`;
  } catch (err) {
    if (err.status === 1) return false; // rails_missing: nothing is missing
    throw err;
  }
}

/** Throws unless examples/rails-twin is built. */
export function assertTwinBuilt() {
  if (!existsSync(TWIN_BIN)) {
    throw new Error(`example-rails-twin not found at ${TWIN_BIN}: run \`cargo build --workspace --bins\` ` +
      "in the repository root (or set RAILS_TWIN_BIN)");
  }
}

/** { name, cable (ws URL), base (http URL of the control routes) } of a server's /cable URL. */
export function serverAt(name, cableUrl) {
  const base = new URL(cableUrl);
  base.protocol = base.protocol === "wss:" ? "https:" : "http:";
  base.pathname = "/";
  base.search = "";
  return { name, cable: cableUrl, base: base.toString().replace(/\/$/, "") };
}

/** Run one of the app's scripts (bounded); resolves to its stdout, rejects with its output. */
function appScript(script, env) {
  return new Promise((resolve, reject) => {
    execFile(join(RAILS_APP_DIR, script), [], { env: { ...process.env, ...env }, timeout: SCRIPT_MS }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\n${script} stdout: ${stdout}\n${script} stderr: ${stderr}`;
        reject(err);
      } else {
        resolve(stdout);
      }
    });
  });
}

/**
 * Start the Rails reference app with interop/rails/start.sh on a spare port, its state in a new
 * temporary directory. `env`: its settings (CABLE_ADAPTER, REDIS_URL, CABLE_CHANNEL_PREFIX,
 * CABLE_DISABLE_FORGERY...); `logFile`: where puma and ActionCable log. Resolves to
 * serverAt("rails", …) plus stop(), which runs stop.sh (also run if this process exits first).
 */
export async function startRailsApp({ env = {}, logFile } = {}) {
  const why = railsMissing();
  if (why) throw new Error(why);
  const stateDir = mkdtempSync(join(tmpdir(), "actioncable-rails-"));
  const stateEnv = { RAILS_STATE_DIR: stateDir };
  const stopSync = () => {
    try {
      execFileSync(join(RAILS_APP_DIR, "stop.sh"), [], { env: { ...process.env, ...stateEnv }, stdio: "ignore", timeout: SCRIPT_MS });
    } catch { /* best effort: the process is exiting */ }
  };
  process.once("exit", stopSync);
  const port = await freePort();
  try {
    await appScript("start.sh", { ...env, ...stateEnv, PORT: String(port), ...(logFile ? { RAILS_LOG: logFile } : {}) });
  } catch (err) {
    process.removeListener("exit", stopSync);
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
  let stopped = null;
  return {
    ...serverAt("rails", `ws://127.0.0.1:${port}/cable`),
    port,
    stop() {
      stopped ??= withTimeout(appScript("stop.sh", stateEnv), SCRIPT_MS, "interop/rails/stop.sh").finally(() => {
        process.removeListener("exit", stopSync);
        rmSync(stateDir, { recursive: true, force: true });
      });
      return stopped;
    },
  };
}

/**
 * The Rails reference app for tests that share one (async adapter): the one scripts/test.sh
 * started if RAILS_CABLE_URL names it, else a new one that stop() ends.
 */
export async function railsApp({ logFile } = {}) {
  const url = process.env.RAILS_CABLE_URL;
  if (url) return { ...serverAt("rails", url), stop: async () => {} };
  return startRailsApp({ logFile });
}
