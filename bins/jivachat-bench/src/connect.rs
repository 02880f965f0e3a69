//! `seed` (fill an embedded store directly) and `connect` (connections per second, each one
//! until its chat's history has been replayed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use jiva_core::{AgentId, ChatId, ConnectionType, Message, MessageStore, Sender};
use jiva_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common;

/// What to seed.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// The server's data directory (the server must not be running).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Messages written in other chats.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Other chats those messages are spread over.
    #[arg(long, default_value_t = 10_000)]
    pub chats: u64,
    /// The measured chat's agent id (a fresh one if absent).
    #[arg(long)]
    pub agent: Option<String>,
    /// Messages in the measured chat's history.
    #[arg(long, default_value_t = 50)]
    pub history: u64,
    /// Appends in flight at once.
    #[arg(long, default_value_t = 4096)]
    pub concurrency: usize,
}

/// Writes through `jiva-store-sqlite`'s own API into the data directory.
pub async fn seed(args: &SeedArgs) -> anyhow::Result<Value> {
    if args.messages > 50_000_000 {
        bail!("--messages at most 50,000,000");
    }
    let config = jiva_store_sqlite::Config::in_dir(&args.data_dir);
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(config))
        .await
        .context("opening the store")??;
    let store: Arc<dyn MessageStore> = Arc::new(store);
    let agent = args.agent.clone().unwrap_or_else(common::fresh_agent);
    let target = chat(&agent)?;
    let others: Vec<ChatId> = (0..args.chats.max(1))
        .map(|_| chat(&common::fresh_agent()))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    store.register_chat(&target).await?;
    for c in &others {
        store.register_chat(c).await?;
    }
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let total = args.messages + args.history;
    for i in 0..total {
        let chat = if i < args.history {
            target.clone()
        } else {
            let k = usize::try_from(i % others.len() as u64).unwrap_or(0);
            others.get(k).cloned().unwrap_or_else(|| target.clone())
        };
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let m = Message::user(chat, Sender::Agent, format!("seed message {i}"));
            let r = store.append(&m).await;
            drop(permit);
            r
        });
        while let Some(done) = tasks.try_join_next() {
            done.context("append task")??;
        }
        // Keep the history's order: the target chat's messages go one by one.
        if i < args.history {
            while let Some(done) = tasks.join_next().await {
                done.context("append task")??;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.context("append task")??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "workload": "seed",
        "data_dir": args.data_dir,
        "agent": agent,
        "history": args.history,
        "other_messages": args.messages,
        "other_chats": others.len(),
        "seconds": (secs * 1000.0).round() / 1000.0,
        "appends_per_s": (total as f64 / secs).round(),
    }))
}

fn chat(agent: &str) -> anyhow::Result<ChatId> {
    Ok(ChatId::new(
        AgentId::parse(agent).map_err(|e| anyhow::anyhow!("{e}"))?,
        ConnectionType::Supervisor,
    ))
}

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The server (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    /// The chat's agent id (from `seed`); a fresh chat if absent (then use `--fill`).
    #[arg(long)]
    pub agent: Option<String>,
    /// Messages to send to the chat through the server before measuring.
    #[arg(long, default_value_t = 0)]
    pub fill: u64,
    /// Messages the chat's history holds: a connection is complete once it has them all.
    #[arg(long, default_value_t = 50)]
    pub history: usize,
    /// Connections to make.
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Connections in progress at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

/// Connects, reads the replay, closes; `connections` times.
pub async fn run(args: &ConnectArgs) -> anyhow::Result<Value> {
    if args.connections == 0 || args.connections > 1_000_000 {
        bail!("--connections must be within 1..=1,000,000");
    }
    let load_before = common::loadavg();
    let agent = args.agent.clone().unwrap_or_else(common::fresh_agent);
    if args.fill > 0 {
        fill(args.server, &agent, args.fill).await?;
    }
    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut results = Vec::with_capacity(args.connections);
    let started = Instant::now();
    for _ in 0..args.connections {
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let agent = agent.clone();
        let server = args.server;
        let history = args.history;
        tasks.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(10), one(server, &agent, history))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
            drop(permit);
            r
        });
        while let Some(done) = tasks.try_join_next() {
            results.push(done.context("connect task")?);
        }
    }
    let mut hist = common::histogram()?;
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        results.push(done.context("connect task")?);
    }
    let secs = started.elapsed().as_secs_f64();
    for r in results {
        match r {
            Ok(nanos) => hist.saturating_record(nanos.max(1)),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    Ok(json!({
        "workload": "connect",
        "agent": agent,
        "history": args.history,
        "connections": args.connections,
        "concurrency": args.concurrency,
        "failed": failed,
        "first_error": first_error,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "connects_per_s": (hist.len() as f64 / secs).round(),
        "latency": common::percentiles(&hist),
        "load_before": load_before,
        "load_after": common::loadavg(),
    }))
}

/// One connection: nanoseconds from TCP connect to the last history frame.
async fn one(server: SocketAddr, agent: &str, history: usize) -> anyhow::Result<u64> {
    let t0 = common::now_nanos();
    let mut ws = common::open(server, None, agent, "supervisor", common::ws_config()).await?;
    let mut got = 0usize;
    while got < history {
        match ws.next().await {
            Some(Ok(WsMessage::Text(t))) if t.contains("\"message_id\"") => got += 1,
            Some(Ok(WsMessage::Text(t))) => bail!("unexpected frame {t}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed after {got} history frames"),
        }
    }
    let elapsed = common::now_nanos().saturating_sub(t0);
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    Ok(elapsed)
}

/// Sends `count` messages to the chat through the server, one at a time.
pub async fn fill(server: SocketAddr, agent: &str, count: u64) -> anyhow::Result<()> {
    let mut ws = common::open(server, None, agent, "supervisor", common::ws_config()).await?;
    for i in 0..count {
        let text = format!("history message {i}");
        ws.send(WsMessage::text(common::chat_frame(&text))).await?;
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) if common::field(&t, "message") == Some(&text) => {
                    break;
                }
                Some(Ok(WsMessage::Text(t))) if t.contains("\"error\"") => {
                    bail!("server refused a history message: {t}")
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed while filling the history"),
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The Markdown row for a connect result.
pub fn row(v: &Value) -> String {
    let lat = v.get("latency").cloned().unwrap_or_default();
    format!(
        "| connect | {} | {} | {} | {} | {} | {} | {} | {} |",
        common::cell(v, "history"),
        common::cell(v, "concurrency"),
        common::cell(v, "connects_per_s"),
        common::cell(&lat, "p50_ms"),
        common::cell(&lat, "p99_ms"),
        common::cell(&lat, "max_ms"),
        common::cell(v, "failed"),
        v.get("load_before")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The header of [`row`]'s table.
pub const HEADER: &str = "| workload | history | concurrency | connects/s | p50 ms | p99 ms | max ms | failed | load |\n|---|---|---|---|---|---|---|---|---|";
