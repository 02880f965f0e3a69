//! `cluster`: fan-out across nodes. R chats × M sockets, P senders per chat: the senders connect
//! to the first of `--servers`, the other sockets of each chat are spread over all of them in
//! turn. Every socket runs the same loss, duplicate and order checks as `fanout`
//! ([`crate::check`]), plus the store's `seq`: increasing on every socket, without gaps, and one
//! order per chat. Latency is reported separately for sockets on the senders' node (position 0
//! of `--servers`) and on the others.
//!
//! Before measuring, each chat's first sender sends probe messages until every socket of the
//! chat has received one, so that a node's subscription to the chat (over the bus) is in place:
//! a chat whose probe does not reach every socket within 30 s fails the run (is the bus wired?).
//! `--servers A,A,A` puts every socket on one node: it tests the bench itself, and the "other
//! nodes" figures are then from that node too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::{self, Ws};
use crate::measure::{self, PROBE};

/// How long a chat's probe may take to reach every socket.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a socket waits for a probe before the next one is sent.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The nodes, comma-separated (127.0.0.0/8 only); senders connect to the first.
    #[arg(long, value_delimiter = ',', required = true, value_parser = common::parse_loopback)]
    pub servers: Vec<SocketAddr>,
    #[command(flatten)]
    pub load: measure::Load,
    /// Sockets being opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
}

/// One socket of a chat: its slot (senders first), the node it is on, the socket.
type Member = (usize, usize, Ws);

/// Where slot `slot` of a chat connects: senders to node 0, the others in turn over all nodes.
fn node_of(slot: usize, senders: usize, nodes: usize) -> usize {
    if slot < senders {
        0
    } else {
        (slot - senders) % nodes.max(1)
    }
}

/// Runs one cluster fan-out measurement and returns its JSON result.
pub async fn run(args: &ClusterArgs) -> anyhow::Result<Value> {
    args.load.check()?;
    let measure::Load {
        chats,
        sockets,
        senders,
        ..
    } = args.load;
    let servers = args.servers.clone();
    let Some(&first) = servers.first() else {
        bail!("--servers needs at least one address");
    };
    if senders >= sockets {
        bail!("a cluster run needs receivers: senders < sockets");
    }
    let window = args.load.window.max(1);
    let load_before = common::loadavg();

    // Connect everything, then probe each chat until all its sockets hear it.
    let agents: Vec<String> = (0..chats).map(|_| common::fresh_agent()).collect();
    let limit = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut opened = JoinSet::new();
    for (chat, agent) in agents.iter().enumerate() {
        for slot in 0..sockets {
            let node = node_of(slot, senders, servers.len());
            let server = servers.get(node).copied().unwrap_or(first);
            let (agent, limit) = (agent.clone(), Arc::clone(&limit));
            opened.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                let ws = common::open(server, None, &agent, "supervisor", common::ws_config())
                    .await
                    .with_context(|| format!("connecting to {server}"))?;
                anyhow::Ok((chat, (slot, node, ws)))
            });
        }
    }
    let mut members: Vec<Vec<Member>> = (0..chats).map(|_| Vec::new()).collect();
    while let Some(done) = opened.join_next().await {
        let (chat, member) = done.context("connect task")??;
        if let Some(m) = members.get_mut(chat) {
            m.push(member);
        }
    }
    let mut probing = JoinSet::new();
    for (chat, mut m) in members.into_iter().enumerate() {
        m.sort_by_key(|(slot, _, _)| *slot);
        probing.spawn(async move { probe(chat, m).await.map(|m| (chat, m)) });
    }
    let mut on_node = vec![0u64; servers.len()];
    let mut conns = Vec::with_capacity(chats * sockets);
    while let Some(done) = probing.join_next().await {
        let (chat, m) = done.context("probe task")??;
        for (slot, node, ws) in m {
            if let Some(n) = on_node.get_mut(node) {
                *n += 1;
            }
            let group = usize::from(node != 0);
            conns.push(measure::Conn {
                chat,
                slot,
                group,
                ws,
            });
        }
    }

    let plan = measure::Plan {
        load: args.load.clone(),
        groups: 2,
        check_seq: true,
        server_pid: None,
    };
    let out = measure::run(&plan, conns).await?;
    let totals = measure::Totals::of(&out, chats);
    let latency = |i: usize| out.latency.get(i).map(common::percentiles);
    Ok(json!({
        "workload": "cluster",
        "servers": servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "sockets_per_server": on_node,
        "chats": chats,
        "sockets_per_chat": sockets,
        "senders_per_chat": senders,
        "window": window,
        "rate_msgs_per_s": args.load.rate,
        "duration_s": args.load.duration,
        "messages_sent": out.sent.iter().flatten().sum::<u64>(),
        "deliveries": out.delivered,
        "deliveries_per_s": out.deliveries_per_s.round(),
        "latency_sender_node": latency(0),
        "latency_other_nodes": latency(1),
        "lost": totals.lost,
        "duplicated": totals.duplicated,
        "reordered": totals.reordered,
        "seq_reordered": totals.seq_reordered,
        "seq_gaps": totals.seq_gaps,
        "frames_without_seq": totals.no_seq,
        "order_mismatch": totals.order_mismatch,
        "error_frames": totals.errors,
        "unexpected_frames": totals.foreign,
        "closed_by_server": totals.closed,
        "close_reasons": totals.close_reasons,
        "load_before": load_before,
        "load_after": common::loadavg(),
    }))
}

