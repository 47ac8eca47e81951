//! A connection's mailbox: everything that must reach its session task from elsewhere.
//!
//! Three things reach a session from other tasks, and all three ride in one [`Outbox`]:
//! - **frames** for the client (confirmations, transmits, stream deliveries, pings), in a bounded
//!   queue that the session drains in order and writes in batches;
//! - **control events** ([`Control`]: timer ticks, server-side unsubscribes), work that needs the
//!   subscription's channel value and therefore runs on the session task, in order with the
//!   client's commands;
//! - a **close request** with its reason (too slow, shutdown, remote disconnect); the first
//!   reason wins.
//!
//! Nothing that pushes into an outbox ever waits: [`Outbox::push`] is synchronous, and a full
//! frame queue — too many frames, or too many bytes — means the client reads too slowly, so the
//! connection is asked to close (reason `too_slow`) instead of growing memory or stalling the
//! broadcaster.
//!
//! A frame of a broadcast whose delivery latency is sampled (see `metrics.rs`) is queued with
//! its [`Trace`]: the queue notes the frame's place, and the session, having written it, is
//! handed the trace. Nothing else about a frame changes, and a queue that never carried a
//! trace holds none of this.
//!
//! The queues are plain `Mutex<VecDeque>`s, not tokio channels: a channel allocates its first
//! block of slots up front (about 1.5 KB), which every idle connection would pay. The frame
//! queue has exactly one reader ([`Frames`], taken by `&mut`), so it wakes that reader through
//! an `AtomicWaker` (no lock, no list of waiters) rather than a `Notify`: every command's reply
//! and every delivery goes through it. This module sits below everything that talks to a
//! connection (the fan-out, the connection handle, channels), so it knows nothing about any of
//! them.

use crate::metrics::Trace;
use crate::protocol::DisconnectReason;
use crate::sync::lock;
use axum::extract::ws::Utf8Bytes;
use futures_util::task::AtomicWaker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use tokio::sync::Notify;

/// Work for a session that does not come from its client: it runs in order with the client's
/// commands, on the session's task, because it needs the subscription's channel value.
#[derive(Debug)]
pub(crate) enum Control {
    /// Timer `timer` of subscription `subscription` (`identifier`) is due.
    Tick {
        identifier: Arc<str>,
        subscription: u64,
        timer: usize,
    },
    /// End a subscription from the server side (`None`: whichever has this identifier).
    Unsubscribe {
        identifier: Arc<str>,
        subscription: Option<u64>,
    },
}

/// What [`Outbox::next_event`] hands the session.
#[derive(Debug)]
pub(crate) enum Event {
    /// Send `disconnect` with this reason and close.
    Close(DisconnectReason, bool),
    Control(Control),
}

/// The sending side of a connection's mailbox; cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbox(Arc<Mailbox>);

struct Mailbox {
    frames: Mutex<Queue>,
    /// The task of the one reader of `frames` ([`Frames`]), when it waits.
    frames_ready: AtomicWaker,
    /// Most frames queued at once.
    capacity: usize,
    /// Most bytes queued at once (one frame larger than this still fits an empty queue).
    byte_capacity: usize,
    /// The close request: set once, the first reason wins.
    close: OnceLock<(DisconnectReason, bool)>,
    dropped: AtomicU64,
    control: Mutex<VecDeque<Control>>,
    /// Wakes whoever waits for a close request or a control event. One `Notify` for both, as
    /// a session waits for both at once: one registration per wait instead of two. Waking
    /// uses `notify_waiters`, so a task waiting for one kind is never woken in place of a
    /// task waiting for the other (see [`Outbox::next_event`]).
    events: Notify,
    /// The session has finished: frames and control events are refused.
    ended: AtomicBool,
}

/// The frames waiting for the client, and their total size.
#[derive(Default)]
struct Queue {
    frames: FrameQueue,
    bytes: usize,
    /// Frames taken from the queue so far: a frame's number is this plus its index.
    taken: u64,
    /// Traced frames waiting, by number, oldest first. Boxed on purpose: 8 bytes in every
    /// mailbox instead of a 32-byte empty `VecDeque`, as most queues never hold one.
    #[allow(clippy::box_collection)]
    traces: Option<Box<VecDeque<(u64, Trace)>>>,
}

