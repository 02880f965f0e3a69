//! The Cognito pool's signing keys: fetched once, cached, fetched again when a token names an
//! unknown `kid`, at most once per `min_refetch_interval`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jiva_core::AuthError;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The largest key set accepted, in bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a key set fetch failed (logged by the cache, never shown to callers).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("request failed")]
    Http(#[from] reqwest::Error),
    #[error("answered with HTTP {0}")]
    Status(u16),
    #[error("larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JSON key set")]
    NotAKeySet,
}

/// The cached key set.
pub(crate) struct KeyCache {
    url: String,
    client: reqwest::Client,
    min_refetch_interval: Duration,
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    /// When the last fetch started; held while a fetch runs, so fetches never overlap and
    /// callers that waited see its result.
    last_fetch: Mutex<Option<Instant>>,
}

impl KeyCache {
    pub(crate) fn new(
        url: String,
        client: reqwest::Client,
        min_refetch_interval: Duration,
    ) -> Self {
        Self {
            url,
            client,
            min_refetch_interval,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
        }
    }

    /// The key `kid`, fetching the key set again if it is unknown and the last fetch is long
    /// enough ago. [`AuthError::UnknownKey`] when it is still unknown;
    /// [`AuthError::KeysUnavailable`] when no key set could ever be fetched.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let mut last = self.last_fetch.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let recent = last.is_some_and(|at| at.elapsed() < self.min_refetch_interval);
        if recent {
            metrics::counter!("jiva_jwks_refetches_limited_total").increment(1);
        } else {
            *last = Some(Instant::now());
            self.refresh().await;
        }
        drop(last);
        self.cached(kid).ok_or_else(|| {
            if self.is_empty() {
                AuthError::KeysUnavailable
            } else {
                AuthError::UnknownKey
            }
        })
    }

    /// Fetches the key set now (the first fetch, at start-up). Errors are logged and counted.
    pub(crate) async fn prefetch(&self) -> bool {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.refresh().await
    }

    /// Fetches the key set and, on success, replaces the cache with it (retired keys go).
    async fn refresh(&self) -> bool {
        match self.fetch().await {
            Ok(keys) => {
                metrics::counter!("jiva_jwks_fetches_total", "outcome" => "ok").increment(1);
                metrics::gauge!("jiva_jwks_keys").set(keys.len() as f64);
                tracing::info!(keys = keys.len(), url = %self.url, "signing keys fetched");
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
                true
            }
            Err(e) => {
                metrics::counter!("jiva_jwks_fetches_total", "outcome" => "error").increment(1);
                tracing::warn!(error = %e, url = %self.url, "fetching signing keys failed");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, FetchError> {
        let response = self.client.get(&self.url).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let body = response.bytes().await?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        parse_key_set(&body).ok_or(FetchError::NotAKeySet)
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    fn is_empty(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// The RS256 signing keys of a JWKS document, by `kid`. Keys of other types or uses, keys
/// without a `kid`, and entries that do not parse are skipped; `None` when the document is not
/// a key set at all.
fn parse_key_set(body: &[u8]) -> Option<HashMap<String, Arc<DecodingKey>>> {
    let document: Value = serde_json::from_slice(body).ok()?;
    let entries = document.get("keys")?.as_array()?;
    let mut keys = HashMap::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            continue;
        };
        let usable = matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
            && jwk
                .common
                .key_algorithm
                .is_none_or(|alg| alg == KeyAlgorithm::RS256)
            && jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature);
        let Some(kid) = jwk.common.key_id.clone().filter(|_| usable) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.insert(kid, Arc::new(key));
        }
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rs256_signing_keys_with_a_kid_are_kept() {
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "c", "alg": "RS512", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "d", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "oct", "kid": "e", "k": "c2VjcmV0"},
            {"kty": "what", "kid": "f"},
        ]});
        let keys = parse_key_set(body.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        assert!(parse_key_set(b"[]").is_none());
        assert!(parse_key_set(b"{\"keys\": 1}").is_none());
    }
}
