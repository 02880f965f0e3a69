//! HS256 tokens signed with a shared secret.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{AgentId, AuthError, Authenticator, Identity, Timestamp, UserRole};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::claims::{self, Claims};
use crate::config::{ClaimNames, JwtConfig, JwtSecret};

/// Verifies HS256 tokens signed with the configured secret. Only HS256 is accepted, whatever
/// the token's header says; `exp` is required, `nbf` checked when present, both with the
/// configured leeway. `aud`, `iss` and `token_use` are not checked in this mode.
pub struct HmacAuthenticator {
    key: DecodingKey,
    validation: Validation,
    claims: ClaimNames,
    leeway: Duration,
}

impl std::fmt::Debug for HmacAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacAuthenticator")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl HmacAuthenticator {
    /// An authenticator for `config` (check [`JwtConfig::problems`] first).
    pub fn new(config: &JwtConfig) -> Self {
        crate::use_crypto_provider();
        Self {
            key: DecodingKey::from_secret(config.secret.expose()),
            validation: validation(Algorithm::HS256, config.leeway),
            claims: config.claims.clone(),
            leeway: config.leeway,
        }
    }
}

/// A validation pinned to `algorithm`: `exp` required, `nbf` checked, `aud` left to the caller.
pub(crate) fn validation(algorithm: Algorithm, leeway: Duration) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.leeway = leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
    validation
}

#[async_trait]
impl Authenticator for HmacAuthenticator {
    async fn authenticate(&self, token: Option<&str>) -> Result<Option<Identity>, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        if let Err(e) = jsonwebtoken::decode_header(token) {
            return Err(claims::header_error(token, &e));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| claims::auth_error(&e))?;
        claims::identity(&data.claims, &self.claims, self.leeway).map(Some)
    }
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The time to live does not fit a timestamp.
    #[error("the time to live is too long")]
    TtlTooLong,
    /// Signing failed.
    #[error("signing the token failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// An HS256 token for `agent` in `role`, valid from now for `ttl`, with the claim names of
/// `claims` (what `jivachat-server token` prints). Supervisors get `claims.groups` =
/// `[claims.supervisor_group]`, agents an empty list; `sub` is the agent id.
pub fn issue_hs256(
    secret: &JwtSecret,
    claims: &ClaimNames,
    agent: &AgentId,
    role: UserRole,
    ttl: Duration,
) -> Result<String, IssueError> {
    crate::use_crypto_provider();
    let now = Timestamp::now().secs();
    let ttl = i64::try_from(ttl.as_secs()).map_err(|_| IssueError::TtlTooLong)?;
    let exp = now.checked_add(ttl).ok_or(IssueError::TtlTooLong)?;
    let groups: Vec<&str> = match role {
        UserRole::Supervisor => vec![claims.supervisor_group.as_str()],
        UserRole::Agent => Vec::new(),
    };
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), json!(agent.as_str()));
    body.insert("iat".into(), json!(now));
    body.insert("exp".into(), json!(exp));
    body.insert(claims.agent_id.clone(), json!(agent.as_str()));
    body.insert(claims.groups.clone(), json!(groups));
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Value::Object(body),
        &EncodingKey::from_secret(secret.expose()),
    )
    .map_err(IssueError::Signing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JwtConfig {
        JwtConfig::new(JwtSecret::new("0123456789abcdef0123456789abcdef"))
    }

    #[tokio::test]
    async fn an_issued_token_verifies_with_its_role() {
        let config = config();
        let auth = HmacAuthenticator::new(&config);
        let agent = AgentId::parse("a-1").unwrap();
        for role in [UserRole::Agent, UserRole::Supervisor] {
            let token = issue_hs256(
                &config.secret,
                &config.claims,
                &agent,
                role,
                Duration::from_secs(60),
            )
            .unwrap();
            let identity = auth.authenticate(Some(&token)).await.unwrap().unwrap();
            assert_eq!(identity.role, role);
            assert_eq!(identity.agent, agent);
            assert!(identity.expires_at.unwrap() > Timestamp::now());
        }
    }

    #[tokio::test]
    async fn a_token_of_another_secret_or_none_is_refused() {
        let auth = HmacAuthenticator::new(&config());
        let other = JwtSecret::new("another secret, also 32 bytes long!");
        let token = issue_hs256(
            &other,
            &ClaimNames::default(),
            &AgentId::parse("a").unwrap(),
            UserRole::Agent,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            auth.authenticate(Some(&token)).await,
            Err(AuthError::BadSignature)
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("not a token")).await,
            Err(AuthError::Malformed)
        );
        assert!(!format!("{auth:?}").contains("0123456789"));
    }
}
