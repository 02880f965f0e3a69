//! `jwt` mode: HS256 with a shared secret, the algorithm pinned.

use std::time::Duration;

use jiva_auth::testing::{RsaKey, hs256, unsigned};
use jiva_auth::{HmacAuthenticator, JwtConfig, JwtSecret, issue_hs256};
use jiva_core::{AgentId, AuthError, Authenticator, Timestamp, UserRole};
use serde_json::json;

const SECRET: &str = "a shared secret of at least 32 bytes";

#[tokio::test]
async fn only_hs256_with_the_secret_and_live_claims_is_accepted() {
    let config = JwtConfig::new(JwtSecret::new(SECRET));
    let auth = HmacAuthenticator::new(&config);
    let now = Timestamp::now().secs();
    let claims = json!({"sub": "s", "exp": now + 600, "custom:profileId": "agent-1", "cognito:groups": ["Supervisor"]});
    let header = json!({"alg": "HS256", "typ": "JWT"});

    let good = hs256(SECRET.as_bytes(), &header, &claims);
    let identity = auth.authenticate(Some(&good)).await.unwrap().unwrap();
    assert_eq!(identity.role, UserRole::Supervisor);
    assert_eq!(identity.agent.as_str(), "agent-1");

    let rsa = RsaKey::generate("k").unwrap();
    let cases = [
        (
            "alg none",
            unsigned(&json!({"alg": "none"}), &claims),
            AuthError::WrongAlgorithm,
        ),
        (
            "RS256 token",
            rsa.sign_with_header(&json!({"alg": "RS256"}), &claims)
                .unwrap(),
            AuthError::WrongAlgorithm,
        ),
        (
            // Another HMAC named in the header, keyed with the secret: refused on the name
            // alone, the algorithm is pinned.
            "HS512 header with the secret",
            hs256(SECRET.as_bytes(), &json!({"alg": "HS512"}), &claims),
            AuthError::WrongAlgorithm,
        ),
        (
            "other secret",
            hs256(b"another secret of at least 32 bytes!", &header, &claims),
            AuthError::BadSignature,
        ),
        (
            "expired",
            hs256(
                SECRET.as_bytes(),
                &header,
                &json!({"exp": now - 120, "custom:profileId": "a"}),
            ),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            hs256(
                SECRET.as_bytes(),
                &header,
                &json!({"exp": now + 600, "nbf": now + 120, "custom:profileId": "a"}),
            ),
            AuthError::NotYetValid,
        ),
        (
            "no exp",
            hs256(
                SECRET.as_bytes(),
                &header,
                &json!({"custom:profileId": "a"}),
            ),
            AuthError::MissingClaim("exp".into()),
        ),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            auth.authenticate(Some(&token)).await,
            Err(expected),
            "{what}"
        );
    }
}

#[tokio::test]
async fn issued_tokens_use_the_configured_claim_names() {
    let mut config = JwtConfig::new(JwtSecret::new(SECRET));
    config.claims.agent_id = "agent".into();
    config.claims.groups = "roles".into();
    config.claims.supervisor_group = "boss".into();
    let auth = HmacAuthenticator::new(&config);
    let agent = AgentId::parse("agent-7").unwrap();
    let token = issue_hs256(
        &config.secret,
        &config.claims,
        &agent,
        UserRole::Supervisor,
        Duration::from_secs(3600),
    )
    .unwrap();
    let identity = auth.authenticate(Some(&token)).await.unwrap().unwrap();
    assert_eq!(
        (identity.agent, identity.role),
        (agent, UserRole::Supervisor)
    );
    // The default names find nothing in it.
    let defaults = HmacAuthenticator::new(&JwtConfig::new(JwtSecret::new(SECRET)));
    assert_eq!(
        defaults.authenticate(Some(&token)).await,
        Err(AuthError::MissingClaim("custom:profileId".into()))
    );
}
