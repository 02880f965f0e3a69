//! `soak`: a realistic mix for a bounded time, sampled every few seconds, to show that the
//! server does not grow or slow down after warm-up (`docs/RELIABILITY.md`, "Soak").
//!
//! `--workers` tasks each loop over fresh chats: open the agent's socket (replay checked with a
//! bad frame, whose error answer ends the replay), send `--messages` messages one at a time
//! (send-to-echo latency), with a supervisor joining part-way (replay checked, one message),
//! a reconnect (replay checked again), now and then a frame the server must refuse, and a
//! copilot turn against a stand-in copilot served by this process on `--copilot-listen`; then
//! the chat's sockets close and the worker moves on. A failed step is counted and its chat
//! abandoned; the run goes on.
//!
//! Every `--interval` seconds a sample goes to `--csv`: the server's RSS (and its anonymous
//! and file-backed parts: most of a debug build's RSS is its own executable), open descriptors,
//! sockets and threads (`/proc/PID`), `jiva_sockets_open`, `jiva_chats_open` and
//! `jiva_chats_registered` (its `/metrics`), the size of its data directory (`--data-dir`),
//! the interval's messages and latency percentiles, copilot turns, reconnects, refused frames, errors and the
//! load average. At the end the samples are drawn to `--svg` and a summary is printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::common::{self, Ws};

/// The longest run the bench accepts.
const MAX_DURATION_S: u64 = 6 * 3600;
/// How long any one expected frame may take before its step counts as failed.
const PATIENCE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// The server (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:3030", value_parser = common::parse_loopback)]
    pub server: SocketAddr,
    /// The server's process id, for RSS, descriptors and threads from /proc.
    #[arg(long)]
    pub server_pid: u32,
    /// Where the stand-in copilot listens (start the server with
    /// `COPILOT_ENDPOINT=http://<this>/`).
    #[arg(long, default_value = "127.0.0.1:3998", value_parser = common::parse_loopback)]
    pub copilot_listen: SocketAddr,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// Seconds after which the server is taken as warmed up (the summary's "after warm-up").
    #[arg(long, default_value_t = 60)]
    pub warmup: u64,
    /// Concurrent chats (one worker each).
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Messages each chat's agent sends before the chat closes.
    #[arg(long, default_value_t = 20)]
    pub messages: u64,
    /// Milliseconds between one echo and the agent's next message.
    #[arg(long, default_value_t = 100)]
    pub pause_ms: u64,
    /// The server's data directory, whose size (its files, not below) is sampled.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where to write the samples.
    #[arg(long, default_value = "soak.csv")]
    pub csv: PathBuf,
    /// Where to draw them.
    #[arg(long, default_value = "soak.svg")]
    pub svg: PathBuf,
}

/// Counters shared by the workers and read (and reset, for the per-interval ones) by the
/// sampler.
#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    copilot_turns: AtomicU64,
    supervisors: AtomicU64,
    reconnects: AtomicU64,
    refused_frames: AtomicU64,
    chats: AtomicU64,
    errors: AtomicU64,
}

/// One sample (one CSV row).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    elapsed_s: f64,
    rss_kib: u64,
    rss_anon_kib: u64,
    rss_file_kib: u64,
    fds: u64,
    sockets: u64,
    threads: u64,
    sockets_open: f64,
    chats_open: f64,
    chats_registered: f64,
    data_kib: u64,
    messages: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    copilot_turns: u64,
    supervisors: u64,
    reconnects: u64,
    refused_frames: u64,
    chats: u64,
    errors: u64,
    load1: f64,
}

const CSV_HEADER: &str = "elapsed_s,rss_kib,rss_anon_kib,rss_file_kib,fds,sockets,threads,sockets_open,chats_open,chats_registered,data_kib,messages,p50_ms,p99_ms,max_ms,copilot_turns,supervisors,reconnects,refused_frames,chats,errors,load1";

impl Sample {
    fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{},{},{},{},{},{},{:.2}",
            self.elapsed_s,
            self.rss_kib,
            self.rss_anon_kib,
            self.rss_file_kib,
            self.fds,
            self.sockets,
            self.threads,
            self.sockets_open,
            self.chats_open,
            self.chats_registered,
            self.data_kib,
            self.messages,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.copilot_turns,
            self.supervisors,
            self.reconnects,
            self.refused_frames,
            self.chats,
            self.errors,
            self.load1
        )
    }
}

