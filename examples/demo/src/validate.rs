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

/// A notification `link`: a path on this site (`/x`, not `//host`) or an `http(s)` URL, at
/// most 2000 bytes. Anything else (`javascript:` say) is refused, since a UI will render it
/// as a link.
pub fn is_valid_link(link: &str) -> bool {
    let site_path = link.starts_with('/') && !link.starts_with("//");
    let web_url = link.starts_with("https://") || link.starts_with("http://");
    (site_path || web_url)
        && link.len() <= 2000
        && !link.chars().any(|c| c.is_control() || c.is_whitespace())
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
        assert!(is_valid_link("/x"));
        assert!(is_valid_link("https://example.com/a?b=c"));
        assert!(!is_valid_link("//evil.example"));
        assert!(!is_valid_link("javascript:alert(1)"));
        assert!(!is_valid_link("/a b"));
        assert!(!is_valid_link(""));
        assert!(is_valid_kind("info"));
        assert!(is_valid_kind("mention_2"));
        assert!(!is_valid_kind(""));
        assert!(!is_valid_kind("Info"));
        assert!(!is_valid_kind("<b>"));
    }
}
