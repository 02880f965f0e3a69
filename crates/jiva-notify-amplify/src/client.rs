//! One delivery: POST the mutation, classify the answer, retry what may pass.

use std::fmt;
use std::time::Instant;

use async_trait::async_trait;
use jiva_core::{Notification, NotifyError};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::config::{Config, RetryPolicy, SetupError};
use crate::graphql::{Mapping, ResponseData, request_body};
use crate::queue::Deliver;
use crate::retry::{self, Attempt, Outcome};

/// The longest piece of a server's error text kept in a reason.
const MAX_REASON_CHARS: usize = 200;

/// Sends notifications to AppSync, retrying transient failures.
///
/// [`AmplifyClient::deliver`] takes as long as its attempts and backoffs take, so it must not be
/// called on the chat path: hand the client to a [`NotificationQueue`](crate::NotificationQueue),
/// whose worker calls it. The client holds one shared HTTP connection pool; clone it freely.
#[derive(Clone)]
pub struct AmplifyClient {
    http: reqwest::Client,
    url: reqwest::Url,
    api_key: HeaderValue,
    mapping: Mapping,
    retry: RetryPolicy,
}

impl fmt::Debug for AmplifyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmplifyClient")
            .field("url", &self.url.as_str())
            .field("mapping", &self.mapping)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl AmplifyClient {
    /// Builds the client (and its HTTP connection pool) from `config`; fails with the first
    /// problem [`Config::problems`] reports.
    pub fn new(config: &Config) -> Result<Self, SetupError> {
        if let Some(problem) = config.problems().into_iter().next() {
            return Err(problem);
        }
        let url = reqwest::Url::parse(&config.api_url)
            .map_err(|_| SetupError::InvalidUrl("not an absolute URL"))?;
        let mut api_key = HeaderValue::from_str(config.api_key.expose()).map_err(|_| {
            SetupError::InvalidApiKey("it holds characters not allowed in an HTTP header")
        })?;
        api_key.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // AppSync does not redirect; following one would resend the key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SetupError::HttpClient)?;
        Ok(Self {
            http,
            url,
            api_key,
            mapping: Mapping {
                primary_id: config.primary_id,
                supervisor_spelling: config.supervisor_spelling,
            },
            retry: config.retry,
        })
    }

    /// The endpoint's host, for logs.
    pub(crate) fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// Delivers one notification, retrying transient failures with backoff as configured.
    ///
    /// Errors: [`NotifyError::Rejected`] when the service refused it (a GraphQL error, or a 4xx
    /// other than 429), [`NotifyError::Unavailable`] when every attempt failed transiently. The
    /// error is returned, not logged: whoever handles it logs it.
    pub async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
        let variables = self.mapping.variables(notification);
        let primary_id = variables.input.primary_id.clone();
        let body = serde_json::to_vec(&request_body(variables))
            .map_err(|e| NotifyError::Rejected(format!("could not encode the mutation: {e}")))?;
        let outcome = retry::run(&self.retry, retry::jitter_unit, |attempt| {
            self.attempt(&body, &primary_id, attempt)
        })
        .await;
        match outcome {
            Outcome::Delivered { .. } => Ok(()),
            Outcome::Rejected { reason, .. } => Err(NotifyError::Rejected(reason)),
            Outcome::GaveUp { reason, attempts } => {
                Err(NotifyError::Unavailable(Box::new(GaveUp {
                    reason,
                    attempts,
                })))
            }
        }
    }

    async fn attempt(&self, body: &[u8], primary_id: &str, attempt: u32) -> Attempt {
        let started = Instant::now();
        let sent = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-api-key", self.api_key.clone())
            .body(body.to_vec())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::Transient(describe_transport_error(&e)),
        };
        let status = response.status();
        let answer = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return Attempt::Transient(describe_transport_error(&e)),
        };
        let classified = classify(status, &answer);
        tracing::debug!(
            attempt,
            primary_id,
            status = status.as_u16(),
            request_bytes = body.len(),
            response_bytes = answer.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            notification_id = classified.created_id.as_deref(),
            "createNotification answered"
        );
        classified.attempt
    }
}

#[async_trait]
impl Deliver for AmplifyClient {
    async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
        AmplifyClient::deliver(self, notification).await
    }
}

/// Every attempt failed transiently.
#[derive(Debug)]
struct GaveUp {
    reason: String,
    attempts: u32,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {} attempts: {}",
            self.attempts, self.reason
        )
    }
}

impl std::error::Error for GaveUp {}

fn describe_transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "response body failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// An answer, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) attempt: Attempt,
    /// The `id` of the created notification, when the answer carried one.
    pub(crate) created_id: Option<String>,
}

/// The envelope of a GraphQL answer, read leniently: AppSync's error objects carry `errorType`
/// and do not always follow the spec's shape.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<Vec<serde_json::Value>>,
}

