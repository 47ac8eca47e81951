// The cable's Server-Sent Events transport (`/events`) in a real headless Chromium: the demo's
// live feed page (js-client/public/feed.html) follows a room with the browser's own
// EventSource, signed in by the login cookie, while a stock @rails/actioncable consumer speaks
// in that room over the WebSocket; and `/events` without credentials is 401.
//
// The browser and the per-test wrapper (demo processes, contexts, CSP violations fail the test)
// are in support/browser.mjs.

import { describe } from "node:test";
import assert from "node:assert/strict";
import { subscribe } from "./support/consumer.mjs";
import { http, login, signJwt, nowSecs } from "./support/demo.mjs";
import { useBrowser, browserTest, shot, signIn, chatLog, waitForStatus } from "./support/browser.mjs";

const LOBBY = { channel: "ChatChannel", room: "lobby" };
const eventsPath = (params, query = "") =>
  `/events?identifier=${encodeURIComponent(JSON.stringify(params))}${query ? `&${query}` : ""}`;

describe("the demo's event streams (Server-Sent Events)", () => {
  useBrowser();

  browserTest("an EventSource page gets the chat a stock consumer speaks over WebSocket, and its notifications", {}, async (scope) => {
    const demo = await scope.demo();
    const page = await scope.page(demo, { label: "alice's feed" });
    // The chat page's sign-in sets the login cookie, which the feed's EventSource carries.
    await signIn(page, "alice");
    await page.goto("/feed.html?room=lobby");
    await page.getByRole("heading", { name: "#lobby" }).waitFor();
    await waitForStatus(page, "Live");

    // bob: the stock consumer in Node, over the WebSocket, with his token.
    const bob = await login(demo.baseUrl, "bob");
    const consumer = scope.consumer(`${demo.cableUrl}?token=${bob.token}`);
    const chat = subscribe(consumer, LOBBY);
    await chat.waitConnected();
    await chatLog(page).getByText("bob joined").waitFor();
    chat.perform("speak", { text: "hello, EventSource" });
    await chatLog(page).getByText("hello, EventSource", { exact: true }).waitFor();
    chat.perform("speak", { text: "second line" });
    await chatLog(page).getByText("second line", { exact: true }).waitFor();
    const log = await chatLog(page).innerText();
    assert.ok(log.indexOf("hello, EventSource") < log.indexOf("second line"), `in order:\n${log}`);

    // The header badge: a notification posted over HTTP arrives on the other stream.
    const created = await http(demo.baseUrl, "/notifications", {
      method: "POST", token: bob.token, json: { user: "alice", message: "sent while you read the feed" },
    });
    assert.equal(created.status, 201);
    await page.locator("#unread-count").filter({ hasText: /^1$/ }).waitFor();
    await shot(page, "sse-01-live-feed");

    // Leaving the room is seen too; signing out ends the stream for good.
    chat.unsubscribe();
    await chatLog(page).getByText("bob left").waitFor();
    const out = await http(demo.baseUrl, "/logout", { method: "POST", token: (await login(demo.baseUrl, "alice")).token, json: {} });
    assert.equal(out.status, 204);
    await waitForStatus(page, "Disconnected");
  });

  browserTest("/events without credentials is 401, and the feed page says it was refused", {}, async (scope) => {
    const demo = await scope.demo();
    for (const query of ["", "token=not-a-token", `token=${signJwt({ sub: "alice", exp: nowSecs() + 60 }, "another-secret")}`]) {
      const res = await fetch(`${demo.baseUrl}${eventsPath(LOBBY, query)}`, {
        headers: { Accept: "text/event-stream" },
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(res.status, 401, `query ${JSON.stringify(query)}`);
      await res.text();
    }
    // With the token the page would put on /cable, the same URL is a stream.
    const { token } = await login(demo.baseUrl, "carol");
    const controller = new AbortController();
    const ok = await fetch(`${demo.baseUrl}${eventsPath(LOBBY, `token=${token}`)}`, { signal: controller.signal });
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get("content-type"), /^text\/event-stream/);
    const reader = ok.body.getReader();
    let text = "";
    while (!text.includes("event: confirm_subscription")) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the stream ended early: ${text}`);
      text += new TextDecoder().decode(value);
    }
    assert.ok(text.startsWith('event: welcome\ndata: {"type":"welcome"}\n\n'), text);
    controller.abort();

    // A browser that never signed in: the EventSource is refused and does not retry.
    const page = await scope.page(demo, { label: "signed out" });
    await page.goto("/feed.html");
    await waitForStatus(page, "Not connected");
    await page.getByRole("alert").getByText(/The feed was refused/).waitFor();
  });
});
