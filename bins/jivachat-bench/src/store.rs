//! `store`: stored messages per second through the server (one socket per chat, each sending
//! with a window of unacknowledged messages; the echo is the acknowledgement, since a message
//! is shown only after it is stored), optionally logging every acknowledged message id; and
//! `verify`: after a crash and restart, checks that every logged message is in its history.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// The server (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    /// Chats, one sending socket each.
    #[arg(long, default_value_t = 200)]
    pub chats: usize,
    /// Unacknowledged messages per socket.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Seconds of sending (measured from the first message).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The most messages per chat.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_messages: u64,
    /// Append `agent message_id` of every acknowledged message to this file.
    #[arg(long)]
    pub acked_log: Option<PathBuf>,
}

struct Acked {
    hist: hdrhistogram::Histogram<u64>,
    log: Option<std::io::BufWriter<std::fs::File>>,
}

/// Sends and counts acknowledgements; a socket that the server drops just stops.
pub async fn run(args: &StoreArgs) -> anyhow::Result<Value> {
    if args.chats == 0 || args.chats > 20_000 {
        bail!("--chats must be within 1..=20,000");
    }
    if !(args.duration > 0.0 && args.duration <= 600.0) {
        bail!("--duration must be within (0, 600] seconds");
    }
    let load_before = common::loadavg();
    let log = match &args.acked_log {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let acked = Arc::new(Mutex::new(Acked {
        hist: common::histogram()?,
        log,
    }));
    let mut sockets = Vec::with_capacity(args.chats);
    for _ in 0..args.chats {
        let agent = common::fresh_agent();
        let ws = common::open(args.server, None, &agent, "supervisor", common::ws_config()).await?;
        sockets.push((agent, ws));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(args.duration);
    let mut tasks = JoinSet::new();
    for (agent, ws) in sockets {
        tasks.spawn(one_chat(
            agent,
            ws,
            args.window.max(1),
            stop_at,
            args.max_messages,
            Arc::clone(&acked),
        ));
    }
    let (mut sent, mut acks, mut errors, mut dropped) = (0u64, 0u64, 0u64, 0u64);
    let mut last_ack = started;
    while let Some(done) = tasks.join_next().await {
        let r = done.context("chat task")?;
        sent += r.sent;
        acks += r.acked;
        errors += r.errors;
        dropped += u64::from(r.dropped);
        last_ack = last_ack.max(r.last_ack);
    }
    let mut acked = acked.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(log) = &mut acked.log {
        log.flush().context("writing the acknowledged log")?;
    }
    let secs = last_ack.duration_since(started).as_secs_f64().max(1e-9);
    Ok(json!({
        "workload": "store",
        "chats": args.chats,
        "window": args.window,
        "sent": sent,
        "acked": acks,
        "error_frames": errors,
        "sockets_dropped_by_server": dropped,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "stored_msgs_per_s": (acks as f64 / secs).round(),
        "ack_latency": common::percentiles(&acked.hist),
        "acked_log": args.acked_log,
        "load_before": load_before,
        "load_after": common::loadavg(),
    }))
}

struct ChatResult {
    sent: u64,
    acked: u64,
    errors: u64,
    dropped: bool,
    last_ack: Instant,
}

async fn one_chat(
    agent: String,
    ws: common::Ws,
    window: usize,
    stop_at: Instant,
    max: u64,
    acked: Arc<Mutex<Acked>>,
) -> ChatResult {
    let (mut sink, mut stream) = ws.split();
    let mut r = ChatResult {
        sent: 0,
        acked: 0,
        errors: 0,
        dropped: false,
        last_ack: Instant::now(),
    };
    let permits = Semaphore::new(window);
    let mut sending = true;
    loop {
        if sending && (Instant::now() >= stop_at || r.sent >= max) {
            sending = false;
        }
        if !sending && r.acked + r.errors >= r.sent {
            break;
        }
        tokio::select! {
            permit = permits.acquire(), if sending => {
                if let Ok(p) = permit {
                    p.forget();
                }
                let text = format!("{}.{}", r.sent, common::now_nanos());
                if sink.send(WsMessage::text(common::chat_frame(&text))).await.is_err() {
                    r.dropped = true;
                    break;
                }
                r.sent += 1;
            }
            frame = stream.next() => {
                let now = common::now_nanos();
                let t = match frame {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_)) | Err(_)) | None => {
                        r.dropped = true;
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                permits.add_permits(1);
                let sent_at = common::field(&t, "message")
                    .and_then(|m| m.split('.').nth(1))
                    .and_then(|n| n.parse::<u64>().ok());
                match (sent_at, common::field(&t, "message_id")) {
                    (Some(sent_at), Some(id)) => {
                        r.acked += 1;
                        r.last_ack = Instant::now();
                        let mut a = acked.lock().unwrap_or_else(PoisonError::into_inner);
                        a.hist.saturating_record(now.saturating_sub(sent_at).max(1));
                        if let Some(log) = &mut a.log {
                            let _ = writeln!(log, "{agent} {id}");
                        }
                    }
                    _ => r.errors += 1,
                }
            }
            () = tokio::time::sleep_until((stop_at + Duration::from_secs(30)).into()) => break,
        }
    }
    r
}

/// The Markdown row for a store result.
pub fn row(v: &Value) -> String {
    let lat = v.get("ack_latency").cloned().unwrap_or_default();
    format!(
        "| store | {} | {} | {} | {} | {} | {} | {} |",
        common::cell(v, "chats"),
        common::cell(v, "window"),
        common::cell(v, "stored_msgs_per_s"),
        common::cell(&lat, "p50_ms"),
        common::cell(&lat, "p99_ms"),
        common::cell(v, "error_frames"),
        v.get("load_before")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The header of [`row`]'s table.
pub const HEADER: &str = "| workload | chats | window | stored msgs/s | ack p50 ms | ack p99 ms | errors | load |\n|---|---|---|---|---|---|---|---|";

/// What to verify.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The server (127.0.0.0/8 only), restarted after the crash.
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    /// The log written by `store --acked-log`.
    #[arg(long)]
    pub acked_log: PathBuf,
}

/// Reads each logged chat's history and checks that every acknowledged id is in it.
pub async fn verify(args: &VerifyArgs) -> anyhow::Result<Value> {
    let file = std::fs::File::open(&args.acked_log)
        .with_context(|| format!("opening {}", args.acked_log.display()))?;
    let mut by_chat: HashMap<String, Vec<String>> = HashMap::new();
    let mut logged = 0u64;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if let Some((agent, id)) = line.split_once(' ') {
            by_chat
                .entry(agent.to_owned())
                .or_default()
                .push(id.to_owned());
            logged += 1;
        }
    }
    let mut missing = 0u64;
    let mut history_total = 0u64;
    let mut example = None;
    for (agent, ids) in &by_chat {
        let history = read_history(args.server, agent).await?;
        history_total += history.len() as u64;
        for id in ids {
            if !history.contains(id) {
                missing += 1;
                example.get_or_insert_with(|| format!("{agent} {id}"));
            }
        }
    }
    Ok(json!({
        "workload": "verify",
        "chats": by_chat.len(),
        "acknowledged": logged,
        "in_history": history_total,
        "missing": missing,
        "first_missing": example,
    }))
}

/// A chat's stored message ids: everything replayed before the echo of a marker sent right
/// after connecting.
async fn read_history(server: SocketAddr, agent: &str) -> anyhow::Result<HashSet<String>> {
    let mut ws = common::open(server, None, agent, "supervisor", common::ws_config()).await?;
    let marker = format!("verify-marker-{}", common::fresh_agent());
    ws.send(WsMessage::text(common::chat_frame(&marker)))
        .await?;
    let mut ids = HashSet::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("timed out reading history")?;
        match frame {
            Some(Ok(WsMessage::Text(t))) => {
                if common::field(&t, "message") == Some(marker.as_str()) {
                    break;
                }
                if let Some(id) = common::field(&t, "message_id") {
                    ids.insert(id.to_owned());
                } else {
                    bail!("unexpected frame while reading history: {t}");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed while reading history"),
        }
    }
    let _ = ws.close(None).await;
    Ok(ids)
}
