// Test support for demo nodes on the Redis adapter: a per-test Scope that also owns private
// redis-servers and redis-cli subscribers, and the chat helpers the multi-node tests share.

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { subscribe, closeConsumer, withTimeout } from "./consumer.mjs";
import { Scope, login, demoLogFile, RFC3339_UTC } from "./demo.mjs";
import { startRedis, redisSubscribe, redisLogFile, freshLog } from "./redis.mjs";
import { WAIT_MS, PROCESS_STOP_MS } from "./timing.mjs";


/**
 * A demo Scope (consumers, demo processes, temp dirs) that also owns redis-servers and
 * redis-cli subscribers. cleanup(): consumers, then demo nodes, then subscribers, then Redis;
 * bounded, never throws.
 */
export class RedisScope extends Scope {
  constructor(name) {
    super(name);
    this.redises = [];
    this.spies = [];
    this.backends = [];
  }

  /** A private redis-server (spare port unless `port` is given); log in test-artifacts/redis/. */
  async redis({ port, tag = `redis${this.redises.length + 1}` } = {}) {
    const r = await startRedis({ port, logFile: freshLog(redisLogFile(this.name, tag)) });
    this.redises.push(r);
    return r;
  }

  /**
   * An example-demo node on `redis` (CABLE_ADAPTER=redis, REDIS_URL, CABLE_CHANNEL_PREFIX=demo
   * unless `env` says otherwise), logging to test-artifacts/demo/<test>-<tag>.log.
   */
  async node(tag, redis, { database = ":memory:", env = {} } = {}) {
    const logName = `${this.name} ${tag}`;
    rmSync(demoLogFile(logName), { force: true });
    const node = await this.demo({
      logName,
      database,
      env: { CABLE_ADAPTER: "redis", REDIS_URL: redis.url(0), CABLE_CHANNEL_PREFIX: "demo", ...env },
    });
    node.tag = tag;
    node.logFile = demoLogFile(logName);
    return node;
  }

  /**
   * A backend other than Redis for this test (see backends.mjs: `make()` gives one with `env`
   * and `stop()`), stopped by cleanup() after the nodes.
   */
  async backend(make) {
    const b = await make();
    this.backends.push(b);
    return b;
  }

  /** An example-demo node on `backend` (its `env`), logging like `node`. */
  async nodeOn(tag, backend, { database = ":memory:", env = {} } = {}) {
    const logName = `${this.name} ${tag}`;
    rmSync(demoLogFile(logName), { force: true });
    const node = await this.demo({ logName, database, env: { ...backend.env, ...env } });
    node.tag = tag;
    node.logFile = demoLogFile(logName);
    return node;
  }

  /** `redis-cli SUBSCRIBE channel` on `redis`, stopped by cleanup(). */
  async spy(redis, channel) {
    const s = await redisSubscribe(redis.port, channel);
    this.spies.push(s);
    return s;
  }

  async cleanup() {
    await super.cleanup();
    await Promise.allSettled(this.spies.map((s) => withTimeout(s.stop(), 2 * PROCESS_STOP_MS, "redis-cli stop")));
    await Promise.allSettled(this.redises.map((r) => withTimeout(r.stop(), 2 * PROCESS_STOP_MS, "redis-server stop")));
    await Promise.allSettled(this.backends.map((b) => withTimeout(b.stop(), 2 * PROCESS_STOP_MS, `${b.name} stop`)));
  }
}

/** A node:test test body with its own RedisScope, always cleaned up. */
export function scoped(name, fn) {
  return async (t) => {
    const scope = new RedisScope(name);
    try {
      await fn(scope, t);
    } finally {
      await scope.cleanup();
    }
  };
}

/**
 * Log in on `loginNode` and connect a stock consumer to `node` (a token issued by one node is
 * accepted by another: they share SECRET_KEY_BASE), by ?token= or by the signed cookie.
 */
export async function connectUser(scope, node, name, { loginNode = node, via = "token", origin } = {}) {
  const creds = await login(loginNode.baseUrl, name);
  const opts = origin ? { origin } : {};
  const consumer = via === "token"
    ? scope.consumer(`${node.cableUrl}?token=${encodeURIComponent(creds.token)}`, opts)
    : scope.consumer(node.cableUrl, { ...opts, headers: { Cookie: creds.cookie } });
  return { ...creds, consumer, node };
}

/** Subscribe to a chat room; wait for the confirmation and for our own `joined`. */
export async function joinRoom(user, room) {
  const chat = subscribe(user.consumer, { channel: "ChatChannel", room });
  assert.deepEqual(await chat.waitConnected(WAIT_MS), { reconnected: false }, `${user.user} joins ${room}`);
  await chat.waitFor((m) => m.type === "joined" && m.user === user.user, WAIT_MS);
  return chat;
}

/** A stored chat message as broadcast: {type, id, user, text, sent_at}. */
export function assertMessage(m, { user, text }) {
  assert.deepEqual(Object.keys(m), ["type", "id", "user", "text", "sent_at"], JSON.stringify(m));
  assert.equal(m.type, "message");
  assert.equal(m.user, user);
  assert.equal(m.text, text);
  assert.ok(Number.isInteger(m.id) && m.id > 0, `integer id: ${JSON.stringify(m)}`);
  assert.match(m.sent_at, RFC3339_UTC);
}

/** The `received` payloads of a recorder from event index `from` on. */
export const receivedSince = (rec, from = 0) =>
  rec.events.slice(from).filter((e) => e.type === "received").map((e) => e.data);

export { closeConsumer };