type Latency = Arc<Mutex<Histogram<u64>>>;

/// Runs the soak and returns its summary.
pub async fn run(args: &SoakArgs) -> anyhow::Result<Value> {
    if args.duration == 0 || args.duration > MAX_DURATION_S {
        bail!("--duration must be within 1..={MAX_DURATION_S} seconds");
    }
    if args.interval == 0 || args.workers == 0 || args.workers > 1000 || args.messages == 0 {
        bail!("--interval, --workers (at most 1000) and --messages must be positive");
    }
    common::rss_kib(args.server_pid).context("the server's /proc entry")?;
    let copilot = TcpListener::bind(args.copilot_listen)
        .await
        .with_context(|| format!("binding the stand-in copilot on {}", args.copilot_listen))?;
    let copilot = tokio::spawn(serve_copilot(copilot));

    let counters = Arc::new(Counters::default());
    let latency: Latency = Arc::new(Mutex::new(common::histogram()?));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..args.workers {
        let (args, counters, latency) = (args.clone(), counters.clone(), latency.clone());
        workers.spawn(async move {
            // Staggered so that the chats do not open and close in step.
            tokio::time::sleep(Duration::from_millis(n as u64 * 137 % 2000)).await;
            while Instant::now() < end {
                counters.chats.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = one_chat(&args, n, &counters, &latency, end).await {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("soak: worker {n}: {e:#}");
                }
            }
        });
    }

    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval_at(
        start + Duration::from_secs(args.interval),
        Duration::from_secs(args.interval),
    );
    loop {
        ticks.tick().await;
        let sample = sample(args, start, &counters, &latency).await;
        csv.push_str(&sample.csv());
        csv.push('\n');
        std::fs::write(&args.csv, &csv)
            .with_context(|| format!("writing {}", args.csv.display()))?;
        samples.push(sample);
        if Instant::now() >= end {
            break;
        }
    }
    while workers.join_next().await.is_some() {}
    copilot.abort();
    draw(&samples, args)?;
    Ok(summary(&samples, args))
}

/// Reads the server's /proc entry and metrics, and takes (and resets) the interval's counts.
async fn sample(args: &SoakArgs, start: Instant, counters: &Counters, latency: &Latency) -> Sample {
    let pid = args.server_pid;
    let (fds, sockets) = descriptors(pid);
    let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
    let (count, p50, p99, max) = {
        let mut h = latency.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = |nanos: u64| nanos as f64 / 1e6;
        let out = (
            h.len(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        );
        h.reset();
        out
    };
    let messages = take(&counters.messages).max(count);
    let gauges = gauges(
        args.server,
        &[
            "jiva_sockets_open",
            "jiva_chats_open",
            "jiva_chats_registered",
        ],
    )
    .await;
    Sample {
        elapsed_s: start.elapsed().as_secs_f64(),
        rss_kib: common::rss_kib(pid).unwrap_or(0),
        rss_anon_kib: status_kib(pid, "RssAnon:"),
        rss_file_kib: status_kib(pid, "RssFile:"),
        fds,
        sockets,
        threads: threads(pid),
        sockets_open: gauges.first().copied().unwrap_or(-1.0),
        chats_open: gauges.get(1).copied().unwrap_or(-1.0),
        chats_registered: gauges.get(2).copied().unwrap_or(-1.0),
        data_kib: args.data_dir.as_deref().map_or(0, dir_kib),
        messages,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        copilot_turns: take(&counters.copilot_turns),
        supervisors: take(&counters.supervisors),
        reconnects: take(&counters.reconnects),
        refused_frames: take(&counters.refused_frames),
        chats: take(&counters.chats),
        errors: take(&counters.errors),
        load1: common::loadavg()
            .split_whitespace()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0.0),
    }
}

/// Open descriptors of `pid`, and how many of them are sockets.
fn descriptors(pid: u32) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let (mut fds, mut sockets) = (0, 0);
    for entry in entries.flatten() {
        fds += 1;
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1;
        }
    }
    (fds, sockets)
}

