//! The local fan-out: which connections listen to which stream, under which identifier.
//!
//! This is the hot path of every broadcast. A message for a stream is encoded once per
//! identifier listening to it (every subscriber of `{"channel":"ChatChannel","room":"lobby"}`
//! gets the same bytes) and handed to each connection's bounded [`Outbox`] without waiting:
//! a full outbox marks its connection as too slow instead of stalling the others. The map lock
//! is a plain `RwLock` that is never held across an `.await`.
//!
//! Messages come in through the pub/sub adapter's [`Inbound`](crate::pubsub::Inbound), which
//! reaches the hub through the narrow [`Deliver`] trait: the adapter contract knows nothing of
//! the hub.
//!
//! The hub also tells the pub/sub adapter when a stream's first local subscriber appears and
//! its last leaves. Each stream has a *gate* (an async mutex around "is the adapter subscribed")
//! so that these calls never overlap for one stream, and a subscriber returns from
//! [`Hub::add`] only once the adapter confirmed the stream is live.
//!
//! **Positions.** A message kept in the stream's history arrives with its position. Plain
//! subscribers get exactly the bytes they always got; extended-protocol subscribers that follow
//! positions get `stream_id`/`epoch`/`offset` too, a second encoding shared the same way (once
//! per identifier). For each such subscriber the hub remembers the last position it was sent,
//! and skips a message at or before it: a replay and the live fan-out may both carry a message,
//! and the client (`@anycable/core`) does not drop duplicates itself. While a replay is being
//! fetched, the subscriber's live messages are *held* in order, then sent after the replay
//! ([`Hub::replay`]), so the client sees every message once, in position order.
//!
//! **Metrics.** With metrics on, the hub counts what the adapter delivered and what it queued
//! per broadcast (one atomic add each, not one per subscriber), times the fan-out, and queues
//! one frame in `sample_deliveries` of a sampled broadcast with its trace (`metrics.rs`). With
//! metrics off it does none of this: one branch per broadcast.
//!
//! **Presence.** A presence event (a member joined or left, from the adapter's
//! [`Presence`](crate::pubsub::Presence)) goes only to the subscribers that listen to the
//! stream *with presence* (extended-protocol clients whose channel opened it so), as
//! `{"type":"presence",…}`, encoded once per identifier. It takes a path of its own
//! ([`Deliver::presence_event`]), so ordinary broadcasts never look at presence.

use crate::connection::{ConnectionId, ConnectionRef};
use crate::error::PubSubError;
use crate::metrics::{Metrics, Trace};
use crate::outbox::Outbox;
use crate::protocol::{self, DisconnectReason};
use crate::pubsub::{
    AdapterEvent, Deliver, History, Kept, Position, Presence, PresenceEvent, PubSub,
};
use crate::sync::{lock, read, write};
use crate::untrusted::untrusted;
use axum::extract::ws::Utf8Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A per-subscriber filter/transform of a stream's messages (`stream_from_with`): `None`
/// skips the message for that subscriber, `Some(value)` is sent instead of it.
pub(crate) type StreamFilter = Arc<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

struct Member {
    connection: ConnectionId,
    outbox: Outbox,
    filter: Option<StreamFilter>,
    /// `Some` for a subscriber that follows positions (extended protocol, history on).
    tracked: Option<Box<Mutex<Tracked>>>,
    /// It gets the stream's presence events.
    presence: bool,
}

/// What the hub knows of a subscriber that follows positions.
#[derive(Default)]
struct Tracked {
    /// The position of the last message sent to it.
    last: Option<Position>,
    /// `Some` while a replay is being fetched: live frames held back, in order.
    held: Option<Vec<(Option<Position>, Utf8Bytes)>>,
    /// Its session is parked (no socket): messages pass it by, unsent and not noted as sent,
    /// so that the replay after a resume carries them.
    parked: bool,
}

impl Tracked {
    /// Whether a message at `position` is news to this subscriber; notes it as sent if so.
    fn advance(&mut self, position: Option<&Position>) -> bool {
        let Some(position) = position else {
            return true;
        };
        match &mut self.last {
            Some(last) if last.epoch == position.epoch => {
                if position.offset <= last.offset {
                    return false;
                }
                last.offset = position.offset;
            }
            last => *last = Some(position.clone()),
        }
        true
    }
}

/// How one subscription listens to one stream.
#[derive(Default)]
pub(crate) struct Listen {
    /// A per-subscriber transform (`stream_from_with`).
    pub(crate) filter: Option<StreamFilter>,
    /// Send positions with kept messages (an extended-protocol client, history on).
    pub(crate) positions: bool,
    /// Hold live messages until [`Hub::replay`] (a `subscribe` that asked for history).
    pub(crate) hold: bool,
    /// Send the stream's presence events (an extended-protocol client, presence on).
    pub(crate) presence: bool,
}

