// Smoke test of the Node harness against the real Rails ActionCable anchor
// (/work/shared/anchors/rails, or ../shared/anchors/rails from the repo root).
//
//   PORT=28080 ../shared/anchors/rails/start.sh
//   RAILS_ANCHOR_URL=ws://127.0.0.1:28080/cable npm run test:anchor     (from js-client/)
//   ../shared/anchors/rails/stop.sh
//
// Without RAILS_ANCHOR_URL every test here is skipped.

import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import {
  createConsumer,
  subscribe,
  closeAllConsumers,
  waitForConsumerState,
  waitForFrame,
  consumerState,
  currentSocket,
} from "./support/consumer.mjs";

const ANCHOR = process.env.RAILS_ANCHOR_URL;
const skip = ANCHOR ? false : "RAILS_ANCHOR_URL is not set (e.g. ws://127.0.0.1:28080/cable); start the Rails anchor to run these";
const TIMEOUT = 5000;

function cableUrl(user) {
  const u = new URL(ANCHOR);
  u.searchParams.set("user", user);
  return u.toString();
}

function controlUrl(path) {
  const u = new URL(ANCHOR);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  const target = new URL(path, u);
  return target.toString();
}

describe("stock @rails/actioncable consumer against the Rails anchor", () => {
  // skip is set per test (not on the suite) so the runner reports "skipped 3", not "tests 0".
  after(() => closeAllConsumers());

  test("alice subscribes to ChatChannel lobby, speaks, and receives the broadcast", { skip }, async () => {
    const consumer = createConsumer(cableUrl("alice"));
    const chat = subscribe(consumer, { channel: "ChatChannel", room: "lobby" });
    assert.equal(chat.identifier, '{"channel":"ChatChannel","room":"lobby"}');

    assert.deepEqual(await chat.waitConnected(TIMEOUT), { reconnected: false });
    assert.equal(currentSocket(consumer).protocol, "actioncable-v1-json");
    await waitForFrame(consumer, (f) => f.type === "welcome", TIMEOUT, "welcome");

    const text = `hello ${Date.now()}`;
    chat.perform("speak", { text });
    const msg = await chat.waitFor((m) => m.type === "message" && m.text === text, TIMEOUT);
    assert.deepEqual(msg, { type: "message", user: "alice", text });

    // A server-side broadcast (anchor control route) reaches the subscription verbatim.
    const res = await fetch(controlUrl("/broadcast?stream=chat:lobby"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ note: text }),
      signal: AbortSignal.timeout(TIMEOUT),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await chat.waitFor((m) => m.note === text, TIMEOUT), { note: text });

    // The raw frame: {"identifier":"<verbatim identifier>","message":{...}}, no "type".
    const raw = await waitForFrame(consumer, (f) => f.message && f.message.text === text, TIMEOUT, "speak frame");
    assert.deepEqual(Object.keys(raw).sort(), ["identifier", "message"]);
    assert.equal(raw.identifier, chat.identifier);
  });

  test("a subscription the channel rejects calls rejected()", { skip }, async () => {
    const consumer = createConsumer(cableUrl("alice"));
    const chat = subscribe(consumer, { channel: "ChatChannel" }); // no room → reject
    assert.equal(await chat.waitRejected(TIMEOUT), true);
    assert.ok(!chat.events.some((e) => e.type === "connected"));
    const frame = await waitForFrame(consumer, (f) => f.type === "reject_subscription", TIMEOUT, "reject frame");
    assert.deepEqual(frame, { identifier: '{"channel":"ChatChannel"}', type: "reject_subscription" });
    assert.equal(consumerState(consumer), "open"); // the connection itself stays up
  });

  test("banned is refused: disconnect(unauthorized, reconnect:false), then close, no reconnect", { skip }, async () => {
    const consumer = createConsumer(cableUrl("banned"));
    const chat = subscribe(consumer, { channel: "ChatChannel", room: "lobby" });

    assert.deepEqual(await chat.waitDisconnected(TIMEOUT), { willAttemptReconnect: false });
    const frame = await waitForFrame(consumer, (f) => f.type === "disconnect", TIMEOUT, "disconnect frame");
    assert.deepEqual(frame, { type: "disconnect", reason: "unauthorized", reconnect: false });
    await waitForConsumerState(consumer, "closed", TIMEOUT);
    // Rails sends close 1000 right after the disconnect frame, while the consumer answers the frame
    // with its own close(); in ~1% of runs Rails drops TCP first and `ws` reports 1006.
    assert.ok([1000, 1006].includes(currentSocket(consumer).closeInfo.code), JSON.stringify(currentSocket(consumer).closeInfo));
    assert.ok(!chat.events.some((e) => e.type === "connected"), "never confirmed");
    assert.ok(!consumer.connection.monitor.isRunning(), "monitor stopped: the consumer will not reconnect");
    assert.equal(consumer.sockets.length, 1);
  });
});
