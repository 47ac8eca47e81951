// The load-balanced topology from local processes (scripts/cluster.sh: its own redis-server, two
// example-demo nodes with CABLE_ADAPTER=redis, nginx in front with plain round robin), driven
// through nginx with the stock @rails/actioncable consumer: two consumers land on DIFFERENT nodes
// (proven from both sides: each node's log names the user it accepted, and nginx's access log
// names the node, `upstream=`, of each WebSocket) and still chat with each other; notifications
// POSTed through nginx reach their owner whichever node takes the POST.
//
// `scripts/cluster.sh up` runs with CLUSTER_PORT a free port, CLUSTER_STATE_DIR a temp dir,
// REDIS_URL empty (so it starts its own Redis) and DEMO_BIN the binary the other tests use;
// `down` runs in `finally` (and at process exit if the test process dies first), then any of its
// processes still alive after 10 s are killed by pid. Needs nginx, redis-server and curl.
// The state dir is copied to test-artifacts/cluster/ when the test fails.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { subscribe, sleep, freePort, waitUntil, closeConsumer, createConsumer } from "./support/consumer.mjs";
import { JS_CLIENT_DIR, DEMO_BIN, assertDemoBuilt, login, http } from "./support/demo.mjs";
import { haveCommand } from "./support/redis.mjs";
import { WAIT_MS, QUIET_MS, CLOSE_MS, PROCESS_STOP_MS, SCRIPT_MS, LONG_TEST_TIMEOUT_MS } from "./support/timing.mjs";

const CLUSTER_SH = join(JS_CLIENT_DIR, "..", "scripts", "cluster.sh");
const ARTIFACTS = join(JS_CLIENT_DIR, "test-artifacts", "cluster");

const missing = ["nginx", "redis-server", "redis-cli", "curl", "python3"].filter((c) => !haveCommand(c));
const skip = missing.length ? `${missing.join(", ")} not found (apt-get install nginx-light redis-server curl python3)` : false;

