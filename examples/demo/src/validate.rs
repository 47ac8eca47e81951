//! The input rules, as pure functions: user names, room slugs, chat text, limits.

/// Longest chat message, in characters after trimming.
pub const MAX_TEXT_CHARS: usize = 500;
/// Default and largest number of messages `history` returns.
pub const DEFAULT_HISTORY: u32 = 50;
/// Largest `limit` accepted for history (larger ones are clamped).
pub const MAX_HISTORY: u32 = 200;

/// A user name: 1 to 32 characters of `[A-Za-z0-9_.-]`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A room slug: `^[a-z0-9][a-z0-9-]{0,39}$`.
pub fn is_valid_room(room: &str) -> bool {
    let bytes = room.as_bytes();
    let slug = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match bytes.split_first() {
        Some((first, rest)) => {
            slug(first) && rest.len() <= 39 && rest.iter().all(|b| slug(b) || *b == b'-')
        }
        None => false,
    }
}

/// Applies the chat text rules: surrounding whitespace is trimmed; what is left must be
/// non-empty and at most [`MAX_TEXT_CHARS`] characters.
///
/// # Errors
/// The reason, as sent back to the speaker.
pub fn chat_text(text: &str) -> Result<&str, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("text must not be empty");
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err("text is too long (at most 500 characters)");
    }
    Ok(text)
}

/// The number of history messages to return for a requested `limit`: the default when none,
/// clamped to `1..=MAX_HISTORY`.
pub fn history_limit(requested: Option<i64>) -> u32 {
    match requested {
        None => DEFAULT_HISTORY,
        Some(n) => u32::try_from(n.clamp(1, i64::from(MAX_HISTORY))).unwrap_or(DEFAULT_HISTORY),
    }
}

/// Longest notification `link`, in bytes.
pub const MAX_LINK_BYTES: usize = 2000;

/// A notification `link`: a path on this site (`/x`) or an `http(s)` URL with a host, at most
/// [`MAX_LINK_BYTES`], printable ASCII only (non-ASCII must be percent-encoded).
///
/// A UI renders it as a link, so anything a browser would read differently from what it looks
/// like is refused: a backslash anywhere (browsers read `\` as `/`, so `/\evil.example` opens
/// another site), a second leading slash (`//evil.example` is protocol-relative), spaces and
/// control characters (browsers drop tabs and newlines, so `/\t/evil.example` becomes
/// `//evil.example`), and every other scheme (`javascript:`, `data:`, …).
pub fn is_valid_link(link: &str) -> bool {
    if link.is_empty() || link.len() > MAX_LINK_BYTES {
        return false;
    }
    if !link.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return false;
    }
    if let Some(path) = link.strip_prefix('/') {
        return !path.starts_with('/');
    }
    let after_scheme = link
        .strip_prefix("https://")
        .or_else(|| link.strip_prefix("http://"));
    // A host must follow: `http:///evil.example` would be read as `http://evil.example`.
    after_scheme.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// A notification `kind`: 1 to 32 characters of `[a-z0-9_-]`.
pub fn is_valid_kind(kind: &str) -> bool {
    (1..=32).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "alice", "Bob_2", "j.doe", "x-y", &"a".repeat(32)] {
            assert!(is_valid_name(good), "{good:?}");
        }
        for bad in [
            "",
            &"a".repeat(33),
            "al ice",
            "alice!",
            "émile",
            "a/b",
            "a:b",
            "a\n",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn rooms() {
        for good in [
            "lobby",
            "a",
            "0",
            "room-1",
            "r--",
            &format!("a{}", "-".repeat(39)),
        ] {
            assert!(is_valid_room(good), "{good:?}");
        }
        for bad in [
            "",
            "-lobby",
            "Lobby",
            "lob by",
            "lobby_1",
            "lobby.",
            &"a".repeat(41),
            "caf\u{e9}",
        ] {
            assert!(!is_valid_room(bad), "{bad:?}");
        }
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(chat_text("  hello \n"), Ok("hello"));
        assert_eq!(chat_text("a  b"), Ok("a  b"));
        assert!(chat_text("").is_err());
        assert!(chat_text(" \t\n ").is_err());
        assert!(
            chat_text("\u{3000}").is_err(),
            "unicode whitespace counts as blank"
        );
        let max = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(chat_text(&format!("  {max}  ")), Ok(max.as_str()));
        assert!(chat_text(&"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }

    #[test]
    fn history_limits() {
        assert_eq!(history_limit(None), 50);
        assert_eq!(history_limit(Some(10)), 10);
        assert_eq!(history_limit(Some(1000)), 200);
        assert_eq!(history_limit(Some(0)), 1);
        assert_eq!(history_limit(Some(-3)), 1);
        assert_eq!(history_limit(Some(i64::MAX)), 200);
    }

    #[test]
    fn links_and_kinds() {
        for good in [
            "/",
            "/x",
            "/builds/42?tab=log#top",
            "/a%20b",
            "/%5Cnot-a-backslash",
            "https://example.com/a?b=c",
            "http://localhost:3000/",
            &format!("/{}", "a".repeat(MAX_LINK_BYTES - 1)),
        ] {
            assert!(is_valid_link(good), "{good:?}");
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example/",
            "/\\/evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "/a\\b",
            "https://example.com\\@evil.example",
            "https:\\\\evil.example",
            "http:///evil.example",
            "https://",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/a b",
            " /a",
            "/a\u{0}",
            "/\u{7f}",
            "/caf\u{e9}",
            "/\u{202e}evil",
            "/\u{ff0f}evil.example",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:x",
            "ftp://example.com/",
            "HTTPS://example.com/",
            "example.com",
            &format!("/{}", "a".repeat(MAX_LINK_BYTES)),
        ] {
            assert!(!is_valid_link(bad), "{bad:?}");
        }
        assert!(is_valid_kind("info"));
        assert!(is_valid_kind("mention_2"));
        assert!(!is_valid_kind(""));
        assert!(!is_valid_kind("Info"));
        assert!(!is_valid_kind("<b>"));
    }
}
