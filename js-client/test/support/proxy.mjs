// A TCP proxy for end-to-end tests that cut sockets the way a network does: both TCP sockets
// destroyed, no WebSocket close frame, no FIN from the application.

import net from "node:net";

/**
 * A TCP proxy to `port` on 127.0.0.1 that can cut every connection, refuse new ones, and send
 * new ones to another port (`retarget`).
 */
export async function startProxy(port) {
  const pairs = new Set();
  let refusing = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    accepted += 1;
    const upstream = net.connect(port, "127.0.0.1");
    const pair = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: server.address().port,
    get accepted() { return accepted; },
    /** Destroys both sockets of every connection (no close frame, no FIN from the app) and refuses new ones. */
    cut() {
      refusing = true;
      for (const [a, b] of pairs) { a.destroy(); b.destroy(); }
      pairs.clear();
    },
    restore() { refusing = false; },
    /** New connections go to `next` from now on (open ones are left alone). */
    retarget(next) { port = next; },
    close() {
      for (const [a, b] of pairs) { a.destroy(); b.destroy(); }
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls `check` until it returns something truthy, which it returns; throws after `timeoutMs`. */
export async function waitUntil(check, timeoutMs, label) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