/// The Markdown row for a cluster result.
pub fn row(v: &Value) -> String {
    let here = v.get("latency_sender_node").cloned().unwrap_or_default();
    let there = v.get("latency_other_nodes").cloned().unwrap_or_default();
    format!(
        "| cluster | {} | {}×{} | {} | {} | {} | {} | {} | {} | {}/{}/{} | {}/{}/{} | {} |",
        v.get("servers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        common::cell(v, "chats"),
        common::cell(v, "sockets_per_chat"),
        common::cell(v, "senders_per_chat"),
        common::cell(v, "deliveries_per_s"),
        common::cell(&here, "p50_ms"),
        common::cell(&here, "p99_ms"),
        common::cell(&there, "p50_ms"),
        common::cell(&there, "p99_ms"),
        common::cell(v, "lost"),
        common::cell(v, "duplicated"),
        common::cell(v, "reordered"),
        common::cell(v, "seq_reordered"),
        common::cell(v, "seq_gaps"),
        common::cell(v, "order_mismatch"),
        v.get("load_before")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The header of [`row`]'s table.
pub const HEADER: &str = "| workload | nodes | chats×sockets | senders/chat | deliveries/s | sender's node p50 ms | p99 ms | other nodes p50 ms | p99 ms | lost/dup/reordered | seq back/gaps, order mismatches | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|";

/// Sends probes from the chat's first member (a sender) until every member has received one.
async fn probe(chat: usize, mut members: Vec<Member>) -> anyhow::Result<Vec<Member>> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut heard = vec![false; members.len()];
    let mut n = 0u64;
    while heard.iter().any(|h| !h) {
        if Instant::now() >= deadline {
            let missing: Vec<usize> = members
                .iter()
                .zip(&heard)
                .filter(|(_, h)| !**h)
                .map(|((_, node, _), _)| *node)
                .collect();
            bail!(
                "chat {chat}: sockets on nodes {missing:?} heard no probe within {} s; is \
                 every node on the same bus (--bus redis)?",
                PROBE_TIMEOUT.as_secs()
            );
        }
        let Some((_, _, sender)) = members.first_mut() else {
            bail!("chat {chat} has no sockets");
        };
        sender
            .send(WsMessage::text(common::chat_frame(&format!("{PROBE}{n}"))))
            .await
            .context("sending a probe")?;
        n += 1;
        let until = Instant::now() + PROBE_EVERY;
        for ((_, _, ws), h) in members.iter_mut().zip(heard.iter_mut()) {
            while !*h {
                let Ok(frame) = tokio::time::timeout_at(until.into(), ws.next()).await else {
                    break;
                };
                match frame {
                    Some(Ok(WsMessage::Text(t))) => {
                        if common::field(&t, "message").is_some_and(|m| m.starts_with(PROBE)) {
                            *h = true;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("chat {chat}: a socket failed while probing: {e}"),
                    None => bail!("chat {chat}: a socket closed while probing"),
                }
            }
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_go_to_the_first_node_and_the_others_in_turn() {
        let nodes: Vec<usize> = (0..8).map(|slot| node_of(slot, 2, 3)).collect();
        assert_eq!(nodes, vec![0, 0, 0, 1, 2, 0, 1, 2]);
    }
}
