//! The client speaking v1 to the real server: acks, idempotent resends across sockets and a
//! restart, resume after a restart, paging, and the unfillable-gap answer.

use jiva_client::protocol::{ReloadCode, ServerFrame};
use jiva_client::{Client, Event, Events, Protocol};

use super::{Restartable, next_matching};
use crate::support::AGENT;

fn defaults(_: &mut jivachat_server::Config) {}

async fn live(events: &mut Events) -> Option<u64> {
    next_matching(events, |e| match e {
        Event::V1(ServerFrame::Live(live)) => Some(live.seq),
        _ => None,
    })
    .await
}

async fn latest(events: &mut Events) -> jiva_client::protocol::Latest {
    next_matching(events, |e| match e {
        Event::V1(ServerFrame::Latest(l)) => Some(l),
        _ => None,
    })
    .await
}

/// The caller as presence shows it (from `welcome`).
async fn you(events: &mut Events) -> jiva_client::protocol::Member {
    next_matching(events, |e| match e {
        Event::V1(ServerFrame::Welcome(w)) => Some(w.you),
        _ => None,
    })
    .await
}

async fn next_text(events: &mut Events) -> (u64, String) {
    next_matching(events, |e| match e {
        Event::V1(ServerFrame::Message(m)) => Some((m.seq.unwrap(), m.text)),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_client_id_is_stored_once_across_sockets_and_a_restart() {
    let mut server = Restartable::start(defaults).await;
    let (a, mut a_events) = server.connect(AGENT, Protocol::V1).await;
    let (b, _b_events) = server.connect(AGENT, Protocol::V1).await;
    assert_eq!(live(&mut a_events).await, None, "an empty chat");

    let first = a
        .send_with_id("order-4411", "check order 4411")
        .await
        .unwrap();
    let first = first.await.unwrap();
    assert_eq!(
        next_text(&mut a_events).await,
        (first.seq, "check order 4411".into())
    );
    let same_socket = a
        .send_with_id("order-4411", "check order 4411")
        .await
        .unwrap();
    let other_socket = b
        .send_with_id("order-4411", "check order 4411")
        .await
        .unwrap();
    assert_eq!(same_socket.await.unwrap(), first);
    assert_eq!(other_socket.await.unwrap(), first);

    server.restart().await;
    next_matching(&mut a_events, |e| {
        matches!(e, Event::Connected { since: Some(_), .. }).then_some(())
    })
    .await;
    let after_restart = a
        .send_with_id("order-4411", "check order 4411")
        .await
        .unwrap();
    assert_eq!(
        after_restart.await.unwrap(),
        first,
        "the same ack after a restart"
    );
    let next = a.send("and 4412").await.unwrap().await.unwrap();
    assert_eq!(
        next_text(&mut a_events).await,
        (next.seq, "and 4412".into())
    );
    assert!(next.seq > first.seq);

    a.close().await;
    b.close().await;
    let (c, mut c_events) = server.connect(AGENT, Protocol::V1).await;
    let latest = latest(&mut c_events).await;
    let texts: Vec<_> = latest.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["check order 4411", "and 4412"],
        "one stored message per client id"
    );
    c.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_client_pages_the_whole_history_in_order() {
    let server = Restartable::start(defaults).await;
    let (client, mut events) = server.connect(AGENT, Protocol::V1).await;
    live(&mut events).await;
    let mut acks = Vec::new();
    for n in 0..130 {
        acks.push(client.send(format!("m{n}")).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    client.close().await;

    let (client, mut events) = server.connect(AGENT, Protocol::V1).await;
    let latest = latest(&mut events).await;
    assert_eq!(latest.messages.len(), 50);
    let mut texts: Vec<String> = latest.messages.iter().map(|m| m.text.clone()).collect();
    let mut before = latest.messages[0].seq.unwrap();
    let mut has_older = latest.has_older;
    while has_older {
        let page = client.page(before, Some(100)).await.unwrap();
        before = page.messages[0].seq.unwrap();
        has_older = page.has_older;
        texts.splice(0..0, page.messages.into_iter().map(|m| m.text));
    }
    let expected: Vec<String> = (0..130).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_client_told_to_reload_starts_again_from_latest() {
    let server = Restartable::start(defaults).await;
    let (client, mut events) = server.connect(AGENT, Protocol::V1).await;
    live(&mut events).await;
    client.send("one").await.unwrap().await.unwrap();
    client.close().await;

    let mut config = server.config(AGENT, Protocol::V1);
    config.since = Some(500);
    let (client, mut events) = Client::connect(config).await.unwrap();
    let reload = next_matching(&mut events, |e| match e {
        Event::V1(ServerFrame::Reload(r)) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!((reload.code, reload.since), (ReloadCode::UnknownPoint, 500));
    let latest = latest(&mut events).await;
    assert_eq!(latest.messages.len(), 1);
    live(&mut events).await;
    assert_eq!(
        client.last_seq(),
        latest.messages[0].seq,
        "the point restarts at latest"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_client_cancels_a_streaming_copilot_answer() {
    use jiva_client::protocol::TurnOutcome;
    use jiva_copilot::testing::{StandIn, Step, chunk, end, head_chunked};

    let (_hold, held) = tokio::sync::oneshot::channel::<()>();
    let stand_in = StandIn::serve(vec![
        head_chunked(200, "application/json"),
        chunk(r#"{"action":null,"output":"partial "}"#),
        Step::WaitFor(held),
        end(),
    ])
    .await
    .unwrap();
    let mut copilot = jiva_copilot::Config::new(stand_in.url());
    copilot.first_byte_timeout = std::time::Duration::from_secs(60);
    copilot.idle_timeout = std::time::Duration::from_secs(60);
    let server = crate::support::TestServer::start_with(|c| c.copilot = Some(copilot)).await;
    let config = jiva_client::Config::new(server.url("/"), AGENT, jiva_client::ChatKind::Copilot);
    let (client, mut events) = Client::connect(config).await.unwrap();
    live(&mut events).await;

    let question = client.send("tell me all").await.unwrap().await.unwrap();
    let chunk_text = next_matching(&mut events, |e| match e {
        Event::V1(ServerFrame::Chunk(c)) => Some((c.question_id, c.output)),
        _ => None,
    })
    .await;
    assert_eq!(
        chunk_text,
        (question.message_id.clone(), Some("partial ".into()))
    );
    client.cancel(question.message_id.clone()).await.unwrap();
    let answer = next_matching(&mut events, |e| match e {
        Event::V1(ServerFrame::Message(m)) if m.seq > Some(question.seq) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(answer.text, "partial \n\n[Answer stopped.]");
    let turn_end = next_matching(&mut events, |e| match e {
        Event::V1(ServerFrame::TurnEnd(t)) => Some(t),
        _ => None,
    })
    .await;
    assert_eq!(turn_end.question_id, question.message_id);
    assert_eq!(turn_end.outcome, TurnOutcome::Cancelled);
    assert_eq!(turn_end.answer_id, Some(answer.message_id));
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_client_sees_presence_and_typing() {
    let server = Restartable::start(defaults).await;
    let (a, mut a_events) = server.connect(AGENT, Protocol::V1).await;
    let me = you(&mut a_events).await;
    let members = next_matching(&mut a_events, |e| match e {
        Event::V1(ServerFrame::Presence(p)) => Some(p.members),
        _ => None,
    })
    .await;
    assert_eq!(members, std::slice::from_ref(&me));

    let (b, mut b_events) = server.connect(AGENT, Protocol::V1).await;
    let them = you(&mut b_events).await;
    let joined = next_matching(&mut a_events, |e| match e {
        Event::V1(ServerFrame::PresenceJoin(j)) => Some(j.member),
        _ => None,
    })
    .await;
    assert_eq!(joined, them);
    live(&mut b_events).await;

    b.typing(true).await.unwrap();
    let typing = next_matching(&mut a_events, |e| match e {
        Event::V1(ServerFrame::Typing(t)) => Some(t),
        _ => None,
    })
    .await;
    assert_eq!((typing.member, typing.active), (them.clone(), true));

    b.close().await;
    let left = next_matching(&mut a_events, |e| match e {
        Event::V1(ServerFrame::PresenceLeave(l)) => Some(l.member),
        _ => None,
    })
    .await;
    assert_eq!(left, them);
    a.close().await;
}
