// Test support for headless-Chromium tests of the demo's web page: one browser per test file
// (useBrowser), a test wrapper that gives each test its own demo processes and browser contexts
// and fails it on any page error or CSP violation (browserTest), screenshots, and the page
// helpers the tests share (sign in, say, the status line, the chat log).
//
// A real headless Chromium from Debian's packages, driven by playwright-core (which never
// downloads a browser; `executablePath` points at Debian's).
//
//   CHROMIUM_PATH   the browser (default /usr/bin/chromium; `apt-get install chromium`,
//                   which ./scripts/test.sh does when it is missing)
//   screenshots     test-artifacts/screenshots/*.png (git-ignored): the key states, plus
//                   failure-*.png of every open page when a test fails

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { Scope, JS_CLIENT_DIR } from "./demo.mjs";
import { waitUntil } from "./consumer.mjs";
import { BROWSER_WAIT_MS, BROWSER_TEST_TIMEOUT_MS } from "./timing.mjs";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const SCREENSHOTS = join(JS_CLIENT_DIR, "test-artifacts", "screenshots");
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 360, height: 740 };

// launch() gives every browser a fresh temporary profile (its own --user-data-dir, removed on
// close; Playwright refuses an explicit one here) and adds --no-sandbox unless told otherwise.
// The flags keep Chromium from reaching for the network on these offline machines.
const CHROMIUM_ARGS = [
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
];

let browser;

export const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);

/** Saves a screenshot of `page` as test-artifacts/screenshots/<name>.png. */
export async function shot(page, name, { fullPage = false } = {}) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage, animations: "disabled" });
}

/** A test with its own Scope (demo processes, temp dirs) and browser contexts, always cleaned up. */
export function browserTest(name, { timeout = BROWSER_TEST_TIMEOUT_MS } = {}, fn) {
  test(name, { timeout }, async (t) => {
    const scope = new Scope(`browser ${name}`);
    const pages = [];
    const errors = [];
    /** A new browser context (its own cookies and sessionStorage: another user) on `demo`. */
    scope.page = async (demo, { viewport = DESKTOP, label = `page ${pages.length + 1}` } = {}) => {
      const context = await browser.newContext({ viewport, baseURL: demo.baseUrl, locale: "en-GB" });
      context.setDefaultTimeout(BROWSER_WAIT_MS);
      // Every page of every test runs under the demo's Content-Security-Policy: whatever it
      // refuses (an inline script or style, a connection elsewhere, /cable included) fails the
      // test. Chromium reports it as a `securitypolicyviolation` event and on the console.
      await context.addInitScript(() => {
        document.addEventListener("securitypolicyviolation", (e) => {
          console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
        });
      });
      const page = await context.newPage();
      page.on("pageerror", (error) => errors.push(`${label}: ${error.message}`));
      page.on("console", (message) => {
        if (/CSP violation|Content Security Policy/i.test(message.text())) errors.push(`${label}: ${message.text()}`);
      });
      pages.push({ page, label });
      return page;
    };
    let failed = true;
    try {
      await fn(scope, t);
      assert.deepEqual(errors, [], "no uncaught errors in the page");
      failed = false;
    } finally {
      if (failed) {
        for (const { page, label } of pages) {
          await shot(page, `failure-${slug(name)}-${slug(label)}`, { fullPage: true }).catch(() => {});
        }
      }
      await Promise.allSettled(pages.map(({ page }) => page.context().close()));
      await scope.cleanup();
    }
  });
}

// ---- page helpers ----------------------------------------------------------------------------

export const statusOf = (page) => page.getByRole("banner").getByRole("status");

export async function waitForStatus(page, text, timeout = BROWSER_WAIT_MS) {
  await statusOf(page).filter({ hasText: new RegExp(`^${text}$`) }).waitFor({ timeout });
}

/**
 * Opens the page (`path`, default "/") and signs in as `name`; `keyboard` types and presses
 * Enter instead of clicking.
 */
export async function signIn(page, name, { keyboard = false, path = "/" } = {}) {
  await page.goto(path);
  const field = page.getByLabel("Your name");
  if (keyboard) {
    await field.waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.id), "signin-name", "the name field has focus");
    await page.keyboard.type(name);
    await page.keyboard.press("Enter");
  } else {
    await field.fill(name);
    await page.getByRole("button", { name: "Sign in" }).click();
  }
  await waitForStatus(page, "Connected");
  await page.getByRole("banner").getByText(`Signed in as ${name}`).waitFor();
}

export const chatLog = (page) => page.getByRole("log");
export const notificationsPanel = (page) => page.getByRole("complementary", { name: /^Notifications/ });
export const notificationItem = (page, text) => notificationsPanel(page).getByRole("listitem").filter({ hasText: text });

/** Sends a chat message with the keyboard (type, Enter) and waits for its echo. */
export async function say(page, text) {
  await page.getByLabel("Chat message").fill(text);
  await page.getByLabel("Chat message").press("Enter");
  await chatLog(page).getByText(text, { exact: true }).waitFor();
}

/** Waits until the Notifications heading reads "Notifications <n> unread" (just "Notifications" for 0). */
export async function waitForUnread(page, n) {
  const name = n > 0 ? `Notifications ${n} unread` : "Notifications";
  await notificationsPanel(page).getByRole("heading", { name, exact: true }).waitFor();
}

/** The browser `useBrowser` launched (for a page outside any test context). */
export const currentBrowser = () => browser;

/**
 * Launches the browser before the tests of the enclosing `describe` and closes it after them.
 * The screenshot folder is created, never emptied: test files run one after another and each
 * keeps its pictures (scripts/test.sh empties it before a run).
 */
export function useBrowser() {
  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}. Install Debian's package ` +
        "(`sudo apt-get install chromium`; ./scripts/test.sh does it by itself) or set CHROMIUM_PATH.");
    }
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
  });
}

/**
 * The short-lived-token scenario both page modes run: a demo whose logins last 6 s, `label`
 * signed in at `path`; after two `token_expired` disconnects the page is `Connected` again
 * within `connectedWithinMs` (the stock monitor alone would take 6–18 s), can still chat, and
 * is still signed in. Returns how many `token_expired` disconnects the demo logged.
 */
export async function shortLivedTokens(scope, { path = "/", label, connectedWithinMs }) {
  const demo = await scope.demo({ env: { SESSION_LIFETIME_SECS: "6" } });
  const page = await scope.page(demo, { label });
  await signIn(page, "alice", { path });
  await say(page, "before the tokens expire");
  const expired = () => demo.proc.lines.filter((l) => /disconnecting/.test(l) && /token_expired/.test(l)).length;
  // Each connection is closed when its token expires, and the page, holding a fresher token
  // by then, reconnects at once.
  await waitUntil(() => expired() >= 2, { timeoutMs: 20_000, label: "two token_expired disconnects" });
  await waitForStatus(page, "Connected", connectedWithinMs);
  await say(page, "still here");
  assert.equal(await page.getByRole("heading", { name: "Sign in to chat" }).count(), 0, "still signed in");
  return expired();
}
