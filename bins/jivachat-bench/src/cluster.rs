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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::check::{Checker, Verdict, number_field};
use crate::common::{self, Ws};
use crate::fanout::{parse_text, send_loop};

/// Limits that keep a run bounded whatever the flags say.
const MAX_SOCKETS: usize = 60_000;
const MAX_DURATION_S: f64 = 600.0;
/// How long a chat's probe may take to reach every socket.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a socket waits for a probe before the next one is sent.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// The text of probe messages starts with this (bench messages start with a digit).
const PROBE: &str = "probe.";

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The nodes, comma-separated (127.0.0.0/8 only); senders connect to the first.
    #[arg(long, value_delimiter = ',', required = true, value_parser = common::parse_loopback)]
    pub servers: Vec<SocketAddr>,
    /// Chats (R).
    #[arg(long, default_value_t = 30)]
    pub chats: usize,
    /// Sockets per chat (M), senders included.
    #[arg(long, default_value_t = 10)]
    pub sockets: usize,
    /// Sending sockets per chat (P ≤ M), all on the first server.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Offered messages per second over all senders; absent: as fast as the window allows.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Messages each sender may have in flight (sent, not yet echoed back to it).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Seconds of measured sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of sending before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds to wait for deliveries after sending stops.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// The most messages any one sender sends.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_messages: u64,
    /// Sockets being opened at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
}

struct Shared {
    /// Latency on the senders' node (index 0) and on the other nodes (index 1).
    hist: [Mutex<Histogram<u64>>; 2],
    delivered: AtomicU64,
    in_window: AtomicU64,
    measure_from: u64,
    measure_to: u64,
}

struct ReaderStats {
    chat: usize,
    check: Checker,
    errors: u64,
    foreign: u64,
    closed_by_server: Option<String>,
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
    let ClusterArgs {
        chats,
        sockets,
        senders,
        ..
    } = *args;
    let servers = args.servers.clone();
    let Some(&first) = servers.first() else {
        bail!("--servers needs at least one address");
    };
    if chats == 0 || sockets < 2 || senders == 0 || senders >= sockets {
        bail!("need chats ≥ 1, sockets ≥ 2 and 1 ≤ senders < sockets");
    }
    if chats.saturating_mul(sockets) > MAX_SOCKETS {
        bail!("at most {MAX_SOCKETS} sockets per run");
    }
    if !(args.duration > 0.0 && args.duration + args.warmup + args.drain <= MAX_DURATION_S) {
        bail!("duration + warmup + drain must be within (0, {MAX_DURATION_S}] seconds");
    }
    let window = args.window.max(1);
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
    let mut conns = Vec::with_capacity(chats * sockets);
    while let Some(done) = probing.join_next().await {
        let (chat, m) = done.context("probe task")??;
        conns.extend(m.into_iter().map(|(slot, node, ws)| (chat, slot, node, ws)));
    }

