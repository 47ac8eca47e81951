//! Type erasure for registered channels: the dispatcher holds `Box<dyn ErasedChannel<S>>` and
//! never sees the user's types. Only channels registered on the builder can be instantiated;
//! a client cannot name anything else.

use super::{AnyAction, Channel, ChannelContext};
use crate::error::{ChannelError, InvalidAction};
use async_trait::async_trait;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::marker::PhantomData;

/// Why a `message` command did nothing.
pub(crate) struct PerformError {
    pub(crate) action: String,
    pub(crate) error: ChannelError,
}

#[async_trait]
pub(crate) trait ErasedFactory<S>: Send + Sync {
    async fn subscribe(
        &self,
        ctx: &mut ChannelContext<S>,
    ) -> Result<Box<dyn ErasedChannel<S>>, ChannelError>;
}

#[async_trait]
pub(crate) trait ErasedChannel<S>: Send {
    async fn message(
        &mut self,
        ctx: &mut ChannelContext<S>,
        data: &str,
    ) -> Result<(), PerformError>;
    async fn unsubscribed(&mut self, ctx: &mut ChannelContext<S>) -> Result<(), ChannelError>;
    async fn periodic(
        &mut self,
        ctx: &mut ChannelContext<S>,
        timer: &'static str,
    ) -> Result<(), PerformError>;
}

pub(crate) struct Factory<C>(PhantomData<fn() -> C>);

impl<C> Factory<C> {
    pub(crate) fn new() -> Factory<C> {
        Factory(PhantomData)
    }
}

struct Erased<C>(C);

#[async_trait]
impl<S, C> ErasedFactory<S> for Factory<C>
where
    S: Send + Sync + 'static,
    C: Channel<S>,
{
    async fn subscribe(
        &self,
        ctx: &mut ChannelContext<S>,
    ) -> Result<Box<dyn ErasedChannel<S>>, ChannelError> {
        let params = Value::Object(ctx.params().clone());
        let params = C::Params::deserialize(&params)
            .map_err(|e| ChannelError::reject_because(format_args!("invalid params: {e}")))?;
        let channel = C::subscribed(ctx, params).await?;
        Ok(Box::new(Erased(channel)))
    }
}

#[async_trait]
impl<S, C> ErasedChannel<S> for Erased<C>
where
    S: Send + Sync + 'static,
    C: Channel<S>,
{
    async fn message(
        &mut self,
        ctx: &mut ChannelContext<S>,
        data: &str,
    ) -> Result<(), PerformError> {
        // A typed action is read straight from the text when the data is what a well-behaved
        // client sends; anything else takes the general path, which then decides (and words
        // the error) exactly as it always has.
        let (name, result) = match typed_action::<C::Action>(data) {
            Some((name, action)) => (name, self.0.perform(ctx, action).await),
            None => match parse_message(data) {
                Err(invalid) => {
                    let name = invalid.action().to_owned();
                    (name, Err(ChannelError::new(invalid)))
                }
                Ok((None, data)) => ("receive".to_owned(), self.0.receive(ctx, data).await),
                Ok((Some(name), data)) => match action_from::<C::Action>(&name, data) {
                    Ok(action) => {
                        let result = self.0.perform(ctx, action).await;
                        (name, result)
                    }
                    Err(e) => {
                        let invalid = InvalidAction::new(name.clone(), e);
                        (name, Err(ChannelError::new(invalid)))
                    }
                },
            },
        };
        let fail = |action: &str, error: ChannelError| PerformError {
            action: action.to_owned(),
            error,
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) => self
                .0
                .rescue(ctx, &name, error)
                .await
                .map_err(|e| fail(&name, e)),
        }
    }

    async fn unsubscribed(&mut self, ctx: &mut ChannelContext<S>) -> Result<(), ChannelError> {
        self.0.unsubscribed(ctx).await
    }

    async fn periodic(
        &mut self,
        ctx: &mut ChannelContext<S>,
        timer: &'static str,
    ) -> Result<(), PerformError> {
        match self.0.periodic(ctx, timer).await {
            Ok(()) => Ok(()),
            Err(error) => self
                .0
                .rescue(ctx, timer, error)
                .await
                .map_err(|error| PerformError {
                    action: timer.to_owned(),
                    error,
                }),
        }
    }
}

