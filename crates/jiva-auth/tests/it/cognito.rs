//! Cognito mode: RS256 tokens verified against a JWKS stand-in whose key set rotates.

use std::time::Duration;

use futures_util::future::join_all;

use jiva_auth::testing::{JwksStandIn, RsaKey, cognito_claims, hs256, unsigned};
use jiva_auth::{CognitoAuthenticator, CognitoConfig};
use jiva_core::{AuthError, Authenticator, UserRole};
use serde_json::{Value, json};

const AGENT: &str = "0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21";

fn config(stand_in: &JwksStandIn, min_refetch: Duration) -> CognitoConfig {
    let mut config = CognitoConfig::new("eu-west-1", "eu-west-1_TestPool", "test-client");
    config.jwks_url = Some(stand_in.url().to_owned());
    config.min_refetch_interval = min_refetch;
    config
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

async fn verify(auth: &CognitoAuthenticator, token: &str) -> Result<UserRole, AuthError> {
    auth.authenticate(Some(token))
        .await
        .map(|identity| identity.expect("an identity").role)
}

#[tokio::test]
async fn valid_id_and_access_tokens_are_accepted() {
    let key = RsaKey::generate("k1").unwrap();
    let stand_in = JwksStandIn::start(&[&key]).await.unwrap();
    let config = config(&stand_in, Duration::from_secs(30));
    let auth = CognitoAuthenticator::new(&config).unwrap();

    let id_token = cognito_claims(&config, AGENT, false, 3600);
    let identity = auth
        .authenticate(Some(&key.sign(&id_token).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.agent.as_str(), AGENT);
    assert_eq!(identity.role, UserRole::Agent);
    assert_eq!(identity.subject, format!("sub-{AGENT}"));
    // Accepted until `exp` plus the clock skew, and so its socket is closed then.
    assert_eq!(
        identity.expires_at.unwrap().secs(),
        id_token["exp"].as_i64().unwrap() + 60
    );

    let supervisor = cognito_claims(&config, AGENT, true, 3600);
    assert_eq!(
        verify(&auth, &key.sign(&supervisor).unwrap()).await,
        Ok(UserRole::Supervisor)
    );

    // An access token names the client in `client_id` and has no `aud`.
    let access = with(
        cognito_claims(&config, AGENT, false, 3600),
        json!({"token_use": "access", "aud": null, "client_id": "test-client"}),
    );
    assert_eq!(
        verify(&auth, &key.sign(&access).unwrap()).await,
        Ok(UserRole::Agent)
    );

    // Within the clock skew: expired 30 s ago, valid.
    let skewed = cognito_claims(&config, AGENT, false, -30);
    assert!(verify(&auth, &key.sign(&skewed).unwrap()).await.is_ok());
    // One fetch served all of them.
    assert_eq!(stand_in.requests(), 1);
}

#[tokio::test]
async fn each_bad_token_gets_its_documented_answer() {
    let key = RsaKey::generate("k1").unwrap();
    let stand_in = JwksStandIn::start(&[&key]).await.unwrap();
    let config = config(&stand_in, Duration::from_secs(3600));
    let auth = CognitoAuthenticator::new(&config).unwrap();
    assert!(auth.prefetch().await);
    let good = cognito_claims(&config, AGENT, false, 3600);
    let now = good["iat"].as_i64().unwrap() + 60;
    let sign = |claims: &Value| key.sign(claims).unwrap();

    let valid = sign(&good);
    let [header, _, signature] =
        <[&str; 3]>::try_from(valid.split('.').collect::<Vec<_>>()).unwrap();
    let tampered_payload = {
        use base64::Engine as _;
        let claims = with(good.clone(), json!({"cognito:groups": ["Supervisor"]}));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    };

    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "expired",
            sign(&cognito_claims(&config, AGENT, false, -120)),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            sign(&with(good.clone(), json!({"nbf": now + 120}))),
            AuthError::NotYetValid,
        ),
        (
            "nbf as a string (CVE-2026-25537)",
            sign(&with(good.clone(), json!({"nbf": (now + 120).to_string()}))),
            AuthError::Malformed,
        ),
        (
            "wrong issuer",
            sign(&with(
                good.clone(),
                json!({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"}),
            )),
            AuthError::WrongIssuer,
        ),
        (
            "no issuer",
            sign(&with(good.clone(), json!({"iss": null}))),
            AuthError::MissingClaim("iss".into()),
        ),
        (
            "no exp",
            sign(&with(good.clone(), json!({"exp": null}))),
            AuthError::MissingClaim("exp".into()),
        ),
        (
            "wrong audience",
            sign(&with(good.clone(), json!({"aud": "another-client"}))),
            AuthError::WrongAudience,
        ),
        (
            "access token of another client",
            sign(&with(
                good.clone(),
                json!({"token_use": "access", "aud": null, "client_id": "another-client"}),
            )),
            AuthError::WrongAudience,
        ),
        (
            "access token naming the client only in aud",
            sign(&with(good.clone(), json!({"token_use": "access"}))),
            AuthError::WrongAudience,
        ),
        (
            "wrong token_use",
            sign(&with(good.clone(), json!({"token_use": "refresh"}))),
            AuthError::WrongTokenUse,
        ),
        (
            "no token_use",
            sign(&with(good.clone(), json!({"token_use": null}))),
            AuthError::WrongTokenUse,
        ),
        (
            "no agent id",
            sign(&with(good.clone(), json!({"custom:profileId": null}))),
            AuthError::MissingClaim("custom:profileId".into()),
        ),
        (
            "alg none",
            unsigned(&json!({"alg": "none", "kid": "k1", "typ": "JWT"}), &good),
            AuthError::WrongAlgorithm,
        ),
        (
            "alg none, signature kept",
            format!(
                "{}{signature}",
                unsigned(&json!({"alg": "none", "kid": "k1"}), &good)
            ),
            AuthError::WrongAlgorithm,
        ),
        (
            "HS256 keyed with the public key (algorithm confusion)",
            hs256(
                key.public_key_der(),
                &json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}),
                &good,
            ),
            AuthError::WrongAlgorithm,
        ),
        (
            "RS256 header on an HMAC signature",
            hs256(
                key.public_key_der(),
                &json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}),
                &good,
            ),
            AuthError::BadSignature,
        ),
        (
            "tampered payload",
            format!("{header}.{tampered_payload}.{signature}"),
            AuthError::BadSignature,
        ),
        (
            "no kid",
            key.sign_with_header(&json!({"alg": "RS256"}), &good)
                .unwrap(),
            AuthError::UnknownKey,
        ),
        (
            "two parts",
            format!("{header}.{tampered_payload}"),
            AuthError::Malformed,
        ),
        ("garbage", "not.a.token".to_owned(), AuthError::Malformed),
    ];
    for (what, token, expected) in cases {
        assert_eq!(
            auth.authenticate(Some(&token)).await,
            Err(expected),
            "{what}"
        );
    }
    assert_eq!(auth.authenticate(None).await, Err(AuthError::Missing));
    // And the valid one still passes after all that.
    assert_eq!(verify(&auth, &valid).await, Ok(UserRole::Agent));
    // Only "no kid" could have asked for a refetch, and the interval forbids it.
    assert_eq!(stand_in.requests(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_without_a_restart() {
    let old = RsaKey::generate("old").unwrap();
    let new = RsaKey::generate("new").unwrap();
    let stand_in = JwksStandIn::start(&[&old]).await.unwrap();
    let config = config(&stand_in, Duration::ZERO);
    let auth = CognitoAuthenticator::new(&config).unwrap();
    let claims = cognito_claims(&config, AGENT, false, 3600);

    assert!(verify(&auth, &old.sign(&claims).unwrap()).await.is_ok());
    assert_eq!(stand_in.requests(), 1);
    // Signed with a key the pool does not publish yet: unknown, after one refetch.
    assert_eq!(
        verify(&auth, &new.sign(&claims).unwrap()).await,
        Err(AuthError::UnknownKey)
    );
    assert_eq!(stand_in.requests(), 2);

    // The pool rotates: the new key is published, the old one retired.
    stand_in.serve(&[&new]);
    assert_eq!(
        verify(&auth, &new.sign(&claims).unwrap()).await,
        Ok(UserRole::Agent)
    );
    assert_eq!(stand_in.requests(), 3);
    // The retired key is gone from the cache with the refetch.
    assert_eq!(
        verify(&auth, &old.sign(&claims).unwrap()).await,
        Err(AuthError::UnknownKey)
    );
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let key = RsaKey::generate("k1").unwrap();
    let later = RsaKey::generate("k2").unwrap();
    let stand_in = JwksStandIn::start(&[&key]).await.unwrap();
    let config = config(&stand_in, Duration::from_secs(3600));
    let auth = CognitoAuthenticator::new(&config).unwrap();
    let claims = cognito_claims(&config, AGENT, false, 3600);
    assert!(verify(&auth, &key.sign(&claims).unwrap()).await.is_ok());
    assert_eq!(stand_in.requests(), 1);

    // A flood of made-up kids, some at once: the first fetch was just now, so none fetches.
    let tokens: Vec<String> = (0..40)
        .map(|i| {
            key.sign_with_header(
                &json!({"alg": "RS256", "kid": format!("bogus-{i}")}),
                &claims,
            )
            .unwrap()
        })
        .collect();
    let answers = join_all(tokens.iter().map(|t| verify(&auth, t))).await;
    assert!(answers.iter().all(|a| *a == Err(AuthError::UnknownKey)));
    assert_eq!(stand_in.requests(), 1);

    // A rotation inside the interval is seen only after it: documented.
    stand_in.serve(&[&key, &later]);
    assert_eq!(
        verify(&auth, &later.sign(&claims).unwrap()).await,
        Err(AuthError::UnknownKey)
    );
    assert_eq!(stand_in.requests(), 1);
    // Known keys go on working meanwhile.
    assert!(verify(&auth, &key.sign(&claims).unwrap()).await.is_ok());
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_a_server_problem_not_a_bad_token() {
    let key = RsaKey::generate("k1").unwrap();
    let stand_in = JwksStandIn::start(&[&key]).await.unwrap();
    stand_in.fail(true);
    let config = config(&stand_in, Duration::ZERO);
    let auth = CognitoAuthenticator::new(&config).unwrap();
    assert!(!auth.prefetch().await);
    let token = key
        .sign(&cognito_claims(&config, AGENT, false, 3600))
        .unwrap();
    assert_eq!(
        auth.authenticate(Some(&token)).await,
        Err(AuthError::KeysUnavailable)
    );
    stand_in.fail(false);
    assert_eq!(verify(&auth, &token).await, Ok(UserRole::Agent));
}
