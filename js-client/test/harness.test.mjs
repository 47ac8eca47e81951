// Self-test of test/support/consumer.mjs. Needs no external server: it uses an in-process `ws`
// server speaking just enough ActionCable, and a tiny HTTP fixture for startProcess().

import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import {
  createConsumer,
  subscribe,
  closeConsumer,
  closeAllConsumers,
  waitForConsumerState,
  currentSocket,
  openRawSocket,
  freePort,
  startProcess,
} from "./support/consumer.mjs";
import { WAIT_MS } from "./support/timing.mjs";

const FIXTURE = fileURLToPath(new URL("./fixtures/tiny-server.mjs", import.meta.url));

// A minimal ActionCable-ish server: selects actioncable-v1-json, welcomes, confirms every
// subscribe, echoes `message` data back as {identifier, message: <decoded data>}, and records
// each upgrade request's headers.
async function fakeCable() {
  const port = await freePort();
  const upgrades = [];
  const wss = new WebSocketServer({
    host: "127.0.0.1",
    port,
    handleProtocols: (offered) => (offered.has("actioncable-v1-json") ? "actioncable-v1-json" : false),
  });
  wss.on("connection", (ws, req) => {
    upgrades.push({ url: req.url, headers: req.headers });
    ws.send(JSON.stringify({ type: "welcome" }));
    ws.on("message", (raw) => {
      const cmd = JSON.parse(raw.toString());
      if (cmd.command === "subscribe") {
        ws.send(JSON.stringify({ identifier: cmd.identifier, type: "confirm_subscription" }));
      } else if (cmd.command === "message") {
        ws.send(JSON.stringify({ identifier: cmd.identifier, message: JSON.parse(cmd.data) }));
      }
    });
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  return {
    url: `ws://127.0.0.1:${port}/cable`,
    upgrades,
    close: () => new Promise((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    }),
  };
}

describe("consumer helpers (in-process fake server)", () => {
  let server;
  after(async () => {
    await closeAllConsumers();
    if (server) await server.close();
  });

  test("subscribe, perform, receive; per-consumer origin and headers", async () => {
    server = await fakeCable();
    const alice = createConsumer(`${server.url}?who=alice`, { headers: { Cookie: "user=alice" } });
    const bob = createConsumer(server.url.replace("ws:", "http:") + "?who=bob", { origin: "http://127.0.0.1:3000" });
    const anon = createConsumer(`${server.url}?who=anon`, { origin: null });

    const subs = [alice, bob, anon].map((c) => subscribe(c, { channel: "EchoChannel", n: 1 }));
    for (const s of subs) assert.deepEqual(await s.waitConnected(WAIT_MS), { reconnected: false });

    subs[0].perform("say", { text: "hi <é>" });
    assert.deepEqual(await subs[0].waitFor((m) => m.action === "say", WAIT_MS), { text: "hi <é>", action: "say" });
    assert.equal(subs[1].received.length, 0);

    const byWho = Object.fromEntries(server.upgrades.map((u) => [new URL(u.url, "http://x").searchParams.get("who"), u.headers]));
    assert.equal(byWho.alice.origin, "http://localhost");
    assert.equal(byWho.alice.cookie, "user=alice");
    assert.equal(byWho.bob.origin, "http://127.0.0.1:3000");
    assert.equal(byWho.bob.cookie, undefined);
    assert.equal(byWho.anon.origin, undefined);
    // `ws` joins offered protocols with "," (no space; browsers use ", "): servers must split and trim.
    assert.equal(byWho.alice["sec-websocket-protocol"], "actioncable-v1-json,actioncable-unsupported");
    assert.equal(currentSocket(alice).protocol, "actioncable-v1-json");

    await closeConsumer(alice, WAIT_MS);
    assert.equal(await waitForConsumerState(alice, "closed", WAIT_MS), "closed");
    assert.deepEqual(await subs[0].waitDisconnected(WAIT_MS), { willAttemptReconnect: false });
  });

  test("waitFor rejects with a timeout instead of hanging", async () => {
    server ??= await fakeCable();
    const c = createConsumer(server.url);
    const s = subscribe(c, { channel: "EchoChannel" });
    await s.waitConnected(WAIT_MS);
    await assert.rejects(s.waitFor(() => false, 200), /timed out after 200 ms/);
    await assert.rejects(s.waitRejected(100), /timed out after 100 ms waiting for rejected/);
  });

  test("openRawSocket speaks the wire protocol directly", async () => {
    server ??= await fakeCable();
    const raw = await openRawSocket(server.url, { timeoutMs: WAIT_MS });
    assert.deepEqual(await raw.waitFor((f) => f.type === "welcome", WAIT_MS), { type: "welcome" });
    raw.send({ command: "subscribe", identifier: '{"channel":"X"}' });
    await raw.waitFor((f) => f.type === "confirm_subscription", WAIT_MS);
    raw.close(1000);
    assert.equal((await raw.waitClose(WAIT_MS)).code, 1000);
  });
});

describe("process helpers", () => {
  test("freePort gives a bindable port", async () => {
    const port = await freePort();
    assert.ok(Number.isInteger(port) && port > 0);
    const srv = net.createServer();
    await new Promise((resolve, reject) => srv.once("error", reject).listen(port, "127.0.0.1", resolve));
    await new Promise((resolve) => srv.close(resolve));
  });

  test("startProcess waits for a log line; stop() ends it with SIGTERM", async () => {
    const port = await freePort();
    const p = await startProcess(process.execPath, [FIXTURE], {
      env: { PORT: String(port) }, readyLogLine: /listening on \d+/, timeoutMs: WAIT_MS,
    });
    assert.ok(p.lines.some((l) => l.includes(`listening on ${port}`)));
    assert.deepEqual(await p.stop(), { code: null, signal: "SIGTERM" });
    assert.deepEqual(await p.stop(), { code: null, signal: "SIGTERM" }, "idempotent");
  });

  test("startProcess waits for a URL; stop() escalates to SIGKILL", async () => {
    const port = await freePort();
    const p = await startProcess(process.execPath, [FIXTURE], {
      env: { PORT: String(port), IGNORE_SIGTERM: "1" },
      readyUrl: `http://127.0.0.1:${port}/ready`, readyStatus: (s) => s === 200, timeoutMs: WAIT_MS,
    });
    assert.deepEqual(await p.stop({ graceMs: 300 }), { code: null, signal: "SIGKILL" });
  });

  test("startProcess rejects when the process exits early or never gets ready", async () => {
    await assert.rejects(
      startProcess(process.execPath, ["-e", "console.log('boom'); process.exit(3)"], { readyLogLine: "never", timeoutMs: WAIT_MS }),
      /exited before it was ready \(\{"code":3,"signal":null\}\); output:\nboom/,
    );
    await assert.rejects(
      startProcess(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { readyLogLine: "never", timeoutMs: 300 }),
      /timed out after 300 ms/,
    );
  });
});