/// The session's end of the frame queue: the frames to write, oldest first.
pub(crate) struct Frames {
    mailbox: Arc<Mailbox>,
    /// The traces of frames taken and not yet reported written.
    taken: Vec<Trace>,
}

/// Slots a drained queue keeps (behind its inline first slot).
const KEEP_CAPACITY: usize = 16;

/// A FIFO of frames whose first frame is held inline: most connections have one frame
/// waiting at a time (a ping, one broadcast), which then costs no allocation, and an idle
/// connection holds no buffer at all. Frames behind the first go to a `VecDeque`.
#[derive(Default)]
struct FrameQueue {
    head: Option<Utf8Bytes>,
    rest: VecDeque<Utf8Bytes>,
}

impl FrameQueue {
    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    fn push_back(&mut self, frame: Utf8Bytes) {
        if self.head.is_none() {
            self.head = Some(frame);
        } else {
            self.rest.push_back(frame);
        }
    }

    fn pop_front(&mut self) -> Option<Utf8Bytes> {
        let frame = self.head.take()?;
        self.head = self.rest.pop_front();
        // A queue that grew in a large burst gives its memory back once drained; a small one
        // keeps its few slots, so a busy stream does not allocate for every burst.
        if self.head.is_none() && self.rest.capacity() > KEEP_CAPACITY {
            self.rest = VecDeque::new();
        }
        Some(frame)
    }
}

impl Outbox {
    /// A mailbox whose frame queue holds at most `capacity` frames and `byte_capacity` bytes.
    pub(crate) fn new(capacity: usize, byte_capacity: usize) -> (Outbox, Frames) {
        let mailbox = Arc::new(Mailbox {
            frames: Mutex::new(Queue::default()),
            frames_ready: AtomicWaker::new(),
            capacity: capacity.max(1),
            byte_capacity,
            close: OnceLock::new(),
            dropped: AtomicU64::new(0),
            control: Mutex::new(VecDeque::new()),
            events: Notify::new(),
            ended: AtomicBool::new(false),
        });
        (
            Outbox(mailbox.clone()),
            Frames {
                mailbox,
                taken: Vec::new(),
            },
        )
    }