struct StreamEntry {
    groups: HashMap<Arc<str>, Vec<Member>>,
    gate: Arc<tokio::sync::Mutex<bool>>,
}

/// A broadcast that must skip one local connection when it comes back from the adapter.
struct Exclusion {
    stream: Arc<str>,
    payload: String,
    connection: ConnectionId,
    at: Instant,
}

/// How long an exclusion waits for its broadcast to come back before it is forgotten.
const EXCLUSION_TTL: Duration = Duration::from_secs(30);

/// Most live messages held for one subscriber of one stream while its replay is awaited. A
/// resumed client is held until it sends `history`; one that never does (or a stream far
/// busier than the replay is quick) is asked to close with `too_slow` instead of growing
/// memory, as a full outbox is.
const HELD_LIMIT: usize = 1024;

/// The identifier under which a connection listens to its own internal stream. No subscription
/// can have it: an empty string is not a JSON object.
pub(crate) const INTERNAL: &str = "";

pub(crate) struct Hub {
    streams: RwLock<HashMap<Arc<str>, StreamEntry>>,
    pubsub: Arc<dyn PubSub>,
    /// The adapter's history, when the cable keeps it.
    history: Option<Arc<dyn History>>,
    /// The adapter's presence, when it keeps one.
    presence: Option<Arc<dyn Presence>>,
    exclusions: Mutex<Vec<Exclusion>>,
    /// Whether `exclusions` may be non-empty: the hot path skips its lock otherwise.
    excluding: AtomicBool,
    /// The cable's metrics, when on.
    metrics: Option<Arc<Metrics>>,
}

impl Hub {
    pub(crate) fn new(
        pubsub: Arc<dyn PubSub>,
        history: Option<Arc<dyn History>>,
        presence: Option<Arc<dyn Presence>>,
        metrics: Option<Arc<Metrics>>,
    ) -> Hub {
        Hub {
            streams: RwLock::new(HashMap::new()),
            pubsub,
            history,
            presence,
            exclusions: Mutex::new(Vec::new()),
            excluding: AtomicBool::new(false),
            metrics,
        }
    }

    /// The cable's metrics, when on.
    pub(crate) fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    pub(crate) fn pubsub(&self) -> &Arc<dyn PubSub> {
        &self.pubsub
    }

    /// The adapter's history, when the cable keeps one.
    pub(crate) fn history(&self) -> Option<&Arc<dyn History>> {
        self.history.as_ref()
    }

    /// The adapter's presence, when it keeps one.
    pub(crate) fn presence(&self) -> Option<&Arc<dyn Presence>> {
        self.presence.as_ref()
    }

    /// Adds a subscriber and returns once the stream is live in the adapter, with the hub's
    /// copy of the stream's name (one per stream, shared by its subscribers).
    pub(crate) async fn add(
        &self,
        stream: &str,
        identifier: &Arc<str>,
        connection: &ConnectionRef,
        listen: Listen,
    ) -> Result<Arc<str>, PubSubError> {
        let (name, gate) = {
            let mut streams = write(&self.streams);
            let name = match streams.get_key_value(stream) {
                Some((name, _)) => name.clone(),
                None => Arc::from(stream),
            };
            let entry = streams.entry(name.clone()).or_insert_with(|| StreamEntry {
                groups: HashMap::new(),
                gate: Arc::new(tokio::sync::Mutex::new(false)),
            });
            entry
                .groups
                .entry(identifier.clone())
                .or_default()
                .push(Member {
                    connection: connection.id(),
                    outbox: connection.outbox().clone(),
                    filter: listen.filter,
                    tracked: listen.positions.then(|| {
                        Box::new(Mutex::new(Tracked {
                            last: None,
                            held: listen.hold.then(Vec::new),
                            parked: false,
                        }))
                    }),
                    presence: listen.presence,
                });
            (name, entry.gate.clone())
        };
        let mut live = gate.lock().await;
        if !*live {
            if let Err(e) = self.pubsub.subscribe(stream).await {
                drop(live);
                self.remove(stream, identifier, connection.id()).await;
                return Err(e);
            }
            *live = true;
        }
        Ok(name)
    }

