//! What goes over Redis, in Rails' format: channel names and the handling of one message.
//! No I/O here.

use actioncable::pubsub::Inbound;
use std::borrow::Cow;

/// The channel Rails' listener subscribes to first, as a sentinel. Never prefixed.
pub(crate) const INTERNAL_CHANNEL: &str = "_action_cable_internal";

/// Maps broadcasting names to Redis channel names and back (Rails' `ChannelPrefix`:
/// `[channel_prefix, channel].compact.join(":")`).
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    /// `"<prefix>:"`, or `None` without a prefix.
    prefix: Option<String>,
}

impl Naming {
    pub(crate) fn new(channel_prefix: Option<&str>) -> Naming {
        Naming {
            prefix: channel_prefix.map(|p| format!("{p}:")),
        }
    }

    /// The Redis channel of `stream`. Borrows when there is no prefix.
    pub(crate) fn channel<'a>(&self, stream: &'a str) -> Cow<'a, str> {
        match &self.prefix {
            None => Cow::Borrowed(stream),
            Some(prefix) => {
                let mut channel = String::with_capacity(prefix.len() + stream.len());
                channel.push_str(prefix);
                channel.push_str(stream);
                Cow::Owned(channel)
            }
        }
    }

    /// The stream of a Redis channel, or `None` for a channel that is not ours (the internal
    /// channel, or a channel without our prefix).
    pub(crate) fn stream<'a>(&self, channel: &'a str) -> Option<&'a str> {
        if channel == INTERNAL_CHANNEL {
            return None;
        }
        match &self.prefix {
            None => Some(channel),
            Some(prefix) => channel.strip_prefix(prefix.as_str()),
        }
    }
}

/// Hands one received message to the local subscribers. Both parts are borrowed from the
/// decoded message; nothing is allocated here.
pub(crate) fn deliver(naming: &Naming, inbound: &Inbound, channel: &[u8], payload: &[u8]) {
    let Ok(channel) = std::str::from_utf8(channel) else {
        tracing::warn!(
            channel = %String::from_utf8_lossy(channel),
            "dropping a Redis message whose channel name is not UTF-8"
        );
        return;
    };
    let Some(stream) = naming.stream(channel) else {
        tracing::trace!(
            channel,
            "ignoring a message on a channel that is not a stream"
        );
        return;
    };
    match std::str::from_utf8(payload) {
        Ok(payload) => {
            let reached = inbound.deliver(stream, payload);
            tracing::trace!(stream, reached, "delivered a Redis message");
        }
        Err(e) => {
            tracing::error!(stream, error = %e, "dropping a Redis message that is not UTF-8");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_prefix_the_channel_is_the_broadcasting() {
        let n = Naming::new(None);
        assert!(matches!(
            n.channel("chat:lobby"),
            Cow::Borrowed("chat:lobby")
        ));
        assert_eq!(n.stream("chat:lobby"), Some("chat:lobby"));
        assert_eq!(n.stream(INTERNAL_CHANNEL), None);
    }

    #[test]
    fn prefix_is_joined_with_a_colon_like_rails() {
        let n = Naming::new(Some("app"));
        assert_eq!(n.channel("chat:lobby"), "app:chat:lobby");
        assert_eq!(n.stream("app:chat:lobby"), Some("chat:lobby"));
        assert_eq!(n.stream("other:chat:lobby"), None);
        assert_eq!(n.stream("app"), None);
        assert_eq!(n.stream(INTERNAL_CHANNEL), None);
        // Rails' `compact` drops only nil: an empty prefix still adds the colon.
        assert_eq!(Naming::new(Some("")).channel("s"), ":s");
    }
}
