// The demo page: sign in, rooms, chat and notifications over the stock @rails/actioncable
// consumer, imported by the URL the demo server serves it at (/vendor/actioncable.esm.js, read
// from js-client/node_modules). With `?client=anycable` the page runs on AnyCable's
// @anycable/web client instead, through its Action Cable compatible consumer, speaking the
// extended protocol (actioncable-v1-ext-json): the server keeps each room's recent messages
// with their positions, and a client that lost its socket gets what it missed on reconnect
// (docs/reliability.md), so the chat does not reload its history from the database then.
//
// Auth: `POST /login` answers with a token; the consumer connects to `/cable?token=…` and the
// HTTP calls send `Authorization: Bearer …`. The session lives in sessionStorage, so each tab
// can be a different user and a reload keeps you signed in. Signing out ends the user's
// sessions on the server: every tab signed in with that name is signed out.

import * as api from "./api.mjs";
import { ChatPanel } from "./chat.mjs";
import { byId, el, setFieldError } from "./dom.mjs";
import { NotificationsPanel } from "./notifications.mjs";
import { ConnectionStatus } from "./status.mjs";
import { CLIENT, connectCable } from "./client.mjs";

const SESSION_KEY = "actioncable-demo.session";
const DEFAULT_ROOM = "lobby";
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,32}$/;
const ROOM_PATTERN = /^[a-z0-9][a-z0-9-]{0,39}$/;

const status = new ConnectionStatus();
const alertBox = byId("alert");
const alertText = byId("alert-text");
const signinView = byId("signin-view");
const appView = byId("app-view");
const signinForm = byId("signin-form");
const signinName = byId("signin-name");
const signinError = byId("signin-error");
const account = byId("account");
const roomList = byId("room-list");
const roomForm = byId("room-form");
const roomInput = byId("room-input");
const roomError = byId("room-error");

/** The signed-in session: { user, token, consumer, chat, notifications, ended }. */
let current = null;

// ---- alerts and views --------------------------------------------------------------------------

function showAlert(message) {
  alertText.textContent = message;
  alertBox.hidden = false;
}

function hideAlert() {
  alertBox.hidden = true;
  alertText.textContent = "";
}

byId("alert-dismiss").addEventListener("click", hideAlert);

function showSignIn() {
  account.hidden = true;
  appView.hidden = true;
  signinView.hidden = false;
  byId("loading-view").hidden = true;
  signinName.focus();
}

function showApp(user) {
  byId("account-name").textContent = user;
  account.hidden = false;
  signinView.hidden = true;
  appView.hidden = false;
  byId("loading-view").hidden = true;
}

// ---- session -----------------------------------------------------------------------------------

function savedSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (saved && NAME_PATTERN.test(saved.user) && typeof saved.token === "string" && saved.token) return saved;
  } catch { /* ignore a broken entry */ }
  return null;
}

signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = signinName.value.trim();
  if (!NAME_PATTERN.test(name)) {
    setFieldError(signinName, signinError, "Use 1 to 32 letters, digits, “_”, “.” or “-” (no spaces).");
    signinName.focus();
    return;
  }
  const button = signinForm.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const { user, token } = await api.login(name);
    setFieldError(signinName, signinError, "");
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({ user, token }));
    hideAlert();
    start({ user, token });
    byId("composer-input").focus();
  } catch (error) {
    setFieldError(signinName, signinError, `Could not sign in: ${error.message}`);
  } finally {
    button.disabled = false;
  }
});

signinName.addEventListener("input", () => setFieldError(signinName, signinError, ""));

byId("sign-out").addEventListener("click", () => {
  const token = current?.token;
  stop();
  api.logout(token).catch(() => {});
  status.set("offline");
  showSignIn();
});

function start({ user, token }) {
  stop();
  const consumer = connectCable(() => `/cable?token=${encodeURIComponent(token)}`);
  const session = { user, token, consumer, ended: false };
  current = session;
  status.watch(consumer);
  status.set("connecting");
  status.onRetry = () => {
    status.set("connecting");
    consumer.connect();
  };

  session.notifications = new NotificationsPanel({
    user,
    token,
    connection: {
      connected: () => {
        if (session.ended) return;
        status.set("connected");
        hideAlert();
        refreshRooms();
      },
      disconnected: ({ willAttemptReconnect } = {}) => {
        if (session.ended) return;
        if (willAttemptReconnect) status.set("reconnecting");
        else closedForGood(session);
      },
    },
    onUnauthorized: () => rejected(session),
  });
  session.chat = new ChatPanel({
    user,
    catchUp: CLIENT.replaysStreams ? "stream" : "history",
    onActivity: refreshRoomsSoon,
    onRejected: (room) => setFieldError(roomInput, roomError, `#${room} is private: only its members can enter.`),
  });
  showApp(user);
  session.notifications.subscribe(consumer);
  enterRoom(roomFromHash());
}

