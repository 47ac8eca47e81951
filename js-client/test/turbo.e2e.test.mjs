// Browser end-to-end tests of example-turbo (examples/turbo): a page written the Rails way, with
// @hotwired/turbo and @hotwired/turbo-rails from node_modules and no JavaScript of its own. Its
// <turbo-cable-stream-source> subscribes to Turbo::StreamsChannel with the stock
// @rails/actioncable consumer; posting the form broadcasts a <turbo-stream> that every page on
// the room applies without a reload. Headless Chromium from Debian's packages, driven by
// playwright-core (no browser is downloaded), as in browser.e2e.test.mjs.
//
//   TURBO_BIN       the server (default ../target/debug/example-turbo; scripts/test.sh builds
//                   it with `cargo build --workspace --bins`)
//   CHROMIUM_PATH   the browser (default /usr/bin/chromium)
//   screenshots     test-artifacts/screenshots/turbo-*.png (git-ignored), plus
//                   failure-turbo-*.png of every open page when a test fails

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { startProcess, waitUntil, sleep } from "./support/consumer.mjs";
import { JS_CLIENT_DIR } from "./support/demo.mjs";
import { BROWSER_WAIT_MS, BROWSER_TEST_TIMEOUT_MS, QUIET_MS } from "./support/timing.mjs";

const TURBO_BIN = process.env.TURBO_BIN || join(JS_CLIENT_DIR, "..", "target", "debug", "example-turbo");
const READY = /^turbo listening on (http:\/\/\S+)$/;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SCREENSHOTS = join(JS_CLIENT_DIR, "test-artifacts", "screenshots");
const CHROMIUM_ARGS = [
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
];

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);

let browser;
let server;
let baseUrl;
let rooms = 0;
/** A room of its own for each test, so tests never see each other's messages. */
const freshRoom = () => `e2e-${process.pid}-${++rooms}`;

/**
 * A test with its pages (each in a context of its own), their uncaught errors and CSP
 * violations (which fail the test), their cable frames, and screenshots when it fails.
 */
function pageTest(name, fn) {
  test(name, { timeout: BROWSER_TEST_TIMEOUT_MS }, async () => {
    const pages = [];
    const errors = [];
    const open = async (label, { tamper } = {}) => {
      const context = await browser.newContext({ baseURL: baseUrl, locale: "en-GB" });
      context.setDefaultTimeout(BROWSER_WAIT_MS);
      await context.addInitScript(() => {
        document.addEventListener("securitypolicyviolation", (e) => {
          console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
        });
      });
      if (tamper) {
        // Changes the stream source's signed-stream-name as the parser inserts it, before
        // turbo-rails' module (which runs after parsing) defines the element and subscribes.
        // (Rewriting the response instead would make Chromium treat the page as not from
        // loopback, and its local network access checks would block the cable.)
        await context.addInitScript(() => {
          new MutationObserver((_, observer) => {
            const source = document.querySelector("turbo-cable-stream-source");
            if (!source) return;
            const signed = source.getAttribute("signed-stream-name");
            source.setAttribute("signed-stream-name", signed.slice(0, -1) + (signed.endsWith("0") ? "1" : "0"));
            source.dataset.original = signed;
            observer.disconnect();
          }).observe(document, { childList: true, subtree: true });
        });
      }
      const page = await context.newPage();
      page.on("pageerror", (error) => errors.push(`${label}: ${error.message}`));
      page.on("console", (message) => {
        if (/CSP violation|Content Security Policy/i.test(message.text())) errors.push(`${label}: ${message.text()}`);
      });
      // Every frame the cable sends this page, parsed.
      page.cableFrames = [];
      page.on("websocket", (ws) => {
        ws.on("framereceived", ({ payload }) => {
          try { page.cableFrames.push(JSON.parse(payload)); } catch { /* not JSON */ }
        });
      });
      pages.push({ page, label });
      return page;
    };
    let failed = true;
    try {
      await fn(open);
      assert.deepEqual(errors, [], "no uncaught errors or CSP violations in the pages");
      failed = false;
    } finally {
      if (failed) {
        for (const { page, label } of pages) {
          await page.screenshot({ path: join(SCREENSHOTS, `failure-turbo-${slug(name)}-${slug(label)}.png`), fullPage: true }).catch(() => {});
        }
      }
      await Promise.allSettled(pages.map(({ page }) => page.context().close()));
    }
  });
}

const streamSource = (page) => page.locator("turbo-cable-stream-source");
const messages = (page) => page.getByRole("log", { name: "Messages" });

/** Opens the room's page and waits until its stream source is subscribed (`connected`). */
async function openRoom(page, room) {
  await page.goto(`/?room=${room}`);
  await page.locator("turbo-cable-stream-source[connected]").waitFor({ state: "attached" });
  // A mark that a reload would wipe: updates must arrive without one.
  await page.evaluate(() => { window.__sameDocument = true; });
}

