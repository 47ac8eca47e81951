// Presence and whisper with the REAL `@anycable/core` client (protocol `actioncable-v1-ext-json`)
// against `example-demo`, whose ChatChannel opens its room stream with presence and whisper and
// joins every subscriber as its signed-in user: on one node (in-memory adapter), on two nodes
// sharing a private Redis, and with a node killed by SIGKILL, whose members must leave within
// the presence TTL.
//
// Needs `example-demo` built (scripts/test.sh builds every binary) and `redis-server`.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createCable } from "@anycable/core";
import { login } from "./support/demo.mjs";
import { scoped } from "./support/multinode.mjs";
import { WAIT_MS, QUIET_MS, LONG_TEST_TIMEOUT_MS } from "./support/timing.mjs";
import { waitUntil } from "./support/proxy.mjs";

/** Short enough for a test, long enough to tell "after the grace" from "at once". */
const GRACE_MS = 1500;
/** The Redis presence TTL of the two-node tests. */
const TTL_MS = 3000;
/** Slack for a loaded machine on top of the grace or the TTL. */
const MARGIN_MS = 2500;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `user` signed in on `node`, an @anycable/core cable to it, subscribed to `room`. */
async function member(cables, node, user, room) {
  const { token } = await login(node.baseUrl, user);
  const cable = createCable(`${node.cableUrl}?token=${encodeURIComponent(token)}`, {
    protocol: "actioncable-v1-ext-json",
    websocketImplementation: WebSocket,
    logLevel: "error",
  });
  cables.push(cable);
  const channel = cable.subscribeTo("ChatChannel", { room });
  const seen = { presence: [], messages: [] };
  channel.on("presence", (ev) => seen.presence.push({ ev, at: Date.now() }));
  channel.on("message", (msg) => seen.messages.push(msg));
  await channel.ensureSubscribed();
  return { cable, channel, seen };
}

const eventOf = (seen, type, id) => seen.presence.find((p) => p.ev.type === type && p.ev.id === id);

/**
 * The scenario of the issue, on `home` (Ann's first connection) and `away` (Bob, and Ann's
 * second connection): join seen by the other, info lists her, whisper to the other and never
 * back, a member with two connections leaves only after both are gone and the grace.
 */
async function scenario(home, away, room) {
  const cables = [];
  try {
    const bob = await member(cables, away, "bob", room);
    const ann = await member(cables, home, "ann", room);
    // The client's own join: the channel already joined her as her user, so it is no news.
    await ann.channel.presence.join("ann", { name: "ann" });
    const joined = await waitUntil(() => eventOf(bob.seen, "join", "ann"), WAIT_MS, "Bob to see Ann join");
    assert.deepEqual(joined.ev, { type: "join", id: "ann", info: { name: "ann" } });
    const info = await bob.channel.presence.info();
    assert.deepEqual(info.ann, { name: "ann" }, JSON.stringify(info));
    assert.deepEqual(info.bob, { name: "bob" }, JSON.stringify(info));

    // A whisper: to Bob as an ordinary message, never back to Ann, nothing stored or broadcast.
    await ann.channel.whisper({ type: "typing", user: "ann" });
    await waitUntil(() => bob.seen.messages.find((m) => m.type === "typing" && m.user === "ann"), WAIT_MS, "Bob to get the whisper");
    await sleep(QUIET_MS);
    assert.equal(ann.seen.messages.filter((m) => m.type === "typing").length, 0, "the whisper came back to its sender");

    // Ann's second tab; the first closes: she stays, well past the grace.
    const tab2 = await member(cables, away, "ann", room);
    await sleep(QUIET_MS);
    assert.equal(bob.seen.presence.filter((p) => p.ev.id === "ann").length, 1, "one join for two connections");
    ann.cable.disconnect();
    await sleep(GRACE_MS + MARGIN_MS);
    assert.equal(eventOf(bob.seen, "leave", "ann"), undefined, "left while a connection remained");

    // The last one goes: she leaves after the grace, not before.
    const gone = Date.now();
    tab2.cable.disconnect();
    const left = await waitUntil(() => eventOf(bob.seen, "leave", "ann"), GRACE_MS + MARGIN_MS + WAIT_MS, "Bob to see Ann leave");
    const after = left.at - gone;
    assert.ok(after >= GRACE_MS - 200, `left ${after} ms after her last connection, before the ${GRACE_MS} ms grace`);
    assert.ok(after <= GRACE_MS + MARGIN_MS, `left ${after} ms after her last connection (grace ${GRACE_MS} ms)`);
    assert.deepEqual(left.ev, { type: "leave", id: "ann" });
    // The client keeps its state from the events.
    const now = await bob.channel.presence.info();
    assert.equal(now.ann, undefined, JSON.stringify(now));
  } finally {
    for (const c of cables) c.disconnect();
  }
}

test("@anycable/core on one node: join, info, whisper, two connections, leave after the grace", { timeout: LONG_TEST_TIMEOUT_MS }, scoped("presence one node", async (scope) => {
  const node = await scope.demo({ env: { PRESENCE_GRACE_MS: String(GRACE_MS) } });
  await scenario(node, node, "presence-one");
}));

test("@anycable/core on two nodes sharing Redis: the same, across the nodes", { timeout: LONG_TEST_TIMEOUT_MS }, scoped("presence two nodes", async (scope) => {
  const redis = await scope.redis();
  const env = { PRESENCE_GRACE_MS: String(GRACE_MS), PRESENCE_TTL_MS: String(TTL_MS) };
  const a = await scope.node("a", redis, { env });
  const b = await scope.node("b", redis, { env });
  await scenario(a, b, "presence-two");
}));

test("a node killed with SIGKILL loses its members within the presence TTL", { timeout: LONG_TEST_TIMEOUT_MS }, scoped("presence node killed", async (scope) => {
  const redis = await scope.redis();
  const env = { PRESENCE_GRACE_MS: String(GRACE_MS), PRESENCE_TTL_MS: String(TTL_MS) };
  const a = await scope.node("a", redis, { env });
  const b = await scope.node("b", redis, { env });
  const cables = [];
  try {
    const room = "presence-killed";
    const bob = await member(cables, b, "bob", room);
    const ann = await member(cables, a, "ann", room);
    await waitUntil(() => eventOf(bob.seen, "join", "ann"), WAIT_MS, "Bob to see Ann join");
    // Alive, node A keeps her present past the TTL.
    await sleep(TTL_MS + 500);
    assert.equal(eventOf(bob.seen, "leave", "ann"), undefined, "a live node's member expired");
    ann.cable.disconnect(); // no reconnecting to a dead node meanwhile
    // No goodbye: node A dies at once, its grace timers with it.
    const killed = Date.now();
    process.kill(-a.proc.child.pid, "SIGKILL");
    await a.proc.exited;
    const left = await waitUntil(() => eventOf(bob.seen, "leave", "ann"), TTL_MS + MARGIN_MS + WAIT_MS, "Bob to see Ann leave");
    const after = left.at - killed;
    assert.ok(after <= TTL_MS + MARGIN_MS, `left ${after} ms after her node died (TTL ${TTL_MS} ms)`);
    const info = await bob.channel.presence.info();
    assert.equal(info.ann, undefined, JSON.stringify(info));
    assert.deepEqual(info.bob, { name: "bob" });
  } finally {
    for (const c of cables) c.disconnect();
  }
}));
