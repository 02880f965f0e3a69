//! The latest page, resume, reload and paging.

use jiva_core::{AgentId, ChatId, ConnectionType, Message, Sender};
use jivachat_server::Config;
use serde_json::{Value, json};

use super::{V1, of_type};
use crate::support::{AGENT, Backing, StoreKind, TestServer};

fn open_limits(config: &mut Config) {
    config.transport.limits.messages_per_sec = 100_000;
    config.transport.limits.message_burst = 100_000;
}

/// A server whose supervisor chat of [`AGENT`] already holds `n` messages `m-1` … `m-n`
/// (numbered 1 … n), written to the store before it starts.
async fn server_with_history(n: usize, tweak: fn(&mut Config)) -> (TestServer, tempfile::TempDir) {
    server_on_with_history(StoreKind::Sqlite, n, tweak).await
}

/// [`server_with_history`] on a store of `kind`.
async fn server_on_with_history(
    kind: StoreKind,
    n: usize,
    tweak: fn(&mut Config),
) -> (TestServer, tempfile::TempDir) {
    let (backing, dir) = Backing::fresh(kind).await;
    {
        let mut config = Config::with_data_dir(dir.path());
        tweak(&mut config);
        let store = backing.store(&config).await;
        let chat = ChatId::new(AgentId::parse(AGENT).unwrap(), ConnectionType::Supervisor);
        store.register_chat(&chat).await.unwrap();
        // One at a time, so that `m-i` is numbered i.
        for i in 1..=n {
            let message = Message::user(chat.clone(), Sender::Agent, format!("m-{i}"));
            store.append(&message).await.unwrap();
        }
    }
    let server = TestServer::start_in(&backing, tweak).await;
    (server, dir)
}

fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_fresh_connection_gets_the_latest_fifty_and_has_older() {
    let (server, _dir) = server_with_history(60, open_limits).await;
    let (_v1, before, live) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    let latest = of_type(&before, "latest");
    assert_eq!(seqs(&latest[0]["messages"]), (11..=60).collect::<Vec<_>>());
    assert_eq!(latest[0]["has_older"], true);
    assert_eq!(latest[0]["messages"][0]["text"], "m-11");
    assert_eq!(live, Some(60));
    assert!(of_type(&before, "message").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_resume_delivers_exactly_what_came_after_since_then_live() {
    let (server, _dir) = server_with_history(30, open_limits).await;
    let url = server.chat_url(AGENT, "supervisor");
    let (mut v1, before, live) = V1::open(&format!("{url}&since=25")).await;
    assert!(of_type(&before, "latest").is_empty());
    let replayed: Vec<u64> = of_type(&before, "message")
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, [26, 27, 28, 29, 30]);
    assert_eq!(live, Some(30));
    v1.say("c-live", "agent", "live").await;
    let (frames, ack) = v1.until("ack").await;
    assert_eq!(ack["seq"], 31);
    assert_eq!(of_type(&frames, "message")[0]["seq"], 31);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_while_messages_flow_has_no_gap_and_no_duplicate() {
    let (server, _dir) = server_with_history(100, open_limits).await;
    let url = server.chat_url(AGENT, "supervisor");
    const LIVE: u64 = 300;
    let (mut sender, _, _) = V1::open(&url).await;
    let flow = tokio::spawn(async move {
        for i in 0..LIVE {
            sender.say(&format!("live-{i}"), "agent", "flowing").await;
        }
        // Every ack, so the last message is stored before the reader is checked.
        let mut acked = 0;
        while acked < LIVE {
            if sender.recv().await["type"] == "ack" {
                acked += 1;
            }
        }
    });
    let (mut v1, before, _) = V1::open(&format!("{url}&since=40")).await;
    let mut seen: Vec<u64> = of_type(&before, "message")
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    while seen.last() != Some(&(100 + LIVE)) {
        let frame = v1.expect("message").await;
        seen.push(frame["seq"].as_u64().unwrap());
    }
    flow.await.unwrap();
    assert_eq!(seen, (41..=100 + LIVE).collect::<Vec<_>>());
    assert!(of_type(&v1.drain().await, "message").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_resume_from_a_point_the_chat_has_not_reached_is_told_to_reload() {
    let (server, _dir) = server_with_history(3, open_limits).await;
    let url = server.chat_url(AGENT, "supervisor");
    let (_v1, before, live) = V1::open(&format!("{url}&since=99")).await;
    let reload = of_type(&before, "reload");
    assert_eq!(reload.len(), 1);
    assert_eq!(reload[0]["code"], "unknown_point");
    assert_eq!(reload[0]["since"], 99);
    let latest = of_type(&before, "latest");
    assert_eq!(seqs(&latest[0]["messages"]), [1, 2, 3]);
    assert_eq!(live, Some(3));
    server.stop().await;
}

#[tokio::test]
async fn a_resume_further_behind_than_the_server_replays_is_told_to_reload() {
    fn tweak(config: &mut Config) {
        open_limits(config);
        config.transport.v1_resume_max = 10;
    }
    let (server, _dir) = server_with_history(60, tweak).await;
    let url = server.chat_url(AGENT, "supervisor");
    let (_v1, before, _) = V1::open(&format!("{url}&since=5")).await;
    assert_eq!(of_type(&before, "reload")[0]["code"], "too_far_behind");
    assert!(of_type(&before, "message").is_empty());
    assert_eq!(of_type(&before, "latest")[0]["has_older"], true);
    // Within the limit, it resumes.
    let (_v1, before, _) = V1::open(&format!("{url}&since=50")).await;
    assert!(of_type(&before, "reload").is_empty());
    assert_eq!(of_type(&before, "message").len(), 10);
    server.stop().await;
}

#[tokio::test]
async fn paging_ten_thousand_messages_by_hundred_sees_each_once_in_order() {
    const N: usize = 10_000;
    let (server, _dir) = server_with_history(N, open_limits).await;
    let (mut v1, before, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    let latest = of_type(&before, "latest")[0].clone();
    let mut all = seqs(&latest["messages"]);
    let mut has_older = latest["has_older"].as_bool().unwrap();
    let mut pages = 0;
    while has_older {
        let first = all[0];
        v1.send(json!({"type":"page","ref":format!("p{pages}"),"before":first,"limit":100}))
            .await;
        let page = v1.expect("page").await;
        assert_eq!(page["ref"], format!("p{pages}"));
        assert_eq!(page["before"], first);
        let mut older = seqs(&page["messages"]);
        assert!(older.len() <= 100);
        has_older = page["has_older"].as_bool().unwrap();
        older.extend(all);
        all = older;
        pages += 1;
    }
    assert_eq!(all, (1..=N as u64).collect::<Vec<_>>());
    assert_eq!(pages, (N - 50).div_ceil(100));
    server.stop().await;
}

#[tokio::test]
async fn a_page_limit_is_capped_and_before_must_be_positive() {
    let (server, _dir) = server_with_history(250, open_limits).await;
    let (mut v1, _, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    v1.send(json!({"type":"page","before":251,"limit":1000}))
        .await;
    let page = v1.expect("page").await;
    assert_eq!(seqs(&page["messages"]), (151..=250).collect::<Vec<_>>());
    assert_eq!(page["ref"], Value::Null);
    v1.send(json!({"type":"page","ref":"z","before":0})).await;
    let e = v1.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("invalid_frame"), Some("z"))
    );
    server.stop().await;
}

/// The latest page, a resume and paging on each store (DynamoDB serves `page` and resume
/// through the port's default, which walks the history).
async fn latest_resume_and_pages_in_chat_order(kind: StoreKind) {
    let (server, _dir) = server_on_with_history(kind, 130, open_limits).await;
    let url = server.chat_url(AGENT, "supervisor");
    let (mut v1, before, _) = V1::open(&url).await;
    let latest = of_type(&before, "latest")[0].clone();
    assert_eq!(seqs(&latest["messages"]), (81..=130).collect::<Vec<_>>());
    v1.send(json!({"type":"page","before":81,"limit":60})).await;
    let page = v1.expect("page").await;
    assert_eq!(seqs(&page["messages"]), (21..=80).collect::<Vec<_>>());
    assert_eq!(page["has_older"], true);
    v1.send(json!({"type":"page","before":21,"limit":60})).await;
    let page = v1.expect("page").await;
    assert_eq!(seqs(&page["messages"]), (1..=20).collect::<Vec<_>>());
    assert_eq!(page["has_older"], false);
    let (_v1, before, live) = V1::open(&format!("{url}&since=120")).await;
    let replayed: Vec<u64> = of_type(&before, "message")
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, (121..=130).collect::<Vec<_>>());
    assert_eq!(live, Some(130));
    server.stop().await;
}

crate::on_both_stores!(latest_resume_and_pages_in_chat_order);
