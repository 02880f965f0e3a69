//! `GET /metrics`: Prometheus text with the transport's counters.
//!
//! A process has one global metrics recorder, shared by every server the other tests start in
//! this process, so exact values are checked on the real binary in a process of its own.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// The server binary in a process of its own, killed when dropped.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary on 127.0.0.1:0 with a fresh data directory, no `.env` and no
    /// copilot or notification settings, and reads its address from its first log lines.
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Self::start`] with these environment variables set.
    pub(crate) fn start_with(env: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), env)
    }

    /// [`Self::start_with`] on the data directory `dir`.
    fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jivachat-server"));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("JIVA_")
                || name.starts_with("GRAPHQL_")
                || name.starts_with("AWS_")
                || name == "COPILOT_ENDPOINT"
            {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keeps draining the log so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "JivaChat listening" {
                    let addr = entry["fields"]["addr"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(PATIENCE) {
            Ok(addr) => addr.parse().unwrap(),
            Err(e) => {
                let _ = child.kill();
                panic!("the server did not say where it listens: {e}");
            }
        };
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Kills the process with SIGKILL (no shutdown at all), waits for it, and starts the binary
    /// again on the same data directory with `env`.
    pub(crate) fn kill_and_restart(mut self, env: &[(&str, &str)]) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        Self::start_in(dir, env)
    }

    /// The server's data directory.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn chat_url(&self, kind: &str) -> String {
        format!("ws://{}/?agentID={AGENT}&secondaryID={kind}", self.addr)
    }
}

impl ServerProcess {
    /// Kills the server with SIGKILL: nothing is flushed, no socket is closed cleanly.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path`: status, lower-cased head, body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let text = tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("no HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// The value of the sample `series` (name and labels, exactly as rendered).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn assert_samples(text: &str, expected: &[(&str, f64)]) {
    for (series, value) in expected {
        assert_eq!(sample(text, series), Some(*value), "{series} in:\n{text}");
    }
}

