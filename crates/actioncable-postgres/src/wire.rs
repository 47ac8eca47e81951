//! What goes over PostgreSQL, in Rails' format: channel identifiers, identifier quoting and
//! the reference that stands in for a payload too large for `NOTIFY`. No I/O here.

use sha1::{Digest as _, Sha1};
use std::fmt::Write as _;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`), in bytes. Longer ones are
/// silently truncated, so Rails replaces them with their SHA1 hex digest (40 bytes).
pub(crate) const MAX_IDENTIFIER_BYTES: usize = 63;

/// The largest payload `NOTIFY` takes, in bytes: PostgreSQL refuses one of 8000 bytes or more
/// (`NOTIFY_PAYLOAD_MAX_LENGTH` in a server built with the default 8 kB block size).
pub(crate) const MAX_NOTIFY_PAYLOAD: usize = 7999;

/// How the notification of a stored payload starts. No JSON text starts with a letter other
/// than those of `true`, `false` and `null`, so no broadcast is ever mistaken for a reference,
/// and a Rails node fails to decode one instead of passing it on as a message.
pub(crate) const LARGE_PAYLOAD_MARKER: &str = "actioncable-postgres:large-payload:";

/// Maps broadcasting names to PostgreSQL channel identifiers, as Rails does:
/// `[channel_prefix, broadcasting].compact.join(":")`, then the SHA1 hex digest of that when
/// it is longer than 63 bytes.
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

    /// The channel identifier of `stream` (unquoted).
    pub(crate) fn channel(&self, stream: &str) -> String {
        let full = match &self.prefix {
            None => stream.to_owned(),
            Some(prefix) => format!("{prefix}{stream}"),
        };
        if full.len() > MAX_IDENTIFIER_BYTES {
            sha1_hex(&full)
        } else {
            full
        }
    }
}

/// The lowercase hex SHA1 digest of `text` (Ruby's `Digest::SHA1.hexdigest`).
pub(crate) fn sha1_hex(text: &str) -> String {
    let digest = Sha1::digest(text.as_bytes());
    let mut hex = String::with_capacity(40);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// `identifier` as a quoted SQL identifier, as libpq's `PQescapeIdentifier` (Ruby's
/// `escape_identifier`) makes it: in double quotes, with each double quote doubled. `None`
/// for a name with a NUL character, which no identifier can hold.
pub(crate) fn quote_identifier(identifier: &str) -> Option<String> {
    if identifier.contains('\0') {
        return None;
    }
    let mut quoted = String::with_capacity(identifier.len() + 2);
    quoted.push('"');
    for c in identifier.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Some(quoted)
}

/// The row id a stored-payload reference names, or `None` for an ordinary payload.
pub(crate) fn large_payload_id(payload: &str) -> Option<i64> {
    payload.strip_prefix(LARGE_PAYLOAD_MARKER)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_used_as_they_are_with_the_prefix_joined_by_a_colon() {
        assert_eq!(Naming::new(None).channel("chat:lobby"), "chat:lobby");
        assert_eq!(
            Naming::new(Some("app")).channel("chat:lobby"),
            "app:chat:lobby"
        );
        // Rails' `compact` drops only nil: an empty prefix still adds the colon.
        assert_eq!(Naming::new(Some("")).channel("s"), ":s");
    }

    #[test]
    fn names_over_63_bytes_become_their_sha1_hex_digest() {
        let n = Naming::new(None);
        let at_limit = "a".repeat(63);
        assert_eq!(n.channel(&at_limit), at_limit);
        // Ruby: Digest::SHA1.hexdigest("a" * 64)
        assert_eq!(
            n.channel(&"a".repeat(64)),
            "0098ba824b5c16427bd7a1122a5a442a25ec644d"
        );
        // The prefix counts, and is hashed with the name.
        let p = Naming::new(Some("app"));
        let name = "b".repeat(60);
        assert_eq!(p.channel(&name), sha1_hex(&format!("app:{name}")));
        assert_eq!(
            p.channel(&"b".repeat(59)),
            format!("app:{}", "b".repeat(59))
        );
    }

    #[test]
    fn the_limit_is_in_bytes_not_characters() {
        // 32 characters, 64 bytes: Rails main hashes it (bytesize), Rails 6.1 does not (size).
        let name = "é".repeat(32);
        assert_eq!(name.chars().count(), 32);
        assert_eq!(Naming::new(None).channel(&name), sha1_hex(&name));
        let short = "é".repeat(31);
        assert_eq!(Naming::new(None).channel(&short), short);
    }

    #[test]
    fn sha1_matches_known_digests() {
        assert_eq!(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn identifiers_are_quoted_like_escape_identifier() {
        assert_eq!(
            quote_identifier("chat:lobby").as_deref(),
            Some("\"chat:lobby\"")
        );
        assert_eq!(
            quote_identifier("say \"hi\"").as_deref(),
            Some("\"say \"\"hi\"\"\"")
        );
        assert_eq!(quote_identifier("it's").as_deref(), Some("\"it's\""));
        assert_eq!(quote_identifier("Größe").as_deref(), Some("\"Größe\""));
        assert_eq!(quote_identifier("nul\0byte"), None);
    }

    #[test]
    fn references_are_recognised_and_json_never_is() {
        assert_eq!(
            large_payload_id(&format!("{LARGE_PAYLOAD_MARKER}42")),
            Some(42)
        );
        assert_eq!(large_payload_id(&format!("{LARGE_PAYLOAD_MARKER}x")), None);
        for json in [
            r#"{"a":1}"#,
            "[1]",
            "\"actioncable-postgres:large-payload:1\"",
            "null",
        ] {
            assert_eq!(large_payload_id(json), None, "{json}");
        }
    }
}
