//! Session resume, node-local (AnyCable's resumable sessions, `docs/reliable_streams.md` in
//! anycable/anycable): an extended-protocol session whose socket drops without a server
//! `disconnect` is *parked* for `session_ttl` under the `sid` its `welcome` carried. A client
//! that reconnects to this node with that sid within the time takes it back, identity and
//! subscriptions, without `Connection::connect` or `Channel::subscribed` running again.
//!
//! A parked session keeps running on its own task (the one its socket had): its timers still
//! tick, its internal stream still listens (a remote disconnect or a shutdown ends it), and
//! whatever is queued for its client is dropped. Its positioned streams let messages pass it by
//! without noting them as sent, so that the `history` the client asks for after resuming
//! replays them. When the time is up, or the server ends it, it closes as any connection does:
//! `unsubscribed` for each subscription, then `disconnect`, exactly once.

use super::dispatch::Dispatcher;
use crate::outbox::{Event, Frames};
use crate::registry::Reservation;
use crate::sync::lock;
use crate::untrusted::untrusted;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// A fresh session id: 128 bits from the operating system's random source, as 32 hex digits.
/// It is a bearer credential for the session: whoever presents it gets the identity back.
pub(crate) fn new_sid() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: an empty sid is never parked, so nothing can be resumed with it.
        return String::new();
    }
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What of a sid may appear in logs: its first 6 hex digits (24 of its 128 bits), enough to
/// follow one session through a log, useless to resume it.
pub(crate) fn redact(sid: &str) -> &str {
    sid.get(..6).unwrap_or("")
}

/// What a parked session hands to the session that resumes it.
pub(crate) struct Parked<S> {
    pub(crate) dispatcher: Dispatcher<S>,
    pub(crate) frames: Frames,
    pub(crate) reservation: Reservation,
}

/// Where a parked session's task receives the one claim on it.
type Claim<S> = oneshot::Sender<Parked<S>>;

/// The node's parked sessions by sid. An entry is removed by whoever comes first: the claim
/// (a reconnect with the sid) or the session's own end (time up, server disconnect, shutdown);
/// so a sid resumes at most once.
pub(crate) struct ParkedSessions<S> {
    sessions: Mutex<HashMap<String, oneshot::Sender<Claim<S>>>>,
}

impl<S: Send + Sync + 'static> ParkedSessions<S> {
    pub(crate) fn new() -> Self {
        ParkedSessions {
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// How many sessions are parked now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Lists `sid` unless `max` sessions are parked already (or the sid is empty or taken).
    fn insert(&self, sid: &str, max: usize) -> Option<oneshot::Receiver<Claim<S>>> {
        let mut sessions = lock(&self.sessions);
        if sid.is_empty() || sessions.len() >= max || sessions.contains_key(sid) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        sessions.insert(sid.to_owned(), tx);
        Some(rx)
    }

    fn remove(&self, sid: &str) {
        lock(&self.sessions).remove(sid);
    }

    /// Takes the session parked under `sid`, once. `None` when there is none (unknown,
    /// expired, already resumed) or it ended while being claimed.
    pub(crate) async fn claim(&self, sid: &str) -> Option<Resumed<S>> {
        let parked = lock(&self.sessions).remove(sid)?;
        let (tx, rx) = oneshot::channel();
        parked.send(tx).ok()?;
        let parked = rx.await.ok()?;
        Some(Resumed(Some(parked)))
    }
}

/// A claimed session on its way to its new socket. Dropped unused (the upgrade failed), it is
/// closed as any connection is, callbacks and all.
pub(crate) struct Resumed<S: Send + Sync + 'static>(Option<Parked<S>>);

impl<S: Send + Sync + 'static> Resumed<S> {
    pub(crate) fn take(mut self) -> Parked<S> {
        self.0.take().expect("taken once")
    }
}

impl<S: Send + Sync + 'static> Drop for Resumed<S> {
    fn drop(&mut self) {
        if let Some(Parked {
            dispatcher,
            reservation,
            ..
        }) = self.0.take()
        {
            let tracker = dispatcher.shared.handle.registry().tracker().clone();
            tracker.spawn(async move {
                drop(reservation);
                dispatcher.close().await;
            });
        }
    }
}