    /// Queues a frame without waiting; `false` when it was not queued. A full queue (in frames
    /// or in bytes) means the client reads too slowly: the session is asked to close (reason
    /// `too_slow`) rather than letting memory grow or making the broadcaster wait.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> bool {
        self.push_traced(frame, None)
    }

    /// Queues a frame as [`push`](Self::push) does; with a `trace`, the session is handed it
    /// once the frame is written.
    pub(crate) fn push_traced(&self, frame: Utf8Bytes, trace: Option<Trace>) -> bool {
        let mailbox = &self.0;
        if mailbox.ended.load(Ordering::Acquire) {
            return false;
        }
        {
            let mut queue = lock(&mailbox.frames);
            let size = frame.len();
            let over_bytes = !queue.frames.is_empty() && queue.bytes + size > mailbox.byte_capacity;
            if queue.frames.len() >= mailbox.capacity || over_bytes {
                drop(queue);
                mailbox.dropped.fetch_add(1, Ordering::Relaxed);
                self.close(DisconnectReason::TooSlow, true);
                return false;
            }
            queue.bytes += size;
            if let Some(trace) = trace {
                let number = queue.taken + queue.frames.len() as u64;
                queue
                    .traces
                    .get_or_insert_default()
                    .push_back((number, trace));
            }
            queue.frames.push_back(frame);
        }
        mailbox.frames_ready.wake();
        true
    }

    /// Asks the session to send `disconnect` with `reason` and close. The first reason wins.
    pub(crate) fn close(&self, reason: DisconnectReason, reconnect: bool) {
        // The first reason wins: a later one is not an error.
        let _ = self.0.close.set((reason, reconnect));
        self.0.events.notify_waiters();
    }

    /// Resolves once [`close`](Self::close) was called, with the reason.
    pub(crate) async fn closed(&self) -> (DisconnectReason, bool) {
        loop {
            // Made before looking: `notify_waiters` reaches a `Notified` from its creation.
            let notified = self.0.events.notified();
            if let Some(&request) = self.0.close.get() {
                return request;
            }
            notified.await;
        }
    }

    /// The next thing for the session to act on besides its client: the close request once
    /// made (it comes first, and again at every call), else the next control event.
    pub(crate) async fn next_event(&self) -> Event {
        loop {
            let notified = self.0.events.notified();
            if let Some(&(reason, reconnect)) = self.0.close.get() {
                return Event::Close(reason, reconnect);
            }
            if let Some(event) = self.try_control() {
                return Event::Control(event);
            }
            notified.await;
        }
    }

    /// Queues a control event; `false` once the session has finished.
    pub(crate) fn push_control(&self, event: Control) -> bool {
        if self.0.ended.load(Ordering::Acquire) {
            return false;
        }
        lock(&self.0.control).push_back(event);
        self.0.events.notify_waiters();
        true
    }

    /// The next control event, waiting for one (the test harness's driver runs them).
    #[cfg(feature = "testing")]
    pub(crate) async fn next_control(&self) -> Control {
        loop {
            let notified = self.0.events.notified();
            if let Some(event) = self.try_control() {
                return event;
            }
            notified.await;
        }
    }

    /// The next control event, if one is queued.
    pub(crate) fn try_control(&self) -> Option<Control> {
        lock(&self.0.control).pop_front()
    }

    /// The session has finished: refuse and forget frames and control events from now on.
    pub(crate) fn end(&self) {
        self.0.ended.store(true, Ordering::Release);
        lock(&self.0.control).clear();
        *lock(&self.0.frames) = Queue::default();
    }

    /// Frames waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.0.frames).frames.len()
    }

    /// Frames refused because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl Frames {
    /// The next frame, waiting for one.
    pub(crate) async fn recv(&mut self) -> Utf8Bytes {
        std::future::poll_fn(|cx| {
            // Registered before looking, so a frame pushed in between still wakes this task.
            self.mailbox.frames_ready.register(cx.waker());
            match self.try_recv() {
                Some(frame) => Poll::Ready(frame),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// The next frame, if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Utf8Bytes> {
        let mut queue = lock(&self.mailbox.frames);
        let frame = queue.frames.pop_front()?;
        queue.bytes -= frame.len();
        let number = queue.taken;
        queue.taken += 1;
        if let Some(traces) = &mut queue.traces
            && traces.front().is_some_and(|&(n, _)| n == number)
        {
            if let Some((_, trace)) = traces.pop_front() {
                self.taken.push(trace);
            }
            if traces.is_empty() {
                queue.traces = None;
            }
        }
        Some(frame)
    }

    /// The traces of the frames taken since the last call: call it once they are written.
    pub(crate) fn written_traces(&mut self) -> std::vec::Drain<'_, Trace> {
        self.taken.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLENTY: usize = 1 << 20;

    #[tokio::test]
    async fn a_full_queue_refuses_the_frame_and_asks_to_close() {
        let (outbox, mut frames) = Outbox::new(1, PLENTY);
        assert!(outbox.push(Utf8Bytes::from_static("1")));
        assert!(!outbox.push(Utf8Bytes::from_static("2")));
        assert_eq!(outbox.closed().await, (DisconnectReason::TooSlow, true));
        assert_eq!(outbox.dropped(), 1);
        assert_eq!(frames.recv().await.as_str(), "1");
        assert!(frames.try_recv().is_none());
    }

    #[tokio::test]
    async fn the_first_close_reason_wins() {
        let (outbox, _frames) = Outbox::new(4, PLENTY);
        outbox.close(DisconnectReason::ServerRestart, true);
        outbox.close(DisconnectReason::Remote, false);
        assert_eq!(
            outbox.closed().await,
            (DisconnectReason::ServerRestart, true)
        );
    }

    #[tokio::test]
    async fn the_byte_budget_bounds_the_queue_too() {
        let (outbox, mut frames) = Outbox::new(1024, 10);
        // One frame larger than the whole budget still fits an empty queue …
        assert!(outbox.push(Utf8Bytes::from("x".repeat(25))));
        assert!(
            !outbox.push(Utf8Bytes::from_static("y")),
            "… but nothing after it"
        );
        assert_eq!(outbox.closed().await, (DisconnectReason::TooSlow, true));

        let (outbox, mut small) = Outbox::new(1024, 10);
        assert!(outbox.push(Utf8Bytes::from_static("12345")));
        assert!(outbox.push(Utf8Bytes::from_static("12345")));
        assert!(!outbox.push(Utf8Bytes::from_static("1")), "11 bytes > 10");
        // Written frames give their bytes back.
        assert_eq!(small.try_recv().unwrap().as_str(), "12345");
        assert_eq!(lock(&outbox.0.frames).bytes, 5);
        assert_eq!(frames.try_recv().unwrap().len(), 25);
    }

    #[test]
    fn a_trace_comes_back_with_its_own_frame() {
        let (outbox, mut frames) = Outbox::new(8, PLENTY);
        assert!(outbox.push(Utf8Bytes::from_static("a")));
        assert_eq!(frames.try_recv().unwrap().as_str(), "a");
        assert!(outbox.push(Utf8Bytes::from_static("b")));
        assert!(outbox.push_traced(Utf8Bytes::from_static("c"), Some(Trace(7))));
        assert!(outbox.push(Utf8Bytes::from_static("d")));
        assert_eq!(frames.try_recv().unwrap().as_str(), "b");
        assert_eq!(frames.written_traces().count(), 0);
        assert_eq!(frames.try_recv().unwrap().as_str(), "c");
        assert_eq!(frames.written_traces().collect::<Vec<_>>(), [Trace(7)]);
        assert_eq!(frames.try_recv().unwrap().as_str(), "d");
        assert_eq!(frames.written_traces().count(), 0);
        assert!(
            lock(&outbox.0.frames).traces.is_none(),
            "nothing kept once all are taken"
        );
    }

    fn tick() -> Control {
        Control::Unsubscribe {
            identifier: Arc::from("i"),
            subscription: None,
        }
    }

    #[tokio::test]
    async fn the_close_request_comes_before_control_events_and_stays() {
        let (outbox, _frames) = Outbox::new(4, PLENTY);
        assert!(outbox.push_control(tick()));
        assert!(matches!(outbox.next_event().await, Event::Control(_)));
        assert!(outbox.push_control(tick()));
        outbox.close(DisconnectReason::ServerRestart, true);
        for _ in 0..2 {
            assert!(matches!(
                outbox.next_event().await,
                Event::Close(DisconnectReason::ServerRestart, true)
            ));
        }
    }

    /// One `Notify` serves both kinds of event: a task waiting for one kind must not be woken
    /// in place of a task waiting for the other, whichever came first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_in_different_tasks_each_get_their_event() {
        let (outbox, mut frames) = Outbox::new(4, PLENTY);
        let closed = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.closed().await }
        });
        let event = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.next_event().await }
        });
        let frame = tokio::spawn(async move { frames.recv().await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(outbox.push_control(tick()));
        let within = std::time::Duration::from_secs(5);
        let got = tokio::time::timeout(within, event)
            .await
            .expect("woken")
            .unwrap();
        assert!(matches!(got, Event::Control(_)));
        assert!(!closed.is_finished(), "a control event is not a close");
        assert!(outbox.push(Utf8Bytes::from_static("f")));
        let got = tokio::time::timeout(within, frame)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got.as_str(), "f");
        outbox.close(DisconnectReason::Remote, false);
        let got = tokio::time::timeout(within, closed)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, (DisconnectReason::Remote, false));
    }

    #[test]
    fn an_ended_mailbox_refuses_everything() {
        let (outbox, mut frames) = Outbox::new(4, PLENTY);
        assert!(outbox.push(Utf8Bytes::from_static("queued")));
        outbox.end();
        assert!(frames.try_recv().is_none(), "queued frames are forgotten");
        assert!(!outbox.push(Utf8Bytes::from_static("late")));
        let tick = Control::Unsubscribe {
            identifier: Arc::from("i"),
            subscription: None,
        };
        assert!(!outbox.push_control(tick));
        assert!(outbox.try_control().is_none());
    }
}
