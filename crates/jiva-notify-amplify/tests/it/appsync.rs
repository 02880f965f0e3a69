//! A small HTTP server on 127.0.0.1:0 standing in for AppSync. It records every request as it
//! arrives (before answering), then answers from a script: a status and body, a hang that never
//! ends, or a wait on a gate the test opens. It can also be down (answer 500 to everything) until
//! the test brings it back or for a while after its first request, and it keeps count of the
//! requests in flight and of the notifications it created per `primaryID`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub api_key: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    /// When it arrived.
    pub arrived: Instant,
    /// Other requests in flight (arrived, not yet answered) when it arrived.
    pub others_in_flight: usize,
    /// When the stand-in last finished answering a request before this one arrived.
    pub last_answered: Option<Instant>,
}

impl Recorded {
    pub fn variables(&self) -> &Value {
        &self.body["variables"]
    }

    pub fn primary_id(&self) -> &str {
        self.body["variables"]["input"]["primaryID"]
            .as_str()
            .unwrap()
    }
}

/// How the stand-in answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with the created notification, echoing the input.
    Created,
    /// This status and JSON body.
    Status(u16, Value),
    /// Never answer.
    Hang,
    /// Wait for a permit of the gate, then answer `Created`.
    Gate(Arc<Semaphore>),
    /// 307 to the same endpoint: a client following it would POST here again.
    RedirectHere,
}

struct Inner {
    script: Mutex<VecDeque<Reply>>,
    otherwise: Reply,
    seen: mpsc::UnboundedSender<Recorded>,
    /// Answer 500 to everything while set.
    down: AtomicBool,
    /// Answer 500 to everything for this long after the first request.
    outage: Option<Duration>,
    outage_ends: OnceLock<Instant>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    last_answered: Mutex<Option<Instant>>,
    created: Mutex<HashMap<String, u32>>,
}

/// The running stand-in.
pub struct StandIn {
    pub url: String,
    requests: mpsc::UnboundedReceiver<Recorded>,
    inner: Arc<Inner>,
}

impl StandIn {
    /// Starts a stand-in that answers with `script` in order, then with `otherwise`.
    pub async fn start(script: Vec<Reply>, otherwise: Reply) -> Self {
        Self::start_with(script, otherwise, None).await
    }

    /// A stand-in that answers 500 to everything for `outage` after its first request, then
    /// creates every notification.
    pub async fn with_outage(outage: Duration) -> Self {
        Self::start_with(Vec::new(), Reply::Created, Some(outage)).await
    }

    async fn start_with(script: Vec<Reply>, otherwise: Reply, outage: Option<Duration>) -> Self {
        let (seen, requests) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            otherwise,
            seen,
            down: AtomicBool::new(false),
            outage,
            outage_ends: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            last_answered: Mutex::new(None),
            created: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/graphql", post(handle))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/graphql"),
            requests,
            inner,
        }
    }

    /// Takes the stand-in down (500 to everything) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// How many notifications were created (answered `Created`) per `primaryID`.
    pub fn created(&self) -> HashMap<String, u32> {
        self.inner.created.lock().unwrap().clone()
    }

    /// A stand-in that answers every request with `Created`.
    pub async fn ok() -> Self {
        Self::start(Vec::new(), Reply::Created).await
    }

    /// Waits for the next request to arrive.
    pub async fn next_request(&mut self) -> Recorded {
        self.requests.recv().await.unwrap()
    }

    /// Every request recorded so far and not yet taken.
    pub fn received(&mut self) -> Vec<Recorded> {
        let mut all = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            all.push(r);
        }
        all
    }
}

/// Counts a request in flight from its arrival until it is answered (or abandoned), and notes
/// when it was answered.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_answered.lock().unwrap() = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let last_answered = *inner.last_answered.lock().unwrap();
    let others_in_flight = inner.in_flight.fetch_add(1, Ordering::SeqCst);
    inner
        .max_in_flight
        .fetch_max(others_in_flight + 1, Ordering::SeqCst);
    let _in_flight = InFlight(Arc::clone(&inner));
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let body: Value = serde_json::from_slice(&body).unwrap();
    let input = body["variables"]["input"].clone();
    inner
        .seen
        .send(Recorded {
            api_key: text(header::HeaderName::from_static("x-api-key")),
            content_type: text(header::CONTENT_TYPE),
            body,
            arrived,
            others_in_flight,
            last_answered,
        })
        .unwrap();
    let outage = inner
        .outage
        .map(|length| *inner.outage_ends.get_or_init(|| arrived + length));
    if inner.down.load(Ordering::SeqCst) || outage.is_some_and(|ends| arrived < ends) {
        return json_response(500, json!({"message": "down"}));
    }
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| inner.otherwise.clone());
    match reply {
        Reply::Created => created(&inner, input),
        Reply::Status(status, body) => json_response(status, body),
        Reply::Hang => std::future::pending().await,
        Reply::RedirectHere => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, "/graphql")],
        )
            .into_response(),
        Reply::Gate(gate) => {
            gate.acquire().await.unwrap().forget();
            created(&inner, input)
        }
    }
}

fn created(inner: &Inner, input: Value) -> Response {
    if let Some(primary_id) = input["primaryID"].as_str() {
        *inner
            .created
            .lock()
            .unwrap()
            .entry(primary_id.to_owned())
            .or_default() += 1;
    }
    json_response(
        200,
        json!({"data": {"createNotification": {
            "id": "7d7c1c1e-0000-4000-8000-000000000001",
            "primaryID": input["primaryID"],
            "secondaryID": input["secondaryID"],
            "notification_type": input["notification_type"],
            "read": null,
            "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z",
            "__typename": "Notification"
        }}}),
    )
}

fn json_response(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An AppSync validation error, as AppSync sends it: status 200, `data` null, `errors` set.
pub fn validation_error() -> Reply {
    Reply::Status(
        200,
        json!({
            "data": {"createNotification": null},
            "errors": [{
                "path": ["createNotification"],
                "data": null,
                "errorType": "ValidationError",
                "errorInfo": null,
                "locations": [{"line": 2, "column": 3, "sourceName": null}],
                "message": "Validation error of type WrongType: argument 'input.notification_type' with value 'EnumValue{name='HUMAN'}' is not a valid 'NotificationType'"
            }]
        }),
    )
}
