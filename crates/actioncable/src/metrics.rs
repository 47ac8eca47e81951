//! The node's metrics, in the Prometheus text format: what an operator watches (connections,
//! subscriptions, broadcasts, deliveries, slow clients dropped) and how long a broadcast takes
//! to reach the sockets.
//!
//! Metrics are off unless the cable is built with [`CableBuilder::metrics`]; then every part
//! that counts something holds the one [`Metrics`] of its cable (through the hub) and the
//! route [`Cable::metrics_router`] renders it. Off, the parts hold `None` and the hot path
//! pays one branch per broadcast, not per delivery.
//!
//! **Why the handles are cached.** `prometheus-client`'s labelled families hash their labels
//! and take a lock on every lookup. Whatever runs per broadcast or per command (deliveries,
//! fan-out time, commands by kind, connections by protocol) uses a handle looked up once, here,
//! at build time: an atomic add, no hashing and no lock. Families are looked up only where the
//! label is not known in advance and the event is rare (a subscription's channel class, a
//! rejection, a disconnect).
//!
//! **Delivery latency is sampled.** The publishing node marks one broadcast in
//! `sample_broadcasts` with the wall-clock time `broadcast` was called (a [`Trace`]); the
//! adapter carries it with the message, and each receiving node follows one delivery in
//! `sample_deliveries` of it to the moment its frame is written to the socket (the mailbox
//! notes which queued frame carries it, see `outbox.rs`). Wall-clock time, because the writing
//! node may not be the publishing one; nodes whose clocks disagree see the difference in the
//! histogram (a negative latency counts as zero).
//!
//! This module is a leaf: it knows names and numbers, not the parts that report them.
//!
//! [`CableBuilder::metrics`]: crate::CableBuilder::metrics
//! [`Cable::metrics_router`]: crate::Cable::metrics_router

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The prefix of every metric's name.
pub(crate) const PREFIX: &str = "actioncable";

/// The content type of the text exposition format `prometheus-client` writes (OpenMetrics
/// 1.0, which every Prometheus since 2.5 scrapes).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label, its value a name the server chose (never client text: no unbounded series).
type Label = [(&'static str, &'static str); 1];

/// When a sampled broadcast was made: nanoseconds since the Unix epoch, on the publishing
/// node's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trace(pub(crate) u64);

impl Trace {
    pub(crate) fn now() -> Trace {
        Trace::at(SystemTime::now())
    }

    pub(crate) fn at(time: SystemTime) -> Trace {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Trace(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    pub(crate) fn time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    /// Seconds from this trace to now (zero when the clocks disagree).
    fn age(self) -> f64 {
        let now = Trace::now().0;
        now.saturating_sub(self.0) as f64 / 1e9
    }
}

/// How often delivery latency is sampled (`CableBuilder::metrics_sampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sampling {
    /// One broadcast in this many, on the publishing node.
    pub(crate) broadcasts: u32,
    /// One delivery in this many of a sampled broadcast, on each receiving node.
    pub(crate) deliveries: u32,
}

impl Default for Sampling {
    fn default() -> Sampling {
        Sampling {
            broadcasts: 100,
            deliveries: 100,
        }
    }
}

/// What a command is, as the `kind` label says it.
pub(crate) const COMMAND_KINDS: [&str; 7] = [
    "subscribe",
    "unsubscribe",
    "message",
    "history",
    "presence",
    "whisper",
    "pong",
];

/// How a connection reaches its client, as the `protocol` label of `connections` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A WebSocket speaking `actioncable-v1-json`.
    Plain,
    /// A WebSocket speaking `actioncable-v1-ext-json`.
    Ext,
    /// A Server-Sent Events response.
    Sse,
}

impl Transport {
    /// The WebSocket protocol a session negotiated.
    pub(crate) fn websocket(ext: bool) -> Transport {
        if ext {
            Transport::Ext
        } else {
            Transport::Plain
        }
    }
}

/// A histogram constructor a family can hold.
#[derive(Clone, Copy)]
struct Buckets(fn() -> Histogram);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        (self.0)()
    }
}

/// 100 µs to about 26 s, ×2 per bucket: a delivery or a command is sub-millisecond on an idle
/// node and seconds on a drowning one.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// 10 µs to about 2.6 s: one node's fan-out of one broadcast.
fn fanout_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 19))
}