/** Ends the session on this page: subscriptions first (the room sees `left`), then the socket. */
function stop() {
  if (!current) return;
  const session = current;
  current = null;
  session.ended = true;
  session.chat.destroy();
  session.notifications.destroy();
  session.consumer.disconnect();
  status.watch(null);
  status.onRetry = null;
  sessionStorage.removeItem(SESSION_KEY);
}

/**
 * The consumer will not reconnect (`willAttemptReconnect: false`): the server said so. Asking
 * the HTTP API with the same token tells a refused sign-in apart from anything else.
 */
async function closedForGood(session) {
  status.set("disconnected", { detail: "checking why…" });
  try {
    await api.notifications(session.token);
    if (session.ended) return;
    status.set("disconnected", { detail: "the server closed the connection and asked not to reconnect" });
  } catch (error) {
    if (session.ended) return;
    if (error.status === 401) rejected(session);
    else status.set("disconnected", { detail: error.message });
  }
}

function rejected(session) {
  if (session.ended) return;
  stop();
  status.set("rejected");
  showSignIn();
  showAlert("The server rejected the connection: your sign-in is no longer valid " +
    "(it may have expired, you may have signed out in another tab, or the server's secret changed). " +
    "Please sign in again.");
}

// ---- rooms -------------------------------------------------------------------------------------

/** The room named by the URL's hash; the default room when it names none (or is malformed). */
function roomFromHash() {
  let room;
  try {
    room = decodeURIComponent(location.hash.slice(1));
  } catch {
    return DEFAULT_ROOM; // `#%E0%A4%A` and friends: not a room, and no reason to break the page
  }
  return ROOM_PATTERN.test(room) ? room : DEFAULT_ROOM;
}

function enterRoom(room) {
  if (!current) return;
  current.room = room;
  setFieldError(roomInput, roomError, "");
  current.chat.enter(current.consumer, room);
  renderRooms(current.rooms ?? []);
  refreshRoomsSoon();
}

window.addEventListener("hashchange", () => {
  if (current && roomFromHash() !== current.room) enterRoom(roomFromHash());
});

roomForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const room = roomInput.value.trim().toLowerCase().replace(/\s+/g, "-");
  if (!ROOM_PATTERN.test(room)) {
    setFieldError(roomInput, roomError, "Use up to 40 of a–z, 0–9 and “-”, starting with a letter or digit.");
    roomInput.focus();
    return;
  }
  roomInput.value = "";
  if (room === current?.room) enterRoom(room);
  else location.hash = room;
  byId("composer-input").focus();
});

roomInput.addEventListener("input", () => setFieldError(roomInput, roomError, ""));

async function refreshRooms() {
  const session = current;
  if (!session) return;
  try {
    const rooms = await api.rooms(session.token);
    if (session !== current) return;
    session.rooms = rooms;
    renderRooms(rooms);
  } catch (error) {
    if (error.status === 401) rejected(session);
  }
}

let refreshTimer = null;
function refreshRoomsSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshRooms, 300);
}

function renderRooms(rooms) {
  const here = current?.room;
  const list = [...rooms];
  for (const room of [here, DEFAULT_ROOM]) {
    if (room && !list.some((r) => r.room === room)) list.push({ room, messages: 0 });
  }
  roomList.replaceChildren(...list.map(({ room, messages }) => el("li", {},
    el("a", { href: `#${room}`, class: "room-link", title: `#${room}`, "aria-current": room === here ? "page" : null },
      el("span", { class: "room-name" }, el("span", { "aria-hidden": "true" }, "#"), room),
      messages > 0
        ? el("span", { class: "room-count" }, String(messages),
          el("span", { class: "visually-hidden" }, messages === 1 ? " message" : " messages"))
        : null))));
}

// ---- go ----------------------------------------------------------------------------------------

byId("client-name").textContent = CLIENT.label;
const clientSwitch = byId("client-switch");
if (CLIENT.name === "anycable") {
  clientSwitch.textContent = "Switch to the stock @rails/actioncable consumer";
  clientSwitch.href = location.pathname;
  clientSwitch.nextSibling.textContent = ".";
}
// The room stays the same across the switch.
clientSwitch.addEventListener("click", () => {
  clientSwitch.href = `${clientSwitch.href.split("#")[0]}${location.hash}`;
});

const saved = savedSession();
if (saved) start(saved);
else showSignIn();
document.documentElement.dataset.ready = "true";
