//! Resume under load (issue 13): 1,000 v1 clients (through `jiva-client`) in 100 chats while
//! messages flow; the server is restarted on the same port and data; every client resumes with
//! nothing lost, nothing duplicated, and its chat's order equal to the store's replay.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;
use jiva_client::protocol::ServerFrame;
use jiva_client::{Client, Event, Events, Protocol};
use tokio::sync::{Notify, mpsc, watch};

use super::Restartable;
use crate::support::PATIENCE;

pub(super) const CHATS: usize = 100;
pub(super) const CLIENTS_PER_CHAT: usize = 10;
const MESSAGES_PER_CHAT: usize = 20;

fn many_sockets(config: &mut jivachat_server::Config) {
    config.transport.limits.max_sockets_per_ip = 10_000;
    config.transport.limits.handshakes_per_ip_per_sec = 1_000_000;
}

pub(super) fn agent(chat: usize) -> String {
    format!("00000000-0000-4000-8000-{chat:012}")
}

/// Reads a client's events, keeping the message ids it was shown, until the newest number
/// of its chat (`target`, once known) has been shown. Says once on `shown_one` when the first
/// message was shown.
pub(super) async fn collect(
    mut events: Events,
    mut target: watch::Receiver<Option<u64>>,
    shown_one: mpsc::Sender<()>,
) -> Vec<String> {
    let mut shown_one = Some(shown_one);
    let mut shown = Vec::new();
    let mut newest = 0;
    loop {
        if !shown.is_empty() {
            if let Some(once) = shown_one.take() {
                let _ = once.send(()).await;
            }
        }
        if target.borrow().is_some_and(|t| newest >= t) {
            return shown;
        }
        tokio::select! {
            changed = target.changed() => changed.unwrap(),
            event = events.next() => match event.expect("the client ended") {
                // A client whose catch-up came after the first sends gets them in `latest`.
                Event::V1(ServerFrame::Latest(latest)) => {
                    for m in latest.messages {
                        newest = newest.max(m.seq.unwrap_or(0));
                        shown.push(m.message_id);
                    }
                }
                Event::V1(ServerFrame::Message(m)) => {
                    newest = newest.max(m.seq.unwrap_or(0));
                    shown.push(m.message_id);
                }
                Event::V1(ServerFrame::Reload(r)) => panic!("no reload expected: {r:?}"),
                _ => {}
            },
        }
    }
}

