//! Payloads are JSON (`cookies_serializer = :json`, Turbo's `serializer: JSON`). Ruby Marshal
//! data is recognised by its version bytes and refused with its own error, so a Rails app still
//! on `:marshal` learns why nothing verifies.

use serde::de::DeserializeOwned;

use crate::RailsError;

/// Marshal's format version, 4.8, opens every Marshal dump.
const MARSHAL_MAGIC: &[u8] = &[0x04, 0x08];

pub(crate) fn from_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, RailsError> {
    if payload.starts_with(MARSHAL_MAGIC) {
        return Err(RailsError::MarshalPayload);
    }
    serde_json::from_slice(payload).map_err(|e| RailsError::Payload(e.to_string()))
}
