//! v1 behaviour of the client, one rule per test.

use jiva_client::protocol::{
    Ack, ChatMessage, ErrorCode, ErrorFrame, Page, Reload, ReloadCode, ServerFrame,
};
use jiva_client::{Client, ClientError, Config, Event, Events, Token, TokenPlacement};

use crate::peer::{
    PATIENCE, Peer, Upgrade, Ws, message, next_matching, next_message_seq, open_fresh, read, write,
};

/// Connects a client configured by `config` and opens its connection with `latest`.
async fn connect_with(
    peer: &Peer,
    config: Config,
    latest: Vec<ChatMessage>,
) -> (Client, Events, Ws, Upgrade) {
    let (client, (mut ws, upgrade)) = tokio::join!(Client::connect(config), peer.accept());
    let (client, events) = client.unwrap();
    open_fresh(&mut ws, latest).await;
    (client, events, ws, upgrade)
}

fn ack_for(send: &serde_json::Value, seq: u64) -> ServerFrame {
    ServerFrame::Ack(Ack {
        r#ref: send["ref"].as_str().map(str::to_owned),
        client_id: send["client_id"].as_str().unwrap().to_owned(),
        message_id: format!("m-{seq}"),
        seq,
    })
}

#[tokio::test]
async fn an_unacked_send_is_resent_with_the_same_client_id_after_a_reconnect() {
    let peer = Peer::bind().await;
    let (client, _events, mut ws, _) = connect_with(&peer, peer.config(), vec![]).await;
    let ack = client.send("hello").await.unwrap();
    let first = read(&mut ws).await;
    assert_eq!(first["type"], "send");
    assert_eq!(first["text"], "hello");
    assert_eq!(first["client_id"], ack.client_id());
    drop(ws); // the connection drops before the ack

    let (mut ws, upgrade) = peer.accept().await;
    assert!(!upgrade.uri.contains("since"), "nothing was delivered yet");
    open_fresh(&mut ws, vec![]).await;
    let again = read(&mut ws).await;
    assert_eq!(
        again["client_id"], first["client_id"],
        "resent with the same id"
    );
    assert_eq!(again["text"], "hello");
    write(&mut ws, ack_for(&again, 1)).await;
    let ack = tokio::time::timeout(PATIENCE, ack).await.unwrap().unwrap();
    assert_eq!((ack.message_id.as_str(), ack.seq), ("m-1", 1));
    assert_eq!(client.stats().connections, 2);
}

#[tokio::test]
async fn sends_with_one_client_id_share_the_ack() {
    let peer = Peer::bind().await;
    let (client, _events, mut ws, _) = connect_with(&peer, peer.config(), vec![]).await;
    let a = client.send_with_id("same-1", "x").await.unwrap();
    let b = client.send_with_id("same-1", "x").await.unwrap();
    let first = read(&mut ws).await;
    let second = read(&mut ws).await;
    assert_eq!(first["client_id"], "same-1");
    assert_eq!(second["client_id"], "same-1");
    write(&mut ws, ack_for(&first, 7)).await;
    assert_eq!(a.await.unwrap().seq, 7);
    assert_eq!(b.await.unwrap().seq, 7);
    assert!(matches!(
        client.send_with_id("not valid!", "x").await,
        Err(ClientError::InvalidId)
    ));
}

#[tokio::test]
async fn a_reconnection_resumes_after_the_newest_seq_and_drops_replayed_duplicates() {
    let peer = Peer::bind().await;
    let (client, mut events, mut ws, _) =
        connect_with(&peer, peer.config(), vec![message(1), message(2)]).await;
    write(&mut ws, ServerFrame::Message(message(3))).await;
    assert_eq!(next_message_seq(&mut events).await, 3);
    assert_eq!(client.last_seq(), Some(3));
    drop(ws);

    let (mut ws, upgrade) = peer.accept().await;
    assert!(upgrade.uri.ends_with("&since=3"), "{}", upgrade.uri);
    write(&mut ws, ServerFrame::Message(message(3))).await;
    write(&mut ws, ServerFrame::Message(message(4))).await;
    assert_eq!(
        next_message_seq(&mut events).await,
        4,
        "3 was delivered already"
    );
    assert_eq!(client.stats().duplicates_dropped, 1);
    assert_eq!(client.last_seq(), Some(4));
}

