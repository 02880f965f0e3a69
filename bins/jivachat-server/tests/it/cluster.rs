//! Issue 11: several server processes on one DynamoDB (moto) and one Redis (`--bus redis`).
//! Every socket on every node sees the chat's one order; each stored message is notified once;
//! a Redis outage stops only cross-node delivery; a killed node loses nothing acknowledged.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jiva_bus_redis::testing::LocalRedis;
use jiva_store_dynamo::testing::LocalDynamo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::metrics::{ServerProcess, get};
use crate::support::*;

/// The append deadline the nodes are given (`JIVA_DYNAMODB_APPEND_DEADLINE_MS`).
const APPEND_DEADLINE: Duration = Duration::from_secs(60);

/// How long cross-node delivery may take to resume once Redis is back.
const RESUME_WITHIN: Duration = Duration::from_secs(5);

/// Fresh tables on the shared moto server, and the environment that points a server at them
/// and at `redis` (plus `extra`).
pub(crate) async fn cluster_env(
    redis: &LocalRedis,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let dynamo = LocalDynamo::shared().unwrap();
    let config = dynamo.config();
    dynamo.store_with(config.clone()).await.unwrap();
    let deadline = APPEND_DEADLINE.as_millis().to_string();
    let mut env: Vec<(String, String)> = [
        ("JIVA_STORE", "dynamodb"),
        ("JIVA_DYNAMODB_CHATS_TABLE", config.chats_table.as_str()),
        (
            "JIVA_DYNAMODB_MESSAGES_TABLE",
            config.messages_table.as_str(),
        ),
        ("AWS_ENDPOINT_URL", dynamo.endpoint()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("JIVA_BUS", "redis"),
        ("JIVA_REDIS_URL", redis.url().as_str()),
        // Moto answers a few hundred requests a second on a busy machine: 20 senders racing
        // for a chat's next numbers can wait on it longer than DynamoDB's 3 s deadline.
        ("JIVA_DYNAMODB_APPEND_DEADLINE_MS", deadline.as_str()),
        // Many test sockets come from one address.
        ("JIVA_MAX_SOCKETS_PER_IP", "0"),
        ("JIVA_HANDSHAKES_PER_IP_PER_SEC", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// Waits until the node at `addr` reports its bus connected (`jiva_bus_connected` 1).
async fn bus_connected(addr: SocketAddr) {
    let connected = tokio::time::timeout(PATIENCE, async {
        loop {
            let (_, _, metrics) = get(addr, "/metrics").await;
            if crate::metrics::sample(&metrics, "jiva_bus_connected") == Some(1.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        connected.is_ok(),
        "the node at {addr} never connected to Redis"
    );
}

pub(crate) fn start_node(env: &[(String, String)]) -> ServerProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::start_with(&env)
}

fn chat_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/?agentID={AGENT}&secondaryID=supervisor")
}

/// The `message_id` of a stored message's frame (none for other frames).
fn stored_id(frame: &Value) -> Option<String> {
    frame.get("message_id")?.as_str().map(str::to_owned)
}

/// Reads `socket` until it has shown `total` stored messages; returns their ids in order.
async fn read_ids<S, E>(mut stream: S, total: usize) -> Vec<String>
where
    S: futures_util::Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut ids = Vec::with_capacity(total);
    while ids.len() < total {
        // The next message may be an append that keeps trying for a free number against
        // a slow moto for up to the nodes' append deadline.
        let frame = tokio::time::timeout(APPEND_DEADLINE + PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {total} messages arrived", ids.len()))
            .expect("socket ended")
            .expect("socket failed");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            ids.extend(stored_id(&value));
        }
    }
    ids
}

/// Sends `each` messages from sender `s`, one at a time, as a client would: the next once the
/// previous one is echoed. No message is ever refused: the nodes' stores keep trying for a free
/// number under contention (an error frame fails the test). Meanwhile records every stored
/// message shown, until `total`; `halfway` is told when half are sent.
async fn send_all(
    mut ws: Ws,
    s: usize,
    each: usize,
    total: usize,
    halfway: Option<Arc<tokio::sync::Notify>>,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(total);
    for n in 0..each {
        if n == each / 2 {
            if let Some(halfway) = &halfway {
                halfway.notify_one();
            }
        }
        let text = format!("{s}-{n}");
        say(&mut ws, "agent", &text).await;
        loop {
            // Its echo comes once the append finds a free number (the append deadline).
            let frame = next_json_within(&mut ws, APPEND_DEADLINE + PATIENCE).await;
            assert!(
                frame.get("error").is_none(),
                "message {text} was refused: {frame}"
            );
            let Some(id) = stored_id(&frame) else {
                continue;
            };
            ids.push(id);
            if frame["message"] == text.as_str() {
                break;
            }
        }
    }
    ids.extend(read_ids(&mut ws, total - ids.len()).await);
    ids
}

/// Every stored message's id, in the chat's order, as a fresh socket on `addr` replays it.
async fn replay_ids(addr: SocketAddr) -> Vec<String> {
    let frames = replay_frames(&chat_url(addr)).await;
    frames.iter().filter_map(stored_id).collect()
}

/// An AppSync stand-in that counts the notifications it is sent.
async fn counting_appsync() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post(move |body: String| {
            let counted = Arc::clone(&counted);
            async move {
                let body: Value = serde_json::from_str(&body).unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let mut created = body["variables"]["input"].clone();
                created["id"] = json!("n-1");
                created["read"] = json!(false);
                created["createdAt"] = json!("2026-11-26T00:00:00.000Z");
                created["updatedAt"] = json!("2026-11-26T00:00:00.000Z");
                created["__typename"] = json!("Notification");
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json!({"data": {"createNotification": created}}).to_string(),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_show_every_message_once_in_the_one_order_and_notify_once() {
    const SENDERS: usize = 20;
    const EACH: usize = 50;
    const TOTAL: usize = SENDERS * EACH;
    let _turn = crate::support::HEAVY_ON_MOTO.lock().await;
    let redis = LocalRedis::start().await.unwrap();
    let (appsync, notified) = counting_appsync().await;
    let env = cluster_env(
        &redis,
        &[
            ("GRAPHQL_API_URL", &appsync),
            ("GRAPHQL_API_KEY", "da2-e2e"),
        ],
    )
    .await;
    let nodes: Vec<ServerProcess> = (0..3).map(|_| start_node(&env)).collect();

    // One watcher per node, and the senders spread over the nodes (each also a watcher).
    let mut readers = Vec::new();
    for node in &nodes {
        let ws = connect(&chat_url(node.addr)).await;
        readers.push(tokio::spawn(read_ids(ws, TOTAL)));
    }
    let halfway = Arc::new(tokio::sync::Notify::new());
    for s in 0..SENDERS {
        let ws = connect(&chat_url(nodes[s % nodes.len()].addr)).await;
        let halfway = Arc::clone(&halfway);
        readers.push(tokio::spawn(async move {
            send_all(ws, s, EACH, TOTAL, (s == 0).then_some(halfway)).await
        }));
    }
    // One socket joins mid-way, on the third node: replay, then live, the same order.
    halfway.notified().await;
    let late = connect(&chat_url(nodes[2].addr)).await;
    readers.push(tokio::spawn(read_ids(late, TOTAL)));

    let mut seen = Vec::new();
    for reader in readers {
        seen.push(reader.await.unwrap());
    }
    let replay = replay_ids(nodes[1].addr).await;
    assert_eq!(replay.len(), TOTAL, "every message is stored once");
    assert_eq!(replay.iter().collect::<HashSet<_>>().len(), TOTAL);
    for (i, ids) in seen.iter().enumerate() {
        let differ = ids.iter().zip(&replay).position(|(a, b)| a != b);
        assert!(
            differ.is_none() && ids.len() == replay.len(),
            "socket {i} saw another order than the replay: first at {differ:?} of {}",
            ids.len()
        );
    }

    // One notification per stored message, from the node that stored it.
    tokio::time::timeout(PATIENCE, async {
        while notified.load(Ordering::SeqCst) < TOTAL {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {TOTAL} notified", notified.load(Ordering::SeqCst)));
    // Every socket has everything by now: a node that notified what it received would have.
    assert_eq!(notified.load(Ordering::SeqCst), TOTAL);
}

/// Sends `text` on `ws` and returns its stored id from the echo.
async fn say_and_echo(ws: &mut Ws, text: &str) -> String {
    say(ws, "agent", text).await;
    // The echo waits for the append, which these nodes allow `APPEND_DEADLINE` (moto is shared
    // with the other tests, and slow while the thousand-client test runs).
    tokio::time::timeout(APPEND_DEADLINE, async {
        loop {
            let frame = next_json_within(ws, APPEND_DEADLINE).await;
            if frame["message"] == text {
                return stored_id(&frame).unwrap();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no echo of {text} within {APPEND_DEADLINE:?}"))
}

/// Waits up to `within` for a frame showing `text` on `ws`.
async fn shows(ws: &mut Ws, text: &str, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            let frame = next_json(ws).await;
            if frame["message"] == text {
                return;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_redis_outage_stops_only_cross_node_delivery_and_it_resumes() {
    let mut redis = LocalRedis::start().await.unwrap();
    let env = cluster_env(&redis, &[]).await;
    let (a, b) = (start_node(&env), start_node(&env));
    let mut on_a = connect(&chat_url(a.addr)).await;
    let mut on_b = connect(&chat_url(b.addr)).await;
    let mut stored = vec![say_and_echo(&mut on_a, "before").await];
    assert!(shows(&mut on_b, "before", PATIENCE).await);

    redis.stop().await;
    stored.push(goes_on_alone(a.addr, &mut on_a, "during").await);

    redis.run().await.unwrap();
    // Cross-node delivery resumes within RESUME_WITHIN of Redis coming back: probe until a
    // message stored on A is shown on B.
    let back = tokio::time::Instant::now();
    let mut probe = 0;
    loop {
        let text = format!("probe {probe}");
        stored.push(say_and_echo(&mut on_a, &text).await);
        if shows(&mut on_b, &text, Duration::from_millis(250)).await {
            break;
        }
        assert!(
            back.elapsed() < RESUME_WITHIN,
            "cross-node delivery did not resume within {RESUME_WITHIN:?}"
        );
        probe += 1;
    }
    // Nothing stored is missing from either node's replay.
    for node in [&a, &b] {
        let replay = replay_ids(node.addr).await;
        for id in &stored {
            assert!(replay.contains(id), "{id} missing from a replay");
        }
    }
}

/// With the bus down, the chat goes on inside the node at `addr`: `text` said on `on` is
/// stored, echoed and shown to another socket of the node; `/readyz` says the bus is down (and
/// stays 200), `jiva_bus_connected` is 0. Returns the message's id.
async fn goes_on_alone(addr: SocketAddr, on: &mut Ws, text: &str) -> String {
    let mut also = connect(&chat_url(addr)).await;
    replayed_messages(&mut also).await;
    let id = say_and_echo(on, text).await;
    assert!(shows(&mut also, text, PATIENCE).await);
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (status, _, body) = get(addr, "/readyz").await;
            assert_eq!(status, 200);
            if body.contains("bus down") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("/readyz never said the bus was down");
    let (_, _, metrics) = get(addr, "/metrics").await;
    assert_eq!(
        crate::metrics::sample(&metrics, "jiva_bus_connected"),
        Some(0.0)
    );
    id
}

/// Says probes on `from` until one is shown on `to`, within [`PATIENCE`].
async fn until_delivered(from: &mut Ws, to: &mut Ws, label: &str) {
    let start = tokio::time::Instant::now();
    let mut probe = 0;
    loop {
        let text = format!("{label} {probe}");
        say_and_echo(from, &text).await;
        if shows(to, &text, Duration::from_millis(250)).await {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{label}: cross-node delivery did not begin within {PATIENCE:?}"
        );
        probe += 1;
    }
}

#[tokio::test]
async fn a_node_started_while_redis_is_down_serves_local_chats_and_joins_when_redis_comes() {
    // Nothing listens on the Redis port yet.
    let mut redis = LocalRedis::reserve().unwrap();
    let env = cluster_env(&redis, &[]).await;
    let a = start_node(&env);
    let mut on_a = connect(&chat_url(a.addr)).await;
    goes_on_alone(a.addr, &mut on_a, "alone").await;

    redis.run().await.unwrap();
    let b = start_node(&env);
    let mut on_b = connect(&chat_url(b.addr)).await;
    replayed_messages(&mut on_b).await;
    // A publishes once connected, and its chat (joined before Redis was there) is followed.
    until_delivered(&mut on_a, &mut on_b, "a to b").await;
    until_delivered(&mut on_b, &mut on_a, "b to a").await;
    let (_, _, metrics) = get(a.addr, "/metrics").await;
    assert_eq!(
        crate::metrics::sample(&metrics, "jiva_bus_connected"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_acknowledged_and_its_clients_replay_elsewhere() {
    let _turn = crate::support::HEAVY_ON_MOTO.lock().await;
    let redis = LocalRedis::start().await.unwrap();
    let env = cluster_env(&redis, &[]).await;
    let survivor = start_node(&env);
    let mut doomed = start_node(&env);
    let mut watcher = connect(&chat_url(survivor.addr)).await;
    let mut client = connect(&chat_url(doomed.addr)).await;
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        acknowledged.push(say_and_echo(&mut client, &format!("m{n}")).await);
    }
    // Killed while its client keeps sending: what was echoed is stored.
    let (mut sink, mut stream) = client.split();
    let sending = tokio::spawn(async move {
        for n in 20..300 {
            let frame = json!({"chat_id": "c", "sender": "agent", "message": format!("m{n}")});
            if sink.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
    });
    let mut echoed = 0;
    while let Some(Ok(Message::Text(text))) = stream.next().await {
        let frame: Value = serde_json::from_str(&text).unwrap();
        if let Some(id) = stored_id(&frame) {
            acknowledged.push(id);
            echoed += 1;
            if echoed == 10 {
                doomed.kill();
            }
        }
    }
    sending.await.unwrap();
    assert!(echoed >= 10);
    // The client reconnects to the other node and replays the whole history.
    let replay = replay_ids(survivor.addr).await;
    let unique: HashSet<&String> = replay.iter().collect();
    assert_eq!(unique.len(), replay.len(), "a message is stored twice");
    for id in &acknowledged {
        assert!(unique.contains(id), "acknowledged {id} is not stored");
    }
    // The survivor's socket saw what was stored before the kill, in the replay's order.
    let before: Vec<String> = replay.iter().take(20).cloned().collect();
    let mut watched = Vec::new();
    while watched.len() < 20 {
        watched.extend(stored_id(&next_json(&mut watcher).await));
    }
    assert_eq!(watched, before);
}

/// Every frame a fresh socket on `url` replays.
async fn replay_frames(url: &str) -> Vec<Value> {
    let mut ws = connect(url).await;
    send(&mut ws, json!({"not": "a chat message"})).await;
    let mut frames = Vec::new();
    loop {
        let frame = next_json(&mut ws).await;
        if frame.get("error").is_some() {
            return frames;
        }
        frames.push(frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copilot_turns_of_one_chat_run_one_at_a_time_across_nodes() {
    use jiva_copilot::testing::{StandIn, Step, chunk, end, head_chunked};
    let redis = LocalRedis::start().await.unwrap();
    let mut stand_in = StandIn::start().await.unwrap();
    let (release, released) = tokio::sync::oneshot::channel();
    let answer = |text: &str| json!({"action": null, "output": text}).to_string();
    stand_in.push(vec![
        head_chunked(200, "application/json"),
        Step::WaitFor(released),
        chunk(answer("first answer")),
        end(),
    ]);
    stand_in.push(vec![
        head_chunked(200, "application/json"),
        chunk(answer("second answer")),
        end(),
    ]);
    let env = cluster_env(&redis, &[("COPILOT_ENDPOINT", stand_in.url())]).await;
    let (a, b) = (start_node(&env), start_node(&env));
    let copilot_url =
        |addr: SocketAddr| format!("ws://{addr}/?agentID={AGENT}&secondaryID=copilot");
    let mut on_a = connect(&copilot_url(a.addr)).await;
    let mut on_b = connect(&copilot_url(b.addr)).await;

    // The first turn runs on A, and holds until the test releases its answer.
    say_and_echo(&mut on_a, "question one").await;
    tokio::time::timeout(PATIENCE, stand_in.request())
        .await
        .expect("A never asked the copilot");
    // A question asked on B meanwhile waits behind it.
    say_and_echo(&mut on_b, "question two").await;
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (_, _, metrics) = get(b.addr, "/metrics").await;
            if crate::metrics::sample(&metrics, "jiva_copilot_turn_lease_waits_total")
                .is_some_and(|n| n >= 1.0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("B's turn did not wait for A's lease");
    assert!(
        stand_in.try_request().is_none(),
        "B asked while A's turn ran"
    );
    release.send(()).unwrap();

    // B's turn runs once A's ended, with A's question and answer in its history.
    let second = tokio::time::timeout(PATIENCE, stand_in.request())
        .await
        .expect("B never asked the copilot")
        .unwrap();
    let body = second.body_text().unwrap();
    assert!(body.contains("question one"), "{body}");
    assert!(body.contains("first answer"), "{body}");
    // Both are answered, and every node's replay has the four messages in one order.
    let outputs = |frames: &[Value]| -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                f.get("message")
                    .or_else(|| f.get("output"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    // A's socket is shown B's stored answer (over the bus) once it is stored.
    loop {
        if next_json(&mut on_a).await["output"] == "second answer" {
            break;
        }
    }
    let on_a_replay = outputs(&replay_frames(&copilot_url(a.addr)).await);
    assert_eq!(
        on_a_replay,
        [
            "question one",
            "question two",
            "first answer",
            "second answer"
        ]
    );
    assert_eq!(
        outputs(&replay_frames(&copilot_url(b.addr)).await),
        on_a_replay
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_turn_frees_its_chat_when_the_lease_expires() {
    use jiva_copilot::testing::{StandIn, Step, chunk, end, head_chunked};
    let redis = LocalRedis::start().await.unwrap();
    let mut stand_in = StandIn::start().await.unwrap();
    // A's turn never ends: A dies holding the lease.
    stand_in.push(vec![head_chunked(200, "application/json"), Step::Hold]);
    stand_in.push(vec![
        head_chunked(200, "application/json"),
        chunk(json!({"action": null, "output": "after"}).to_string()),
        end(),
    ]);
    let env = cluster_env(&redis, &[("COPILOT_ENDPOINT", stand_in.url())]).await;
    let (mut a, b) = (start_node(&env), start_node(&env));
    // A lock that cannot be reached lets a turn run unleased (by design): A must hold a real
    // lease for B to wait on, so both nodes are on Redis before the first question.
    for node in [&a, &b] {
        bus_connected(node.addr).await;
    }
    let copilot_url =
        |addr: SocketAddr| format!("ws://{addr}/?agentID={AGENT}&secondaryID=copilot");
    let mut on_a = connect(&copilot_url(a.addr)).await;
    let mut on_b = connect(&copilot_url(b.addr)).await;
    say_and_echo(&mut on_a, "question one").await;
    tokio::time::timeout(PATIENCE, stand_in.request())
        .await
        .expect("A never asked the copilot");
    a.kill();
    say_and_echo(&mut on_b, "question two").await;
    // The lease (15 s) expires, B's turn runs and ends.
    let lease_and_patience = Duration::from_secs(15) + PATIENCE;
    tokio::time::timeout(lease_and_patience, stand_in.request())
        .await
        .expect("B's turn never ran after A died");
    let mut frames = Vec::new();
    while frames.last() != Some(&json!({"action": "end", "output": ""})) {
        frames.push(next_json(&mut on_b).await);
    }
    assert!(frames.iter().any(|f| f["output"] == "after"), "{frames:#?}");
    let (_, _, metrics) = get(b.addr, "/metrics").await;
    assert_eq!(
        crate::metrics::sample(&metrics, "jiva_copilot_turn_lease_waits_total"),
        Some(1.0),
        "B's turn waited for the dead node's lease"
    );
}

/// Protocol v1's `cancel` sent on a node other than the one running the turn: forwarded over
/// the bus, it stops the turn where it runs; both nodes' sockets see the turn end `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_cancel_on_another_node_stops_the_turn_where_it_runs() {
    use crate::v1::{V1, of_type};
    use jiva_copilot::testing::{StandIn, Step, chunk, end, head_chunked};
    let piece = |output: &str| chunk(json!({"action": null, "output": output}).to_string());
    let redis = LocalRedis::start().await.unwrap();
    let stand_in = StandIn::start().await.unwrap();
    let (_hold, held) = tokio::sync::oneshot::channel::<()>();
    stand_in.push(vec![
        head_chunked(200, "application/json"),
        piece("partial "),
        Step::WaitFor(held),
        piece("never sent"),
        end(),
    ]);
    stand_in.push(vec![
        head_chunked(200, "application/json"),
        piece("second answer"),
        end(),
    ]);
    let env = cluster_env(&redis, &[("COPILOT_ENDPOINT", stand_in.url())]).await;
    let (a, b) = (start_node(&env), start_node(&env));
    let url = |addr: SocketAddr| format!("ws://{addr}/?agentID={AGENT}&secondaryID=copilot");
    let (mut on_a, _, _) = V1::open(&url(a.addr)).await;
    let (mut on_b, _, _) = V1::open(&url(b.addr)).await;

    // The turn runs on A and streams until the test lets it go on (never).
    on_a.say("q-1", "agent", "long question").await;
    let (_, ack) = on_a.until("ack").await;
    let question = ack["message_id"].clone();
    let (_, first) = on_a.until("chunk").await;
    assert_eq!(first["output"], "partial ");

    // A question no node runs, while a turn runs: B asks the others, nobody takes it.
    let unknown = "0190c5a5-9f1c-7a3e-8b4d-6f7e8a9b0c1d";
    on_b.send(json!({"type":"cancel","ref":"x0","question_id":unknown}))
        .await;
    let (_, e) = on_b.until("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("no_such_turn"), Some("x0"))
    );

    // B cancels A's turn.
    on_b.send(json!({"type":"cancel","ref":"x1","question_id":question}))
        .await;
    let (a_before, a_end) = on_a.until("turn_end").await;
    assert!(of_type(&a_before, "error").is_empty(), "{a_before:?}");
    let answer = of_type(&a_before, "message")[0].clone();
    assert_eq!(answer["text"], "partial \n\n[Answer stopped.]");
    assert_eq!(a_end["outcome"], "cancelled");
    assert_eq!(a_end["question_id"], question);
    assert_eq!(a_end["answer_id"], answer["message_id"]);
    let (mut b_seen, b_end) = on_b.until("turn_end").await;
    assert!(of_type(&b_seen, "error").is_empty(), "{b_seen:?}");
    assert_eq!(b_end["outcome"], "cancelled");
    assert_eq!(b_end["question_id"], question);
    assert_eq!(b_end["answer_id"], answer["message_id"]);
    // B's socket is shown the stored partial answer too (over the bus).
    b_seen.extend(on_b.drain().await);
    assert!(
        of_type(&b_seen, "message")
            .iter()
            .any(|m| m["message_id"] == answer["message_id"] && m["text"] == answer["text"]),
        "{b_seen:?}"
    );

    // The next question works, and the stopped turn cannot be cancelled again.
    on_a.say("q-2", "agent", "again").await;
    let (before, turn_end) = on_a.until("turn_end").await;
    assert_eq!(turn_end["outcome"], "answered");
    assert!(
        of_type(&before, "message")
            .iter()
            .any(|m| m["text"] == "second answer"),
        "{before:?}"
    );
    on_b.send(json!({"type":"cancel","ref":"x2","question_id":question}))
        .await;
    let (_, e) = on_b.until("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("no_such_turn"), Some("x2"))
    );
}
