//! `fanout`: R chats × M sockets, P senders per chat. Each message's text carries its sender,
//! a sequence number and its send time; every receiving socket records the latency from send
//! to its own receipt and checks loss, duplication and order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::{self, Ws};

/// Limits that keep a run bounded whatever the flags say.
const MAX_SOCKETS: usize = 60_000;
const MAX_DURATION_S: f64 = 600.0;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// The server (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    /// Chats (R).
    #[arg(long, default_value_t = 100)]
    pub chats: usize,
    /// Sockets per chat (M), senders included.
    #[arg(long, default_value_t = 10)]
    pub sockets: usize,
    /// Sending sockets per chat (P ≤ M).
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
    /// Spread client sockets over this many source addresses (127.0.0.2, …).
    #[arg(long, default_value_t = 1)]
    pub sources: usize,
    /// Sockets being opened at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// The server's pid, to report the share of a core it used while sending.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to wait between the last socket opening and the first message (default: 0.5 s
    /// plus 0.1 ms per socket); longer for a slow server (e.g. under valgrind).
    #[arg(long)]
    pub settle: Option<f64>,
}

struct Shared {
    hist: Mutex<Histogram<u64>>,
    /// Distinct deliveries so far (every socket, every message).
    delivered: AtomicU64,
    /// Deliveries received inside the measured window.
    in_window: AtomicU64,
    measure_from: u64,
    measure_to: u64,
}

#[derive(Default)]
struct ReaderStats {
    chat: usize,
    distinct: Vec<u64>,
    duplicated: u64,
    reordered: u64,
    errors: u64,
    foreign: u64,
    order_hash: u64,
    closed_by_server: Option<String>,
}

