//! One parsed [`Identifier`] per distinct identifier string in use, shared by every
//! subscription that uses it.
//!
//! Thousands of connections commonly subscribe with the same identifier (a notifications
//! channel without params, a busy chat room). Parsed once per subscription, each would keep its
//! own copy of the string and of its JSON params (about 550 bytes) for as long as it lasts; shared,
//! they cost one. Entries nobody uses any more are swept when the cache has doubled since the
//! last sweep, so its size follows the identifiers in use (a client that subscribes to a
//! thousand made-up identifiers leaves at most that many entries until the next sweep).
//! A string that does not parse is not kept.

use crate::protocol::{Identifier, IdentifierError};
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Fewest entries before the first sweep.
const MIN_SWEEP: usize = 64;

#[derive(Default)]
pub(crate) struct Identifiers {
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    by_raw: HashMap<Arc<str>, Identifier>,
    /// Sweep unused entries once there are this many.
    sweep_at: usize,
}

impl Identifiers {
    /// [`Identifier::parse`], answered from the cache when the same string is in use.
    pub(crate) fn parse(&self, raw: &str) -> Result<Identifier, IdentifierError> {
        if let Some(known) = lock(&self.cache).by_raw.get(raw) {
            return Ok(known.clone());
        }
        let parsed = Identifier::parse(raw)?;
        let mut cache = lock(&self.cache);
        if cache.by_raw.len() >= cache.sweep_at {
            // The map holds one `Identifier` and, as its key, one more handle on its string.
            cache.by_raw.retain(|_, id| id.used_beyond(1, 2));
            cache.sweep_at = (cache.by_raw.len() * 2).max(MIN_SWEEP);
        }
        let key = parsed.shared_str();
        Ok(cache.by_raw.entry(key).or_insert(parsed).clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.cache).by_raw.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_string_gives_the_same_parse() {
        let ids = Identifiers::default();
        let a = ids.parse(r#"{"channel":"Chat","room":"1"}"#).unwrap();
        let b = ids.parse(r#"{"channel":"Chat","room":"1"}"#).unwrap();
        assert!(a.same_as(&b), "shared, not parsed twice");
        assert_eq!(b.params()["room"], "1");
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.parse("[1]"), Err(IdentifierError::NotAnObject));
        assert_eq!(ids.len(), 1, "a refused string is not kept");
    }

    #[test]
    fn entries_nobody_uses_are_swept() {
        let ids = Identifiers::default();
        let kept = ids.parse(r#"{"channel":"Chat","room":"kept"}"#).unwrap();
        let key = kept.shared_str();
        drop(kept);
        let _held = key;
        for n in 0..10 * MIN_SWEEP {
            let _ = ids
                .parse(&format!(r#"{{"channel":"Chat","room":"{n}"}}"#))
                .unwrap();
        }
        assert!(ids.len() <= 2 * MIN_SWEEP, "{} entries", ids.len());
        let again = ids.parse(r#"{"channel":"Chat","room":"kept"}"#).unwrap();
        assert!(
            Arc::ptr_eq(&again.shared_str(), &_held),
            "an identifier whose string is still held elsewhere is kept"
        );
    }
}
