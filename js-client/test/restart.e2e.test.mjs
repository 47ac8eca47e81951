// Graceful restart with several stock @rails/actioncable consumers connected to the demo
// (examples/demo), each with two subscriptions. demo.e2e.test.mjs has the two-user version
// that checks the chat history survives; this one checks the restart contract for a crowd:
//   - SIGTERM: every consumer gets `disconnect` `server_restart` with `reconnect: true` (raw
//     frame) and every subscription's disconnected() says it will reconnect;
//   - the process exits with status 0 within its shutdown deadline, having closed every cable
//     connection in time ("cable closed", not the deadline warning);
//   - the demo started again on the same port: every consumer reconnects by itself, sends
//     `subscribe` again for both its subscriptions on the new socket, gets both confirmed, and
//     receives new broadcasts (one from an HTTP handler, one from another user's action).
//
// The stock ConnectionMonitor notices the closed socket on its own schedule (stale threshold
// 6 s, polls every 3-30 s with backoff), so the reconnect wait is generous; the test is bounded
// at 60 s. Needs the built binary (scripts/test.sh does `cargo build --workspace --bins`).

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { subscribe, currentSocket } from "./support/consumer.mjs";
import { Scope, login, http, freePort } from "./support/demo.mjs";
import { WAIT_MS, PROCESS_STOP_MS, RECONNECT_WAIT_MS, LONG_TEST_TIMEOUT_MS, DEMO_EXIT_DEADLINE_MS } from "./support/timing.mjs";

const USERS = 6;
const ROOM = { channel: "ChatChannel", room: "restart-crowd" };
const NOTIFICATIONS = { channel: "NotificationChannel" };

