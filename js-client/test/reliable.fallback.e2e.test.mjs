// When history cannot be served, the REAL `@anycable/core` is told so and carries on live, as
// with AnyCable: the server answers its resubscription with `reject_history`, the client emits
// `info` `history_not_found` on the channel (packages/core/action_cable_ext/index.js →
// cable.notify), and the next live message arrives. Two ways to lose a position:
//   - eviction: more than `history_limit` (100) messages spoken while the client was away;
//   - epoch change: the node restarted (the memory adapter's history lived in the process), and
//     the client comes back to the new process with the old epoch.
// The client's socket goes through the TCP proxy of support/proxy.mjs, cut without a close frame.
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

// Speaking more than a minute's chat budget in one go: no rate limit in these demos.
const ENV = { CHAT_LIMIT_PER_MINUTE: "0" };

/** The AnyCable client for `token` through `proxy`, subscribed to `room`; what it receives. */
async function anycableClient(proxy, token, room) {
  const cable = createCable(`ws://127.0.0.1:${proxy.port}/cable?token=${encodeURIComponent(token)}`, {
    protocol: "actioncable-v1-ext-json",
    websocketImplementation: WebSocket,
    logLevel: "error",
  });
  const received = [];
  const infos = [];
  const channel = cable.subscribeTo("ChatChannel", { room });
  channel.on("message", (msg, meta) => received.push({ msg, meta }));
  channel.on("info", (info) => infos.push(info));
  await channel.ensureSubscribed();
  const spoken = () => received.filter((r) => r.msg && r.msg.type === "message").map((r) => r.msg.text);
  return { cable, channel, spoken, infos };
}

test("evicted history: reject_history, history_not_found, then live", { timeout: LONG_TEST_TIMEOUT_MS }, async () => {
  const scope = new Scope("reliable streams: evicted history");
  let proxy;
  let client;
  try {
    const demo = await scope.demo({ env: ENV });
    proxy = await startProxy(demo.port);
    const alice = await login(demo.baseUrl, "alice");
    const bob = await login(demo.baseUrl, "bob");
    const bobChat = subscribe(scope.consumer(`${demo.cableUrl}?token=${encodeURIComponent(bob.token)}`), { channel: "ChatChannel", room: "evict" });
    await bobChat.waitConnected(WAIT_MS);
    client = await anycableClient(proxy, alice.token, "evict");

    bobChat.perform("speak", { text: "before" });
    await waitUntil(() => client.spoken().includes("before"), WAIT_MS, "the first message");

    // 110 messages while the client is away: its position falls out of the last 100.
    const acceptedBefore = proxy.accepted;
    proxy.cut();
    const mark = bobChat.received.length;
    for (let i = 1; i <= 110; i++) bobChat.perform("speak", { text: `away-${i}` });
    await bobChat.waitFor((m) => m.type === "message" && m.text === "away-110", WAIT_MS, { fromIndex: mark });
    proxy.restore();

    await waitUntil(() => proxy.accepted > acceptedBefore, RECONNECT_WAIT_MS, "the client to reconnect");
    await waitUntil(() => client.infos.some((i) => i.type === "history_not_found"), WAIT_MS, "history_not_found");
    await client.channel.ensureSubscribed();
    bobChat.perform("speak", { text: "after" });
    await waitUntil(() => client.spoken().includes("after"), WAIT_MS, "a live message");
    // Nothing of the gap was replayed (it could not be served whole), and nothing twice.
    assert.deepEqual(client.spoken(), ["before", "after"]);
  } finally {
    if (client) client.cable.disconnect();
    if (proxy) await proxy.close();
    await scope.cleanup();
  }
});

test("a restarted node: the old epoch gets reject_history, history_not_found, then live", { timeout: LONG_TEST_TIMEOUT_MS }, async () => {
  const scope = new Scope("reliable streams: epoch change");
  let proxy;
  let client;
  try {
    const first = await scope.demo({ env: ENV });
    proxy = await startProxy(first.port);
    const alice = await login(first.baseUrl, "alice");
    const bob = await login(first.baseUrl, "bob");
    client = await anycableClient(proxy, alice.token, "epoch");
    const bobFirst = subscribe(scope.consumer(`${first.cableUrl}?token=${encodeURIComponent(bob.token)}`), { channel: "ChatChannel", room: "epoch" });
    await bobFirst.waitConnected(WAIT_MS);
    bobFirst.perform("speak", { text: "before" });
    await waitUntil(() => client.spoken().includes("before"), WAIT_MS, "the first message");

    // The node goes away with its history; a new process (a new epoch) takes its place.
    const acceptedBefore = proxy.accepted;
    proxy.cut();
    await first.stop();
    const second = await scope.demo({ env: ENV });
    proxy.retarget(second.port);
    proxy.restore();

    await waitUntil(() => proxy.accepted > acceptedBefore, RECONNECT_WAIT_MS, "the client to reconnect");
    await waitUntil(() => client.infos.some((i) => i.type === "history_not_found"), WAIT_MS, "history_not_found");
    await client.channel.ensureSubscribed();
    const bobSecond = subscribe(scope.consumer(`${second.cableUrl}?token=${encodeURIComponent(bob.token)}`), { channel: "ChatChannel", room: "epoch" });
    await bobSecond.waitConnected(WAIT_MS);
    bobSecond.perform("speak", { text: "after" });
    await waitUntil(() => client.spoken().includes("after"), WAIT_MS, "a live message");
    assert.deepEqual(client.spoken(), ["before", "after"]);
  } finally {
    if (client) client.cable.disconnect();
    if (proxy) await proxy.close();
    await scope.cleanup();
  }
});
