// Test support: run the STOCK `@rails/actioncable` consumer in Node (>= 20) against any
// ActionCable-compatible server, plus helpers to spawn and stop server processes.
//
// Why shims are needed at all (checked against @rails/actioncable 8.1.400 on Node 20.20):
//
// * Importing is shim-free. The package has no "exports" map and no "type", so Node ignores its
//   "module" field and `import * as ActionCable from "@rails/actioncable"` loads the UMD build
//   `app/assets/javascripts/actioncable.js` ("main") as CommonJS; Node's CJS lexer still exposes
//   every named export (createConsumer, adapters, logger, INTERNAL, Consumer, ...). At load time
//   the bundle only evaluates guarded expressions (`typeof WebSocket`, `typeof console`), so it
//   touches no browser global. (The ESM build can also be imported by its deep path
//   ".../actioncable.esm.js" on Node 20.20 thanks to module syntax detection; it is the same code.)
//   Because the CJS exports object is shared, mutating `ActionCable.adapters` here is seen by the
//   consumer code.
//
// * `adapters.WebSocket` must be set. Node 20 has no global WebSocket (only behind
//   --experimental-websocket), so the bundle captured `undefined`. On Node >= 22 it would capture
//   undici's WebSocket, which cannot send an Origin header; servers that check Origin (Rails does,
//   and answers 404) would refuse it. We install a subclass of `ws` that passes `origin` (default
//   http://localhost) and optional extra headers (e.g. Cookie).
//
// * `addEventListener` / `removeEventListener` must exist as globals. ConnectionMonitor.start()
//   calls the bare global `addEventListener("visibilitychange", ...)` right after
//   `new adapters.WebSocket(...)` inside Connection#open(), and stop() calls
//   `removeEventListener`. Node has neither on globalThis, so open() would throw a ReferenceError
//   after the socket was created. No-op versions are enough: "visibilitychange" never fires in
//   Node, so the handler that reads `document.visibilityState` never runs.
//
// * `document` is NOT shimmed. It is only read by createWebSocketURL() for a URL that does not
//   start with ws:/wss: (relative or http URLs, resolved through an <a> element) and by
//   getConfig() when createConsumer() is called without a URL (<meta name="action-cable-url">).
//   Our createConsumer() always passes an absolute ws(s):// URL (it rewrites http(s):// itself).
//
// Everything that waits takes an explicit timeout and rejects with a descriptive Error; nothing
// here can hang a test forever.

import * as ActionCable from "@rails/actioncable";
import WebSocket from "ws";
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import net from "node:net";

export { ActionCable };

export const DEFAULT_ORIGIN = "http://localhost";
export const DEFAULT_TIMEOUT_MS = 5000;

// ---------------------------------------------------------------------------------------------
// Global shims (installed once, on import of this module)
// ---------------------------------------------------------------------------------------------

const noop = () => {};
if (typeof globalThis.addEventListener !== "function") globalThis.addEventListener = noop;
if (typeof globalThis.removeEventListener !== "function") globalThis.removeEventListener = noop;

// Options used when a socket is opened outside one of our consumers (e.g. a consumer made with
// ActionCable.createConsumer directly). Change with configureDefaults().
const defaultSocketOptions = { origin: DEFAULT_ORIGIN, headers: {}, handshakeTimeoutMs: DEFAULT_TIMEOUT_MS };

/** Change the options used for sockets opened by consumers not made with our createConsumer(). */
export function configureDefaults({ origin, headers, handshakeTimeoutMs } = {}) {
  if (origin !== undefined) defaultSocketOptions.origin = origin;
  if (headers !== undefined) defaultSocketOptions.headers = { ...headers };
  if (handshakeTimeoutMs !== undefined) defaultSocketOptions.handshakeTimeoutMs = handshakeTimeoutMs;
}

// The consumer constructs sockets with `new adapters.WebSocket(url, protocols)` and no way to
// pass options; `adapters` is module-global, shared by every consumer. To give each consumer its
// own origin/headers we set `socketContext` for the duration of that consumer's (synchronous)
// Connection#open() call; see createConsumer().
let socketContext = null;

/**
 * The `ws` subclass installed as ActionCable.adapters.WebSocket.
 * Adds (without changing the consumer's own on* handlers):
 *   - `frames`: every text frame received, as { at, data } (raw string), for protocol assertions;
 *   - `sent`: every frame sent;
 *   - `upgradeHeaders`: the 101 response headers; `closeInfo`: { code, reason } once closed;
 *   - `errors`: error messages (e.g. "Unexpected server response: 404").
 */