test("graceful restart: a crowd of stock consumers gets server_restart, the demo exits in time, all come back and resubscribe",
  { timeout: LONG_TEST_TIMEOUT_MS }, async (t) => {
    const scope = new Scope("restart crowd");
    try {
      const port = await freePort();
      const database = join(scope.tempDir(), "demo.sqlite3");
      let demo = await scope.demo({ port, database });

      const users = [];
      for (let i = 0; i < USERS; i++) {
        const name = `user${i}`;
        const creds = await login(demo.baseUrl, name);
        const consumer = i % 2 === 0
          ? scope.consumer(`${demo.cableUrl}?token=${encodeURIComponent(creds.token)}`)
          : scope.consumer(demo.cableUrl, { headers: { Cookie: creds.cookie } });
        const chat = subscribe(consumer, ROOM);
        const notes = subscribe(consumer, NOTIFICATIONS);
        users.push({ name, creds, consumer, chat, notes });
      }
      await Promise.all(users.flatMap((u) => [u.chat.waitConnected(WAIT_MS), u.notes.waitConnected(WAIT_MS)]));

      // Marks: everything after these indexes happens because of the restart.
      for (const u of users) {
        u.chatMark = u.chat.events.length;
        u.notesMark = u.notes.events.length;
        u.oldSocket = currentSocket(u.consumer);
      }

      const stoppedAt = Date.now();
      const exit = await demo.stop({ graceMs: DEMO_EXIT_DEADLINE_MS + PROCESS_STOP_MS });
      const stopMs = Date.now() - stoppedAt;
      assert.deepEqual(exit, { code: 0, signal: null }, "exit status after SIGTERM");
      assert.ok(stopMs < DEMO_EXIT_DEADLINE_MS, `the demo took ${stopMs} ms to exit (deadline ${DEMO_EXIT_DEADLINE_MS} ms)`);
      assert.ok(demo.proc.lines.some((l) => /cable closed/.test(l)), "every cable connection closed before the deadline");
      assert.ok(!demo.proc.lines.some((l) => /did not all close in time/.test(l)), "no connection outlived the deadline");

      for (const u of users) {
        const frames = u.oldSocket.frames.map((f) => JSON.parse(f.data));
        const disconnects = frames.filter((f) => f.type === "disconnect");
        assert.deepEqual(disconnects, [{ type: "disconnect", reason: "server_restart", reconnect: true }], u.name);
        assert.equal(frames.at(-1).type, "disconnect", `${u.name}: nothing after the disconnect`);
        assert.deepEqual(await u.chat.waitDisconnected(WAIT_MS, { fromIndex: u.chatMark }), { willAttemptReconnect: true }, u.name);
        assert.deepEqual(await u.notes.waitDisconnected(WAIT_MS, { fromIndex: u.notesMark }), { willAttemptReconnect: true }, u.name);
      }

      const restartAt = Date.now();
      demo = await scope.demo({ port, database });
      const upMs = Date.now() - restartAt;

      // Every subscription comes back by itself, on a new socket.
      const back = await Promise.all(users.flatMap((u) => [
        u.chat.waitForEvent((e) => e.type === "connected", RECONNECT_WAIT_MS, { fromIndex: u.chatMark, label: `${u.name} chat reconnected` }),
        u.notes.waitForEvent((e) => e.type === "connected", RECONNECT_WAIT_MS, { fromIndex: u.notesMark, label: `${u.name} notifications reconnected` }),
      ]));
      // The stock consumer reports `reconnected: true` to the first confirmation after a
      // reconnect only (it clears `reconnectAttempted` there), so per consumer: one true.
      for (let i = 0; i < USERS; i++) {
        const flags = [back[2 * i].data.reconnected, back[2 * i + 1].data.reconnected];
        assert.deepEqual(flags.filter(Boolean).length, 1, `${users[i].name}: ${JSON.stringify(flags)}`);
      }
      const slowest = Math.max(...back.map((e) => e.at)) - stoppedAt;
      const fastest = Math.min(...back.map((e) => e.at)) - stoppedAt;

      for (const u of users) {
        const socket = currentSocket(u.consumer);
        assert.notEqual(socket, u.oldSocket, `${u.name}: a new socket`);
        const sent = socket.sent.map((f) => JSON.parse(f.data));
        for (const params of [ROOM, NOTIFICATIONS]) {
          const identifier = JSON.stringify(params);
          assert.ok(sent.some((c) => c.command === "subscribe" && c.identifier === identifier),
            `${u.name}: resubscribed to ${identifier} on the new socket; sent ${JSON.stringify(sent)}`);
          assert.ok(socket.frames.some((f) => {
            const m = JSON.parse(f.data);
            return m.type === "confirm_subscription" && m.identifier === identifier;
          }), `${u.name}: ${identifier} confirmed by the restarted server`);
        }
      }

      // New broadcasts reach everyone: one per user from the HTTP handler, and one chat
      // message from another user's action.
      const ids = {};
      for (const u of users) {
        const r = await http(demo.baseUrl, "/notifications", { method: "POST", token: u.creds.token, json: { user: u.name, message: `after restart for ${u.name}` } });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        ids[u.name] = r.body.id;
      }
      for (const u of users) {
        const n = await u.notes.waitFor((m) => m.id === ids[u.name], WAIT_MS, { fromIndex: u.notesMark });
        assert.equal(n.message, `after restart for ${u.name}`);
        const others = u.notes.events.slice(u.notesMark).filter((e) => e.type === "received" && e.data.id !== undefined && e.data.id !== ids[u.name]);
        assert.deepEqual(others, [], `${u.name} got only its own notification`);
      }
      users[0].chat.perform("speak", { text: "everyone back?" });
      for (const u of users) {
        const m = await u.chat.waitFor((m) => m.type === "message" && m.text === "everyone back?", WAIT_MS, { fromIndex: u.chatMark });
        assert.equal(m.user, "user0");
      }

      t.diagnostic(`${USERS} consumers x 2 subscriptions: SIGTERM to exit ${stopMs} ms; restart ${upMs} ms; ` +
        `subscriptions back ${fastest}-${slowest} ms after the SIGTERM`);
    } finally {
      await scope.cleanup();
    }
  });
