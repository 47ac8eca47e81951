//! [`NatsError`]: what the adapter reports inside [`PubSubError::Backend`] when NATS itself
//! refuses something (as opposed to NATS being unreachable, which is
//! [`PubSubError::Unavailable`]).
//!
//! [`PubSubError::Backend`]: actioncable::PubSubError::Backend
//! [`PubSubError::Unavailable`]: actioncable::PubSubError::Unavailable

/// A broadcast or history operation NATS refused. Carried as the source of
/// [`PubSubError::Backend`](actioncable::PubSubError::Backend); downcast it to tell the cases
/// apart:
///
/// ```
/// use actioncable::PubSubError;
/// use actioncable_nats::NatsError;
///
/// fn too_large(error: &PubSubError) -> bool {
///     match error {
///         PubSubError::Backend(source) => matches!(
///             source.downcast_ref::<NatsError>(),
///             Some(NatsError::PayloadTooLarge { .. })
///         ),
///         _ => false,
///     }
/// }
/// # let e = PubSubError::Backend(Box::new(NatsError::PayloadTooLarge { size: 2, max: 1 }));
/// # assert!(too_large(&e));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The message (payload plus NATS headers) is larger than the server's `max_payload`
    /// (1 MiB unless the server is configured otherwise). Nothing was sent.
    #[error(
        "a broadcast of {size} bytes (payload and headers) exceeds the NATS server's max_payload \
         of {max} bytes; nothing was sent"
    )]
    PayloadTooLarge {
        /// The message's size on the wire, headers included.
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// The NATS server answered with an error.
    #[error("NATS refused {what}: {reason}")]
    Refused {
        /// The operation.
        what: &'static str,
        /// The server's or the client's explanation.
        reason: String,
    },
}