/// Runs one fan-out measurement and returns its JSON result.
pub async fn run(args: &FanoutArgs) -> anyhow::Result<Value> {
    let FanoutArgs {
        server,
        chats,
        sockets,
        senders,
        ..
    } = *args;
    if chats == 0 || sockets == 0 || senders == 0 || senders > sockets {
        bail!("need chats ≥ 1, sockets ≥ 1 and 1 ≤ senders ≤ sockets");
    }
    if chats.saturating_mul(sockets) > MAX_SOCKETS {
        bail!("at most {MAX_SOCKETS} sockets per run");
    }
    if !(args.duration > 0.0 && args.duration + args.warmup + args.drain <= MAX_DURATION_S) {
        bail!("duration + warmup + drain must be within (0, {MAX_DURATION_S}] seconds");
    }
    let window = args.window.max(1);
    let load_before = common::loadavg();

    // Connect everything first.
    let agents: Vec<String> = (0..chats).map(|_| common::fresh_agent()).collect();
    let mut opened = JoinSet::new();
    let connect_limit = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    for (chat, agent) in agents.iter().enumerate() {
        for slot in 0..sockets {
            let agent = agent.clone();
            let limit = Arc::clone(&connect_limit);
            let source = (args.sources > 1)
                .then(|| common::source_addr((chat * sockets + slot) % args.sources));
            opened.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                let ws =
                    common::open(server, source, &agent, "supervisor", common::ws_config()).await?;
                anyhow::Ok((chat, slot, ws))
            });
        }
    }
    let mut conns: Vec<(usize, usize, Ws)> = Vec::with_capacity(chats * sockets);
    while let Some(done) = opened.join_next().await {
        conns.push(done.context("connect task")??);
    }
    // Let the server finish joining every socket to its room before anything is sent.
    let settle = args
        .settle
        .map_or(0.5 + (chats * sockets) as f64 / 10_000.0, |s| {
            s.clamp(0.0, 60.0)
        });
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;

    let start = Instant::now();
    let t0 = common::now_nanos();
    let warmup_ns = (args.warmup * 1e9) as u64;
    let duration_ns = (args.duration * 1e9) as u64;
    let stop_at = start + Duration::from_nanos(warmup_ns + duration_ns);
    let shared = Arc::new(Shared {
        hist: Mutex::new(common::histogram()?),
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

    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    for (chat, slot, ws) in conns {
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
            permits,
            Arc::clone(&shared),
            stop_rx.clone(),
        ));
    }

    // Sending phase.
    let cpu_start = (
        common::cpu_seconds(args.server_pid),
        common::cpu_seconds(None),
        Instant::now(),
    );
    let mut sent = vec![vec![0u64; senders]; chats];
    while let Some(done) = writers.join_next().await {
        let (chat, slot, count) = done.context("sender task")?;
        if let Some(c) = sent.get_mut(chat).and_then(|s| s.get_mut(slot)) {
            *c = count;
        }
    }
    let cpu_wall = cpu_start.2.elapsed().as_secs_f64();
    let server_cpu = args
        .server_pid
        .and_then(|pid| common::cpu_share(cpu_start.0, common::cpu_seconds(Some(pid)), cpu_wall));
    let bench_cpu = common::cpu_share(cpu_start.1, common::cpu_seconds(None), cpu_wall);
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
    let mut lost = 0u64;
    let (mut duplicated, mut reordered, mut errors, mut foreign) = (0u64, 0u64, 0u64, 0u64);
    let mut closed = 0u64;
    let mut close_reasons = Vec::new();
    let mut first_hash: Vec<Option<u64>> = vec![None; chats];
    let mut order_mismatch = 0u64;
    for s in &stats {
        let chat_sent = sent.get(s.chat).map(Vec::as_slice).unwrap_or_default();
        for (i, n) in chat_sent.iter().enumerate() {
            lost += n.saturating_sub(s.distinct.get(i).copied().unwrap_or(0));
        }
        duplicated += s.duplicated;
        reordered += s.reordered;
        errors += s.errors;
        foreign += s.foreign;
        if let Some(reason) = &s.closed_by_server {
            closed += 1;
            if close_reasons.len() < 5 {
                close_reasons.push(reason.clone());
            }
        }
        match first_hash.get_mut(s.chat) {
            Some(slot @ None) => *slot = Some(s.order_hash),
            Some(Some(h)) if *h != s.order_hash => order_mismatch += 1,
            _ => {}
        }
    }
    let hist = shared
        .hist
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let in_window = shared.in_window.load(Ordering::Relaxed);
    let deliveries_per_s = in_window as f64 / args.duration;
    let offered = args.rate.map(|r| r * sockets as f64);
    Ok(json!({
        "workload": "fanout",
        "chats": chats,
        "sockets_per_chat": sockets,
        "senders_per_chat": senders,
        "window": window,
        "rate_msgs_per_s": args.rate,
        "offered_deliveries_per_s": offered,
        "duration_s": args.duration,
        "messages_sent": sent_total,
        "deliveries": shared.delivered.load(Ordering::Relaxed),
        "deliveries_per_s": deliveries_per_s.round(),
        "stored_msgs_per_s": (deliveries_per_s / sockets as f64).round(),
        "latency": common::percentiles(&hist),
        "lost": lost,
        "duplicated": duplicated,
        "reordered": reordered,
        "order_mismatch": order_mismatch,
        "error_frames": errors,
        "unexpected_frames": foreign,
        "closed_by_server": closed,
        "close_reasons": close_reasons,
        "server_cpu": server_cpu,
        "bench_cpu": bench_cpu,
        "load_before": load_before,
        "load_after": common::loadavg(),
    }))
}