#[tokio::test]
async fn metrics_count_sockets_messages_frames_and_store_latency() {
    let server = ServerProcess::start();

    // Before any socket, every series is already there, at zero.
    let (status, head, text) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_samples(
        &text,
        &[
            ("jiva_sockets_open", 0.0),
            ("jiva_chats_open", 0.0),
            ("jiva_messages_in_total", 0.0),
            ("jiva_frames_out_total", 0.0),
            ("jiva_copilot_turns_total", 0.0),
            ("jiva_slow_consumer_closes_total", 0.0),
            ("jiva_notify_queue_depth", 0.0),
        ],
    );
    assert!(
        text.contains("# TYPE jiva_messages_in_total counter"),
        "{text}"
    );

    let mut writer = connect(&server.chat_url("supervisor")).await;
    send(&mut writer, json!({"ping": "pong"})).await;
    say(&mut writer, "agent", "one").await;
    assert_eq!(next_json(&mut writer).await["message"], "one");
    // The reader gets "one" from the history (not a broadcast); the answer to its invalid
    // frame comes once it has caught up and joined the room, so before "two" is sent.
    let mut reader = connect(&server.chat_url("supervisor")).await;
    send(&mut reader, json!({"not": "a chat message"})).await;
    assert_eq!(next_json(&mut reader).await["message"], "one");
    assert!(next_json(&mut reader).await.get("error").is_some());
    say(&mut writer, "supervisor", "two").await;
    assert_eq!(next_json(&mut writer).await["message"], "two");
    assert_eq!(next_json(&mut reader).await["message"], "two");

    let (_, _, text) = get(server.addr, "/metrics").await;
    assert_samples(
        &text,
        &[
            ("jiva_sockets_open", 2.0),
            ("jiva_chats_open", 1.0),
            // The keepalive and the reader's invalid frame are frames in, but not messages.
            ("jiva_frames_in_total", 4.0),
            ("jiva_messages_in_total", 2.0),
            // "one" to the writer, "two" to both sockets.
            ("jiva_frames_out_total", 3.0),
            ("jiva_store_failures_total", 0.0),
            ("jiva_store_append_seconds_count", 2.0),
            // The configured buckets, cumulative.
            (r#"jiva_store_append_seconds_bucket{le="2.5"}"#, 2.0),
            (r#"jiva_store_append_seconds_bucket{le="+Inf"}"#, 2.0),
        ],
    );
    assert!(
        sample(&text, r#"jiva_store_append_seconds_bucket{le="0.00025"}"#).is_some(),
        "{text}"
    );
    assert!(sample(&text, "jiva_store_append_seconds_sum").unwrap() > 0.0);

    // A copilot question with no copilot configured: a turn, and a failed one.
    let mut copilot = connect(&server.chat_url("copilot")).await;
    say(&mut copilot, "agent", "anyone there?").await;
    loop {
        let frame = next_json(&mut copilot).await;
        if frame["action"] == "end" {
            break;
        }
    }
    let (_, _, text) = get(server.addr, "/metrics").await;
    assert_samples(
        &text,
        &[
            ("jiva_sockets_open", 3.0),
            ("jiva_chats_open", 2.0),
            ("jiva_messages_in_total", 3.0),
            ("jiva_copilot_turns_total", 1.0),
            ("jiva_copilot_failures_total", 1.0),
            ("jiva_store_append_seconds_count", 3.0),
        ],
    );
}

#[tokio::test]
async fn the_in_process_server_serves_metrics_too() {
    let server = TestServer::start().await;
    let mut ws = server.connect(AGENT, "supervisor").await;
    say(&mut ws, "agent", "hello").await;
    next_json(&mut ws).await;
    let (status, head, text) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain"), "{head}");
    // Other tests in this process count into the same recorder: at least ours is there.
    assert!(
        sample(&text, "jiva_messages_in_total").unwrap() >= 1.0,
        "{text}"
    );
    assert!(sample(&text, "jiva_sockets_open").unwrap() >= 1.0, "{text}");
    server.stop().await;
}

/// An AppSync stand-in that takes each request and never answers; says when one arrived.
async fn hanging_appsync() -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if stream.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = tx.send(());
                }
                // Holds the connection open without answering.
                std::future::pending::<()>().await;
                drop(stream);
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn metrics_show_the_notification_queue() {
    let (url, mut requests) = hanging_appsync().await;
    let server = ServerProcess::start_with(&[
        ("GRAPHQL_API_URL", url.as_str()),
        ("GRAPHQL_API_KEY", "test-key"),
        ("JIVA_NOTIFY_CONCURRENCY", "1"),
    ]);
    let mut ws = connect(&server.chat_url("supervisor")).await;
    say(&mut ws, "agent", "first").await;
    assert_eq!(next_json(&mut ws).await["message"], "first");
    // The first notification is being sent (and never answered).
    tokio::time::timeout(PATIENCE, requests.recv())
        .await
        .expect("no notification was sent")
        .unwrap();
    say(&mut ws, "agent", "second").await;
    say(&mut ws, "supervisor", "third").await;
    // Frames are handled in order: once this one is answered, "third" was fully handled,
    // its notification queued included.
    send(&mut ws, json!({"not": "a chat message"})).await;
    assert_eq!(next_json(&mut ws).await["message"], "second");
    assert_eq!(next_json(&mut ws).await["message"], "third");
    assert!(next_json(&mut ws).await.get("error").is_some());

    let (_, _, text) = get(server.addr, "/metrics").await;
    assert_samples(
        &text,
        &[
            ("jiva_notify_queue_depth", 2.0),
            ("jiva_notify_in_flight", 1.0),
            ("jiva_notify_delivered", 0.0),
            ("jiva_notify_failed", 0.0),
            ("jiva_notify_dropped", 0.0),
            ("jiva_notify_breaker_state", 0.0),
        ],
    );
}

impl ServerProcess {
    /// Sends SIGTERM, as an orchestrator stopping the server does, and waits (at most
    /// [`PATIENCE`]) for the process to exit: its exit status and how long after the signal it
    /// exited (to within a few milliseconds: the exit is polled).
    pub(crate) async fn terminate_and_wait(
        &mut self,
    ) -> (std::process::ExitStatus, std::time::Duration) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let signalled = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, signalled.elapsed());
            }
            assert!(
                signalled.elapsed() < PATIENCE,
                "the server did not exit after SIGTERM"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
