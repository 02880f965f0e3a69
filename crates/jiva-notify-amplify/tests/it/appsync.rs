//! A small HTTP server on 127.0.0.1:0 standing in for AppSync. It records every request as it
//! arrives (before answering), then answers from a script: a status and body, a hang that never
//! ends, or a wait on a gate the test opens.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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
}

/// The running stand-in.
pub struct StandIn {
    pub url: String,
    requests: mpsc::UnboundedReceiver<Recorded>,
}

impl StandIn {
    /// Starts a stand-in that answers with `script` in order, then with `otherwise`.
    pub async fn start(script: Vec<Reply>, otherwise: Reply) -> Self {
        let (seen, requests) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            script: Mutex::new(script.into()),
            otherwise,
            seen,
        });
        let app = Router::new()
            .route("/graphql", post(handle))
            .with_state(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/graphql"),
            requests,
        }
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

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let body: Value = serde_json::from_slice(&body).unwrap();
    let input = body["variables"]["input"].clone();
    inner
        .seen
        .send(Recorded {
            api_key: text(header::HeaderName::from_static("x-api-key")),
            content_type: text(header::CONTENT_TYPE),
            body,
        })
        .unwrap();
    let reply = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| inner.otherwise.clone());
    match reply {
        Reply::Created => created(input),
        Reply::Status(status, body) => json_response(status, body),
        Reply::Hang => std::future::pending().await,
        Reply::RedirectHere => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, "/graphql")],
        )
            .into_response(),
        Reply::Gate(gate) => {
            gate.acquire().await.unwrap().forget();
            created(input)
        }
    }
}

fn created(input: Value) -> Response {
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
