// actioncable-server (crates/actioncable-server), the cable server for Rails apps, driven by the
// STOCK @rails/actioncable consumer: Turbo::StreamsChannel and $pubsub subscriptions with names
// signed the way turbo-rails and AnyCable sign them (computed here with node:crypto, from their
// documented algorithms), AnyCable JWTs in `jid`, broadcasts over POST /_broadcast, and, with the
// Rails reference app (interop/rails) on one Redis, Rails' own broadcasts and remote disconnects.
//
// The binary is ../target/debug/actioncable-server (or $ACTIONCABLE_SERVER_BIN); scripts/test.sh
// builds it. The Redis test starts its own redis-server and the Rails app (Debian's ruby,
// ruby-actioncable, puma, ruby-redis); without them it fails, it is never skipped.
// Logs: test-artifacts/actioncable-server/.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac, pbkdf2Sync } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  createConsumer, closeAllConsumers, closeConsumer, subscribe, startProcess, waitForFrame, consumerState,
  currentSocket, sleep, withTimeout,
} from "./support/consumer.mjs";
import { JS_CLIENT_DIR, signJwt, nowSecs } from "./support/demo.mjs";
import { redisMissing, startRedis, redisLogFile, freshLog } from "./support/redis.mjs";
import { startRailsApp } from "./support/rails.mjs";
import { WAIT_MS, QUIET_MS, CLOSE_MS, PROCESS_STOP_MS, SCRIPT_MS, LONG_TEST_TIMEOUT_MS } from "./support/timing.mjs";

const BIN = process.env.ACTIONCABLE_SERVER_BIN || join(JS_CLIENT_DIR, "..", "target", "debug", "actioncable-server");
const ARTIFACTS = join(JS_CLIENT_DIR, "test-artifacts", "actioncable-server");
const READY = /^actioncable-server listening on ws:\/\/(\S+?)(\/\S*)$/;

const SECRET_KEY_BASE = "e2e-secret-key-base-".padEnd(128, "0123456789abcdef");
const JWT_SECRET = "e2e JWT secret, at least thirty-two bytes long";
const BROADCAST_KEY = "e2e-broadcast-key-0123456789abcdef0123456789";

// turbo-rails: Rails.application.key_generator.generate_key("turbo/signed_stream_verifier_key"),
// PBKDF2-HMAC-SHA256 (Rails 7.0+ defaults) with 1,000 iterations and 64 bytes; names signed by a
// MessageVerifier with SHA256 and JSON: base64(JSON) "--" hex(HMAC).
const TURBO_KEY = pbkdf2Sync(SECRET_KEY_BASE, "turbo/signed_stream_verifier_key", 1000, 64, "sha256");
const signed = (key, name) => {
  const encoded = Buffer.from(JSON.stringify(name)).toString("base64");
  return `${encoded}--${createHmac("sha256", key).update(encoded).digest("hex")}`;
};
const turboName = (name) => signed(TURBO_KEY, name);
// AnyCable's docs/signed_streams.md, Node version; the secret defaults to SECRET_KEY_BASE.
const pubsubName = (name) => signed(SECRET_KEY_BASE, name);

const jid = (ext, { exp = nowSecs() + 300, secret = JWT_SECRET } = {}) =>
  signJwt({ ext: JSON.stringify(ext), exp }, secret);

async function startServer(name, env) {
  if (!existsSync(BIN)) {
    throw new Error(`actioncable-server not built at ${BIN}: run \`cargo build --workspace --bins\` (or set ACTIONCABLE_SERVER_BIN)`);
  }
  const logFile = join(ARTIFACTS, `${name}.log`);
  rmSync(logFile, { force: true });
  const proc = await startProcess(BIN, [], {
    // The consumers' pages are on http://localhost (the harness's Origin), the app's origin.
    env: { PORT: "0", BIND: "127.0.0.1", RUST_LOG: "info", NO_COLOR: "1", ALLOWED_ORIGINS: "http://localhost", ...env },
    readyLogLine: READY,
    logFile,
  });
  const [, addr, path] = proc.lines.find((l) => READY.test(l)).match(READY);
  return { proc, cable: `ws://${addr}${path}`, base: `http://${addr}` };
}

