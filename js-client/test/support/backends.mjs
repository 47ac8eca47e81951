// The pub/sub backends a demo node can run on besides Redis, each as a per-test resource: a
// fresh PostgreSQL database on the shared server (127.0.0.1:5432, user postgres; created for
// one test and dropped after it), Solid Cable's table in a fresh PostgreSQL or MariaDB
// (127.0.0.1:3306, root) database or a fresh SQLite file, NATS (the shared server on
// 127.0.0.1:4222, subjects of the test's own). `env` is what a node needs to use it
// (CABLE_ADAPTER and the adapter's settings); `publishRaw(stream, json)` writes a broadcast
// straight into the backend exactly as a Rails node would (`pg_notify` for `adapter:
// postgresql`, the gem's row for `adapter: solid_cable`, AnyCable's broadcast for NATS).

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";

export const POSTGRES = { host: "127.0.0.1", port: 5432, user: "postgres" };

function psql(database, sql) {
  return execFileSync("psql", [
    "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
    "-h", POSTGRES.host, "-p", String(POSTGRES.port), "-U", POSTGRES.user, "-d", database, "-c", sql,
  ], { encoding: "utf8", timeout: 10_000 }).trim();
}

/** Why PostgreSQL cannot be used here (a skip message), or false when it can. */
export function postgresMissing() {
  try {
    psql("postgres", "SELECT 1");
    return false;
  } catch (e) {
    return `no PostgreSQL on ${POSTGRES.host}:${POSTGRES.port} for user ${POSTGRES.user} (scripts/test.sh starts one): ${e.message.split("\n")[0]}`;
  }
}

let databases = 0;

