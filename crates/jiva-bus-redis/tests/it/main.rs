//! Integration tests of the Redis bus against a real `redis-server` that each test starts on a
//! free loopback port (`scripts/ensure-redis.sh` installs it). Two buses stand for two servers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use futures_util::StreamExt;
use jiva_bus_redis::testing::LocalRedis;
use jiva_bus_redis::{Config, RedisBus, RedisUrl};
use jiva_core::{AgentId, Bus, BusError, ChatId, ConnectionType, Incoming, Message, Sender, Seq};

/// How long any expected event may take (a bound, not a sleep).
const PATIENCE: Duration = Duration::from_secs(20);

/// A `redis-server` on 127.0.0.1 for one test.
struct Redis(LocalRedis);

impl Redis {
    async fn start() -> Self {
        Self(LocalRedis::start().await.unwrap())
    }

    async fn run(&mut self) {
        self.0.run().await.unwrap();
    }

    async fn stop(&mut self) {
        self.0.stop().await;
    }

    fn config(&self) -> Config {
        self.0.config()
    }
}

fn chat(kind: ConnectionType) -> ChatId {
    ChatId::new(AgentId::parse(&uuid_like()).unwrap(), kind)
}

fn uuid_like() -> String {
    jiva_core::MessageId::new_v7().to_string()
}

fn stored(chat: &ChatId, text: &str, seq: u64) -> Message {
    let mut m = Message::user(chat.clone(), Sender::Agent, text.into());
    m.seq = Some(Seq::new(seq));
    m
}

async fn next(incoming: &mut Incoming) -> Message {
    tokio::time::timeout(PATIENCE, incoming.next())
        .await
        .expect("no message arrived in time")
        .expect("the incoming stream ended")
}

/// Publishes `marker` until `incoming` receives it (a publish while a subscription is being set
/// up on the other side may be lost: pub/sub is best effort), then returns it.
async fn deliver(from: &RedisBus, incoming: &mut Incoming, chat: &ChatId, text: &str) -> Message {
    tokio::time::timeout(PATIENCE, async {
        let mut seq = 1;
        loop {
            from.publish(&stored(chat, text, seq));
            seq += 1;
            // Earlier messages (published while Redis was away) may still arrive: skip them.
            while let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(200), incoming.next()).await
            {
                if m.text() == text {
                    return m;
                }
            }
        }
    })
    .await
    .expect("delivery did not resume")
}

#[tokio::test]
async fn a_published_message_reaches_the_other_server_once_and_not_its_publisher() {
    let redis = Redis::start().await;
    let a = RedisBus::connect(redis.config()).await.unwrap();
    let b = RedisBus::connect(redis.config()).await.unwrap();
    assert!(a.connected() && b.connected());
    let mut from_a = a.incoming().unwrap();
    let mut from_b = b.incoming().unwrap();
    assert!(matches!(b.incoming(), Err(BusError::AlreadyTaken)));
    let c = chat(ConnectionType::Supervisor);
    let other = chat(ConnectionType::Copilot);
    a.follow(&c).await.unwrap();
    b.follow(&c).await.unwrap();
    b.follow(&c).await.unwrap(); // idempotent: still one subscription

    let mut answer = Message::copilot_answer(c.clone(), "answer }".into());
    answer.seq = Some(Seq::new(1));
    let text = stored(&c, "hello 🙂", 2);
    a.publish(&answer);
    a.publish(&stored(&other, "not followed", 1));
    a.publish(&text);
    assert_eq!(next(&mut from_b).await, answer);
    assert_eq!(next(&mut from_b).await, text);
    // b's own message reaches a, and a saw nothing of its own: its first message is b's.
    let reply = stored(&c, "reply", 3);
    b.publish(&reply);
    assert_eq!(next(&mut from_a).await, reply);
    // Nothing else arrives at b (its own reply and the unfollowed chat are not handed on):
    // a marker published after them is the next message.
    let marker = stored(&c, "marker", 4);
    a.publish(&marker);
    assert_eq!(next(&mut from_b).await, marker);
}

#[tokio::test]
async fn unfollowing_stops_delivery() {
    let redis = Redis::start().await;
    let a = RedisBus::connect(redis.config()).await.unwrap();
    let b = RedisBus::connect(redis.config()).await.unwrap();
    let mut from_a = a.incoming().unwrap();
    let c = chat(ConnectionType::Supervisor);
    let d = chat(ConnectionType::Supervisor);
    a.follow(&c).await.unwrap();
    a.follow(&d).await.unwrap();
    b.publish(&stored(&c, "before", 1));
    assert_eq!(next(&mut from_a).await.text(), "before");
    a.unfollow(&c).await.unwrap();
    a.unfollow(&c).await.unwrap(); // idempotent
    b.publish(&stored(&c, "after", 2));
    b.publish(&stored(&d, "still followed", 1));
    // Messages of one publisher arrive in order, so "after" would have come first.
    assert_eq!(next(&mut from_a).await.text(), "still followed");
}

