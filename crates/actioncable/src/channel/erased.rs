//! Type erasure for registered channels: the dispatcher holds `Box<dyn ErasedChannel<S>>` and
//! never sees the user's types. Only channels registered on the builder can be instantiated;
//! a client cannot name anything else.

use super::{AnyAction, Channel, ChannelContext};
use crate::error::{ChannelError, InvalidAction};
use async_trait::async_trait;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::any::{Any, TypeId};
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
        let (name, result) = match parse_message(data) {
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