/// Success only when the status is 2xx and `errors` is absent or empty. GraphQL errors and 4xx
/// other than 429 are rejections; 5xx and 429 are transient.
pub(crate) fn classify(status: StatusCode, body: &[u8]) -> Classified {
    let envelope = serde_json::from_slice::<Envelope>(body).ok();
    let errors = envelope
        .as_ref()
        .and_then(|e| e.errors.as_deref())
        .unwrap_or_default();
    let attempt = if status.is_success() {
        match &envelope {
            None => Attempt::Rejected(format!(
                "HTTP {status} with a body that is not GraphQL JSON"
            )),
            Some(_) if !errors.is_empty() => Attempt::Rejected(summarize(errors)),
            Some(_) => Attempt::Delivered,
        }
    } else {
        let reason = if errors.is_empty() {
            format!("HTTP {}", status.as_u16())
        } else {
            format!("HTTP {}: {}", status.as_u16(), summarize(errors))
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Attempt::Transient(reason)
        } else {
            Attempt::Rejected(reason)
        }
    };
    let created_id = match (&attempt, envelope.and_then(|e| e.data)) {
        (Attempt::Delivered, Some(data)) => serde_json::from_value::<ResponseData>(data)
            .ok()
            .and_then(|d| d.create_notification)
            .map(|n| n.id),
        _ => None,
    };
    Classified {
        attempt,
        created_id,
    }
}

/// `errorType: message` of the first errors, each cut short.
fn summarize(errors: &[serde_json::Value]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .take(3)
        .map(|error| {
            let text = |key: &str| error.get(key).and_then(serde_json::Value::as_str);
            let message = text("message").unwrap_or("(no message)");
            let line = match text("errorType") {
                Some(kind) => format!("{kind}: {message}"),
                None => message.to_owned(),
            };
            line.chars().take(MAX_REASON_CHARS).collect()
        })
        .collect();
    let more = errors.len().saturating_sub(parts.len());
    if more > 0 {
        format!("{} (and {more} more)", parts.join("; "))
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classify_json(status: u16, body: serde_json::Value) -> Classified {
        classify(
            StatusCode::from_u16(status).unwrap(),
            body.to_string().as_bytes(),
        )
    }

    fn created() -> serde_json::Value {
        json!({"data": {"createNotification": {
            "id": "n-1", "primaryID": "a", "secondaryID": "supervisor",
            "notification_type": "AGENT", "read": null,
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
            "__typename": "Notification"
        }}})
    }

    #[test]
    fn ok_without_errors_is_delivered_and_yields_the_id() {
        let c = classify_json(200, created());
        assert_eq!(c.attempt, Attempt::Delivered);
        assert_eq!(c.created_id.as_deref(), Some("n-1"));
        let mut with_empty = created();
        with_empty["errors"] = json!([]);
        assert_eq!(classify_json(200, with_empty).attempt, Attempt::Delivered);
    }

    #[test]
    fn ok_with_errors_is_a_rejection_with_the_error_type() {
        let c = classify_json(
            200,
            json!({"data": {"createNotification": null}, "errors": [{
                "path": ["createNotification"], "errorType": "ValidationError",
                "message": "Invalid enum value HUMAN", "locations": [{"line": 1, "column": 2, "sourceName": null}]
            }]}),
        );
        assert_eq!(
            c.attempt,
            Attempt::Rejected("ValidationError: Invalid enum value HUMAN".into())
        );
        assert_eq!(c.created_id, None);
    }

    #[test]
    fn ok_with_a_body_that_is_not_json_is_a_rejection() {
        let c = classify(StatusCode::OK, b"<html>wrong endpoint</html>");
        assert!(matches!(c.attempt, Attempt::Rejected(_)), "{c:?}");
    }

    #[test]
    fn ok_with_unexpected_data_is_still_delivered() {
        let c = classify_json(200, json!({"data": {"createNotification": {"id": 7}}}));
        assert_eq!(c.attempt, Attempt::Delivered);
        assert_eq!(c.created_id, None);
    }

    #[test]
    fn server_errors_and_throttling_are_transient() {
        for status in [500, 502, 503, 504, 429] {
            let c = classify(StatusCode::from_u16(status).unwrap(), b"");
            assert_eq!(c.attempt, Attempt::Transient(format!("HTTP {status}")));
        }
    }

    #[test]
    fn client_errors_other_than_429_are_rejections() {
        let c = classify_json(
            401,
            json!({"errors": [{"errorType": "UnauthorizedException", "message": "You are not authorized"}]}),
        );
        assert_eq!(
            c.attempt,
            Attempt::Rejected("HTTP 401: UnauthorizedException: You are not authorized".into())
        );
        for status in [400, 403, 404, 413] {
            let c = classify(StatusCode::from_u16(status).unwrap(), b"{}");
            assert_eq!(c.attempt, Attempt::Rejected(format!("HTTP {status}")));
        }
    }

    #[test]
    fn redirects_are_rejections() {
        let c = classify(StatusCode::MOVED_PERMANENTLY, b"");
        assert!(matches!(c.attempt, Attempt::Rejected(_)));
    }

    #[test]
    fn long_and_many_errors_are_summarized_briefly() {
        let long = "x".repeat(1000);
        let errors: Vec<_> = (0..5).map(|_| json!({"message": long})).collect();
        let c = classify_json(200, json!({"errors": errors}));
        let Attempt::Rejected(reason) = c.attempt else {
            panic!("not rejected")
        };
        assert!(reason.len() < 3 * MAX_REASON_CHARS + 40, "{}", reason.len());
        assert!(reason.ends_with("(and 2 more)"), "{reason}");
    }

    #[test]
    fn debug_of_the_client_does_not_show_the_key() {
        let config = Config::new(
            "http://127.0.0.1:9/graphql",
            crate::ApiKey::new("da2-s3cr3t"),
        );
        let client = AmplifyClient::new(&config).unwrap();
        let shown = format!("{client:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
