//! The echo server's client: each line of stdin goes to `EchoChannel` as `echo`, and each
//! reply's `text` comes back on stdout, in order.
//!
//! Run with: `cargo run -p example-echo --bin echo-client -- ws://127.0.0.1:3000/cable`
//! (the URL is optional; that one is the default).
//!
//! The consumer reconnects by itself (the stock `@rails/actioncable` schedule: 6–18 s after a
//! server restart). What it does not do is queue commands while disconnected, as the stock
//! consumer does not: so this client keeps every line until its reply has come, and sends the
//! unanswered ones again once the subscription is confirmed on the new connection. Replies on
//! one connection come in the order of the commands, so the oldest unanswered line is the one
//! a reply answers.

use actioncable_client::{Consumer, Event};
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::io::BufRead as _;
use std::process::ExitCode;
use tokio::sync::mpsc;

/// At most this many lines wait for their reply at once, so a long input does not pile up in
/// the server's send buffer.
const IN_FLIGHT: usize = 64;

/// What `EchoChannel` transmits back (`{"action":"echo","text":…}`).
#[derive(Debug, Deserialize)]
struct Reply {
    text: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:3000/cable".to_owned());
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("echo-client: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<(), String> {
    let consumer = Consumer::connect(url).map_err(|e| e.to_string())?;
    let mut echo = consumer
        .subscribe::<Reply>("EchoChannel")
        .map_err(|e| e.to_string())?;
    let mut lines = stdin_lines();

    // Lines not sent yet, lines sent and not answered yet (both in input order).
    let mut unsent = VecDeque::new();
    let mut unanswered = VecDeque::new();
    let mut stdin_open = true;
    let mut subscribed = false;

    loop {
        if subscribed {
            while unanswered.len() < IN_FLIGHT
                && let Some(line) = unsent.pop_front()
            {
                match echo.perform("echo", json!({ "text": &line })).await {
                    Ok(()) => unanswered.push_back(line),
                    // Not connected at the moment: sent again after the next confirmation.
                    Err(_) => {
                        unsent.push_front(line);
                        subscribed = false;
                        break;
                    }
                }
            }
        }
        if !stdin_open && unsent.is_empty() && unanswered.is_empty() {
            echo.unsubscribe().await;
            consumer.disconnect().await;
            return Ok(());
        }
        tokio::select! {
            line = lines.recv(), if stdin_open => match line {
                Some(line) => unsent.push_back(line),
                None => stdin_open = false,
            },
            event = echo.recv() => match event {
                Some(Event::Connected { reconnected }) => {
                    if reconnected {
                        eprintln!("echo-client: reconnected");
                    }
                    subscribed = true;
                }
                Some(Event::Received(reply)) => {
                    unanswered.pop_front();
                    println!("{}", reply.text);
                }
                Some(Event::Undecodable(error)) => {
                    unanswered.pop_front();
                    eprintln!("echo-client: {error}");
                }
                Some(Event::Disconnected { reason, reconnect: true }) => {
                    eprintln!("echo-client: {reason}; reconnecting with backoff");
                    subscribed = false;
                    // Their replies will not come on this connection: send them again.
                    while let Some(line) = unanswered.pop_back() {
                        unsent.push_front(line);
                    }
                }
                Some(Event::Disconnected { reason, reconnect: false }) => {
                    return Err(format!("{reason}; not reconnecting"));
                }
                Some(Event::Rejected) => return Err("the server rejected EchoChannel".into()),
                Some(_) => {}
                None => return Err("the consumer stopped".into()),
            },
        }
    }
}

/// Stdin's lines, read on a thread of their own (a blocking read); the channel ends with stdin.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
