// Which client the page runs on, and a consumer with the stock consumer's interface either way.
//
// Default: the stock @rails/actioncable consumer (/vendor/actioncable.esm.js), plain protocol.
// `?client=anycable`: AnyCable's @anycable/web client (resolved by the page's import map),
// speaking the extended protocol, actioncable-v1-ext-json. Its Action Cable compatible consumer
// differs from the stock one in two places the page relies on, which `connectCable` smooths:
//   - `disconnected` gets `{ allowReconnect }` where the stock consumer gives
//     `{ willAttemptReconnect }`;
//   - `perform` returns nothing and queues while the socket is down, where the stock one returns
//     whether it sent (the page tells the user "not sent" rather than sending a stale message
//     minutes later);
//   - (additions) `presence`, `onPresence(listener)` and `whisper(data)` on a subscription:
//     the page shows who is online and sends typing signals with them when they exist;
//   - when a socket drops and the client will resume its session (the extended protocol's
//     `sid`), its subscriptions are not told at all: they wait to be restored. The page still
//     wants to say "reconnecting", so the cable's own `disconnect` event tells them.

const anycable = new URLSearchParams(location.search).get("client") === "anycable";

/**
 * name: "actioncable" or "anycable"; label: shown in the page's footer; replaysStreams: the
 * server replays what a reconnecting client missed on its streams (extended protocol).
 */
export const CLIENT = anycable
  ? { name: "anycable", label: "@anycable/web, extended protocol", replaysStreams: true }
  : { name: "actioncable", label: "@rails/actioncable", replaysStreams: false };

const clientModule = anycable ? await import("@anycable/web") : await import("/vendor/actioncable.esm.js");

/** A consumer for `url()` (a path such as `/cable?token=…`), not yet connected. */
export function connectCable(url) {
  if (!anycable) return clientModule.createConsumer(url);
  const wsUrl = new URL(url(), location.href);
  wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
  const consumer = clientModule.createConsumer(wsUrl.href, {
    protocol: "actioncable-v1-ext-json",
    logLevel: "warn",
  });
  return new StockShapedConsumer(consumer);
}

/** @anycable/web's consumer, with the stock consumer's `disconnected` and `perform`. */
class StockShapedConsumer {
  constructor(consumer) {
    this.consumer = consumer;
    this.subscriptions = { create: (identifier, mixin) => this.create(identifier, mixin) };
    this.mixins = new Set();
    consumer.cable.on("disconnect", () => {
      // Not recovering: every subscription was told already (`allowReconnect`).
      if (!consumer.cable.recovering) return;
      for (const mixin of this.mixins) mixin.disconnected?.({ willAttemptReconnect: true });
    });
  }

  create(identifier, mixin) {
    this.mixins.add(mixin);
    const subscription = this.consumer.subscriptions.create({ ...identifier }, {
      ...mixin,
      disconnected: ({ allowReconnect = false } = {}) => mixin.disconnected?.({ willAttemptReconnect: allowReconnect }),
    });
    const unsubscribe = subscription.unsubscribe.bind(subscription);
    subscription.unsubscribe = () => {
      this.mixins.delete(mixin);
      return unsubscribe()?.catch?.(() => {});
    };
    // The extended protocol's presence (who is here) and whisper (signals to the others on the
    // stream, not through channel code): @anycable/core's own objects.
    subscription.presence = subscription.channel.presence;
    subscription.onPresence = (listener) => subscription.channel.on("presence", listener);
    subscription.whisper = (data) => {
      if (subscription.channel.state !== "connected") return false;
      subscription.channel.whisper(data);
      return true;
    };
    subscription.perform = (action, data = {}) => {
      const channel = subscription.channel;
      if (channel.state !== "connected") return false;
      channel.perform(action, data).catch((error) => console.warn(`${action} not sent:`, error));
      return true;
    };
    return subscription;
  }

  // The stock consumer's connect() and disconnect() return nothing; these return promises that
  // reject when the attempt fails, which the status line reports anyway.
  connect() {
    this.consumer.connect()?.catch?.(() => {});
  }

  disconnect() {
    this.consumer.disconnect()?.catch?.(() => {});
  }
}
