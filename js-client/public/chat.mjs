// The chat panel: one ChatChannel subscription for the room on screen, its message log, the
// typing indicator and the message box.
//
// Wire contract (examples/demo/README.md): the room's stream carries `message`, `joined`,
// `left` and `typing`; the sender alone gets `history` and `error`. How a reconnect fills the
// gap depends on the client (client.mjs): the stock consumer asks for `history` again on every
// `connected`; on the extended protocol the server replays the stream's missed messages, so
// `history` is asked for once.

import { avatar, byId, el, setFieldError, timeEl } from "./dom.mjs";

const HISTORY_LIMIT = 50;
const TYPING_VISIBLE_MS = 3000; // how long "x is typing…" stays after the last typing event
const TYPING_SEND_EVERY_MS = 2000; // at most one `typing` action per this while typing
const TYPING_FADE_MS = 600; // app.css: .typing's opacity transition

export class ChatPanel {
  /**
   * user: the signed-in name. onActivity(): a message was said here (the room list refreshes).
   * onRejected(room): the server refused the subscription (private room, invalid name).
   * catchUp: "history" (ask the channel for recent messages on every `connected`) or "stream"
   * (the server replays missed messages; ask once).
   */
  constructor({ user, onActivity = () => {}, onRejected = () => {}, catchUp = "history" }) {
    this.user = user;
    this.catchUp = catchUp;
    this.onActivity = onActivity;
    this.onRejected = onRejected;
    this.title = byId("room-title");
    this.info = byId("room-info");
    this.online = byId("room-online");
    this.log = byId("messages");
    this.empty = byId("messages-empty");
    this.typingNode = byId("typing");
    this.form = byId("composer");
    this.input = byId("composer-input");
    this.sendButton = byId("composer-send");
    this.error = byId("composer-error");
    this.subscription = null;
    this.room = null;
    this.generation = 0;
    this.typers = new Map(); // user → timeout id
    this.lastTypingSentAt = 0;

    this.abort = new AbortController();
    const { signal } = this.abort;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    }, { signal });
    this.input.addEventListener("input", () => {
      if (this.error.textContent) setFieldError(this.input, this.error, "");
      this.maybeSendTyping();
    }, { signal });
  }

  /** Subscribes to `room` through `consumer` (leaving the current room first). */
  enter(consumer, room) {
    this.leave();
    const generation = ++this.generation;
    this.room = room;
    this.connected = false;
    this.rejected = false;
    this.historyLoaded = false;
    this.saidJoined = false;
    this.renderedIds = new Set();
    this.maxId = 0;
    this.clearTyping();
    this.renderOnline(null);
    this.log.replaceChildren();
    // History goes above this marker; live events are appended below it.
    this.historyEnd = el("li", { class: "history-end", hidden: true });
    this.log.append(this.historyEnd);
    this.title.textContent = `#${room}`;
    this.info.textContent = "Joining…";
    this.input.placeholder = `Message #${room}`;
    this.input.disabled = false;
    this.sendButton.disabled = false;
    setFieldError(this.input, this.error, "");
    this.renderEmpty();

    const current = () => generation === this.generation;
    this.subscription = consumer.subscriptions.create({ channel: "ChatChannel", room }, {
      connected: () => {
        if (!current()) return;
        this.connected = true;
        this.info.textContent = `You are in #${room}. Everyone here sees what you write.`;
        // Not the callback's `reconnected` flag: the stock consumer sets it on the first
        // subscription confirmed after a reconnect only.
        if (this.historyLoaded) this.notice("Reconnected", "notice-status");
        if (this.catchUp === "history" || !this.historyLoaded) this.subscription.perform("history", { limit: HISTORY_LIMIT });
        this.joinPresence(current);
      },
      disconnected: ({ willAttemptReconnect } = {}) => {
        if (!current()) return;
        const wasConnected = this.connected;
        this.connected = false;
        this.clearTyping();
        this.renderOnline(null);
        if (wasConnected) {
          this.notice(willAttemptReconnect ? "Connection lost — reconnecting…" : "Disconnected", "notice-status");
        }
      },
      rejected: () => {
        if (!current()) return;
        this.rejected = true;
        this.info.textContent = "You cannot enter this room.";
        this.input.placeholder = `You cannot write in #${room}`;
        this.input.disabled = true;
        this.sendButton.disabled = true;
        this.renderEmpty();
        this.onRejected(room);
      },
      received: (data) => {
        if (current()) this.received(data);
      },
    });
  }

  /** Unsubscribes from the current room (the others in it see `left`). */
  leave() {
    this.generation++;
    this.stopPresence?.();
    this.stopPresence = null;
    this.renderOnline(null);
    if (this.subscription) this.subscription.unsubscribe();
    this.subscription = null;
    this.connected = false;
    this.clearTyping();
  }

  /** Leaves and stops listening to the page (on sign-out). */
  destroy() {
    this.leave();
    this.abort.abort();
    this.log.replaceChildren();
  }

  received(data) {
    switch (data?.type) {
      case "message":
        this.stopTyping(data.user);
        this.addMessage(data, { live: true });
        this.onActivity();
        break;
      case "joined":
        // Our own `joined` arrives right after the confirmation; after a reconnect the
        // "Reconnected" notice already says it.
        if (data.user !== this.user) this.notice(`${data.user} joined`, "notice-join");
        else if (!this.saidJoined) this.notice(`You joined #${this.room}`, "notice-join");
        if (data.user === this.user) this.saidJoined = true;
        break;
      case "left":
        this.stopTyping(data.user);
        if (data.user !== this.user) this.notice(`${data.user} left`, "notice-leave");
        break;
      case "typing":
        if (data.user !== this.user) this.showTyping(data.user);
        break;
      case "history":
        this.addHistory(Array.isArray(data.messages) ? data.messages : []);
        break;
      case "error": {
        const wait = Number.isInteger(data.retry_after) ? ` (try again in ${data.retry_after} s)` : "";
        setFieldError(this.input, this.error, `Not sent: ${data.error}${wait}`);
        break;
      }
      default:
        break;
    }
  }

  send() {
    const text = this.input.value.trim();
    if (!text) {
      setFieldError(this.input, this.error, "Type a message first.");
      return;
    }
    if (!this.subscription || !this.connected || !this.subscription.perform("speak", { text })) {
      setFieldError(this.input, this.error, "Not sent: not connected. Your text is kept; send it again once connected.");
      return;
    }
    this.input.value = "";
    this.lastTypingSentAt = 0;
    setFieldError(this.input, this.error, "");
  }

  maybeSendTyping() {
    if (!this.connected || this.input.value.trim() === "") return;
    const now = Date.now();
    if (now - this.lastTypingSentAt < TYPING_SEND_EVERY_MS) return;
    this.lastTypingSentAt = now;
    // On the extended protocol a whisper: straight to the others in the room, no channel code.
    if (this.subscription.whisper) this.subscription.whisper({ type: "typing", user: this.user });
    else this.subscription.perform("typing");
  }

  // ---- who is online (extended protocol) -------------------------------------------------------

  /** Joins the room's presence as this user and keeps the "Here now" line current. */
  async joinPresence(current) {
    const subscription = this.subscription;
    if (!subscription?.presence) return;
    if (!this.stopPresence) {
      this.stopPresence = subscription.onPresence(() => this.refreshOnline(current));
    }
    try {
      await subscription.presence.join(this.user, { name: this.user });
    } catch (error) {
      console.warn("presence join failed:", error);
    }
    await this.refreshOnline(current);
  }

  async refreshOnline(current) {
    try {
      const state = await this.subscription?.presence?.info();
      if (current() && this.connected && state) this.renderOnline(Object.keys(state));
    } catch (error) {
      console.warn("presence info failed:", error);
    }
  }

  /** `users`: who is here, or null when unknown (not connected, or no presence). */
  renderOnline(users) {
    if (!users) {
      this.online.hidden = true;
      this.online.textContent = "";
      return;
    }
    const names = [...users].sort((a, b) => (a === this.user ? -1 : b === this.user ? 1 : a.localeCompare(b)));
    const shown = names.slice(0, 10).map((n) => (n === this.user ? `${n} (you)` : n));
    const more = names.length > shown.length ? ` and ${names.length - shown.length} more` : "";
    this.online.textContent = `Here now (${names.length}): ${shown.join(", ")}${more}`;
    this.online.hidden = false;
  }

  // ---- the log -------------------------------------------------------------------------------

  /** Runs `change` and keeps the log scrolled to the bottom if it was there. */
  withScroll(change) {
    const { scrollTop, scrollHeight, clientHeight } = this.log;
    const atBottom = scrollHeight - scrollTop - clientHeight < 48;
    change();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  messageItem(m) {
    const mine = m.user === this.user;
    return el("li", { class: mine ? "message mine" : "message", dataset: { id: m.id } },
      avatar(m.user),
      el("div", { class: "bubble" },
        el("p", { class: "meta" },
          el("span", { class: "author" }, mine ? `${m.user} (you)` : m.user), " ", timeEl(m.sent_at)),
        el("p", { class: "text" }, m.text)));
  }

  addMessage(m, { live }) {
    if (!Number.isInteger(m.id) || this.renderedIds.has(m.id)) return;
    this.renderedIds.add(m.id);
    this.maxId = Math.max(this.maxId, m.id);
    this.withScroll(() => {
      const item = this.messageItem(m);
      if (live) this.log.append(item);
      else this.historyEnd.before(item);
    });
    this.renderEmpty();
  }

  addHistory(messages) {
    this.log.setAttribute("aria-busy", "true");
    if (!this.historyLoaded) {
      // First load: everything goes above the live part, oldest first.
      for (const m of messages) this.addMessage(m, { live: false });
      this.historyLoaded = true;
    } else {
      // After a reconnect: what was said while we were away goes at the end.
      for (const m of messages) if (m.id > this.maxId) this.addMessage(m, { live: true });
    }
    this.log.setAttribute("aria-busy", "false");
    this.renderEmpty();
  }

  notice(text, kind) {
    this.withScroll(() => {
      this.log.append(el("li", { class: `notice ${kind}` }, el("span", {}, text), " ", timeEl(new Date().toISOString())));
    });
  }

  renderEmpty() {
    let text = "";
    if (this.rejected) text = `You cannot enter #${this.room}: it is a private room (members only).`;
    else if (this.renderedIds.size === 0) {
      text = this.historyLoaded ? `No messages in #${this.room} yet. Say hello!` : "Loading recent messages…";
    }
    this.empty.textContent = text;
    this.empty.hidden = text === "";
    this.empty.classList.toggle("error", this.rejected);
  }

  // ---- typing --------------------------------------------------------------------------------

  showTyping(user) {
    clearTimeout(this.typers.get(user));
    this.typers.set(user, setTimeout(() => this.stopTyping(user), TYPING_VISIBLE_MS));
    this.renderTyping();
  }

  stopTyping(user) {
    if (!this.typers.has(user)) return;
    clearTimeout(this.typers.get(user));
    this.typers.delete(user);
    this.renderTyping();
  }

  clearTyping() {
    for (const timer of this.typers.values()) clearTimeout(timer);
    this.typers.clear();
    this.renderTyping();
  }

  renderTyping() {
    clearTimeout(this.fadeTimer);
    const names = [...this.typers.keys()];
    if (names.length === 0) {
      // Fades out (the CSS transition on opacity), then the text goes.
      this.typingNode.classList.remove("visible");
      this.fadeTimer = setTimeout(() => { this.typingNode.textContent = ""; }, TYPING_FADE_MS);
      return;
    }
    let text;
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else text = `${names.length} people are typing…`;
    this.typingNode.textContent = text;
    this.typingNode.classList.add("visible");
  }
}