/// A `kB` line of `/proc/PID/status` (0 when missing).
fn status_kib(pid: u32, line: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(line))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The `Threads:` line of `/proc/PID/status`.
fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The values of `series` (unlabelled gauges) in the server's `/metrics`, -1 for one missing;
/// empty when the server did not answer.
async fn gauges(server: SocketAddr, series: &[&str]) -> Vec<f64> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.ok()?;
        let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        Some(String::from_utf8_lossy(&raw).into_owned())
    };
    let Ok(Some(text)) = timeout(Duration::from_secs(5), exchange).await else {
        return Vec::new();
    };
    series
        .iter()
        .map(|name| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(-1.0)
        })
        .collect()
}

/// The size of the files in `dir` (not below it), in KiB.
fn dir_kib(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let bytes: u64 = entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    bytes / 1024
}

/// One chat, from its first socket to the last one closing.
async fn one_chat(
    args: &SoakArgs,
    worker: usize,
    counters: &Counters,
    latency: &Latency,
    end: Instant,
) -> anyhow::Result<()> {
    let agent = common::fresh_agent();
    let open = |kind: &'static str| {
        let agent = agent.clone();
        async move {
            timeout(
                PATIENCE,
                common::open(args.server, None, &agent, kind, common::ws_config()),
            )
            .await
            .context("connecting timed out")?
        }
    };
    let mut ws = open("supervisor").await?;
    let replayed = replay(&mut ws, counters).await?;
    if replayed != 0 {
        bail!("a fresh chat replayed {replayed} messages");
    }
    let mut stored = 0u64;
    for i in 0..args.messages {
        if Instant::now() >= end {
            break;
        }
        let text = format!("{worker}.{i}.{}", common::now_nanos());
        ws.send(WsMessage::text(common::chat_frame(&text))).await?;
        let sent = common::now_nanos();
        wait_for(&mut ws, |f| {
            common::field(f, "message") == Some(text.as_str())
        })
        .await?;
        let took = common::now_nanos().saturating_sub(sent).max(1);
        latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(took);
        counters.messages.fetch_add(1, Ordering::Relaxed);
        stored += 1;
        match i {
            // A supervisor joins, sees the history, says something and leaves.
            5 if worker % 2 == 0 => {
                let mut supervisor = open("supervisor").await?;
                let seen = replay(&mut supervisor, counters).await?;
                if seen != stored {
                    bail!("a supervisor's replay had {seen} messages, not {stored}");
                }
                let text = format!("supervisor.{worker}.{i}");
                let frame =
                    format!(r#"{{"chat_id":"soak","sender":"supervisor","message":"{text}"}}"#);
                supervisor.send(WsMessage::text(frame)).await?;
                wait_for(&mut supervisor, |f| {
                    common::field(f, "message") == Some(text.as_str())
                })
                .await?;
                wait_for(&mut ws, |f| {
                    common::field(f, "message") == Some(text.as_str())
                })
                .await?;
                stored += 1;
                let _ = supervisor.close(None).await;
                counters.supervisors.fetch_add(1, Ordering::Relaxed);
            }
            // The agent's page reloads: a new socket replays the whole history.
            10 if worker % 3 != 2 => {
                let _ = ws.close(None).await;
                ws = open("supervisor").await?;
                let seen = replay(&mut ws, counters).await?;
                if seen != stored {
                    bail!("a reconnect's replay had {seen} messages, not {stored}");
                }
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            // Now and then a frame the server must refuse (and keep the socket open).
            15 => {
                ws.send(WsMessage::text("this is not JSON")).await?;
                wait_for(&mut ws, |f| f.contains(r#""error""#)).await?;
                counters.refused_frames.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    let _ = ws.close(None).await;
    if worker % 3 == 0 && Instant::now() < end {
        copilot_turn(open("copilot").await?).await?;
        counters.copilot_turns.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads a fresh socket's replay to its end (marked by the error answer to a bad frame) and
/// returns how many messages it held.
async fn replay(ws: &mut Ws, counters: &Counters) -> anyhow::Result<u64> {
    ws.send(WsMessage::text(r#"{"not":"a chat message"}"#))
        .await?;
    counters.refused_frames.fetch_add(1, Ordering::Relaxed);
    let mut messages = 0;
    loop {
        let frame = next_text(ws).await?;
        if frame.contains(r#""error""#) {
            return Ok(messages);
        }
        messages += 1;
    }
}

/// Asks the copilot one question and reads its answer to `end`.
async fn copilot_turn(mut ws: Ws) -> anyhow::Result<()> {
    ws.send(WsMessage::text(
        r#"{"chat_id":"soak-copilot","sender":"agent","message":"soak question"}"#,
    ))
    .await?;
    let mut answered = false;
    loop {
        let frame = next_text(&mut ws).await?;
        if frame.contains(r#""error""#) {
            bail!("the copilot turn failed: {frame}");
        }
        if frame.contains(r#""action":"Combined""#) {
            answered = true;
        }
        if frame.contains(r#""action":"end""#) {
            break;
        }
    }
    let _ = ws.close(None).await;
    if !answered {
        bail!("the copilot turn ended without its Combined answer");
    }
    Ok(())
}

/// Reads until a text frame satisfies `wanted`.
async fn wait_for(ws: &mut Ws, wanted: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    loop {
        let frame = next_text(ws).await?;
        if wanted(&frame) {
            return Ok(());
        }
    }
}

/// The next text frame, within [`PATIENCE`].
async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        let frame = timeout(PATIENCE, ws.next())
            .await
            .context("no frame in time")?;
        match frame {
            Some(Ok(WsMessage::Text(t))) => return Ok(t.to_string()),
            Some(Ok(WsMessage::Close(close))) => bail!("the server closed the socket: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the socket ended"),
        }
    }
}

/// The stand-in copilot: answers every request with a short streamed answer.
async fn serve_copilot(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Err(e) = answer_copilot(stream).await {
                eprintln!("soak: stand-in copilot: {e:#}");
            }
        });
    }
}

/// Reads one request (head and `Content-Length` body) and streams five chunks, 20 ms apart.
async fn answer_copilot(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 4096];
    let total = loop {
        let n = timeout(PATIENCE, stream.read(&mut tmp)).await??;
        if n == 0 {
            bail!("the server closed the copilot request early");
        }
        buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
        if let Some(total) = common::request_size(&buf) {
            break total;
        }
    };
    while buf.len() < total {
        let n = timeout(PATIENCE, stream.read(&mut tmp)).await??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
    }
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        )
        .await?;
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let data = format!(r#"{{"action":null,"output":"soak answer part {i}. "}}"#);
        let piece = format!("{:x}\r\n{data}\r\n", data.len());
        stream.write_all(piece.as_bytes()).await?;
        stream.flush().await?;
    }
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await?;
    Ok(())
}

/// The first sample at or after the warm-up, and the last one.
fn warm_and_last(samples: &[Sample], warmup: u64) -> Option<(Sample, Sample)> {
    let warm = samples
        .iter()
        .find(|s| s.elapsed_s >= warmup as f64)
        .or(samples.first())?;
    Some((*warm, *samples.last()?))
}

fn summary(samples: &[Sample], args: &SoakArgs) -> Value {
    let total = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>();
    let (warm, last) = warm_and_last(samples, args.warmup).unwrap_or_default();
    let p99s: Vec<f64> = samples
        .iter()
        .filter(|s| s.elapsed_s >= args.warmup as f64 && s.messages > 0)
        .map(|s| s.p99_ms)
        .collect();
    let p99_max = p99s.iter().copied().fold(0.0, f64::max);
    let mut sorted = p99s.clone();
    sorted.sort_by(f64::total_cmp);
    let p99_median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    json!({
        "workload": "soak",
        "duration_s": args.duration,
        "workers": args.workers,
        "samples": samples.len(),
        "messages": total(|s| s.messages),
        "chats": total(|s| s.chats),
        "supervisors": total(|s| s.supervisors),
        "reconnects": total(|s| s.reconnects),
        "copilot_turns": total(|s| s.copilot_turns),
        "refused_frames": total(|s| s.refused_frames),
        "errors": total(|s| s.errors),
        "rss_kib_after_warmup": warm.rss_kib,
        "rss_kib_end": last.rss_kib,
        "rss_anon_kib_after_warmup": warm.rss_anon_kib,
        "rss_anon_kib_end": last.rss_anon_kib,
        "fds_after_warmup": warm.fds,
        "fds_end": last.fds,
        "chats_registered_end": last.chats_registered,
        "data_kib_end": last.data_kib,
        "threads_after_warmup": warm.threads,
        "threads_end": last.threads,
        "p99_ms_median_of_intervals": p99_median,
        "p99_ms_worst_interval": p99_max,
        "load_end": common::loadavg(),
        "csv": args.csv.display().to_string(),
        "svg": args.svg.display().to_string(),
    })
}

/// The Markdown row for a soak summary.
pub fn row(v: &Value) -> String {
    format!(
        "| soak | {} s | {} | {} | {} → {} | {} → {} | {} | {} | {} |",
        common::cell(v, "duration_s"),
        common::cell(v, "messages"),
        common::cell(v, "errors"),
        common::cell(v, "rss_kib_after_warmup"),
        common::cell(v, "rss_kib_end"),
        common::cell(v, "fds_after_warmup"),
        common::cell(v, "fds_end"),
        common::cell(v, "p99_ms_median_of_intervals"),
        common::cell(v, "p99_ms_worst_interval"),
        v.get("load_end")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// The header of [`row`]'s table.
pub const HEADER: &str = "| workload | duration | messages | errors | RSS KiB (warm → end) | descriptors (warm → end) | p99 ms (median interval) | p99 ms (worst interval) | load |\n|---|---|---|---|---|---|---|---|---|";

/// Two panels over time: the server's RSS (MiB) with its descriptors and threads, and the
/// send-to-echo latency (p50, p99) of each interval.
fn draw(samples: &[Sample], args: &SoakArgs) -> anyhow::Result<()> {
    if samples.is_empty() {
        bail!("no samples to draw");
    }
    let plot = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the chart: {e}");
    let minutes = |s: &Sample| s.elapsed_s / 60.0;
    let x_max = samples.iter().map(minutes).fold(0.0, f64::max).max(0.1);
    let root = SVGBackend::new(&args.svg, (900, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot(&e))?;
    let title = format!(
        "JivaChat soak: {} workers, {} s (load avg at end {})",
        args.workers,
        args.duration,
        common::loadavg()
    );
    let root = root
        .titled(&title, ("sans-serif", 20))
        .map_err(|e| plot(&e))?;
    let (top, bottom) = root.split_vertically(360);

    let rss_max = samples
        .iter()
        .map(|s| s.rss_kib as f64 / 1024.0)
        .fold(1.0, f64::max)
        * 1.2;
    let count_max = samples
        .iter()
        .map(|s| s.fds.max(s.threads) as f64)
        .fold(1.0, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(&top)
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..rss_max)
        .map_err(|e| plot(&e))?
        .set_secondary_coord(0f64..x_max, 0f64..count_max);
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("server RSS (MiB)")
        .draw()
        .map_err(|e| plot(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("descriptors, threads")
        .draw()
        .map_err(|e| plot(&e))?;
    chart
        .draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (minutes(s), s.rss_kib as f64 / 1024.0)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| plot(&e))?
        .label("RSS MiB")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            samples
                .iter()
                .map(|s| (minutes(s), s.rss_anon_kib as f64 / 1024.0)),
            CYAN.stroke_width(2),
        ))
        .map_err(|e| plot(&e))?
        .label("anonymous RSS MiB")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], CYAN));
    for (name, color, pick) in [("descriptors", GREEN, 0usize), ("threads", MAGENTA, 1usize)] {
        chart
            .draw_secondary_series(LineSeries::new(
                samples.iter().map(move |s| {
                    let v = if pick == 0 { s.fds } else { s.threads };
                    (minutes(s), v as f64)
                }),
                color.stroke_width(1),
            ))
            .map_err(|e| plot(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot(&e))?;

    let lat_max = samples.iter().map(|s| s.p99_ms).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..lat_max)
        .map_err(|e| plot(&e))?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("send to echo, per interval (ms)")
        .draw()
        .map_err(|e| plot(&e))?;
    for (name, color, pick) in [("p50", BLUE, 0usize), ("p99", RED, 1usize)] {
        chart
            .draw_series(LineSeries::new(
                samples
                    .iter()
                    .filter(|s| s.messages > 0)
                    .map(move |s| (minutes(s), if pick == 0 { s.p50_ms } else { s.p99_ms })),
                color.stroke_width(2),
            ))
            .map_err(|e| plot(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot(&e))?;
    root.present().map_err(|e| plot(&e))?;
    Ok(())
}
