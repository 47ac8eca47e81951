// Test support: run the STOCK `@rails/actioncable` consumer in Node (>= 20) against any
// ActionCable-compatible server, plus helpers to record subscriptions, open raw sockets, and
// spawn and stop server processes.
//
// The shims themselves (and why each is needed) live in ../../lib/actioncable-node.mjs, which
// has no test code so bin/chat.mjs can use it too; everything it exports is re-exported here.
// This module adds bookkeeping so closeAllConsumers() can clean up after a test.
//
// Everything that waits takes an explicit timeout and rejects with a descriptive Error; nothing
// here can hang a test forever.

import WebSocket from "ws";
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import net from "node:net";
import {
  ActionCable,
  DEFAULT_ORIGIN,
  createConsumer as createNodeConsumer,
  closeConsumer as closeNodeConsumer,
  consumerState,
  currentSocket,
  toWsUrl,
  waitUntil,
  withTimeout,
  sleep,
} from "../../lib/actioncable-node.mjs";
import { WAIT_MS, PROCESS_START_MS, PROCESS_STOP_MS } from "./timing.mjs";

export * from "../../lib/actioncable-node.mjs";

// ---------------------------------------------------------------------------------------------
// Consumers (tracked, so closeAllConsumers() can clean up)
// ---------------------------------------------------------------------------------------------

const liveConsumers = new Set();

/**
 * The shim module's createConsumer() (same options: origin, headers, handshakeTimeoutMs,
 * recordFrames), remembered until closeConsumer()/closeAllConsumers().
 */
export function createConsumer(url, options = {}) {
  const consumer = createNodeConsumer(url, options);
  liveConsumers.add(consumer);
  return consumer;
}

/** Wait until the consumer's socket state is `state` (or one of `state` if an array). */
export async function waitForConsumerState(consumer, state, timeoutMs = WAIT_MS) {
  const wanted = Array.isArray(state) ? state : [state];
  await waitUntil(() => wanted.includes(consumerState(consumer)), {
    timeoutMs,
    label: `consumer state ${wanted.join("|")} (now ${consumerState(consumer)})`,
  });
  return consumerState(consumer);
}

/**
 * Wait for a raw frame on the consumer's current socket. `predicate` gets the parsed JSON
 * (or the raw string if it is not JSON) and the raw string. Returns the parsed frame.
 */
export async function waitForFrame(consumer, predicate, timeoutMs = WAIT_MS, label = "frame") {
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
export async function closeConsumer(consumer, timeoutMs = WAIT_MS) {
  liveConsumers.delete(consumer);
  await closeNodeConsumer(consumer, timeoutMs);
}

/** Close every consumer made by createConsumer() that has not been closed yet (for `after`). */
export async function closeAllConsumers(timeoutMs = WAIT_MS) {
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

  function waitForEvent(predicate, timeoutMs = WAIT_MS, { fromIndex = 0, label = "event" } = {}) {
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
    waitConnected: (t = WAIT_MS) =>
      waitForEvent((e) => e.type === "connected", t, { label: "connected" }).then((e) => e.data),
    waitRejected: (t = WAIT_MS) =>
      waitForEvent((e) => e.type === "rejected", t, { label: "rejected" }).then(() => true),
    waitDisconnected: (t = WAIT_MS, { fromIndex = 0 } = {}) =>
      waitForEvent((e) => e.type === "disconnected", t, { fromIndex, label: "disconnected" }).then((e) => e.data),
    waitFor: (predicate, t = WAIT_MS, { fromIndex = 0 } = {}) =>
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
  timeoutMs = WAIT_MS,
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
    waitFor: (predicate, t = WAIT_MS, { fromIndex = 0 } = {}) =>
      waitUntil(() => {
        for (let i = fromIndex; i < frames.length; i++) {
          const p = parsed(frames[i]);
          if (predicate(p, frames[i])) return { p };
        }
        return undefined;
      }, { timeoutMs: t, label: "raw frame" }).then((hit) => hit.p),
    waitClose: (t = WAIT_MS) => waitUntil(() => closeInfo, { timeoutMs: t, label: "close" }),
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
 *   timeoutMs:    readiness deadline (default PROCESS_START_MS); on timeout or early exit the process is
 *                 stopped and the promise rejects with the last log lines
 *   logFile:      optional path; all output is also appended there (dirs are created)
 * The child gets its own process group (detached), so stop() also reaches processes it forked
 * (e.g. `cargo run` → the server binary). Resolves to
 *   { child, pid, lines (array of output lines), exited (promise of {code, signal}), stop({graceMs}) }.
 * stop() sends SIGTERM to the group, waits graceMs (default PROCESS_STOP_MS), then SIGKILL; it is idempotent
 * and resolves to {code, signal}.
 */
export async function startProcess(cmd, args = [], {
  env = {}, cwd, readyUrl, readyStatus, readyLogLine, timeoutMs = PROCESS_START_MS, logFile,
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
  // "close" comes after the last output: "exit" can come before it, and a write after end throws.
  child.once("close", () => { if (log) log.end(); });
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

  proc.stop = async ({ graceMs = PROCESS_STOP_MS } = {}) => {
    if (exitInfo) return exitInfo;
    const signalGroup = (sig) => {
      try { process.kill(-child.pid, sig); } catch { try { child.kill(sig); } catch { /* already gone */ } }
    };
    signalGroup("SIGTERM");
    try {
      return await withTimeout(proc.exited, graceMs, `pid ${child.pid} to exit after SIGTERM`);
    } catch {
      signalGroup("SIGKILL");
      return withTimeout(proc.exited, PROCESS_STOP_MS, `pid ${child.pid} to exit after SIGKILL`);
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
    await proc.stop().catch(() => {});
    if (!err.message.includes("output:")) err.message += `\n--- last output of ${cmd} ---\n${tail()}`;
    throw err;
  }
  return proc;
}
