#!/usr/bin/env node
// A tiny terminal chat client for the demo server (examples/demo), built on the STOCK
// @rails/actioncable consumer (made to run in Node by ../lib/actioncable-node.mjs).
//
//   node bin/chat.mjs <name> [room] [--url http://127.0.0.1:3000] [--debug]
//   npm run chat -- alice lobby
//
// It logs in (POST /login), connects to /cable with the token, subscribes to
// ChatChannel {room} and NotificationChannel, prints the room's history and everything that
// arrives, and sends every line you type. Commands: /help, /history [n], /read <id>, /quit.
// Ctrl-C (or end of input) leaves cleanly. Lines typed before the connection is up are queued.

import readline from "node:readline";
import { ActionCable, createConsumer, closeConsumer } from "../lib/actioncable-node.mjs";

const USAGE = `usage: node bin/chat.mjs <name> [room] [--url http://127.0.0.1:3000] [--debug]

  name    1-32 characters of letters, digits, '_', '.', '-'
  room    a room slug (default: lobby)
  --url   the demo server (default: $CHAT_URL or http://127.0.0.1:3000)
  --debug print the stock consumer's own log lines

Type a line and press Enter to send it. Commands:
  /history [n]   show the last n messages (default 20)
  /read <id>     mark a notification read
  /help          this text
  /quit          leave (Ctrl-C and end of input do too)`;

// ---------------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------------

function parseArgs(argv) {
  const opts = { url: process.env.CHAT_URL || "http://127.0.0.1:3000", debug: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") opts.help = true;
    else if (a === "--debug") opts.debug = true;
    else if (a === "--url") opts.url = argv[++i];
    else if (a.startsWith("--url=")) opts.url = a.slice("--url=".length);
    else if (a.startsWith("-")) throw new Error(`unknown option ${a}`);
    else opts.positional.push(a);
  }
  [opts.name, opts.room = "lobby"] = opts.positional;
  if (!opts.help && !opts.name) throw new Error("a name is required");
  if (opts.positional.length > 2) throw new Error(`unexpected argument ${opts.positional[2]}`);
  if (!opts.url || !/^https?:\/\//i.test(opts.url)) throw new Error(`--url must be an http(s):// URL, got ${JSON.stringify(opts.url)}`);
  opts.url = opts.url.replace(/\/+$/, "");
  return opts;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error(`chat: ${err.message}\n\n${USAGE}`);
  process.exit(2);
}
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
const color = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
const paint = (code) => (s) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const dim = paint("2");
const bold = paint("1");
const red = paint("31");
const yellow = paint("33");

let rl = null;

/** Print a line without mangling what the user is typing. */
function print(line) {
  if (rl && interactive) {
    readline.clearLine(process.stdout, 0);
    readline.cursorTo(process.stdout, 0);
    process.stdout.write(`${line}\n`);
    rl.prompt(true);
  } else {
    process.stdout.write(`${line}\n`);
  }
}

const info = (s) => print(dim(`* ${s}`));
const warn = (s) => print(red(`! ${s}`));

function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "--:--:--" : d.toTimeString().slice(0, 8);
}

