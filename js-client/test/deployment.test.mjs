// The deployment files that cannot run on these machines (no container engine) are kept in step
// with the topology that does run: scripts/cluster.sh (its `describe`) starts the processes
// js-client/test/cluster.nginx.test.mjs drives, and docker-compose.yml, the Dockerfile and
// deploy/nginx.conf must describe the same services, ports and environment.
//
// Differences that are packaging, not topology, are listed (PACKAGING) with their reason;
// anything else that differs fails.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { JS_CLIENT_DIR, Scope, http, login } from "./support/demo.mjs";
import { subscribe, closeConsumer, waitUntil } from "./support/consumer.mjs";
import { WAIT_MS } from "./support/timing.mjs";

const ROOT = join(JS_CLIENT_DIR, "..");
const read = (path) => readFileSync(join(ROOT, path), "utf8");

/** Environment that differs between a container and a local process, and why. */
const PACKAGING = {
  BIND: "a container listens on every interface (nginx reaches it by name); local nodes on loopback",
  DEMO_ASSETS: "the image's page folder; a checkout's js-client is found by default",
};

const cluster = JSON.parse(execFileSync("bash", [join(ROOT, "scripts", "cluster.sh"), "describe"], { encoding: "utf8" }));
const compose = parse(read("docker-compose.yml"), { merge: true });
const dockerfile = read("Dockerfile");
const nginx = read("deploy/nginx.conf");

/** The final image's `ENV` (the last stage's `ENV NAME=value …` lines). */
function imageEnv() {
  const lastStage = dockerfile.split(/^FROM /m).at(-1);
  const env = {};
  for (const [, line] of lastStage.matchAll(/^ENV (.+)$/gm)) {
    for (const pair of line.trim().split(/\s+/)) {
      const [name, ...value] = pair.split("=");
      env[name] = value.join("=");
    }
  }
  return env;
}

/** The published nginx port of docker-compose.yml ("8080:8080" → 8080). */
const proxyPort = () => String(compose.services.nginx.ports[0]).split(":")[0];

test("docker-compose.yml has the services scripts/cluster.sh runs", () => {
  assert.deepEqual(Object.keys(compose.services).sort(), Object.keys(cluster.services).sort());
});

test("each node's environment in docker-compose.yml (with the image's) is the cluster's, placeholders aside", () => {
  const redisHost = "redis:6379"; // the compose service name and Redis' port
  for (const name of ["demo1", "demo2"]) {
    const env = { ...imageEnv(), ...compose.services[name].environment };
    const normalized = {};
    for (const [key, value] of Object.entries(env)) {
      if (key in PACKAGING) continue;
      let v = String(value);
      if (key === "REDIS_URL") v = v.replace(redisHost, "<redis>");
      if (key === "SECRET_KEY_BASE") v = v ? "<secret>" : v;
      if (key === "DEMO_DATABASE") v = "<database>";
      if (key === "PORT") v = "<node-port>";
      if (key === "ALLOWED_ORIGINS") v = v.replaceAll(`:${proxyPort()}`, ":<proxy-port>");
      normalized[key] = v;
    }
    const expected = Object.fromEntries(Object.entries(cluster.services[name].env).filter(([k]) => !(k in PACKAGING)));
    if (normalized.ALLOWED_ORIGINS) {
      normalized.ALLOWED_ORIGINS = normalized.ALLOWED_ORIGINS.split(",").sort().join(",");
      expected.ALLOWED_ORIGINS = expected.ALLOWED_ORIGINS.split(",").sort().join(",");
    }
    assert.deepEqual(normalized, expected, name);
  }
});

test("nginx: the one configuration both use, its upstreams the node services on the image's port", () => {
  assert.equal(cluster.services.nginx.config, "deploy/nginx.conf");
  const volumes = compose.services.nginx.volumes.map(String);
  assert.ok(volumes.some((v) => v.startsWith("./deploy/nginx.conf:/etc/nginx/nginx.conf")), JSON.stringify(volumes));
  const upstreams = [...nginx.matchAll(/^\s*server\s+([\w.-]+):(\d+);/gm)].map(([, host, port]) => `${host}:${port}`);
  assert.deepEqual(upstreams, ["demo1", "demo2"].map((s) => `${s}:${imageEnv().PORT}`));
  assert.match(nginx, new RegExp(`listen ${proxyPort()};`));
  assert.deepEqual(compose.services.nginx.ports.map(String), [`${proxyPort()}:${proxyPort()}`]);
});

test("the image carries every npm package the demo's page is served from", () => {
  const assets = read("examples/demo/src/assets.rs");
  const packages = [...new Set([...assets.matchAll(/"node_modules\/((?:@[\w.-]+\/)?[\w.-]+)/g)].map(([, p]) => p))];
  assert.ok(packages.length >= 4, `found ${packages.join(", ")}`);
  for (const pkg of packages) {
    const scope = pkg.startsWith("@") ? pkg.split("/")[0] : pkg;
    const copied = [...dockerfile.matchAll(/^COPY --from=assets \/js-client\/node_modules\/(\S+) /gm)].map(([, p]) => p);
    assert.ok(copied.some((c) => c === pkg || c === scope), `${pkg} is copied into the image (copied: ${copied.join(", ")})`);
  }
});

test("every metric the Grafana dashboard and the alert rules name is one a node exports", async () => {
  const scope = new Scope("deployment metrics");
  try {
    const demo = await scope.demo();
    // Labelled families appear once they have a series: a subscription (channel), a command
    // (kind, channel), a refused connection (reason) and a closed one (reason).
    const { token } = await login(demo.baseUrl, "ops");
    const consumer = scope.consumer(`${demo.cableUrl}?token=${encodeURIComponent(token)}`);
    await subscribe(consumer, { channel: "ChatChannel", room: "lobby" }).waitConnected(WAIT_MS);
    const refused = scope.consumer(`${demo.cableUrl}?token=not-a-token`);
    await subscribe(refused, { channel: "ChatChannel", room: "lobby" }).waitDisconnected(WAIT_MS);
    await closeConsumer(consumer);
    await waitUntil(async () => /actioncable_disconnects_total\{/.test((await http(demo.baseUrl, "/metrics")).body),
      { timeoutMs: WAIT_MS, label: "the closed connection counted" });
    const scrape = await http(demo.baseUrl, "/metrics");
    assert.equal(scrape.status, 200);
    // The sample names each family gives: OpenMetrics' `# TYPE <family> <type>` lines.
    const exported = new Set();
    for (const [, family, type] of String(scrape.body).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      if (type === "counter") exported.add(`${family}_total`);
      else if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(`${family}${s}`);
      else exported.add(family);
    }
    assert.ok(exported.size >= 15, [...exported].join(", "));
    for (const file of ["deploy/grafana/actioncable-dashboard.json", "deploy/prometheus/alerts.yml"]) {
      const named = new Set([...read(file).matchAll(/\bactioncable_[a-z_]+/g)].map(([m]) => m));
      assert.ok(named.size >= 5, `${file} names metrics`);
      for (const name of named) assert.ok(exported.has(name), `${file}: ${name} is exported (${[...exported].join(", ")})`);
    }
  } finally {
    await scope.cleanup();
  }
});
