// The pub/sub backends a demo node can run on besides Redis, each as a per-test resource: a
// fresh PostgreSQL database on the shared server (127.0.0.1:5432, user postgres; created for
// one test and dropped after it). `env` is what a node needs to use it (CABLE_ADAPTER and the
// adapter's settings); `raw(sql)` runs SQL on it, as another app on the same database would.

import { execFileSync } from "node:child_process";

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