function formatMessage(m) {
  const who = m.user === opts.name ? bold(`<${m.user}>`) : `<${m.user}>`;
  return `${dim(`[${clock(m.sent_at)}]`)} ${who} ${m.text}`;
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

async function login() {
  let res;
  try {
    res = await fetch(`${opts.url}/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: opts.name }),
      signal: AbortSignal.timeout(5000),
    });
  } catch (err) {
    const why = err.cause?.code || err.cause?.message || err.message;
    throw new Error(`cannot reach ${opts.url} (${why}). Is the demo running? Start it with: cargo run -p example-demo`);
  }
  const body = await res.json().catch(() => ({}));
  if (res.status !== 200) throw new Error(`login refused (HTTP ${res.status}): ${body.error || "no reason given"}`);
  return body.token;
}

/** Unread notifications from before we connected (GET /notifications with the token). */
async function printUnread(token) {
  try {
    const res = await fetch(`${opts.url}/notifications`, {
      headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000),
    });
    if (res.status !== 200) return;
    const unread = (await res.json()).filter((n) => !n.read).reverse();
    if (unread.length) info(`${unread.length} unread notification(s):`);
    for (const n of unread) printNotification(n);
  } catch { /* not essential */ }
}

function printNotification(n) {
  const link = n.link ? ` → ${n.link}` : "";
  print(yellow(`[notification #${n.id}] (${n.kind}) ${n.message}${link}`) + dim(`   /read ${n.id} to mark it read`));
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

let consumer = null;
let quitting = false;
let pendingSpeaks = 0; // sent, not yet echoed back (or refused)
let pendingDrained = null;
let markReady = () => {}; // resolves `ready` (the chat subscription is confirmed, or we are quitting)
const ready = new Promise((resolve) => { markReady = resolve; });

function settleSpeak() {
  if (pendingSpeaks > 0) pendingSpeaks -= 1;
  if (pendingSpeaks === 0 && pendingDrained) pendingDrained();
}

async function quit(code = 0, reason) {
  if (quitting) return;
  quitting = true;
  markReady();
  if (reason) (code === 0 ? info : warn)(reason);
  // Let the server answer what was just sent (so piped input is not lost), briefly.
  if (pendingSpeaks > 0 && consumer?.connection.isOpen()) {
    await Promise.race([
      new Promise((resolve) => { pendingDrained = resolve; }),
      new Promise((resolve) => setTimeout(resolve, 3000).unref()),
    ]);
  }
  if (consumer) await closeConsumer(consumer, 2000).catch(() => {});
  if (rl) {
    const r = rl;
    rl = null;
    r.close();
  }
  process.stdout.write(dim("* bye\n"));
  process.exitCode = code;
  // Everything is closed, so Node exits by itself; this is only a safety net.
  setTimeout(() => process.exit(code), 1000).unref();
}

async function main() {
  if (opts.debug) ActionCable.logger.enabled = true;
  const token = await login();
  await printUnread(token);
  const cableUrl = `${opts.url}/cable?token=${encodeURIComponent(token)}`;
  // Browsers send their page's origin; the demo accepts its own origin (and localhost).
  consumer = createConsumer(cableUrl, { origin: new URL(opts.url).origin, recordFrames: false });

  let everConnected = false;
  // What was printed, to show only what was missed after a reconnect (ids alone are not enough:
  // a demo restarted with an in-memory database starts counting again).
  const seen = new Set();
  let lastSeenAt = 0;
  const key = (m) => `${m.id}|${m.sent_at}`;
  const showMessage = (m) => {
    seen.add(key(m));
    lastSeenAt = Math.max(lastSeenAt, Date.parse(m.sent_at) || 0);
    print(formatMessage(m));
  };
  const typingShownAt = new Map();
  const historyRequests = [];
  const requestHistory = (sub, limit, mode) => {
    if (sub.perform("history", { limit })) historyRequests.push(mode);
  };

  const chat = consumer.subscriptions.create({ channel: "ChatChannel", room: opts.room }, {
    connected({ reconnected } = {}) {
      if (!everConnected) {
        everConnected = true;
        info(`joined #${opts.room} as ${opts.name}. Type a message and press Enter; /help for commands.`);
        requestHistory(this, 20, "all");
        markReady();
      } else {
        info(reconnected ? "reconnected" : "connected again");
        requestHistory(this, 200, "missed"); // show only what was missed
      }
    },
    disconnected({ willAttemptReconnect } = {}) {
      if (quitting) return;
      if (!everConnected && !willAttemptReconnect) {
        quit(1, "the server refused the connection (unauthorized)");
      } else if (willAttemptReconnect) {
        info("connection lost; the consumer reconnects by itself (this can take up to ~20 s)");
      } else {
        quit(1, "disconnected by the server");
      }
    },
    rejected() {
      quit(1, `cannot join #${opts.room}: the server rejected the subscription (invalid room name, or a private room you are not a member of)`);
    },
    received(data) {
      switch (data?.type) {
        case "message":
          showMessage(data);
          if (data.user === opts.name) settleSpeak();
          break;
        case "history": {
          // Replies come in request order: "all" (on join, /history) or "missed" (after a reconnect).
          const mode = historyRequests.shift() || "all";
          const shown = mode === "all" ? data.messages
            : data.messages.filter((m) => !seen.has(key(m)) && (Date.parse(m.sent_at) || 0) >= lastSeenAt);
          if (mode === "all") {
            info(shown.length ? `last ${shown.length} message(s) in #${opts.room}:` : `#${opts.room} has no messages yet`);
          } else if (shown.length) {
            info(`${shown.length} message(s) while you were away:`);
          }
          for (const m of shown) showMessage(m);
          break;
        }
        case "joined":
          if (data.user !== opts.name) info(`${data.user} joined`);
          break;
        case "left":
          if (data.user !== opts.name) info(`${data.user} left`);
          break;
        case "typing": {
          if (data.user === opts.name) break;
          const last = typingShownAt.get(data.user) || 0;
          if (Date.now() - last > 5000) {
            typingShownAt.set(data.user, Date.now());
            print(dim(`  ${data.user} is typing…`));
          }
          break;
        }
        case "error":
          warn(data.error);
          settleSpeak();
          break;
        default:
          print(dim(`? ${JSON.stringify(data)}`));
      }
    },
  });

  const notifications = consumer.subscriptions.create({ channel: "NotificationChannel" }, {
    received(data) {
      if (data?.type === "marked_read") info(`notification #${data.id} marked read`);
      else if (data?.type === "error") warn(data.error);
      else if (data && "message" in data) printNotification(data);
    },
  });

  const stillConnecting = setTimeout(() => {
    if (!everConnected && !quitting) info(`still connecting to ${opts.url}/cable; the consumer keeps retrying ` +
      `(if this never ends, the server may refuse the origin ${new URL(opts.url).origin}: see ALLOWED_ORIGINS)`);
  }, 10000);
  stillConnecting.unref();

  rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, prompt: `${opts.name}> ` });
  rl.on("SIGINT", () => quit(0, "interrupted"));
  if (interactive) {
    rl.prompt();
    // Tell the room we are typing (at most every 3 s) while a line is being edited.
    let lastTyping = 0;
    process.stdin.on("keypress", () => {
      if (!everConnected || quitting || !rl || rl.line.trim() === "") return;
      if (Date.now() - lastTyping > 3000) {
        lastTyping = Date.now();
        chat.perform("typing");
      }
    });
  }

  let explicitQuit = false;
  for await (const raw of rl) {
    if (quitting) break;
    const line = raw.trim();
    if (line === "") { if (rl && interactive) rl.prompt(); continue; }
    if (line === "/quit" || line === "/exit") { explicitQuit = true; break; }
    if (line === "/help") { print(USAGE.split("\n").slice(7).join("\n")); continue; }
    const history = line.match(/^\/history(?:\s+(\d+))?$/);
    if (history) {
      await ready;
      requestHistory(chat, Number(history[1] || 20), "all");
      continue;
    }
    const read = line.match(/^\/read\s+(\d+)$/);
    if (read) {
      await ready;
      notifications.perform("mark_read", { id: Number(read[1]) });
      continue;
    }
    if (line.startsWith("/")) { warn(`unknown command ${line.split(/\s/)[0]} (try /help)`); continue; }
    await ready;
    if (quitting) break;
    if (chat.perform("speak", { text: raw })) pendingSpeaks += 1;
    else warn("not connected right now; message not sent");
  }
  // End of input before the connection was settled (e.g. `echo | chat ...`): wait a little
  // for the verdict, so a refused connection or subscription still reports its error.
  if (!explicitQuit && !everConnected) await Promise.race([ready, new Promise((r) => setTimeout(r, 5000).unref())]);
  await quit(0);
}

process.on("SIGINT", () => quit(0, "interrupted"));
process.on("SIGTERM", () => quit(0, "terminated"));

main().catch((err) => {
  console.error(`chat: ${err.message}`);
  process.exit(1);
});
