//! Stream names, and the rule `stream_for` uses to name a model's stream.
//!
//! A stream (Rails says *broadcasting*) is just a string: whatever a channel passes to
//! `stream_from` and whatever a broadcaster passes to `broadcast`. `stream_for` derives the
//! string from the channel and a model exactly as Rails' `broadcasting_for` does, so a Rails
//! process and this server agree on the stream of the same record:
//!
//! `<channel_name>:<param>[:<param>…]`, where
//! * `channel_name` is the channel class without its `Channel` suffix, `::` turned into `:`, and
//!   the rest underscored (`Chats::AppearancesChannel` → `chats:appearances`), see [`channel_name`];
//! * each param is the model's GlobalID param (`to_gid_param`: URL-safe base64 of
//!   `gid://<app>/<Model>/<id>`, no padding) when it is a record, else its `to_param` (a string
//!   as is, a number in decimal), see [`ToStreamParam`] and [`GlobalId`].
//!
//! ```
//! use actioncable::stream::{stream_for, GlobalId};
//! assert_eq!(stream_for("NotificationChannel", &"alice"), "notification:alice");
//! assert_eq!(stream_for("Chats::AppearancesChannel", &42), "chats:appearances:42");
//! let user = GlobalId::new("interop", "User", "alice");
//! assert_eq!(
//!     stream_for("NotificationChannel", &user),
//!     "notification:Z2lkOi8vaW50ZXJvcC9Vc2VyL2FsaWNl"
//! );
//! ```

use base64::Engine as _;
use std::borrow::Cow;

/// Rails' `channel_name` for a channel class name.
///
/// ```
/// use actioncable::stream::channel_name;
/// assert_eq!(channel_name("ChatChannel"), "chat");
/// assert_eq!(channel_name("Chats::AppearancesChannel"), "chats:appearances");
/// assert_eq!(channel_name("WebNotificationsChannel"), "web_notifications");
/// assert_eq!(channel_name("HTMLChannel"), "html");
/// assert_eq!(channel_name("Admin::SSOLoginChannel"), "admin:sso_login");
/// ```
pub fn channel_name(class_name: &str) -> String {
    let base = class_name.strip_suffix("Channel").unwrap_or(class_name);
    base.split("::")
        .map(underscore)
        .collect::<Vec<_>>()
        .join(":")
}

/// ActiveSupport's `underscore` for one constant name (without custom acronyms).
fn underscore(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            // "fooBar" → "foo_bar"; "HTMLParser" → "html_parser".
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_is_lower)
            {
                out.push('_');
            }
        }
        out.push(if c == '-' {
            '_'
        } else {
            c.to_ascii_lowercase()
        });
    }
    out
}

/// How a value appears in a stream name made by `stream_for` (Rails: `to_gid_param || to_param`).
pub trait ToStreamParam {
    /// The value's part of the stream name.
    fn to_stream_param(&self) -> Cow<'_, str>;
}

impl ToStreamParam for str {
    fn to_stream_param(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl ToStreamParam for String {
    fn to_stream_param(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl<T: ToStreamParam + ?Sized> ToStreamParam for &T {
    fn to_stream_param(&self) -> Cow<'_, str> {
        (**self).to_stream_param()
    }
}

macro_rules! int_params {
    ($($t:ty),*) => {$(
        impl ToStreamParam for $t {
            fn to_stream_param(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}
int_params!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool
);

/// Several values make one composite name (Rails 8.1's `stream_for [a, b]`).
///
/// ```
/// use actioncable::stream::stream_for;
/// assert_eq!(stream_for("ChatChannel", &["lobby", "alice"][..]), "chat:lobby:alice");
/// ```
impl<T: ToStreamParam> ToStreamParam for [T] {
    fn to_stream_param(&self) -> Cow<'_, str> {
        let parts: Vec<Cow<'_, str>> = self.iter().map(ToStreamParam::to_stream_param).collect();
        Cow::Owned(parts.join(":"))
    }
}

impl<T: ToStreamParam> ToStreamParam for Vec<T> {
    fn to_stream_param(&self) -> Cow<'_, str> {
        self.as_slice().to_stream_param()
    }
}

/// A record's GlobalID (`gid://<app>/<Model>/<id>`), as Rails' `to_gid_param` renders it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GlobalId {
    uri: String,
}

impl GlobalId {
    /// The GlobalID of record `id` of `model` in application `app`.
    ///
    /// The id is escaped as the GlobalID gem does it (`CGI.escape`: letters, digits and `_.-~`
    /// as they are, a space as `+`, any other byte as `%XX`), so ids such as emails name the
    /// same stream as in Rails:
    ///
    /// ```
    /// use actioncable::GlobalId;
    /// assert_eq!(GlobalId::new("app", "User", 7).uri(), "gid://app/User/7");
    /// assert_eq!(GlobalId::new("app", "User", "a b@c").uri(), "gid://app/User/a+b%40c");
    /// ```
    pub fn new(app: &str, model: &str, id: impl std::fmt::Display) -> GlobalId {
        let id = id.to_string();
        let mut uri = format!("gid://{app}/{model}/");
        for byte in id.bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                    uri.push(char::from(byte));
                }
                b' ' => uri.push('+'),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    uri.push('%');
                    uri.push(char::from(HEX[usize::from(byte >> 4)]));
                    uri.push(char::from(HEX[usize::from(byte & 0xf)]));
                }
            }
        }
        GlobalId { uri }
    }

    /// The URI form, e.g. `gid://app/User/1`.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

impl ToStreamParam for GlobalId {
    fn to_stream_param(&self) -> Cow<'_, str> {
        Cow::Owned(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.uri))
    }
}

/// The stream `stream_for`/`broadcast_to` use for `model` in channel class `channel_class`.
pub fn stream_for<M: ToStreamParam + ?Sized>(channel_class: &str, model: &M) -> String {
    format!(
        "{}:{}",
        channel_name(channel_class),
        model.to_stream_param()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_matches_active_support() {
        for (input, want) in [
            ("Chat", "chat"),
            ("ChatRoom", "chat_room"),
            ("Chat2Room", "chat2_room"),
            ("ABC", "abc"),
            ("ABCDef", "abc_def"),
            ("Room-Name", "room_name"),
        ] {
            assert_eq!(underscore(input), want, "{input}");
        }
    }

    #[test]
    fn channel_without_suffix_keeps_its_name() {
        assert_eq!(channel_name("Benchmark"), "benchmark");
        assert_eq!(stream_for("BenchmarkChannel", &true), "benchmark:true");
    }
}