    /// Removes a subscriber; unsubscribes the adapter when it was the stream's last.
    pub(crate) async fn remove(&self, stream: &str, identifier: &str, connection: ConnectionId) {
        let gate = {
            let mut streams = write(&self.streams);
            let Some(entry) = streams.get_mut(stream) else {
                return;
            };
            if let Some(group) = entry.groups.get_mut(identifier) {
                if let Some(i) = group.iter().position(|m| m.connection == connection) {
                    group.swap_remove(i);
                }
                if group.is_empty() {
                    entry.groups.remove(identifier);
                }
            }
            if !entry.groups.is_empty() {
                return;
            }
            entry.gate.clone()
        };
        let mut live = gate.lock().await;
        // A new subscriber may have arrived while we waited for the gate.
        if !self.is_idle(stream, &gate) {
            return;
        }
        if *live {
            if let Err(e) = self.pubsub.unsubscribe(stream).await {
                tracing::warn!(stream = %untrusted(stream), error = %e, "pub/sub unsubscribe failed");
            }
            *live = false;
        }
        let mut streams = write(&self.streams);
        if streams
            .get(stream)
            .is_some_and(|e| e.groups.is_empty() && Arc::ptr_eq(&e.gate, &gate))
        {
            streams.remove(stream);
        }
    }

    fn is_idle(&self, stream: &str, gate: &Arc<tokio::sync::Mutex<bool>>) -> bool {
        read(&self.streams)
            .get(stream)
            .is_some_and(|e| e.groups.is_empty() && Arc::ptr_eq(&e.gate, gate))
    }

    /// Remembers that the next copy of `payload` on `stream` coming back from the adapter
    /// must skip `connection`, if that connection listens to the stream here at all.
    pub(crate) fn exclude(&self, stream: &str, payload: &str, connection: ConnectionId) -> bool {
        let listening = read(&self.streams).get(stream).is_some_and(|e| {
            e.groups
                .values()
                .any(|g| g.iter().any(|m| m.connection == connection))
        });
        if !listening {
            return false;
        }
        let mut list = lock(&self.exclusions);
        let now = Instant::now();
        list.retain(|x| now.duration_since(x.at) < EXCLUSION_TTL);
        list.push(Exclusion {
            stream: Arc::from(stream),
            payload: payload.to_owned(),
            connection,
            at: now,
        });
        self.excluding.store(true, Ordering::Release);
        true
    }

    /// Forgets an exclusion whose broadcast was never published.
    pub(crate) fn cancel_exclusion(&self, stream: &str, payload: &str, connection: ConnectionId) {
        lock(&self.exclusions).retain(|x| {
            !(x.connection == connection && &*x.stream == stream && x.payload == payload)
        });
    }

    fn take_exclusion(&self, stream: &str, payload: &str) -> Option<ConnectionId> {
        if !self.excluding.load(Ordering::Acquire) {
            return None;
        }
        let mut list = lock(&self.exclusions);
        let i = list
            .iter()
            .position(|x| &*x.stream == stream && x.payload == payload)?;
        let connection = list.swap_remove(i).connection;
        if list.is_empty() {
            self.excluding.store(false, Ordering::Release);
        }
        Some(connection)
    }

    /// Starts holding `connection`'s live messages of `stream` (under `identifier`) until
    /// [`replay`](Self::replay); for a `history` command on a subscription already streaming.
    pub(crate) fn hold(&self, stream: &str, identifier: &str, connection: ConnectionId) {
        self.with_tracked(stream, identifier, connection, |tracked, _| {
            tracked.held.get_or_insert_with(Vec::new);
        });
    }

    /// Lets `connection`'s live messages of `stream` pass it by while its session is parked:
    /// nothing is queued for it, nothing is noted as sent.
    pub(crate) fn park(&self, stream: &str, identifier: &str, connection: ConnectionId) {
        self.with_tracked(stream, identifier, connection, |tracked, _| {
            tracked.parked = true;
            tracked.held = None;
        });
    }

    /// A parked session is resumed: hold its live messages until the client's `history`,
    /// and forget what was sent before the socket dropped (the client may not have read it;
    /// its own positions decide what the replay carries).
    pub(crate) fn unpark(&self, stream: &str, identifier: &str, connection: ConnectionId) {
        self.with_tracked(stream, identifier, connection, |tracked, _| {
            tracked.parked = false;
            tracked.last = None;
            tracked.held = Some(Vec::new());
        });
    }