export class NodeWebSocket extends WebSocket {
  // Connection#getState() does `for (state in adapters.WebSocket)` and returns the first key
  // whose value equals readyState. `ws` extends EventEmitter, so the statics of EventEmitter
  // (defaultMaxListeners, ...) are enumerable too; own constants here make sure the four state
  // names are always found first.
  static CONNECTING = WebSocket.CONNECTING;
  static OPEN = WebSocket.OPEN;
  static CLOSING = WebSocket.CLOSING;
  static CLOSED = WebSocket.CLOSED;

  constructor(url, protocols) {
    const ctx = socketContext ?? { options: defaultSocketOptions, sockets: null };
    const { origin, headers, handshakeTimeoutMs } = ctx.options;
    const wsOptions = { headers: { ...(headers || {}) }, handshakeTimeout: handshakeTimeoutMs };
    if (origin !== null && origin !== undefined) wsOptions.origin = origin; // null → no Origin header
    super(url, protocols, wsOptions);
    this.frames = [];
    this.sent = [];
    this.errors = [];
    this.upgradeHeaders = null;
    this.closeInfo = null;
    this.openedAt = Date.now();
    // Extra listeners via EventEmitter; the consumer uses the onopen/onmessage/... properties,
    // which `ws` keeps separately, so neither disturbs the other. An 'error' listener also
    // guarantees an error can never become an uncaught exception.
    this.on("upgrade", (res) => { this.upgradeHeaders = res.headers; });
    this.on("message", (data, isBinary) => {
      this.frames.push({ at: Date.now(), data: isBinary ? data : data.toString("utf8"), binary: isBinary });
    });
    this.on("error", (err) => { this.errors.push(err.message); });
    this.on("close", (code, reason) => { this.closeInfo = { code, reason: reason.toString("utf8"), at: Date.now() }; });
    if (ctx.sockets) ctx.sockets.push(this);
  }

  send(data, ...rest) {
    this.sent.push({ at: Date.now(), data });
    return super.send(data, ...rest);
  }
}

