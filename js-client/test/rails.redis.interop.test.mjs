// The real Rails ActionCable server (the anchor, Rails 6.1.7 under puma) and its port to our
// framework (examples/rails-twin) share ONE Redis with the same channel prefix, so they behave as
// two nodes of one app: broadcasts made on either server reach the stock @rails/actioncable
// consumers of the other, over Rails' own Redis format (channel `interop:<broadcasting>`, payload
// the JSON text), and both name `stream_for` streams the same way (`notification:bob`, GlobalID).
//
// Skipped when Ruby's ActionCable is not installed (apt-get install ruby ruby-actioncable puma
// ruby-redis) or the anchor folder is missing. The anchor is $RAILS_ANCHOR_DIR, else
// ../../shared/anchors/rails relative to js-client/ (a `shared/` folder beside the repository, where
// CI puts it); it is started with its start.sh on a free port with ANCHOR_STATE_DIR a temp dir and
// stopped with stop.sh, also on failure. The test starts its own redis-server (spare port, db 1 as
// in Rails' cable.yml) and ../target/debug/example-rails-twin (or $RAILS_TWIN_BIN).
// Logs: test-artifacts/rails-interop/ (anchor.log, twin.log) and test-artifacts/redis/.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createConsumer, closeConsumer, subscribe, currentSocket, sleep, startProcess, freePort, withTimeout, waitUntil,
} from "./support/consumer.mjs";
import { JS_CLIENT_DIR } from "./support/demo.mjs";
import { haveCommand, redisMissing, startRedis, redisSubscribe, redisLogFile, freshLog } from "./support/redis.mjs";

const ANCHOR_DIR = process.env.RAILS_ANCHOR_DIR || join(JS_CLIENT_DIR, "..", "..", "shared", "anchors", "rails");
const TWIN_BIN = process.env.RAILS_TWIN_BIN || join(JS_CLIENT_DIR, "..", "target", "debug", "example-rails-twin");
const ARTIFACTS = join(JS_CLIENT_DIR, "test-artifacts", "rails-interop");
const PREFIX = "interop";
const WAIT = 5000; // positive waits (Rails' worker pool is slower than us)
const QUIET_MS = 500;

function whyUnavailable() {
  const install = "install it with: apt-get install ruby ruby-actioncable puma ruby-redis";
  if (!existsSync(join(ANCHOR_DIR, "start.sh"))) {
    return `the Rails anchor is not at ${ANCHOR_DIR} (set RAILS_ANCHOR_DIR)`;
  }
  if (!haveCommand("puma") || !haveCommand("ruby")) return `puma/ruby not found; ${install}`;
  try {
    execFileSync("ruby", ["-e", 'require "action_cable"; require "redis"'], { stdio: "ignore", timeout: 20000 });
  } catch {
    return `Ruby's ActionCable (with the redis gem) is not installed; ${install}`;
  }
  return redisMissing() || (existsSync(TWIN_BIN) ? false
    : `example-rails-twin not built at ${TWIN_BIN} (cargo build --workspace --bins)`);
}

const skip = whyUnavailable();

