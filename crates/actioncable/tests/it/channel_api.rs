//! The channel API beyond subscribe/perform/stream, through the socketless test harness:
//! timers, callbacks, rescue, stream filters, server-side unsubscribe, broadcasts that skip
//! their sender, connection-level frames, statistics and the beat hook.

use actioncable::testing::{TestCable, TestRequest};
use actioncable::{AnyAction, Callbacks, CommandInfo, Next};
use actioncable::{
    Cable, Channel, ChannelContext, ChannelError, ConnectRequest, Connection, ConnectionRef,
    Identity, NoParams, Reject, async_trait,
};
use cable_test_support::LogCapture;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts on a timer, answers actions, and can end its own subscription.
struct Ticker {
    ticks: u64,
}

#[async_trait]
impl Channel for Ticker {
    const CLASS: &'static str = "Ticker";
    type Params = Value;
    type Action = AnyAction;

    async fn subscribed(ctx: &mut ChannelContext, params: Value) -> Result<Self, ChannelError> {
        let every = params["every_ms"].as_u64().unwrap_or(1000);
        ctx.periodically("tick", Duration::from_millis(every));
        ctx.stream_from("ticks").await?;
        if params["leave_at_once"] == true {
            ctx.unsubscribe();
        }
        Ok(Ticker { ticks: 0 })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        match action.name.as_str() {
            "fail" => Err(ChannelError::msg("bad thing")),
            "panic" => panic!("action panicked"),
            "leave" => {
                ctx.unsubscribe();
                Ok(())
            }
            "stop_timer" => {
                ctx.stop_periodic("tick");
                Ok(())
            }
            "shout" => ctx
                .broadcast_except_self("ticks", &json!({ "shout": action.data["text"] }))
                .await
                .map_err(Into::into),
            "to_connection" => ctx
                .connection()
                .transmit(&json!({ "type": "note", "n": 1 })),
            _ => ctx.transmit(&json!({ "echo": action.name })),
        }
    }

    async fn periodic(
        &mut self,
        ctx: &mut ChannelContext,
        timer: &'static str,
    ) -> Result<(), ChannelError> {
        self.ticks += 1;
        ctx.transmit(&json!({ "timer": timer, "ticks": self.ticks }))
    }

    async fn rescue(
        &mut self,
        ctx: &mut ChannelContext,
        action: &str,
        error: ChannelError,
    ) -> Result<(), ChannelError> {
        if action == "fail" {
            return ctx.transmit(&json!({ "error": format!("{action} failed: {error}") }));
        }
        Err(error)
    }
}

