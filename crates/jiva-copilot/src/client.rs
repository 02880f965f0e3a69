//! The HTTP side of a copilot call: request, status, time limits, and the streamed body.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{ChunkStream, Copilot, CopilotChunk, CopilotError, CopilotRequest, TimeoutKind};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::time::Instant;

use crate::config::{Config, ConfigError, redacted};
use crate::decode::{ChunkDecoder, DecodeError};
use crate::wire::WireRequest;

/// At most this much of an error answer's body is read (and dropped), so the connection can be
/// reused without reading an unbounded body.
const ERROR_BODY_LIMIT: usize = 8 * 1024;

/// At most this long is spent reading an error answer's body.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(1);

/// What the client announces it can decode.
const ACCEPTED: &str = "application/json, application/x-ndjson, text/event-stream";

/// The [`Copilot`] port over HTTP: POSTs the question to the configured endpoint and streams the
/// decoded answer.
///
/// Cheap to share: hold it as `Arc<dyn Copilot>`; all calls use one connection pool.
///
/// [`ask`](Copilot::ask) resolves when the first chunk is decoded (or the answer ends or fails
/// before one), so every error before the first chunk is its `Err`; after that, errors are the
/// stream's last item. Failures map to [`CopilotError`] as follows:
///
/// | what happened | error |
/// | --- | --- |
/// | connection refused or reset, DNS failure, TLS failure | [`CopilotError::Unavailable`] |
/// | connecting took longer than `connect_timeout` | [`CopilotError::Timeout`]`(Connect)` |
/// | no response headers and body byte within `first_byte_timeout` of sending | [`CopilotError::Timeout`]`(FirstByte)` |
/// | non-2xx status (redirects are not followed) | [`CopilotError::Status`] |
/// | silence longer than `idle_timeout` between body pieces | [`CopilotError::Timeout`]`(Idle)` |
/// | body ended or broke off inside an object | [`CopilotError::Truncated`] |
/// | bytes that are not a JSON object stream | [`CopilotError::Decode`] |
/// | one object larger than `max_object_bytes` | [`CopilotError::TooLarge`] |
#[derive(Clone)]
pub struct HttpCopilot {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_object_bytes: usize,
}

impl HttpCopilot {
    /// Checks `config` (every problem at once) and builds the shared HTTP client.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        let endpoint = reqwest::Url::parse(&config.endpoint).map_err(|e| {
            ConfigError::Invalid(vec![format!("copilot endpoint: not a URL ({e})")])
        })?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            // The library never reads the environment, so no HTTP_PROXY and friends.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ConfigError::Client(Box::new(e)))?;
        Ok(Self {
            client,
            endpoint,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.idle_timeout,
            max_object_bytes: config.max_object_bytes,
        })
    }
}

impl std::fmt::Debug for HttpCopilot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCopilot")
            .field("endpoint", &redacted(&self.endpoint))
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_object_bytes", &self.max_object_bytes)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Copilot for HttpCopilot {
    async fn ask(&self, request: CopilotRequest) -> Result<ChunkStream, CopilotError> {
        let body = serde_json::to_vec(&WireRequest::from_request(&request))
            .map_err(|e| CopilotError::Unavailable(Box::new(e)))?;
        tracing::debug!(
            chat = %request.chat,
            request_bytes = body.len(),
            history_turns = request.history.len(),
            "asking the copilot"
        );
        let first_byte_deadline = Instant::now() + self.first_byte_timeout;
        let send = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, ACCEPTED)
            .body(body)
            .send();
        let response = match tokio::time::timeout_at(first_byte_deadline, send).await {
            Err(_elapsed) => return Err(CopilotError::Timeout(TimeoutKind::FirstByte)),
            Ok(Err(e)) => return Err(send_error(e)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            tracing::debug!(status = status.as_u16(), "the copilot refused the question");
            drain(response).await;
            return Err(CopilotError::Status(status.as_u16()));
        }
        let mut body = BodyReader {
            response,
            decoder: Some(ChunkDecoder::new(self.max_object_bytes)),
            pending: VecDeque::new(),
            first_byte_deadline: Some(first_byte_deadline),
            idle_timeout: self.idle_timeout,
            finished: false,
        };
        match body.next().await {
            None => Ok(Box::pin(futures_util::stream::empty())),
            Some(Err(e)) => Err(e),
            Some(Ok(first)) => {
                body.pending.push_front(Ok(first));
                Ok(Box::pin(futures_util::stream::unfold(
                    body,
                    |mut body| async move { body.next().await.map(|item| (item, body)) },
                )))
            }
        }
    }
}

