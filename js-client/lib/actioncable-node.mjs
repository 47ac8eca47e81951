// Run the STOCK `@rails/actioncable` consumer in Node (>= 20) against any ActionCable-compatible
// server. This module holds only the shims and a per-consumer `createConsumer`; it has no test
// code, so both the tests (test/support/consumer.mjs re-exports it) and bin/chat.mjs use it.
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
// Nothing else is changed: reconnect timing (ConnectionMonitor.staleThreshold, backoff,
// Connection.reopenDelay) and every callback are the stock ones.

import * as ActionCable from "@rails/actioncable";
import WebSocket from "ws";

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
const defaultSocketOptions = {
  origin: DEFAULT_ORIGIN, headers: {}, handshakeTimeoutMs: DEFAULT_TIMEOUT_MS, recordFrames: true,
};

/** Change the options used for sockets opened by consumers not made with our createConsumer(). */
export function configureDefaults({ origin, headers, handshakeTimeoutMs, recordFrames } = {}) {
  if (origin !== undefined) defaultSocketOptions.origin = origin;
  if (headers !== undefined) defaultSocketOptions.headers = { ...headers };
  if (handshakeTimeoutMs !== undefined) defaultSocketOptions.handshakeTimeoutMs = handshakeTimeoutMs;
  if (recordFrames !== undefined) defaultSocketOptions.recordFrames = recordFrames;
}

// The consumer constructs sockets with `new adapters.WebSocket(url, protocols)` and no way to
// pass options; `adapters` is module-global, shared by every consumer. To give each consumer its
// own origin/headers we set `socketContext` for the duration of that consumer's (synchronous)
// Connection#open() call; see createConsumer().
let socketContext = null;

/**
 * The `ws` subclass installed as ActionCable.adapters.WebSocket.
 * Adds (without changing the consumer's own on* handlers):
 *   - `frames`: every text frame received, as { at, data } (raw string), for protocol assertions
 *     (not recorded when the consumer was made with recordFrames: false);
 *   - `sent`: every frame sent (same condition);
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
    const { origin, headers, handshakeTimeoutMs, recordFrames = true } = ctx.options;
    const wsOptions = { headers: { ...(headers || {}) }, handshakeTimeout: handshakeTimeoutMs };
    if (origin !== null && origin !== undefined) wsOptions.origin = origin; // null → no Origin header
    super(url, protocols, wsOptions);
    this.recordFrames = recordFrames;
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
      if (!this.recordFrames) return;
      this.frames.push({ at: Date.now(), data: isBinary ? data : data.toString("utf8"), binary: isBinary });
    });
    this.on("error", (err) => { this.errors.push(err.message); });
    this.on("close", (code, reason) => { this.closeInfo = { code, reason: reason.toString("utf8"), at: Date.now() }; });
    if (ctx.sockets) {
      ctx.sockets.push(this);
      // Without recording, keep only the current socket (a long-running client reconnects often).
      if (!recordFrames && ctx.sockets.length > 1) ctx.sockets.splice(0, ctx.sockets.length - 1);
    }
  }

  send(data, ...rest) {
    if (this.recordFrames) this.sent.push({ at: Date.now(), data });
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

/** ws:// or wss:// for an absolute ws(s):// or http(s):// URL; throws for anything else. */
export function toWsUrl(url) {
  const s = String(url);
  if (/^https?:/i.test(s)) return s.replace(/^http/i, "ws");
  if (/^wss?:/i.test(s)) return s;
  throw new Error(`need an absolute ws://, wss://, http:// or https:// URL, got ${JSON.stringify(s)} ` +
    "(relative URLs would make the consumer use `document`, which is not shimmed)");
}

// ---------------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------------

/**
 * Create a stock ActionCable consumer for `url` (ws://, wss://, http:// or https://; or a
 * function returning one, re-evaluated on every (re)connect like the stock consumer does).
 *   origin:  Origin header (default http://localhost; null sends none)
 *   headers: extra handshake headers, e.g. { Cookie: "user=alice" }
 *   handshakeTimeoutMs: `ws` handshake timeout (default 5000)
 *   recordFrames: keep every frame on socket.frames/sent (default true; false for long-lived
 *                 clients, which then also keep only the current socket in consumer.sockets)
 * The consumer is the unmodified ActionCable.Consumer; we only add `consumer.sockets` (every
 * NodeWebSocket it opened, newest last) and wrap its bound `connection.open` so the socket
 * constructor sees this consumer's options. Like the stock createConsumer(), it does not
 * connect until the first subscription is created or consumer.connect() is called.
 */
export function createConsumer(url, {
  origin = DEFAULT_ORIGIN, headers = {}, handshakeTimeoutMs = DEFAULT_TIMEOUT_MS, recordFrames = true,
} = {}) {
  const wsUrl = typeof url === "function" ? () => toWsUrl(url()) : toWsUrl(url);
  const consumer = ActionCable.createConsumer(wsUrl);
  const ctx = { options: { origin, headers, handshakeTimeoutMs, recordFrames }, sockets: [] };
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
  return consumer;
}

/** The consumer's current socket state: "connecting" | "open" | "closing" | "closed" | null. */
export function consumerState(consumer) {
  return consumer.connection.getState();
}

/** The consumer's current (newest) socket, or undefined. */
export function currentSocket(consumer) {
  return consumer.sockets[consumer.sockets.length - 1];
}

/**
 * Close a consumer for good: consumer.disconnect() (stops the monitor, closes an open socket);
 * a socket still CONNECTING (which the stock consumer deliberately never closes) is terminated.
 * Resolves once the socket is closed, or after `timeoutMs` (then it is terminated).
 */
export async function closeConsumer(consumer, timeoutMs = DEFAULT_TIMEOUT_MS) {
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