fn ticker_cable() -> TestCable {
    TestCable::new(Cable::builder().channel::<Ticker>()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn periodic_timers_tick_on_the_paused_clock_and_stop_with_the_subscription() {
    let cable = ticker_cable();
    let conn = cable.connect_as(Identity::new("user", "1")).await;
    let sub = conn.subscribe::<Ticker>(json!({ "every_ms": 5000 })).await;
    assert!(sub.is_confirmed());
    assert_eq!(sub.timers(), vec!["tick"]);
    conn.advance(Duration::from_millis(4999)).await;
    assert!(sub.transmissions().is_empty(), "no tick before one period");
    conn.advance(Duration::from_millis(11_001)).await;
    assert_eq!(
        sub.transmissions(),
        vec![
            json!({ "timer": "tick", "ticks": 1 }),
            json!({ "timer": "tick", "ticks": 2 }),
            json!({ "timer": "tick", "ticks": 3 }),
        ]
    );
    sub.unsubscribe().await;
    conn.advance(Duration::from_secs(20)).await;
    assert_eq!(
        sub.transmissions().len(),
        3,
        "the timer stopped with the subscription"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_periodic_stops_one_timer() {
    let cable = ticker_cable();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let sub = conn.subscribe::<Ticker>(json!({ "every_ms": 100 })).await;
    conn.advance(Duration::from_millis(250)).await;
    assert_eq!(sub.transmissions().len(), 2);
    sub.perform("stop_timer", json!({})).await.unwrap();
    conn.advance(Duration::from_secs(1)).await;
    assert_eq!(sub.transmissions().len(), 2);
    assert!(sub.timers().is_empty());
}

#[tokio::test]
async fn rescue_turns_an_error_into_a_friendly_transmission_and_others_carry_on() {
    let cable = ticker_cable();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let a = conn.subscribe::<Ticker>(json!({ "n": 1 })).await;
    let b = conn.subscribe::<Ticker>(json!({ "n": 2 })).await;
    // Rescued: Ok to the caller, a friendly message to the client.
    a.perform("fail", json!({})).await.unwrap();
    assert_eq!(
        a.transmissions(),
        vec![json!({ "error": "fail failed: bad thing" })]
    );
    // Not rescued (a panic): an error, and nothing else changes.
    assert!(a.perform("panic", json!({})).await.is_err());
    a.perform("hello", json!({})).await.unwrap();
    b.perform("hi", json!({})).await.unwrap();
    assert_eq!(a.transmissions().last(), Some(&json!({ "echo": "hello" })));
    assert_eq!(b.transmissions(), vec![json!({ "echo": "hi" })]);
    assert!(a.is_confirmed() && b.is_confirmed());
}

#[tokio::test]
async fn the_server_can_end_a_confirmed_subscription() {
    let cable = ticker_cable();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let stays = conn.subscribe::<Ticker>(json!({ "n": 1 })).await;
    let leaves = conn.subscribe::<Ticker>(json!({ "n": 2 })).await;
    assert_eq!(cable.handle().stream_count(), 1);
    leaves.perform("leave", json!({})).await.unwrap();
    assert!(
        leaves.is_rejected(),
        "the client is told reject_subscription"
    );
    assert!(leaves.streams().is_empty());
    // The frames: confirm then reject for that identifier, nothing else.
    let answers: Vec<Value> = conn
        .frames()
        .into_iter()
        .filter(|f| f["identifier"] == leaves.identifier())
        .map(|f| f["type"].clone())
        .collect();
    assert_eq!(
        answers,
        vec![json!("confirm_subscription"), json!("reject_subscription")]
    );
    // Its stream still has the other subscriber.
    cable.handle().broadcast("ticks", &json!(1)).await.unwrap();
    assert_eq!(stays.transmissions(), vec![json!(1)]);
    assert_eq!(leaves.transmissions(), Vec::<Value>::new());
    // Asked from `subscribed`, the subscription is confirmed, then ended.
    let brief = conn
        .subscribe::<Ticker>(json!({ "leave_at_once": true }))
        .await;
    assert!(brief.is_rejected());
    // And from outside, through the handle.
    let info = &cable.handle().connections()[0];
    assert_eq!(info.subscriptions, vec![stays.identifier().to_owned()]);
    let handle_conn = cable.handle().connection(info.id).unwrap();
    assert!(handle_conn.unsubscribe(stays.identifier()));
    conn.settle().await;
    assert!(stays.is_rejected());
    assert_eq!(cable.handle().stream_count(), 0);
    assert!(cable.handle().connections()[0].subscriptions.is_empty());
}

#[tokio::test]
async fn broadcast_except_self_skips_only_the_sender() {
    let cable = ticker_cable();
    let alice = cable.connect_as(Identity::new("user", "alice")).await;
    let bob = cable.connect_as(Identity::new("user", "bob")).await;
    let a = alice.subscribe::<Ticker>(json!({})).await;
    let b = bob.subscribe::<Ticker>(json!({})).await;
    a.perform("shout", json!({ "text": "hey" })).await.unwrap();
    assert_eq!(b.transmissions(), vec![json!({ "shout": "hey" })]);
    assert!(a.transmissions().is_empty());
    // On the adapter it is an ordinary broadcast.
    assert_eq!(cable.broadcasts("ticks"), vec![json!({ "shout": "hey" })]);
    // The same message again, from the handle, reaches both: the exclusion was used up.
    cable
        .handle()
        .broadcast("ticks", &json!({ "shout": "hey" }))
        .await
        .unwrap();
    assert_eq!(a.transmissions().len(), 1);
    assert_eq!(b.transmissions().len(), 2);
    // And from the handle with an explicit exclusion.
    cable
        .handle()
        .broadcast_except("ticks", &json!(2), bob.id())
        .await
        .unwrap();
    assert_eq!(a.transmissions().last(), Some(&json!(2)));
    assert_eq!(b.transmissions().len(), 2);
}

/// Streams through a filter: only even numbers, doubled.
struct Evens;

#[async_trait]
impl Channel for Evens {
    const CLASS: &'static str = "Evens";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(ctx: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        ctx.stream_from_with("numbers", |msg| {
            let n = msg.as_i64()?;
            (n % 2 == 0).then(|| json!(n * 2))
        })
        .await?;
        ctx.stream_from("other").await?;
        Ok(Evens)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        match action.name.as_str() {
            "stop_numbers" => ctx.stop_stream_from("numbers").await,
            _ => ctx.stop_all_streams().await,
        }
        Ok(())
    }
}

#[tokio::test]
async fn stream_filters_transform_per_subscriber_and_streams_stop() {
    let cable = TestCable::new(Cable::builder().channel::<Evens>().channel::<Ticker>()).unwrap();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let evens = conn.subscribe::<Evens>(json!({})).await;
    let plain = conn.subscribe::<Ticker>(json!({})).await;
    let handle = cable.handle();
    for n in 1..=4 {
        handle.broadcast("numbers", &json!(n)).await.unwrap();
    }
    assert_eq!(evens.transmissions(), vec![json!(4), json!(8)]);
    assert!(plain.transmissions().is_empty(), "another stream");
    assert_eq!(evens.streams(), vec!["numbers", "other"]);
    evens.perform("stop_numbers", json!({})).await.unwrap();
    assert_eq!(evens.streams(), vec!["other"]);
    handle.broadcast("numbers", &json!(6)).await.unwrap();
    handle.broadcast("other", &json!("x")).await.unwrap();
    assert_eq!(evens.transmissions(), vec![json!(4), json!(8), json!("x")]);
    evens.perform("stop_all", json!({})).await.unwrap();
    assert!(evens.streams().is_empty());
}

/// Records every callback, in order.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<String>>>);

impl Recording {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[async_trait]
impl Callbacks<Recording> for Recording {
    async fn before_subscribe(
        &self,
        ctx: &mut ChannelContext<Recording>,
    ) -> Result<(), ChannelError> {
        self.push(format!("before_subscribe {}", ctx.channel_class()));
        if ctx.params().get("banned") == Some(&json!(true)) {
            return Err(ChannelError::reject_because("banned"));
        }
        Ok(())
    }
    async fn after_subscribe(
        &self,
        ctx: &mut ChannelContext<Recording>,
    ) -> Result<(), ChannelError> {
        self.push(format!("after_subscribe streams={}", ctx.streams().count()));
        Ok(())
    }
    async fn before_unsubscribe(
        &self,
        _: &mut ChannelContext<Recording>,
    ) -> Result<(), ChannelError> {
        self.push("before_unsubscribe");
        Ok(())
    }
    async fn after_unsubscribe(
        &self,
        ctx: &mut ChannelContext<Recording>,
    ) -> Result<(), ChannelError> {
        self.push(format!(
            "after_unsubscribe streams={}",
            ctx.streams().count()
        ));
        Ok(())
    }
    async fn around_command(
        &self,
        command: &CommandInfo<'_>,
        next: Next<'_>,
    ) -> Result<(), ChannelError> {
        if command.action == Some("forbidden") {
            self.push("refused");
            return Err(ChannelError::msg("not allowed"));
        }
        self.push(format!("around {:?} {:?} in", command.kind, command.action));
        let result = next.run().await;
        self.push(format!("around out ok={}", result.is_ok()));
        result
    }
}

/// Logs its own callbacks into the same record.
struct Logged {
    log: Recording,
}

#[async_trait]
impl Channel<Recording> for Logged {
    const CLASS: &'static str = "Logged";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(
        ctx: &mut ChannelContext<Recording>,
        _: NoParams,
    ) -> Result<Self, ChannelError> {
        ctx.state().push("subscribed");
        ctx.stream_from("logged").await?;
        Ok(Logged {
            log: ctx.state().clone(),
        })
    }

    async fn perform(
        &mut self,
        _: &mut ChannelContext<Recording>,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        self.log.push(format!("perform {}", action.name));
        Ok(())
    }

    async fn unsubscribed(
        &mut self,
        _: &mut ChannelContext<Recording>,
    ) -> Result<(), ChannelError> {
        self.log.push("unsubscribed");
        Ok(())
    }
}

#[tokio::test]
async fn callbacks_run_around_subscribe_commands_and_unsubscribe_in_order() {
    let log = Recording::default();
    let cable = TestCable::new(
        Cable::builder_with_state(log.clone())
            .channel::<Logged>()
            .callbacks(log.clone()),
    )
    .unwrap();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let sub = conn.subscribe::<Logged>(json!({})).await;
    assert!(sub.is_confirmed());
    sub.perform("go", json!({})).await.unwrap();
    sub.unsubscribe().await;
    assert_eq!(
        log.take(),
        [
            "around Subscribe None in",
            "before_subscribe Logged",
            "subscribed",
            "after_subscribe streams=1",
            "around out ok=true",
            "around Message Some(\"go\") in",
            "perform go",
            "around out ok=true",
            "around Unsubscribe None in",
            "before_unsubscribe",
            "unsubscribed",
            "after_unsubscribe streams=0",
            "around out ok=true",
        ]
    );
    // before_subscribe rejects: the channel is never created.
    let banned = conn.subscribe::<Logged>(json!({ "banned": true })).await;
    assert!(banned.is_rejected());
    assert_eq!(
        log.take(),
        [
            "around Subscribe None in",
            "before_subscribe Logged",
            "around out ok=false",
        ]
    );
    // around_command refuses a command: it never reaches the channel.
    let sub = conn.subscribe::<Logged>(json!({ "n": 2 })).await;
    log.take();
    assert!(sub.perform("forbidden", json!({})).await.is_err());
    assert_eq!(log.take(), ["refused"]);
    assert!(sub.is_confirmed());
    // Disconnecting runs the unsubscribe callbacks too.
    conn.disconnect().await;
    assert_eq!(
        log.take(),
        [
            "before_unsubscribe",
            "unsubscribed",
            "after_unsubscribe streams=0"
        ]
    );
    assert_eq!(cable.handle().connection_count(), 0);
}

/// Identifies by a cookie, a query param or a header; counts beats.
#[derive(Default)]
struct Auth {
    beats: Arc<AtomicUsize>,
}

#[async_trait]
impl Connection for Auth {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req
            .cookie("user")
            .map(str::to_owned)
            .or_else(|| req.query("token"))
            .or_else(|| req.header("x-user").map(str::to_owned))
            .ok_or(Reject::Unauthorized)?;
        Ok(Identity::new("current_user", user))
    }

    fn beat(&self, connection: &ConnectionRef) {
        self.beats.fetch_add(1, Ordering::Relaxed);
        let _ = connection.transmit(&json!({ "type": "beat" }));
    }
}

