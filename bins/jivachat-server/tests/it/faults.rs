//! Faults injected over real processes: the server binary in a process of its own, moto as
//! the DynamoDB-compatible store, a TCP proxy between the two that the test can cut, slow down
//! or hold, and real WebSocket clients. What each test guarantees is listed in
//! `docs/RELIABILITY.md`, "Faults".
//!
//! moto keeps its tables in memory, so stopping its process would lose them: "the store goes
//! away" is a cut of the proxy instead (its listener closed and every connection through it
//! dropped, then the same port bound again), which is what the server sees of a store that went
//! away and came back.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jiva_store_dynamo::testing::LocalDynamo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::metrics::{ServerProcess, get};
use crate::support::*;

/// A TCP proxy in front of the store that the test controls.
struct StoreProxy {
    addr: SocketAddr,
    control: Arc<Control>,
    accept: Option<JoinHandle<()>>,
}

struct Control {
    upstream: SocketAddr,
    /// Added before each chunk sent towards the store.
    delay_ms: AtomicU64,
    /// While `true`, requests that write an item (`PutItem`) wait before reaching the store.
    hold_writes: watch::Sender<bool>,
    /// Held write requests waiting now.
    held: watch::Sender<usize>,
    connections: Mutex<Vec<AbortHandle>>,
}

/// The DynamoDB operation header of a write request, as the SDK sends it.
const PUT_ITEM: &[u8] = b"DynamoDB_20120810.PutItem";

impl StoreProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let control = Arc::new(Control {
            upstream,
            delay_ms: AtomicU64::new(0),
            hold_writes: watch::channel(false).0,
            held: watch::channel(0).0,
            connections: Mutex::new(Vec::new()),
        });
        let mut proxy = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            control,
            accept: None,
        };
        proxy.up().await;
        proxy
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Listens again, on the same port after [`Self::down`].
    async fn up(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        let control = Arc::clone(&self.control);
        self.accept = Some(tokio::spawn(accept_loop(listener, control)));
    }

    /// The store goes away: nothing listens on the port and every open connection is dropped.
    fn down(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for connection in self.control.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.control.delay_ms.store(ms, Ordering::SeqCst);
    }

    fn hold_writes(&self, hold: bool) {
        self.control.hold_writes.send_replace(hold);
    }

    /// Waits until at least `n` write requests are held.
    async fn held_writes(&self, n: usize) {
        let mut held = self.control.held.subscribe();
        tokio::time::timeout(PATIENCE, held.wait_for(|held| *held >= n))
            .await
            .expect("writes never reached the proxy")
            .unwrap();
    }
}

impl Drop for StoreProxy {
    fn drop(&mut self) {
        self.down();
    }
}

