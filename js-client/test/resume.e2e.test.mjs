// Session resume end to end: the REAL `@anycable/core` client (protocol
// `actioncable-v1-ext-json`, `ws` as its WebSocket) against `example-demo`, whose ChatChannel
// broadcasts `{"type":"joined"}` from `subscribed`.
//
// The client's socket goes through the TCP proxy of support/proxy.mjs, which drops the connection without a
// WebSocket close frame and refuses new ones while 10 messages are spoken. The client then
// reconnects by itself with the `sid` of its welcome; the server gives the session back
// (`"restored":true`, asserted from the frames the client read), so the room hears no second
// `joined` (`subscribed` did not run again), and the client's `history` brings the 10 messages,
// once each, in order, then live ones.
//
// Needs `example-demo` built (scripts/test.sh builds every binary).

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createCable } from "@anycable/core";
import { subscribe } from "./support/consumer.mjs";
import { Scope, login } from "./support/demo.mjs";
import { WAIT_MS, RECONNECT_WAIT_MS, LONG_TEST_TIMEOUT_MS } from "./support/timing.mjs";
import { startProxy, waitUntil } from "./support/proxy.mjs";

/** `ws`, recording each socket's URL and the text frames it received (the client's view). */
function recordingWebSocket(sockets) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      const record = { url: String(url), frames: [] };
      sockets.push(record);
      this.on("message", (data) => record.frames.push(JSON.parse(String(data))));
    }
  };
}

test("@anycable/core resumes its session after a dropped socket: no second join, the gap once, in order", { timeout: LONG_TEST_TIMEOUT_MS }, async () => {
  const scope = new Scope("session resume with @anycable/core");
  let proxy;
  let cable;
  try {
    const demo = await scope.demo();
    proxy = await startProxy(demo.port);
    const alice = await login(demo.baseUrl, "alice");
    const bob = await login(demo.baseUrl, "bob");

    // Bob, a stock consumer in the room, hears every join.
    const bobConsumer = scope.consumer(`${demo.cableUrl}?token=${encodeURIComponent(bob.token)}`);
    const bobChat = subscribe(bobConsumer, { channel: "ChatChannel", room: "resume" });
    await bobChat.waitConnected(WAIT_MS);

    const sockets = [];
    cable = createCable(`ws://127.0.0.1:${proxy.port}/cable?token=${encodeURIComponent(alice.token)}`, {
      protocol: "actioncable-v1-ext-json",
      websocketImplementation: recordingWebSocket(sockets),
      logLevel: "error",
    });
    const received = [];
    const channel = cable.subscribeTo("ChatChannel", { room: "resume" });
    channel.on("message", (msg) => received.push(msg));
    await channel.ensureSubscribed();
    const spoken = () => received.filter((m) => m.type === "message").map((m) => m.text);
    const aliceJoins = () => bobChat.received.filter((m) => m.type === "joined" && m.user === "alice").length;
    await waitUntil(() => aliceJoins() === 1, WAIT_MS, "alice's join");

    const welcome = sockets[0].frames.find((f) => f.type === "welcome");
    assert.match(welcome.sid, /^[0-9a-f]{32}$/, JSON.stringify(welcome));
    assert.equal(welcome.restored, undefined);

    bobChat.perform("speak", { text: "before" });
    await waitUntil(() => spoken().includes("before"), WAIT_MS, "the first message");

    // Cut without a close frame; 10 messages are spoken while the client is away.
    const acceptedBefore = proxy.accepted;
    proxy.cut();
    const texts = Array.from({ length: 10 }, (_, i) => `gap-${i + 1}`);
    const bobMark = bobChat.received.length;
    for (const text of texts) bobChat.perform("speak", { text });
    await bobChat.waitFor((m) => m.type === "message" && m.text === "gap-10", WAIT_MS, { fromIndex: bobMark });
    proxy.restore();

    // The client reconnects by itself, with its sid, and is told its session is restored.
    await waitUntil(() => proxy.accepted > acceptedBefore, RECONNECT_WAIT_MS, "the client to reconnect");
    const second = await waitUntil(() => sockets.length > 1 && sockets[sockets.length - 1], WAIT_MS, "a second socket");
    assert.equal(new URL(second.url).searchParams.get("sid"), welcome.sid, second.url);
    const resumed = await waitUntil(() => second.frames.find((f) => f.type === "welcome"), WAIT_MS, "the second welcome");
    assert.equal(resumed.restored, true, JSON.stringify(resumed));
    assert.equal(resumed.restored_ids.length, 1, JSON.stringify(resumed));
    assert.deepEqual(JSON.parse(resumed.restored_ids[0]), { channel: "ChatChannel", room: "resume" });
    assert.ok(!second.frames.some((f) => f.type === "confirm_subscription"), "no resubscription");

    // Every message spoken meanwhile, once, in order; then live.
    await waitUntil(() => spoken().includes("gap-10"), WAIT_MS, "the missed messages");
    bobChat.perform("speak", { text: "after" });
    await waitUntil(() => spoken().includes("after"), WAIT_MS, "a live message");
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(spoken(), ["before", ...texts, "after"]);

    // `subscribed` ran once: the room heard alice join once.
    assert.equal(aliceJoins(), 1, "no second join for a resumed session");
  } finally {
    if (cable) cable.disconnect();
    if (proxy) await proxy.close();
    await scope.cleanup();
  }
});
