// The live feed page (feed.html): a chat room followed with the browser's own EventSource on
// the cable's Server-Sent Events transport (`/events`), and the signed-in user's notifications
// counted in the header badge the same way. No client library: each message of the room's
// stream arrives as a `message` event whose data is the broadcast itself; the protocol frames
// arrive as named events (`confirm_subscription`, `disconnect`, …). Credentials are the login
// cookie, which a same-origin EventSource sends by itself.
//
// The room is `?room=` (default `lobby`). Without a valid cookie the server answers 401 and the
// EventSource gives up (it retries only after a stream that was open); the page says so.

import { avatar, byId, el, timeEl } from "./dom.mjs";

const ROOM_NAME = /^[a-z0-9][a-z0-9-]{0,39}$/;

const status = byId("status");
const statusLabel = byId("status-label");
const statusDetail = byId("status-detail");
const messages = byId("messages");
const feedError = byId("feed-error");
const unread = byId("unread");
const unreadCount = byId("unread-count");

function setStatus(state, label, detail = "") {
  status.dataset.state = state;
  statusLabel.textContent = label;
  statusDetail.textContent = detail;
  statusDetail.hidden = !detail;
}

function showError(message) {
  feedError.textContent = message;
  feedError.hidden = !message;
}

/** `/events?identifier=<the channel's params as JSON>`: what a `subscribe` would carry. */
function eventsUrl(params) {
  return `/events?identifier=${encodeURIComponent(JSON.stringify(params))}`;
}

/** JSON of an event's data, or null (and the event is ignored) when it is not JSON. */
function parse(event) {
  try { return JSON.parse(event.data); } catch { return null; }
}

function append(node) {
  messages.append(node);
  messages.scrollTop = messages.scrollHeight;
}

/** One broadcast of ChatChannel's stream, as the chat page shows it. */
function show(data) {
  if (!data || typeof data !== "object") return;
  if (data.type === "message" && typeof data.user === "string" && typeof data.text === "string") {
    append(el("li", { class: "message" },
      avatar(data.user || "?"),
      el("div", { class: "bubble" },
        el("p", { class: "meta" }, el("span", { class: "author" }, data.user), " ", timeEl(data.sent_at)),
        el("p", { class: "text" }, data.text))));
  } else if ((data.type === "joined" || data.type === "left") && typeof data.user === "string") {
    const kind = data.type === "joined" ? "notice-join" : "notice-leave";
    append(el("li", { class: `notice ${kind}` }, `${data.user} ${data.type}`));
  }
  // `typing` and anything else: nothing to show in a read-only feed.
}

/**
 * Follows `params` over an EventSource: `onData(data)` for every message, the status line for
 * the rest. Returns the source.
 */
function follow(params, { onData, label }) {
  const source = new EventSource(eventsUrl(params));
  source.addEventListener("confirm_subscription", () => {
    if (label) setStatus("connected", "Live", "over Server-Sent Events");
    showError("");
  });
  source.addEventListener("message", (event) => onData(parse(event)));
  source.addEventListener("disconnect", (event) => {
    const frame = parse(event) || {};
    if (frame.reconnect === false) {
      // The server said not to come back (signed out elsewhere, say): stop for good.
      source.close();
      if (label) setStatus("disconnected", "Disconnected", frame.reason ? `(${frame.reason})` : "");
    } else if (label) {
      setStatus("reconnecting", "Reconnecting…", frame.reason ? `(${frame.reason})` : "");
    }
  });
  source.addEventListener("error", () => {
    if (!label) return;
    if (source.readyState === EventSource.CLOSED) {
      // Refused before the stream began: 401 without a valid cookie, 400 for a room the user
      // may not enter. EventSource does not say which, and does not retry.
      setStatus("rejected", "Not connected");
      showError("The feed was refused: sign in on the chat page (and pick a room you may enter), then reload this page.");
    } else if (status.dataset.state !== "disconnected") {
      setStatus("reconnecting", "Reconnecting…");
    }
  });
  return source;
}

const room = new URLSearchParams(location.search).get("room") || "lobby";
if (!ROOM_NAME.test(room)) {
  setStatus("rejected", "Not connected");
  showError("That is not a room name: 1 to 40 of a-z, 0-9 and '-', starting with a letter or digit.");
} else {
  byId("feed-title").textContent = `#${room}`;
  byId("chat-link").href = `/#${room}`;
  document.title = `#${room} · live feed · actioncable-rs demo`;
  follow({ channel: "ChatChannel", room }, { onData: show, label: true });
  // The badge: notifications pushed to the signed-in user while the page is open.
  let fresh = 0;
  follow({ channel: "NotificationChannel" }, {
    onData: (data) => {
      if (!data || typeof data !== "object" || typeof data.message !== "string") return;
      fresh += 1;
      unreadCount.textContent = String(fresh);
      unread.hidden = false;
      byId("notifications").title = `Latest: ${data.message}`;
    },
    label: false,
  });
}
document.documentElement.dataset.ready = "true";