/// The Markdown row for a fan-out result.
pub fn row(v: &Value) -> String {
    let lat = v.get("latency").cloned().unwrap_or_default();
    let offered = match v.get("rate_msgs_per_s") {
        Some(Value::Number(_)) => common::cell(v, "offered_deliveries_per_s"),
        _ => "max".into(),
    };
    format!(
        "| fanout | {}×{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{}/{} | {} |",
        common::cell(v, "chats"),
        common::cell(v, "sockets_per_chat"),
        common::cell(v, "senders_per_chat"),
        offered,
        common::cell(v, "deliveries_per_s"),
        common::cell(&lat, "p50_ms"),
        common::cell(&lat, "p90_ms"),
        common::cell(&lat, "p99_ms"),
        common::cell(&lat, "p999_ms"),
        common::cell(&lat, "max_ms"),
        common::cell(v, "stored_msgs_per_s"),
        common::cell(v, "lost"),
        common::cell(v, "duplicated"),
        common::cell(v, "reordered"),
        v.get("load_before")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The header of [`row`]'s table.
pub const HEADER: &str = "| workload | chats×sockets | senders/chat | offered deliveries/s | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | stored msgs/s | lost/dup/reordered | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

#[allow(clippy::too_many_arguments)]
async fn send_loop(
    mut sink: SplitSink<Ws, WsMessage>,
    chat: usize,
    slot: usize,
    permits: Arc<Semaphore>,
    interval: Option<Duration>,
    first: Instant,
    stop_at: Instant,
    max: u64,
) -> (usize, usize, u64) {
    let mut seq = 0u64;
    let mut ticker = interval.map(|period| {
        let mut t = tokio::time::interval_at(first.into(), period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    while seq < max {
        if let Some(t) = &mut ticker {
            tokio::select! {
                _ = t.tick() => {}
                () = tokio::time::sleep_until(stop_at.into()) => break,
            }
        }
        let permit = tokio::select! {
            p = permits.acquire() => p,
            () = tokio::time::sleep_until(stop_at.into()) => break,
        };
        match permit {
            Ok(p) => p.forget(),
            Err(_) => break,
        }
        if Instant::now() >= stop_at {
            break;
        }
        let text = common::chat_frame(&format!("{slot}.{seq}.{}", common::now_nanos()));
        if sink.send(WsMessage::text(text)).await.is_err() {
            break;
        }
        seq += 1;
    }
    (chat, slot, seq)
}

/// Parses `"{sender}.{seq}.{sent_nanos}"`.
fn parse_text(text: &str) -> Option<(usize, u64, u64)> {
    let mut parts = text.split('.');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((sender, seq, sent))
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    chat: usize,
    me: Option<usize>,
    senders: usize,
    permits: Option<Arc<Semaphore>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ReaderStats {
    let mut stats = ReaderStats {
        chat,
        distinct: vec![0; senders],
        order_hash: 0xcbf2_9ce4_8422_2325,
        ..ReaderStats::default()
    };
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); senders];
    let mut next: Vec<u64> = vec![0; senders];
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
        let Some((sender, seq, sent)) = common::field(&text, "message").and_then(parse_text) else {
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
        let (Some(bits), Some(expect), Some(distinct)) = (
            seen.get_mut(sender),
            next.get_mut(sender),
            stats.distinct.get_mut(sender),
        ) else {
            stats.foreign += 1;
            continue;
        };
        let word = usize::try_from(seq / 64).unwrap_or(usize::MAX);
        if bits.len() <= word {
            bits.resize(word.saturating_add(1), 0);
        }
        let mask = 1u64 << (seq % 64);
        let Some(w) = bits.get_mut(word) else {
            continue;
        };
        if *w & mask != 0 {
            stats.duplicated += 1;
            continue;
        }
        *w |= mask;
        *distinct += 1;
        if seq != *expect {
            stats.reordered += 1;
        }
        *expect = (*expect).max(seq + 1);
        stats.order_hash =
            (stats.order_hash ^ ((sender as u64) << 48 | seq)).wrapping_mul(0x0100_0000_01b3);
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        if (shared.measure_from..shared.measure_to).contains(&now) {
            shared.in_window.fetch_add(1, Ordering::Relaxed);
        }
        if sent >= shared.measure_from && sent < shared.measure_to {
            shared
                .hist
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .saturating_record(now.saturating_sub(sent).max(1));
        }
    }
    stats
}
