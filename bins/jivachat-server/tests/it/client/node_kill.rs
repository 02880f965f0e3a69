//! Resume under load across a node loss (issue 13, with the bus): 1,000 v1 clients (through
//! `jiva-client`) in 100 chats, spread over five server processes sharing DynamoDB (moto) and
//! Redis (`--bus redis`), while messages flow; one node is killed with SIGKILL. Its clients
//! (a fifth) fail over to the next node (`Config::fallback_urls`) and resume from their last
//! sequence number; the other nodes' clients never reconnect. Every client ends with nothing
//! lost, nothing duplicated, and its chat's order equal to the store's replay.
//!
//! Five nodes rather than two keep the failover's burst of catch-ups (two store reads each)
//! within what moto answers on a busy two-core machine; with two nodes, 500 clients resuming
//! at once made moto time out (the clients then retry, correctly, but slowly).
//!
//! Each chat's last message is sent only after the kill: a message the dead node stored but
//! could not publish reaches the survivor's own sockets when the chat's next message shows the
//! gap (the sequencer fills it from the store, `docs/ARCHITECTURE.md`, "No gap, no
//! duplicate"); a chat that never speaks again would leave such a hole in a live view until a
//! reconnect (then the replay has it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use jiva_bus_redis::testing::LocalRedis;
use jiva_client::protocol::{ErrorCode, ServerFrame};
use jiva_client::{ChatKind, Client, ClientError, Config, Event};
use tokio::sync::{Notify, mpsc, watch};

use super::resume_load::{
    CHATS, CLIENTS_PER_CHAT, agent, assert_views_are_the_replay, collect, replay_with,
    until_flowing, views_of,
};
use crate::cluster::{cluster_env, start_node};
use crate::metrics::ServerProcess;
use crate::support::PATIENCE;

const NODES: usize = 5;
/// The node killed; the others survive.
const DOOMED: usize = 0;
const MESSAGES_PER_CHAT: usize = 6;
const CONNECTING_AT_ONCE: usize = 50;

/// Client `i` of the test: chat `i % CHATS`, home node `(i / CHATS) % NODES`, so every chat
/// has clients on every node.
fn home(i: usize) -> usize {
    (i / CHATS) % NODES
}

/// The node client `i` is connected to (its home, or the fallback it moved to).
fn node_of(i: usize, client: &Client) -> usize {
    (home(i) + client.endpoint()) % NODES
}

