// Headless-Chromium tests of the demo page's `?client=anycable` mode: the page on AnyCable's
// @anycable/web client (from npm, unmodified), speaking the extended protocol
// actioncable-v1-ext-json to example-demo. The page reaches the demo through a TCP proxy
// (support/proxy.mjs) that cuts its sockets the way a network does (no close frame), and refuses
// new ones until the test restores it: the browser is offline for the cable.
//
// The harness (browser, per-test scope, screenshots, page helpers) is support/browser.mjs.

import { describe } from "node:test";
import assert from "node:assert/strict";
import { startProxy } from "./support/proxy.mjs";
import { startRedis, freshLog, redisLogFile } from "./support/redis.mjs";
import { RECONNECT_WAIT_MS, LONG_TEST_TIMEOUT_MS, QUIET_MS } from "./support/timing.mjs";
import { useBrowser, browserTest, shot, signIn, say, chatLog, waitForStatus, shortLivedTokens } from "./support/browser.mjs";

const MISSED = 20;

/** Every WebSocket frame `page` sends and receives, as { dir: "in"|"out", socket: n, data }. */
function recordFrames(page) {
  const frames = [];
  let sockets = 0;
  page.on("websocket", (ws) => {
    const socket = ++sockets;
    ws.on("framereceived", ({ payload }) => frames.push({ dir: "in", socket, data: String(payload) }));
    ws.on("framesent", ({ payload }) => frames.push({ dir: "out", socket, data: String(payload) }));
  });
  return { frames, sockets: () => sockets };
}

const parse = (data) => {
  try { return JSON.parse(data); } catch { return null; }
};