/** Run a script of the anchor folder (bounded); resolves to its stdout, rejects with its output. */
function anchorScript(script, env, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    execFile(join(ANCHOR_DIR, script), [], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\n${script} stdout: ${stdout}\n${script} stderr: ${stderr}`;
        reject(err);
      } else {
        resolve(stdout);
      }
    });
  });
}

/** POST a JSON body to a server's control route; resolves to {status, body}. */
async function post(base, path, body) {
  const res = await fetch(base + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(WAIT),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function get(base, path) {
  const res = await fetch(base + path, { signal: AbortSignal.timeout(WAIT) });
  return { status: res.status, body: await res.json() };
}

const rawFrames = (consumer) => currentSocket(consumer).frames.map((f) => f.data);
const receivedSince = (rec, from) => rec.events.slice(from).filter((e) => e.type === "received").map((e) => e.data);

const NAME = "Rails anchor and rails-twin on one Redis: chat, broadcast and broadcast_to both ways";
test(NAME, { skip, timeout: 90000 }, async (t) => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const stateDir = mkdtempSync(join(tmpdir(), "rails-anchor-interop-"));
  const anchorEnv = { ANCHOR_STATE_DIR: stateDir, SERVER_LOG: join(ARTIFACTS, "anchor.log") };
  // If this process dies before `finally`, still stop the anchor (start.sh daemonises puma).
  const stopAnchorSync = () => {
    try { execFileSync(join(ANCHOR_DIR, "stop.sh"), [], { env: { ...process.env, ...anchorEnv }, stdio: "ignore", timeout: 15000 }); } catch { /* best effort */ }
  };
  process.once("exit", stopAnchorSync);

  const consumers = [];
  let redis;
  let twin;
  let spy;
  try {
    redis = await startRedis({ logFile: freshLog(redisLogFile(NAME)) });
    const redisUrl = redis.url(1);
    const [anchorPort, twinPort] = [await freePort(), await freePort()];
    const common = { CABLE_ADAPTER: "redis", REDIS_URL: redisUrl, CABLE_CHANNEL_PREFIX: PREFIX };
    rmSync(join(ARTIFACTS, "twin.log"), { force: true });
    twin = await startProcess(TWIN_BIN, [], {
      env: { ...common, PORT: String(twinPort), RUST_LOG: "info", NO_COLOR: "1" },
      readyLogLine: /^rails-twin listening on /, timeoutMs: 15000, logFile: join(ARTIFACTS, "twin.log"),
    });
    await anchorScript("start.sh", { ...common, PORT: String(anchorPort), ...anchorEnv });
    const anchor = { name: "anchor", base: `http://127.0.0.1:${anchorPort}`, cable: `ws://127.0.0.1:${anchorPort}/cable` };
    const rust = { name: "twin", base: `http://127.0.0.1:${twinPort}`, cable: `ws://127.0.0.1:${twinPort}/cable` };

    const connect = (srv, user) => {
      const c = createConsumer(`${srv.cable}?user=${user}`);
      consumers.push(c);
      return c;
    };
    const alice = connect(anchor, "alice"); // on Rails
    const bob = connect(rust, "bob"); // on the twin
    spy = await redisSubscribe(redis.port, `${PREFIX}:chat:x`);

    const aliceChat = subscribe(alice, { channel: "ChatChannel", room: "x" });
    await aliceChat.waitConnected(WAIT);
    const bobChat = subscribe(bob, { channel: "ChatChannel", room: "x" });
    await bobChat.waitConnected(WAIT);

    await t.test("the twin's `joined` (a broadcast made in subscribed) reaches the anchor's consumer", async () => {
      assert.deepEqual(await aliceChat.waitFor((m) => m.type === "joined" && m.user === "bob", WAIT), { type: "joined", user: "bob" });
    });

    await t.test("speak on the twin reaches the anchor's consumer", async () => {
      const mark = aliceChat.events.length;
      bobChat.perform("speak", { text: "from the twin" });
      assert.deepEqual(await aliceChat.waitFor((m) => m.type === "message", WAIT, { fromIndex: mark }),
        { type: "message", user: "bob", text: "from the twin" });
      assert.equal(await spy.waitFor((p) => p.includes("from the twin"), WAIT), '{"type":"message","user":"bob","text":"from the twin"}',
        `published on ${PREFIX}:chat:x as the bare JSON`);
    });

    await t.test("speak on the anchor reaches the twin's consumer, Rails' JSON text passed through unchanged", async () => {
      const mark = bobChat.events.length;
      aliceChat.perform("speak", { text: "from Rails <&>" });
      assert.deepEqual(await bobChat.waitFor((m) => m.type === "message" && m.user === "alice", WAIT, { fromIndex: mark }),
        { type: "message", user: "alice", text: "from Rails <&>" });
      const payload = await spy.waitFor((p) => p.includes('"user":"alice"') && p.includes('"type":"message"'), WAIT);
      // ActiveSupport's encoding (\u003c...), which the twin forwards byte for byte.
      assert.equal(payload, '{"type":"message","user":"alice","text":"from Rails \\u003c\\u0026\\u003e"}');
      const frame = `{"identifier":${JSON.stringify(bobChat.identifier)},"message":${payload}}`;
      assert.ok(rawFrames(bob).includes(frame), `the twin's frame is exactly ${frame}`);
    });

    await t.test("POST /broadcast?stream=chat:x on either server reaches the other's consumer", async () => {
      let aMark = aliceChat.events.length;
      let bMark = bobChat.events.length;
      const r1 = await post(anchor.base, "/broadcast?stream=chat:x", { from: "anchor", n: 1 });
      assert.deepEqual(r1, { status: 200, body: { ok: true, stream: "chat:x" } });
      assert.deepEqual(await bobChat.waitFor((m) => m.from === "anchor", WAIT, { fromIndex: bMark }), { from: "anchor", n: 1 });
      assert.deepEqual(await aliceChat.waitFor((m) => m.from === "anchor", WAIT, { fromIndex: aMark }), { from: "anchor", n: 1 });

      aMark = aliceChat.events.length;
      bMark = bobChat.events.length;
      const r2 = await post(rust.base, "/broadcast?stream=chat:x", { from: "twin", n: 2 });
      assert.equal(r2.status, 200, JSON.stringify(r2.body));
      assert.deepEqual(await aliceChat.waitFor((m) => m.from === "twin", WAIT, { fromIndex: aMark }), { from: "twin", n: 2 });
      assert.deepEqual(await bobChat.waitFor((m) => m.from === "twin", WAIT, { fromIndex: bMark }), { from: "twin", n: 2 });
    });

    await t.test("POST /broadcast_to?user=bob on the anchor reaches bob's NotificationChannel on the twin (plain and gid=1)", async () => {
      const plain = subscribe(bob, { channel: "NotificationChannel" });
      const gid = subscribe(bob, { channel: "NotificationChannel", gid: 1 });
      await plain.waitConnected(WAIT);
      await gid.waitConnected(WAIT);

      const r1 = await post(anchor.base, "/broadcast_to?user=bob", { note: "plain" });
      assert.deepEqual(r1, { status: 200, body: { ok: true, broadcasting: "notification:bob" } });
      const r2 = await post(anchor.base, "/broadcast_to?user=bob&gid=1", { note: "gid" });
      assert.equal(r2.status, 200);
      assert.equal(r2.body.broadcasting, "notification:Z2lkOi8vYW5jaG9yL0FuY2hvclVzZXIvYm9i", "Rails' GlobalID stream name");
      // The twin names the same streams.
      assert.deepEqual((await get(rust.base, "/broadcasting_for?user=bob")).body, { broadcasting: "notification:bob" });
      assert.deepEqual((await get(rust.base, "/broadcasting_for?user=bob&gid=1")).body, { broadcasting: r2.body.broadcasting });

      assert.deepEqual(await plain.waitFor((m) => m.note === "plain", WAIT), { note: "plain" });
      assert.deepEqual(await gid.waitFor((m) => m.note === "gid", WAIT), { note: "gid" });
      await sleep(QUIET_MS);
      assert.deepEqual(receivedSince(plain, 0), [{ note: "plain" }], "plain stream: only its own broadcast");
      assert.deepEqual(receivedSince(gid, 0), [{ note: "gid" }], "GlobalID stream: only its own broadcast");
    });

    await t.test("POST /broadcast_to?user=alice on the twin reaches alice's NotificationChannel on the anchor (plain and gid=1)", async () => {
      const plain = subscribe(alice, { channel: "NotificationChannel" });
      const gid = subscribe(alice, { channel: "NotificationChannel", gid: 1 });
      await plain.waitConnected(WAIT);
      await gid.waitConnected(WAIT);
      const r1 = await post(rust.base, "/broadcast_to?user=alice", { note: "plain from the twin" });
      assert.deepEqual(r1, { status: 200, body: { broadcasting: "notification:alice", ok: true } });
      const r2 = await post(rust.base, "/broadcast_to?user=alice&gid=1", { note: "gid from the twin" });
      assert.equal(r2.status, 200);
      assert.deepEqual(await plain.waitFor((m) => m.note === "plain from the twin", WAIT), { note: "plain from the twin" });
      assert.deepEqual(await gid.waitFor((m) => m.note === "gid from the twin", WAIT), { note: "gid from the twin" });
      await sleep(QUIET_MS);
      assert.deepEqual(receivedSince(plain, 0), [{ note: "plain from the twin" }]);
      assert.deepEqual(receivedSince(gid, 0), [{ note: "gid from the twin" }]);
    });

    await t.test("nobody reconnected", () => {
      for (const c of [alice, bob]) assert.equal(c.sockets.length, 1);
    });

    // Rails' remote connections: `remote_connections.where(current_user: u).disconnect` publishes
    // {"type":"disconnect"} on `action_cable/<u>`; whichever server holds u's connection closes it.
    await t.test("POST /disconnect?user=bob on the anchor closes bob's connection on the twin", async () => {
      const socket = currentSocket(bob);
      const r = await post(anchor.base, "/disconnect?user=bob", {});
      assert.equal(r.status, 200);
      const isDisconnect = (f) => typeof f.data === "string" && f.data.includes('"type":"disconnect"');
      await waitUntil(() => socket.frames.some(isDisconnect) && socket.closeInfo, { timeoutMs: WAIT, label: "bob disconnected" });
      // Rails 6.1 sends no `reconnect`: the twin reconnects by default, with reason `remote` (7.1+).
      assert.deepEqual(JSON.parse(socket.frames.find(isDisconnect).data), { type: "disconnect", reason: "remote", reconnect: true });
      assert.equal(socket.closeInfo.code, 1000);
    });

    await t.test("POST /disconnect?user=alice on the twin closes alice's connection on the anchor", async () => {
      const socket = currentSocket(alice);
      const r = await post(rust.base, "/disconnect?user=alice", {});
      assert.equal(r.status, 200);
      // Rails 6.1 closes without a disconnect frame.
      await waitUntil(() => socket.closeInfo, { timeoutMs: WAIT, label: "alice's socket closed by the anchor" });
    });
  } finally {
    await Promise.allSettled(consumers.map((c) => closeConsumer(c, 2000)));
    await withTimeout(anchorScript("stop.sh", anchorEnv), 20000, "anchor stop.sh").catch((err) => t.diagnostic(`stop.sh: ${err.message}`));
    process.removeListener("exit", stopAnchorSync);
    await Promise.allSettled([
      twin && withTimeout(twin.stop({ graceMs: 3000 }), 10000, "twin stop"),
      spy && withTimeout(spy.stop(), 5000, "redis-cli stop"),
    ]);
    if (redis) await withTimeout(redis.stop(), 8000, "redis stop").catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  }
});
