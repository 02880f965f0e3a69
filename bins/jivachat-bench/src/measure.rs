//! The measured phase that `fanout` and `cluster` share, once their sockets are open: senders
//! send (paced or as fast as their window allows), every socket reads and checks
//! ([`crate::check`]), latency goes to one histogram per group of sockets (`cluster`: the
//! senders' node and the others), then the drain and the totals.
//!
//! Each message's text is `"{sender}.{n}.{sent_nanos}"`; texts starting with [`PROBE`] are
//! `cluster`'s probes, which only feed the `seq` check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::check::{Checker, Verdict, number_field};
use crate::common::{self, Ws};

/// The text of probe messages starts with this (bench messages start with a digit).
pub const PROBE: &str = "probe.";

/// Limits that keep a run bounded whatever the flags say.
const MAX_SOCKETS: usize = 60_000;
const MAX_DURATION_S: f64 = 600.0;

/// The shape and pace of a fan-out run: the flags `fanout` and `cluster` share.
#[derive(Debug, Clone, clap::Args)]
pub struct Load {
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
}

impl Load {
    /// Refuses a load beyond the bench's bounds (shape, sockets, seconds).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.chats == 0 || self.sockets == 0 || self.senders == 0 || self.senders > self.sockets
        {
            bail!("need chats ≥ 1, sockets ≥ 1 and 1 ≤ senders ≤ sockets");
        }
        if self.chats.saturating_mul(self.sockets) > MAX_SOCKETS {
            bail!("at most {MAX_SOCKETS} sockets per run");
        }
        let total = self.duration + self.warmup + self.drain;
        if !(self.duration > 0.0 && total <= MAX_DURATION_S) {
            bail!("duration + warmup + drain must be within (0, {MAX_DURATION_S}] seconds");
        }
        Ok(())
    }
}

/// How the measured phase runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub load: Load,
    /// Latency histograms (sockets name theirs in [`Conn::group`]).
    pub groups: usize,
    /// Whether to check the store's `seq` on every frame.
    pub check_seq: bool,
    /// A server whose CPU share over the sending phase is reported.
    pub server_pid: Option<u32>,
}

/// One open socket.
pub struct Conn {
    pub chat: usize,
    pub slot: usize,
    pub group: usize,
    pub ws: Ws,
}

/// What one socket saw.
pub struct ReaderStats {
    pub chat: usize,
    pub check: Checker,
    pub errors: u64,
    pub foreign: u64,
    pub closed_by_server: Option<String>,
}

/// What the measured phase produced.
pub struct Outcome {
    /// Messages sent, per chat and sender.
    pub sent: Vec<Vec<u64>>,
    pub stats: Vec<ReaderStats>,
    /// One latency histogram per group.
    pub latency: Vec<Histogram<u64>>,
    pub delivered: u64,
    /// Deliveries per second inside the measured window.
    pub deliveries_per_s: f64,
    pub server_cpu: Option<f64>,
    pub bench_cpu: Option<f64>,
}

struct Shared {
    hist: Vec<Mutex<Histogram<u64>>>,
    delivered: AtomicU64,
    in_window: AtomicU64,
    measure_from: u64,
    measure_to: u64,
}

