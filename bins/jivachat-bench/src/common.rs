//! What every workload shares: the loopback guard, the clock, sockets, histograms, output.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client WebSocket over a plain loopback TCP stream.
pub type Ws = WebSocketStream<TcpStream>;

/// Accepts `addr` only if it is an IPv4 loopback address (127.0.0.0/8).
pub fn loopback(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Ok(addr),
        _ => bail!("refusing {addr}: this bench only talks to 127.0.0.0/8 (loopback)"),
    }
}

/// Parses and checks a loopback `host:port`.
pub fn parse_loopback(raw: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not an address like 127.0.0.1:3030"))?;
    loopback(addr).map_err(|e| e.to_string())
}

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process (monotonic; shared by every task, so a
/// time written into a message can be compared with the time it is received).
pub fn now_nanos() -> u64 {
    u64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A fresh agent id (UUID v4), so that a chat starts with no history.
pub fn fresh_agent() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `n`-th extra loopback source address: 127.0.0.2, 127.0.0.3, …
pub fn source_addr(n: usize) -> Ipv4Addr {
    let n = u32::try_from(n % 65_000).unwrap_or(0) + 2;
    Ipv4Addr::new(127, 0, (n >> 8) as u8, (n & 0xff) as u8)
}

/// Small client buffers so that thousands of sockets fit in the generator.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
}

/// Opens a socket on `server` as the deployed client does, from `source` if given.
pub async fn open(
    server: SocketAddr,
    source: Option<Ipv4Addr>,
    agent: &str,
    kind: &str,
    config: WebSocketConfig,
) -> anyhow::Result<Ws> {
    loopback(server)?;
    let socket = TcpSocket::new_v4().context("creating a TCP socket")?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip.into(), 0))
            .with_context(|| format!("binding the client socket to {ip}"))?;
    }
    let stream = socket
        .connect(server)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let url = format!("ws://{server}/?agentID={agent}&secondaryID={kind}");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// A chat message frame as the deployed client sends it.
pub fn chat_frame(text: &str) -> String {
    format!(r#"{{"chat_id":"bench","sender":"agent","message":"{text}"}}"#)
}

/// The string value of `"key":"…"` in a frame, without a full JSON parse. The bench's own
/// texts never contain quotes or escapes.
pub fn field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let start = frame.find(&pattern)? + pattern.len();
    let rest = frame.get(start..)?;
    let end = rest.find('"')?;
    rest.get(..end)
}

/// A latency histogram in nanoseconds (1 ns to 10 minutes, 3 significant digits).
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).context("creating a histogram")
}

/// p50/p90/p99/p99.9/max in milliseconds.
pub fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |nanos: u64| (nanos as f64 / 1e6 * 1000.0).round() / 1000.0;
    serde_json::json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// The 1-, 5- and 15-minute load averages, to note the machine's load with each figure.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")
}

/// The size of an HTTP request (head and `Content-Length` body) once `buf` holds its whole
/// head; `None` before (the stand-in copilots read until they have it all).
pub fn request_size(buf: &[u8]) -> Option<usize> {
    let pos = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(buf.get(..pos).unwrap_or_default()).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(pos + 4 + length)
}

/// Writes one JSON line and one Markdown table row to stdout.
pub fn emit(json: &Value, row: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    writeln!(out, "{row}")?;
    out.flush()?;
    Ok(())
}

/// A JSON number as a Markdown cell.
pub fn cell(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

/// CPU seconds (user + system) used so far by `pid` (`None`: this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Share of one core used between two [`cpu_seconds`] readings over `wall` seconds.
pub fn cpu_share(before: Option<f64>, after: Option<f64>, wall: f64) -> Option<f64> {
    Some((((after? - before?) / wall) * 1000.0).round() / 1000.0)
}
