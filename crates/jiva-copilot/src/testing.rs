//! Test support (cargo feature `testing`; enable it in dev-dependencies only): [`StandIn`], a
//! copilot stand-in on `127.0.0.1:0` that answers with raw HTTP/1.1 bytes written step by step,
//! so a test controls every chunk boundary, flush, pause and disconnect, and that records every
//! request it receives.
//!
//! Each incoming connection serves one request: the stand-in reads it, records it, takes the
//! next [`Script`] from its queue (in the order the scripts were pushed), runs its [`Step`]s and
//! closes the connection. Every response head written by the helpers here says
//! `connection: close`, so a client never tries to reuse a connection the stand-in is about to
//! drop. A request that finds the queue empty gets a `503` whose body says so.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use jiva_copilot::testing::{StandIn, chunk, end, head_chunked};
//! let mut stand_in = StandIn::start().await?;
//! stand_in.push(vec![
//!     head_chunked(200, "application/json"),
//!     chunk(r#"{"action":null,"output":"hel"#),
//!     chunk(r#"lo"}"#),
//!     end(),
//! ]);
//! // ... point an `HttpCopilot` (or a whole server) at `stand_in.url()`, ask, then:
//! let request = stand_in.request().await; // what the client sent
//! # let _ = request; Ok(()) }
//! ```
//!
//! This module never panics: I/O failures end the affected connection quietly, and a test
//! notices them as a missing request or a broken answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// The path of [`StandIn::url`].
pub const PATH: &str = "/copilot/ask";

/// The largest request head the stand-in reads; a larger one ends the connection.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What the stand-in does with one request, after reading it: its steps, in order.
pub type Script = Vec<Step>;

/// One thing the stand-in does after reading a request.
#[derive(Debug)]
pub enum Step {
    /// Write these bytes and flush.
    Write(Vec<u8>),
    /// Wait until the test sends on (or drops) the other end.
    WaitFor(oneshot::Receiver<()>),
    /// Keep the connection open, writing nothing, until the client closes it or the
    /// [`StandIn`] is dropped.
    Hold,
}

/// A request the stand-in received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The request target, e.g. [`PATH`].
    pub path: String,
    /// The headers, names as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body (read by `content-length`).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, if it is UTF-8.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// A running copilot stand-in. Dropping it stops accepting connections and ends every
/// [`Step::Hold`].
#[derive(Debug)]
pub struct StandIn {
    url: String,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    requests: mpsc::UnboundedReceiver<Recorded>,
    accept: JoinHandle<()>,
    _release: watch::Sender<()>,
}

impl StandIn {
    /// Starts a stand-in with an empty script queue.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}{PATH}", listener.local_addr()?);
        let scripts = Arc::new(Mutex::new(VecDeque::new()));
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(());
        let accept = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&scripts),
            requests_tx,
            released,
        ));
        Ok(Self {
            url,
            scripts,
            requests,
            accept,
            _release: release,
        })
    }

    /// Starts a stand-in whose first request is answered with `script`.
    pub async fn serve(script: Script) -> std::io::Result<Self> {
        let stand_in = Self::start().await?;
        stand_in.push(script);
        Ok(stand_in)
    }

    /// The URL to POST to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues `script` for the next request that finds no earlier script waiting.
    pub fn push(&self, script: Script) {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(script);
    }

    /// Scripts not yet taken by a request.
    pub fn scripts_left(&self) -> usize {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The next request received, in the order they were read; waits for one. `None` only if
    /// the stand-in stopped accepting. Wrap it in a timeout: it waits as long as it takes.
    pub async fn request(&mut self) -> Option<Recorded> {
        self.requests.recv().await
    }

    /// The next request already received, without waiting.
    pub fn try_request(&mut self) -> Option<Recorded> {
        self.requests.try_recv().ok()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    requests: mpsc::UnboundedSender<Recorded>,
    released: watch::Receiver<()>,
) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(
            socket,
            Arc::clone(&scripts),
            requests.clone(),
            released.clone(),
        ));
    }
}

async fn serve_connection(
    mut socket: TcpStream,
    scripts: Arc<Mutex<VecDeque<Script>>>,
    requests: mpsc::UnboundedSender<Recorded>,
    mut released: watch::Receiver<()>,
) {
    let _ = socket.set_nodelay(true);
    let Some(recorded) = read_request(&mut socket).await else {
        return;
    };
    // Take the script before recording, so a test that saw the request also sees its script
    // gone from the queue.
    let script = scripts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front();
    let _ = requests.send(recorded);
    let script = script.unwrap_or_else(|| vec![fixed(503, "the copilot stand-in has no script")]);
    for step in script {
        match step {
            Step::Write(bytes) => {
                if socket.write_all(&bytes).await.is_err() || socket.flush().await.is_err() {
                    return;
                }
            }
            Step::WaitFor(rx) => {
                let _ = rx.await;
            }
            Step::Hold => {
                // Ends when the client closes (or sends anything more) or the stand-in goes.
                let mut byte = [0u8; 1];
                tokio::select! {
                    _ = socket.read(&mut byte) => {}
                    _ = released.changed() => {}
                }
                return;
            }
        }
    }
    // Dropping the socket closes the connection, the body finished or not.
}

async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if data.len() > MAX_HEAD_BYTES {
            return None;
        }
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(buf.get(..n)?);
    };
    let head = String::from_utf8(data.get(..head_end)?.to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data.get(head_end.saturating_add(4)..)?.to_vec();
    while body.len() < length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(buf.get(..n)?);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// Status line and headers of a chunked response.
pub fn head_chunked(status: u16, content_type: &str) -> Step {
    Step::Write(
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        .into_bytes(),
    )
}

/// Status line and headers of a `200` response whose body ends when the connection closes.
pub fn head_close_delimited(content_type: &str) -> Step {
    Step::Write(
        format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n")
            .into_bytes(),
    )
}

/// A whole response with a `content-length` body.
pub fn fixed(status: u16, body: &str) -> Step {
    Step::Write(
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// One HTTP chunk carrying `bytes` (of a chunked body).
pub fn chunk(bytes: impl AsRef<[u8]>) -> Step {
    let bytes = bytes.as_ref();
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    Step::Write(out)
}

/// Raw bytes (for a close-delimited body).
pub fn raw(bytes: impl AsRef<[u8]>) -> Step {
    Step::Write(bytes.as_ref().to_vec())
}

/// The last chunk of a chunked body.
pub fn end() -> Step {
    Step::Write(b"0\r\n\r\n".to_vec())
}

/// A whole `200` chunked response of `content_type` whose body is `body` cut at the byte
/// offsets `cuts` (ascending; offsets past the end are ignored), one HTTP chunk per piece.
pub fn split_body(content_type: &str, body: &[u8], cuts: &[usize]) -> Script {
    let mut script = vec![head_chunked(200, content_type)];
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        if let Some(piece) = body.get(start..cut).filter(|p| !p.is_empty()) {
            script.push(chunk(piece));
            start = cut;
        }
    }
    script.push(end());
    script
}