/// A cable's metrics. Shared (`Arc`) by the hub, the handle and the sessions.
pub(crate) struct Metrics {
    registry: Registry,
    sampling: Sampling,
    /// Broadcasts published here, for sampling.
    published_seq: AtomicU64,

    /// Open connections: `[plain, ext, sse]`, as [`Transport`] orders them.
    connections: [Gauge; 3],
    subscriptions: Family<Label, Gauge>,
    streams: Gauge,
    queued: Gauge,

    pub(crate) accepted: Counter,
    rejected: Family<Label, Counter>,
    commands: [Counter; COMMAND_KINDS.len()],
    pub(crate) published: Counter,
    pub(crate) received: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) dropped: Counter,
    disconnects: Family<Label, Counter>,
    pub(crate) adapter_errors: Counter,
    pub(crate) adapter_reconnects: Counter,
    pub(crate) throttled: Counter,

    latency: Histogram,
    pub(crate) fanout: Histogram,
    command_duration: Family<Label, Histogram, Buckets>,
    pub(crate) welcome: Histogram,
}

impl Metrics {
    pub(crate) fn new(sampling: Sampling) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let connections_family = Family::<Label, Gauge>::default();
        // One lookup per statement: a family's lookup holds its lock until the statement ends.
        let plain = connections_family
            .get_or_create(&[("protocol", "plain")])
            .clone();
        let ext = connections_family
            .get_or_create(&[("protocol", "ext")])
            .clone();
        let sse = connections_family
            .get_or_create(&[("protocol", "sse")])
            .clone();
        let connections = [plain, ext, sse];
        registry.register(
            "connections",
            "Open connections, by protocol (plain: actioncable-v1-json, ext: actioncable-v1-ext-json, sse: Server-Sent Events)",
            connections_family,
        );
        let subscriptions = Family::<Label, Gauge>::default();
        registry.register(
            "subscriptions",
            "Confirmed subscriptions, by channel class",
            subscriptions.clone(),
        );
        let streams = Gauge::default();
        registry.register(
            "streams",
            "Streams with at least one subscriber on this node (internal streams included)",
            streams.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "outbound_frames",
            "Frames queued for clients and not yet written, over every connection (at scrape time)",
            queued.clone(),
        );