    /// Sends `connection` the `kept` messages of `stream` it has not been sent yet, then the
    /// live ones held meanwhile, and stops holding. Returns how many frames it queued.
    pub(crate) fn replay(
        &self,
        stream: &str,
        identifier: &str,
        connection: ConnectionId,
        kept: &[Kept],
    ) -> usize {
        self.with_tracked(stream, identifier, connection, |tracked, member| {
            let mut sent = 0;
            for k in kept {
                if !tracked.advance(Some(&k.position)) {
                    continue;
                }
                let Ok(message) = protocol::raw_json(&k.payload) else {
                    continue;
                };
                let frame = match &member.filter {
                    None => Some(protocol::encode_data_at(
                        identifier,
                        message,
                        stream,
                        &k.position.epoch,
                        k.position.offset,
                    )),
                    Some(filter) => serde_json::from_str(&k.payload)
                        .ok()
                        .and_then(|v| run_filter(filter, &v, stream))
                        .and_then(|v| encode_value(identifier, &v, stream, Some(&k.position))),
                };
                if let Some(frame) = frame
                    && member.outbox.push(Utf8Bytes::from(frame))
                {
                    sent += 1;
                }
            }
            for (position, frame) in tracked.held.take().unwrap_or_default() {
                if tracked.advance(position.as_ref()) && member.outbox.push(frame) {
                    sent += 1;
                }
            }
            sent
        })
        .unwrap_or(0)
    }

    fn with_tracked<T>(
        &self,
        stream: &str,
        identifier: &str,
        connection: ConnectionId,
        f: impl FnOnce(&mut Tracked, &Member) -> T,
    ) -> Option<T> {
        let streams = read(&self.streams);
        let member = streams
            .get(stream)?
            .groups
            .get(identifier)?
            .iter()
            .find(|m| m.connection == connection)?;
        let mut tracked = lock(member.tracked.as_ref()?);
        Some(f(&mut tracked, member))
    }

    /// Number of streams with local subscribers.
    pub(crate) fn stream_count(&self) -> usize {
        read(&self.streams).len()
    }

    /// The `n` streams with the most local subscriptions (internal streams left out), most
    /// first: each stream's name and its subscription count.
    pub(crate) fn top_streams(&self, n: usize) -> Vec<(String, usize)> {
        let streams = read(&self.streams);
        let mut counts: Vec<(String, usize)> = streams
            .iter()
            .map(|(name, entry)| {
                let subscribers = entry
                    .groups
                    .iter()
                    .filter(|(identifier, _)| !identifier.is_empty())
                    .map(|(_, members)| members.len())
                    .sum();
                (name.to_string(), subscribers)
            })
            .filter(|(_, subscribers)| *subscribers > 0)
            .collect();
        drop(streams);
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(n);
        counts
    }

    /// Number of broadcasts waiting to skip their sender (for leak checks).
    #[cfg(test)]
    pub(crate) fn pending_exclusions(&self) -> usize {
        lock(&self.exclusions).len()
    }
}

/// Fans a payload out to every local subscriber of its stream; returns how many it reached.
impl Deliver for Hub {
    fn presence_event(&self, stream: &str, event: PresenceEvent<'_>) -> usize {
        let message = match event {
            PresenceEvent::Join { id, info } => {
                protocol::presence_join_event(id, info.and_then(|i| protocol::raw_json(i).ok()))
            }
            PresenceEvent::Leave { id } => protocol::presence_leave_event(id),
        };
        let Ok(message) = protocol::raw_json(&message) else {
            return 0;
        };
        let streams = read(&self.streams);
        let Some(entry) = streams.get(stream) else {
            return 0;
        };
        let mut reached = 0;
        for (identifier, members) in &entry.groups {
            let mut frame: Option<Utf8Bytes> = None;
            for member in members.iter().filter(|m| m.presence) {
                if let Some(tracked) = &member.tracked
                    && lock(tracked).parked
                {
                    continue;
                }
                let frame = frame
                    .get_or_insert_with(|| {
                        Utf8Bytes::from(protocol::encode_presence(identifier, message))
                    })
                    .clone();
                if member.outbox.push(frame) {
                    reached += 1;
                }
            }
        }
        reached
    }

    fn adapter_event(&self, event: AdapterEvent) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        match event {
            AdapterEvent::Error => metrics.adapter_errors.inc(),
            AdapterEvent::Reconnected => metrics.adapter_reconnects.inc(),
        };
    }

    fn deliver(
        &self,
        stream: &str,
        payload: &str,
        position: Option<&Position>,
        trace: Option<Trace>,
    ) -> usize {
        let Some(metrics) = &self.metrics else {
            return self.fan_out(stream, payload, position, None).reached;
        };
        let started = Instant::now();
        let sample = trace.map(|t| (t, metrics.sample_deliveries().max(1)));
        let fanned = self.fan_out(stream, payload, position, sample);
        metrics.fanout.observe(started.elapsed().as_secs_f64());
        metrics.received.inc();
        metrics.deliveries.inc_by(fanned.frames as u64);
        fanned.reached
    }
}

