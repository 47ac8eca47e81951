// The page's entry point. It loads app.mjs, which imports the stock @rails/actioncable consumer
// (or, with ?client=anycable, @anycable/web); when that fails (typically: `npm ci` was never run
// in js-client, so the demo server has no /vendor/... module to serve), it says so on the page
// instead of failing silently.

const CONSUMER_URL = new URLSearchParams(location.search).get("client") === "anycable"
  ? "/vendor/anycable-web/index.js"
  : "/vendor/actioncable.esm.js";

const code = (text) => Object.assign(document.createElement("code"), { textContent: text });

try {
  await import("./app.mjs");
} catch (error) {
  const consumerServed = await fetch(CONSUMER_URL, { method: "HEAD" }).then((r) => r.ok, () => false);
  const message = consumerServed
    ? [`The page could not start: ${error.message}`]
    : ["The page could not load the cable client (", code(CONSUMER_URL), "). The demo serves it from ",
      code("js-client/node_modules"), ": run ", code("npm ci"), " in the js-client folder (or start the demo with ",
      code("scripts/demo.sh"), ", which does), then reload this page."];
  document.getElementById("loading-view").hidden = true;
  document.getElementById("alert-text").replaceChildren(...message);
  document.getElementById("alert-dismiss").hidden = true;
  document.getElementById("alert").hidden = false;
  document.getElementById("status").dataset.state = "disconnected";
  document.getElementById("status-label").textContent = "Not connected";
  document.documentElement.dataset.ready = "failed";
  console.error(error);
}