#[tokio::test]
async fn reload_resets_the_resume_point_to_the_following_latest() {
    let peer = Peer::bind().await;
    let mut config = peer.config();
    config.since = Some(90);
    let (client, (mut ws, upgrade)) = tokio::join!(Client::connect(config), peer.accept());
    let (client, mut events) = client.unwrap();
    assert!(upgrade.uri.ends_with("&since=90"), "{}", upgrade.uri);
    write(
        &mut ws,
        ServerFrame::Reload(Reload {
            code: ReloadCode::UnknownPoint,
            reason: "this chat has no message 90 yet".into(),
            since: 90,
        }),
    )
    .await;
    open_fresh(&mut ws, vec![message(1), message(2)]).await;
    next_matching(&mut events, |e| {
        matches!(e, Event::V1(ServerFrame::Live(_))).then_some(())
    })
    .await;
    assert_eq!(client.last_seq(), Some(2));
    drop(ws);
    let (_ws, upgrade) = peer.accept().await;
    assert!(upgrade.uri.ends_with("&since=2"), "{}", upgrade.uri);
}

#[tokio::test]
async fn answers_are_matched_by_ref_and_errors_resolve_the_send() {
    let peer = Peer::bind().await;
    let (client, _events, mut ws, _) = connect_with(&peer, peer.config(), vec![]).await;
    let paging = tokio::spawn({
        let client = client.clone();
        async move { client.page(10, Some(5)).await }
    });
    let request = read(&mut ws).await;
    assert_eq!(request["type"], "page");
    assert_eq!(
        (request["before"].as_u64(), request["limit"].as_u64()),
        (Some(10), Some(5))
    );
    write(
        &mut ws,
        ServerFrame::Page(Page {
            r#ref: request["ref"].as_str().map(str::to_owned),
            before: 10,
            messages: vec![message(8), message(9)],
            has_older: true,
        }),
    )
    .await;
    let page = paging.await.unwrap().unwrap();
    assert_eq!(page.messages.len(), 2);
    assert!(page.has_older);

    let refused = client.send("not this time").await.unwrap();
    let send = read(&mut ws).await;
    write(
        &mut ws,
        ServerFrame::Error(ErrorFrame::new(
            ErrorCode::NotStored,
            "message not stored",
            send["ref"].as_str().map(str::to_owned),
        )),
    )
    .await;
    match refused.await {
        Err(ClientError::Rejected(e)) => assert_eq!(e.code, ErrorCode::NotStored),
        other => panic!("expected not_stored, got {other:?}"),
    }

    client.cancel("q-1").await.unwrap();
    client.typing(true).await.unwrap();
    let cancel = read(&mut ws).await;
    assert_eq!(
        (cancel["type"].as_str(), cancel["question_id"].as_str()),
        (Some("cancel"), Some("q-1"))
    );
    let typing = read(&mut ws).await;
    assert_eq!(
        (typing["type"].as_str(), typing["active"].as_bool()),
        (Some("typing"), Some(true))
    );
}

#[tokio::test]
async fn a_server_without_v1_is_refused_clearly() {
    let mut peer = Peer::bind().await;
    peer.speaks_v1 = false;
    let (client, _) = tokio::join!(Client::connect(peer.config()), peer.accept());
    assert!(
        matches!(client, Err(ClientError::V1NotAccepted)),
        "{:?}",
        client.map(|_| ())
    );
}

#[tokio::test]
async fn the_token_goes_in_the_authorization_header_or_the_query() {
    let peer = Peer::bind().await;
    let mut config = peer.config();
    config.token = Some(Token::new("tok.en"));
    let (_client, _events, _ws, upgrade) = connect_with(&peer, config.clone(), vec![]).await;
    assert_eq!(upgrade.authorization.as_deref(), Some("Bearer tok.en"));
    assert!(!upgrade.uri.contains("tok.en"));

    config.token_placement = TokenPlacement::Query;
    let (_client, _events, _ws, upgrade) = connect_with(&peer, config, vec![]).await;
    assert_eq!(upgrade.authorization, None);
    assert!(upgrade.uri.contains("&token=tok.en"), "{}", upgrade.uri);
}

