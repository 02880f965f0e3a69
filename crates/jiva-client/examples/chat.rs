//! Connects to a running JivaChat server, sends one message, and prints every event until
//! interrupted (Ctrl-C closes the connection cleanly).
//!
//! ```text
//! cargo run -p jivachat-server &          # a server on 127.0.0.1:3030 (auth off)
//! cargo run -p jiva-client --example chat -- ws://127.0.0.1:3030/ \
//!     0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21 supervisor "hello from Rust" [v0|v1] [token]
//! ```
//!
//! Over TLS, name the CA that signed the server's certificate (PEM) in `JIVA_CLIENT_CA`:
//!
//! ```text
//! JIVA_CLIENT_CA=ca.pem cargo run -p jiva-client --example chat -- wss://chat.example:443/ …
//! ```
#![allow(clippy::print_stdout)]

use jiva_client::{ChatKind, Client, Config, Event, Protocol, Token};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let (Some(url), Some(agent)) = (arg(0), arg(1)) else {
        return Err(
            "usage: chat <ws-url> <agent-id> [supervisor|copilot] [text] [v0|v1] [token]".into(),
        );
    };
    let chat = match arg(2) {
        Some("copilot") => ChatKind::Copilot,
        _ => ChatKind::Supervisor,
    };
    let mut config = Config::new(url, agent, chat);
    if arg(4) == Some("v0") {
        config.protocol = Protocol::V0;
    }
    config.token = arg(5).map(Token::new);
    if let Ok(ca) = std::env::var("JIVA_CLIENT_CA") {
        config.tls_roots_pem = vec![std::fs::read_to_string(ca)?];
    }
    let (client, mut events) = Client::connect(config).await?;
    if let Some(text) = arg(3) {
        match client.protocol_is_v1() {
            true => {
                let ack = client.send(text).await?;
                tokio::spawn(async move {
                    match ack.await {
                        Ok(ack) => println!("# stored: {} (seq {})", ack.message_id, ack.seq),
                        Err(e) => println!("# not stored: {e}"),
                    }
                });
            }
            false => client.say(text).await?,
        }
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.next() => match event {
                None => break,
                Some(Event::V1(frame)) => println!("{}", frame.to_json()),
                Some(Event::V0(frame)) => println!("{frame:?}"),
                Some(other) => println!("# {other:?}"),
            },
        }
    }
    client.close().await;
    Ok(())
}
