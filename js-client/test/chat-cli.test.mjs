// bin/chat.mjs (the terminal chat client) run as a child process against a started demo
// (examples/demo), with a stock consumer on the other side of the room.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { subscribe, withTimeout, waitUntil } from "./support/consumer.mjs";
import { Scope, login, http, JS_CLIENT_DIR } from "./support/demo.mjs";
import { WAIT_MS, TEST_TIMEOUT_MS } from "./support/timing.mjs";

const CLI = join(JS_CLIENT_DIR, "bin", "chat.mjs");

/** Spawn the CLI with piped stdio; collects stdout+stderr lines. Killed by kill() if still running. */
function runCli(args) {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: JS_CLIENT_DIR, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" },
  });
  const lines = [];
  for (const stream of [child.stdout, child.stderr]) {
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) { lines.push(buf.slice(0, nl)); buf = buf.slice(nl + 1); }
    });
  }
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const output = () => lines.join("\n");
  return {
    child,
    lines,
    exited,
    write: (s) => child.stdin.write(s),
    end: () => child.stdin.end(),
    waitLine: (re, t = WAIT_MS) => waitUntil(() => lines.find((l) => re.test(l)), { timeoutMs: t, label: `CLI output ${re}` })
      .catch((err) => { err.message += `\n--- CLI output ---\n${output()}`; throw err; }),
    waitExit: (t = WAIT_MS) => withTimeout(exited, t, "CLI exit").catch((err) => { err.message += `\n--- CLI output ---\n${output()}`; throw err; }),
    output,
    kill: () => { if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL"); },
  };
}

function cliTest(name, fn) {
  test(name, { timeout: TEST_TIMEOUT_MS }, async () => {
    const scope = new Scope(`cli ${name}`);
    const clis = [];
    try {
      await fn(scope, (args) => { const c = runCli(args); clis.push(c); return c; });
    } finally {
      for (const c of clis) c.kill();
      await scope.cleanup();
    }
  });
}

describe("bin/chat.mjs against example-demo", () => {
  cliTest("a line typed into the CLI reaches a stock consumer, and back; /quit leaves", async (scope, cli) => {
    const demo = await scope.demo();
    const dave = await login(demo.baseUrl, "dave");
    const daveChat = subscribe(scope.consumer(`${demo.cableUrl}?token=${dave.token}`), { channel: "ChatChannel", room: "lobby" });
    await daveChat.waitConnected(WAIT_MS);

    const carol = cli(["carol", "lobby", "--url", demo.baseUrl]);
    await carol.waitLine(/joined #lobby as carol/);
    await daveChat.waitFor((m) => m.type === "joined" && m.user === "carol", WAIT_MS);

    carol.write("hello from the cli\n");
    const msg = await daveChat.waitFor((m) => m.type === "message" && m.user === "carol", WAIT_MS);
    assert.equal(msg.text, "hello from the cli");
    await carol.waitLine(/<carol> hello from the cli$/); // the CLI shows its own message once echoed

    daveChat.perform("speak", { text: "hi carol" });
    await carol.waitLine(/^\[\d\d:\d\d:\d\d\] <dave> hi carol$/);
    daveChat.perform("typing");
    await carol.waitLine(/dave is typing/);

    const n = (await http(demo.baseUrl, "/notifications", { method: "POST", token: dave.token, json: { user: "carol", message: "ping", link: "/p" } })).body;
    await carol.waitLine(new RegExp(`\\[notification #${n.id}\\] \\(info\\) ping → /p`));
    carol.write(`/read ${n.id}\n`);
    await carol.waitLine(new RegExp(`notification #${n.id} marked read`));

    const leftMark = daveChat.events.length;
    carol.write("/quit\n");
    assert.deepEqual(await carol.waitExit(), { code: 0, signal: null });
    await daveChat.waitFor((m) => m.type === "left" && m.user === "carol", WAIT_MS, { fromIndex: leftMark });
    assert.equal(carol.lines.at(-1), "* bye");
    const stored = (await http(demo.baseUrl, "/notifications", { token: (await login(demo.baseUrl, "carol")).token })).body;
    assert.equal(stored.find((x) => x.id === n.id).read, true);
  });

  cliTest("piped input (typed before the connection is up) is sent, then EOF exits; history is shown", async (scope, cli) => {
    const demo = await scope.demo();
    const erin = cli(["erin", "--url", demo.baseUrl]); // room defaults to lobby
    erin.write("first\nsecond\n");
    erin.end();
    assert.deepEqual(await erin.waitExit(), { code: 0, signal: null });
    assert.match(erin.output(), /<erin> first\n.*<erin> second/);

    const frank = cli(["frank", "lobby", `--url=${demo.baseUrl}`]);
    await frank.waitLine(/last 2 message\(s\) in #lobby/);
    await frank.waitLine(/<erin> second$/);
    frank.child.kill("SIGINT"); // Ctrl-C
    assert.deepEqual(await frank.waitExit(), { code: 0, signal: null });
    assert.equal(frank.lines.at(-1), "* bye");
  });

  cliTest("refusals exit non-zero with a clear message", async (scope, cli) => {
    const demo = await scope.demo();
    const priv = cli(["gina", "staff", "--url", demo.baseUrl]);
    priv.end();
    assert.equal((await priv.waitExit()).code, 1);
    assert.match(priv.output(), /cannot join #staff/);

    const badName = cli(["not a name", "--url", demo.baseUrl]);
    assert.equal((await badName.waitExit()).code, 1);
    assert.match(badName.output(), /login refused \(HTTP 422\)/);

    const usage = cli([]);
    assert.equal((await usage.waitExit()).code, 2);
    assert.match(usage.output(), /usage: node bin\/chat\.mjs <name>/);
  });
});
