// Test support for the Redis pub/sub adapter: a PRIVATE redis-server per test (on a spare port,
// never 127.0.0.1:6379, no persistence), redis-cli one-shots, and a spawned `redis-cli SUBSCRIBE`
// whose output is parsed, to see exactly what goes over Redis.
//
// Everything is bounded by timeouts, and every process started here is registered with the
// harness (startProcess), so it is killed even if the test process dies.

import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startProcess, freePort, waitUntil, withTimeout } from "./consumer.mjs";
import { JS_CLIENT_DIR } from "./demo.mjs";
import { WAIT_MS, PROCESS_START_MS, PROCESS_STOP_MS } from "./timing.mjs";

// A test process stopped by a signal (`node --test` sends SIGTERM to its children when it is
// interrupted) would otherwise die without running any `exit` handler, leaving the servers it
// started running. Exiting through process.exit runs them: the harness kills the processes
// startProcess() spawned, and the tests' own handlers stop what they started by script.
for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]]) {
  process.once(signal, () => process.exit(128 + number));
}

export const REDIS_ARTIFACTS = join(JS_CLIENT_DIR, "test-artifacts", "redis");

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);

/** `name` is on PATH (sync; for skip decisions at load time). */
export function haveCommand(name) {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore", timeout: WAIT_MS });
    return true;
  } catch {
    return false;
  }
}

/** Why Redis tests cannot run here (a skip message), or false when they can. */
export function redisMissing() {
  const missing = ["redis-server", "redis-cli"].filter((c) => !haveCommand(c));
  return missing.length ? `${missing.join(" and ")} not found (apt-get install redis-server)` : false;
}

/** The log file of a redis-server a test named `name` starts (`tag` tells several apart). */
export const redisLogFile = (name, tag = "redis") => join(REDIS_ARTIFACTS, `${slug(name)}-${tag}.log`);

/**
 * Start a private redis-server on 127.0.0.1:`port` (default: a spare one; 6379 is refused) with
 * `--save '' --appendonly no`, and wait for "Ready to accept connections".
 * Resolves to { port, url(db = 0), proc, kill() (SIGKILL, resolves once it is gone), stop() }.
 */
export async function startRedis({ port, logFile, timeoutMs = PROCESS_START_MS } = {}) {
  for (let attempt = 0; ; attempt++) {
    const p = port ?? await freePort();
    if (p === 6379) throw new Error("refusing to start a test redis-server on 6379 (the machine's default Redis)");
    if (logFile) { mkdirSync(REDIS_ARTIFACTS, { recursive: true }); }
    try {
      const proc = await startProcess("redis-server", [
        "--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice",
      ], { readyLogLine: /Ready to accept connections/, timeoutMs, logFile });
      return {
        port: p,
        url: (db = 0) => `redis://127.0.0.1:${p}/${db}`,
        proc,
        /** SIGKILL (no shutdown, no goodbye to clients), then wait until it is gone. */
        async kill() {
          try { process.kill(proc.pid, "SIGKILL"); } catch { /* already gone */ }
          return withTimeout(proc.exited, PROCESS_STOP_MS, `redis-server ${p} to die`);
        },
        stop: () => proc.stop(),
      };
    } catch (err) {
      // A spare port can be taken between freePort() and the bind: try another (not a fixed one).
      if (port === undefined && attempt < 3 && /Address already in use/i.test(err.message)) continue;
      throw err;
    }
  }
}

/** Run `redis-cli -p port args…` (bounded); resolves to its stdout (trimmed of the last newline). */
export function redisCli(port, args, { timeoutMs = WAIT_MS } = {}) {
  return new Promise((resolve, reject) => {
    execFile("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\nredis-cli ${args.join(" ")}: ${stderr}`;
        reject(err);
      } else {
        resolve(stdout.replace(/\n$/, ""));
      }
    });
  });
}

/**
 * `redis-cli -p port SUBSCRIBE channel` as a child process; resolves once Redis confirmed the
 * subscription. redis-cli (stdout not a tty) prints every element of a pub/sub reply on its own
 * line, unquoted: `subscribe` / channel / count, then `message` / channel / payload for each
 * message (a JSON payload never holds a raw newline, so one line is one payload).
 * Returns { messages() → [{channel, payload}], waitFor(pred(payload, channel), t) → payload, stop() }.
 */
export async function redisSubscribe(port, channel, { logFile, timeoutMs = PROCESS_START_MS } = {}) {
  const proc = await startProcess("redis-cli", ["-h", "127.0.0.1", "-p", String(port), "SUBSCRIBE", channel], {
    readyLogLine: /^subscribe$/, timeoutMs, logFile,
  });
  const messages = () => {
    const out = [];
    const lines = proc.lines;
    // Replies are triples; a partially read triple at the end is left for the next call.
    for (let i = 0; i + 2 < lines.length; i += 3) {
      if (lines[i] === "message") out.push({ channel: lines[i + 1], payload: lines[i + 2] });
    }
    return out;
  };
  return {
    proc,
    messages,
    async waitFor(pred, t = WAIT_MS, label = `a message on ${channel}`) {
      try {
        const hit = await waitUntil(() => messages().find((m) => pred(m.payload, m.channel)), { timeoutMs: t, label });
        return hit.payload;
      } catch (err) {
        err.message += `; redis-cli SUBSCRIBE saw: ${JSON.stringify(proc.lines)}`;
        throw err;
      }
    },
    stop: () => proc.stop(),
  };
}

/** Remove earlier logs of this test (processes append). */
export function freshLog(file) {
  rmSync(file, { force: true });
  return file;
}
