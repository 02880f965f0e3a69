//! Shutdown within the configured grace: draining the sockets and flushing the notifications
//! share one deadline (`docs/RELIABILITY.md`, "Shutdown within the grace").

use std::time::Duration;

use jiva_store_dynamo::testing::LocalDynamo;

use crate::faults::{StoreProxy, dynamo_env, dynamo_tables, moto_addr};
use crate::metrics::ServerProcess;
use crate::notify::{appsync, next_received};
use crate::support::*;

/// The grace the server is given.
const GRACE: Duration = Duration::from_secs(3);
/// What the test allows past the grace: the documented margin (500 ms for blocking tasks at
/// exit) and room for a busy machine. Before the fix, the sockets and the notifications each
/// had a whole grace of their own, and this server took two graces (6 s) to exit.
const MARGIN: Duration = Duration::from_secs(2);

/// A socket stuck on a store write that never answers and an AppSync that never answers, then
/// SIGTERM: the process still exits within the grace (plus the margin), cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_while_a_socket_and_appsync_hang() {
    LocalDynamo::shared().expect("a DynamoDB-compatible server for the tests");
    let tables = dynamo_tables().await;
    let proxy = StoreProxy::start(moto_addr()).await;
    let endpoint = proxy.endpoint();
    let (appsync_url, mut received) = appsync(true).await;
    let grace_ms = GRACE.as_millis().to_string();
    let mut env = dynamo_env(&tables, &endpoint).to_vec();
    env.extend([
        ("JIVA_SHUTDOWN_GRACE_MS", grace_ms.as_str()),
        // The store's own deadline must not be what ends the stuck write.
        ("JIVA_DYNAMODB_APPEND_DEADLINE_MS", "600000"),
        ("GRAPHQL_API_URL", appsync_url.as_str()),
        ("GRAPHQL_API_KEY", "da2-shutdown"),
    ]);
    let mut server = ServerProcess::start_with(&env);

    let mut ws = connect(&server.chat_url("supervisor")).await;
    // The first message is stored and its notification hangs at AppSync.
    say(&mut ws, "agent", "first").await;
    assert_eq!(next_json(&mut ws).await["message"], "first");
    next_received(&mut received).await;
    // The second one hangs at the store, so its socket is busy when shutdown starts.
    proxy.hold_writes(true);
    say(&mut ws, "agent", "second").await;
    proxy.held_writes(1).await;

    let (status, took) = server.terminate_and_wait().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took <= GRACE + MARGIN,
        "exited {took:?} after SIGTERM; the grace is {GRACE:?} (margin {MARGIN:?})"
    );
    proxy.hold_writes(false);
}