/// The channel's action from a message's parsed data, whose `action` is `name`. An
/// [`AnyAction`] takes the parsed object as it is; deserializing it from the `Value` would copy
/// every key and string of it (a fifth of an `echo`'s dispatch). Any other type is
/// deserialized from the `Value`, exactly as before.
fn action_from<A: DeserializeOwned + 'static>(
    name: &str,
    data: Value,
) -> Result<A, serde_json::Error> {
    if TypeId::of::<A>() == TypeId::of::<AnyAction>() {
        let Value::Object(data) = data else {
            return A::deserialize(&data);
        };
        let mut any = Some(AnyAction {
            name: name.to_owned(),
            data,
        });
        // Through a reference: no box to hand the value over in.
        return match (&mut any as &mut dyn Any).downcast_mut::<Option<A>>() {
            Some(slot) => slot
                .take()
                .ok_or_else(|| serde::de::Error::custom("an AnyAction taken twice")),
            None => Err(serde::de::Error::custom("an AnyAction that is not one")),
        };
    }
    A::deserialize(&data)
}

/// The action named in `data` and its typed value, read from the text without building a
/// `Value`: `None` unless `data` is an object whose one `action` is a non-empty string and
/// which deserializes as `A` (never for [`AnyAction`], which is the parsed object itself).
///
/// This is an optimisation only: `None` sends the message down the general path
/// ([`parse_message`], then [`action_from`]), which accepts and refuses exactly what it did
/// before this existed, with the same errors. Where this returns `Some`, that path would have
/// produced the same action: deserializing from the text and from its parsed `Value` differ
/// only where the text path refuses (a key given twice, say), and then this defers.
fn typed_action<A: DeserializeOwned + 'static>(data: &str) -> Option<(String, A)> {
    if TypeId::of::<A>() == TypeId::of::<AnyAction>() {
        return None;
    }
    let Ok(Head::Action(name)) = serde_json::from_str::<Head<'_>>(data) else {
        return None;
    };
    let action = serde_json::from_str::<A>(data).ok()?;
    Some((name.into_owned(), action))
}

/// What [`typed_action`] needs to know of a message's data before reading it as an action.
enum Head<'a> {
    /// An object with one `action`, a non-empty string.
    Action(Cow<'a, str>),
    /// Anything else: no action (`receive`), an empty or non-string one, or `action` twice.
    Other,
}

impl<'de> Deserialize<'de> for Head<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadVisitor;
        impl<'de> Visitor<'de> for HeadVisitor {
            type Value = Head<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Head<'de>, M::Error> {
                let mut action = None;
                let mut unusual = false;
                while let Some(key) = map.next_key::<Key>()? {
                    if !key.0 {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    match map.next_value::<ActionValue<'de>>()? {
                        ActionValue::Str(name) if action.is_none() && !name.is_empty() => {
                            action = Some(name);
                        }
                        _ => unusual = true,
                    }
                }
                Ok(match action {
                    Some(name) if !unusual => Head::Action(name),
                    _ => Head::Other,
                })
            }
        }
        deserializer.deserialize_map(HeadVisitor)
    }
}

/// A key of the data: whether it is `action` (escaped or not, never copied).
struct Key(bool);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(Key(key == "action"))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An `action` value: a string (borrowed when it has no escapes) or `null`. Any other value
/// fails the read, which sends the message down the general path.
enum ActionValue<'a> {
    Str(Cow<'a, str>),
    Null,
}

impl<'de> Deserialize<'de> for ActionValue<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = ActionValue<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(ActionValue::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(ActionValue::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(ActionValue::Null)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// A message's data as Rails reads it: a JSON object whose `action` (a string) names the
/// action, or no action (absent, `null` or empty) for `receive`. Anything else is the client's
/// mistake.
fn parse_message(data: &str) -> Result<(Option<String>, Value), InvalidAction> {
    let data: Value = serde_json::from_str(data)
        .map_err(|e| InvalidAction::new("receive", format_args!("`data` is not JSON: {e}")))?;
    let action = match &data {
        Value::Object(map) => match map.get("action") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(InvalidAction::new(
                    other.to_string(),
                    "`action` is not a string",
                ));
            }
        },
        _ => {
            return Err(InvalidAction::new("receive", "`data` is not a JSON object"));
        }
    };
    Ok((action, data))
}

