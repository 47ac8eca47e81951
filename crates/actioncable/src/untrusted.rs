//! How text a client sent appears in a log line: escaped and shortened.
//!
//! An identifier, an action name, a frame that does not parse, a serde message quoting the
//! client's data: all of it reaches the logs, and a log line is a trust boundary. Written raw,
//! a newline forges a line of its own (`… INFO logged in user=admin`), an escape sequence
//! repaints the operator's terminal, a bidirectional-override character reorders what they
//! read, and a megabyte identifier makes a megabyte log line. So every client-supplied value
//! goes through [`untrusted`] on its way to a log field or message: control characters, line
//! separators and invisible formatting characters come out as Rust escapes (`\n`, `\u{1b}`),
//! and anything past [`MAX_CHARS`] characters is cut, with `…` saying so. The value is
//! formatted lazily, so it costs nothing when the log level is off.

use std::fmt::{self, Write as _};

/// How many characters of a client's text a log line shows.
pub(crate) const MAX_CHARS: usize = 200;

/// `value`'s `Display`, escaped and shortened for a log line.
pub(crate) fn untrusted<T: fmt::Display>(value: T) -> Untrusted<T> {
    Untrusted(value)
}

/// See [`untrusted`].
pub(crate) struct Untrusted<T>(T);

impl<T: fmt::Display> fmt::Display for Untrusted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Escaper {
            out: f,
            chars: 0,
            truncated: false,
        };
        // A full escaper stops the inner `Display` early with an error; that is not a failure.
        let _ = write!(out, "{}", self.0);
        if out.truncated {
            out.out.write_char('…')?;
        }
        Ok(())
    }
}

impl<T: fmt::Display> fmt::Debug for Untrusted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

struct Escaper<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    chars: usize,
    truncated: bool,
}

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.chars == MAX_CHARS {
                self.truncated = true;
                return Err(fmt::Error);
            }
            self.chars += 1;
            if needs_escape(c) {
                write!(self.out, "{}", c.escape_default())?;
            } else {
                self.out.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Control characters, and the characters that break or reorder a line without being controls:
/// line and paragraph separators, bidirectional overrides and isolates, zero-width characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        let shown = untrusted("a\nb\r\u{1b}[31mred\t\u{202e}evil\u{2028}x").to_string();
        assert_eq!(shown, "a\\nb\\r\\u{1b}[31mred\\t\\u{202e}evil\\u{2028}x");
        assert!(!shown.chars().any(needs_escape));
        // Ordinary text, quotes and non-ASCII letters are kept as they are.
        assert_eq!(
            untrusted(r#"{"channel":"Chat"} café"#).to_string(),
            r#"{"channel":"Chat"} café"#
        );
    }

    #[test]
    fn long_text_is_cut_with_a_mark() {
        let shown = untrusted("é".repeat(1000)).to_string();
        assert_eq!(shown.chars().count(), MAX_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(
            untrusted("x".repeat(MAX_CHARS)).to_string().len(),
            MAX_CHARS
        );
    }

    #[test]
    fn any_display_is_escaped_not_only_strings() {
        let error = std::io::Error::other("bad\nline");
        assert_eq!(untrusted(&error).to_string(), "bad\\nline");
    }
}