function cluster(cmd, env) {
  return new Promise((resolve, reject) => {
    execFile("bash", [CLUSTER_SH, cmd], { env: { ...process.env, ...env }, timeout: SCRIPT_MS }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\ncluster.sh ${cmd} stdout: ${stdout}\nstderr: ${stderr}`;
        reject(err);
      } else {
        resolve(stdout);
      }
    });
  });
}

/** The process exists and is not a zombie (an orphan's zombie may wait for a lazy init). */
function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true; // no procfs: trust kill(pid, 0)
  }
}

/** The pids cluster.sh recorded (nodes, redis, nginx master), read before `down` removes them. */
function clusterPids(state) {
  const files = ["node1.pid", "node2.pid", "redis.pid", join("nginx", "nginx.pid")];
  return files.map((f) => join(state, f)).filter((f) => existsSync(f))
    .map((f) => Number(readFileSync(f, "utf8").trim())).filter((pid) => pid > 0);
}

const NAME = "two consumers through nginx land on different nodes, chat, and get their notifications";
test(NAME, { skip, timeout: LONG_TEST_TIMEOUT_MS }, async (t) => {
  assertDemoBuilt();
  const state = mkdtempSync(join(tmpdir(), "actioncable-cluster-test-"));
  const port = await freePort();
  const env = {
    CLUSTER_PORT: String(port),
    CLUSTER_STATE_DIR: state,
    REDIS_URL: "", // cluster.sh starts its own redis-server
    CABLE_CHANNEL_PREFIX: "demo",
    DEMO_BIN,
    // The nodes log each accepted connection with its identity at debug level.
    RUST_LOG: "info,actioncable::server=debug",
    NO_COLOR: "1",
  };
  let pids = [];
  const downSync = () => {
    try { execFileSync("bash", [CLUSTER_SH, "down"], { env: { ...process.env, ...env }, stdio: "ignore", timeout: SCRIPT_MS }); } catch { /* best effort */ }
  };
  process.once("exit", downSync);
  const consumers = [];
  let failed = true;
  try {
    const out = await cluster("up", env);
    pids = clusterPids(state);
    const [, port1, port2] = out.match(/cluster: nodes on (\d+) and (\d+)/) ?? [];
    assert.ok(port1 && port2, `cluster.sh up printed the node ports: ${out}`);
    assert.match(out, new RegExp(`cluster listening on http://127\\.0\\.0\\.1:${port}`));
    const base = `http://127.0.0.1:${port}`;
    // Behind the proxy the page's origin is the proxy's (cluster.sh sets ALLOWED_ORIGINS to it).
    const origin = base;

    const alice = await login(base, "alice");
    const bob = await login(base, "bob");
    const connect = (creds) => {
      const c = createConsumer(`${base.replace("http", "ws")}/cable?token=${encodeURIComponent(creds.token)}`, { origin });
      consumers.push(c);
      return c;
    };
    // One upgrade right after the other: round robin gives them different nodes.
    const aliceC = connect(alice);
    const aliceChat = subscribe(aliceC, { channel: "ChatChannel", room: "lobby" });
    await aliceChat.waitConnected(WAIT_MS);
    const bobC = connect(bob);
    const bobChat = subscribe(bobC, { channel: "ChatChannel", room: "lobby" });
    await bobChat.waitConnected(WAIT_MS);

    await t.test("the two consumers are served by different nodes (node logs)", async () => {
      const accepted = (node, user) => readFileSync(join(state, `node${node}.log`), "utf8").split("\n")
        .filter((l) => l.includes(`identity=current_user=${user}}`) && /session: connected( resumed=false)?$/.test(l)).length;
      const where = await waitUntil(() => {
        const w = { alice: [accepted(1, "alice"), accepted(2, "alice")], bob: [accepted(1, "bob"), accepted(2, "bob")] };
        return w.alice[0] + w.alice[1] === 1 && w.bob[0] + w.bob[1] === 1 ? w : undefined;
      }, { timeoutMs: WAIT_MS, label: "one `connected` line per user in node1.log/node2.log" });
      assert.notDeepEqual(where.alice, where.bob, `alice on node ${where.alice.indexOf(1) + 1}, bob on node ${where.bob.indexOf(1) + 1}`);
    });

    await t.test("they chat with each other across the nodes", async () => {
      await aliceChat.waitFor((m) => m.type === "joined" && m.user === "bob", WAIT_MS);
      aliceChat.perform("speak", { text: "hi bob, from my node" });
      const m1 = await bobChat.waitFor((m) => m.type === "message" && m.user === "alice", WAIT_MS);
      assert.equal(m1.text, "hi bob, from my node");
      bobChat.perform("speak", { text: "hi alice, from mine" });
      const m2 = await aliceChat.waitFor((m) => m.type === "message" && m.user === "bob", WAIT_MS);
      assert.equal(m2.text, "hi alice, from mine");
      assert.deepEqual(await bobChat.waitFor((m) => m.type === "message" && m.user === "bob", WAIT_MS), m2);
      const mark = aliceChat.events.length;
      bobChat.perform("typing");
      assert.deepEqual(await aliceChat.waitFor((m) => m.type === "typing", WAIT_MS, { fromIndex: mark }), { type: "typing", user: "bob" });
      // One SQLite file behind both nodes: either node's history (round robin) has both.
      for (let i = 0; i < 2; i++) {
        const h = await http(base, "/rooms/lobby/messages", { token: alice.token });
        assert.deepEqual(h.body.map((m) => m.text), ["hi bob, from my node", "hi alice, from mine"]);
      }
    });

    await t.test("notifications POSTed through nginx reach their owner only, whichever node takes the POST", async () => {
      const aliceN = subscribe(aliceC, { channel: "NotificationChannel" });
      const bobN = subscribe(bobC, { channel: "NotificationChannel" });
      await aliceN.waitConnected(WAIT_MS);
      await bobN.waitConnected(WAIT_MS);
      // Two POSTs in a row: round robin sends them to different nodes.
      const forBob = await http(base, "/notifications", { method: "POST", token: alice.token, json: { user: "bob", message: "for bob" } });
      const forAlice = await http(base, "/notifications", { method: "POST", token: alice.token, json: { user: "alice", message: "for alice" } });
      assert.equal(forBob.status, 201, JSON.stringify(forBob.body));
      assert.equal(forAlice.status, 201, JSON.stringify(forAlice.body));
      assert.equal((await bobN.waitFor((m) => m.id === forBob.body.id, WAIT_MS)).message, "for bob");
      assert.equal((await aliceN.waitFor((m) => m.id === forAlice.body.id, WAIT_MS)).message, "for alice");
      await sleep(QUIET_MS);
      assert.deepEqual(bobN.received.map((m) => m.message), ["for bob"]);
      assert.deepEqual(aliceN.received.map((m) => m.message), ["for alice"]);
    });

    await t.test("nginx's access log: the two WebSockets went to different upstreams, the two POSTs too", async () => {
      // A proxied WebSocket is logged when it closes.
      await Promise.all(consumers.map((c) => closeConsumer(c, CLOSE_MS)));
      const nodes = [`127.0.0.1:${port1}`, `127.0.0.1:${port2}`];
      const logFile = join(state, "nginx", "logs", "access.log");
      const upstreams = (re) => readFileSync(logFile, "utf8").split("\n").filter((l) => re.test(l))
        .map((l) => (l.match(/ upstream=(\S+)/) ?? [])[1]);
      const ws = await waitUntil(() => {
        const u = upstreams(/"GET \/cable HTTP\/1\.1" 101 /);
        return u.length === 2 ? u : undefined;
      }, { timeoutMs: WAIT_MS, label: "two `GET /cable … 101` lines in nginx's access log" });
      assert.ok(!readFileSync(logFile, "utf8").includes(alice.token), "no login token in the access log");
      assert.deepEqual([...ws].sort(), [...nodes].sort(), `WebSocket upstreams ${ws}`);
      const posts = upstreams(/"POST \/notifications HTTP\/1\.1" 201 /);
      assert.deepEqual([...posts].sort(), [...nodes].sort(), `POST upstreams ${posts}`);
    });
    failed = false;
  } finally {
    await Promise.allSettled(consumers.map((c) => closeConsumer(c, CLOSE_MS)));
    if (!pids.length) pids = clusterPids(state);
    await cluster("down", env).catch((err) => t.diagnostic(`cluster.sh down: ${err.message}`));
    process.removeListener("exit", downSync);
    // `down` signals and returns; wait for the processes, then kill what is left (by pid).
    await waitUntil(() => !pids.some(alive), { timeoutMs: 2 * PROCESS_STOP_MS, label: "cluster processes to exit" }).catch(() => {
      for (const pid of pids.filter(alive)) {
        t.diagnostic(`pid ${pid} still alive after cluster.sh down; SIGKILL`);
        try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
      }
    });
    if (failed) {
      rmSync(ARTIFACTS, { recursive: true, force: true });
      cpSync(state, ARTIFACTS, { recursive: true });
      t.diagnostic(`cluster state and logs copied to ${ARTIFACTS}`);
    }
    rmSync(state, { recursive: true, force: true });
  }
});
