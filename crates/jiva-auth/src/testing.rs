//! Test support (cargo feature `testing`; enable it in dev-dependencies only).
//!
//! - [`RsaKey`]: a 2048-bit RSA key generated in the test (aws-lc-rs), its JWK, and tokens
//!   signed with it, including ones with a header of the test's choosing.
//! - [`unsigned`] and [`hs256`]: tokens an attacker would make (`alg: none`; HS256 keyed with
//!   whatever bytes, such as the RSA public key).
//! - [`JwksStandIn`]: a real HTTP server on `127.0.0.1:0` serving a key set that the test can
//!   change (rotation), make fail, and whose requests it counts.
//! - [`cognito_claims`]: the claims of a Cognito token for a pool configuration.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use jiva_auth::testing::{JwksStandIn, RsaKey, cognito_claims};
//! let key = RsaKey::generate("key-1")?;
//! let stand_in = JwksStandIn::start(&[&key]).await?;
//! let mut config = jiva_auth::CognitoConfig::new("eu-west-1", "eu-west-1_test", "client");
//! config.jwks_url = Some(stand_in.url().to_owned());
//! let token = key.sign(&cognito_claims(&config, "agent-1", false, 3600))?;
//! # let _ = token; Ok(()) }
//! ```
//!
//! Nothing here panics: failures come back as errors for the test to unwrap.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::error::Unspecified;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiva_core::Timestamp;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::CognitoConfig;

/// The path the stand-in serves its key set at.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.` with both parts base64url-encoded.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// An RSA signing key generated for a test.
pub struct RsaKey {
    kid: String,
    pair: KeyPair,
    n: String,
    e: String,
    public_der: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").field("kid", &self.kid).finish()
    }
}

impl RsaKey {
    /// A fresh 2048-bit key named `kid`.
    pub fn generate(kid: &str) -> Result<Self, Unspecified> {
        let pair = KeyPair::generate(KeySize::Rsa2048)?;
        let components = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let public_der = pair.public_key().as_der()?.as_ref().to_vec();
        Ok(Self {
            kid: kid.to_owned(),
            n: b64(&components.n),
            e: b64(&components.e),
            public_der,
            pair,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK, as Cognito publishes it.
    pub fn jwk(&self) -> Value {
        json!({"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig", "n": self.n, "e": self.e})
    }

    /// The public key, DER (SubjectPublicKeyInfo): what an attacker knows.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_der
    }

    /// An RS256 token of `claims` with the header `{"alg":"RS256","kid":…,"typ":"JWT"}`.
    pub fn sign(&self, claims: &Value) -> Result<String, Unspecified> {
        self.sign_with_header(
            &json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }

    /// A token of `claims` with `header` as given, signed RS256 with this key.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> Result<String, Unspecified> {
        let input = signing_input(header, claims);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )?;
        Ok(format!("{input}.{}", b64(&signature)))
    }
}

/// A token with `header` (say `{"alg":"none"}`) and no signature: `header.claims.`.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// A token of `claims` with `header`, its signature an HMAC-SHA256 keyed with `secret`.
pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// The claims of a Cognito id token for `config`'s pool and client: `agent` in the agent id
/// claim, the supervisor group when `supervisor`, valid from a minute ago for `ttl_secs`
/// seconds from now (negative: expired).
pub fn cognito_claims(
    config: &CognitoConfig,
    agent: &str,
    supervisor: bool,
    ttl_secs: i64,
) -> Value {
    let now = Timestamp::now().secs();
    let groups: Vec<&str> = if supervisor {
        vec![config.claims.supervisor_group.as_str()]
    } else {
        vec!["Agents"]
    };
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), json!(format!("sub-{agent}")));
    claims.insert("iss".into(), json!(config.issuer()));
    claims.insert("aud".into(), json!(config.client_id));
    claims.insert("token_use".into(), json!("id"));
    claims.insert("auth_time".into(), json!(now - 60));
    claims.insert("iat".into(), json!(now - 60));
    claims.insert("exp".into(), json!(now + ttl_secs));
    claims.insert(config.claims.agent_id.clone(), json!(agent));
    claims.insert(config.claims.groups.clone(), json!(groups));
    Value::Object(claims)
}

struct Served {
    keys: Mutex<Value>,
    requests: AtomicUsize,
    failing: AtomicBool,
}

/// A JWKS endpoint on loopback, standing in for a Cognito pool's.
pub struct JwksStandIn {
    url: String,
    served: Arc<Served>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for JwksStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStandIn")
            .field("url", &self.url)
            .finish()
    }
}

impl JwksStandIn {
    /// Starts serving `keys` at [`url`](Self::url).
    pub async fn start(keys: &[&RsaKey]) -> std::io::Result<Self> {
        let served = Arc::new(Served {
            keys: Mutex::new(key_set(keys)),
            requests: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}{JWKS_PATH}", listener.local_addr()?);
        let app = Router::new()
            .route(JWKS_PATH, get(serve_keys))
            .with_state(Arc::clone(&served));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, served, task })
    }

    /// The key set's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves `keys` from now on (a key rotation).
    pub fn serve(&self, keys: &[&RsaKey]) {
        *self
            .served
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = key_set(keys);
    }

    /// Answers 500 from now on (`true`) or serves keys again (`false`).
    pub fn fail(&self, failing: bool) {
        self.served.failing.store(failing, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.served.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key_set(keys: &[&RsaKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

async fn serve_keys(State(served): State<Arc<Served>>) -> Response {
    served.requests.fetch_add(1, Ordering::SeqCst);
    if served.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose\n").into_response();
    }
    let body = served
        .keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .to_string();
    ([("content-type", "application/json")], body).into_response()
}
