//! RS256 tokens of an AWS Cognito user pool.

use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{AuthError, Authenticator, Identity};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::claims::{self, Claims};
use crate::config::{ClaimNames, CognitoConfig};
use crate::hmac::validation;
use crate::jwks::KeyCache;

/// Why a [`CognitoAuthenticator`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The HTTP client for the key set could not be built.
    #[error("building the HTTP client for the signing keys failed")]
    Client(#[source] reqwest::Error),
}

/// Verifies the id and access tokens of one Cognito user pool and app client:
///
/// - the signature, with RS256 only (pinned: the header's `alg` never chooses), by the pool key
///   named by the header's `kid`, from the cached JWKS (fetched again for an unknown `kid`, at
///   most once per [`CognitoConfig::min_refetch_interval`]);
/// - `iss` equal to the pool's issuer; `exp` required and `nbf` checked, both with
///   [`CognitoConfig::leeway`];
/// - `token_use` `id` (then `aud` must be the app client id) or `access` (then `client_id`
///   must be); any other `token_use` is refused.
///
/// Cognito puts custom attributes (the default agent id claim, `custom:profileId`) in id tokens
/// only; an access token passes only if its claims carry the configured agent id claim.
pub struct CognitoAuthenticator {
    keys: KeyCache,
    validation: Validation,
    client_id: String,
    claims: ClaimNames,
    leeway: Duration,
}

impl std::fmt::Debug for CognitoAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoAuthenticator")
            .field("client_id", &self.client_id)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl CognitoAuthenticator {
    /// An authenticator for `config` (check [`CognitoConfig::problems`] first). No key is
    /// fetched yet: call [`prefetch`](Self::prefetch), or the first token fetches them.
    pub fn new(config: &CognitoConfig) -> Result<Self, BuildError> {
        crate::use_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .connect_timeout(config.fetch_timeout)
            .build()
            .map_err(BuildError::Client)?;
        let mut validation = validation(Algorithm::RS256, config.leeway);
        validation.set_issuer(&[config.issuer()]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        Ok(Self {
            keys: KeyCache::new(config.jwks_url(), client, config.min_refetch_interval),
            validation,
            client_id: config.client_id.clone(),
            claims: config.claims.clone(),
            leeway: config.leeway,
        })
    }

    /// Fetches the signing keys now; false (logged) when that failed. A server calls it at
    /// start-up so that the first caller does not wait for the fetch.
    pub async fn prefetch(&self) -> bool {
        self.keys.prefetch().await
    }

    fn check_audience(&self, claims: &Claims) -> Result<(), AuthError> {
        let field = match claims.get("token_use").and_then(Value::as_str) {
            Some("id") => "aud",
            Some("access") => "client_id",
            _ => return Err(AuthError::WrongTokenUse),
        };
        let matches = match claims.get(field) {
            Some(Value::String(s)) => s == &self.client_id,
            Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(&self.client_id)),
            _ => false,
        };
        if matches {
            Ok(())
        } else {
            Err(AuthError::WrongAudience)
        }
    }
}

#[async_trait]
impl Authenticator for CognitoAuthenticator {
    async fn authenticate(&self, token: Option<&str>) -> Result<Option<Identity>, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| claims::header_error(token, &e))?;
        // The algorithm is pinned: a header naming another one is refused before any key is
        // looked up (so it cannot make the key set be fetched), and `validation` allows RS256
        // only. Otherwise only the key id is read from the header.
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.keys.key(&kid).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| claims::auth_error(&e))?;
        self.check_audience(&data.claims)?;
        claims::identity(&data.claims, &self.claims, self.leeway).map(Some)
    }
}
