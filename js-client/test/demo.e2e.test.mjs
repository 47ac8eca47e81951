// End-to-end tests of the Rust demo server (examples/demo, the contract is /tmp/demo-spec.md at
// the time of writing): each test starts `example-demo` as a real process (PORT=0 or a fixed
// free port, DEMO_DATABASE=:memory: unless stated) and drives it ONLY through the stock
// `@rails/actioncable` consumer, plus `fetch` for the HTTP endpoints.
//
// The binary must be built first (scripts/test.sh does `cargo build --workspace --bins`):
//   cargo build -p example-demo && (cd js-client && npm test)
// DEMO_BIN overrides its path. Demo logs: test-artifacts/demo/<test name>.log.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { subscribe, sleep, currentSocket, consumerState, waitForFrame, waitUntil } from "./support/consumer.mjs";
import {
  Scope, login, http, signJwt, nowSecs, freePort, TEST_SECRET, RFC3339_UTC,
} from "./support/demo.mjs";
import { WAIT_MS, QUIET_MS, SETTLE_MS, TEST_TIMEOUT_MS, LONG_TEST_TIMEOUT_MS, RECONNECT_WAIT_MS, DEMO_STOP_GRACE_MS } from "./support/timing.mjs";


/** A node:test test with its own Scope (consumers, processes, temp dirs), always cleaned up. */
function demoTest(name, { timeout = TEST_TIMEOUT_MS } = {}, fn) {
  test(name, { timeout }, async (t) => {
    const scope = new Scope(name);
    try {
      await fn(scope, t);
    } finally {
      await scope.cleanup();
    }
  });
}

const chatId = (room) => JSON.stringify({ channel: "ChatChannel", room });

/** Login + a consumer authenticated by ?token= (default) or by the signed cookie. */
async function connectUser(scope, demo, name, { via = "token" } = {}) {
  const creds = await login(demo.baseUrl, name);
  const consumer = via === "token"
    ? scope.consumer(`${demo.cableUrl}?token=${encodeURIComponent(creds.token)}`)
    : scope.consumer(demo.cableUrl, { headers: { Cookie: creds.cookie } });
  return { ...creds, consumer };
}

/** Subscribe to a chat room and wait for the confirmation and for our own `joined`. */
async function joinRoom(user, room) {
  const chat = subscribe(user.consumer, { channel: "ChatChannel", room });
  assert.deepEqual(await chat.waitConnected(WAIT_MS), { reconnected: false });
  await chat.waitFor((m) => m.type === "joined" && m.user === user.user, WAIT_MS);
  return chat;
}

function assertMessage(m, { user, text }) {
  assert.deepEqual(Object.keys(m).sort(), ["id", "sent_at", "text", "type", "user"], JSON.stringify(m));
  assert.equal(m.type, "message");
  assert.equal(m.user, user);
  assert.equal(m.text, text);
  assert.ok(Number.isInteger(m.id) && m.id > 0, `integer id: ${JSON.stringify(m)}`);
  assert.match(m.sent_at, RFC3339_UTC);
  assert.ok(Math.abs(Date.parse(m.sent_at) - Date.now()) < 60_000, `sent_at is now-ish: ${m.sent_at}`);
}