/// Parks a session whose socket is gone, on the calling task, until it is claimed, its time is
/// up, or the server ends it; in the last two cases it is closed here.
pub(crate) async fn park<S: Send + Sync + 'static>(
    sid: String,
    mut dispatcher: Dispatcher<S>,
    mut frames: Frames,
    reservation: Reservation,
) {
    let shared = dispatcher.shared.clone();
    let config = &shared.config;
    let claims = if config.session_ttl.is_zero() || shared.handle.registry().is_shutting_down() {
        None
    } else {
        let claims = shared.parked.insert(&sid, config.max_parked_sessions);
        if claims.is_none() && !sid.is_empty() {
            tracing::warn!(
                limit = config.max_parked_sessions,
                "not keeping a session for resume: too many kept already"
            );
        }
        claims
    };
    let Some(mut claims) = claims else {
        drop(reservation);
        dispatcher.close().await;
        return;
    };
    let grace = config.presence_grace;
    for sub in dispatcher.subscriptions.values_mut() {
        sub.ctx.park_streams();
        // Presence does not wait for `session_ttl`: the member leaves after the grace, as
        // any disconnected one, unless the session is resumed first (AnyCable's presence TTL
        // also runs from the disconnect).
        if let Err(e) = sub.ctx.end_presence(Some(grace)).await {
            tracing::warn!(error = %untrusted(&e), "presence leave failed");
        }
    }
    tracing::debug!(sid = redact(&sid), ttl = ?config.session_ttl, kept = shared.parked.len(), "session kept for resume");
    let outbox = dispatcher.outbox().clone();
    let expiry = tokio::time::sleep(config.session_ttl);
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            biased;
            event = outbox.next_event() => match event {
                Event::Close(reason, _) => {
                    tracing::info!(%reason, "a kept session ended by the server");
                    break;
                }
                Event::Control(event) => dispatcher.control(event).await,
            },
            claim = &mut claims => {
                let Ok(reply) = claim else { break };
                for sub in dispatcher.subscriptions.values_mut() {
                    sub.ctx.unpark_streams();
                    if let Err(e) = sub.ctx.resume_presence().await {
                        tracing::warn!(error = %untrusted(&e), "presence join on resume failed");
                    }
                }
                // Queued for the old socket: what was kept the client's `history` replays.
                while frames.try_recv().is_some() {}
                tracing::debug!(sid = redact(&sid), "session resumed");
                let parked = Parked { dispatcher, frames, reservation };
                if let Err(Parked { dispatcher, reservation, .. }) = reply.send(parked) {
                    drop(reservation);
                    dispatcher.close().await;
                }
                return;
            }
            () = &mut expiry => {
                tracing::debug!(sid = redact(&sid), "a kept session expired unresumed");
                break;
            }
            // Nobody to read them: transmits, pings and unpositioned deliveries are dropped.
            _ = frames.recv() => {}
        }
    }
    shared.parked.remove(&sid);
    drop(reservation);
    dispatcher.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_128_random_bits_and_logged_cut() {
        let a = new_sid();
        let b = new_sid();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(redact(&a), &a[..6]);
        assert_eq!(redact("abc"), "");
    }

    #[tokio::test]
    async fn a_parked_list_is_bounded_and_claims_are_single_use() {
        let parked = ParkedSessions::<()>::new();
        let _one = parked.insert("one", 1).expect("room for one");
        assert!(parked.insert("two", 1).is_none(), "full");
        assert!(parked.insert("", 2).is_none(), "an empty sid is never kept");
        assert_eq!(parked.len(), 1);
        // The session's task is not answering (its receiver is alive but never replies):
        // dropping it makes the claim fail; either way the entry is gone after one claim.
        drop(_one);
        assert!(parked.claim("one").await.is_none());
        assert!(parked.claim("one").await.is_none());
        assert_eq!(parked.len(), 0);
    }
}
