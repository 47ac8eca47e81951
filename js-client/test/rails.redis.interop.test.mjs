// The real Rails ActionCable server (the Rails reference app, interop/rails, Rails 6.1.7 under
// puma) and its port to our framework (examples/rails-twin) share ONE Redis with the same channel
// prefix, so they behave as two nodes of one app: broadcasts made on either server reach the
// stock @rails/actioncable consumers of the other, over Rails' own Redis format (channel
// `interop:<broadcasting>`, payload the JSON text), and both name `stream_for` streams the same
// way (`notification:bob`, GlobalID).
//
// The test starts its own redis-server (spare port, db 1 as in Rails' cable.yml), the Rails app
// with CABLE_ADAPTER=redis (interop/rails/start.sh on a free port, stopped with stop.sh, also on
// failure) and ../target/debug/example-rails-twin (or $RAILS_TWIN_BIN). It needs Debian's ruby,
// ruby-actioncable, puma, ruby-redis and redis-server: without them it fails, it is never skipped.
// Logs: test-artifacts/rails-interop/ (rails.log, twin.log) and test-artifacts/redis/.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  createConsumer, closeConsumer, subscribe, currentSocket, sleep, startProcess, freePort, withTimeout, waitUntil,
} from "./support/consumer.mjs";
import { JS_CLIENT_DIR } from "./support/demo.mjs";
import { redisMissing, startRedis, redisSubscribe, redisLogFile, freshLog } from "./support/redis.mjs";
import { TWIN_BIN, assertTwinBuilt, startRailsApp } from "./support/rails.mjs";
import { WAIT_MS, QUIET_MS, CLOSE_MS, PROCESS_STOP_MS, SCRIPT_MS, LONG_TEST_TIMEOUT_MS } from "./support/timing.mjs";

const ARTIFACTS = join(JS_CLIENT_DIR, "test-artifacts", "rails-interop");
const PREFIX = "interop";