describe("the demo page on @anycable/web (?client=anycable) in headless Chromium", () => {
  useBrowser();

  browserTest("a chat survives a dropped connection: what was said meanwhile arrives once each, in order, from the cable", { timeout: LONG_TEST_TIMEOUT_MS }, async (scope, t) => {
    const demo = await scope.demo();
    const proxy = await startProxy(demo.port);
    const viaProxy = { baseUrl: `http://127.0.0.1:${proxy.port}` };

    try {
      const alice = await scope.page(viaProxy, { label: "alice (anycable)" });
      const wire = recordFrames(alice);
      await signIn(alice, "alice", { path: "/?client=anycable" });
      await alice.getByRole("contentinfo").getByText("@anycable/web, extended protocol").waitFor();
      // The extended protocol was selected: its welcome carries a session id.
      const welcome = wire.frames.map((f) => parse(f.data)).find((m) => m?.type === "welcome");
      assert.equal(typeof welcome?.sid, "string", `an extended welcome: ${JSON.stringify(welcome)}`);

      // bob stays on the stock consumer, straight to the demo.
      const bob = await scope.page(demo, { label: "bob (stock)" });
      await signIn(bob, "bob");
      await say(alice, "before the drop");
      await chatLog(bob).getByText("before the drop", { exact: true }).waitFor();
      await chatLog(alice).getByText("bob joined").waitFor();

      // The network goes: both TCP sockets destroyed, no close frame; new ones refused.
      proxy.cut();
      await waitForStatus(alice, "Reconnecting…");
      const cutAt = Date.now();
      const said = Array.from({ length: MISSED }, (_, i) => `while alice was away ${i + 1}`);
      for (const text of said) await say(bob, text);
      await shot(alice, "anycable-01-offline");
      assert.equal(await chatLog(alice).getByText("while alice was away 1", { exact: true }).count(), 0,
        "nothing reached alice while she was offline");

      proxy.restore();
      await waitForStatus(alice, "Connected", RECONNECT_WAIT_MS);
      t.diagnostic(`alice was connected again ${Date.now() - cutAt} ms after the cut`);
      await chatLog(alice).getByText(said.at(-1), { exact: true }).waitFor();

      // Once each, in order, after what came before the drop.
      const log = await chatLog(alice).innerText();
      let at = log.indexOf("before the drop");
      assert.ok(at >= 0, log);
      for (const text of said) {
        assert.equal(await chatLog(alice).getByText(text, { exact: true }).count(), 1, `${text} once`);
        const next = log.indexOf(text);
        assert.ok(next > at, `"${text}" in order:\n${log}`);
        at = next;
      }
      await shot(alice, "anycable-02-caught-up");

      // From the cable, not from the database: the page asked for the room's `history` once
      // (on the first subscription), and the missed messages came as stream messages with
      // their positions on a later socket.
      const historyActions = wire.frames
        .filter((f) => f.dir === "out")
        .map((f) => parse(f.data))
        .filter((m) => m?.command === "message" && parse(m.data)?.action === "history");
      assert.equal(historyActions.length, 1, "the page asked the channel for history once");
      const replayed = wire.frames
        .filter((f) => f.dir === "in" && f.socket > 1)
        .map((f) => parse(f.data))
        .filter((m) => m?.message?.type === "message" && said.includes(m.message.text));
      assert.deepEqual(replayed.map((m) => m.message.text), said, "each missed message once, in order, on the new socket");
      for (const m of replayed) {
        assert.equal(typeof m.stream_id, "string", JSON.stringify(m));
        assert.equal(typeof m.epoch, "string", JSON.stringify(m));
        assert.ok(Number.isInteger(m.offset), JSON.stringify(m));
      }
      // Same node, within the session TTL: the session was resumed (no new `subscribe`), and the
      // client asked the stream for what it missed.
      const later = wire.frames.filter((f) => f.socket > 1).map((f) => ({ ...f, m: parse(f.data) }));
      const resumed = later.find((f) => f.dir === "in" && f.m?.type === "welcome");
      assert.equal(resumed?.m?.restored, true, `a restored session: ${resumed?.data}`);
      assert.ok(!later.some((f) => f.dir === "out" && f.m?.command === "subscribe"), "no new subscribe after a resume");
      assert.ok(later.some((f) => f.dir === "out" && f.m?.command === "history"), "a history request");

      // Everything the room's stream carried meanwhile (bob's typing signals too) came, with no
      // gap in the offsets: nothing in between was skipped.
      const stream = replayed[0].stream_id;
      const offsets = wire.frames
        .filter((f) => f.dir === "in" && f.socket > 1)
        .map((f) => parse(f.data))
        .filter((m) => m?.stream_id === stream && Number.isInteger(m.offset))
        .map((m) => m.offset)
        .filter((offset) => offset >= replayed[0].offset && offset <= replayed.at(-1).offset);
      assert.deepEqual(offsets, offsets.map((_, i) => replayed[0].offset + i), "consecutive offsets");

      // Live again, both ways, without duplicates.
      await say(bob, "and now live");
      await chatLog(alice).getByText("and now live", { exact: true }).waitFor();
      await say(alice, "back, and I missed nothing");
      await chatLog(bob).getByText("back, and I missed nothing", { exact: true }).waitFor();
      await alice.waitForTimeout(QUIET_MS); // room for a duplicate to show up, if one were coming
      for (const text of [...said, "and now live", "before the drop"]) {
        assert.equal(await chatLog(alice).getByText(text, { exact: true }).count(), 1, `${text} once`);
      }
      // The stock consumer's page saw the same conversation, without extended fields.
      const bobLog = await chatLog(bob).innerText();
      for (const text of said) assert.ok(bobLog.includes(text), bobLog);
    } finally {
      await proxy.close();
    }
  });

  browserTest("short-lived tokens: each token_expired is followed by a reconnect with the refreshed token", { timeout: LONG_TEST_TIMEOUT_MS }, async (scope) => {
    await shortLivedTokens(scope, { path: "/?client=anycable", label: "alice (anycable)", connectedWithinMs: 5000 });
  });

  browserTest("two pages on two nodes see each other online and typing (presence and whisper, over Redis)", { timeout: LONG_TEST_TIMEOUT_MS }, async (scope) => {
    const redis = await startRedis({ logFile: freshLog(redisLogFile("browser presence", "redis")) });
    try {
      const env = {
        CABLE_ADAPTER: "redis", REDIS_URL: redis.url(0), CABLE_CHANNEL_PREFIX: "demo", PRESENCE_GRACE_MS: "1000",
      };
      const nodeA = await scope.demo({ env, logName: "browser presence node a" });
      const nodeB = await scope.demo({ env, logName: "browser presence node b" });
      const ann = await scope.page(nodeA, { label: "ann (node A)" });
      const annWire = recordFrames(ann);
      await signIn(ann, "ann", { path: "/?client=anycable" });
      const bob = await scope.page(nodeB, { label: "bob (node B)" });
      await signIn(bob, "bob", { path: "/?client=anycable" });

      // Who is here: each page lists both, itself first.
      await ann.getByText("Here now (2): ann (you), bob", { exact: true }).waitFor();
      await bob.getByText("Here now (2): bob (you), ann", { exact: true }).waitFor();
      await shot(ann, "anycable-03-online");

      // Typing goes as a whisper (not through channel code) from node A to the page on node B.
      await ann.getByLabel("Chat message").pressSequentially("hel");
      await bob.getByText("ann is typing…").waitFor();
      await shot(bob, "anycable-04-typing-by-whisper");
      assert.equal(await ann.getByText("ann is typing…").count(), 0, "never back to the sender");
      const sent = annWire.frames.filter((f) => f.dir === "out").map((f) => parse(f.data));
      assert.ok(sent.some((m) => m?.command === "whisper"), "a whisper command");
      assert.ok(!sent.some((m) => m?.command === "message" && parse(m.data)?.action === "typing"), "no typing action");

      // Bob closes his page: after the grace, Ann sees him gone.
      await bob.context().close();
      await ann.getByText("Here now (1): ann (you)", { exact: true }).waitFor({ timeout: 15_000 });
    } finally {
      await redis.stop();
    }
  });

  browserTest("the switch link moves between the two clients, keeping the room", {}, async (scope) => {
    const demo = await scope.demo();
    const page = await scope.page(demo, { label: "kim" });
    await signIn(page, "kim");
    await page.getByLabel("Join or create a room").fill("switching");
    await page.getByRole("button", { name: "Go" }).click();
    await page.getByRole("heading", { name: "#switching" }).waitFor();
    await page.getByRole("contentinfo").getByText("@rails/actioncable", { exact: true }).waitFor();

    await page.getByRole("link", { name: "Switch to @anycable/web" }).click();
    await waitForStatus(page, "Connected");
    await page.getByRole("contentinfo").getByText("@anycable/web, extended protocol").waitFor();
    assert.equal(new URL(page.url()).search, "?client=anycable");
    await page.getByRole("heading", { name: "#switching" }).waitFor();
    await say(page, "said on @anycable/web");

    await page.getByRole("link", { name: "Switch to the stock @rails/actioncable consumer" }).click();
    await waitForStatus(page, "Connected");
    assert.equal(new URL(page.url()).search, "");
    await chatLog(page).getByText("said on @anycable/web", { exact: true }).waitFor();
  });
});
