// Reliable streams across nodes: two `example-demo` nodes on one private Redis (history on, kept
// in Redis), the REAL `@anycable/core` client (protocol `actioncable-v1-ext-json`) connected to
// node A through a TCP proxy (support/proxy.mjs). The proxy cuts the socket without a close
// frame; while the client is away, 20 messages are spoken on node B and the proxy is pointed at
// B. The client reconnects by itself, to B, resubscribes with the position it got from A, and
// must receive exactly those 20 messages, once each, in order, at the positions A would have
// given, then live messages without duplicates.
//
// Needs `example-demo` built (scripts/test.sh builds every binary) and `redis-server`.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createCable } from "@anycable/core";
import { login } from "./support/demo.mjs";
import { scoped, connectUser, joinRoom } from "./support/multinode.mjs";
import { WAIT_MS, RECONNECT_WAIT_MS, LONG_TEST_TIMEOUT_MS } from "./support/timing.mjs";
import { startProxy, waitUntil } from "./support/proxy.mjs";

test("@anycable/core cut off from node A gets what node B spoke meanwhile from node B, once, in order", { timeout: LONG_TEST_TIMEOUT_MS }, scoped("reliable streams across nodes", async (scope) => {
  let proxy;
  let cable;
  try {
    const redis = await scope.redis();
    const a = await scope.node("a", redis);
    const b = await scope.node("b", redis);
    proxy = await startProxy(a.port);

    // Bob speaks on node B with a stock consumer.
    const bob = await connectUser(scope, b, "bob");
    const room = "reliable-multinode";
    const bobChat = await joinRoom(bob, room);

    // Alice's AnyCable client, through the proxy to node A.
    const alice = await login(a.baseUrl, "alice");
    cable = createCable(`ws://127.0.0.1:${proxy.port}/cable?token=${encodeURIComponent(alice.token)}`, {
      protocol: "actioncable-v1-ext-json",
      websocketImplementation: WebSocket,
      logLevel: "error",
    });
    const received = []; // { msg, meta }
    const channel = cable.subscribeTo("ChatChannel", { room });
    channel.on("message", (msg, meta) => received.push({ msg, meta }));
    await channel.ensureSubscribed();
    const spoken = () => received.filter((r) => r.msg && r.msg.type === "message");

    // One message spoken on B reaches the client on A, with its position.
    bobChat.perform("speak", { text: "before" });
    const before = await waitUntil(() => spoken().find((r) => r.msg.text === "before"), WAIT_MS, "the first message");
    assert.equal(before.meta.stream, `chat:${room}`, JSON.stringify(before.meta));
    assert.ok(typeof before.meta.epoch === "string" && before.meta.epoch.length > 0, JSON.stringify(before.meta));
    assert.ok(Number.isInteger(before.meta.offset) && before.meta.offset > 0, JSON.stringify(before.meta));

    // Cut the socket; 20 messages are spoken on B while the client is away; then the proxy
    // sends the client to B.
    const acceptedBefore = proxy.accepted;
    proxy.cut();
    proxy.retarget(b.port);
    const texts = Array.from({ length: 20 }, (_, i) => `missed-${i + 1}`);
    const bobMark = bobChat.received.length;
    for (const text of texts) bobChat.perform("speak", { text });
    await bobChat.waitFor((m) => m.type === "message" && m.text === "missed-20", WAIT_MS, { fromIndex: bobMark });
    assert.equal(spoken().length, 1, "nothing reached the client while it was cut off");
    proxy.restore();

    // The client reconnects by itself, now to B, and gets exactly the 20, once each, in order.
    await waitUntil(() => proxy.accepted > acceptedBefore, RECONNECT_WAIT_MS, "the client to reconnect");
    await waitUntil(() => spoken().some((r) => r.msg.text === "missed-20"), WAIT_MS, "the missed messages");
    await channel.ensureSubscribed();
    const missed = spoken().slice(1);
    assert.deepEqual(missed.map((r) => r.msg.text), texts, "the missed messages, once each, in order");
    missed.forEach((r, i) => {
      assert.equal(r.meta.epoch, before.meta.epoch, "one epoch on both nodes");
      assert.equal(r.meta.offset > before.meta.offset, true);
      if (i > 0) assert.ok(r.meta.offset > missed[i - 1].meta.offset, "offsets grow");
    });

    // Live again on B, from either node, without duplicates.
    bobChat.perform("speak", { text: "after" });
    await waitUntil(() => spoken().some((r) => r.msg.text === "after"), WAIT_MS, "a live message");
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(spoken().map((r) => r.msg.text), ["before", ...texts, "after"]);
    const after = spoken().at(-1);
    assert.equal(after.meta.epoch, before.meta.epoch);
    assert.ok(after.meta.offset > missed.at(-1).meta.offset);
  } finally {
    if (cable) cable.disconnect();
    if (proxy) await proxy.close();
  }
}));