#[tokio::test]
async fn the_client_gives_up_after_its_attempts_and_fails_waiting_sends() {
    let peer = Peer::bind().await;
    let mut config = peer.config();
    config.reconnect.max_attempts = Some(2);
    let (client, mut events, mut ws, _) = connect_with(&peer, config, vec![]).await;
    let ack = client.send("never acked").await.unwrap();
    read(&mut ws).await;
    drop(ws);
    drop(peer); // nobody listens any more
    let error = next_matching(&mut events, |e| match e {
        Event::Closed { error } => Some(error),
        _ => None,
    })
    .await;
    assert!(error.is_some_and(|e| e.to_string().contains("gave up")));
    assert!(matches!(ack.await, Err(ClientError::Closed)));
    assert!(matches!(client.send("x").await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn close_is_a_close_handshake_and_ends_the_client() {
    let peer = Peer::bind().await;
    let (client, mut events, mut ws, _) = connect_with(&peer, peer.config(), vec![]).await;
    let pending = client.send("unanswered").await.unwrap();
    read(&mut ws).await;
    let closing = tokio::spawn({
        let client = client.clone();
        async move { client.close().await }
    });
    use futures_util::StreamExt;
    let frame = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(frame.is_close(), "{frame:?}");
    drop(ws);
    closing.await.unwrap();
    assert!(matches!(pending.await, Err(ClientError::Closed)));
    let error = next_matching(&mut events, |e| match e {
        Event::Closed { error } => Some(error),
        _ => None,
    })
    .await;
    assert!(error.is_none());
}

#[tokio::test]
async fn the_first_connection_tries_the_fallback_urls_in_turn() {
    let gone = Peer::bind().await;
    let unreachable = format!("ws://{}/", gone.addr);
    drop(gone); // nothing listens there
    let peer = Peer::bind().await;
    let mut config = Config::new(
        unreachable,
        crate::peer::AGENT,
        jiva_client::ChatKind::Supervisor,
    );
    config.fallback_urls = vec![format!("ws://{}/", peer.addr)];
    let (client, _events, _ws, _) = connect_with(&peer, config, vec![message(1)]).await;
    assert_eq!(client.endpoint(), 1, "connected to the fallback");
}

#[tokio::test]
async fn a_dropped_client_whose_node_is_gone_resumes_on_the_next_endpoint() {
    let doomed = Peer::bind().await;
    let survivor = Peer::bind().await;
    let mut config = doomed.config();
    config.fallback_urls = vec![format!("ws://{}/", survivor.addr)];
    let (client, mut events, mut ws, _) = connect_with(&doomed, config, vec![message(1)]).await;
    write(&mut ws, ServerFrame::Message(message(2))).await;
    assert_eq!(next_message_seq(&mut events).await, 2);
    let ack = client.send("in flight").await.unwrap();
    let sent = read(&mut ws).await;
    assert_eq!(client.endpoint(), 0);
    drop(ws);
    drop(doomed); // the node is gone: the retry of it fails, the next attempt goes elsewhere

    let (mut ws, upgrade) = survivor.accept().await;
    assert!(upgrade.uri.ends_with("&since=2"), "{}", upgrade.uri);
    let again = read(&mut ws).await;
    assert_eq!(
        again["client_id"], sent["client_id"],
        "resent on the new node"
    );
    write(&mut ws, ack_for(&again, 3)).await;
    assert_eq!(
        tokio::time::timeout(PATIENCE, ack)
            .await
            .unwrap()
            .unwrap()
            .seq,
        3
    );
    write(&mut ws, ServerFrame::Message(message(3))).await;
    assert_eq!(next_message_seq(&mut events).await, 3);
    assert_eq!(client.endpoint(), 1);
    assert_eq!(client.stats().resumed, 1);
}

#[tokio::test]
async fn a_catch_up_the_server_could_not_read_is_resumed_on_a_new_connection() {
    let peer = Peer::bind().await;
    let (client, mut events, ws, _) =
        connect_with(&peer, peer.config(), vec![message(1), message(2)]).await;
    drop(ws);

    // The resume's catch-up fails: the frames after the error would leave 3 out.
    let (mut ws, upgrade) = peer.accept().await;
    assert!(upgrade.uri.ends_with("&since=2"), "{}", upgrade.uri);
    write(&mut ws, crate::peer::welcome()).await;
    write(
        &mut ws,
        ServerFrame::Error(ErrorFrame::new(
            ErrorCode::HistoryUnavailable,
            "history unavailable",
            None,
        )),
    )
    .await;
    write(&mut ws, ServerFrame::Message(message(4))).await;
    drop(ws);

    let (mut ws, upgrade) = peer.accept().await;
    assert!(
        upgrade.uri.ends_with("&since=2"),
        "resumed from the same point: {}",
        upgrade.uri
    );
    write(&mut ws, crate::peer::welcome()).await;
    write(&mut ws, ServerFrame::Message(message(3))).await;
    write(&mut ws, ServerFrame::Message(message(4))).await;
    assert_eq!(next_message_seq(&mut events).await, 3, "nothing skipped");
    assert_eq!(next_message_seq(&mut events).await, 4);
    assert_eq!(client.stats().duplicates_dropped, 0);
}