#[tokio::test(start_paused = true)]
async fn connections_authenticate_from_the_request_and_get_beats_and_frames() {
    let beats = Arc::new(AtomicUsize::new(0));
    let cable = TestCable::new(
        Cable::builder()
            .connection(Auth {
                beats: beats.clone(),
            })
            .channel::<Ticker>(),
    )
    .unwrap();
    assert!(cable.connect(TestRequest::new()).await.is_err());
    let by_cookie = cable
        .connect(TestRequest::new().cookie("user", "ann"))
        .await
        .unwrap();
    let by_query = cable
        .connect(TestRequest::new().query("token", "b&b"))
        .await
        .unwrap();
    let by_header = cable
        .connect(TestRequest::new().header("x-user", "cy"))
        .await
        .unwrap();
    assert_eq!(by_cookie.identity().get("current_user"), Some("ann"));
    assert_eq!(by_query.identity().get("current_user"), Some("b&b"));
    assert_eq!(by_header.identity().get("current_user"), Some("cy"));

    // Statistics.
    let sub = by_cookie.subscribe::<Ticker>(json!({})).await;
    let stats = cable.handle().connections();
    assert_eq!(stats.len(), 3);
    let ann = stats.iter().find(|c| c.id == by_cookie.id()).unwrap();
    assert_eq!(ann.identity.get("current_user"), Some("ann"));
    assert_eq!(ann.subscriptions, vec![sub.identifier().to_owned()]);

    // Connection-level transmit, from a channel and from the beat hook.
    sub.perform("to_connection", json!({})).await.unwrap();
    assert_eq!(
        by_cookie.connection_transmissions(),
        vec![json!({ "type": "note", "n": 1 })]
    );
    tokio::time::advance(Duration::from_millis(3001)).await;
    tokio::task::yield_now().await;
    assert_eq!(beats.load(Ordering::Relaxed), 3, "one beat per connection");
    assert_eq!(
        by_query.connection_transmissions(),
        vec![json!({ "type": "beat" })]
    );
    assert!(
        by_query
            .frames()
            .iter()
            .any(|f| f["type"] == "ping" && f["message"].is_u64()),
        "the beat's ping came first"
    );
}