        let accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Connections welcomed",
            accepted.clone(),
        );
        let rejected = Family::<Label, Counter>::default();
        registry.register(
            "connections_rejected",
            "Connections refused, by reason (unauthorized, token_expired, too_many_connections, origin, over_capacity, shutting_down; event streams also bad_request, subscription_rejected)",
            rejected.clone(),
        );
        let commands_family = Family::<Label, Counter>::default();
        let commands =
            COMMAND_KINDS.map(|kind| commands_family.get_or_create(&[("kind", kind)]).clone());
        registry.register("commands", "Client commands run, by kind", commands_family);
        let published = Counter::default();
        registry.register(
            "broadcasts_published",
            "Broadcasts this node handed to the pub/sub adapter",
            published.clone(),
        );
        let received = Counter::default();
        registry.register(
            "broadcasts_received",
            "Broadcasts the pub/sub adapter delivered to this node",
            received.clone(),
        );
        let deliveries = Counter::default();
        registry.register(
            "deliveries",
            "Frames queued for subscribers by this node's fan-out",
            deliveries.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "frames_dropped",
            "Frames refused because a client's outbound queue was full (its connection is then closed as too_slow)",
            dropped.clone(),
        );
        let disconnects = Family::<Label, Counter>::default();
        registry.register(
            "disconnects",
            "Connections ended, by reason (too_slow, timeout, server_restart, remote, token_expired, client_close, gone, protocol_error)",
            disconnects.clone(),
        );
        let adapter_errors = Counter::default();
        registry.register(
            "adapter_errors",
            "Errors the pub/sub adapter reported (a lost connection, a failed command)",
            adapter_errors.clone(),
        );
        let adapter_reconnects = Counter::default();
        registry.register(
            "adapter_reconnects",
            "Times the pub/sub adapter connected again after losing its backend",
            adapter_reconnects.clone(),
        );
        let throttled = Counter::default();
        registry.register(
            "commands_throttled",
            "Client commands that waited for the connection's command budget (max_commands_per_second)",
            throttled.clone(),
        );

        let latency = latency_buckets();
        registry.register(
            "broadcast_latency_seconds",
            "From CableHandle::broadcast on the publishing node to the write of a subscriber's frame (sampled)",
            latency.clone(),
        );
        let fanout = fanout_buckets();
        registry.register(
            "fanout_duration_seconds",
            "Time this node took to fan one broadcast out to its local subscribers' outboxes",
            fanout.clone(),
        );
        let command_duration = Family::new_with_constructor(Buckets(latency_buckets));
        registry.register(
            "command_duration_seconds",
            "Time to run one client command, callbacks included, by channel class",
            command_duration.clone(),
        );
        let welcome = latency_buckets();
        registry.register(
            "welcome_duration_seconds",
            "From the upgrade request to the welcome frame written (authentication included)",
            welcome.clone(),
        );
        Metrics {
            registry,
            sampling,
            published_seq: AtomicU64::new(0),
            connections,
            subscriptions,
            streams,
            queued,
            accepted,
            rejected,
            commands,
            published,
            received,
            deliveries,
            dropped,
            disconnects,
            adapter_errors,
            adapter_reconnects,
            throttled,
            latency,
            fanout,
            command_duration,
            welcome,
        }
    }

    /// Whether the broadcast being published now is one to follow; `Some` with its trace.
    pub(crate) fn sample_broadcast(&self) -> Option<Trace> {
        let n = self.published_seq.fetch_add(1, Ordering::Relaxed);
        n.is_multiple_of(u64::from(self.sampling.broadcasts))
            .then(Trace::now)
    }

    /// The gauge of open connections of `transport`.
    pub(crate) fn connections(&self, transport: Transport) -> &Gauge {
        &self.connections[transport as usize]
    }

    /// One delivery in how many of a sampled broadcast is followed to its socket.
    pub(crate) fn sample_deliveries(&self) -> usize {
        self.sampling.deliveries as usize
    }

    /// A followed delivery's frame was written to its socket.
    pub(crate) fn written(&self, trace: Trace) {
        self.latency.observe(trace.age());
    }

    /// A command of `kind` (an index into [`COMMAND_KINDS`]).
    pub(crate) fn command(&self, kind: usize) {
        if let Some(counter) = self.commands.get(kind) {
            counter.inc();
        }
    }

    /// A command for a subscription of `channel` took `took`.
    pub(crate) fn command_took(&self, channel: &'static str, took: Duration) {
        self.command_duration
            .get_or_create(&[("channel", channel)])
            .observe(took.as_secs_f64());
    }

    /// A subscription of `channel` was confirmed (`1`) or ended (`-1`).
    pub(crate) fn subscriptions(&self, channel: &'static str, change: i64) {
        self.subscriptions
            .get_or_create(&[("channel", channel)])
            .inc_by(change);
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&[("reason", reason)]).inc();
    }

    pub(crate) fn disconnected(&self, reason: &'static str) {
        self.disconnects.get_or_create(&[("reason", reason)]).inc();
    }

    /// The text exposition, with the gauges read at scrape time set first.
    pub(crate) fn render(&self, streams: usize, queued: usize) -> String {
        self.streams.set(i64::try_from(streams).unwrap_or(i64::MAX));
        self.queued.set(i64::try_from(queued).unwrap_or(i64::MAX));
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a `String` cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("sampling", &self.sampling)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_the_prefix_and_counters_end_in_total() {
        let metrics = Metrics::new(Sampling::default());
        metrics.deliveries.inc_by(3);
        metrics.rejected("origin");
        let text = metrics.render(2, 5);
        assert!(text.contains("actioncable_deliveries_total 3\n"), "{text}");
        assert!(
            text.contains("actioncable_connections_rejected_total{reason=\"origin\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("actioncable_streams 2\n"), "{text}");
        assert!(text.contains("actioncable_outbound_frames 5\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("actioncable_"), "{line}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn one_broadcast_in_n_is_sampled_starting_with_the_first() {
        let metrics = Metrics::new(Sampling {
            broadcasts: 3,
            deliveries: 1,
        });
        let sampled: Vec<bool> = (0..7)
            .map(|_| metrics.sample_broadcast().is_some())
            .collect();
        assert_eq!(sampled, [true, false, false, true, false, false, true]);
    }

    #[test]
    fn a_trace_survives_the_round_trip_through_system_time() {
        let trace = Trace::now();
        assert_eq!(Trace::at(trace.time()), trace);
        assert_eq!(
            Trace(u64::MAX).age(),
            0.0,
            "a trace from the future is no delay"
        );
    }
}