#[tokio::test]
async fn delivery_resumes_after_redis_restarts() {
    let mut redis = Redis::start().await;
    let a = RedisBus::connect(redis.config()).await.unwrap();
    let b = RedisBus::connect(redis.config()).await.unwrap();
    let mut from_a = b.incoming().unwrap();
    let c = chat(ConnectionType::Copilot);
    b.follow(&c).await.unwrap();
    assert_eq!(
        deliver(&a, &mut from_a, &c, "before").await.text(),
        "before"
    );

    let mut a_state = a.watch_connected();
    let mut b_state = b.watch_connected();
    redis.stop().await;
    tokio::time::timeout(PATIENCE, b_state.wait_for(|up| !*up))
        .await
        .expect("b never noticed")
        .unwrap();
    assert!(!b.connected());
    // Publishing while Redis is away never blocks (the message may be lost, or published
    // once Redis is back: pub/sub is best effort).
    a.publish(&stored(&c, "while away", 1));

    redis.run().await;
    tokio::time::timeout(PATIENCE, b_state.wait_for(|up| *up))
        .await
        .expect("b did not reconnect")
        .unwrap();
    tokio::time::timeout(PATIENCE, a_state.wait_for(|up| *up))
        .await
        .expect("a did not reconnect")
        .unwrap();
    // b is subscribed again without being told to follow again.
    let got = deliver(&a, &mut from_a, &c, "after").await;
    assert_eq!(got.text(), "after");
}

#[tokio::test]
async fn a_bus_started_while_redis_is_down_connects_when_it_comes_up() {
    use jiva_core::{LeaseToken, TurnLock};
    let mut redis = Redis(LocalRedis::reserve().unwrap());
    let mut config = redis.config();
    config.response_timeout = Duration::from_millis(500);
    let a = RedisBus::connect(config).await.unwrap();
    assert!(!a.connected(), "nothing listens yet");
    let c = chat(ConnectionType::Supervisor);
    // Followed while Redis is away: refused now, subscribed once connected.
    assert!(matches!(a.follow(&c).await, Err(BusError::Unavailable(_))));
    assert!(matches!(
        a.try_acquire(&c, &LeaseToken::new(), Duration::from_secs(1))
            .await,
        Err(jiva_core::TurnLockError::Unavailable(_))
    ));
    let mut up = a.watch_connected();
    redis.run().await;
    tokio::time::timeout(PATIENCE, up.wait_for(|connected| *connected))
        .await
        .expect("the bus never connected")
        .unwrap();
    let b = RedisBus::connect(redis.config()).await.unwrap();
    let mut from_b = a.incoming().unwrap();
    let got = deliver(&b, &mut from_b, &c, "late").await;
    assert_eq!(got.text(), "late");
    // The URL (and any password in it) never shows in Debug output.
    let secret = RedisUrl::new("redis://user:hunter2@127.0.0.1:1");
    assert!(!format!("{secret:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_turn_lease_has_one_holder_until_released_or_expired() {
    use jiva_core::{LeaseToken, TurnLock};
    let redis = Redis::start().await;
    let a = RedisBus::connect(redis.config()).await.unwrap();
    let b = RedisBus::connect(redis.config()).await.unwrap();
    let chat = chat(ConnectionType::Copilot);
    let (mine, theirs) = (LeaseToken::new(), LeaseToken::new());
    let ttl = Duration::from_secs(30);
    assert!(a.try_acquire(&chat, &mine, ttl).await.unwrap());
    assert!(!b.try_acquire(&chat, &theirs, ttl).await.unwrap());
    assert!(a.renew(&chat, &mine, ttl).await.unwrap());
    // Only the holder renews or releases.
    assert!(!b.renew(&chat, &theirs, ttl).await.unwrap());
    b.release(&chat, &theirs).await.unwrap();
    assert!(!b.try_acquire(&chat, &theirs, ttl).await.unwrap());
    a.release(&chat, &mine).await.unwrap();
    assert!(
        b.try_acquire(&chat, &theirs, Duration::from_millis(100))
            .await
            .unwrap()
    );
    // A holder that stops renewing (a dead server) frees the chat when the lease expires.
    tokio::time::timeout(PATIENCE, async {
        while !a.try_acquire(&chat, &mine, ttl).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lease never expired");
    assert!(!b.renew(&chat, &theirs, ttl).await.unwrap());
}
