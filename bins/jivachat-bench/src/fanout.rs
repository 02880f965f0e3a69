//! `fanout`: R chats × M sockets, P senders per chat. Each message's text carries its sender,
//! a sequence number and its send time; every receiving socket records the latency from send
//! to its own receipt and checks loss, duplication and order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::common::{self, Ws};
use crate::measure;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// The server (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    #[command(flatten)]
    pub load: measure::Load,
    /// Spread client sockets over this many source addresses (127.0.0.2, …).
    #[arg(long, default_value_t = 1)]
    pub sources: usize,
    /// Sockets being opened at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// The server's pid, to report the share of a core it used while sending.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Runs one fan-out measurement and returns its JSON result.
pub async fn run(args: &FanoutArgs) -> anyhow::Result<Value> {
    args.load.check()?;
    let server = args.server;
    let measure::Load {
        chats,
        sockets,
        senders,
        ..
    } = args.load;
    let window = args.load.window.max(1);
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
    tokio::time::sleep(Duration::from_millis(500 + (chats * sockets) as u64 / 10)).await;

    let conns = conns
        .into_iter()
        .map(|(chat, slot, ws)| measure::Conn {
            chat,
            slot,
            group: 0,
            ws,
        })
        .collect();
    let plan = measure::Plan {
        load: args.load.clone(),
        groups: 1,
        check_seq: false,
        server_pid: args.server_pid,
    };
    let out = measure::run(&plan, conns).await?;
    let totals = measure::Totals::of(&out, chats);
    let sent_total: u64 = out.sent.iter().flatten().sum();
    let deliveries_per_s = out.deliveries_per_s;
    let latency = out.latency.first().map(common::percentiles);
    let offered = args.load.rate.map(|r| r * sockets as f64);
    Ok(json!({
        "workload": "fanout",
        "chats": chats,
        "sockets_per_chat": sockets,
        "senders_per_chat": senders,
        "window": window,
        "rate_msgs_per_s": args.load.rate,
        "offered_deliveries_per_s": offered,
        "duration_s": args.load.duration,
        "messages_sent": sent_total,
        "deliveries": out.delivered,
        "deliveries_per_s": deliveries_per_s.round(),
        "stored_msgs_per_s": (deliveries_per_s / sockets as f64).round(),
        "latency": latency,
        "lost": totals.lost,
        "duplicated": totals.duplicated,
        "reordered": totals.reordered,
        "order_mismatch": totals.order_mismatch,
        "error_frames": totals.errors,
        "unexpected_frames": totals.foreign,
        "closed_by_server": totals.closed,
        "close_reasons": totals.close_reasons,
        "server_cpu": out.server_cpu,
        "bench_cpu": out.bench_cpu,
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
