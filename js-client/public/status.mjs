// The connection status in the page header. Its state comes from the stock consumer's
// subscription callbacks (see app.mjs): `connected` → connected; `disconnected` with
// `willAttemptReconnect: true` → reconnecting (the consumer's ConnectionMonitor retries on its
// own, with its own backoff: a first attempt 6–18 s after the drop, then slower); with
// `willAttemptReconnect: false` → disconnected or, when the server refused our credentials,
// rejected. Only the short label is a live region; the detail line changes too often to announce.

import { byId } from "./dom.mjs";

const LABELS = {
  offline: "Not signed in",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  disconnected: "Disconnected",
  rejected: "Connection rejected",
};

export class ConnectionStatus {
  constructor() {
    this.root = byId("status");
    this.label = byId("status-label");
    this.detail = byId("status-detail");
    this.retry = byId("status-retry");
    this.state = "offline";
    this.since = Date.now();
    this.consumer = null;
    this.ticker = null;
    this.onRetry = null;
    this.retry.addEventListener("click", () => this.onRetry?.());
  }

  /** The consumer whose reconnect attempts the detail line counts (null when signed out). */
  watch(consumer) {
    this.consumer = consumer;
  }

  /** Shows `state` (one of LABELS' keys); `detail` overrides the default detail line. */
  set(state, { detail } = {}) {
    if (!(state in LABELS)) throw new Error(`unknown connection state ${state}`);
    if (state !== this.state) this.since = Date.now();
    this.state = state;
    this.root.dataset.state = state;
    if (this.label.textContent !== LABELS[state]) this.label.textContent = LABELS[state];
    this.customDetail = detail;
    this.retry.hidden = state !== "disconnected";
    this.render();
    const ticking = state === "connecting" || state === "reconnecting";
    if (ticking && !this.ticker) this.ticker = setInterval(() => this.render(), 1000);
    if (!ticking && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }

  render() {
    this.detail.textContent = this.customDetail ?? this.defaultDetail();
    this.detail.hidden = this.detail.textContent === "";
  }

  defaultDetail() {
    const seconds = Math.round((Date.now() - this.since) / 1000);
    // The stock ConnectionMonitor counts its attempts; read it only to show progress.
    const attempts = this.consumer?.connection?.monitor?.reconnectAttempts ?? 0;
    switch (this.state) {
      case "connecting":
        return seconds < 5 ? "" : `still trying (${seconds} s) — is the server running?`;
      case "reconnecting":
        return attempts > 0
          ? `lost ${seconds} s ago · retrying by itself, attempt ${attempts}`
          : `lost ${seconds} s ago · the client retries by itself`;
      default:
        return "";
    }
  }
}
