// The notifications panel: the signed-in user's NotificationChannel subscription (stream
// `notification:<user>`), the list with its unread count, mark-as-read, and the small form that
// sends a notification through `POST /notifications` (an HTTP handler that broadcasts to the
// cable).
//
// The list is loaded with `GET /notifications` on every `connected` (so a reconnect catches up)
// and grows live with what the stream pushes; `mark_read` answers the sender with `marked_read`.

import * as api from "./api.mjs";
import { byId, el, setFieldError, timeEl } from "./dom.mjs";
import { safeLink } from "./links.mjs";

const BASE_TITLE = document.title;

export class NotificationsPanel {
  /**
   * user: the signed-in name; token(): the session's current token (it is refreshed). connection: { connected(data), disconnected(data) }, the
   * subscription's connection callbacks, which drive the page's status. onUnauthorized(): the
   * server no longer accepts the token.
   */
  constructor({ user, token, connection, onUnauthorized }) {
    // token: a function, so that a refreshed token is used from then on.
    this.user = user;
    this.token = token;
    this.connection = connection;
    this.onUnauthorized = onUnauthorized;
    this.items = new Map(); // id → notification
    this.pending = new Set(); // ids with a mark_read in flight
    this.list = byId("notification-list");
    this.empty = byId("notifications-empty");
    this.count = byId("unread-count");
    this.badge = byId("unread");
    this.markAll = byId("mark-all");
    this.panelError = byId("notifications-error");
    this.form = byId("notify-form");
    this.to = byId("notify-to");
    this.message = byId("notify-message");
    this.kind = byId("notify-kind");
    this.formError = byId("notify-error");
    this.result = byId("notify-result");
    this.subscription = null;
    this.connected = false;

    this.abort = new AbortController();
    const { signal } = this.abort;
    this.markAll.addEventListener("click", () => {
      for (const n of this.items.values()) if (!n.read) this.markRead(n.id);
    }, { signal });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    }, { signal });
    for (const input of [this.to, this.message]) {
      input.addEventListener("input", () => setFieldError(input, this.formError, ""), { signal });
    }
    if (!this.to.value) this.to.value = user;
    this.render();
  }

  subscribe(consumer) {
    this.subscription = consumer.subscriptions.create({ channel: "NotificationChannel" }, {
      connected: (data) => {
        this.connected = true;
        this.showError("");
        this.connection.connected(data);
        this.load();
      },
      disconnected: (data) => {
        this.connected = false;
        this.connection.disconnected(data);
      },
      rejected: () => this.showError("The server refused the notifications subscription."),
      received: (data) => this.received(data),
    });
  }

  destroy() {
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.abort.abort();
    this.items.clear();
    this.list.replaceChildren();
    this.form.reset();
    this.result.textContent = "";
    document.title = BASE_TITLE;
  }

  async load() {
    try {
      const list = await api.notifications(this.token());
      for (const n of list) this.items.set(n.id, { ...n, fresh: false });
      this.render();
    } catch (error) {
      if (error.status === 401) this.onUnauthorized();
      else this.showError(`Could not load notifications: ${error.message}`);
    }
  }

  received(data) {
    if (data?.type === "marked_read") {
      this.pending.delete(data.id);
      const n = this.items.get(data.id);
      if (n) n.read = true;
      this.render();
    } else if (data?.type === "error") {
      this.pending.clear();
      this.showError(data.error);
      this.render();
    } else if (Number.isInteger(data?.id)) {
      // A push: { id, message, kind, link, created_at }.
      if (!this.items.has(data.id)) this.items.set(data.id, { ...data, read: false, fresh: true });
      this.render();
    }
  }

  markRead(id) {
    if (this.pending.has(id)) return;
    if (!this.connected || !this.subscription?.perform("mark_read", { id })) {
      this.showError("Not connected: try again once the connection is back.");
      return;
    }
    this.pending.add(id);
    this.render();
  }

  async send() {
    const user = this.to.value.trim();
    const message = this.message.value.trim();
    this.result.textContent = "";
    if (!user) return setFieldError(this.to, this.formError, "Whom is it for? Enter a user name.");
    if (!message) return setFieldError(this.message, this.formError, "Write a message first.");
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const stored = await api.sendNotification(this.token(), { user, message, kind: this.kind.value });
      this.message.value = "";
      setFieldError(this.message, this.formError, "");
      this.result.textContent = stored.user === this.user
        ? `Sent notification #${stored.id} to yourself.`
        : `Sent notification #${stored.id} to ${stored.user}.`;
    } catch (error) {
      if (error.status === 401) return this.onUnauthorized();
      const field = /user/i.test(error.message) ? this.to : this.message;
      setFieldError(field, this.formError, `Not sent: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  showError(message) {
    this.panelError.textContent = message;
    this.panelError.hidden = !message;
  }

  // ---- rendering -----------------------------------------------------------------------------

  render() {
    const sorted = [...this.items.values()].sort((a, b) => b.id - a.id);
    const unread = sorted.filter((n) => !n.read).length;
    // Reuse existing items so a screen reader only hears what is new (aria-live additions).
    const existing = new Map([...this.list.children].map((li) => [Number(li.dataset.id), li]));
    const wanted = sorted.map((n) => {
      const li = existing.get(n.id) ?? el("li", { dataset: { id: n.id } });
      this.fill(li, n);
      return li;
    });
    wanted.forEach((li, i) => {
      if (this.list.children[i] !== li) this.list.insertBefore(li, this.list.children[i] ?? null);
    });
    while (this.list.children.length > wanted.length) this.list.lastElementChild.remove();

    this.empty.hidden = sorted.length > 0;
    this.count.textContent = String(unread);
    this.badge.hidden = unread === 0;
    this.markAll.disabled = unread === 0;
    document.title = unread > 0 ? `(${unread}) ${BASE_TITLE}` : BASE_TITLE;
  }

  fill(li, n) {
    const state = `${n.read}|${this.pending.has(n.id)}`;
    if (li.dataset.state === state) return;
    li.dataset.state = state;
    li.className = `notification kind-${n.kind}${n.read ? "" : " unread"}${n.fresh ? " fresh" : ""}`;
    n.fresh = false;
    const messageId = `notification-${n.id}-message`;
    let action;
    if (n.read) action = el("span", { class: "read-label" }, "Read");
    else {
      const pending = this.pending.has(n.id);
      action = el("button", {
        type: "button",
        class: "button-small",
        "aria-describedby": messageId,
        disabled: pending,
        onclick: () => this.markRead(n.id),
      }, pending ? "Marking…" : "Mark as read");
    }
    const hadFocus = li.contains(document.activeElement);
    const link = safeLink(n.link);
    li.replaceChildren(
      el("p", { class: "notification-head" },
        n.read ? null : el("span", { class: "visually-hidden" }, "Unread: "),
        el("span", { class: "kind" }, n.kind), " ", timeEl(n.created_at)),
      el("p", { class: "notification-message", id: messageId }, n.message),
      el("p", { class: "notification-actions" },
        link ? el("a", { href: link.href, rel: link.external ? "noopener noreferrer" : null }, "Open link") : null,
        action),
    );
    if (hadFocus) {
      // Keep keyboard users where they were: on the button, or on the item once it is read.
      const button = li.querySelector("button:not([disabled])");
      if (button) button.focus();
      else {
        li.tabIndex = -1;
        li.focus({ preventScroll: true });
      }
    }
  }
}
