// Two example-demo nodes on each pub/sub backend other than Redis (redis.multinode.test.mjs has
// Redis), driven through the stock @rails/actioncable consumer: chat both ways across the nodes,
// a notification POSTed to one node reaching its user on the other exactly once, and a broadcast
// written straight into the backend as Rails (or, for NATS, AnyCable) writes it reaching the
// consumers on both nodes.
//
// Each test gets its own backend instance (a fresh PostgreSQL or MariaDB database on the shared
// server, dropped after; a fresh SQLite file; NATS subjects of its own) and its own two nodes; one SQLite file in a temp dir is the demo's database
// for both. Needs ../target/debug/example-demo (`cargo build --workspace --bins`). Logs:
// test-artifacts/demo/, one file per test and node.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { subscribe, sleep } from "./support/consumer.mjs";
import { http } from "./support/demo.mjs";
import {
  postgresDatabase, postgresMissing, solidCablePostgres, solidCableMariadb, solidCableSqlite,
  mariadbMissing, sqliteMissing, natsBackend, natsMissing,
} from "./support/backends.mjs";
import { scoped, connectUser, joinRoom, assertMessage, receivedSince } from "./support/multinode.mjs";
import { WAIT_MS, QUIET_MS, TEST_TIMEOUT_MS } from "./support/timing.mjs";

const BACKENDS = [
  { name: "PostgreSQL (LISTEN/NOTIFY)", make: postgresDatabase, missing: postgresMissing },
  { name: "Solid Cable on PostgreSQL", make: solidCablePostgres, missing: postgresMissing },
  { name: "Solid Cable on MariaDB", make: solidCableMariadb, missing: mariadbMissing },
  { name: "Solid Cable on SQLite", make: solidCableSqlite, missing: sqliteMissing },
  { name: "NATS", make: natsBackend, missing: natsMissing },
];

/** Nodes A and B on `backend`, one SQLite file for both. */
async function twoNodes(scope, make, missing) {
  // Never skipped: scripts/test.sh provides every backend, and a missing one is a failure.
  const why = missing();
  assert.equal(why, false, why);
  const backend = await scope.backend(make);
  const database = join(scope.tempDir(), "demo.sqlite3");
  const a = await scope.nodeOn("node-a", backend, { database });
  const b = await scope.nodeOn("node-b", backend, { database });
  // Ready as a load balancer would see them: the adapter's connections up (a broadcast made
  // while one is still being retried is refused, and reported, by design).
  for (const node of [a, b]) await ready(node);
  return { backend, a, b };
}

/** Waits until `node`'s /ready answers 200, within WAIT_MS. */
async function ready(node) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const { status, body } = await http(node.baseUrl, "/ready");
    if (status === 200) return;
    assert.ok(Date.now() < deadline, `${node.baseUrl}/ready still answers ${status}: ${body}`);
    await sleep(50);
  }
}

for (const { name, make, missing } of BACKENDS) {
  describe(`two demo nodes on ${name}`, () => {
    const chat = `${name}: alice on node A and bob on node B chat both ways, each message once`;
    test(chat, { timeout: TEST_TIMEOUT_MS }, scoped(chat, async (scope) => {
      const { a, b } = await twoNodes(scope, make, missing);
      const alice = await connectUser(scope, a, "alice", { loginNode: b });
      const bob = await connectUser(scope, b, "bob", { loginNode: a, via: "cookie" });
      const aliceChat = await joinRoom(alice, "lobby");
      const bobChat = await joinRoom(bob, "lobby");
      assert.deepEqual(await aliceChat.waitFor((m) => m.type === "joined" && m.user === "bob", WAIT_MS),
        { type: "joined", user: "bob" }, "bob's join on B reaches alice on A");

      aliceChat.perform("speak", { text: "hello from node A" });
      const m1 = await bobChat.waitFor((m) => m.type === "message" && m.user === "alice", WAIT_MS);
      assertMessage(m1, { user: "alice", text: "hello from node A" });
      assert.deepEqual(await aliceChat.waitFor((m) => m.type === "message" && m.user === "alice", WAIT_MS), m1);

      bobChat.perform("speak", { text: "hi alice, B here 👋" });
      const m2 = await aliceChat.waitFor((m) => m.type === "message" && m.user === "bob", WAIT_MS);
      assertMessage(m2, { user: "bob", text: "hi alice, B here 👋" });
      assert.deepEqual(await bobChat.waitFor((m) => m.type === "message" && m.user === "bob", WAIT_MS), m2);

      await sleep(QUIET_MS);
      for (const rec of [aliceChat, bobChat]) {
        assert.deepEqual(receivedSince(rec).filter((m) => m.type === "message"), [m1, m2],
          "every message exactly once, in order");
      }
      assert.equal(alice.consumer.sockets.length, 1, "no reconnects");
      assert.equal(bob.consumer.sockets.length, 1, "no reconnects");
    }));

    const notify = `${name}: a notification POSTed to node A reaches bob on node B only, once`;
    test(notify, { timeout: TEST_TIMEOUT_MS }, scoped(notify, async (scope) => {
      const { a, b } = await twoNodes(scope, make, missing);
      const alice = await connectUser(scope, a, "alice");
      const bob = await connectUser(scope, b, "bob", { via: "cookie" });
      const aliceN = subscribe(alice.consumer, { channel: "NotificationChannel" });
      const bobN = subscribe(bob.consumer, { channel: "NotificationChannel" });
      await aliceN.waitConnected(WAIT_MS);
      await bobN.waitConnected(WAIT_MS);
      const created = await http(a.baseUrl, "/notifications", {
        method: "POST", token: alice.token, json: { user: "bob", message: "Your build passed", kind: "success", link: "/builds/42" },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const n = created.body;
      const push = await bobN.waitFor((m) => m.id === n.id, WAIT_MS);
      assert.deepEqual(push, { id: n.id, message: "Your build passed", kind: "success", link: "/builds/42", created_at: n.created_at });
      await sleep(QUIET_MS);
      assert.deepEqual(receivedSince(aliceN), [], "alice gets nothing");
      assert.deepEqual(receivedSince(bobN), [push], "bob gets it exactly once");
    }));

    const outside = `${name}: a broadcast written into the backend as Rails or AnyCable does reaches both nodes`;
    test(outside, { timeout: TEST_TIMEOUT_MS }, scoped(outside, async (scope) => {
      const { backend, a, b } = await twoNodes(scope, make, missing);
      const alice = await joinRoom(await connectUser(scope, a, "alice"), "lobby");
      const bob = await joinRoom(await connectUser(scope, b, "bob"), "lobby");
      const marks = [alice.events.length, bob.events.length];
      const expected = { type: "message", user: "rails", text: "from outside ☃" };
      await backend.publishRaw("chat:lobby", JSON.stringify(expected));
      for (const [i, rec] of [alice, bob].entries()) {
        assert.deepEqual(await rec.waitFor((m) => m.user === "rails", WAIT_MS, { fromIndex: marks[i] }), expected);
      }
      await sleep(QUIET_MS);
      for (const rec of [alice, bob]) {
        assert.deepEqual(receivedSince(rec).filter((m) => m.user === "rails"), [expected], "once");
      }
    }));
  });
}