/** A fresh database for one test. */
export function postgresDatabase() {
  const name = `cable_js_${process.pid}_${++databases}_${Date.now() % 1_000_000}`;
  psql("postgres", `CREATE DATABASE ${name}`);
  const url = `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${name}`;
  return {
    name: "postgres",
    url,
    env: { CABLE_ADAPTER: "postgres", DATABASE_URL: url, CABLE_CHANNEL_PREFIX: "demo" },
    raw: (sql) => psql(name, sql),
    // What a Rails node on `adapter: postgresql` with `channel_prefix: demo` sends.
    publishRaw: async (stream, payload) =>
      psql(name, `SELECT pg_notify('demo:' || $$${stream}$$, $$${payload}$$)`),
    stop: async () => psql("postgres", `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

// --- Solid Cable: Rails 8's table, on PostgreSQL, MariaDB or SQLite ---------------------------

/** `SolidCable::Message.channel_hash_for`: SHA-256's first 8 bytes, signed big-endian. */
export function solidCableHash(channel) {
  return createHash("sha256").update(channel, "utf8").digest().readBigInt64BE(0).toString();
}

const hex = (text) => Buffer.from(text, "utf8").toString("hex");

/** Rails' `created_at` text for now, in UTC with microseconds (`2026-12-07 05:10:11.123000`). */
const railsNow = () => new Date().toISOString().replace("T", " ").replace("Z", "000");

/**
 * The row the gem's `SolidCable::Message.broadcast` inserts for `stream` (prefix `demo`), as
 * SQL for `dialect`: hex literals for the binary columns, so no quoting can go wrong.
 */
function solidCableInsert(dialect, stream, payload) {
  const channel = `demo:${stream}`;
  const bin = dialect === "postgres" ? (t) => `decode('${hex(t)}', 'hex')` : (t) => `X'${hex(t)}'`;
  const table = dialect === "mysql" ? "`solid_cable_messages`" : `"solid_cable_messages"`;
  return `INSERT INTO ${table} (channel, payload, channel_hash, created_at) VALUES ` +
    `(${bin(channel)}, ${bin(payload)}, ${solidCableHash(channel)}, '${railsNow()}')`;
}

const SOLID_ENV = { CABLE_ADAPTER: "solid_cable", CABLE_CHANNEL_PREFIX: "demo", SOLID_CABLE_POLLING_INTERVAL: "0.05" };

/** Solid Cable on a fresh PostgreSQL database of the shared server. */
export function solidCablePostgres() {
  const db = postgresDatabase();
  return {
    name: "solid_cable on PostgreSQL",
    env: { ...SOLID_ENV, CABLE_DATABASE_URL: db.url },
    publishRaw: async (stream, payload) => db.raw(solidCableInsert("postgres", stream, payload)),
    stop: db.stop,
  };
}

export const MARIADB = { host: "127.0.0.1", port: 3306, user: "root" };

function mariadb(sql, database) {
  const args = ["--no-defaults", "-h", MARIADB.host, "-P", String(MARIADB.port), "-u", MARIADB.user, "-N", "-B"];
  if (database) args.push(database);
  return execFileSync("mariadb", [...args, "-e", sql], { encoding: "utf8", timeout: 10_000 }).trim();
}

/** Why MariaDB cannot be used here (a message), or false when it can. */
export function mariadbMissing() {
  try {
    mariadb("SELECT 1");
    return false;
  } catch (e) {
    return `no MariaDB on ${MARIADB.host}:${MARIADB.port} for root (scripts/test.sh starts one): ${e.message.split("\n")[0]}`;
  }
}

/** Solid Cable on a fresh MariaDB database of the shared server (dropped after the test). */
export function solidCableMariadb() {
  const name = `cable_js_${process.pid}_${++databases}_${Date.now() % 1_000_000}`;
  mariadb(`CREATE DATABASE ${name}`);
  return {
    name: "solid_cable on MariaDB",
    env: { ...SOLID_ENV, CABLE_DATABASE_URL: `mysql://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}/${name}` },
    publishRaw: async (stream, payload) => mariadb(solidCableInsert("mysql", stream, payload), name),
    stop: async () => mariadb(`DROP DATABASE IF EXISTS ${name}`),
  };
}

/** Solid Cable on a fresh SQLite file (both nodes on one machine share it). */
export function solidCableSqlite() {
  const dir = mkdtempSync(join(tmpdir(), "cable-solid-"));
  const file = join(dir, "cable.sqlite3");
  return {
    name: "solid_cable on SQLite",
    env: { ...SOLID_ENV, CABLE_DATABASE_URL: `sqlite://${file}` },
    publishRaw: async (stream, payload) =>
      execFileSync("sqlite3", ["-cmd", ".timeout 5000", file, solidCableInsert("sqlite", stream, payload)],
        { encoding: "utf8", timeout: 10_000 }),
    stop: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Why SQLite's command-line shell is missing (a message), or false. */
export function sqliteMissing() {
  try {
    execFileSync("sqlite3", ["-version"], { encoding: "utf8" });
    return false;
  } catch {
    return "sqlite3 is not installed (apt-get install sqlite3; scripts/test.sh installs it)";
  }
}

// --- NATS (with JetStream, for the history), the shared server on 127.0.0.1:4222 ------------

export const NATS = { host: "127.0.0.1", port: 4222 };

/**
 * Publishes `payload` on `subject` the way any NATS client does (the protocol's text commands:
 * CONNECT, PUB, then PING, and waits for the PONG that says the server has processed the PUB).
 */
export function natsPublish(subject, payload) {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(payload, "utf8");
    const socket = connect(NATS.port, NATS.host);
    let seen = "";
    const timer = setTimeout(() => { socket.destroy(); reject(new Error("no PONG from NATS within 5 s")); }, 5000);
    socket.on("error", (e) => { clearTimeout(timer); reject(e); });
    socket.on("data", (chunk) => {
      seen += chunk.toString("utf8");
      if (seen.startsWith("INFO") && !socket.sent) {
        socket.sent = true;
        socket.write(Buffer.concat([
          Buffer.from(`CONNECT {"verbose":false,"pedantic":false}\r\nPUB ${subject} ${body.length}\r\n`),
          body, Buffer.from("\r\nPING\r\n"),
        ]));
      }
      if (seen.includes("-ERR")) { clearTimeout(timer); socket.destroy(); reject(new Error(seen)); }
      if (seen.includes("PONG")) { clearTimeout(timer); socket.end(); resolve(); }
    });
  });
}

/** Why NATS cannot be used here (a message), or false when it can. */
export function natsMissing() {
  try {
    execFileSync("bash", ["-c", `exec 3<>/dev/tcp/${NATS.host}/${NATS.port} && head -c 4 <&3`], { encoding: "utf8", timeout: 5000 });
    return false;
  } catch (e) {
    return `no NATS on ${NATS.host}:${NATS.port} (scripts/test.sh starts one with JetStream): ${e.message.split("\n")[0]}`;
  }
}

/**
 * The NATS adapter on the shared server, with a channel prefix and an AnyCable subject of its
 * own (so tests never hear each other). `publishRaw` sends what anycable-rails' NATS broadcaster
 * sends: `{"stream","data"}` on the AnyCable subject, `data` the JSON text.
 */
export function natsBackend() {
  const tag = `js_${process.pid}_${++databases}_${Date.now() % 1_000_000}`;
  const anycableSubject = `__anycable_${tag}__`;
  return {
    name: "nats",
    env: {
      CABLE_ADAPTER: "nats", NATS_URL: `nats://${NATS.host}:${NATS.port}`,
      CABLE_CHANNEL_PREFIX: `demo_${tag}`, ANYCABLE_NATS_CHANNEL: anycableSubject,
    },
    publishRaw: async (stream, payload) => natsPublish(anycableSubject, JSON.stringify({ stream, data: payload })),
    stop: async () => {},
  };
}
