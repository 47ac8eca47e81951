//! Periodic timers under the test harness's paused clock: stopping takes effect at once,
//! `advance` runs every tick of a short timer, and every connection's timers run whichever
//! connection moves the clock. (Found while writing the demo's channel tests.)

use actioncable::testing::TestCable;
use actioncable::{Cable, Channel, ChannelContext, ChannelError, Identity, async_trait};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Deserialize)]
struct Every {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum CounterAction {
    /// Stops the timer and transmits the timers `ctx.timers()` still lists.
    Stop,
    /// Transmits how many ticks ran so far.
    Count,
}

/// Counts the ticks of one timer.
struct Counter {
    ticks: u64,
}

#[async_trait]
impl Channel for Counter {
    const CLASS: &'static str = "Counter";
    type Params = Every;
    type Action = CounterAction;

    async fn subscribed(ctx: &mut ChannelContext, p: Every) -> Result<Self, ChannelError> {
        ctx.periodically("count", Duration::from_millis(p.ms));
        Ok(Counter { ticks: 0 })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: CounterAction,
    ) -> Result<(), ChannelError> {
        match action {
            CounterAction::Stop => {
                ctx.stop_periodic("count");
                let running: Vec<&str> = ctx.timers().collect();
                ctx.transmit(&json!({ "running": running }))
            }
            CounterAction::Count => ctx.transmit(&json!({ "ticks": self.ticks })),
        }
    }

    async fn periodic(
        &mut self,
        _: &mut ChannelContext,
        _: &'static str,
    ) -> Result<(), ChannelError> {
        self.ticks += 1;
        Ok(())
    }
}

fn last(messages: Vec<Value>) -> Value {
    messages.last().cloned().unwrap_or(Value::Null)
}

/// `ChannelContext::timers` and the tick dispatch decide "stopped" by `AbortHandle::is_finished`,
/// which turns true only once the runtime has polled the aborted task. Until then a stopped timer
/// is still listed, and a tick it queued just before `stop_periodic` still runs.
#[tokio::test(start_paused = true)]
async fn stop_periodic_takes_effect_at_once() {
    let cable = TestCable::new(Cable::builder().channel::<Counter>()).unwrap();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let sub = conn.subscribe::<Counter>(json!({ "ms": 5000 })).await;

    sub.perform("stop", json!({})).await.unwrap();

    assert_eq!(last(sub.transmissions()), json!({ "running": [] }));
}

/// `TestConnection::advance` steps by `duration / 1000` (at least 1 ms). A timer whose period is
/// shorter than one step comes due more than once per step, and `MissedTickBehavior::Skip` runs
/// it once: 10 s with a 5 ms timer gives 1000 ticks, not 2000.
#[tokio::test(start_paused = true)]
async fn advance_runs_every_tick_of_a_short_timer() {
    let cable = TestCable::new(Cable::builder().channel::<Counter>()).unwrap();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let sub = conn.subscribe::<Counter>(json!({ "ms": 5 })).await;

    conn.advance(Duration::from_secs(10)).await;
    sub.perform("count", json!({})).await.unwrap();

    assert_eq!(last(sub.transmissions()), json!({ "ticks": 2000 }));
}

/// The clock is the runtime's, shared by every connection of the cable, but `advance` settles
/// only its own connection. Another connection's first due tick waits in its queue and marks
/// the timer busy, so every later tick is skipped: 20 s of a 5 s timer gives it 1 tick, not 4.
#[tokio::test(start_paused = true)]
async fn advance_runs_the_timers_of_every_connection() {
    let cable = TestCable::new(Cable::builder().channel::<Counter>()).unwrap();
    let alice = cable
        .connect_as(Identity::new("current_user", "alice"))
        .await;
    let bob = cable.connect_as(Identity::new("current_user", "bob")).await;
    let alice_counter = alice.subscribe::<Counter>(json!({ "ms": 5000 })).await;
    let bob_counter = bob.subscribe::<Counter>(json!({ "ms": 5000 })).await;

    alice.advance(Duration::from_secs(20)).await;
    bob.settle().await;
    alice_counter.perform("count", json!({})).await.unwrap();
    bob_counter.perform("count", json!({})).await.unwrap();

    assert_eq!(last(alice_counter.transmissions()), json!({ "ticks": 4 }));
    assert_eq!(last(bob_counter.transmissions()), json!({ "ticks": 4 }));
}