async fn accept_loop(listener: TcpListener, control: Arc<Control>) {
    while let Ok((client, _)) = listener.accept().await {
        let task = tokio::spawn(pipe(client, Arc::clone(&control)));
        let mut connections = control.connections.lock().unwrap();
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}

async fn pipe(client: TcpStream, control: Arc<Control>) {
    let Ok(store) = TcpStream::connect(control.upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut store_read, mut store_write) = store.into_split();
    let towards_store = async {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if chunk.windows(PUT_ITEM.len()).any(|w| w == PUT_ITEM) {
                let mut hold = control.hold_writes.subscribe();
                if *hold.borrow_and_update() {
                    control.held.send_modify(|held| *held += 1);
                    let _ = hold.wait_for(|hold| !*hold).await;
                    control.held.send_modify(|held| *held -= 1);
                }
            }
            let delay = control.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if store_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let towards_client = async {
        let _ = tokio::io::copy(&mut store_read, &mut client_write).await;
    };
    tokio::select! {
        () = towards_store => {}
        () = towards_client => {}
    }
}

/// Fresh tables on the shared moto, and the server environment that uses them through
/// `endpoint`.
async fn dynamo_tables() -> jiva_store_dynamo::Config {
    let dynamo = LocalDynamo::shared().expect("a DynamoDB-compatible server for the tests");
    let store = dynamo.store().await.expect("creating DynamoDB test tables");
    store.config().clone()
}

fn moto_addr() -> SocketAddr {
    let dynamo = LocalDynamo::shared().unwrap();
    dynamo
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

fn dynamo_server(tables: &jiva_store_dynamo::Config, endpoint: &str) -> ServerProcess {
    ServerProcess::start_with(&dynamo_env(tables, endpoint))
}

/// The environment of a server on `tables`, reached at `endpoint`.
fn dynamo_env<'a>(
    tables: &'a jiva_store_dynamo::Config,
    endpoint: &'a str,
) -> [(&'a str, &'a str); 9] {
    [
        ("JIVA_STORE", "dynamodb"),
        ("JIVA_DYNAMODB_CHATS_TABLE", &tables.chats_table),
        ("JIVA_DYNAMODB_MESSAGES_TABLE", &tables.messages_table),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        UNLIMITED_RATE,
        UNLIMITED_BURST,
    ]
}

/// The senders send as fast as the store answers: no per-socket rate limit in these tests.
const UNLIMITED_RATE: (&str, &str) = ("JIVA_MESSAGES_PER_SEC", "1000000");
const UNLIMITED_BURST: (&str, &str) = ("JIVA_MESSAGE_BURST", "1000000");

/// A distinct agent (and so a distinct chat) per sender.
fn agent(n: usize) -> String {
    format!("0b5c7e2a-4f1d-4c39-9a57-{n:012}")
}

fn chat_url(server: &ServerProcess, agent: &str) -> String {
    format!(
        "ws://{}/?agentID={agent}&secondaryID=supervisor",
        server.addr
    )
}

/// What one sender saw: the texts the server echoed (stored) and the ones it refused.
#[derive(Debug, Default)]
struct Seen {
    echoed: Vec<String>,
    refused: Vec<String>,
}

/// One socket sending numbered messages, one at a time, until `stop` turns `true` or the
/// socket ends; each answer is either the echo of its message or the documented error frame.
/// Reports every outcome on `events` as `(sender, stored)`.
fn sender(
    url: String,
    n: usize,
    mut stop: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<(usize, bool)>,
) -> JoinHandle<Seen> {
    tokio::spawn(async move {
        let mut ws = connect(&url).await;
        assert!(replayed_messages(&mut ws).await.is_empty());
        let mut seen = Seen::default();
        let mut i = 0;
        while !*stop.borrow_and_update() {
            let text = format!("{n}:{i}");
            i += 1;
            let frame = json!({"chat_id": "whatever", "sender": "agent", "message": text});
            if ws.send(WsMessage::text(frame.to_string())).await.is_err() {
                break;
            }
            let Some(answer) = answer_to(&mut ws, &seen.refused).await else {
                break;
            };
            if answer.get("error").is_some() {
                assert_eq!(answer, json!({"error": "message not stored"}));
                seen.refused.push(text);
                let _ = events.send((n, false));
            } else {
                assert_eq!(answer["message"], text.as_str());
                seen.echoed.push(text);
                let _ = events.send((n, true));
            }
        }
        seen
    })
}

/// The answer to the message just sent, or `None` once the socket has ended. A message
/// refused while the store was cut may have been stored after all (see
/// [`assert_replay_holds`]); its frame is shown once the chat reads it from the store to fill
/// the gap its number left (as a replay would show it), and is passed over here.
async fn answer_to(ws: &mut Ws, refused: &[String]) -> Option<Value> {
    loop {
        let frame = answer(ws).await?;
        let stored_after_all = frame.get("error").is_none()
            && frame["message"]
                .as_str()
                .is_some_and(|m| refused.iter().any(|r| r == m));
        if !stored_after_all {
            return Some(frame);
        }
    }
}

/// The next text frame, or `None` once the socket has ended (closed, reset or failed).
async fn answer(ws: &mut Ws) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no frame arrived in time");
        match frame {
            Some(Ok(WsMessage::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            _ => return None,
        }
    }
}

/// `count` senders, on the chats of agents `first..first + count`, and what they report.
struct Load {
    stop: watch::Sender<bool>,
    events: mpsc::UnboundedReceiver<(usize, bool)>,
    senders: Vec<JoinHandle<Seen>>,
}

impl Load {
    fn start(server: &ServerProcess, first: usize, count: usize) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (events_tx, events) = mpsc::unbounded_channel();
        let senders = (0..count)
            .map(|n| {
                sender(
                    chat_url(server, &agent(first + n)),
                    n,
                    stopped.clone(),
                    events_tx.clone(),
                )
            })
            .collect();
        Self {
            stop,
            events,
            senders,
        }
    }
}

impl Load {
    /// Every sender has had a message stored.
    async fn stores(&mut self) {
        each_sender_saw(&mut self.events, self.senders.len(), true).await;
    }

    /// Every sender has had a message refused, and `/readyz` answers `503`.
    async fn is_refused(&mut self, server: &ServerProcess) {
        each_sender_saw(&mut self.events, self.senders.len(), false).await;
        readyz_becomes(server, 503).await;
    }

    /// Every sender has had a message stored again and `/readyz` answers `200`; then the
    /// senders stop, and each chat's replay holds what its sender saw (`cuts`: see
    /// [`assert_replay_holds`]).
    async fn recovers(mut self, server: &ServerProcess, first: usize, cuts: usize) {
        self.stores().await;
        readyz_becomes(server, 200).await;
        self.stop.send_replace(true);
        for (n, task) in self.senders.into_iter().enumerate() {
            let seen = task.await.unwrap();
            assert!(!seen.refused.is_empty() && !seen.echoed.is_empty());
            assert_replay_holds(&replay_of(server, &agent(first + n)).await, &seen, cuts);
        }
    }
}

/// Waits until every one of `senders` has reported an outcome equal to `stored`.
async fn each_sender_saw(
    events: &mut mpsc::UnboundedReceiver<(usize, bool)>,
    senders: usize,
    stored: bool,
) {
    let mut seen = HashSet::new();
    tokio::time::timeout(PATIENCE, async {
        while seen.len() < senders {
            let (n, outcome) = events.recv().await.unwrap();
            if outcome == stored {
                seen.insert(n);
            }
        }
    })
    .await
    .expect("not every sender saw the expected outcome");
}

/// `/readyz` until it answers `status` (the store is probed on each request).
async fn readyz_becomes(server: &ServerProcess, status: u16) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if get(server.addr, "/readyz").await.0 == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz never answered {status}"));
}

