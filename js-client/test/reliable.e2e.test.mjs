// Reliable streams end to end: the REAL `@anycable/core` client (protocol
// `actioncable-v1-ext-json`, `ws` as its WebSocket) against `example-demo` (history on, as with
// the memory adapter by default), beside a stock `@rails/actioncable` consumer.
//
// The AnyCable client's socket goes through a small TCP proxy (support/proxy.mjs). The proxy
// drops the connection without a WebSocket close frame (both TCP sockets destroyed) and refuses new ones
// while 20 messages are spoken; then it lets the client back in. The client reconnects by
// itself, resumes its session with its sid (or, when it cannot, resubscribes) and asks for what
// it missed from its stream position (`history`), and must receive
// exactly those 20 messages, once each, in order, then live messages without duplicates. The
// stock consumer in the same room sees the same messages, with no extended-protocol fields.
//
// Needs `example-demo` built (scripts/test.sh builds every binary).

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createCable } from "@anycable/core";
import { subscribe, waitForFrame, currentSocket } from "./support/consumer.mjs";
import { Scope, login } from "./support/demo.mjs";
import { WAIT_MS, RECONNECT_WAIT_MS, LONG_TEST_TIMEOUT_MS } from "./support/timing.mjs";
import { startProxy, waitUntil } from "./support/proxy.mjs";

test("@anycable/core misses nothing across a dropped connection; the stock consumer sees plain frames", { timeout: LONG_TEST_TIMEOUT_MS }, async () => {
  const scope = new Scope("reliable streams with @anycable/core");
  let proxy;
  let cable;
  try {
    const demo = await scope.demo();
    proxy = await startProxy(demo.port);
    const alice = await login(demo.baseUrl, "alice");
    const bob = await login(demo.baseUrl, "bob");

    // The stock consumer: bob speaks, and checks his frames carry no positions.
    const bobConsumer = scope.consumer(`${demo.cableUrl}?token=${encodeURIComponent(bob.token)}`);
    const bobChat = subscribe(bobConsumer, { channel: "ChatChannel", room: "reliable" });
    await bobChat.waitConnected(WAIT_MS);

    // The AnyCable client, through the proxy.
    cable = createCable(`ws://127.0.0.1:${proxy.port}/cable?token=${encodeURIComponent(alice.token)}`, {
      protocol: "actioncable-v1-ext-json",
      websocketImplementation: WebSocket,
      logLevel: "error",
    });
    const received = []; // { msg, meta }
    const channel = cable.subscribeTo("ChatChannel", { room: "reliable" });
    channel.on("message", (msg, meta) => received.push({ msg, meta }));
    await channel.ensureSubscribed();
    const spoken = () => received.filter((r) => r.msg && r.msg.type === "message");

    // One message while connected: the client learns its position.
    bobChat.perform("speak", { text: "before" });
    const before = await waitUntil(() => spoken().find((r) => r.msg.text === "before"), WAIT_MS, "the first message");
    assert.equal(before.meta.stream, "chat:reliable", JSON.stringify(before.meta));
    assert.ok(typeof before.meta.epoch === "string" && before.meta.epoch.length > 0, JSON.stringify(before.meta));
    assert.ok(Number.isInteger(before.meta.offset) && before.meta.offset > 0, JSON.stringify(before.meta));

    // Cut the socket without a close frame; 20 messages are spoken while the client is away.
    const acceptedBefore = proxy.accepted;
    proxy.cut();
    const texts = Array.from({ length: 20 }, (_, i) => `missed-${i + 1}`);
    const bobMark = bobChat.received.length;
    for (const text of texts) bobChat.perform("speak", { text });
    await bobChat.waitFor((m) => m.type === "message" && m.text === "missed-20", WAIT_MS, { fromIndex: bobMark });
    assert.equal(spoken().length, 1, "nothing reached the client while it was cut off");
    proxy.restore();

    // The client reconnects by itself and gets exactly the 20, once each, in order.
    await waitUntil(() => proxy.accepted > acceptedBefore, RECONNECT_WAIT_MS, "the client to reconnect");
    await waitUntil(() => spoken().some((r) => r.msg.text === "missed-20"), WAIT_MS, "the missed messages");
    await channel.ensureSubscribed();
    const missed = spoken().slice(1);
    assert.deepEqual(missed.map((r) => r.msg.text), texts, "the missed messages, once each, in order");
    missed.forEach((r, i) => {
      assert.equal(r.meta.epoch, before.meta.epoch);
      assert.equal(r.meta.offset > before.meta.offset, true);
      if (i > 0) assert.ok(r.meta.offset > missed[i - 1].meta.offset, "offsets grow");
    });

    // Live again, without duplicates.
    bobChat.perform("speak", { text: "after" });
    await waitUntil(() => spoken().some((r) => r.msg.text === "after"), WAIT_MS, "a live message");
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(spoken().map((r) => r.msg.text), ["before", ...texts, "after"]);

    // The stock consumer saw the same messages, as plain ActionCable frames.
    const bobTexts = bobChat.received.filter((m) => m.type === "message").map((m) => m.text);
    assert.deepEqual(bobTexts, ["before", ...texts, "after"]);
    const frame = await waitForFrame(bobConsumer, (f) => f.message && f.message.text === "after", WAIT_MS);
    assert.deepEqual(Object.keys(frame).sort(), ["identifier", "message"], JSON.stringify(frame));
    const socket = currentSocket(bobConsumer);
    assert.ok(socket.frames.every((f) => !f.data.includes('"stream_id"')), "no positions for the stock consumer");
  } finally {
    if (cable) cable.disconnect();
    if (proxy) await proxy.close();
    await scope.cleanup();
  }
});