describe("example-demo through the stock @rails/actioncable consumer", () => {
  demoTest("two users chat in lobby: joined, speak both ways, typing, history, left", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await connectUser(scope, demo, "alice", { via: "token" });
    const bob = await connectUser(scope, demo, "bob", { via: "cookie" });
    assert.match(bob.setCookie, /^user=[^;]+;.*HttpOnly/i, "login sets the signed, HttpOnly user cookie");

    const aliceChat = await joinRoom(alice, "lobby");
    assert.equal(aliceChat.identifier, chatId("lobby"));
    const bobChat = await joinRoom(bob, "lobby");
    assert.deepEqual(await aliceChat.waitFor((m) => m.type === "joined" && m.user === "bob", WAIT_MS), { type: "joined", user: "bob" });
    // `joined` is a broadcast, not presence: bob (who came later) sees alice's only when she (re)joins.
    const mark = bobChat.events.length;
    aliceChat.unsubscribe();
    assert.deepEqual(await bobChat.waitFor((m) => m.type === "left", WAIT_MS, { fromIndex: mark }), { type: "left", user: "alice" });
    const aliceChat2 = subscribe(alice.consumer, { channel: "ChatChannel", room: "lobby" });
    await aliceChat2.waitConnected(WAIT_MS);
    assert.deepEqual(await bobChat.waitFor((m) => m.type === "joined", WAIT_MS, { fromIndex: mark }), { type: "joined", user: "alice" });

    // alice → bob
    aliceChat2.perform("speak", { text: "hello bob" });
    const m1b = await bobChat.waitFor((m) => m.type === "message" && m.text === "hello bob", WAIT_MS);
    const m1a = await aliceChat2.waitFor((m) => m.type === "message" && m.text === "hello bob", WAIT_MS);
    assertMessage(m1b, { user: "alice", text: "hello bob" });
    assert.deepEqual(m1a, m1b, "sender and receiver get the same broadcast");

    // bob → alice (text is trimmed; unicode survives)
    bobChat.perform("speak", { text: "  hi alice — ça va? 👋 \n" });
    const m2a = await aliceChat2.waitFor((m) => m.type === "message" && m.user === "bob", WAIT_MS);
    assertMessage(m2a, { user: "bob", text: "hi alice — ça va? 👋" });
    assert.ok(m2a.id > m1b.id, "ids increase");
    assert.deepEqual(await bobChat.waitFor((m) => m.type === "message" && m.user === "bob", WAIT_MS), m2a);

    // typing reaches the other
    const typingMark = bobChat.events.length;
    aliceChat2.perform("typing");
    assert.deepEqual(await bobChat.waitFor((m) => m.type === "typing", WAIT_MS, { fromIndex: typingMark }), { type: "typing", user: "alice" });

    // history goes to the sender only, oldest first
    bobChat.perform("history", {});
    const hist = await bobChat.waitFor((m) => m.type === "history", WAIT_MS);
    assert.deepEqual(Object.keys(hist).sort(), ["messages", "type"]);
    const strip = ({ id, user, text, sent_at }) => ({ id, user, text, sent_at }); // a broadcast without "type"
    assert.deepEqual(hist.messages, [strip(m1b), strip(m2a)]);
    bobChat.perform("history", { limit: 1 });
    const hist1 = await bobChat.waitFor((m) => m.type === "history" && m.messages.length === 1, WAIT_MS);
    assert.deepEqual(hist1.messages, [strip(m2a)], "limit keeps the newest, still oldest first");
    // The HTTP API has the same history (Bearer token and cookie both work).
    assert.deepEqual((await http(demo.baseUrl, "/rooms/lobby/messages", { token: alice.token })).body, hist.messages);
    assert.deepEqual((await http(demo.baseUrl, "/rooms/lobby/messages?limit=1", { cookie: bob.cookie })).body, hist1.messages);
    assert.equal((await http(demo.baseUrl, "/rooms/lobby/messages")).status, 401);

    // bob leaves: alice sees `left`; alice never got bob's history replies
    const leftMark = aliceChat2.events.length;
    bobChat.unsubscribe();
    assert.deepEqual(await aliceChat2.waitFor((m) => m.type === "left", WAIT_MS, { fromIndex: leftMark }), { type: "left", user: "bob" });
    assert.ok(!aliceChat2.received.some((m) => m.type === "history"), "history is not broadcast");
  });

  demoTest("invalid speak: only the sender gets an error, nobody gets a message", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await connectUser(scope, demo, "alice");
    const bob = await connectUser(scope, demo, "bob");
    const aliceChat = await joinRoom(alice, "errors");
    const bobChat = await joinRoom(bob, "errors");
    await aliceChat.waitFor((m) => m.type === "joined" && m.user === "bob", WAIT_MS);
    const aMark = aliceChat.events.length;
    const bMark = bobChat.events.length;

    const bad = [{ text: "" }, { text: " \t\n  " }, { text: "x".repeat(501) }, { text: ` ${"é".repeat(501)} ` }, {}];
    for (const data of bad) aliceChat.perform("speak", data);
    // Then a valid message at the limit (500 characters, 1000 bytes; surrounding blanks trimmed).
    const longest = "é".repeat(500);
    aliceChat.perform("speak", { text: `  ${longest}  ` });

    const ok = await bobChat.waitFor((m) => m.type === "message", WAIT_MS, { fromIndex: bMark });
    assertMessage(ok, { user: "alice", text: longest });
    await aliceChat.waitFor((m) => m.type === "message", WAIT_MS, { fromIndex: aMark });
    // Everything the room's stream carried for alice's speaks came before that broadcast, and
    // the errors are transmitted in order before it too.
    await sleep(SETTLE_MS);
    const aliceGot = aliceChat.events.slice(aMark).filter((e) => e.type === "received").map((e) => e.data);
    const errors = aliceGot.filter((m) => m.type === "error");
    assert.equal(errors.length, bad.length, `one error per bad speak; got ${JSON.stringify(aliceGot)}`);
    for (const e of errors) {
      assert.deepEqual(Object.keys(e).sort(), ["error", "type"]);
      assert.equal(typeof e.error, "string");
      assert.ok(e.error.length > 0);
    }
    assert.match(errors[0].error, /empty/i);
    assert.match(errors[2].error, /long/i);
    const bobGot = bobChat.events.slice(bMark).filter((e) => e.type === "received").map((e) => e.data);
    assert.deepEqual(bobGot, [ok], "bob got only the valid message, no errors");
    assert.deepEqual(aliceGot.filter((m) => m.type !== "error"), [ok], "alice: the errors, then only the valid message");
    // Nothing invalid was stored.
    const stored = (await http(demo.baseUrl, "/rooms/errors/messages", { token: bob.token })).body;
    assert.deepEqual(stored.map((m) => m.text), [longest]);
  });

  demoTest("rejected connections: no credentials, forged/expired/unsigned tokens, tampered cookie", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await login(demo.baseUrl, "alice");
    const now = nowSecs();
    // `ver`: the user's session version (0 until their first logout).
    const claims = { sub: "alice", iat: now, exp: now + 3600, ver: 0 };
    // The signed value names the user; change the name and keep the signature.
    const tampered = alice.cookie.replace(/alice/, "admin");
    assert.notEqual(tampered, alice.cookie);
    const cases = {
      "no token, no cookie": [demo.cableUrl, {}],
      "token signed with another secret": [`${demo.cableUrl}?token=${signJwt(claims, "another-secret-that-is-long-enough-0123456789")}`, {}],
      "expired token (right secret)": [`${demo.cableUrl}?token=${signJwt({ ...claims, iat: now - 7200, exp: now - 3600 }, TEST_SECRET)}`, {}],
      "alg none token": [`${demo.cableUrl}?token=${signJwt(claims, null, { alg: "none" })}`, {}],
      "garbage token + valid cookie": [`${demo.cableUrl}?token=nope`, { headers: { Cookie: alice.cookie } }],
      "cookie signed for alice, value changed to admin": [demo.cableUrl, { headers: { Cookie: tampered } }],
      "token without a session version (right secret)": [`${demo.cableUrl}?token=${signJwt({ sub: "alice", iat: now, exp: now + 3600 }, TEST_SECRET)}`, {}],
      "unsigned cookie": [demo.cableUrl, { headers: { Cookie: "user=alice" } }],
    };
    const runs = Object.entries(cases).map(([label, [url, opts]]) => {
      const consumer = scope.consumer(url, opts);
      return { label, consumer, chat: subscribe(consumer, { channel: "ChatChannel", room: "lobby" }) };
    });
    // Positive control: a token the test signs with the server's secret is accepted, so the
    // failures above are about the credentials, not about how the test builds tokens.
    const control = scope.consumer(`${demo.cableUrl}?token=${signJwt(claims, TEST_SECRET)}`);
    const controlChat = subscribe(control, { channel: "ChatChannel", room: "lobby" });

    for (const { label, consumer, chat } of runs) {
      assert.deepEqual(await chat.waitDisconnected(WAIT_MS), { willAttemptReconnect: false }, label);
      const frame = await waitForFrame(consumer, (f) => f.type === "disconnect", WAIT_MS, `${label}: disconnect frame`);
      assert.deepEqual(frame, { type: "disconnect", reason: "unauthorized", reconnect: false }, label);
    }
    await controlChat.waitConnected(WAIT_MS);
    await sleep(QUIET_MS); // no reconnect attempts, no late confirmation
    for (const { label, consumer, chat } of runs) {
      assert.ok(!chat.events.some((e) => e.type === "connected"), `${label}: never connected`);
      assert.equal(consumer.sockets.length, 1, `${label}: no reconnect`);
      assert.equal(consumerState(consumer), "closed", label);
      assert.ok(!currentSocket(consumer).frames.some((f) => f.data.includes("welcome")), `${label}: no welcome`);
    }
  });

  demoTest("rejected subscriptions: missing room, invalid rooms, private room for a non-member", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await connectUser(scope, demo, "alice");
    const admin = await connectUser(scope, demo, "admin", { via: "cookie" });
    const rejectedParams = [
      { channel: "ChatChannel" },
      { channel: "ChatChannel", room: "" },
      { channel: "ChatChannel", room: "Lobby" },
      { channel: "ChatChannel", room: "-lobby" },
      { channel: "ChatChannel", room: "lobby room" },
      { channel: "ChatChannel", room: "a".repeat(41) },
      { channel: "ChatChannel", room: 5 },
      { channel: "ChatChannel", room: "staff" },
      { channel: "NoSuchChannel" }, // actioncable-rs rejects unknown channels (Rails stays silent; docs/protocol.md)
    ];
    const subs = rejectedParams.map((p) => subscribe(alice.consumer, p));
    for (const [i, s] of subs.entries()) {
      assert.equal(await s.waitRejected(WAIT_MS), true, JSON.stringify(rejectedParams[i]));
    }
    // The connection survives rejections and still works.
    const ok = await joinRoom(alice, `${"a".repeat(40)}`);
    assert.equal(consumerState(alice.consumer), "open");
    assert.equal(alice.consumer.sockets.length, 1);
    assert.ok(subs.every((s) => !s.events.some((e) => e.type === "connected")));
    ok.perform("speak", { text: "still here" });
    await ok.waitFor((m) => m.type === "message" && m.text === "still here", WAIT_MS);

    // The member gets in (positive control for the private room), and so does the HTTP rule.
    const staff = await joinRoom(admin, "staff");
    staff.perform("speak", { text: "staff only" });
    await staff.waitFor((m) => m.type === "message" && m.text === "staff only", WAIT_MS);
    assert.equal((await http(demo.baseUrl, "/rooms/staff/messages", { token: alice.token })).status, 403);
    const adminView = await http(demo.baseUrl, "/rooms/staff/messages", { token: admin.token });
    assert.equal(adminView.status, 200);
    assert.deepEqual(adminView.body.map((m) => m.text), ["staff only"]);
  });

  demoTest("notifications: only the addressee gets them; mark_read for own ids only", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await connectUser(scope, demo, "alice");
    const bob = await connectUser(scope, demo, "bob", { via: "cookie" });
    const aliceN = subscribe(alice.consumer, { channel: "NotificationChannel" });
    const bobN = subscribe(bob.consumer, { channel: "NotificationChannel" });
    assert.equal(bobN.identifier, '{"channel":"NotificationChannel"}');
    await aliceN.waitConnected(WAIT_MS);
    await bobN.waitConnected(WAIT_MS);

    // Any signed-in user may notify any user: alice notifies bob (with her bearer token).
    const created = await http(demo.baseUrl, "/notifications", {
      method: "POST", token: alice.token, json: { user: "bob", message: "Your build passed", kind: "success", link: "/builds/42" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const n1 = created.body;
    assert.deepEqual(Object.keys(n1).sort(), ["created_at", "id", "kind", "link", "message", "read", "user"]);
    assert.ok(Number.isInteger(n1.id));
    assert.match(n1.created_at, RFC3339_UTC);
    assert.deepEqual({ ...n1, id: 0, created_at: "" },
      { id: 0, user: "bob", message: "Your build passed", kind: "success", link: "/builds/42", read: false, created_at: "" });

    const pushed = await bobN.waitFor((m) => m.id === n1.id, WAIT_MS);
    assert.deepEqual(pushed, { id: n1.id, message: n1.message, kind: n1.kind, link: n1.link, created_at: n1.created_at });

    // Defaults: kind "info", link null.
    const n2 = (await http(demo.baseUrl, "/notifications", { method: "POST", token: alice.token, json: { user: "bob", message: "second" } })).body;
    assert.deepEqual(await bobN.waitFor((m) => m.id === n2.id, WAIT_MS),
      { id: n2.id, message: "second", kind: "info", link: null, created_at: n2.created_at });

    await sleep(QUIET_MS);
    assert.deepEqual(aliceN.received, [], "alice got nothing");

    // Invalid bodies are refused and push nothing.
    for (const json of [{ message: "x" }, { user: "", message: "x" }, { user: "bob" }, { user: "bob", message: "  " }]) {
      const r = await http(demo.baseUrl, "/notifications", { method: "POST", token: alice.token, json });
      assert.equal(r.status, 422, JSON.stringify(json));
      assert.equal(typeof r.body.error, "string");
    }

    // bob marks n1 read.
    bobN.perform("mark_read", { id: n1.id });
    assert.deepEqual(await bobN.waitFor((m) => m.type === "marked_read", WAIT_MS), { type: "marked_read", id: n1.id });
    const list = await http(demo.baseUrl, "/notifications", { token: bob.token });
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.map((n) => [n.id, n.read]), [[n2.id, false], [n1.id, true]], "newest first");
    assert.deepEqual(Object.keys(list.body[0]).sort(), ["created_at", "id", "kind", "link", "message", "read"]);

    // alice cannot mark bob's n2, and cannot see it.
    aliceN.perform("mark_read", { id: n2.id });
    assert.deepEqual(await aliceN.waitFor((m) => m.type === "error", WAIT_MS), { type: "error", error: "notification not found" });
    const errMark = aliceN.events.length;
    aliceN.perform("mark_read", { id: 999999 });
    assert.deepEqual(await aliceN.waitFor((m) => m.type === "error", WAIT_MS, { fromIndex: errMark }),
      { type: "error", error: "notification not found" }, "someone else's id and a missing id look the same");
    const after = await http(demo.baseUrl, "/notifications", { cookie: bob.cookie });
    assert.deepEqual(after.body.map((n) => [n.id, n.read]), [[n2.id, false], [n1.id, true]], "n2 stays unread");
    assert.deepEqual((await http(demo.baseUrl, "/notifications", { token: alice.token })).body, []);
    assert.equal((await http(demo.baseUrl, "/notifications")).status, 401);
    assert.ok(!bobN.received.some((m) => m.type === "error"), "bob got no errors");
  });

  demoTest("unsubscribe stops delivery (checked on the wire, not just in the consumer)", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await connectUser(scope, demo, "alice");
    const bob = await connectUser(scope, demo, "bob");
    const aliceChat = await joinRoom(alice, "quiet");
    const bobChat = await joinRoom(bob, "quiet");

    aliceChat.perform("speak", { text: "before" });
    await bobChat.waitFor((m) => m.type === "message" && m.text === "before", WAIT_MS);

    const leftMark = aliceChat.events.length;
    bobChat.unsubscribe();
    await aliceChat.waitFor((m) => m.type === "left" && m.user === "bob", WAIT_MS, { fromIndex: leftMark });
    const socket = currentSocket(bob.consumer);
    const frameMark = socket.frames.length;
    const bobMark = bobChat.events.length;

    for (const text of ["after 1", "after 2", "after 3"]) aliceChat.perform("speak", { text });
    await aliceChat.waitFor((m) => m.type === "message" && m.text === "after 3", WAIT_MS);
    await sleep(QUIET_MS);
    assert.deepEqual(bobChat.events.slice(bobMark), [], "bob's subscription got nothing");
    const leaked = socket.frames.slice(frameMark).filter((f) => f.data.includes("after "));
    assert.deepEqual(leaked, [], "the server sent nothing for the room to bob's connection");
    assert.equal(consumerState(bob.consumer), "open", "bob's connection stays up");

    // Re-subscribing brings delivery back.
    const again = await joinRoom(bob, "quiet");
    aliceChat.perform("speak", { text: "welcome back" });
    await again.waitFor((m) => m.type === "message" && m.text === "welcome back", WAIT_MS);
  });

  demoTest("the consumer reconnects by itself after the server restarts", { timeout: LONG_TEST_TIMEOUT_MS }, async (scope, t) => {
    const port = await freePort();
    const database = join(scope.tempDir(), "demo.sqlite3");
    let demo = await scope.demo({ port, database });
    const alice = await connectUser(scope, demo, "alice");
    const bob = await connectUser(scope, demo, "bob", { via: "cookie" });
    const aliceChat = await joinRoom(alice, "restart");
    const bobChat = await joinRoom(bob, "restart");
    aliceChat.perform("speak", { text: "before restart" });
    const before = await bobChat.waitFor((m) => m.type === "message" && m.text === "before restart", WAIT_MS);

    const aMark = aliceChat.events.length;
    const bMark = bobChat.events.length;
    const stoppedAt = Date.now();
    assert.deepEqual(await demo.stop({ graceMs: DEMO_STOP_GRACE_MS }), { code: 0, signal: null }, "graceful exit on SIGTERM");
    const stopMs = Date.now() - stoppedAt;
    for (const [name, user, chat, mark] of [["alice", alice, aliceChat, aMark], ["bob", bob, bobChat, bMark]]) {
      assert.deepEqual(user.consumer.sockets.at(-1).frames.map((f) => JSON.parse(f.data)).find((f) => f.type === "disconnect"),
        { type: "disconnect", reason: "server_restart", reconnect: true }, name);
      assert.deepEqual(await chat.waitDisconnected(WAIT_MS, { fromIndex: mark }), { willAttemptReconnect: true }, name);
    }

    const restartAt = Date.now();
    demo = await scope.demo({ port, database });
    const upMs = Date.now() - restartAt;

    const [aliceBack, bobBack] = await Promise.all([
      aliceChat.waitForEvent((e) => e.type === "connected", RECONNECT_WAIT_MS, { fromIndex: aMark, label: "alice reconnected" }),
      bobChat.waitForEvent((e) => e.type === "connected", RECONNECT_WAIT_MS, { fromIndex: bMark, label: "bob reconnected" }),
    ]);
    assert.deepEqual(aliceBack.data, { reconnected: true });
    assert.deepEqual(bobBack.data, { reconnected: true });
    const tookA = aliceBack.at - stoppedAt;
    const tookB = bobBack.at - stoppedAt;
    t.diagnostic(`server stop took ${stopMs} ms, restart ${upMs} ms; subscriptions reconnected ` +
      `${tookA} ms (alice) / ${tookB} ms (bob) after the SIGTERM (stock ConnectionMonitor: stale threshold 6 s, poll 6-12 s)`);

    // New messages flow both ways, and the file database kept the old one.
    bobChat.perform("speak", { text: "after restart" });
    const after = await aliceChat.waitFor((m) => m.type === "message" && m.text === "after restart", WAIT_MS);
    assertMessage(after, { user: "bob", text: "after restart" });
    assert.ok(after.id > before.id);
    aliceChat.perform("history", {});
    const hist = await aliceChat.waitFor((m) => m.type === "history", WAIT_MS);
    assert.deepEqual(hist.messages.map((m) => m.text), ["before restart", "after restart"]);
    assert.ok(alice.consumer.sockets.length >= 2);
  });

  demoTest("HTTP GET /cable is 404; a cross-origin consumer never connects, a non-browser one does", {}, async (scope) => {
    const demo = await scope.demo();
    const plain = await http(demo.baseUrl, "/cable");
    assert.equal(plain.status, 404);
    assert.equal(plain.body, "Page not found");
    assert.equal((await http(demo.baseUrl, "/health")).body, "ok");

    const alice = await login(demo.baseUrl, "alice");
    const url = `${demo.cableUrl}?token=${encodeURIComponent(alice.token)}`;
    const evil = scope.consumer(url, { origin: "http://evil.example" });
    const evilChat = subscribe(evil, { channel: "ChatChannel", room: "lobby" });
    // Positive controls: the default allowed origins (localhost / 127.0.0.1, any port, and same origin).
    const same = scope.consumer(url, { origin: demo.baseUrl });
    const sameChat = subscribe(same, { channel: "ChatChannel", room: "lobby" });
    const local = scope.consumer(url, { origin: "http://localhost:5173" });
    const localChat = subscribe(local, { channel: "ChatChannel", room: "lobby" });
    // Not a browser (browsers always send Origin): no Origin header at all is admitted.
    const noOrigin = scope.consumer(url, { origin: null });
    const noOriginChat = subscribe(noOrigin, { channel: "ChatChannel", room: "lobby" });
    await sameChat.waitConnected(WAIT_MS);
    await localChat.waitConnected(WAIT_MS);
    await noOriginChat.waitConnected(WAIT_MS);

    await sleep(3 * QUIET_MS);
    for (const [label, consumer, chat] of [["evil origin", evil, evilChat]]) {
      assert.deepEqual(chat.events.map((e) => e.type), ["initialized"], `${label}: never connected`);
      const sock = consumer.sockets[0];
      assert.deepEqual(sock.frames, [], `${label}: no frames`);
      assert.equal(sock.upgradeHeaders, null, `${label}: no upgrade`);
      assert.ok(sock.errors.some((e) => /Unexpected server response: 404/.test(e)), `${label}: ${JSON.stringify(sock.errors)}`);
    }
    assert.ok(demo.proc.lines.some((l) => /origin not allowed/i.test(l) && l.includes("http://evil.example")), "logged");
  });

  demoTest("cross-site shapes are refused: text/plain login, text/plain or unauthenticated notifications", {}, async (scope) => {
    const demo = await scope.demo();
    const bob = await login(demo.baseUrl, "bob");
    const post = (path, headers, body) => fetch(`${demo.baseUrl}${path}`, {
      method: "POST", headers, body, signal: AbortSignal.timeout(WAIT_MS),
    });
    // What a form or a no-cors fetch on any web page can send without a preflight.
    const login415 = await post("/login", { "Content-Type": "text/plain" }, JSON.stringify({ name: "mallory" }));
    assert.equal(login415.status, 415);
    assert.equal(login415.headers.get("set-cookie"), null, "no login cookie");
    const note = JSON.stringify({ user: "bob", message: "click", link: "https://evil.example/" });
    assert.equal((await post("/notifications", { "Content-Type": "text/plain" }, note)).status, 401);
    assert.equal((await post("/notifications", { "Content-Type": "application/json" }, note)).status, 401, "JSON, no token");
    assert.equal((await post("/notifications", { "Content-Type": "application/json", Cookie: bob.cookie }, note)).status, 401,
      "the cookie is not enough");
    assert.equal((await post("/notifications", { "Content-Type": "text/plain", Authorization: `Bearer ${bob.token}` }, note)).status, 415);
    assert.deepEqual((await http(demo.baseUrl, "/notifications", { token: bob.token })).body, [], "nothing stored");
    // The control: the page's own request (bearer token, JSON).
    const ok = await http(demo.baseUrl, "/notifications", { method: "POST", token: bob.token, json: { user: "bob", message: "fine" } });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
  });

  demoTest("logout ends every session of the user: old token and cookie refused, open consumers closed for good", {}, async (scope) => {
    const demo = await scope.demo();
    const tab1 = await connectUser(scope, demo, "alice", { via: "token" });
    const tab2 = await connectUser(scope, demo, "alice", { via: "cookie" });
    const bob = await connectUser(scope, demo, "bob");
    const chats = [tab1, tab2].map((u) => subscribe(u.consumer, { channel: "ChatChannel", room: "lobby" }));
    for (const chat of chats) await chat.waitConnected(WAIT_MS);
    const bobChat = await joinRoom(bob, "lobby");

    const out = await http(demo.baseUrl, "/logout", { method: "POST", token: tab1.token, json: {} });
    assert.equal(out.status, 204);
    assert.match(out.headers.get("set-cookie"), /^user=;.*Max-Age=0/);
    for (const [i, u] of [tab1, tab2].entries()) {
      const frame = await waitForFrame(u.consumer, (f) => f.type === "disconnect", WAIT_MS, `tab ${i + 1}: disconnect`);
      assert.deepEqual(frame, { type: "disconnect", reason: "remote", reconnect: false });
      assert.deepEqual(await chats[i].waitDisconnected(WAIT_MS), { willAttemptReconnect: false });
    }
    // Over HTTP: both old credentials are refused.
    assert.equal((await http(demo.baseUrl, "/notifications", { token: tab1.token })).status, 401);
    assert.equal((await http(demo.baseUrl, "/notifications", { cookie: tab2.cookie })).status, 401);
    assert.equal((await http(demo.baseUrl, "/notifications", { method: "POST", token: tab2.token, json: { user: "bob", message: "x" } })).status, 401);
    // Over the cable: both are refused at connect.
    for (const [label, url, opts] of [
      ["old token", `${demo.cableUrl}?token=${encodeURIComponent(tab1.token)}`, {}],
      ["old cookie", demo.cableUrl, { headers: { Cookie: tab2.cookie } }],
    ]) {
      const consumer = scope.consumer(url, opts);
      subscribe(consumer, { channel: "ChatChannel", room: "lobby" });
      const frame = await waitForFrame(consumer, (f) => f.type === "disconnect", WAIT_MS, `${label}: disconnect`);
      assert.deepEqual(frame, { type: "disconnect", reason: "unauthorized", reconnect: false }, label);
    }
    await sleep(QUIET_MS);
    assert.equal(consumerState(bob.consumer), "open", "bob stays connected");
    bobChat.perform("speak", { text: "still here" });
    await bobChat.waitFor((m) => m.type === "message" && m.text === "still here", WAIT_MS);
    // Signing in again works.
    const again = await connectUser(scope, demo, "alice");
    await joinRoom(again, "lobby");
  });

  demoTest("limits from the environment: 429 + Retry-After over HTTP, an error reply over the cable, retention", {}, async (scope) => {
    const demo = await scope.demo({
      env: {
        LOGIN_LIMIT_PER_MINUTE: "3", NOTIFY_LIMIT_PER_MINUTE: "2", CHAT_LIMIT_PER_MINUTE: "4",
        CHAT_KEEP_PER_ROOM: "3", NOTIFICATIONS_KEEP_PER_USER: "1",
      },
    });
    const alice = await connectUser(scope, demo, "alice");
    const bob = await login(demo.baseUrl, "bob");
    await login(demo.baseUrl, "carol");
    const refused = await http(demo.baseUrl, "/login", { method: "POST", json: { name: "dave" } });
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("retry-after"), "20");
    assert.equal(typeof refused.body.error, "string");

    for (const message of ["one", "two"]) {
      assert.equal((await http(demo.baseUrl, "/notifications", { method: "POST", token: alice.token, json: { user: "bob", message } })).status, 201);
    }
    const tooMany = await http(demo.baseUrl, "/notifications", { method: "POST", token: alice.token, json: { user: "bob", message: "three" } });
    assert.equal(tooMany.status, 429);
    assert.equal(tooMany.headers.get("retry-after"), "30");
    const kept = (await http(demo.baseUrl, "/notifications", { token: bob.token })).body;
    assert.deepEqual(kept.map((n) => n.message), ["two"], "the last notification per user is kept");

    const chat = await joinRoom(alice, "limits");
    for (const text of ["m1", "m2", "m3", "m4", "m5"]) chat.perform("speak", { text });
    const error = await chat.waitFor((m) => m.type === "error", WAIT_MS);
    assert.deepEqual(error, { type: "error", error: "you are sending messages too fast; wait a moment", retry_after: 15 });
    await chat.waitFor((m) => m.type === "message" && m.text === "m4", WAIT_MS);
    const stored = (await http(demo.baseUrl, "/rooms/limits/messages", { token: alice.token })).body;
    assert.deepEqual(stored.map((m) => m.text), ["m2", "m3", "m4"], "four stored, the last three kept, the fifth refused");
  });

  demoTest("ALLOWED_ORIGINS replaces the localhost default", {}, async (scope) => {
    const demo = await scope.demo({ env: { ALLOWED_ORIGINS: "https://chat.example.com" } });
    const alice = await login(demo.baseUrl, "alice");
    const url = `${demo.cableUrl}?token=${encodeURIComponent(alice.token)}`;
    const allowed = subscribe(scope.consumer(url, { origin: "https://chat.example.com" }), { channel: "ChatChannel", room: "lobby" });
    const local = scope.consumer(url, { origin: "http://localhost:5173" });
    const localChat = subscribe(local, { channel: "ChatChannel", room: "lobby" });
    await allowed.waitConnected(WAIT_MS);
    await sleep(QUIET_MS);
    assert.deepEqual(localChat.events.map((e) => e.type), ["initialized"]);
    assert.ok(local.sockets[0].errors.some((e) => /404/.test(e)), JSON.stringify(local.sockets[0].errors));
  });

  demoTest("a token that expires closes its connection with token_expired; the consumer comes back with a refreshed one", { timeout: LONG_TEST_TIMEOUT_MS }, async (scope, t) => {
    const demo = await scope.demo({ env: { SESSION_LIFETIME_SECS: "2" } });
    const creds = await login(demo.baseUrl, "alice");
    const expOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).exp;
    let token = creds.token;
    // As the page does: trade the token for a fresh one halfway through its life, and connect
    // with the current one (the stock consumer calls its URL function on every connection).
    const refresher = setInterval(async () => {
      const reply = await http(demo.baseUrl, "/token", { method: "POST", token }).catch(() => null);
      if (reply?.status === 200) token = reply.body.token;
    }, 1000);
    try {
      const consumer = scope.consumer(() => `${demo.cableUrl}?token=${encodeURIComponent(token)}`);
      const chat = subscribe(consumer, { channel: "ChatChannel", room: "lobby" });
      await chat.waitConnected(WAIT_MS);
      const first = currentSocket(consumer);
      const exp = expOf(new URL(first.url).searchParams.get("token"));

      const frame = await waitUntil(() => first.frames.map((f) => JSON.parse(f.data)).find((m) => m.type === "disconnect"),
        { timeoutMs: 1000 * (exp + 2) - Date.now(), label: "the disconnect at the token's expiry" });
      const at = Date.now();
      assert.deepEqual(frame, { type: "disconnect", reason: "token_expired", reconnect: true });
      assert.ok(at >= 1000 * exp, `not before the expiry (${at} < ${1000 * exp})`);
      assert.ok(at < 1000 * exp + 1000, `at the expiry, not later (${at - 1000 * exp} ms after)`);
      t.diagnostic(`disconnected ${at - 1000 * exp} ms after the token's exp`);

      // The consumer reconnects by itself, with the refreshed token, and resubscribes.
      const mark = chat.events.length;
      await chat.waitForEvent((e) => e.type === "connected", RECONNECT_WAIT_MS, { fromIndex: mark, label: "connected again" });
      const second = currentSocket(consumer);
      assert.notEqual(second, first);
      assert.ok(expOf(new URL(second.url).searchParams.get("token")) > exp, "a newer token");

      // A refresh needs a good token: not an ended session's, not a forged one.
      assert.equal((await http(demo.baseUrl, "/token", { method: "POST", token: "not-a-token" })).status, 401);
      assert.equal((await http(demo.baseUrl, "/token", { method: "POST" })).status, 401);
    } finally {
      clearInterval(refresher);
    }
  });
});
