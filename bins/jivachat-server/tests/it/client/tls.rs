//! `jiva-client` over `wss://` against the server's native TLS (`--tls-cert/--tls-key`), with a
//! test CA made here: v1 sends with ack and resumes across a restart, v0 chats, and a
//! certificate the client cannot trust (another CA, another host name) is refused clearly,
//! without retrying.

use jiva_client::protocol::ServerFrame;
use jiva_client::{Client, ClientError, Event, Protocol, V0Frame};

use super::{Restartable, next_matching};
use crate::support::{AGENT, PATIENCE};
use crate::tls::{TestCa, write_pair};

/// A server on native TLS with a `localhost` certificate of `ca` (files in `dir`).
async fn tls_server(ca: &TestCa, dir: &std::path::Path) -> Restartable {
    let (cert, key) = write_pair(dir, &ca.leaf("server", 1));
    let files = jiva_ws::TlsFiles {
        cert,
        key,
        poll: None,
    };
    Restartable::start_tls(|_| {}, Some(files)).await
}

/// A client configuration for `server` trusting `ca`.
fn trusting(server: &Restartable, ca: &TestCa, protocol: Protocol) -> jiva_client::Config {
    let mut config = server.config(AGENT, protocol);
    config.tls_roots_pem = vec![ca.pem.clone()];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_over_wss_sends_with_ack_and_resumes_across_a_restart() {
    let (ca, dir) = (TestCa::new(), tempfile::tempdir().unwrap());
    let mut server = tls_server(&ca, dir.path()).await;
    assert!(server.url().starts_with("wss://"));
    let (client, mut events) = Client::connect(trusting(&server, &ca, Protocol::V1))
        .await
        .unwrap();
    let first = client.send("over tls").await.unwrap().await.unwrap();
    let shown = next_matching(&mut events, |e| match e {
        Event::V1(ServerFrame::Message(m)) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(shown.message_id, first.message_id);

    server.restart().await;
    let since = next_matching(&mut events, |e| match e {
        Event::Connected { since, .. } => Some(since),
        _ => None,
    })
    .await;
    assert_eq!(since, Some(first.seq), "resumed from the message shown");
    let second = client.send("after the restart").await.unwrap();
    let second = tokio::time::timeout(PATIENCE, second)
        .await
        .unwrap()
        .unwrap();
    let next = next_matching(&mut events, |e| match e {
        Event::V1(ServerFrame::Message(m)) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(next.message_id, second.message_id, "nothing shown twice");
    assert_eq!(client.stats().duplicates_dropped, 0);
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v0_over_wss_chats() {
    let (ca, dir) = (TestCa::new(), tempfile::tempdir().unwrap());
    let mut server = tls_server(&ca, dir.path()).await;
    let (client, mut events) = Client::connect(trusting(&server, &ca, Protocol::V0))
        .await
        .unwrap();
    client.say("hello over tls").await.unwrap();
    let echoed = next_matching(&mut events, |e| match e {
        Event::V0(V0Frame::Message { message, .. }) => Some(message),
        _ => None,
    })
    .await;
    assert_eq!(echoed, "hello over tls");
    client.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_or_host_is_refused_and_not_retried() {
    let (ca, dir) = (TestCa::new(), tempfile::tempdir().unwrap());
    let mut server = tls_server(&ca, dir.path()).await;

    // Another CA: the first connection fails with the reason.
    let stranger = TestCa::new();
    let refused = Client::connect(trusting(&server, &stranger, Protocol::V1)).await;
    let Err(error) = refused else {
        panic!("an untrusted certificate was accepted")
    };
    assert!(matches!(error, ClientError::Tls(_)), "{error:?}");
    // (Both test CAs bear one name: rustls finds the issuer and rejects its signature.)
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    assert!(!error.is_transient());

    // Another host name: the certificate names localhost, the URL an address.
    let mut by_address = trusting(&server, &ca, Protocol::V1);
    by_address.url = format!("wss://{}/", server.addr);
    let error = Client::connect(by_address).await.err().unwrap();
    assert!(matches!(error, ClientError::Tls(_)), "{error:?}");
    assert!(error.to_string().contains("not valid for name"), "{error}");

    // A connected client whose server comes back with a certificate it cannot trust ends with
    // that error at its first reconnection attempt, rather than retrying for ever.
    let (client, mut events) = Client::connect(trusting(&server, &ca, Protocol::V1))
        .await
        .unwrap();
    write_pair(dir.path(), &stranger.leaf("impostor", 2));
    server.restart().await;
    let ended = next_matching(&mut events, |e| match e {
        Event::Closed { error } => Some(error),
        _ => None,
    })
    .await;
    assert!(matches!(ended, Some(ClientError::Tls(_))), "{ended:?}");
    assert_eq!(client.stats().connections, 1);
    // A send after the end is refused, or (queued as the task ended) resolves to the end.
    let late = match client.send("x").await {
        Err(e) => e,
        Ok(ack) => ack.await.unwrap_err(),
    };
    assert!(matches!(late, ClientError::Closed), "{late:?}");
    server.stop().await;
}