    let start = Instant::now();
    let t0 = common::now_nanos();
    let warmup_ns = (args.warmup * 1e9) as u64;
    let duration_ns = (args.duration * 1e9) as u64;
    let stop_at = start + Duration::from_nanos(warmup_ns + duration_ns);
    let shared = Arc::new(Shared {
        hist: [
            Mutex::new(common::histogram()?),
            Mutex::new(common::histogram()?),
        ],
        delivered: AtomicU64::new(0),
        in_window: AtomicU64::new(0),
        measure_from: t0 + warmup_ns,
        measure_to: t0 + warmup_ns + duration_ns,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let per_sender_interval = args.rate.map(|rate| {
        let total = (chats * senders) as f64;
        Duration::from_secs_f64((total / rate.max(1e-3)).min(60.0))
    });
    let mut on_node = vec![0u64; servers.len()];
    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    for (chat, slot, node, ws) in conns {
        if let Some(n) = on_node.get_mut(node) {
            *n += 1;
        }
        let (sink, stream) = ws.split();
        let permits = (slot < senders).then(|| Arc::new(Semaphore::new(window)));
        if let Some(permits) = &permits {
            let global = chat * senders + slot;
            let offset = per_sender_interval
                .map(|i| i.mul_f64(global as f64 / (chats * senders) as f64))
                .unwrap_or_default();
            writers.spawn(send_loop(
                sink,
                chat,
                slot,
                Arc::clone(permits),
                per_sender_interval,
                start + offset,
                stop_at,
                args.max_messages,
            ));
        } else {
            drop(sink);
        }
        readers.spawn(read_loop(
            stream,
            chat,
            (slot < senders).then_some(slot),
            senders,
            usize::from(node != 0),
            permits,
            Arc::clone(&shared),
            stop_rx.clone(),
        ));
    }

    let mut sent = vec![vec![0u64; senders]; chats];
    while let Some(done) = writers.join_next().await {
        let (chat, slot, count) = done.context("sender task")?;
        if let Some(c) = sent.get_mut(chat).and_then(|s| s.get_mut(slot)) {
            *c = count;
        }
    }
    let sent_total: u64 = sent.iter().flatten().sum();
    let expected = sent_total * sockets as u64;
    let drain_until = Instant::now() + Duration::from_secs_f64(args.drain);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);

    let mut stats = Vec::with_capacity(chats * sockets);
    while let Some(done) = readers.join_next().await {
        stats.push(done.context("reader task")?);
    }
    let totals = Totals::of(&stats, &sent, chats);
    let hist = |i: usize| {
        shared
            .hist
            .get(i)
            .map(|h| h.lock().unwrap_or_else(PoisonError::into_inner).clone())
    };
    let latency = |i: usize| hist(i).map(|h| common::percentiles(&h));
    let deliveries_per_s = shared.in_window.load(Ordering::Relaxed) as f64 / args.duration;
    Ok(json!({
        "workload": "cluster",
        "servers": servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "sockets_per_server": on_node,
        "chats": chats,
        "sockets_per_chat": sockets,
        "senders_per_chat": senders,
        "window": window,
        "rate_msgs_per_s": args.rate,
        "duration_s": args.duration,
        "messages_sent": sent_total,
        "deliveries": shared.delivered.load(Ordering::Relaxed),
        "deliveries_per_s": deliveries_per_s.round(),
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

/// Every socket's checks summed, and the order compared within each chat.
#[derive(Default)]
struct Totals {
    lost: u64,
    duplicated: u64,
    reordered: u64,
    seq_reordered: u64,
    seq_gaps: u64,
    no_seq: u64,
    order_mismatch: u64,
    errors: u64,
    foreign: u64,
    closed: u64,
    close_reasons: Vec<String>,
}

impl Totals {
    fn of(stats: &[ReaderStats], sent: &[Vec<u64>], chats: usize) -> Self {
        let mut t = Self::default();
        let mut first_hash: Vec<Option<u64>> = vec![None; chats];
        for s in stats {
            let c = &s.check;
            t.lost += c.lost(sent.get(s.chat).map(Vec::as_slice).unwrap_or_default());
            t.duplicated += c.duplicated;
            t.reordered += c.reordered;
            t.seq_reordered += c.seq_reordered;
            t.seq_gaps += c.seq_gaps;
            t.no_seq += c.no_seq;
            t.errors += s.errors;
            t.foreign += s.foreign;
            if let Some(reason) = &s.closed_by_server {
                t.closed += 1;
                if t.close_reasons.len() < 5 {
                    t.close_reasons.push(reason.clone());
                }
            }
            match first_hash.get_mut(s.chat) {
                Some(slot @ None) => *slot = Some(c.order_hash),
                Some(Some(h)) if *h != c.order_hash => t.order_mismatch += 1,
                _ => {}
            }
        }
        t
    }
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

#[allow(clippy::too_many_arguments)]
async fn read_loop(
    mut stream: SplitStream<Ws>,
    chat: usize,
    me: Option<usize>,
    senders: usize,
    group: usize,
    permits: Option<Arc<Semaphore>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ReaderStats {
    let mut stats = ReaderStats {
        chat,
        check: Checker::new(senders),
        errors: 0,
        foreign: 0,
        closed_by_server: None,
    };
    loop {
        let frame = tokio::select! {
            f = stream.next() => f,
            _ = stop.changed() => break,
        };
        let now = common::now_nanos();
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(c))) => {
                stats.closed_by_server = Some(
                    c.map(|c| format!("{} {}", u16::from(c.code), c.reason))
                        .unwrap_or_else(|| "close".into()),
                );
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                stats.closed_by_server = Some(e.to_string());
                break;
            }
            None => {
                stats.closed_by_server = Some("eof".into());
                break;
            }
        };
        let seq = number_field(&text, "seq");
        let message = common::field(&text, "message");
        if message.is_some_and(|m| m.starts_with(PROBE)) {
            stats.check.observe_seq(seq);
            continue;
        }
        let Some((sender, n, sent)) = message.and_then(parse_text) else {
            if text.contains("\"error\"") {
                stats.errors += 1;
                if let Some(p) = &permits {
                    p.add_permits(1);
                }
            } else {
                stats.foreign += 1;
            }
            continue;
        };
        if Some(sender) == me {
            if let Some(p) = &permits {
                p.add_permits(1);
            }
        }
        match stats.check.record(sender, n, seq, true) {
            Verdict::New => {}
            Verdict::Duplicate => continue,
            Verdict::Foreign => {
                stats.foreign += 1;
                continue;
            }
        }
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        if (shared.measure_from..shared.measure_to).contains(&now) {
            shared.in_window.fetch_add(1, Ordering::Relaxed);
        }
        if sent >= shared.measure_from && sent < shared.measure_to {
            if let Some(h) = shared.hist.get(group) {
                h.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .saturating_record(now.saturating_sub(sent).max(1));
            }
        }
    }
    stats
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