impl From<ChannelError> for PerformError {
    fn from(error: ChannelError) -> Self {
        PerformError {
            action: "?".into(),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `typed_action` may only take a shortcut to the same place: wherever it answers, the
    /// general path gives the same name and the same action; elsewhere it defers.
    #[test]
    fn the_typed_shortcut_agrees_with_the_general_path_or_defers() {
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(tag = "action", rename_all = "snake_case")]
        enum Typed {
            Echo { n: u32 },
            Say { text: String },
        }
        let general = |data: &str| -> Option<(String, Typed)> {
            let (name, value) = parse_message(data).ok()?;
            let name = name?;
            let action = action_from::<Typed>(&name, value).ok()?;
            Some((name, action))
        };
        let cases = [
            (r#"{"action":"echo","n":1}"#, true),
            (r#"{"n":1,"action":"echo"}"#, true),
            (r#"{"action":"\u0065cho","n":1}"#, true),
            (r#"{"action":"say","text":"h\u00e9 \"x\""}"#, true),
            (
                r#" { "action" : "say" , "text" : "" , "extra" : [1, {"a": null}] } "#,
                true,
            ),
            // The general path decides these (and words their errors).
            (r#"{"action":"echo","n":1,"n":2}"#, false),
            (r#"{"action":"echo","action":"say","n":1}"#, false),
            (r#"{"action":"","n":1}"#, false),
            (r#"{"action":null,"n":1}"#, false),
            (r#"{"action":7,"n":1}"#, false),
            (r#"{"n":1}"#, false),
            (r#"["echo",1]"#, false),
            (r#""echo""#, false),
            (r#"{"action":"echo","n":"one"}"#, false),
            (r#"{"action":"echo","n":1} x"#, false),
            ("not json", false),
            (r#"{"action":"nope"}"#, false),
        ];
        for (data, shortcut) in cases {
            let fast = typed_action::<Typed>(data);
            assert_eq!(fast.is_some(), shortcut, "{data}");
            if let Some(fast) = fast {
                assert_eq!(Some(fast), general(data), "{data}");
            }
        }
        assert_eq!(
            general(r#"{"action":"echo","n":1,"n":2}"#),
            Some(("echo".to_owned(), Typed::Echo { n: 2 })),
            "a key given twice: the last counts, as before"
        );
        assert!(
            typed_action::<AnyAction>(r#"{"action":"echo"}"#).is_none(),
            "an AnyAction is the parsed object itself"
        );
        // What the shortcut adds: a field kept as the raw text it came as.
        #[derive(Deserialize)]
        struct Raw {
            payload: Box<serde_json::value::RawValue>,
        }
        let (name, raw) = typed_action::<Raw>(r#"{"action":"echo","payload":{"b": 1,"a":2}}"#)
            .expect("read from the text");
        assert_eq!(
            (name.as_str(), raw.payload.get()),
            ("echo", r#"{"b": 1,"a":2}"#)
        );
    }

    #[test]
    fn any_action_takes_the_parsed_data_and_other_types_deserialize_as_before() {
        let data = json!({"action": "echo", "n": 1, "s": "x", "nested": {"a": [1, 2]}});
        let taken: AnyAction = action_from("echo", data.clone()).unwrap();
        assert_eq!(taken, AnyAction::deserialize(&data).unwrap());

        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(tag = "action", rename_all = "snake_case")]
        enum Typed {
            Echo { n: u32 },
        }
        let typed: Typed = action_from("echo", data.clone()).unwrap();
        assert_eq!(typed, Typed::Echo { n: 1 });
        let wrong = json!({"action": "echo", "n": "one"});
        assert_eq!(
            action_from::<Typed>("echo", wrong.clone())
                .unwrap_err()
                .to_string(),
            Typed::deserialize(&wrong).unwrap_err().to_string(),
            "the same error as before"
        );
    }
}