/// The replay a fresh socket shows for `agent`'s chat, as texts.
async fn replay_of(server: &ServerProcess, agent: &str) -> Vec<String> {
    let mut ws = connect(&chat_url(server, agent)).await;
    replayed_messages(&mut ws)
        .await
        .into_iter()
        .map(|m: Value| m.as_str().unwrap().to_owned())
        .collect()
}

/// Every echoed message is replayed exactly once, in the order it was echoed, and nothing is
/// replayed that was not sent. A message whose connection to the store was cut while its write
/// was in flight may have been stored though its sender was told it was not (at most one per
/// sender and cut): that one may appear too.
fn assert_replay_holds(replay: &[String], seen: &Seen, cuts: usize) {
    let unique: HashSet<&String> = replay.iter().collect();
    assert_eq!(unique.len(), replay.len(), "a message was stored twice");
    let echoed: Vec<&String> = replay.iter().filter(|m| seen.echoed.contains(m)).collect();
    let want: Vec<&String> = seen.echoed.iter().collect();
    assert_eq!(echoed, want, "every echoed message is replayed, in order");
    let others: Vec<&String> = replay.iter().filter(|m| !seen.echoed.contains(m)).collect();
    assert!(
        others.iter().all(|m| seen.refused.contains(m)),
        "replayed messages that were never sent: {others:?}"
    );
    assert!(others.len() <= cuts, "refused yet stored: {others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_going_away_mid_load_refuses_sends_turns_unready_and_recovers_without_restart() {
    const SENDERS: usize = 3;
    let tables = dynamo_tables().await;
    let mut proxy = StoreProxy::start(moto_addr()).await;
    let server = dynamo_server(&tables, &proxy.endpoint());
    readyz_becomes(&server, 200).await;

    let mut load = Load::start(&server, 0, SENDERS);
    load.stores().await;

    proxy.down();
    load.is_refused(&server).await;

    proxy.up().await;
    load.recovers(&server, 0, 1).await;
}

/// `kill -9` under load: every echoed message is in the history after a restart, once.
async fn killed_under_load_keeps_every_echoed_message_once(kind: StoreKind) {
    const SENDERS: usize = 4;
    let tables = dynamo_tables().await;
    let endpoint = LocalDynamo::shared().unwrap().endpoint().to_owned();
    let env = dynamo_env(&tables, &endpoint);
    let env: &[(&str, &str)] = match kind {
        StoreKind::Dynamo => &env,
        StoreKind::Sqlite => &[UNLIMITED_RATE, UNLIMITED_BURST],
    };
    let server = ServerProcess::start_with(env);

    let mut load = Load::start(&server, 100, SENDERS);
    // Under load: every sender has had messages stored, and goes on sending.
    for _ in 0..5 {
        load.stores().await;
    }
    let status = std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Same tables, or same data directory.
    let restarted = server.kill_and_restart(env);

    // Each sender's socket ends mid-conversation; what it saw echoed up to then is recorded.
    let mut seen = Vec::new();
    for task in load.senders {
        let sender = task.await.unwrap();
        assert!(sender.refused.is_empty(), "no refusal before the kill");
        seen.push(sender);
    }

    for (n, seen) in seen.iter().enumerate() {
        let replay = replay_of(&restarted, &agent(100 + n)).await;
        // The message in flight at the kill may be stored without having been echoed.
        let unique: HashSet<&String> = replay.iter().collect();
        assert_eq!(unique.len(), replay.len(), "a message was stored twice");
        assert!(
            replay.len() == seen.echoed.len() || replay.len() == seen.echoed.len() + 1,
            "replay {} vs echoed {}",
            replay.len(),
            seen.echoed.len()
        );
        assert_eq!(replay[..seen.echoed.len()], seen.echoed[..]);
    }
}

crate::on_both_stores!(killed_under_load_keeps_every_echoed_message_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_slows_the_chat_loses_nothing_and_does_not_hold_up_other_chats_replays() {
    let tables = dynamo_tables().await;
    let proxy = StoreProxy::start(moto_addr()).await;
    let server = dynamo_server(&tables, &proxy.endpoint());
    let busy = agent(200);
    let quiet = agent(201);

    // The quiet chat has history, and a socket that keeps it registered.
    let mut quiet_ws = connect(&chat_url(&server, &quiet)).await;
    assert!(replayed_messages(&mut quiet_ws).await.is_empty());
    say(&mut quiet_ws, "agent", "quiet history").await;
    assert_eq!(next_json(&mut quiet_ws).await["message"], "quiet history");

    // Every store round trip now takes 100 ms more: the busy chat slows, and loses nothing.
    proxy.set_delay(Duration::from_millis(100));
    let mut busy_ws = connect(&chat_url(&server, &busy)).await;
    assert!(replayed_messages(&mut busy_ws).await.is_empty());
    let sent: Vec<String> = (0..5).map(|i| format!("slow {i}")).collect();
    for text in &sent {
        say(&mut busy_ws, "agent", text).await;
    }
    for text in &sent {
        assert_eq!(next_json(&mut busy_ws).await["message"], text.as_str());
    }
    assert_eq!(replay_of(&server, &busy).await, sent);

    // The busy chat's writes are held at the store; the quiet chat's replay still arrives.
    proxy.set_delay(Duration::ZERO);
    proxy.hold_writes(true);
    say(&mut busy_ws, "agent", "held").await;
    proxy.held_writes(1).await;
    assert_eq!(replay_of(&server, &quiet).await, ["quiet history"]);
    proxy.hold_writes(false);
    assert_eq!(next_json(&mut busy_ws).await["message"], "held");
    let mut all = sent.clone();
    all.push("held".to_owned());
    assert_eq!(replay_of(&server, &busy).await, all);
}

/// A file made immutable with `chattr +i` (which stops writes even by root, unlike `chmod`),
/// made writable again when dropped.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Self {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .expect("chattr (e2fsprogs) is needed to make a file unwritable as root");
        assert!(status.success(), "chattr +i {} failed", path.display());
        Self(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_turning_unwritable_mid_load_refuses_sends_turns_unready_and_recovers() {
    const SENDERS: usize = 3;
    let server = ServerProcess::start_with(&[UNLIMITED_RATE, UNLIMITED_BURST]);
    readyz_becomes(&server, 200).await;

    let mut load = Load::start(&server, 300, SENDERS);
    load.stores().await;

    // Every commit writes the write-ahead log first: with it immutable, no commit succeeds.
    let unwritable = Immutable::set(server.data_dir().join("jivachat.db-wal"));
    load.is_refused(&server).await;

    drop(unwritable);
    // A failed commit stores nothing of its batch: the replay is exactly what was echoed.
    load.recovers(&server, 300, 0).await;
}