#[tokio::test]
async fn a_subscription_repeated_or_unknown_behaves_as_on_the_wire() {
    let cable = ticker_cable();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let sub = conn.subscribe::<Ticker>(json!({})).await;
    let again = conn.subscribe::<Ticker>(json!({})).await;
    assert!(sub.is_confirmed() && again.is_confirmed());
    let confirms = conn
        .frames()
        .iter()
        .filter(|f| f["type"] == "confirm_subscription")
        .count();
    assert_eq!(confirms, 1, "a duplicate subscribe is ignored");
    let unknown = conn.subscribe_identifier(r#"{"channel":"Nope"}"#).await;
    assert!(unknown.is_rejected());
    conn.send_frame("not json").await;
    conn.send_frame(r#"{"command":"message","identifier":"{}","data":"{}"}"#)
        .await;
    assert!(sub.is_confirmed());
}

/// Typed actions for the invalid-data tests: `points` must be a number.
#[derive(serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum ScoreAction {
    Score { points: u32 },
}

/// No `rescue` of its own: the default logs and drops data that fits no action.
struct Strict;

#[async_trait]
impl Channel for Strict {
    const CLASS: &'static str = "Strict";
    type Params = NoParams;
    type Action = ScoreAction;

    async fn subscribed(_: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        Ok(Strict)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        a: ScoreAction,
    ) -> Result<(), ChannelError> {
        let ScoreAction::Score { points } = a;
        ctx.transmit(&json!({ "scored": points }))
    }
}

/// Answers data that fits no action with what was wrong, as the guide shows.
struct Forgiving;

#[async_trait]
impl Channel for Forgiving {
    const CLASS: &'static str = "Forgiving";
    type Params = NoParams;
    type Action = ScoreAction;

    async fn subscribed(_: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        Ok(Forgiving)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        a: ScoreAction,
    ) -> Result<(), ChannelError> {
        let ScoreAction::Score { points } = a;
        ctx.transmit(&json!({ "scored": points }))
    }

    async fn rescue(
        &mut self,
        ctx: &mut ChannelContext,
        action: &str,
        error: ChannelError,
    ) -> Result<(), ChannelError> {
        match error.invalid_action() {
            Some(invalid) => {
                assert_eq!(invalid.action(), action);
                ctx.transmit(&json!({ "error": invalid.reason(), "action": action }))
            }
            None => Err(error),
        }
    }
}

fn score_cable() -> TestCable {
    TestCable::new(Cable::builder().channel::<Strict>().channel::<Forgiving>()).unwrap()
}

#[tokio::test]
async fn data_that_fits_no_action_reaches_rescue_with_serdes_reason() {
    let cable = score_cable();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let sub = conn.subscribe::<Forgiving>(json!({})).await;

    // A form that sends "3" for a number.
    sub.perform("score", json!({ "points": "3" }))
        .await
        .unwrap();
    // An action the channel does not have.
    sub.perform("shout", json!({})).await.unwrap();
    // A number where the action's name should be, straight from a hand-made frame.
    sub.send(&json!({ "action": 7 })).await.unwrap();
    assert_eq!(
        sub.transmissions(),
        vec![
            json!({ "error": "invalid type: string \"3\", expected u32", "action": "score" }),
            json!({ "error": "unknown variant `shout`, expected `score`", "action": "shout" }),
            json!({ "error": "`action` is not a string", "action": "7" }),
        ]
    );
    // The subscription carries on.
    sub.perform("score", json!({ "points": 3 })).await.unwrap();
    assert_eq!(sub.transmissions().last(), Some(&json!({ "scored": 3 })));
}

#[tokio::test]
async fn data_that_fits_no_action_is_a_warning_when_nothing_rescues_it() {
    let logs = LogCapture::new("actioncable=warn");
    let _entered = logs.enter();
    let cable = score_cable();
    let conn = cable.connect_as(Identity::anonymous()).await;
    let sub = conn.subscribe::<Strict>(json!({})).await;

    let error = sub
        .perform("score", json!({ "points": "lots\nERROR forged line" }))
        .await
        .unwrap_err();
    let invalid = error.invalid_action().expect("an InvalidAction");
    assert_eq!(invalid.action(), "score");
    assert!(
        invalid.reason().starts_with("invalid type: string"),
        "{invalid}"
    );
    assert!(sub.transmissions().is_empty(), "the client is told nothing");

    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("Unable to process Strict#score: invalid action data"))
        .unwrap_or_else(|| panic!("no warning in:\n{text}"));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains(r#"reason=invalid type: string "lots\nERROR forged line", expected u32"#),
        "{line}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("ERROR forged line")),
        "a client's newline starts no log line of its own:\n{text}"
    );
    // Still subscribed, still working.
    sub.perform("score", json!({ "points": 2 })).await.unwrap();
    assert_eq!(sub.transmissions(), vec![json!({ "scored": 2 })]);
}