/// Runs the measured phase over `conns` (every socket of every chat).
pub async fn run(plan: &Plan, conns: Vec<Conn>) -> anyhow::Result<Outcome> {
    let Load {
        chats,
        sockets,
        senders,
        ..
    } = plan.load;
    let load = &plan.load;
    let window = load.window.max(1);
    let start = Instant::now();
    let t0 = common::now_nanos();
    let warmup_ns = (load.warmup * 1e9) as u64;
    let duration_ns = (load.duration * 1e9) as u64;
    let stop_at = start + Duration::from_nanos(warmup_ns + duration_ns);
    let shared = Arc::new(Shared {
        hist: (0..plan.groups.max(1))
            .map(|_| common::histogram().map(Mutex::new))
            .collect::<anyhow::Result<_>>()?,
        delivered: AtomicU64::new(0),
        in_window: AtomicU64::new(0),
        measure_from: t0 + warmup_ns,
        measure_to: t0 + warmup_ns + duration_ns,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let per_sender_interval = load.rate.map(|rate| {
        let total = (chats * senders) as f64;
        Duration::from_secs_f64((total / rate.max(1e-3)).min(60.0))
    });

    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    for Conn {
        chat,
        slot,
        group,
        ws,
    } in conns
    {
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
                load.max_messages,
            ));
        } else {
            drop(sink);
        }
        readers.spawn(read_loop(
            stream,
            Reader {
                chat,
                me: (slot < senders).then_some(slot),
                senders,
                group,
                check_seq: plan.check_seq,
            },
            permits,
            Arc::clone(&shared),
            stop_rx.clone(),
        ));
    }

    // Sending phase.
    let cpu_start = (
        common::cpu_seconds(plan.server_pid),
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
    let server_cpu = plan
        .server_pid
        .and_then(|pid| common::cpu_share(cpu_start.0, common::cpu_seconds(Some(pid)), cpu_wall));
    let bench_cpu = common::cpu_share(cpu_start.1, common::cpu_seconds(None), cpu_wall);
    let sent_total: u64 = sent.iter().flatten().sum();
    let expected = sent_total * sockets as u64;
    let drain_until = Instant::now() + Duration::from_secs_f64(load.drain);
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);

    let mut stats = Vec::with_capacity(chats * sockets);
    while let Some(done) = readers.join_next().await {
        stats.push(done.context("reader task")?);
    }
    let latency = shared
        .hist
        .iter()
        .map(|h| h.lock().unwrap_or_else(PoisonError::into_inner).clone())
        .collect();
    Ok(Outcome {
        sent,
        stats,
        latency,
        delivered: shared.delivered.load(Ordering::Relaxed),
        deliveries_per_s: shared.in_window.load(Ordering::Relaxed) as f64 / load.duration,
        server_cpu,
        bench_cpu,
    })
}

/// Every socket's checks summed, and the order compared within each chat.
#[derive(Debug, Default)]
pub struct Totals {
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub seq_reordered: u64,
    pub seq_gaps: u64,
    pub no_seq: u64,
    pub order_mismatch: u64,
    pub errors: u64,
    pub foreign: u64,
    pub closed: u64,
    pub close_reasons: Vec<String>,
}

impl Totals {
    /// Sums an outcome's checks over `chats` chats.
    pub fn of(outcome: &Outcome, chats: usize) -> Self {
        let mut t = Self::default();
        let mut first_hash: Vec<Option<u64>> = vec![None; chats];
        for s in &outcome.stats {
            let c = &s.check;
            let sent = outcome.sent.get(s.chat).map(Vec::as_slice);
            t.lost += c.lost(sent.unwrap_or_default());
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

/// Who a reading socket is.
struct Reader {
    chat: usize,
    /// Its sender index, if it sends.
    me: Option<usize>,
    senders: usize,
    group: usize,
    check_seq: bool,
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    reader: Reader,
    permits: Option<Arc<Semaphore>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> ReaderStats {
    let mut stats = ReaderStats {
        chat: reader.chat,
        check: Checker::new(reader.senders),
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
        let seq = reader
            .check_seq
            .then(|| number_field(&text, "seq"))
            .flatten();
        let message = common::field(&text, "message");
        if message.is_some_and(|m| m.starts_with(PROBE)) {
            if reader.check_seq {
                stats.check.observe_seq(seq);
            }
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
        if Some(sender) == reader.me {
            if let Some(p) = &permits {
                p.add_permits(1);
            }
        }
        match stats.check.record(sender, n, seq, reader.check_seq) {
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
            if let Some(h) = shared.hist.get(reader.group) {
                h.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .saturating_record(now.saturating_sub(sent).max(1));
            }
        }
    }
    stats
}
