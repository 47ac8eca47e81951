// Smoke test of the Node harness against the real Rails ActionCable server (the Rails reference
// app, interop/rails): the stock @rails/actioncable consumer subscribes, speaks, receives a
// server-side broadcast, is rejected by a channel and refused as a connection, as on Rails.
//
// The Rails app is the one ./scripts/test.sh starts (RAILS_CABLE_URL), or one started here; it
// needs Debian's ruby, ruby-actioncable, puma and ruby-redis. Without them these tests fail (they
// are never skipped). Alone: `npm run test:rails-smoke` (from js-client/).

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  createConsumer,
  subscribe,
  closeAllConsumers,
  waitForConsumerState,
  waitForFrame,
  consumerState,
  currentSocket,
} from "./support/consumer.mjs";
import { JS_CLIENT_DIR } from "./support/demo.mjs";
import { railsApp } from "./support/rails.mjs";
import { WAIT_MS } from "./support/timing.mjs";

let rails = null;

function cableUrl(user) {
  const u = new URL(rails.cable);
  u.searchParams.set("user", user);
  return u.toString();
}

const controlUrl = (path) => rails.base + path;

describe("stock @rails/actioncable consumer against the Rails reference app", () => {
  before(async () => {
    rails = await railsApp({ logFile: join(JS_CLIENT_DIR, "test-artifacts", "rails-smoke", "rails.log") });
  });
  after(async () => {
    await closeAllConsumers();
    if (rails) await rails.stop();
  });

  test("alice subscribes to ChatChannel lobby, speaks, and receives the broadcast", async () => {
    const consumer = createConsumer(cableUrl("alice"));
    const chat = subscribe(consumer, { channel: "ChatChannel", room: "lobby" });
    assert.equal(chat.identifier, '{"channel":"ChatChannel","room":"lobby"}');

    assert.deepEqual(await chat.waitConnected(WAIT_MS), { reconnected: false });
    assert.equal(currentSocket(consumer).protocol, "actioncable-v1-json");
    await waitForFrame(consumer, (f) => f.type === "welcome", WAIT_MS, "welcome");

    const text = `hello ${Date.now()}`;
    chat.perform("speak", { text });
    const msg = await chat.waitFor((m) => m.type === "message" && m.text === text, WAIT_MS);
    assert.deepEqual(msg, { type: "message", user: "alice", text });

    // A server-side broadcast (the app's control route) reaches the subscription verbatim.
    const res = await fetch(controlUrl("/broadcast?stream=chat:lobby"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ note: text }),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await chat.waitFor((m) => m.note === text, WAIT_MS), { note: text });

    // The raw frame: {"identifier":"<verbatim identifier>","message":{...}}, no "type".
    const raw = await waitForFrame(consumer, (f) => f.message && f.message.text === text, WAIT_MS, "speak frame");
    assert.deepEqual(Object.keys(raw).sort(), ["identifier", "message"]);
    assert.equal(raw.identifier, chat.identifier);
  });

  test("a subscription the channel rejects calls rejected()", async () => {
    const consumer = createConsumer(cableUrl("alice"));
    const chat = subscribe(consumer, { channel: "ChatChannel" }); // no room → reject
    assert.equal(await chat.waitRejected(WAIT_MS), true);
    assert.ok(!chat.events.some((e) => e.type === "connected"));
    const frame = await waitForFrame(consumer, (f) => f.type === "reject_subscription", WAIT_MS, "reject frame");
    assert.deepEqual(frame, { identifier: '{"channel":"ChatChannel"}', type: "reject_subscription" });
    assert.equal(consumerState(consumer), "open"); // the connection itself stays up
  });

  test("banned is refused: disconnect(unauthorized, reconnect:false), then close, no reconnect", async () => {
    const consumer = createConsumer(cableUrl("banned"));
    const chat = subscribe(consumer, { channel: "ChatChannel", room: "lobby" });

    assert.deepEqual(await chat.waitDisconnected(WAIT_MS), { willAttemptReconnect: false });
    const frame = await waitForFrame(consumer, (f) => f.type === "disconnect", WAIT_MS, "disconnect frame");
    assert.deepEqual(frame, { type: "disconnect", reason: "unauthorized", reconnect: false });
    await waitForConsumerState(consumer, "closed", WAIT_MS);
    // Rails sends close 1000 right after the disconnect frame, while the consumer answers the frame
    // with its own close(); in ~1% of runs Rails drops TCP first and `ws` reports 1006.
    assert.ok([1000, 1006].includes(currentSocket(consumer).closeInfo.code), JSON.stringify(currentSocket(consumer).closeInfo));
    assert.ok(!chat.events.some((e) => e.type === "connected"), "never confirmed");
    assert.ok(!consumer.connection.monitor.isRunning(), "monitor stopped: the consumer will not reconnect");
    assert.equal(consumer.sockets.length, 1);
  });
});
