// Browser end-to-end tests of the demo's web page (js-client/public, served by example-demo at
// `/`, with the stock @rails/actioncable consumer at /vendor/actioncable.esm.js): a real headless
// Chromium from Debian's packages, driven by playwright-core (which never downloads a browser;
// `executablePath` points at Debian's). Each test starts `example-demo` as a real process
// (DEMO_DATABASE=:memory:, except the restart test: a file database on a fixed port).
//
// The browser and the per-test wrapper are in support/browser.mjs.
//
// Selectors are the accessible ones (roles, labels, visible text), so the tests also check that
// the page exposes them.

import { describe } from "node:test";
import assert from "node:assert/strict";
import { cpSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "./support/consumer.mjs";
import { http, login, signJwt, nowSecs, freePort, JS_CLIENT_DIR } from "./support/demo.mjs";
import { BROWSER_WAIT_MS, LONG_TEST_TIMEOUT_MS, QUIET_MS, RECONNECT_WAIT_MS, DEMO_STOP_GRACE_MS, TYPING_GONE_WITHIN_MS } from "./support/timing.mjs";
import {
  useBrowser, currentBrowser, browserTest, shot, signIn, say, chatLog, waitForStatus, notificationsPanel, notificationItem,
  waitForUnread, shortLivedTokens, PHONE,
} from "./support/browser.mjs";

// ---- the tests -------------------------------------------------------------------------------

describe("the demo page in headless Chromium", () => {
  useBrowser();

  browserTest("two users chat in one room: history, messages both ways, typing, join and leave notices", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await scope.page(demo, { label: "alice" });
    await alice.goto("/");
    await alice.getByRole("heading", { name: "Sign in to chat" }).waitFor();
    await shot(alice, "01-sign-in");

    // A name that cannot work is explained next to the field.
    await alice.getByLabel("Your name").fill("not a name!");
    await alice.getByRole("button", { name: "Sign in" }).click();
    await alice.getByText(/Use 1 to 32 letters/).waitFor();
    await alice.getByLabel("Your name").fill("");

    await signIn(alice, "alice", { keyboard: true });
    await chatLog(alice).getByText("You joined #lobby").waitFor();
    await alice.getByText("No messages in #lobby yet. Say hello!").waitFor();

    // alice creates a room with the form; the composer gets the focus.
    await alice.getByLabel("Join or create a room").fill("rust-fans");
    await alice.getByRole("button", { name: "Go" }).click();
    await alice.getByRole("heading", { name: "#rust-fans" }).waitFor();
    await chatLog(alice).getByText("You joined #rust-fans").waitFor();
    assert.equal(new URL(alice.url()).hash, "#rust-fans");
    await say(alice, "first!");

    // bob, on a phone, finds the room in the list (GET /rooms) and gets its recent history.
    const bob = await scope.page(demo, { viewport: PHONE, label: "bob" });
    await signIn(bob, "bob");
    const roomLink = bob.getByRole("navigation", { name: "Rooms" }).getByRole("link", { name: /rust-fans/ });
    await roomLink.click();
    await chatLog(bob).getByText("first!", { exact: true }).waitFor();
    await chatLog(bob).getByText("You joined #rust-fans").waitFor();
    const bobLog = await chatLog(bob).innerText();
    assert.ok(bobLog.indexOf("first!") < bobLog.indexOf("You joined #rust-fans"), `history comes first:\n${bobLog}`);
    assert.equal(await roomLink.getAttribute("aria-current"), "page");
    await chatLog(alice).getByText("bob joined").waitFor();

    // bob starts typing: alice sees it, and it fades once bob stops.
    await bob.getByLabel("Chat message").pressSequentially("hel");
    const typing = alice.getByText("bob is typing…");
    await typing.waitFor();
    await shot(alice, "02-typing-indicator");
    await typing.waitFor({ state: "hidden", timeout: TYPING_GONE_WITHIN_MS });

    // Messages both ways.
    await say(bob, "hello alice");
    await chatLog(alice).getByText("hello alice", { exact: true }).waitFor();
    await say(alice, "hi bob, welcome to #rust-fans");
    await chatLog(bob).getByText("hi bob, welcome to #rust-fans", { exact: true }).waitFor();
    await shot(alice, "03-chat-desktop");
    await shot(bob, "04-chat-phone", { fullPage: true });

    // Sending nothing is refused on the page.
    await bob.getByLabel("Chat message").fill("   ");
    await bob.getByRole("button", { name: "Send", exact: true }).click();
    await bob.getByText("Type a message first.").waitFor();

    // bob leaves for the lobby: alice sees him go.
    await bob.getByRole("navigation", { name: "Rooms" }).getByRole("link", { name: /lobby/ }).click();
    await bob.getByRole("heading", { name: "#lobby" }).waitFor();
    await chatLog(alice).getByText("bob left").waitFor();

    // A private room turns bob away with a clear message (the subscription is rejected).
    await bob.getByLabel("Join or create a room").fill("staff");
    await bob.getByLabel("Join or create a room").press("Enter");
    await bob.getByText("You cannot enter #staff: it is a private room (members only).").waitFor();
    assert.equal(await bob.getByLabel("Chat message").isDisabled(), true);
    await shot(bob, "05-private-room-phone", { fullPage: true });

    // Signing out leaves the room for the others too.
    await bob.getByRole("navigation", { name: "Rooms" }).getByRole("link", { name: /rust-fans/ }).click();
    await chatLog(alice).getByText("bob joined").nth(1).waitFor();
    await bob.getByRole("button", { name: "Sign out" }).click();
    await bob.getByRole("heading", { name: "Sign in to chat" }).waitFor();
    await waitForStatus(bob, "Not signed in");
    await chatLog(alice).getByText("bob left").nth(1).waitFor();
  });

  browserTest("notifications: an HTTP POST reaches only its owner, live, with an unread count; mark as read sticks", {}, async (scope) => {
    const demo = await scope.demo();
    const alice = await scope.page(demo, { label: "alice" });
    const bob = await scope.page(demo, { label: "bob" });
    await signIn(alice, "alice");
    await signIn(bob, "bob");
    await notificationsPanel(bob).getByText("No notifications yet.").waitFor();

    // From outside (curl, another service, signed in as "ci"): POST /notifications.
    const ci = await login(demo.baseUrl, "ci");
    const created = await http(demo.baseUrl, "/notifications", {
      method: "POST", token: ci.token, json: { user: "bob", message: "Your build passed", kind: "success", link: "/builds/42" },
    });
    assert.equal(created.status, 201);
    const first = notificationItem(bob, "Your build passed");
    await first.waitFor();
    await first.getByRole("link", { name: "Open link" }).waitFor();
    await waitForUnread(bob, 1);

    // From the page's own form: alice sends bob one.
    const panel = notificationsPanel(alice);
    await panel.getByLabel("To (user name)").fill("bob");
    await panel.getByLabel("Notification text").fill("Lunch at noon?");
    await panel.getByLabel("Kind").selectOption("warning");
    await panel.getByRole("button", { name: "Send notification" }).click();
    await panel.getByText(/^Sent notification #\d+ to bob\.$/).waitFor();
    await notificationItem(bob, "Lunch at noon?").waitFor();
    await waitForUnread(bob, 2);
    assert.match(await bob.title(), /^\(2\) /, "the tab title shows the unread count");
    await shot(bob, "06-notifications-arrived");

    // Only their owner got them.
    await alice.waitForTimeout(QUIET_MS);
    assert.equal(await notificationsPanel(alice).getByRole("listitem").count(), 0);
    await waitForUnread(alice, 0);
    await notificationsPanel(alice).getByText("No notifications yet.").waitFor();

    // bob marks one read (the button, by keyboard), then the rest with "Mark all read".
    await first.getByRole("button", { name: "Mark as read" }).focus();
    await bob.keyboard.press("Enter");
    await first.getByText("Read", { exact: true }).waitFor();
    await waitForUnread(bob, 1);
    await notificationsPanel(bob).getByRole("button", { name: "Mark all read" }).click();
    await notificationItem(bob, "Lunch at noon?").getByText("Read", { exact: true }).waitFor();
    await waitForUnread(bob, 0);
    await shot(bob, "07-notifications-read");

    // It is stored: after a reload the list comes back read, and the API agrees.
    await bob.reload();
    await waitForStatus(bob, "Connected");
    await notificationItem(bob, "Lunch at noon?").getByText("Read", { exact: true }).waitFor();
    await notificationItem(bob, "Your build passed").getByText("Read", { exact: true }).waitFor();
    await waitForUnread(bob, 0);
    const bobCreds = await login(demo.baseUrl, "bob");
    const stored = await http(demo.baseUrl, "/notifications", { token: bobCreds.token });
    assert.deepEqual(stored.body.map((n) => [n.message, n.read]), [["Lunch at noon?", true], ["Your build passed", true]]);
  });

  browserTest("connection status: reconnecting while the server is down, connected again on its own", { timeout: LONG_TEST_TIMEOUT_MS }, async (scope, t) => {
    const port = await freePort();
    const database = join(scope.tempDir(), "demo.sqlite3");
    let demo = await scope.demo({ port, database });
    const alice = await scope.page(demo, { label: "alice" });
    await signIn(alice, "alice");
    await say(alice, "before the restart");

    const stoppedAt = Date.now();
    assert.deepEqual(await demo.stop({ graceMs: DEMO_STOP_GRACE_MS }), { code: 0, signal: null });
    await waitForStatus(alice, "Reconnecting…");
    await chatLog(alice).getByText("Connection lost — reconnecting…").waitFor();
    // What you type meanwhile is kept, with a clear reason.
    await alice.getByLabel("Chat message").fill("typed while down");
    await alice.getByLabel("Chat message").press("Enter");
    await alice.getByText(/^Not sent: not connected/).waitFor();
    assert.equal(await alice.getByLabel("Chat message").inputValue(), "typed while down");
    await alice.waitForTimeout(3 * QUIET_MS); // let the detail line count a little
    await shot(alice, "08-reconnecting");

    demo = await scope.demo({ port, database });
    // The stock ConnectionMonitor reopens on its own (stale after 6 s, polls every 6–18 s).
    await waitForStatus(alice, "Connected", RECONNECT_WAIT_MS);
    t.diagnostic(`the page was connected again ${Date.now() - stoppedAt} ms after the SIGTERM`);
    await chatLog(alice).getByText("Reconnected").waitFor();
    await alice.getByRole("button", { name: "Send", exact: true }).click();
    await chatLog(alice).getByText("typed while down", { exact: true }).waitFor();
    await shot(alice, "09-reconnected");
    // The history was not duplicated by the catch-up after the reconnect.
    assert.equal(await chatLog(alice).getByText("before the restart", { exact: true }).count(), 1);
  });

  browserTest("short-lived tokens: the page refreshes its token, and its cable comes back at once after each token_expired", { timeout: LONG_TEST_TIMEOUT_MS }, async (scope, t) => {
    const expired = await shortLivedTokens(scope, { label: "alice", connectedWithinMs: 3000 });
    t.diagnostic(`${expired} token_expired disconnects`);
  });

  browserTest("a rejected connection shows a clear message and the sign-in form", {}, async (scope) => {
    const demo = await scope.demo();
    const page = await scope.page(demo, { label: "mallory" });
    // A session whose token the server does not accept (signed with another secret).
    const now = nowSecs();
    const forged = signJwt({ sub: "mallory", iat: now, exp: now + 3600 }, "not-the-server-secret-0123456789abcdef");
    await page.addInitScript((session) => {
      if (!sessionStorage.getItem("actioncable-demo.session")) sessionStorage.setItem("actioncable-demo.session", session);
    }, JSON.stringify({ user: "mallory", token: forged }));
    await page.goto("/");
    await page.getByRole("alert").getByText(/The server rejected the connection/).waitFor();
    await waitForStatus(page, "Connection rejected");
    await page.getByRole("heading", { name: "Sign in to chat" }).waitFor();
    await shot(page, "10-connection-rejected");
    await waitUntil(() => demo.proc.lines.some((l) => /cable connection without valid credentials/.test(l)),
      { timeoutMs: BROWSER_WAIT_MS, label: "the server logging the rejection" });

    // Signing in again works and clears the message.
    await signIn(page, "mallory");
    await page.getByRole("alert").waitFor({ state: "hidden" });
  });

  browserTest("security headers: the page and its assets carry a CSP, framing is refused, and the page runs under it", {}, async (scope) => {
    const demo = await scope.demo();
    const page = await scope.page(demo, { label: "alice" });
    const seen = new Map(); // same-origin path → headers
    page.on("response", (response) => {
      const url = new URL(response.url());
      if (url.origin === demo.baseUrl) seen.set(url.pathname, response.headers());
    });
    await signIn(page, "alice"); // the cable connected under `connect-src 'self'`
    await say(page, "under the CSP");
    await notificationsPanel(page).getByLabel("Notification text").fill("to myself");
    await notificationsPanel(page).getByRole("button", { name: "Send notification" }).click();
    await notificationItem(page, "to myself").waitFor();
    for (const path of ["/", "/main.mjs", "/app.mjs", "/links.mjs", "/app.css", "/vendor/actioncable.esm.js", "/login", "/notifications"]) {
      const headers = seen.get(path);
      assert.ok(headers, `${path} was loaded: ${[...seen.keys()]}`);
      const csp = headers["content-security-policy"] ?? "";
      assert.match(csp, /script-src 'self'/, path);
      assert.match(csp, /connect-src 'self'/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.doesNotMatch(csp, /unsafe/, path);
      assert.equal(headers["x-frame-options"], "DENY", path);
      assert.equal(headers["x-content-type-options"], "nosniff", path);
      assert.equal(headers["referrer-policy"], "same-origin", path);
    }
    // The page has no inline script (but the import map the policy admits by its hash) or
    // style attribute left for the policy to refuse.
    assert.equal(await page.locator("script:not([src]):not([type=importmap])").count(), 0);
    assert.equal(await page.locator("script[type=importmap]").count(), 1);
    assert.equal(await page.locator("[style]").count(), 0);

    // Another page cannot frame it (clickjacking).
    const framer = await currentBrowser().newPage();
    try {
      await framer.setContent(`<iframe title="demo" src="${demo.baseUrl}/"></iframe>`);
      await framer.waitForTimeout(QUIET_MS);
      const frame = framer.frames().find((f) => f !== framer.mainFrame());
      assert.ok(frame, "the iframe exists");
      assert.equal(await frame.getByRole("heading", { name: "Sign in to chat" }).count(), 0, `framed: ${frame.url()}`);
    } finally {
      await framer.close();
    }
  });

  browserTest("a malformed URL hash does not break the page", {}, async (scope) => {
    const demo = await scope.demo();
    const page = await scope.page(demo, { label: "hal" });
    // Before signing in: the page loads and signing in takes you to the lobby.
    await page.goto("/#%E0%A4%A");
    await page.getByLabel("Your name").fill("hal");
    await page.getByRole("button", { name: "Sign in" }).click();
    await waitForStatus(page, "Connected");
    await page.getByRole("heading", { name: "#lobby" }).waitFor();
    await say(page, "hash or no hash");
    // While signed in: the hash changes to a malformed one.
    await page.evaluate(() => { location.hash = "%E0%A4%A"; });
    await page.waitForTimeout(QUIET_MS);
    await page.getByRole("heading", { name: "#lobby" }).waitFor();
    // A reload with it (the saved session starts at once).
    await page.reload();
    await waitForStatus(page, "Connected");
    await page.getByRole("heading", { name: "#lobby" }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.ready), "true");
    // And a good hash afterwards still works.
    await page.evaluate(() => { location.hash = "after-the-bad-one"; });
    await page.getByRole("heading", { name: "#after-the-bad-one" }).waitFor();
    await say(page, "still chatting");
    await shot(page, "12-malformed-hash-survived");
  });

  browserTest("notification links: `/\\evil` and friends never become links, even if the server sent one", {}, async (scope) => {
    const demo = await scope.demo();
    const page = await scope.page(demo, { label: "ivy" });
    await signIn(page, "ivy");
    const tricks = ["/\\evil.example/", "/\\/evil.example", "\\\\evil.example", "\\/evil.example", "//evil.example",
      "/\t/evil.example", "/\n/evil.example", "https:\\\\evil.example", "http:///evil.example", "https:evil.example",
      "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,hi", " /x", "/caf\u00e9", "/\u202eevil", "", null, 5];
    const verdicts = await page.evaluate(async (links) => {
      const { safeLink } = await import("/links.mjs");
      return links.map((link) => ({
        link,
        safe: safeLink(link),
        // Where this browser would really go (null: not a URL at all).
        host: (() => { try { return new URL(link, location.href).host; } catch { return null; } })(),
      }));
    }, tricks);
    for (const { link, safe } of verdicts) assert.equal(safe, null, `${JSON.stringify(link)} must not become a link`);
    // The point: Chromium itself reads several of these as another site.
    const offsite = verdicts.filter((v) => v.host === "evil.example").map((v) => v.link);
    for (const link of ["/\\evil.example/", "/\\/evil.example", "//evil.example", "/\t/evil.example", "https:\\\\evil.example"]) {
      assert.ok(offsite.includes(link), `${JSON.stringify(link)} opens evil.example in Chromium: ${JSON.stringify(offsite)}`);
    }
    const good = await page.evaluate(async () => {
      const { safeLink } = await import("/links.mjs");
      return [safeLink("/builds/42"), safeLink("https://example.com/x")];
    });
    assert.deepEqual(good, [{ href: `${demo.baseUrl}/builds/42`, external: false }, { href: "https://example.com/x", external: true }]);

    // The server refuses them in the first place; a good off-site link opens without an opener.
    const ivy = await login(demo.baseUrl, "ivy");
    const bad = await http(demo.baseUrl, "/notifications", { method: "POST", token: ivy.token, json: { user: "ivy", message: "x", link: "/\\evil.example/" } });
    assert.equal(bad.status, 422);
    const ok = await http(demo.baseUrl, "/notifications", { method: "POST", token: ivy.token, json: { user: "ivy", message: "docs", link: "https://example.com/docs" } });
    assert.equal(ok.status, 201);
    const link = notificationItem(page, "docs").getByRole("link", { name: "Open link" });
    await link.waitFor();
    assert.equal(await link.getAttribute("href"), "https://example.com/docs");
    assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
  });

  browserTest("signing out ends the session in every tab of that user, not in anyone else's", {}, async (scope) => {
    const demo = await scope.demo();
    const tab1 = await scope.page(demo, { label: "jo tab 1" });
    const tab2 = await scope.page(demo, { label: "jo tab 2" });
    const kim = await scope.page(demo, { label: "kim" });
    await signIn(tab1, "jo");
    await signIn(tab2, "jo");
    await signIn(kim, "kim");
    await tab1.getByRole("button", { name: "Sign out" }).click();
    await tab1.getByRole("heading", { name: "Sign in to chat" }).waitFor();
    await tab2.getByRole("alert").getByText(/your sign-in is no longer valid/).waitFor();
    await waitForStatus(tab2, "Connection rejected");
    await tab2.getByRole("heading", { name: "Sign in to chat" }).waitFor();
    await kim.waitForTimeout(QUIET_MS);
    await waitForStatus(kim, "Connected");
    await say(kim, "still signed in");
    // Signing in again works.
    await signIn(tab2, "jo");
  });

  browserTest("without `npm ci` the page says how to get the consumer module", {}, async (scope) => {
    // A js-client folder with the page but no node_modules.
    const assets = scope.tempDir();
    cpSync(join(JS_CLIENT_DIR, "public"), join(assets, "public"), { recursive: true });
    const demo = await scope.demo({ env: { DEMO_ASSETS: assets } });
    // stderr (the log) and stdout (the ready line) are separate pipes: the warning may come in second.
    await waitUntil(() => demo.proc.lines.some((l) => /WARN/.test(l) && /npm ci/.test(l)),
      { timeoutMs: BROWSER_WAIT_MS, label: "a startup warning saying to run npm ci" });
    assert.equal((await http(demo.baseUrl, "/vendor/actioncable.esm.js")).status, 404);
    const page = await scope.page(demo);
    await page.goto("/");
    await page.getByRole("alert").getByText(/could not load the cable client/).waitFor();
    await page.getByRole("alert").getByText(/npm ci/).waitFor();
    assert.equal(await page.getByRole("heading", { name: "Sign in to chat" }).count(), 0);
    await shot(page, "11-consumer-module-missing");
  });
});
