//! `copilot`: the latency the relay adds per chunk. A stand-in copilot on loopback streams
//! chunks `{"action":null,"output":"<write-time-nanos>|…"}`, each written (chunked transfer
//! encoding) and flushed with the time it was written; the client measures receipt time minus
//! that time. Start the server with `COPILOT_ENDPOINT=http://<--copilot-listen>/`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct CopilotArgs {
    /// The server (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    /// Where the stand-in copilot listens (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3999", value_parser = common::parse_loopback)]
    pub copilot_listen: SocketAddr,
    /// Chunks in the answer.
    #[arg(long, default_value_t = 10_000)]
    pub chunks: u64,
    /// Microseconds between chunks (0: back to back).
    #[arg(long, default_value_t = 500)]
    pub interval_us: u64,
}

/// Serves one copilot request on its own thread and measures the chunks on a socket.
pub async fn run(args: &CopilotArgs) -> anyhow::Result<Value> {
    if args.chunks == 0 || args.chunks > 1_000_000 {
        bail!("--chunks must be within 1..=1,000,000");
    }
    let load_before = common::loadavg();
    let listener = TcpListener::bind(args.copilot_listen)
        .with_context(|| format!("binding the stand-in copilot on {}", args.copilot_listen))?;
    let (chunks, interval) = (args.chunks, Duration::from_micros(args.interval_us));
    let standin = std::thread::Builder::new()
        .name("copilot-standin".into())
        .spawn(move || serve_one(&listener, chunks, interval))
        .context("starting the stand-in copilot")?;

    let agent = common::fresh_agent();
    let mut ws = common::open(args.server, None, &agent, "copilot", common::ws_config()).await?;
    ws.send(WsMessage::text(
        r#"{"chat_id":"test-copilot","sender":"agent","message":"bench question"}"#,
    ))
    .await?;
    let mut hist = common::histogram()?;
    let (mut received, mut combined, mut errors, mut other) = (0u64, false, 0u64, 0u64);
    let mut first_chunk_ns = None;
    let mut slowest = (0u64, 0u64);
    let deadline = Instant::now()
        + Duration::from_secs(30)
        + interval.saturating_mul(u32::try_from(chunks).unwrap_or(u32::MAX));
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .context("timed out waiting for the copilot answer")?;
        let now = common::now_nanos();
        let t = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("socket closed during the copilot turn"),
        };
        if t.contains(r#""action":"end""#) {
            break;
        }
        if t.contains(r#""action":"Combined""#) {
            combined = true;
        } else if t.contains(r#""error""#) {
            errors += 1;
        } else if let Some(sent) = t
            .contains(r#""action":null"#)
            .then(|| common::field(&t, "output"))
            .flatten()
            .and_then(|o| o.split('|').next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            let latency = now.saturating_sub(sent).max(1);
            first_chunk_ns.get_or_insert(latency);
            if latency > slowest.1 {
                slowest = (received, latency);
            }
            received += 1;
            hist.saturating_record(latency);
        } else {
            other += 1;
        }
    }
    let _ = ws.close(None).await;
    let served = standin
        .join()
        .map_err(|_| anyhow::anyhow!("the stand-in copilot thread failed"))??;
    Ok(json!({
        "workload": "copilot",
        "chunks": chunks,
        "chunks_written": served,
        "chunks_received": received,
        "combined_received": combined,
        "error_frames": errors,
        "other_frames": other,
        "interval_us": args.interval_us,
        "relay_latency": common::percentiles(&hist),
        "first_chunk_ms": first_chunk_ns.map(|n| n as f64 / 1e6),
        "slowest_chunk_index": slowest.0,
        "load_before": load_before,
        "load_after": common::loadavg(),
    }))
}

/// Accepts one request, answers with `chunks` chunks; returns how many were written.
fn serve_one(listener: &TcpListener, chunks: u64, interval: Duration) -> anyhow::Result<u64> {
    let (mut stream, _) = listener.accept().context("accepting the copilot request")?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // Read the request head and its body (Content-Length).
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 4096];
    let total = loop {
        let n = stream.read(&mut tmp)?;
        if n == 0 {
            bail!("the server closed the copilot request early");
        }
        buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
        if let Some(total) = common::request_size(&buf) {
            break total;
        }
    };
    while buf.len() < total {
        let n = stream.read(&mut tmp)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
    }
    stream.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    )?;
    let mut next = Instant::now();
    let mut written = 0u64;
    for i in 0..chunks {
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let data = format!(
            r#"{{"action":null,"output":"{}|chunk {i} "}}"#,
            common::now_nanos()
        );
        let piece = format!("{:x}\r\n{data}\r\n", data.len());
        if stream.write_all(piece.as_bytes()).is_err() {
            break;
        }
        stream.flush()?;
        written += 1;
    }
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()?;
    Ok(written)
}

/// The Markdown row for a copilot result.
pub fn row(v: &Value) -> String {
    let lat = v.get("relay_latency").cloned().unwrap_or_default();
    format!(
        "| copilot | {} | {} | {} | {} | {} | {} | {} |",
        common::cell(v, "chunks_received"),
        common::cell(v, "interval_us"),
        common::cell(&lat, "p50_ms"),
        common::cell(&lat, "p99_ms"),
        common::cell(&lat, "max_ms"),
        common::cell(v, "error_frames"),
        v.get("load_before")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The header of [`row`]'s table.
pub const HEADER: &str = "| workload | chunks received | interval µs | p50 ms | p99 ms | max ms | errors | load |\n|---|---|---|---|---|---|---|---|";
