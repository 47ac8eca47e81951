//! `<turbo-stream>` elements as turbo-rails renders them, and the one rule that keeps them safe:
//! HTML is either trusted markup the app wrote ([`Html::trusted`]) or text that is escaped
//! ([`Html::text`], [`escape_html`]). There is no conversion from a plain string to [`Html`], so
//! a user's text cannot end up in a page as markup by accident.
//!
//! The rendering follows `turbo_stream_action_tag` (`app/helpers/turbo/streams/action_helper.rb`)
//! through Action View's `tag` builder: the `method` attribute first when given, then `action`,
//! then `target` (or `targets`); the content wrapped in `<template>`, except for `remove` and
//! `refresh`, which have none. Attribute values are escaped as `ERB::Util.html_escape` does
//! (`&`, `<`, `>`, `"`, `'`), so a target may hold any text. The tests compare the output with
//! Rails' own `tag` builder, byte for byte.

use serde::{Serialize, Serializer};
use std::fmt;

/// Escapes `text` for HTML, in content and in quoted attribute values alike, as Rails'
/// `ERB::Util.html_escape` does: `&` `<` `>` `"` `'` become `&amp;` `&lt;` `&gt;` `&quot;`
/// `&#39;`.
///
/// ```
/// use actioncable_rails::turbo::escape_html;
/// assert_eq!(escape_html(r#"<a href="x">Tom & 'Jerry'</a>"#),
///            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
/// ```
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

fn push_escaped(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// HTML the app vouches for: markup it wrote, with any user text escaped into it (Rails'
/// `html_safe` strings).
///
/// ```
/// use actioncable_rails::turbo::Html;
///
/// let user_text = "<script>alert(1)</script>";
/// let mut html = Html::trusted(r#"<p class="message">"#);
/// html.push_text(user_text).push_trusted("</p>");
/// assert_eq!(html.as_str(), r#"<p class="message">&lt;script&gt;alert(1)&lt;/script&gt;</p>"#);
/// assert_eq!(Html::text("a & b").as_str(), "a &amp; b");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Html(String);

impl Html {
    /// Empty HTML.
    pub fn new() -> Html {
        Html(String::new())
    }

    /// Markup taken as it is. Only for markup the app itself wrote or rendered with a template
    /// engine that escapes: never for text from a user.
    pub fn trusted(html: impl Into<String>) -> Html {
        Html(html.into())
    }

    /// `text` escaped ([`escape_html`]): shown as text, never run as markup.
    pub fn text(text: &str) -> Html {
        Html(escape_html(text))
    }

    /// Appends trusted markup (see [`trusted`](Self::trusted)).
    pub fn push_trusted(&mut self, html: &str) -> &mut Html {
        self.0.push_str(html);
        self
    }

    /// Appends `text`, escaped.
    pub fn push_text(&mut self, text: &str) -> &mut Html {
        push_escaped(&mut self.0, text);
        self
    }

    /// Appends other HTML.
    pub fn push_html(&mut self, html: &Html) -> &mut Html {
        self.0.push_str(&html.0);
        self
    }

    /// The markup.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The markup, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Html {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// As a JSON string, like the HTML Rails broadcasts.
impl Serialize for Html {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl From<TurboStream> for Html {
    fn from(stream: TurboStream) -> Html {
        Html(stream.to_string())
    }
}

impl FromIterator<TurboStream> for Html {
    /// Several `<turbo-stream>` elements in one message, applied in order.
    fn from_iter<I: IntoIterator<Item = TurboStream>>(streams: I) -> Html {
        let mut html = Html::new();
        for stream in streams {
            html.0.push_str(&stream.to_string());
        }
        html
    }
}

/// The action of a `<turbo-stream>` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TurboAction {
    /// Add the content at the end of the target.
    Append,
    /// Add the content at the start of the target.
    Prepend,
    /// Replace the target with the content.
    Replace,
    /// Replace the target's content.
    Update,
    /// Remove the target.
    Remove,
    /// Insert the content before the target.
    Before,
    /// Insert the content after the target.
    After,
    /// Reload the page (Turbo 8's page refresh).
    Refresh,
}

impl TurboAction {
    /// The `action` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            TurboAction::Append => "append",
            TurboAction::Prepend => "prepend",
            TurboAction::Replace => "replace",
            TurboAction::Update => "update",
            TurboAction::Remove => "remove",
            TurboAction::Before => "before",
            TurboAction::After => "after",
            TurboAction::Refresh => "refresh",
        }
    }

    /// Whether the element carries a `<template>` (all but `remove` and `refresh`).
    fn has_template(self) -> bool {
        !matches!(self, TurboAction::Remove | TurboAction::Refresh)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    None,
    /// `target="…"`: the element with this id.
    Id(String),
    /// `targets="…"`: every element that matches this CSS selector.
    Selector(String),
}

/// One `<turbo-stream>` element, as turbo-rails' tag builder renders it: what a Rails
/// `turbo_stream.append "messages", html` or `broadcast_append_to …` produces.
///
/// `Display` renders it; `Serialize` makes it a JSON string of that HTML, so
/// `handle.broadcast(&stream, &turbo_stream)` sends exactly what Rails' broadcasts send.
///
/// ```
/// use actioncable_rails::turbo::{Html, TurboStream};
///
/// let message = Html::text("hello <world>");
/// assert_eq!(
///     TurboStream::append("messages", message).to_string(),
///     r#"<turbo-stream action="append" target="messages"><template>hello &lt;world&gt;</template></turbo-stream>"#
/// );
/// assert_eq!(
///     TurboStream::remove("message_1").to_string(),
///     r#"<turbo-stream action="remove" target="message_1"></turbo-stream>"#
/// );
/// assert_eq!(
///     TurboStream::replace("card", Html::trusted("<div id=\"card\">new</div>")).morph().to_string(),
///     r#"<turbo-stream method="morph" action="replace" target="card"><template><div id="card">new</div></template></turbo-stream>"#
/// );
/// assert_eq!(
///     serde_json::to_string(&TurboStream::remove_all(".unread")).unwrap(),
///     r#""<turbo-stream action=\"remove\" targets=\".unread\"></turbo-stream>""#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurboStream {
    action: TurboAction,
    target: Target,
    morph: bool,
    template: Html,
}

