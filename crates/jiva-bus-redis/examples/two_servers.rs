//! Two buses on one Redis stand for two JivaChat servers: both follow a chat, one publishes a
//! stored message, the other receives it.
//!
//! `redis-server --port 6390 --save '' --appendonly no &` then
//! `cargo run -p jiva-bus-redis --example two_servers` (or set `REDIS_URL`).

use std::time::Duration;

use futures_util::StreamExt;
use jiva_bus_redis::{Config, RedisBus, RedisUrl};
use jiva_core::{AgentId, Bus, ChatId, ConnectionType, Message, Sender, Seq};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390".into());
    let first = RedisBus::connect(Config::new(RedisUrl::new(url.clone()))).await?;
    let second = RedisBus::connect(Config::new(RedisUrl::new(url))).await?;
    let chat = ChatId::new(AgentId::parse("demo-agent")?, ConnectionType::Supervisor);
    first.follow(&chat).await?;
    second.follow(&chat).await?;
    let mut received = second.incoming()?;

    let mut message = Message::user(chat, Sender::Agent, "hello from the first server".into());
    message.seq = Some(Seq::new(1));
    first.publish(&message);

    match tokio::time::timeout(Duration::from_secs(5), received.next()).await {
        Ok(Some(got)) => {
            let seq = got.seq.map_or(0, Seq::get);
            eprintln!(
                "received message {} (seq {seq}) on the second server",
                got.id
            );
        }
        _ => eprintln!("nothing received within 5 s"),
    }
    Ok(())
}
