//! `jivachat-bench`: a load generator for JivaChat that speaks the deployed client's protocol
//! (`shared/PROTOCOL.md`), for loopback only: every target must be in 127.0.0.0/8, and every run
//! is bounded in sockets, messages and time.
//!
//! Each run prints one JSON line and one Markdown table row on stdout (`--header` prints the
//! table header first). Workloads: `fanout`, `sweep`/`chart` (latency against offered load, as
//! SVG), `idle` (server memory per socket), `seed` + `connect` (connect and history replay),
//! `store` + `verify` (stored messages per second; durability across `kill -9`), `copilot`
//! (latency the copilot relay adds per chunk), `cluster` (fan-out across nodes), `soak` (a
//! realistic mix for a bounded time, sampled over time; `docs/RELIABILITY.md`). See
//! `docs/BENCHMARKS.md`.

mod chart;
mod check;
mod cluster;
mod common;
mod connect;
mod copilot;
mod fanout;
mod idle;
mod measure;
mod soak;
mod store;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "jivachat-bench",
    version,
    about = "Loopback-only load generator for JivaChat"
)]
struct Cli {
    /// Print the Markdown table header before the row.
    #[arg(long, global = true)]
    header: bool,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// R chats × M sockets, P senders per chat: deliveries/s, latency, loss/dup/order.
    Fanout(fanout::FanoutArgs),
    /// Fan-out at several offered loads, then an SVG chart of p50/p99 against load.
    Sweep(chart::SweepArgs),
    /// Redraw the SVG chart from saved JSON lines.
    Chart(chart::ChartArgs),
    /// N idle sockets over several source addresses: server memory per socket.
    Idle(idle::IdleArgs),
    /// Fill an embedded store's data directory directly (server stopped).
    Seed(connect::SeedArgs),
    /// Connections per second, each until its chat's history is replayed.
    Connect(connect::ConnectArgs),
    /// Stored messages per second through the server; optionally log acknowledged ids.
    Store(store::StoreArgs),
    /// Check that every id in a `store --acked-log` is in its chat's history.
    Verify(store::VerifyArgs),
    /// Latency the copilot relay adds per chunk (stand-in copilot on loopback).
    Copilot(copilot::CopilotArgs),
    /// Fan-out across nodes: senders on one, receivers on all; loss/dup/order and `seq` checks.
    Cluster(cluster::ClusterArgs),
    /// A realistic mix for a bounded time; the server's RSS, descriptors, threads and p99
    /// latency sampled to CSV and drawn to SVG (`scripts/soak.sh`).
    Soak(soak::SoakArgs),
}

fn emit(header: Option<&str>, v: &Value, row: &str) -> anyhow::Result<()> {
    if let Some(h) = header {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{h}")?;
    }
    common::emit(v, row)
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let header = |h: &'static str| cli.header.then_some(h);
    match &cli.workload {
        Workload::Fanout(a) => {
            let v = fanout::run(a).await?;
            emit(header(fanout::HEADER), &v, &fanout::row(&v))?;
        }
        Workload::Sweep(a) => {
            if cli.header {
                writeln!(std::io::stdout().lock(), "{}", fanout::HEADER)?;
            }
            chart::sweep(a, |v| common::emit(v, &fanout::row(v))).await?;
        }
        Workload::Chart(a) => chart::chart(a)?,
        Workload::Idle(a) => {
            let v = idle::run(a).await?;
            emit(header(idle::HEADER), &v, &idle::row(&v))?;
        }
        Workload::Seed(a) => {
            let v = connect::seed(a).await?;
            common::emit(&v, "")?;
        }
        Workload::Connect(a) => {
            let v = connect::run(a).await?;
            emit(header(connect::HEADER), &v, &connect::row(&v))?;
        }
        Workload::Store(a) => {
            let v = store::run(a).await?;
            emit(header(store::HEADER), &v, &store::row(&v))?;
        }
        Workload::Verify(a) => {
            let v = store::verify(a).await?;
            let ok = v.get("missing").and_then(Value::as_u64) == Some(0);
            common::emit(
                &v,
                &format!(
                    "| verify | {} | {} | {} |",
                    common::cell(&v, "acknowledged"),
                    common::cell(&v, "missing"),
                    if ok { "ok" } else { "FAILED" }
                ),
            )?;
            return Ok(ok);
        }
        Workload::Copilot(a) => {
            let v = copilot::run(a).await?;
            emit(header(copilot::HEADER), &v, &copilot::row(&v))?;
        }
        Workload::Cluster(a) => {
            let v = cluster::run(a).await?;
            emit(header(cluster::HEADER), &v, &cluster::row(&v))?;
        }
        Workload::Soak(a) => {
            let v = soak::run(a).await?;
            emit(header(soak::HEADER), &v, &soak::row(&v))?;
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::now_nanos();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("jivachat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