/** Posts a message with the page's form, as a person would: type, press Send. */
async function say(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
}

describe("example-turbo in headless Chromium", () => {
  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}. Install Debian's package ` +
        "(`sudo apt-get install chromium`; ./scripts/test.sh does it by itself) or set CHROMIUM_PATH.");
    }
    if (!existsSync(TURBO_BIN)) {
      throw new Error(`example-turbo not built at ${TURBO_BIN}: run cargo build -p example-turbo ` +
        "(scripts/test.sh runs cargo build --workspace --bins) or set TURBO_BIN");
    }
    mkdirSync(SCREENSHOTS, { recursive: true });
    server = await startProcess(TURBO_BIN, [], {
      env: { PORT: "0", SECRET_KEY_BASE: "turbo e2e secret_key_base", RUST_LOG: "info", NO_COLOR: "1" },
      readyLogLine: READY,
      logFile: join(JS_CLIENT_DIR, "test-artifacts", "turbo", "turbo.log"),
    });
    [, baseUrl] = server.lines.find((l) => READY.test(l)).match(READY);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    if (server) await server.stop();
  });

  pageTest("two pages on a room both get a posted message appended, without a reload, as text", async (open) => {
    const room = freshRoom();
    const alice = await open("alice");
    const bob = await open("bob");
    await openRoom(alice, room);
    await openRoom(bob, room);
    await alice.getByRole("heading", { name: `#${room}` }).waitFor();

    await say(alice, "hello from alice");
    for (const page of [alice, bob]) {
      await messages(page).getByText("hello from alice", { exact: true }).waitFor();
    }
    // Turbo posted the form with fetch and applied the answer: the field is empty again.
    await waitUntil(async () => (await alice.getByLabel("Message", { exact: true }).inputValue()) === "", {
      timeoutMs: BROWSER_WAIT_MS, label: "the form to be reset",
    });

    // A user's markup is shown as text: no element made, no script run.
    const hostile = `<script>window.__pwned = 1</script><b>bold</b> & "quotes" <img src=x onerror="window.__pwned = 2">`;
    await say(bob, hostile);
    for (const page of [alice, bob]) {
      await messages(page).getByText(hostile, { exact: true }).waitFor();
      assert.equal(await messages(page).locator("b, script, img").count(), 0, "the message's markup became elements");
      assert.equal(await page.evaluate(() => window.__pwned), undefined, "the message's script ran");
      assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was reloaded");
      assert.deepEqual(
        await messages(page).locator(".message").allInnerTexts(),
        ["hello from alice", hostile],
        "both messages, once each, in order",
      );
    }
    await alice.screenshot({ path: join(SCREENSHOTS, "turbo-room.png") });

    // The cable sent each page confirm_subscription and the two <turbo-stream> strings.
    const streams = bob.cableFrames.filter((f) => typeof f.message === "string");
    assert.equal(streams.length, 2);
    assert.match(streams[0].message, /^<turbo-stream action="append" target="messages"><template><p class="message" id="message_\d+">hello from alice<\/p><\/template><\/turbo-stream>$/);
    assert.ok(bob.cableFrames.some((f) => f.type === "confirm_subscription"));
  });

  pageTest("a page whose signed-stream-name was tampered with is rejected and gets no updates", async (open) => {
    const room = freshRoom();
    const honest = await open("honest");
    await openRoom(honest, room);
    // The same page, the last hex digit of its signature changed before it subscribes.
    const tampered = await open("tampered", { tamper: true });
    await tampered.goto(`/?room=${room}`);
    const original = await streamSource(honest).getAttribute("signed-stream-name");
    assert.equal(await streamSource(tampered).getAttribute("data-original"), original, "the same room, the same name");
    const forged = await streamSource(tampered).getAttribute("signed-stream-name");
    assert.notEqual(forged, original, "the page was not tampered with");
    assert.equal(forged.slice(0, -1), original.slice(0, -1));

    const rejection = await waitUntil(
      () => tampered.cableFrames.find((f) => f.type === "reject_subscription"),
      { timeoutMs: BROWSER_WAIT_MS, label: `reject_subscription for the tampered page` },
    );
    // The element sends its data-* attributes too (snakeized), as turbo-rails does.
    assert.deepEqual(JSON.parse(rejection.identifier), {
      channel: "Turbo::StreamsChannel", signed_stream_name: forged, original,
    });
    assert.equal(tampered.cableFrames.filter((f) => f.type === "confirm_subscription").length, 0);

    await say(honest, "not for tampered pages");
    await messages(honest).getByText("not for tampered pages", { exact: true }).waitFor();
    await sleep(QUIET_MS);
    assert.equal(await streamSource(tampered).getAttribute("connected"), null, "the tampered source says connected");
    assert.equal(await messages(tampered).locator(".message").count(), 0, "the tampered page got the update");
    assert.equal(tampered.cableFrames.filter((f) => typeof f.message === "string").length, 0);
  });
});
