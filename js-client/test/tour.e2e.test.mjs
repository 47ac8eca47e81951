// The channel API beyond subscribe/perform, seen by the stock @rails/actioncable consumer:
// example-tour (examples/tour) serves a timer channel and a room where `say` skips the speaker
// and `kick` ends another user's subscription from the server side. The kicked consumer must
// call its subscription's rejected() and forget it, exactly as for a refused subscription.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  createConsumer,
  subscribe,
  closeAllConsumers,
  startProcess,
} from "./support/consumer.mjs";
import { JS_CLIENT_DIR } from "./support/demo.mjs";
import { WAIT_MS } from "./support/timing.mjs";

const TOUR_BIN = process.env.TOUR_BIN || join(JS_CLIENT_DIR, "..", "target", "debug", "example-tour");
const READY = /^tour listening on ws:\/\/(\S+)\/cable$/;

describe("example-tour with stock consumers", () => {
  let server;
  let cableUrl;

  before(async () => {
    if (!existsSync(TOUR_BIN)) {
      throw new Error(`example-tour not built at ${TOUR_BIN}: run cargo build --workspace --bins`);
    }
    server = await startProcess(TOUR_BIN, [], {
      env: { PORT: "0", RUST_LOG: "info", NO_COLOR: "1" },
      readyLogLine: READY,
      logFile: join(JS_CLIENT_DIR, "test-artifacts", "tour", "tour.log"),
    });
    const [, addr] = server.lines.find((l) => READY.test(l)).match(READY);
    cableUrl = `ws://${addr}/cable`;
  });

  after(async () => {
    await closeAllConsumers();
    if (server) await server.stop();
  });

  test("say reaches the others, not the speaker; kick ends a subscription with rejected()", async () => {
    const alice = createConsumer(`${cableUrl}?user=alice`);
    const bob = createConsumer(`${cableUrl}?user=bob`);
    const carol = createConsumer(`${cableUrl}?user=carol`);
    const a = subscribe(alice, { channel: "RoomChannel", room: "lobby" });
    const b = subscribe(bob, { channel: "RoomChannel", room: "lobby" });
    const c = subscribe(carol, { channel: "RoomChannel", room: "lobby" });
    await Promise.all([a.waitConnected(), b.waitConnected(), c.waitConnected()]);
    // Bob also has another room; the kick from the lobby must leave it alone.
    const bKitchen = subscribe(bob, { channel: "RoomChannel", room: "kitchen" });
    await bKitchen.waitConnected();

    a.perform("say", { text: "hello" });
    const heardByBob = await b.waitFor((m) => m.text === "hello");
    assert.deepEqual(heardByBob, { from: "alice", text: "hello" });
    await c.waitFor((m) => m.text === "hello");
    // Alice hears Carol's next line but never her own.
    c.perform("say", { text: "second" });
    await a.waitFor((m) => m.text === "second");
    assert.equal(a.received.filter((m) => m.from === "alice").length, 0, "alice heard herself");

    a.perform("kick", { user: "bob" });
    await b.waitRejected(WAIT_MS);
    // The stock consumer forgot the subscription: no lobby subscription left on bob's side.
    const lobby = bob.subscriptions.findAll(b.identifier);
    assert.equal(lobby.length, 0, "the kicked subscription is still known to the consumer");
    assert.equal(bob.subscriptions.findAll(bKitchen.identifier).length, 1);
    // Everyone else learns about it; bob's lobby gets nothing more, his kitchen still works.
    await c.waitFor((m) => m.kicked === "bob" && m.by === "alice");
    const bobLobbyCount = b.received.length;
    a.perform("say", { text: "after the kick" });
    await c.waitFor((m) => m.text === "after the kick");
    const kitchenLine = subscribe(carol, { channel: "RoomChannel", room: "kitchen" });
    await kitchenLine.waitConnected();
    kitchenLine.perform("say", { text: "in the kitchen" });
    await bKitchen.waitFor((m) => m.text === "in the kitchen");
    assert.equal(b.received.length, bobLobbyCount, "bob still received lobby messages after the kick");
    // The consumer's connection stayed up throughout.
    assert.equal(b.events.filter((e) => e.type === "disconnected").length, 0);
  });

  test("data that fits no action reaches the channel's rescue, which answers the sender alone", async () => {
    const dan = createConsumer(`${cableUrl}?user=dan`);
    const eve = createConsumer(`${cableUrl}?user=eve`);
    const d = subscribe(dan, { channel: "RoomChannel", room: "typos" });
    const e = subscribe(eve, { channel: "RoomChannel", room: "typos" });
    await Promise.all([d.waitConnected(), e.waitConnected()]);

    // A field of the wrong type: serde's words come back, for `say` only to its sender.
    d.perform("say", { text: 5 });
    const wrongType = await d.waitFor((m) => m.action === "say" && "error" in m);
    assert.match(wrongType.error, /invalid type: integer `5`, expected a string/);
    // An action the channel does not have.
    d.perform("shout", { text: "hey" });
    const unknown = await d.waitFor((m) => m.action === "shout" && "error" in m);
    assert.match(unknown.error, /unknown variant `shout`, expected `say` or `kick`/);

    // The subscription carries on; eve never saw the errors, only the next real line.
    d.perform("say", { text: "typed right" });
    await e.waitFor((m) => m.text === "typed right");
    assert.equal(e.received.filter((m) => "error" in m).length, 0, "errors went to others");
    assert.equal(d.events.filter((ev) => ev.type === "disconnected").length, 0);
  });

  test("a timer channel ticks in order; a refused user is rejected", async () => {
    const ann = createConsumer(`${cableUrl}?user=ann`);
    const clock = subscribe(ann, { channel: "ClockChannel", every_ms: 100 });
    await clock.waitConnected();
    await clock.waitFor((m) => m.tick === 3, WAIT_MS);
    const ticks = clock.received.map((m) => m.tick);
    assert.deepEqual(ticks.slice(0, 3), [1, 2, 3]);
    clock.unsubscribe();

    const mallory = createConsumer(`${cableUrl}?user=mallory`);
    const refused = subscribe(mallory, { channel: "ClockChannel" });
    await refused.waitRejected(WAIT_MS);
  });
});
