//! One event-stream client (`broadcast --transport sse`): a `GET` of `--events-path` on the
//! server's host and port, read as `curl -N` reads it: the response head, the chunked body
//! de-chunked as it arrives, the text cut into events at their blank lines. The stream
//! counts as subscribed at its `confirm_subscription` event (AnyCable's mapping, which
//! `actioncable::protocol::sse` follows: a delivery is an unnamed event whose data is the
//! message alone).

use crate::conn::Target;
use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// An event stream being read.
#[derive(Debug)]
pub(crate) struct EventStream {
    tcp: TcpStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// The de-chunked body not yet cut into events.
    body: Vec<u8>,
    /// The body is chunked (hyper's framing of a streamed HTTP/1.1 response).
    chunked: bool,
    /// The last chunk was read.
    done: bool,
}

/// One event, the fields the benchmark reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    /// `event:`; empty for a message (a delivery).
    pub(crate) name: String,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
    /// The event carried an `id:` (a stream position).
    pub(crate) has_id: bool,
}

impl Event {
    /// Parses one event's text (without its blank line); `None` for a comment only.
    fn parse(text: &str) -> Option<Event> {
        let mut event = Event::default();
        let mut any = false;
        for line in text.split('\n') {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "" => continue,
                "event" => event.name = value.to_owned(),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                "id" => event.has_id = true,
                _ => {}
            }
            any = true;
        }
        any.then_some(event)
    }
}

impl EventStream {
    /// Requests the stream for client `index` and reads it up to its `confirm_subscription`
    /// event.
    pub(crate) async fn open(target: &Target, index: usize) -> anyhow::Result<EventStream> {
        let mut tcp = target.tcp(index).await?;
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
            target.events_path(),
            target.addr()
        );
        if let Some(origin) = target.origin().and_then(|o| o.to_str().ok()) {
            head.push_str(&format!("Origin: {origin}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        let (end, headers) = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break (
                    end,
                    String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase(),
                );
            }
            if buf.len() > 64 * 1024 {
                bail!("no end to the response head");
            }
            let mut chunk = [0u8; 4096];
            let n = tcp
                .read(&mut chunk)
                .await
                .context("reading the response head")?;
            if n == 0 {
                bail!("closed before the response head");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let status = headers.lines().next().unwrap_or_default().to_owned();
        if !status.starts_with("http/1.1 200") {
            let rest = String::from_utf8_lossy(&buf[end + 4..]);
            bail!("the event stream was refused: {status} {}", rest.trim());
        }
        let chunked = headers
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        let mut stream = EventStream {
            tcp,
            raw: buf[end + 4..].to_vec(),
            body: Vec::new(),
            chunked,
            done: false,
        };
        // The head's read may have brought the first events too.
        stream.dechunk()?;
        loop {
            match stream.next_event().await? {
                Some(event) if event.name == "confirm_subscription" => return Ok(stream),
                Some(event) if event.name == "welcome" => {}
                Some(event) => bail!("expected confirm_subscription, got {event:?}"),
                None => bail!("the stream ended before confirm_subscription"),
            }
        }
    }

    /// The next event (comments are skipped); `None` once the stream ended.
    pub(crate) async fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            while let Some(end) = find(&self.body, b"\n\n") {
                let text =
                    std::str::from_utf8(&self.body[..end]).context("an event that is not UTF-8")?;
                let event = Event::parse(text);
                self.body.drain(..end + 2);
                if event.is_some() {
                    return Ok(event);
                }
            }
            if self.done {
                return Ok(None);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.tcp.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.raw.extend_from_slice(&chunk[..n]);
            self.dechunk()?;
        }
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) -> anyhow::Result<()> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        let mut at = 0;
        while let Some(line) = find(&self.raw[at..], b"\r\n") {
            let size = std::str::from_utf8(&self.raw[at..at + line])
                .ok()
                .map(|s| s.split(';').next().unwrap_or_default().trim())
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .context("a malformed chunk size")?;
            if size == 0 {
                self.done = true;
                break;
            }
            let start = at + line + 2;
            if self.raw.len() < start + size + 2 {
                break;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            at = start + size + 2;
        }
        self.raw.drain(..at);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_as_the_standard_reads_them() {
        assert_eq!(Event::parse(": ping"), None);
        assert_eq!(
            Event::parse("event: welcome\ndata: {\"type\":\"welcome\"}"),
            Some(Event {
                name: "welcome".into(),
                data: r#"{"type":"welcome"}"#.into(),
                has_id: false
            })
        );
        assert_eq!(
            Event::parse("data: a\ndata: b\nid: 3/e/all"),
            Some(Event {
                name: String::new(),
                data: "a\nb".into(),
                has_id: true
            })
        );
    }
}