/// What one fan-out did.
struct Fanned {
    /// Subscriptions reached (remote disconnects included): what `Inbound::deliver` returns.
    reached: usize,
    /// Data frames queued (or held for a replay).
    frames: usize,
}

impl Hub {
    /// `sample`: the broadcast's trace, and one subscriber in how many to follow with it.
    fn fan_out(
        &self,
        stream: &str,
        payload: &str,
        position: Option<&Position>,
        sample: Option<(Trace, usize)>,
    ) -> Fanned {
        let none = Fanned {
            reached: 0,
            frames: 0,
        };
        let message = match protocol::raw_json(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(stream = %untrusted(stream), error = %e, "dropping a broadcast that is not JSON");
                return none;
            }
        };
        let skip = self.take_exclusion(stream, payload);
        let streams = read(&self.streams);
        let Some(entry) = streams.get(stream) else {
            return none;
        };
        let mut parsed: Option<Option<Value>> = None;
        let mut reached = 0;
        let mut closed = 0;
        // Subscribers queued a frame so far, for sampling.
        let mut nth = 0usize;
        for (identifier, members) in &entry.groups {
            if identifier.is_empty() {
                // A connection's internal stream: commands for the connection, not data.
                if let Some((reason, reconnect)) = protocol::parse_internal_message(payload) {
                    for member in members {
                        member.outbox.close(reason, reconnect);
                        reached += 1;
                        closed += 1;
                    }
                }
                continue;
            }
            let mut shared: Option<Utf8Bytes> = None;
            let mut shared_at: Option<Utf8Bytes> = None;
            for member in members {
                if Some(member.connection) == skip {
                    continue;
                }
                // Positions go only to subscribers that follow them, and only with kept
                // messages: everyone else gets the plain frame.
                let at = position.filter(|_| member.tracked.is_some());
                let frame = match (&member.filter, at) {
                    (None, None) => shared
                        .get_or_insert_with(|| {
                            Utf8Bytes::from(protocol::encode_data(identifier, message))
                        })
                        .clone(),
                    (None, Some(p)) => shared_at
                        .get_or_insert_with(|| {
                            Utf8Bytes::from(protocol::encode_data_at(
                                identifier, message, stream, &p.epoch, p.offset,
                            ))
                        })
                        .clone(),
                    (Some(filter), at) => {
                        let value =
                            parsed.get_or_insert_with(|| serde_json::from_str(payload).ok());
                        let filtered = value.as_ref().and_then(|v| run_filter(filter, v, stream));
                        match filtered.and_then(|v| encode_value(identifier, &v, stream, at)) {
                            Some(frame) => Utf8Bytes::from(frame),
                            None => continue,
                        }
                    }
                };
                if let Some(tracked) = &member.tracked {
                    let mut tracked = lock(tracked);
                    if tracked.parked {
                        continue;
                    }
                    if let Some(held) = &mut tracked.held {
                        if held.len() >= HELD_LIMIT {
                            tracked.held = None;
                            tracked.parked = true;
                            member.outbox.close(DisconnectReason::TooSlow, true);
                            continue;
                        }
                        held.push((position.cloned(), frame));
                        reached += 1;
                        continue;
                    }
                    if !tracked.advance(position) {
                        continue;
                    }
                }
                let trace = match sample {
                    Some((trace, every)) => {
                        nth += 1;
                        (nth % every == 1 % every).then_some(trace)
                    }
                    None => None,
                };
                if member.outbox.push_traced(frame, trace) {
                    reached += 1;
                }
            }
        }
        Fanned {
            reached,
            frames: reached - closed,
        }
    }
}

fn encode_value(
    identifier: &str,
    value: &Value,
    stream: &str,
    position: Option<&Position>,
) -> Option<String> {
    let json = serde_json::to_string(value).ok()?;
    let raw = protocol::raw_json(&json).ok()?;
    Some(match position {
        None => protocol::encode_data(identifier, raw),
        Some(p) => protocol::encode_data_at(identifier, raw, stream, &p.epoch, p.offset),
    })
}

