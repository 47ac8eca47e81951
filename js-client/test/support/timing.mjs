// Every timing of the js-client tests, in one place: how long they wait for something to happen,
// how long they listen for silence, how long a whole test may take, and the servers' own timings
// that some tests assert. A wait that runs out fails its test with a message naming what did
// not come; no test waits without a bound.
//
// Raise a wait here rather than in one test: if a machine is too slow for these, it is too slow
// for all of them.

import { DEFAULT_TIMEOUT_MS } from "../../lib/actioncable-node.mjs";

// ---------------------------------------------------------------------------------------------
// Waiting for something to happen
// ---------------------------------------------------------------------------------------------

/** One positive wait: a frame, a callback, a consumer state, a reply, a log line (5 s). */
export const WAIT_MS = DEFAULT_TIMEOUT_MS;

/** One wait in Chromium (a page renders, a locator appears or goes). */
export const BROWSER_WAIT_MS = 10_000;

/** A stock consumer back on a restarted server: its ConnectionMonitor notices a stale socket
 * after 6 s and retries with a backoff growing towards 30 s. */
export const RECONNECT_WAIT_MS = 45_000;

// ---------------------------------------------------------------------------------------------
// Listening for silence
// ---------------------------------------------------------------------------------------------

/** A "nothing (more) arrives" window: what has not come by then is taken as never coming. */
export const QUIET_MS = 500;

/** A short pause for frames already on the wire to land, before reading what arrived. */
export const SETTLE_MS = 100;

// ---------------------------------------------------------------------------------------------
// Processes the tests start and stop
// ---------------------------------------------------------------------------------------------

/** A server process (example binary, redis-server, redis-cli) printing its ready line. */
export const PROCESS_START_MS = 15_000;

/** A process exiting after SIGTERM before it is SIGKILLed. */
export const PROCESS_STOP_MS = 5000;

/** A consumer's close handshake during cleanup, before its socket is terminated. */
export const CLOSE_MS = 2000;

/** A demo stopped with SIGTERM (consumers connected, nothing else in flight) exits on its own
 * within this, well inside its DEMO_EXIT_DEADLINE_MS. */
export const DEMO_STOP_GRACE_MS = 8000;

/** A shell script that brings services up or down (interop/rails/start.sh, scripts/cluster.sh). */
export const SCRIPT_MS = 60_000;

// ---------------------------------------------------------------------------------------------
// Whole tests (node:test's `timeout`)
// ---------------------------------------------------------------------------------------------

/** A test against servers it starts itself. */
export const TEST_TIMEOUT_MS = 30_000;

/** A test in Chromium. */
export const BROWSER_TEST_TIMEOUT_MS = 45_000;

/** A test that restarts a server and waits for its consumers to come back, brings up several
 * servers (nodes, Redis, nginx, Rails), or waits out an outage. */
export const LONG_TEST_TIMEOUT_MS = 90_000;

// ---------------------------------------------------------------------------------------------
// The servers' own timings, which tests assert
// ---------------------------------------------------------------------------------------------

/** ActionCable's ping interval, Rails' and ours. */
export const PING_INTERVAL_MS = 3000;

/** examples/demo: CABLE_SHUTDOWN_DEADLINE (5 s) + HTTP_SHUTDOWN_DEADLINE (5 s). */
export const DEMO_EXIT_DEADLINE_MS = 10_000;

/** actioncable-redis' subscribe timeout (crate docs): a SUBSCRIBE Redis does not confirm in this
 * time rejects the subscription. */
export const REDIS_SUBSCRIBE_TIMEOUT_MS = 5000;

/** js-client/public/chat.mjs: "x is typing…" stays 3 s after the last typing event, then fades
 * out in 0.6 s; the browser test allows this long for it to be gone. */
export const TYPING_GONE_WITHIN_MS = 6000;
