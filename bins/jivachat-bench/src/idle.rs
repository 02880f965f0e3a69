//! `idle`: N sockets held open for T seconds, spread over several loopback source addresses;
//! with the server's pid, the server's resident memory per socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::common;

const MAX_CONNECTIONS: usize = 60_000;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// The server (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    /// Sockets to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Distinct chats they are spread over (each socket of a chat is one more member of its
    /// room); 0 means one chat per socket.
    #[arg(long, default_value_t = 0)]
    pub chats: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Source addresses 127.0.0.2, 127.0.0.3, … to spread sockets over.
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// Sockets being opened at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The server's pid, to read its resident memory (`/proc/PID/status`).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Opens, holds and measures; returns the JSON result.
pub async fn run(args: &IdleArgs) -> anyhow::Result<Value> {
    if args.connections == 0 || args.connections > MAX_CONNECTIONS {
        bail!("--connections must be within 1..={MAX_CONNECTIONS}");
    }
    if !(0.0..=600.0).contains(&args.hold) {
        bail!("--hold must be within 0..=600 seconds");
    }
    let load_before = common::loadavg();
    let chats = if args.chats == 0 {
        args.connections
    } else {
        args.chats
    };
    let agents: Vec<String> = (0..chats.min(args.connections))
        .map(|_| common::fresh_agent())
        .collect();
    let rss_before = args.server_pid.map(common::rss_kib).transpose()?;
    // Idle clients read nothing large: keep their buffers small.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..args.connections {
        let agent = agents
            .get(i % agents.len().max(1))
            .cloned()
            .unwrap_or_default();
        let source = (args.sources > 0).then(|| common::source_addr(i % args.sources));
        let limit = Arc::clone(&limit);
        let server = args.server;
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            common::open(server, source, &agent, "supervisor", config).await
        });
    }
    let mut held = Vec::with_capacity(args.connections);
    let mut failed = 0usize;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done.context("connect task")? {
            Ok(ws) => held.push(ws),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let open_s = started.elapsed().as_secs_f64();
    // Let the server settle (writer tasks replay the empty history and park).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = args.server_pid.map(common::rss_kib).transpose()?;
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let rss_end = args.server_pid.map(common::rss_kib).transpose()?;
    // Sockets the server closed while they were held.
    let mut closed = 0usize;
    for ws in &mut held {
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(0), ws.next()).await {
            closed += 1;
        }
    }
    let open = held.len();
    drop(held);
    let per_conn = match (rss_before, rss_open) {
        (Some(b), Some(a)) if open > 0 => {
            Some(((a.saturating_sub(b)) as f64 * 1024.0 / open as f64).round())
        }
        _ => None,
    };
    Ok(json!({
        "workload": "idle",
        "connections": args.connections,
        "open": open,
        "failed": failed,
        "first_error": first_error,
        "chats": agents.len(),
        "sources": args.sources,
        "open_seconds": (open_s * 1000.0).round() / 1000.0,
        "hold_s": args.hold,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_open": rss_open,
        "server_rss_kib_end": rss_end,
        "server_bytes_per_conn": per_conn,
        "server_kib_per_conn": per_conn.map(|b| (b / 1024.0 * 100.0).round() / 100.0),
        "frames_while_idle": closed,
        "load_before": load_before,
        "load_after": common::loadavg(),
    }))
}

/// The Markdown row for an idle result.
pub fn row(v: &Value) -> String {
    format!(
        "| idle | {} | {} | {} | {} | {} | {} | {} |",
        common::cell(v, "open"),
        common::cell(v, "chats"),
        common::cell(v, "server_rss_kib_before"),
        common::cell(v, "server_rss_kib_open"),
        common::cell(v, "server_kib_per_conn"),
        common::cell(v, "failed"),
        v.get("load_before")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The header of [`row`]'s table.
pub const HEADER: &str = "| workload | sockets open | chats | server RSS before KiB | server RSS open KiB | KiB/socket | failed | load |\n|---|---|---|---|---|---|---|---|";