/// Runs a user filter; a panic skips the message for that subscriber only.
fn run_filter(filter: &StreamFilter, value: &Value, stream: &str) -> Option<Value> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| filter(value))) {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(
                stream = %untrusted(stream),
                "a stream filter panicked; message skipped for its subscriber"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Identity;
    use crate::outbox::Frames;
    use crate::pubsub::{Inbound, MemoryPubSub};

    /// Connection `id` with a frame queue of `capacity`.
    fn conn(id: u64, capacity: usize) -> (ConnectionRef, Frames) {
        let (outbox, frames) = Outbox::new(capacity, 1 << 20);
        let identity = Arc::new(Identity::anonymous());
        (
            ConnectionRef::new(ConnectionId(id), identity, outbox),
            frames,
        )
    }

    fn hub() -> Arc<Hub> {
        let pubsub = Arc::new(MemoryPubSub::new());
        let presence = pubsub.presence(&Default::default()).ok();
        let hub = Arc::new(Hub::new(pubsub.clone(), None, presence, None));
        pubsub.start(Inbound::new(&hub)).unwrap();
        hub
    }

    #[tokio::test]
    async fn encodes_once_per_identifier_and_reaches_everyone() {
        let hub = hub();
        let id_a: Arc<str> = Arc::from(r#"{"channel":"A"}"#);
        let id_b: Arc<str> = Arc::from(r#"{"channel":"B"}"#);
        let (o1, mut r1) = conn(1, 8);
        let (o2, mut r2) = conn(2, 8);
        let (o3, mut r3) = conn(3, 8);
        hub.add("s", &id_a, &o1, Listen::default()).await.unwrap();
        hub.add("s", &id_a, &o2, Listen::default()).await.unwrap();
        hub.add("s", &id_b, &o3, Listen::default()).await.unwrap();
        assert_eq!(hub.deliver("s", r#"{"n":1}"#, None, None), 3);
        let f1 = r1.recv().await;
        let f2 = r2.recv().await;
        assert_eq!(
            f1.as_str(),
            r#"{"identifier":"{\"channel\":\"A\"}","message":{"n":1}}"#
        );
        // Same identifier: the very same buffer.
        assert_eq!(f1.as_str().as_ptr(), f2.as_str().as_ptr());
        assert_eq!(
            r3.recv().await.as_str(),
            r#"{"identifier":"{\"channel\":\"B\"}","message":{"n":1}}"#
        );
    }

    #[tokio::test]
    async fn removing_the_last_subscriber_forgets_the_stream() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (o1, _r1) = conn(1, 8);
        hub.add("s", &id, &o1, Listen::default()).await.unwrap();
        assert_eq!(hub.stream_count(), 1);
        hub.remove("s", &id, ConnectionId(1)).await;
        assert_eq!(hub.stream_count(), 0);
        assert_eq!(hub.deliver("s", "1", None, None), 0);
    }

    #[tokio::test]
    async fn a_full_outbox_asks_its_session_to_close() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (slow, _keep) = conn(1, 1);
        let (fast, mut fast_rx) = conn(2, 8);
        hub.add("s", &id, &slow, Listen::default()).await.unwrap();
        hub.add("s", &id, &fast, Listen::default()).await.unwrap();
        hub.deliver("s", "1", None, None);
        hub.deliver("s", "2", None, None);
        assert_eq!(
            slow.outbox().closed().await,
            (DisconnectReason::TooSlow, true)
        );
        assert_eq!(slow.outbox().dropped(), 1);
        assert!(fast_rx.try_recv().is_some() && fast_rx.try_recv().is_some());
    }

    #[tokio::test]
    async fn non_json_payloads_are_dropped() {
        let hub = hub();
        let (o, _r) = conn(1, 8);
        hub.add("s", &Arc::from("i"), &o, Listen::default())
            .await
            .unwrap();
        assert_eq!(hub.deliver("s", "not json", None, None), 0);
    }

    #[tokio::test]
    async fn an_exclusion_skips_its_session_once_and_is_consumed() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (sender, mut sender_rx) = conn(1, 8);
        let (other, mut other_rx) = conn(2, 8);
        hub.add("s", &id, &sender, Listen::default()).await.unwrap();
        hub.add("s", &id, &other, Listen::default()).await.unwrap();
        assert!(hub.exclude("s", r#"{"n":1}"#, ConnectionId(1)));
        assert_eq!(hub.deliver("s", r#"{"n":1}"#, None, None), 1);
        assert!(other_rx.try_recv().is_some());
        assert!(sender_rx.try_recv().is_none());
        assert_eq!(hub.pending_exclusions(), 0);
        // The next identical broadcast reaches everyone again.
        assert_eq!(hub.deliver("s", r#"{"n":1}"#, None, None), 2);
        // A session not listening to the stream registers nothing (nothing would consume it).
        assert!(!hub.exclude("elsewhere", "1", ConnectionId(1)));
        assert_eq!(hub.pending_exclusions(), 0);
    }

    #[tokio::test]
    async fn filters_transform_or_skip_per_subscriber() {
        let hub = hub();
        let id: Arc<str> = Arc::from(r#"{"channel":"A"}"#);
        let (plain, mut plain_rx) = conn(1, 8);
        let (odd, mut odd_rx) = conn(2, 8);
        let only_odd: StreamFilter = Arc::new(|v: &Value| {
            (v["n"].as_u64()? % 2 == 1).then(|| serde_json::json!({ "odd": v["n"] }))
        });
        hub.add("s", &id, &plain, Listen::default()).await.unwrap();
        hub.add(
            "s",
            &id,
            &odd,
            Listen {
                filter: Some(only_odd),
                ..Listen::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(hub.deliver("s", r#"{"n":1}"#, None, None), 2);
        assert_eq!(hub.deliver("s", r#"{"n":2}"#, None, None), 1);
        assert_eq!(
            plain_rx.try_recv().unwrap().as_str(),
            r#"{"identifier":"{\"channel\":\"A\"}","message":{"n":1}}"#
        );
        assert_eq!(
            odd_rx.try_recv().unwrap().as_str(),
            r#"{"identifier":"{\"channel\":\"A\"}","message":{"odd":1}}"#
        );
        assert!(plain_rx.try_recv().is_some());
        assert!(odd_rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_panicking_filter_skips_only_its_subscriber() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (plain, mut plain_rx) = conn(1, 8);
        let (bad, mut bad_rx) = conn(2, 8);
        let panics: StreamFilter = Arc::new(|_: &Value| panic!("filter bug"));
        hub.add(
            "s",
            &id,
            &bad,
            Listen {
                filter: Some(panics),
                ..Listen::default()
            },
        )
        .await
        .unwrap();
        hub.add("s", &id, &plain, Listen::default()).await.unwrap();
        assert_eq!(hub.deliver("s", "1", None, None), 1);
        assert!(plain_rx.try_recv().is_some());
        assert!(bad_rx.try_recv().is_none());
    }

    fn at(offset: u64) -> Position {
        Position {
            epoch: Arc::from("e"),
            offset,
        }
    }

    fn kept(offset: u64) -> Kept {
        Kept {
            position: at(offset),
            unix_secs: 0,
            payload: Arc::from(offset.to_string()),
        }
    }

    #[tokio::test]
    async fn positions_go_only_to_subscribers_that_follow_them() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (plain, mut plain_rx) = conn(1, 8);
        let (ext, mut ext_rx) = conn(2, 8);
        let (ext2, mut ext2_rx) = conn(3, 8);
        let follow = || Listen {
            positions: true,
            ..Listen::default()
        };
        hub.add("s", &id, &plain, Listen::default()).await.unwrap();
        hub.add("s", &id, &ext, follow()).await.unwrap();
        hub.add("s", &id, &ext2, follow()).await.unwrap();
        assert_eq!(hub.deliver("s", "1", Some(&at(1)), None), 3);
        assert_eq!(
            plain_rx.try_recv().unwrap().as_str(),
            r#"{"identifier":"i","message":1}"#
        );
        let f2 = ext_rx.try_recv().unwrap();
        assert_eq!(
            f2.as_str(),
            r#"{"identifier":"i","message":1,"stream_id":"s","epoch":"e","offset":1}"#
        );
        // Encoded once for both.
        assert_eq!(
            f2.as_str().as_ptr(),
            ext2_rx.try_recv().unwrap().as_str().as_ptr()
        );
        // Not kept: plain bytes for everyone.
        hub.deliver("s", "2", None, None);
        assert_eq!(
            ext_rx.try_recv().unwrap().as_str(),
            r#"{"identifier":"i","message":2}"#
        );
        // A position already sent is not sent again.
        assert_eq!(hub.deliver("s", "1", Some(&at(1)), None), 1);
        assert!(ext_rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_replay_and_held_live_messages_meet_once_in_order() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (ext, mut rx) = conn(1, 16);
        let listen = Listen {
            positions: true,
            hold: true,
            ..Listen::default()
        };
        hub.add("s", &id, &ext, listen).await.unwrap();
        // Live while the replay is fetched: held, not sent.
        hub.deliver("s", "3", Some(&at(3)), None);
        hub.deliver("s", "4", Some(&at(4)), None);
        hub.deliver("s", r#""typing""#, None, None);
        assert!(rx.try_recv().is_none());
        // The history read saw 2 and 3 (3 is also held): 2, 3, 4, then the transient one.
        assert_eq!(
            hub.replay("s", "i", ConnectionId(1), &[kept(2), kept(3)]),
            4
        );
        let mut got = Vec::new();
        while let Some(f) = rx.try_recv() {
            let v: Value = serde_json::from_str(f.as_str()).unwrap();
            got.push(v["message"].clone());
        }
        assert_eq!(
            got,
            vec![serde_json::json!(2), 3.into(), 4.into(), "typing".into()]
        );
        // Holding is over: live again, skipping what the replay carried.
        hub.deliver("s", "4", Some(&at(4)), None);
        hub.deliver("s", "5", Some(&at(5)), None);
        assert!(rx.try_recv().unwrap().as_str().contains(r#""offset":5"#));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_parked_subscriber_is_passed_by_and_its_replay_follows_the_client() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (ext, mut rx) = conn(1, 16);
        let listen = Listen {
            positions: true,
            ..Listen::default()
        };
        hub.add("s", &id, &ext, listen).await.unwrap();
        hub.deliver("s", "1", Some(&at(1)), None);
        hub.deliver("s", "2", Some(&at(2)), None);
        while rx.try_recv().is_some() {}
        // Parked: nothing is queued, nothing noted as sent.
        hub.park("s", "i", ConnectionId(1));
        hub.deliver("s", "3", Some(&at(3)), None);
        assert!(rx.try_recv().is_none());
        // Resumed: live messages wait for the replay; the client read only 1, so the replay
        // carries 2 (sent before the drop, never read) and 3 (missed while parked).
        hub.unpark("s", "i", ConnectionId(1));
        hub.deliver("s", "4", Some(&at(4)), None);
        assert!(rx.try_recv().is_none());
        assert_eq!(
            hub.replay("s", "i", ConnectionId(1), &[kept(2), kept(3), kept(4)]),
            3
        );
        let mut got = Vec::new();
        while let Some(f) = rx.try_recv() {
            let v: Value = serde_json::from_str(f.as_str()).unwrap();
            got.push(v["message"].clone());
        }
        assert_eq!(got, vec![serde_json::json!(2), 3.into(), 4.into()]);
    }

    #[tokio::test]
    async fn presence_events_go_to_presence_subscribers_only_and_broadcasts_ignore_the_flag() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (plain, mut plain_rx) = conn(1, 8);
        let (watcher, mut watcher_rx) = conn(2, 8);
        let (watcher2, mut watcher2_rx) = conn(3, 8);
        let with_presence = || Listen {
            presence: true,
            ..Listen::default()
        };
        hub.add("s", &id, &plain, Listen::default()).await.unwrap();
        hub.add("s", &id, &watcher, with_presence()).await.unwrap();
        hub.add("s", &id, &watcher2, with_presence()).await.unwrap();
        let presence = hub.presence().unwrap().clone();
        assert!(
            presence
                .join("s", "k", "42", Some(r#"{"n":"A"}"#))
                .await
                .unwrap()
        );
        let frame = watcher_rx.try_recv().unwrap();
        assert_eq!(
            frame.as_str(),
            r#"{"type":"presence","identifier":"i","message":{"type":"join","info":{"n":"A"},"id":"42"}}"#
        );
        // Encoded once for the identifier.
        assert_eq!(
            frame.as_str().as_ptr(),
            watcher2_rx.try_recv().unwrap().as_str().as_ptr()
        );
        assert!(plain_rx.try_recv().is_none());
        // A broadcast reaches everyone, presence or not, with the same bytes.
        assert_eq!(hub.deliver("s", "1", None, None), 3);
        assert_eq!(
            plain_rx.try_recv().unwrap().as_str(),
            watcher_rx.try_recv().unwrap().as_str()
        );
        assert!(presence.leave("s", "k").await.unwrap());
        assert!(plain_rx.try_recv().is_none());
        assert_eq!(
            watcher_rx.try_recv().unwrap().as_str(),
            r#"{"type":"presence","identifier":"i","message":{"type":"leave","id":"42"}}"#
        );
    }

    #[tokio::test]
    async fn a_subscriber_held_too_long_is_asked_to_close_instead_of_growing() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (ext, mut rx) = conn(1, 16);
        let listen = Listen {
            positions: true,
            hold: true,
            ..Listen::default()
        };
        hub.add("s", &id, &ext, listen).await.unwrap();
        for n in 1..=HELD_LIMIT as u64 + 1 {
            hub.deliver("s", "1", Some(&at(n)), None);
        }
        assert!(rx.try_recv().is_none());
        assert_eq!(
            ext.outbox().closed().await,
            (DisconnectReason::TooSlow, true)
        );
    }
}