async function broadcast(server, body, key = BROADCAST_KEY) {
  const res = await fetch(`${server.base}/_broadcast`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  await res.arrayBuffer();
  return res.status;
}

describe("actioncable-server with stock consumers", () => {
  let server;

  before(async () => {
    server = await startServer("memory", {
      SECRET_KEY_BASE,
      CABLE_ADAPTER: "memory",
      CABLE_JWT_SECRET: JWT_SECRET,
      CABLE_BROADCAST_KEY: BROADCAST_KEY,
      CABLE_PUBLIC_STREAMS: "1",
    });
  });

  after(async () => {
    await closeAllConsumers();
    if (server) await server.proc.stop();
  });

  const connect = (ext = { current_user: "gid://e2e/User/1" }) => createConsumer(`${server.cable}?jid=${jid(ext)}`);

  test("a Turbo page's subscription receives the <turbo-stream> HTML broadcast to its stream", async () => {
    const consumer = connect();
    const page = subscribe(consumer, { channel: "Turbo::StreamsChannel", signed_stream_name: turboName("rooms:lobby") });
    await page.waitConnected(WAIT_MS);
    const html = '<turbo-stream action="append" target="messages"><template><p>hi &amp; <b>bye</b></p></template></turbo-stream>';
    // What Rails' broadcast_append_to sends: the HTML as one JSON string.
    assert.equal(await broadcast(server, { stream: "rooms:lobby", data: JSON.stringify(html) }), 201);
    assert.equal(await page.waitFor((m) => typeof m === "string", WAIT_MS), html);
    const frame = currentSocket(consumer).frames.map((f) => f.data).find((d) => d.includes("turbo-stream action"));
    assert.equal(frame, `{"identifier":${JSON.stringify(page.identifier)},"message":${JSON.stringify(html)}}`);
  });

  test("tampered, foreign or missing signed names are rejected; the connection carries on", async () => {
    const consumer = connect();
    const good = subscribe(consumer, { channel: "Turbo::StreamsChannel", signed_stream_name: turboName("board:1") });
    const [data, digest] = turboName("board:1").split("--");
    const otherName = Buffer.from(JSON.stringify("board:2")).toString("base64");
    const refused = [
      { channel: "Turbo::StreamsChannel", signed_stream_name: `${otherName}--${digest}` },
      { channel: "Turbo::StreamsChannel", signed_stream_name: `${data}--${"0".repeat(64)}` },
      { channel: "Turbo::StreamsChannel", signed_stream_name: signed("another key", "board:1") },
      { channel: "Turbo::StreamsChannel" },
      // A Turbo name is not a $pubsub name (another key), and the reverse.
      { channel: "$pubsub", signed_stream_name: turboName("board:1") },
      { channel: "Turbo::StreamsChannel", signed_stream_name: pubsubName("board:1") },
      { channel: "ChatChannel", room: "lobby" },
    ].map((params) => subscribe(consumer, params));
    await good.waitConnected(WAIT_MS);
    for (const sub of refused) assert.equal(await sub.waitRejected(WAIT_MS), true, sub.identifier);
    assert.equal(await broadcast(server, { stream: "board:1", data: '{"n":1}' }), 201);
    assert.deepEqual(await good.waitFor((m) => m.n === 1, WAIT_MS), { n: 1 });
    assert.equal(consumer.sockets.length, 1, "the connection stayed up");
  });

  test("$pubsub: signed names, plain names with public streams, and a batch broadcast to both", async () => {
    const consumer = connect({ user_id: 7 });
    const signedSub = subscribe(consumer, { channel: "$pubsub", signed_stream_name: pubsubName("notifications/7") });
    const publicSub = subscribe(consumer, { channel: "$pubsub", stream_name: "news" });
    await signedSub.waitConnected(WAIT_MS);
    await publicSub.waitConnected(WAIT_MS);
    const status = await broadcast(server, [
      { stream: "notifications/7", data: '{"unread":3}' },
      { stream: "news", data: "plain text, not JSON" },
    ]);
    assert.equal(status, 201);
    assert.deepEqual(await signedSub.waitFor((m) => m.unread === 3, WAIT_MS), { unread: 3 });
    // Data that is not JSON arrives as a JSON string, as AnyCable delivers it.
    assert.equal(await publicSub.waitFor((m) => typeof m === "string", WAIT_MS), "plain text, not JSON");
    await sleep(QUIET_MS);
    assert.equal(signedSub.received.length, 1);
    assert.equal(publicSub.received.length, 1);
  });

  test("POST /_broadcast without the key is refused and reaches nobody", async () => {
    const consumer = connect();
    const sub = subscribe(consumer, { channel: "$pubsub", stream_name: "secret-news" });
    await sub.waitConnected(WAIT_MS);
    assert.equal(await broadcast(server, { stream: "secret-news", data: '{"x":1}' }, null), 401);
    assert.equal(await broadcast(server, { stream: "secret-news", data: '{"x":1}' }, "wrong"), 401);
    assert.equal(await broadcast(server, "{not json"), 422);
    await sleep(QUIET_MS);
    assert.equal(sub.received.length, 0);
  });

  test("a connection without a valid jid is rejected for good: no welcome, no reconnect", async () => {
    const cases = {
      "no jid": server.cable,
      "expired": `${server.cable}?jid=${jid({ user_id: 1 }, { exp: nowSecs() - 3600 })}`,
      "another secret": `${server.cable}?jid=${jid({ user_id: 1 }, { secret: "another secret, thirty-two bytes or more" })}`,
      "alg none": `${server.cable}?jid=${signJwt({ ext: '{"user_id":1}', exp: nowSecs() + 300 }, null, { alg: "none" })}`,
      "no ext": `${server.cable}?jid=${signJwt({ sub: "1", exp: nowSecs() + 300 }, JWT_SECRET)}`,
    };
    const runs = Object.entries(cases).map(([label, url]) => {
      const consumer = createConsumer(url);
      return { label, consumer, sub: subscribe(consumer, { channel: "$pubsub", stream_name: "news" }) };
    });
    const control = connect();
    const controlSub = subscribe(control, { channel: "$pubsub", stream_name: "news" });
    for (const { label, consumer, sub } of runs) {
      assert.deepEqual(await sub.waitDisconnected(WAIT_MS), { willAttemptReconnect: false }, label);
      const frame = await waitForFrame(consumer, (f) => f.type === "disconnect", WAIT_MS, `${label}: disconnect`);
      // An expired token is told so, as AnyCable does.
      const reason = label === "expired" ? "token_expired" : "unauthorized";
      assert.deepEqual(frame, { type: "disconnect", reason, reconnect: false }, label);
    }
    await controlSub.waitConnected(WAIT_MS);
    await sleep(QUIET_MS);
    for (const { label, consumer, sub } of runs) {
      assert.ok(!sub.events.some((e) => e.type === "connected"), `${label}: never connected`);
      assert.equal(consumer.sockets.length, 1, `${label}: no reconnect`);
      assert.equal(consumerState(consumer), "closed", label);
    }
  });
});

const RAILS_TEST = "the Rails reference app and actioncable-server on one Redis: broadcasts and remote disconnects";
test(RAILS_TEST, { timeout: LONG_TEST_TIMEOUT_MS }, async (t) => {
  const missing = redisMissing();
  if (missing) throw new Error(missing);
  const consumers = [];
  let redis;
  let rails;
  let cable;
  try {
    redis = await startRedis({ logFile: freshLog(redisLogFile(RAILS_TEST)) });
    const common = { CABLE_ADAPTER: "redis", REDIS_URL: redis.url(1), CABLE_CHANNEL_PREFIX: "e2e" };
    cable = await startServer("redis", { ...common, SECRET_KEY_BASE, CABLE_JWT_SECRET: JWT_SECRET });
    rails = await startRailsApp({ env: common, logFile: join(ARTIFACTS, "rails.log") });
    const post = async (path, body) => {
      const res = await fetch(rails.base + path, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(WAIT_MS),
      });
      return { status: res.status, body: await res.json() };
    };
    // The reference app identifies its users by a plain string (`identified_by :current_user`).
    const bob = createConsumer(`${cable.cable}?jid=${jid({ current_user: "bob" })}`);
    const carol = createConsumer(`${cable.cable}?jid=${jid({ current_user: "carol" })}`);
    consumers.push(bob, carol);
    const page = subscribe(bob, { channel: "Turbo::StreamsChannel", signed_stream_name: turboName("rooms:rails") });
    const carolPage = subscribe(carol, { channel: "$pubsub", signed_stream_name: pubsubName("rooms:rails") });
    await page.waitConnected(WAIT_MS);
    await carolPage.waitConnected(WAIT_MS);

    await t.test("ActionCable.server.broadcast in Rails reaches both subscriptions, Rails' JSON byte for byte", async () => {
      const r = await post("/broadcast?stream=rooms:rails", { html: "<p>from Rails & co</p>", n: 1 });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const expected = { html: "<p>from Rails & co</p>", n: 1 };
      assert.deepEqual(await page.waitFor((m) => m.n === 1, WAIT_MS), expected);
      assert.deepEqual(await carolPage.waitFor((m) => m.n === 1, WAIT_MS), expected);
      // ActiveSupport's encoding (\u003c…), passed through unchanged.
      const payload = '{"html":"\\u003cp\\u003efrom Rails \\u0026 co\\u003c/p\\u003e","n":1}';
      const frame = `{"identifier":${JSON.stringify(page.identifier)},"message":${payload}}`;
      assert.ok(currentSocket(bob).frames.some((f) => f.data === frame), `bob's frame is exactly ${frame}`);
    });

    await t.test("remote_connections.where(current_user: \"bob\").disconnect in Rails closes bob's connection here", async () => {
      const socket = currentSocket(bob);
      const r = await post("/disconnect?user=bob", {});
      assert.equal(r.status, 200);
      const frame = await waitForFrame(bob, (f) => f.type === "disconnect", WAIT_MS, "bob's disconnect");
      // Rails 6.1 sends no `reconnect`: reconnecting is the default.
      assert.deepEqual(frame, { type: "disconnect", reason: "remote", reconnect: true });
      await withTimeout((async () => { while (!socket.closeInfo) await sleep(20); })(), WAIT_MS, "bob's socket to close");
      assert.equal(carol.sockets.length, 1, "carol was not disconnected");
      assert.ok(!carol.sockets[0].frames.some((f) => f.data.includes('"disconnect"')));
    });
  } finally {
    await Promise.allSettled(consumers.map((c) => closeConsumer(c, CLOSE_MS)));
    if (rails) await withTimeout(rails.stop(), SCRIPT_MS, "the Rails app's stop.sh").catch((err) => t.diagnostic(`stop.sh: ${err.message}`));
    if (cable) await withTimeout(cable.proc.stop(), 2 * PROCESS_STOP_MS, "actioncable-server stop").catch(() => {});
    if (redis) await withTimeout(redis.stop(), 2 * PROCESS_STOP_MS, "redis stop").catch(() => {});
  }
});