/// Waits until `halfway` is told and every client has been shown a message (one `()` each on
/// `first_messages`), within `within`.
pub(super) async fn until_flowing(
    halfway: &Notify,
    first_messages: &mut mpsc::Receiver<()>,
    acked: &AtomicUsize,
    within: std::time::Duration,
) {
    let seen_one = AtomicUsize::new(0);
    let flowing = tokio::time::timeout(within, async {
        halfway.notified().await;
        for _ in 0..CHATS * CLIENTS_PER_CHAT {
            first_messages.recv().await.unwrap();
            seen_one.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    assert!(
        flowing.is_ok(),
        "the messages did not flow in time: {} acknowledged, {} clients shown one",
        acked.load(Ordering::SeqCst),
        seen_one.load(Ordering::SeqCst)
    );
}

/// What each reader ([`collect`]) was shown, within `within` each.
pub(super) async fn views_of(
    readers: Vec<tokio::task::JoinHandle<Vec<String>>>,
    within: std::time::Duration,
) -> Vec<Vec<String>> {
    let mut views = Vec::new();
    for reader in readers {
        views.push(
            tokio::time::timeout(within, reader)
                .await
                .expect("a client did not see its chat's newest message in time")
                .unwrap(),
        );
    }
    views
}

/// Every client of `chat` (client `i` is in chat `i % CHATS`) was shown `stored` (the chat's
/// replay, of `sent` messages) exactly: nothing lost, nothing twice, the same order.
pub(super) fn assert_views_are_the_replay(
    chat: usize,
    stored: &[String],
    views: &[Vec<String>],
    sent: usize,
) {
    assert_eq!(
        stored.len(),
        sent,
        "chat {chat}: one stored message per send"
    );
    for (i, shown) in views.iter().enumerate().filter(|(i, _)| i % CHATS == chat) {
        let unique: HashSet<&String> = shown.iter().collect();
        assert_eq!(
            unique.len(),
            shown.len(),
            "client {i} was shown a message twice"
        );
        assert_eq!(
            shown, stored,
            "client {i}: lost a message or saw another order"
        );
    }
}

/// What a connection resuming from 0 replays: the chat's whole stored order.
async fn replay(server: &Restartable, agent: &str) -> Vec<String> {
    replay_with(server.config(agent, Protocol::V1)).await
}

/// What a connection by `config` resuming from 0 replays: the chat's whole stored order.
pub(super) async fn replay_with(mut config: jiva_client::Config) -> Vec<String> {
    config.since = Some(0);
    let (client, mut events) = Client::connect(config).await.unwrap();
    let mut ids = Vec::new();
    loop {
        match events.next().await.expect("the replaying client ended") {
            Event::V1(ServerFrame::Message(m)) => ids.push(m.message_id),
            Event::V1(ServerFrame::Live(_)) => break,
            Event::V1(ServerFrame::Reload(r)) => panic!("replay from 0 reloaded: {r:?}"),
            _ => {}
        }
    }
    client.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_resume_a_restart_with_nothing_lost_or_doubled() {
    let mut server = Restartable::start(many_sockets).await;

    // Every client of every chat, connected fresh to empty chats.
    let connections = (0..CHATS * CLIENTS_PER_CHAT).map(|i| {
        let config = server.config(&agent(i % CHATS), Protocol::V1);
        async move { Client::connect(config).await.unwrap() }
    });
    let clients = tokio::time::timeout(PATIENCE * 3, join_all(connections))
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

    // One sender per chat sends its messages one after another, each awaited to its ack,
    // across the restart (a send the restart interrupts is resent by the client).
    let acked = Arc::new(AtomicUsize::new(0));
    let halfway = Arc::new(Notify::new());
    let senders: Vec<_> = (0..CHATS)
        .map(|chat| {
            let client = handles[chat].clone();
            let (acked, halfway) = (Arc::clone(&acked), Arc::clone(&halfway));
            tokio::spawn(async move {
                let mut last = 0;
                for n in 0..MESSAGES_PER_CHAT {
                    let ack = client
                        .send(format!("chat {chat} message {n}"))
                        .await
                        .unwrap();
                    last = ack.await.unwrap().seq;
                    if acked.fetch_add(1, Ordering::SeqCst) + 1 == CHATS * MESSAGES_PER_CHAT / 2 {
                        halfway.notify_one();
                    }
                }
                last
            })
        })
        .collect();
    // Restart mid-flow, once half the messages are acknowledged and every client has been shown
    // at least one (so every client has a point to resume from).
    until_flowing(&halfway, &mut first_messages, &acked, PATIENCE * 3).await;
    let acked_before_restart = acked.load(Ordering::SeqCst);
    assert!(
        acked_before_restart < CHATS * MESSAGES_PER_CHAT,
        "the restart must come while messages flow"
    );
    server.restart().await;

    for (chat, sender) in senders.into_iter().enumerate() {
        let last = tokio::time::timeout(PATIENCE * 3, sender)
            .await
            .expect("a sender did not finish in time")
            .unwrap();
        targets[chat].0.send(Some(last)).unwrap();
    }
    let views = views_of(readers, PATIENCE * 3).await;
    for client in &handles {
        let stats = client.stats();
        assert!(
            stats.connections >= 2,
            "every client reconnected: {stats:?}"
        );
        assert!(
            stats.resumed >= 1,
            "every client resumed with since=: {stats:?}"
        );
        assert_eq!(stats.duplicates_dropped, 0, "the server sent a duplicate");
    }
    join_all(handles.iter().map(Client::close)).await;

    for chat in 0..CHATS {
        let stored = replay(&server, &agent(chat)).await;
        assert_views_are_the_replay(chat, &stored, &views, MESSAGES_PER_CHAT);
    }
    server.stop().await;
}
