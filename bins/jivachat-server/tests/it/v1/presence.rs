//! Presence (one entry per identity, on every server) and typing (relayed, never stored, rate
//! limited).

use std::time::Duration;

use jiva_auth::{ClaimNames, JwtConfig, JwtSecret, issue_hs256};
use jiva_bus_redis::testing::LocalRedis;
use jiva_core::{AgentId, UserRole};
use jivachat_server::{AuthChoice, BusChoice, Config};
use serde_json::{Value, json};

use super::{V1, of_type};
use crate::support::{AGENT, TestServer};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const SUPERVISOR: &str = "5d1e0000-0000-4000-8000-00000000beef";

fn auth(config: &mut Config) {
    config.auth = AuthChoice::Jwt(JwtConfig::new(JwtSecret::new(SECRET)));
}

fn token(agent: &str, role: UserRole) -> String {
    issue_hs256(
        &JwtSecret::new(SECRET),
        &ClaimNames::default(),
        &AgentId::parse(agent).unwrap(),
        role,
        Duration::from_secs(600),
    )
    .unwrap()
}

/// The supervisor chat of [`AGENT`] on `server`, as `who` with `role`.
fn url(server: &TestServer, who: &str, role: UserRole) -> String {
    format!(
        "{}&token={}",
        server.chat_url(AGENT, "supervisor"),
        token(who, role)
    )
}

fn member(id: &str, role: &str) -> Value {
    json!({"id": id, "role": role})
}

fn presence(frames: &[Value]) -> Value {
    of_type(frames, "presence")[0]["members"].clone()
}

#[tokio::test]
async fn presence_has_one_entry_per_identity_with_joins_and_leaves() {
    let server = TestServer::start_with(auth).await;
    let (mut agent, frames, _) = V1::open(&url(&server, AGENT, UserRole::Agent)).await;
    assert_eq!(frames[0]["you"], member(AGENT, "agent"));
    assert_eq!(presence(&frames), json!([member(AGENT, "agent")]));

    // A second socket of the same identity: still one entry, no join.
    let (second, frames, _) = V1::open(&url(&server, AGENT, UserRole::Agent)).await;
    assert_eq!(presence(&frames), json!([member(AGENT, "agent")]));
    assert!(agent.drain().await.is_empty());

    // A supervisor comes (agents sort first), and goes.
    let (supervisor, frames, _) = V1::open(&url(&server, SUPERVISOR, UserRole::Supervisor)).await;
    assert_eq!(
        presence(&frames),
        json!([member(AGENT, "agent"), member(SUPERVISOR, "supervisor")])
    );
    assert_eq!(
        agent.expect("presence_join").await["member"],
        member(SUPERVISOR, "supervisor")
    );
    drop(supervisor);
    assert_eq!(
        agent.expect("presence_leave").await["member"],
        member(SUPERVISOR, "supervisor")
    );
    // The agent's second socket closing does not make it leave.
    drop(second);
    let (mut watcher, _, _) = V1::open(&url(&server, SUPERVISOR, UserRole::Supervisor)).await;
    assert!(of_type(&agent.drain().await, "presence_leave").is_empty());
    assert!(of_type(&watcher.drain().await, "presence_leave").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn v0_sockets_count_in_presence() {
    let server = TestServer::start().await;
    let (mut v1, frames, _) = V1::open(&server.chat_url(AGENT, "supervisor")).await;
    assert_eq!(presence(&frames).as_array().unwrap().len(), 1);
    let v0 = server.connect(AGENT, "supervisor").await;
    let join = v1.expect("presence_join").await;
    assert_eq!(join["member"]["role"], "anonymous");
    drop(v0);
    assert_eq!(v1.expect("presence_leave").await["member"], join["member"]);
    server.stop().await;
}

#[tokio::test]
async fn typing_is_relayed_to_others_rate_limited_and_never_stored() {
    let server = TestServer::start_with(auth).await;
    let (mut agent, _, _) = V1::open(&url(&server, AGENT, UserRole::Agent)).await;
    let (mut supervisor, _, _) = V1::open(&url(&server, SUPERVISOR, UserRole::Supervisor)).await;
    agent.expect("presence_join").await;
    agent.send(json!({"type":"typing","active":true})).await;
    agent.send(json!({"type":"typing","active":true})).await;
    agent.send(json!({"type":"typing","active":false})).await;
    // The agent's reader handled all three before it answers its ping.
    assert!(of_type(&agent.drain().await, "typing").is_empty());
    let seen = supervisor.drain().await;
    // The second "typing" within the interval is dropped; the stop clears the indicator at once.
    assert_eq!(
        of_type(&seen, "typing"),
        [
            &json!({"type":"typing","member":member(AGENT, "agent"),"active":true}),
            &json!({"type":"typing","member":member(AGENT, "agent"),"active":false})
        ]
    );
    let (_fresh, frames, live) = V1::open(&url(&server, SUPERVISOR, UserRole::Supervisor)).await;
    assert_eq!(of_type(&frames, "latest")[0]["messages"], json!([]));
    assert_eq!(live, None);
    server.stop().await;
}

/// The frames of `v1` until `member` is among those present (from its `presence` frame or a
/// later join).
async fn until_present(v1: &mut V1, first: &[Value], who: &Value) -> Vec<Value> {
    if presence(first).as_array().unwrap().contains(who) {
        return Vec::new();
    }
    let mut seen = Vec::new();
    loop {
        let frame = v1.recv().await;
        let done = frame["type"] == "presence_join" && &frame["member"] == who;
        seen.push(frame);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_cross_two_nodes_with_one_entry_per_identity() {
    let redis = LocalRedis::start().await.unwrap();
    let cluster = |config: &mut Config| {
        auth(config);
        config.bus = BusChoice::Redis(jiva_bus_redis::RedisUrl::new(redis.url()));
    };
    let a = TestServer::start_with(cluster).await;
    let b = TestServer::start_with(cluster).await;
    let agent_m = member(AGENT, "agent");
    let supervisor_m = member(SUPERVISOR, "supervisor");

    let (mut agent, _, _) = V1::open(&url(&a, AGENT, UserRole::Agent)).await;
    let (mut supervisor, first, _) = V1::open(&url(&b, SUPERVISOR, UserRole::Supervisor)).await;
    // Each sees the other, whichever server it is on.
    until_present(&mut supervisor, &first, &agent_m).await;
    assert_eq!(agent.expect("presence_join").await["member"], supervisor_m);

    // The agent's second socket, on the other node: no second entry anywhere. The supervisor's
    // typing (published after the second socket's announcement) marks the point.
    let (second, frames, _) = V1::open(&url(&b, AGENT, UserRole::Agent)).await;
    let listed = presence(&frames);
    assert_eq!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| **m == agent_m)
            .count(),
        1,
        "{listed}"
    );
    supervisor
        .send(json!({"type":"typing","active":true}))
        .await;
    let (before, typing) = agent.until("typing").await;
    assert_eq!(typing["member"], supervisor_m);
    assert!(before.is_empty(), "{before:?}");

    // The second socket goes: the agent is still on A, so nobody sees it leave.
    drop(second);
    // The first goes: the supervisor, on B, sees the agent leave.
    drop(agent);
    let (before, leave) = supervisor.until("presence_leave").await;
    assert_eq!(leave["member"], agent_m);
    assert!(of_type(&before, "presence_leave").is_empty(), "{before:?}");
    a.stop().await;
    b.stop().await;
}