ActionCable.adapters.WebSocket = NodeWebSocket;

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reject with `label` if `promise` has not settled within `ms`. The timer never outlives it. */
export function withTimeout(promise, ms, label = "operation") {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `check()` (sync or async) every `intervalMs` until it returns a truthy value. */
export async function waitUntil(check, { timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 20, label = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`);
    await sleep(intervalMs);
  }
}

function toWsUrl(url) {
  const s = String(url);
  if (/^https?:/i.test(s)) return s.replace(/^http/i, "ws");
  if (/^wss?:/i.test(s)) return s;
  throw new Error(`need an absolute ws://, wss://, http:// or https:// URL, got ${JSON.stringify(s)} ` +
    "(relative URLs would make the consumer use `document`, which is not shimmed)");
}

// ---------------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------------

const liveConsumers = new Set();

/**
 * Create a stock ActionCable consumer for `url` (ws://, wss://, http:// or https://; or a
 * function returning one, re-evaluated on every (re)connect like the stock consumer does).
 *   origin:  Origin header (default http://localhost; null sends none)
 *   headers: extra handshake headers, e.g. { Cookie: "user=alice" }
 *   handshakeTimeoutMs: `ws` handshake timeout (default 5000)
 * The consumer is the unmodified ActionCable.Consumer; we only add `consumer.sockets` (every
 * NodeWebSocket it opened, newest last) and wrap its bound `connection.open` so the socket
 * constructor sees this consumer's options. Like the stock createConsumer(), it does not
 * connect until the first subscription is created or consumer.connect() is called.
 */
export function createConsumer(url, { origin = DEFAULT_ORIGIN, headers = {}, handshakeTimeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const wsUrl = typeof url === "function" ? () => toWsUrl(url()) : toWsUrl(url);
  const consumer = ActionCable.createConsumer(wsUrl);
  const ctx = { options: { origin, headers, handshakeTimeoutMs }, sockets: [] };
  consumer.sockets = ctx.sockets;
  // Connection's constructor did `this.open = this.open.bind(this)`, and every internal caller
  // (consumer.connect, ensureActiveConnection, reopen's setTimeout, the monitor) goes through
  // that instance property, so replacing it here covers reconnects too.
  const stockOpen = consumer.connection.open;
  consumer.connection.open = function openWithOptions(...args) {
    const previous = socketContext;
    socketContext = ctx;
    try {
      return stockOpen.apply(this, args);
    } finally {
      socketContext = previous;
    }
  };
  liveConsumers.add(consumer);
  return consumer;
}

/** The consumer's current socket state: "connecting" | "open" | "closing" | "closed" | null. */
export function consumerState(consumer) {
  return consumer.connection.getState();
}

/** Wait until the consumer's socket state is `state` (or one of `state` if an array). */
export async function waitForConsumerState(consumer, state, timeoutMs = DEFAULT_TIMEOUT_MS) {
  const wanted = Array.isArray(state) ? state : [state];
  await waitUntil(() => wanted.includes(consumerState(consumer)), {
    timeoutMs,
    label: `consumer state ${wanted.join("|")} (now ${consumerState(consumer)})`,
  });
  return consumerState(consumer);
}

/** The consumer's current (newest) socket, or undefined. */
export function currentSocket(consumer) {
  return consumer.sockets[consumer.sockets.length - 1];
}

/**
 * Wait for a raw frame on the consumer's current socket. `predicate` gets the parsed JSON
 * (or the raw string if it is not JSON) and the raw string. Returns the parsed frame.
 */
export async function waitForFrame(consumer, predicate, timeoutMs = DEFAULT_TIMEOUT_MS, label = "frame") {
  return waitUntil(() => {
    const socket = currentSocket(consumer);
    if (!socket) return undefined;
    for (const f of socket.frames) {
      let parsed;
      try { parsed = JSON.parse(f.data); } catch { parsed = f.data; }
      if (predicate(parsed, f.data)) return { value: parsed };
    }
    return undefined;
  }, { timeoutMs, label }).then((hit) => hit.value);
}

/**
 * Close a consumer for good: consumer.disconnect() (stops the monitor, closes an open socket);
 * a socket still CONNECTING (which the stock consumer deliberately never closes) is terminated.
 * Resolves once the socket is closed, or after `timeoutMs` (then it is terminated).
 */
export async function closeConsumer(consumer, timeoutMs = DEFAULT_TIMEOUT_MS) {
  liveConsumers.delete(consumer);
  consumer.disconnect();
  const socket = currentSocket(consumer);
  if (!socket) return;
  if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
  try {
    await waitUntil(() => socket.readyState === WebSocket.CLOSED, { timeoutMs, label: "socket close" });
  } catch {
    socket.terminate();
  }
}

/** Close every consumer made by createConsumer() that has not been closed yet (for `after`). */
export async function closeAllConsumers(timeoutMs = DEFAULT_TIMEOUT_MS) {
  await Promise.all([...liveConsumers].map((c) => closeConsumer(c, timeoutMs)));
}

// ---------------------------------------------------------------------------------------------
// Subscriptions with recording
// ---------------------------------------------------------------------------------------------

/**
 * consumer.subscriptions.create(params, mixin) with every callback recorded.
 * `params` is an object ({channel: "ChatChannel", room: "lobby"}) or a channel name string.
 * Returns a recorder:
 *   subscription, identifier
 *   events:   [{ type: "initialized"|"connected"|"disconnected"|"rejected"|"received", data, at }]
 *   received: the `received(data)` payloads, in order
 *   waitConnected(t) → {reconnected}; waitRejected(t); waitDisconnected(t) → {willAttemptReconnect}
 *   waitFor(pred, t, {fromIndex}) → the first received payload (index >= fromIndex) matching pred
 *   waitForEvent(pred, t, {fromIndex}) → the first event matching pred
 *   perform(action, data) / unsubscribe(): the stock Subscription methods
 * Waiters look at what is already recorded first, so there is no race between an event and
 * the call that waits for it.
 */
export function subscribe(consumer, params, mixin = {}) {
  const events = [];
  const received = [];
  let waiters = [];

  const summary = () => events.map((e) => e.type === "received" ? `received ${JSON.stringify(e.data)}` : e.type).join("; ");

  function record(type, data) {
    const event = { type, data, at: Date.now() };
    events.push(event);
    if (type === "received") received.push(data);
    const still = [];
    for (const w of waiters) {
      if (events.length - 1 >= w.fromIndex && w.match(event)) w.resolve(event);
      else still.push(w);
    }
    waiters = still;
  }

  function waitForEvent(predicate, timeoutMs = DEFAULT_TIMEOUT_MS, { fromIndex = 0, label = "event" } = {}) {
    const existing = events.slice(fromIndex).find((e) => predicate(e));
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const waiter = { match: predicate, fromIndex, resolve: (e) => { clearTimeout(waiter.timer); resolve(e); } };
      waiter.timer = setTimeout(() => {
        waiters = waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label} on ${identifier}; events so far: [${summary()}]`));
      }, timeoutMs);
      waiters.push(waiter);
    });
  }

  const callbacks = {
    initialized() { record("initialized"); },
    connected(details) { record("connected", details); },
    disconnected(details) { record("disconnected", details); },
    rejected() { record("rejected"); },
    received(data) { record("received", data); },
  };
  // Let a test's own mixin callbacks run too (after recording).
  const merged = { ...mixin };
  for (const [name, fn] of Object.entries(callbacks)) {
    merged[name] = function (...args) {
      fn(...args);
      if (typeof mixin[name] === "function") return mixin[name].apply(this, args);
    };
  }

  const subscription = consumer.subscriptions.create(params, merged);
  const identifier = subscription.identifier;

  return {
    subscription,
    identifier,
    events,
    received,
    waitForEvent,
    waitConnected: (t = DEFAULT_TIMEOUT_MS) =>
      waitForEvent((e) => e.type === "connected", t, { label: "connected" }).then((e) => e.data),
    waitRejected: (t = DEFAULT_TIMEOUT_MS) =>
      waitForEvent((e) => e.type === "rejected", t, { label: "rejected" }).then(() => true),
    waitDisconnected: (t = DEFAULT_TIMEOUT_MS, { fromIndex = 0 } = {}) =>
      waitForEvent((e) => e.type === "disconnected", t, { fromIndex, label: "disconnected" }).then((e) => e.data),
    waitFor: (predicate, t = DEFAULT_TIMEOUT_MS, { fromIndex = 0 } = {}) =>
      waitForEvent((e) => e.type === "received" && predicate(e.data), t, { fromIndex, label: "a matching received message" })
        .then((e) => e.data),
    perform: (action, data = {}) => subscription.perform(action, data),
    unsubscribe: () => subscription.unsubscribe(),
  };
}

// ---------------------------------------------------------------------------------------------
// Raw protocol sockets (no consumer), for wire-level assertions
// ---------------------------------------------------------------------------------------------

/**
 * Open a plain `ws` socket offering the ActionCable subprotocols (like the stock client).
 * Resolves once open; rejects (with the HTTP status if any) on failure or timeout.
 * The result has: ws, frames (raw strings), send(obj|string), waitFor(pred, t) over parsed
 * frames, waitClose(t) → {code, reason}, close().
 */
export function openRawSocket(url, {
  origin = DEFAULT_ORIGIN,
  headers = {},
  protocols = ActionCable.INTERNAL.protocols,
  timeoutMs = DEFAULT_TIMEOUT_MS,
} = {}) {
  const opts = { headers, handshakeTimeout: timeoutMs };
  if (origin !== null) opts.origin = origin;
  const ws = new WebSocket(toWsUrl(url), protocols, opts);
  const frames = [];
  let closeInfo = null;
  ws.on("message", (data, isBinary) => frames.push(isBinary ? data : data.toString("utf8")));
  ws.on("close", (code, reason) => { closeInfo = { code, reason: reason.toString("utf8") }; });
  const parsed = (raw) => { try { return JSON.parse(raw); } catch { return raw; } };
  const api = {
    ws,
    frames,
    send: (msg) => ws.send(typeof msg === "string" ? msg : JSON.stringify(msg)),
    waitFor: (predicate, t = DEFAULT_TIMEOUT_MS, { fromIndex = 0 } = {}) =>
      waitUntil(() => {
        for (let i = fromIndex; i < frames.length; i++) {
          const p = parsed(frames[i]);
          if (predicate(p, frames[i])) return { p };
        }
        return undefined;
      }, { timeoutMs: t, label: "raw frame" }).then((hit) => hit.p),
    waitClose: (t = DEFAULT_TIMEOUT_MS) => waitUntil(() => closeInfo, { timeoutMs: t, label: "close" }),
    close: (code, reason) => { if (ws.readyState !== WebSocket.CLOSED) ws.close(code, reason); },
  };
  return withTimeout(new Promise((resolve, reject) => {
    ws.once("open", () => resolve(api));
    ws.once("error", (err) => reject(err));
  }), timeoutMs + 500, `raw socket open ${url}`).catch((err) => { ws.terminate(); throw err; });
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it; small reuse race). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const liveProcesses = new Set();
// Last resort if the test process exits with servers still running: SIGKILL their groups
// (only the processes this module spawned, by id).
process.once("exit", () => {
  for (const p of liveProcesses) {
    try { process.kill(-p.pid, "SIGKILL"); } catch { try { process.kill(p.pid, "SIGKILL"); } catch { /* gone */ } }
  }
});

/**
 * Spawn a server and wait until it is ready.
 *   env:          extra environment (merged over process.env)
 *   cwd:          working directory
 *   readyUrl:     poll this http(s) URL every 100 ms; ready on any HTTP response
 *                 (a WebSocket endpoint answering 404/400 to a plain GET still counts)
 *   readyStatus:  optional predicate on the status code, e.g. (s) => s === 200
 *   readyLogLine: string or RegExp; ready when a stdout/stderr line matches
 *   timeoutMs:    readiness deadline (default 30000); on timeout or early exit the process is
 *                 stopped and the promise rejects with the last log lines
 *   logFile:      optional path; all output is also appended there (dirs are created)
 * The child gets its own process group (detached), so stop() also reaches processes it forked
 * (e.g. `cargo run` → the server binary). Resolves to
 *   { child, pid, lines (array of output lines), exited (promise of {code, signal}), stop({graceMs}) }.
 * stop() sends SIGTERM to the group, waits graceMs (default 5000), then SIGKILL; it is idempotent
 * and resolves to {code, signal}.
 */
export async function startProcess(cmd, args = [], {
  env = {}, cwd, readyUrl, readyStatus, readyLogLine, timeoutMs = 30000, logFile,
} = {}) {
  if (!readyUrl && !readyLogLine) throw new Error("startProcess needs readyUrl or readyLogLine");
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const proc = { child, pid: child.pid, lines: [] };
  liveProcesses.add(proc);

  let log = null;
  if (logFile) {
    mkdirSync(dirname(logFile), { recursive: true });
    log = createWriteStream(logFile, { flags: "a" });
  }
  let exitInfo = null;
  const lineWatchers = new Set();
  proc.exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exitInfo = { code, signal };
      liveProcesses.delete(proc);
      resolve(exitInfo);
    });
    child.once("error", (err) => {
      exitInfo = { code: null, signal: null, error: err.message };
      liveProcesses.delete(proc);
      resolve(exitInfo);
    });
  });
  proc.exited.then(() => { if (log) log.end(); });
  for (const stream of [child.stdout, child.stderr]) {
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => {
      if (log) log.write(chunk);
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        proc.lines.push(line);
        for (const w of lineWatchers) w(line);
      }
    });
  }

  proc.stop = async ({ graceMs = 5000 } = {}) => {
    if (exitInfo) return exitInfo;
    const signalGroup = (sig) => {
      try { process.kill(-child.pid, sig); } catch { try { child.kill(sig); } catch { /* already gone */ } }
    };
    signalGroup("SIGTERM");
    try {
      return await withTimeout(proc.exited, graceMs, `pid ${child.pid} to exit after SIGTERM`);
    } catch {
      signalGroup("SIGKILL");
      return withTimeout(proc.exited, 5000, `pid ${child.pid} to exit after SIGKILL`);
    }
  };

  const tail = () => proc.lines.slice(-30).join("\n");
  const ready = new Promise((resolve, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      lineWatchers.clear();
      err ? reject(err) : resolve();
    };
    proc.exited.then((info) => finish(new Error(`${cmd} exited before it was ready (${JSON.stringify(info)}); output:\n${tail()}`)));
    if (readyLogLine) {
      const matches = (line) => (readyLogLine instanceof RegExp ? readyLogLine.test(line) : line.includes(readyLogLine));
      if (proc.lines.some(matches)) finish();
      lineWatchers.add((line) => { if (matches(line)) finish(); });
    }
    if (readyUrl) {
      (async () => {
        while (!done) {
          try {
            const res = await fetch(readyUrl, { signal: AbortSignal.timeout(1000) });
            await res.arrayBuffer().catch(() => {});
            if (!readyStatus || readyStatus(res.status)) return finish();
          } catch { /* not listening yet */ }
          await sleep(100);
        }
      })();
    }
  });

  try {
    await withTimeout(ready, timeoutMs, `${cmd} to become ready`);
  } catch (err) {
    await proc.stop({ graceMs: 2000 }).catch(() => {});
    if (!err.message.includes("output:")) err.message += `\n--- last output of ${cmd} ---\n${tail()}`;
    throw err;
  }
  return proc;
}