/// Translates a failure to get response headers. The URL is left out of the error, since an
/// endpoint may carry a key in its query.
fn send_error(error: reqwest::Error) -> CopilotError {
    let error = error.without_url();
    if error.is_connect() {
        if error.is_timeout() {
            CopilotError::Timeout(TimeoutKind::Connect)
        } else {
            CopilotError::Unavailable(Box::new(error))
        }
    } else if error.is_timeout() {
        CopilotError::Timeout(TimeoutKind::FirstByte)
    } else {
        CopilotError::Unavailable(Box::new(error))
    }
}

/// Reads and drops a bounded part of an error answer's body, for a bounded time.
async fn drain(mut response: reqwest::Response) {
    let read = async {
        let mut read = 0usize;
        while read < ERROR_BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(bytes)) => read = read.saturating_add(bytes.len()),
                Ok(None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_WAIT, read).await;
}

/// The streamed body, decoded one item at a time.
struct BodyReader {
    response: reqwest::Response,
    /// `None` once the body has ended (or `[DONE]` or an error was seen).
    decoder: Option<ChunkDecoder>,
    /// Decoded items not yet handed out.
    pending: VecDeque<Result<CopilotChunk, DecodeError>>,
    /// Until the first body byte, the first-byte deadline applies instead of the idle limit.
    first_byte_deadline: Option<Instant>,
    idle_timeout: Duration,
    /// Nothing more is read from the body.
    finished: bool,
}

impl BodyReader {
    /// The next chunk, or the error that ends the stream, or `None` after the end.
    async fn next(&mut self) -> Option<Result<CopilotChunk, CopilotError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_err() {
                    self.end();
                }
                return Some(item.map_err(CopilotError::from));
            }
            if self.finished {
                return None;
            }
            let read = match self.first_byte_deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.response.chunk())
                    .await
                    .map_err(|_| TimeoutKind::FirstByte),
                None => tokio::time::timeout(self.idle_timeout, self.response.chunk())
                    .await
                    .map_err(|_| TimeoutKind::Idle),
            };
            match read {
                Err(kind) => {
                    self.end();
                    tracing::debug!(?kind, "the copilot went silent");
                    return Some(Err(CopilotError::Timeout(kind)));
                }
                Ok(Ok(Some(bytes))) => {
                    if !bytes.is_empty() {
                        self.first_byte_deadline = None;
                    }
                    if let Some(decoder) = self.decoder.as_mut() {
                        self.pending.extend(decoder.push(&bytes));
                        if decoder.is_done() {
                            // `[DONE]` or an error: the rest of the body is not wanted.
                            self.decoder = None;
                            self.finished = true;
                        }
                    }
                }
                Ok(Ok(None)) => {
                    self.finished = true;
                    if let Some(decoder) = self.decoder.take() {
                        self.pending.extend(decoder.finish());
                    }
                }
                Ok(Err(e)) => {
                    // The connection broke off before the body's proper end.
                    tracing::debug!(error = %e, "the copilot's answer broke off");
                    self.finished = true;
                    if let Some(decoder) = self.decoder.take() {
                        self.pending
                            .extend(decoder.finish().into_iter().filter(Result::is_ok));
                    }
                    self.pending.push_back(Err(DecodeError::Truncated));
                }
            }
        }
    }

    fn end(&mut self) {
        self.finished = true;
        self.decoder = None;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_endpoint_secrets() {
        let copilot =
            HttpCopilot::new(Config::new("http://u:hunter2@127.0.0.1:1/x?key=s3cret")).unwrap();
        let shown = format!("{copilot:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn an_invalid_config_builds_no_client() {
        let err = HttpCopilot::new(Config::new("mailto:x@example.invalid")).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(p) if !p.is_empty()));
    }
}