macro_rules! actions {
    ($($(#[$doc:meta])* $one:ident, $(#[$doc_all:meta])* $all:ident => $action:ident;)*) => {$(
        $(#[$doc])*
        pub fn $one(target: impl Into<String>, content: Html) -> TurboStream {
            TurboStream::new(TurboAction::$action, Target::Id(target.into()), content)
        }

        $(#[$doc_all])*
        pub fn $all(targets: impl Into<String>, content: Html) -> TurboStream {
            TurboStream::new(TurboAction::$action, Target::Selector(targets.into()), content)
        }
    )*};
}

impl TurboStream {
    fn new(action: TurboAction, target: Target, template: Html) -> TurboStream {
        TurboStream {
            action,
            target,
            morph: false,
            template,
        }
    }

    actions! {
        /// Appends `content` to the element with id `target`.
        append,
        /// Appends `content` to every element matching the CSS selector `targets`.
        append_all => Append;
        /// Prepends `content` to the element with id `target`.
        prepend,
        /// Prepends `content` to every element matching `targets`.
        prepend_all => Prepend;
        /// Replaces the element with id `target` by `content`.
        replace,
        /// Replaces every element matching `targets` by `content`.
        replace_all => Replace;
        /// Replaces the content of the element with id `target`.
        update,
        /// Replaces the content of every element matching `targets`.
        update_all => Update;
        /// Inserts `content` before the element with id `target`.
        before,
        /// Inserts `content` before every element matching `targets`.
        before_all => Before;
        /// Inserts `content` after the element with id `target`.
        after,
        /// Inserts `content` after every element matching `targets`.
        after_all => After;
    }

    /// Removes the element with id `target`.
    pub fn remove(target: impl Into<String>) -> TurboStream {
        TurboStream::new(TurboAction::Remove, Target::Id(target.into()), Html::new())
    }

    /// Removes every element matching the CSS selector `targets`.
    pub fn remove_all(targets: impl Into<String>) -> TurboStream {
        TurboStream::new(
            TurboAction::Remove,
            Target::Selector(targets.into()),
            Html::new(),
        )
    }

    /// Tells the page to refresh itself (`<turbo-stream action="refresh">`, Rails'
    /// `broadcast_refresh_to` without a request id).
    pub fn refresh() -> TurboStream {
        TurboStream::new(TurboAction::Refresh, Target::None, Html::new())
    }

    /// Adds `method="morph"`: Turbo morphs the target into the new content instead of
    /// swapping it (Rails' `method: :morph`). Turbo honours it on `replace` and `update`.
    #[must_use]
    pub fn morph(mut self) -> TurboStream {
        self.morph = true;
        self
    }

    /// The element's action.
    pub fn action(&self) -> TurboAction {
        self.action
    }
}

impl fmt::Display for TurboStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(64 + self.template.0.len());
        out.push_str("<turbo-stream");
        if self.morph {
            out.push_str(r#" method="morph""#);
        }
        out.push_str(r#" action=""#);
        out.push_str(self.action.as_str());
        out.push('"');
        let (name, value) = match &self.target {
            Target::None => ("", ""),
            Target::Id(id) => ("target", id.as_str()),
            Target::Selector(selector) => ("targets", selector.as_str()),
        };
        if !name.is_empty() {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            push_escaped(&mut out, value);
            out.push('"');
        }
        out.push('>');
        if self.action.has_template() {
            out.push_str("<template>");
            out.push_str(&self.template.0);
            out.push_str("</template>");
        }
        out.push_str("</turbo-stream>");
        f.write_str(&out)
    }
}

/// As a JSON string of the element's HTML: what Rails' `broadcast_*_to` send.
impl Serialize for TurboStream {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_targets_and_text_stay_text() {
        let stream = TurboStream::append(
            r#"x" onclick="alert(1)"#,
            Html::text("<script>alert('hi')</script>"),
        );
        assert_eq!(
            stream.to_string(),
            "<turbo-stream action=\"append\" target=\"x&quot; onclick=&quot;alert(1)\">\
             <template>&lt;script&gt;alert(&#39;hi&#39;)&lt;/script&gt;</template></turbo-stream>"
        );
    }

    #[test]
    fn remove_and_refresh_have_no_template() {
        assert_eq!(
            TurboStream::refresh().to_string(),
            r#"<turbo-stream action="refresh"></turbo-stream>"#
        );
        assert_eq!(
            TurboStream::remove("a").morph().to_string(),
            r#"<turbo-stream method="morph" action="remove" target="a"></turbo-stream>"#
        );
    }

    #[test]
    fn escaping_leaves_other_text_alone() {
        assert_eq!(escape_html(""), "");
        assert_eq!(escape_html("naïve ☃ text"), "naïve ☃ text");
        assert_eq!(escape_html("&&"), "&amp;&amp;");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
    }

    #[test]
    fn streams_concatenate_into_one_message() {
        let html: Html = [TurboStream::remove("a"), TurboStream::remove("b")]
            .into_iter()
            .collect();
        assert_eq!(
            html.as_str(),
            "<turbo-stream action=\"remove\" target=\"a\"></turbo-stream>\
             <turbo-stream action=\"remove\" target=\"b\"></turbo-stream>"
        );
        assert_eq!(
            serde_json::to_value(&html).unwrap(),
            serde_json::Value::String(html.to_string())
        );
    }
}