/** POST a JSON body to a server's control route; resolves to {status, body}. */
async function post(base, path, body) {
  const res = await fetch(base + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function get(base, path) {
  const res = await fetch(base + path, { signal: AbortSignal.timeout(WAIT_MS) });
  return { status: res.status, body: await res.json() };
}

const rawFrames = (consumer) => currentSocket(consumer).frames.map((f) => f.data);
const receivedSince = (rec, from) => rec.events.slice(from).filter((e) => e.type === "received").map((e) => e.data);

const NAME = "the Rails reference app and rails-twin on one Redis: chat, broadcast and broadcast_to both ways";
test(NAME, { timeout: LONG_TEST_TIMEOUT_MS }, async (t) => {
  const missing = redisMissing();
  if (missing) throw new Error(missing);
  assertTwinBuilt();
  mkdirSync(ARTIFACTS, { recursive: true });

  const consumers = [];
  let redis;
  let twin;
  let rails;
  let spy;
  try {
    redis = await startRedis({ logFile: freshLog(redisLogFile(NAME)) });
    const redisUrl = redis.url(1);
    const twinPort = await freePort();
    const common = { CABLE_ADAPTER: "redis", REDIS_URL: redisUrl, CABLE_CHANNEL_PREFIX: PREFIX };
    rmSync(join(ARTIFACTS, "twin.log"), { force: true });
    twin = await startProcess(TWIN_BIN, [], {
      env: { ...common, PORT: String(twinPort), RUST_LOG: "info", NO_COLOR: "1" },
      readyLogLine: /^rails-twin listening on /, logFile: join(ARTIFACTS, "twin.log"),
    });
    rails = await startRailsApp({ env: common, logFile: join(ARTIFACTS, "rails.log") });
    const rust = { name: "twin", base: `http://127.0.0.1:${twinPort}`, cable: `ws://127.0.0.1:${twinPort}/cable` };

    const connect = (srv, user) => {
      const c = createConsumer(`${srv.cable}?user=${user}`);
      consumers.push(c);
      return c;
    };
    const alice = connect(rails, "alice"); // on Rails
    const bob = connect(rust, "bob"); // on the twin
    spy = await redisSubscribe(redis.port, `${PREFIX}:chat:x`);

    const aliceChat = subscribe(alice, { channel: "ChatChannel", room: "x" });
    await aliceChat.waitConnected(WAIT_MS);
    const bobChat = subscribe(bob, { channel: "ChatChannel", room: "x" });
    await bobChat.waitConnected(WAIT_MS);

    await t.test("the twin's `joined` (a broadcast made in subscribed) reaches the Rails app's consumer", async () => {
      assert.deepEqual(await aliceChat.waitFor((m) => m.type === "joined" && m.user === "bob", WAIT_MS), { type: "joined", user: "bob" });
    });

    await t.test("speak on the twin reaches the Rails app's consumer", async () => {
      const mark = aliceChat.events.length;
      bobChat.perform("speak", { text: "from the twin" });
      assert.deepEqual(await aliceChat.waitFor((m) => m.type === "message", WAIT_MS, { fromIndex: mark }),
        { type: "message", user: "bob", text: "from the twin" });
      assert.equal(await spy.waitFor((p) => p.includes("from the twin"), WAIT_MS), '{"type":"message","user":"bob","text":"from the twin"}',
        `published on ${PREFIX}:chat:x as the bare JSON`);
    });

    await t.test("speak on the Rails app reaches the twin's consumer, Rails' JSON text passed through unchanged", async () => {
      const mark = bobChat.events.length;
      aliceChat.perform("speak", { text: "from Rails <&>" });
      assert.deepEqual(await bobChat.waitFor((m) => m.type === "message" && m.user === "alice", WAIT_MS, { fromIndex: mark }),
        { type: "message", user: "alice", text: "from Rails <&>" });
      const payload = await spy.waitFor((p) => p.includes('"user":"alice"') && p.includes('"type":"message"'), WAIT_MS);
      // ActiveSupport's encoding (\u003c...), which the twin forwards byte for byte.
      assert.equal(payload, '{"type":"message","user":"alice","text":"from Rails \\u003c\\u0026\\u003e"}');
      const frame = `{"identifier":${JSON.stringify(bobChat.identifier)},"message":${payload}}`;
      assert.ok(rawFrames(bob).includes(frame), `the twin's frame is exactly ${frame}`);
    });

    await t.test("POST /broadcast?stream=chat:x on either server reaches the other's consumer", async () => {
      let aMark = aliceChat.events.length;
      let bMark = bobChat.events.length;
      const r1 = await post(rails.base, "/broadcast?stream=chat:x", { from: "rails", n: 1 });
      assert.deepEqual(r1, { status: 200, body: { ok: true, stream: "chat:x" } });
      assert.deepEqual(await bobChat.waitFor((m) => m.from === "rails", WAIT_MS, { fromIndex: bMark }), { from: "rails", n: 1 });
      assert.deepEqual(await aliceChat.waitFor((m) => m.from === "rails", WAIT_MS, { fromIndex: aMark }), { from: "rails", n: 1 });

      aMark = aliceChat.events.length;
      bMark = bobChat.events.length;
      const r2 = await post(rust.base, "/broadcast?stream=chat:x", { from: "twin", n: 2 });
      assert.equal(r2.status, 200, JSON.stringify(r2.body));
      assert.deepEqual(await aliceChat.waitFor((m) => m.from === "twin", WAIT_MS, { fromIndex: aMark }), { from: "twin", n: 2 });
      assert.deepEqual(await bobChat.waitFor((m) => m.from === "twin", WAIT_MS, { fromIndex: bMark }), { from: "twin", n: 2 });
    });

    await t.test("POST /broadcast_to?user=bob on the Rails app reaches bob's NotificationChannel on the twin (plain and gid=1)", async () => {
      const plain = subscribe(bob, { channel: "NotificationChannel" });
      const gid = subscribe(bob, { channel: "NotificationChannel", gid: 1 });
      await plain.waitConnected(WAIT_MS);
      await gid.waitConnected(WAIT_MS);

      const r1 = await post(rails.base, "/broadcast_to?user=bob", { note: "plain" });
      assert.deepEqual(r1, { status: 200, body: { ok: true, broadcasting: "notification:bob" } });
      const r2 = await post(rails.base, "/broadcast_to?user=bob&gid=1", { note: "gid" });
      assert.equal(r2.status, 200);
      assert.equal(r2.body.broadcasting, "notification:Z2lkOi8vaW50ZXJvcC9Vc2VyL2JvYg", "Rails' GlobalID stream name");
      // The twin names the same streams.
      assert.deepEqual((await get(rust.base, "/broadcasting_for?user=bob")).body, { broadcasting: "notification:bob" });
      assert.deepEqual((await get(rust.base, "/broadcasting_for?user=bob&gid=1")).body, { broadcasting: r2.body.broadcasting });

      assert.deepEqual(await plain.waitFor((m) => m.note === "plain", WAIT_MS), { note: "plain" });
      assert.deepEqual(await gid.waitFor((m) => m.note === "gid", WAIT_MS), { note: "gid" });
      await sleep(QUIET_MS);
      assert.deepEqual(receivedSince(plain, 0), [{ note: "plain" }], "plain stream: only its own broadcast");
      assert.deepEqual(receivedSince(gid, 0), [{ note: "gid" }], "GlobalID stream: only its own broadcast");
    });

    await t.test("POST /broadcast_to?user=alice on the twin reaches alice's NotificationChannel on the Rails app (plain and gid=1)", async () => {
      const plain = subscribe(alice, { channel: "NotificationChannel" });
      const gid = subscribe(alice, { channel: "NotificationChannel", gid: 1 });
      await plain.waitConnected(WAIT_MS);
      await gid.waitConnected(WAIT_MS);
      const r1 = await post(rust.base, "/broadcast_to?user=alice", { note: "plain from the twin" });
      assert.deepEqual(r1, { status: 200, body: { broadcasting: "notification:alice", ok: true } });
      const r2 = await post(rust.base, "/broadcast_to?user=alice&gid=1", { note: "gid from the twin" });
      assert.equal(r2.status, 200);
      assert.deepEqual(await plain.waitFor((m) => m.note === "plain from the twin", WAIT_MS), { note: "plain from the twin" });
      assert.deepEqual(await gid.waitFor((m) => m.note === "gid from the twin", WAIT_MS), { note: "gid from the twin" });
      await sleep(QUIET_MS);
      assert.deepEqual(receivedSince(plain, 0), [{ note: "plain from the twin" }]);
      assert.deepEqual(receivedSince(gid, 0), [{ note: "gid from the twin" }]);
    });

    await t.test("nobody reconnected", () => {
      for (const c of [alice, bob]) assert.equal(c.sockets.length, 1);
    });

    // Rails' remote connections: `remote_connections.where(current_user: u).disconnect` publishes
    // {"type":"disconnect"} on `action_cable/<u>`; whichever server holds u's connection closes it.
    await t.test("POST /disconnect?user=bob on the Rails app closes bob's connection on the twin", async () => {
      const socket = currentSocket(bob);
      const r = await post(rails.base, "/disconnect?user=bob", {});
      assert.equal(r.status, 200);
      const isDisconnect = (f) => typeof f.data === "string" && f.data.includes('"type":"disconnect"');
      await waitUntil(() => socket.frames.some(isDisconnect) && socket.closeInfo, { timeoutMs: WAIT_MS, label: "bob disconnected" });
      // Rails 6.1 sends no `reconnect`: the twin reconnects by default, with reason `remote` (7.1+).
      assert.deepEqual(JSON.parse(socket.frames.find(isDisconnect).data), { type: "disconnect", reason: "remote", reconnect: true });
      assert.equal(socket.closeInfo.code, 1000);
    });

    await t.test("POST /disconnect?user=alice on the twin closes alice's connection on the Rails app", async () => {
      const socket = currentSocket(alice);
      const r = await post(rust.base, "/disconnect?user=alice", {});
      assert.equal(r.status, 200);
      // Rails 6.1 closes without a disconnect frame.
      await waitUntil(() => socket.closeInfo, { timeoutMs: WAIT_MS, label: "alice's socket closed by the Rails app" });
    });
  } finally {
    await Promise.allSettled(consumers.map((c) => closeConsumer(c, CLOSE_MS)));
    if (rails) await withTimeout(rails.stop(), SCRIPT_MS, "the Rails app's stop.sh").catch((err) => t.diagnostic(`stop.sh: ${err.message}`));
    await Promise.allSettled([
      twin && withTimeout(twin.stop(), 2 * PROCESS_STOP_MS, "twin stop"),
      spy && withTimeout(spy.stop(), 2 * PROCESS_STOP_MS, "redis-cli stop"),
    ]);
    if (redis) await withTimeout(redis.stop(), 2 * PROCESS_STOP_MS, "redis stop").catch(() => {});
  }
});
