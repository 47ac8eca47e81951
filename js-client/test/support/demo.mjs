// Test support for the Rust demo server (examples/demo, binary `example-demo`): start it as a
// real process, log in over HTTP, forge tokens for negative tests, and clean up per test.
//
// The binary is ../target/debug/example-demo (relative to js-client/), or $DEMO_BIN. It is not
// built here: scripts/test.sh runs `cargo build --workspace --bins` before `npm test`.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createHmac } from "node:crypto";
import { createConsumer, closeConsumer, startProcess, freePort, withTimeout } from "./consumer.mjs";
import { WAIT_MS, CLOSE_MS, PROCESS_START_MS, PROCESS_STOP_MS } from "./timing.mjs";

export const JS_CLIENT_DIR = fileURLToPath(new URL("../..", import.meta.url));
export const DEMO_BIN = process.env.DEMO_BIN || join(JS_CLIENT_DIR, "..", "target", "debug", "example-demo");
export const ARTIFACTS = join(JS_CLIENT_DIR, "test-artifacts", "demo");

/** The secret the tests start the demo with, so they can sign (and forge) tokens themselves. */
export const TEST_SECRET = "js-client-e2e-secret-0123456789abcdef-0123456789";

export const READY_LINE = /^demo listening on http:\/\/(\S+):(\d+)$/;

/** Throws a clear error when the demo binary has not been built. */
export function assertDemoBuilt() {
  if (!existsSync(DEMO_BIN)) {
    throw new Error(`example-demo binary not found at ${DEMO_BIN}.\n` +
      "Build it first: run `cargo build -p example-demo` in the repository root " +
      "(or set DEMO_BIN to the binary's path).");
  }
}

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);

/** The log file of the demo(s) a test named `name` starts. */
export const demoLogFile = (name) => join(ARTIFACTS, `${slug(name)}.log`);

/**
 * Start example-demo and wait for its ready line.
 *   port:     fixed port (default 0: the demo picks one and prints it)
 *   database: DEMO_DATABASE (default ":memory:")
 *   env:      more environment (ALLOWED_ORIGINS, PRIVATE_ROOMS, ...)
 *   logName:  log file name under test-artifacts/demo/ (output is appended)
 * Resolves to { proc, port, baseUrl, cableUrl, stop() }.
 */
export async function startDemo({ port = 0, database = ":memory:", env = {}, logName = "demo", timeoutMs = PROCESS_START_MS } = {}) {
  assertDemoBuilt();
  const proc = await startProcess(DEMO_BIN, [], {
    env: {
      PORT: String(port),
      BIND: "127.0.0.1",
      DEMO_DATABASE: database,
      SECRET_KEY_BASE: TEST_SECRET,
      RUST_LOG: process.env.DEMO_RUST_LOG || "info",
      NO_COLOR: "1",
      ...env,
    },
    readyLogLine: READY_LINE,
    timeoutMs,
    logFile: demoLogFile(logName),
  });
  const ready = proc.lines.find((l) => READY_LINE.test(l));
  const [, host, actualPort] = ready.match(READY_LINE);
  const baseUrl = `http://${host}:${actualPort}`;
  return {
    proc,
    port: Number(actualPort),
    baseUrl,
    cableUrl: `ws://${host}:${actualPort}/cable`,
    stop: (opts) => proc.stop(opts),
  };
}

/** POST /login → { user, token, cookie ("user=<signed>", ready for a Cookie header), setCookie }. */
export async function login(baseUrl, name) {
  const res = await fetch(`${baseUrl}/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const body = await res.json();
  if (res.status !== 200) throw new Error(`login ${name}: HTTP ${res.status} ${JSON.stringify(body)}`);
  const setCookie = res.headers.get("set-cookie");
  return { user: body.user, token: body.token, setCookie, cookie: setCookie?.split(";")[0] };
}

/** fetch + JSON (or text) body, bounded by a timeout. Resolves to { status, headers, body }. */
export async function http(baseUrl, path, { method = "GET", token, cookie, json, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (cookie) h.Cookie = cookie;
  if (json !== undefined) h["Content-Type"] = "application/json";
  const res = await fetch(`${baseUrl}${path}`, {
    method, headers: h, body: json === undefined ? undefined : JSON.stringify(json), signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await res.text();
  let body = text;
  if ((res.headers.get("content-type") || "").includes("json")) body = text === "" ? null : JSON.parse(text);
  return { status: res.status, headers: res.headers, body };
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** A JWT signed with HS256 and `secret` (or unsigned with alg "none" when secret is null). */
export function signJwt(claims, secret, { alg = "HS256" } = {}) {
  const head = `${b64url({ typ: "JWT", alg })}.${b64url(claims)}`;
  if (secret === null) return `${head}.`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

export const nowSecs = () => Math.floor(Date.now() / 1000);

export const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/**
 * Everything one test starts, stopped again by cleanup() (consumers first, then processes,
 * then temp dirs). Cleanup never throws; it is bounded by timeouts.
 */
export class Scope {
  constructor(name) {
    this.name = name;
    rmSync(demoLogFile(name), { force: true }); // this run's log only (a restarted demo appends)
    this.consumers = [];
    this.demos = [];
    this.dirs = [];
  }

  async demo(opts = {}) {
    const d = await startDemo({ logName: this.name, ...opts });
    this.demos.push(d);
    return d;
  }

  consumer(url, opts) {
    const c = createConsumer(url, opts);
    this.consumers.push(c);
    return c;
  }

  tempDir() {
    const dir = mkdtempSync(join(tmpdir(), "actioncable-demo-e2e-"));
    this.dirs.push(dir);
    return dir;
  }

  async cleanup() {
    await Promise.allSettled(this.consumers.map((c) => closeConsumer(c, CLOSE_MS)));
    await Promise.allSettled(this.demos.map((d) => withTimeout(d.stop(), 2 * PROCESS_STOP_MS, "demo stop")));
    for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
  }
}

export { freePort };
