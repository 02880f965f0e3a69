//! A tiny copilot stand-in on 127.0.0.1:0: it records the one request it receives and answers
//! with raw HTTP/1.1 bytes written step by step, so each test controls every chunk boundary,
//! flush, pause and disconnect.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use jiva_copilot::Config;
use jiva_core::{AgentId, ChatId, ConnectionType, CopilotChunk, CopilotError, CopilotRequest};
use jiva_core::{ChunkStream, Role, Turn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// The longest any test waits for anything; a hang fails the test instead of blocking CI.
pub const BOUND: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test if it takes longer than [`BOUND`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .expect("the test did not finish within its bound")
}

/// The request the stand-in received.
#[derive(Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One thing the stand-in does after reading the request.
pub enum Step {
    /// Write these bytes and flush.
    Write(Vec<u8>),
    /// Wait until the test sends on (or drops) the other end.
    WaitFor(oneshot::Receiver<()>),
    /// Keep the connection open, writing nothing, until the test is over.
    Hold,
}

/// Status line and headers of a chunked response.
pub fn head_chunked(status: u16, content_type: &str) -> Step {
    Step::Write(
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes(),
    )
}

/// Status line and headers of a response whose body ends when the connection closes.
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
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// One HTTP chunk carrying `bytes`.
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

/// A running stand-in. Dropping it lets a held connection go.
pub struct Server {
    pub url: String,
    request: Option<oneshot::Receiver<Recorded>>,
    _release: oneshot::Sender<()>,
}

impl Server {
    /// The request the stand-in received.
    pub async fn request(&mut self) -> Recorded {
        let rx = self.request.take().expect("the request was already taken");
        within(rx).await.expect("the stand-in received no request")
    }
}

/// Starts a stand-in that serves one connection with `steps`, then closes it.
pub async fn serve(steps: Vec<Step>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/copilot/ask", listener.local_addr().unwrap());
    let (request_tx, request_rx) = oneshot::channel();
    let (release_tx, mut release_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        socket.set_nodelay(true).unwrap();
        let Some(recorded) = read_request(&mut socket).await else {
            return;
        };
        let _ = request_tx.send(recorded);
        for step in steps {
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
                    let _ = (&mut release_rx).await;
                }
            }
        }
        // Dropping the socket closes the connection, finished or not.
    });
    Server {
        url,
        request: Some(request_rx),
        _release: release_tx,
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).ok()?;
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
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

/// A configuration with generous limits, so that only the tests about limits hit them.
pub fn config(url: &str) -> Config {
    let mut config = Config::new(url);
    config.connect_timeout = Duration::from_secs(5);
    config.first_byte_timeout = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(5);
    config
}

/// A question with one earlier exchange.
pub fn question() -> CopilotRequest {
    CopilotRequest {
        chat: ChatId::new(
            AgentId::parse("4f9c2a1e-77b2-4c1e-9a3d-0c5e6f7a8b9c").unwrap(),
            ConnectionType::Copilot,
        ),
        input: "And the \"refund\" policy? }".into(),
        history: vec![
            Turn {
                role: Role::Human,
                content: "Hi 😀".into(),
            },
            Turn {
                role: Role::Ai,
                content: "Hello!\nHow can I help?".into(),
            },
        ],
    }
}

pub fn chunk_of(action: Option<&str>, output: Option<&str>) -> CopilotChunk {
    CopilotChunk {
        action: action.map(Into::into),
        output: output.map(Into::into),
    }
}

/// Every item of `stream`, up to and including its end.
pub async fn collect(stream: ChunkStream) -> Vec<Result<CopilotChunk, CopilotError>> {
    within(stream.collect::<Vec<_>>()).await
}

/// The chunks of `items`, which must all be `Ok`.
pub fn all_ok(items: Vec<Result<CopilotChunk, CopilotError>>) -> Vec<CopilotChunk> {
    items
        .into_iter()
        .map(|item| item.unwrap_or_else(|e| panic!("unexpected error {e:?}")))
        .collect()
}