/// A v1 configuration for `agent`'s supervisor chat on node `home` of `urls`, the other nodes
/// as fallbacks (in order after it), reconnecting quickly.
fn config(urls: &[String], home: usize, agent: &str) -> Config {
    let mut config = Config::new(urls[home].clone(), agent, ChatKind::Supervisor);
    config.fallback_urls = (1..urls.len())
        .map(|k| urls[(home + k) % urls.len()].clone())
        .collect();
    // The failover's catch-ups come spread over a few hundred milliseconds, then back off.
    config.reconnect.initial = Duration::from_secs(1);
    config.reconnect.max = Duration::from_secs(5);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_fail_over_from_a_killed_node_with_nothing_lost_or_doubled() {
    let _turn = crate::support::HEAVY_ON_MOTO.lock().await;
    let redis = LocalRedis::start().await.unwrap();
    // Moto on a busy machine answers some reads of the failover burst late: the SDK retries
    // them rather than failing a catch-up or a gap fill.
    // The survivor that takes the killed node's clients runs a few of their catch-ups at a
    // time and queues the rest: all at once, they are more than moto answers within the
    // SDK's time-out on a slow machine, and every timed-out read is retried while moto still
    // works on it (a collapse seen with two busy loops beside the test).
    let env = cluster_env(
        &redis,
        &[
            ("JIVA_DYNAMODB_MAX_ATTEMPTS", "8"),
            ("JIVA_DYNAMODB_MAX_IN_FLIGHT", "8"),
        ],
    )
    .await;
    let mut nodes: Vec<ServerProcess> = (0..NODES).map(|_| start_node(&env)).collect();
    let urls: Vec<String> = nodes.iter().map(|n| format!("ws://{}/", n.addr)).collect();

    // Connected a few dozen at a time, each until it is live, as clients arrive at a real
    // cluster (a thousand catch-ups at once are more reads than moto answers in time).
    let connections = futures_util::stream::iter((0..CHATS * CLIENTS_PER_CHAT).map(|i| {
        let config = config(&urls, home(i), &agent(i % CHATS));
        async move {
            let (client, mut events) = Client::connect(config).await.unwrap();
            super::next_matching(&mut events, |e| {
                matches!(e, Event::V1(ServerFrame::Live(_))).then_some(())
            })
            .await;
            (client, events)
        }
    }))
    .buffered(CONNECTING_AT_ONCE)
    .collect::<Vec<_>>();
    let clients = tokio::time::timeout(PATIENCE * 6, connections)
        .await
        .expect("1,000 clients did not connect in time");
    let targets: Vec<_> = (0..CHATS).map(|_| watch::channel(None::<u64>)).collect();
    let mut readers = Vec::new();
    let mut handles = Vec::new();
    let (shown_one, mut first_messages) = mpsc::channel(CHATS * CLIENTS_PER_CHAT);
    for (i, (client, events)) in clients.into_iter().enumerate() {
        let target = targets[i % CHATS].1.clone();
        readers.push(tokio::spawn(collect(events, target, shown_one.clone())));
        handles.push(client);
    }

    // One sender per chat, on the doomed node for even chats and on a survivor for odd ones,
    // sends its messages one after another, each awaited to its ack; a send the kill
    // interrupts is resent on the survivor by the client. The last one waits for the kill.
    let acked = Arc::new(AtomicUsize::new(0));
    // How many messages each chat's sender has had acknowledged (a stuck sender names itself).
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CHATS).map(|_| AtomicUsize::new(0)).collect());
    let halfway = Arc::new(Notify::new());
    let (killed_tx, killed) = watch::channel(false);
    let senders: Vec<_> = (0..CHATS)
        .map(|chat| {
            let client = handles[chat + CHATS * (chat % NODES)].clone();
            let (acked, halfway) = (Arc::clone(&acked), Arc::clone(&halfway));
            let progress = Arc::clone(&progress);
            let mut killed = killed.clone();
            tokio::spawn(async move {
                let mut last = 0;
                for n in 0..MESSAGES_PER_CHAT {
                    if n + 1 == MESSAGES_PER_CHAT {
                        killed.wait_for(|k| *k).await.unwrap();
                    }
                    let id = jiva_client::new_client_id();
                    let text = format!("chat {chat} message {n}");
                    // A send the store could not take (moto overloaded by the failover's
                    // catch-ups) is refused with `not_stored`: sent again with the same id, as
                    // the protocol allows; it is stored once whatever happened.
                    last = loop {
                        let ack = client.send_with_id(id.clone(), text.clone()).await.unwrap();
                        match ack.await {
                            Ok(ack) => break ack.seq,
                            Err(ClientError::Rejected(e)) if e.code == ErrorCode::NotStored => {}
                            Err(e) => panic!("chat {chat} message {n}: {e}"),
                        }
                    };
                    progress[chat].fetch_add(1, Ordering::SeqCst);
                    if acked.fetch_add(1, Ordering::SeqCst) + 1 == CHATS * MESSAGES_PER_CHAT / 2 {
                        halfway.notify_one();
                    }
                }
                last
            })
        })
        .collect();
    // The kill comes mid-flow, once half the messages are acknowledged and every client has
    // been shown at least one (so every client has a point to resume from).
    until_flowing(&halfway, &mut first_messages, &acked, PATIENCE * 6).await;
    // Who is where at the kill (a client moves only when its connection drops).
    let before: Vec<(usize, u64)> = handles
        .iter()
        .enumerate()
        .map(|(i, c)| (node_of(i, c), c.stats().connections))
        .collect();
    let on_doomed = before.iter().filter(|(node, _)| *node == DOOMED).count();
    assert!(
        on_doomed >= CHATS * CLIENTS_PER_CHAT / NODES / 2,
        "only {on_doomed} clients on the doomed node"
    );
    nodes[DOOMED].kill();
    killed_tx.send(true).unwrap();

    for (chat, sender) in senders.into_iter().enumerate() {
        let Ok(last) = tokio::time::timeout(PATIENCE * 6, sender).await else {
            let client = chat + CHATS * (chat % NODES);
            let stuck: Vec<(usize, usize)> = progress
                .iter()
                .enumerate()
                .map(|(c, p)| (c, p.load(Ordering::SeqCst)))
                .filter(|(_, p)| *p < MESSAGES_PER_CHAT)
                .collect();
            panic!(
                "chat {chat}'s sender (client {client}, home node {}, now on node {}) did not \
                 finish in time: {:?}; (chat, messages acknowledged) of every unfinished sender: \
                 {stuck:?}",
                home(client),
                node_of(client, &handles[client]),
                handles[client].stats(),
            );
        };
        targets[chat].0.send(Some(last.unwrap())).unwrap();
    }
    let views = views_of(readers, PATIENCE * 6).await;
    for (i, client) in handles.iter().enumerate() {
        let stats = client.stats();
        let (node, connections) = before[i];
        if node == DOOMED {
            assert!(
                stats.connections > connections && stats.resumed >= 1,
                "client {i} of the killed node resumed with since=: {stats:?}"
            );
            assert_ne!(node_of(i, client), DOOMED, "client {i} failed over");
        } else {
            assert_eq!(
                (stats.connections, node_of(i, client)),
                (connections, node),
                "client {i} of a survivor stayed"
            );
        }
    }
    join_all(handles.iter().map(Client::close)).await;

    let survivor = (DOOMED + 1) % NODES;
    for chat in 0..CHATS {
        let stored = replay_with(config(&urls, survivor, &agent(chat))).await;
        assert_views_are_the_replay(chat, &stored, &views, MESSAGES_PER_CHAT);
    }
    // Checked after the views (which the client's own filter keeps exact): the server sent
    // no client a message at or below its resume point. (A gap the room filled after the kill
    // once reached a resumed client a second time: `jiva-ws`'s live filter now drops numbers
    // up to the resume point too.)
    for (i, client) in handles.iter().enumerate() {
        let stats = client.stats();
        assert_eq!(
            stats.duplicates_dropped, 0,
            "client {i} was sent a message at or below its resume point: {stats:?}"
        );
    }
}
