//! From verified claims to an [`Identity`], and from `jsonwebtoken` errors to [`AuthError`].

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiva_core::{AgentId, AuthError, Identity, Timestamp, UserRole};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use serde_json::{Map, Value};

use crate::config::ClaimNames;

/// The claims of a token, as verified (names are configurable, so no fixed struct).
pub(crate) type Claims = Map<String, Value>;

/// The caller the verified `claims` describe. Its `expires_at` is `exp` plus `leeway`: the
/// moment the token stops being accepted here, so that a socket is closed exactly when a new
/// one with the same token would be refused.
pub(crate) fn identity(
    claims: &Claims,
    names: &ClaimNames,
    leeway: Duration,
) -> Result<Identity, AuthError> {
    let missing = |name: &str| AuthError::MissingClaim(name.to_owned());
    let agent = claims
        .get(&names.agent_id)
        .and_then(Value::as_str)
        .and_then(|id| AgentId::parse(id).ok())
        .ok_or_else(|| missing(&names.agent_id))?;
    let supervisor = match claims.get(&names.groups) {
        None | Some(Value::Null) => false,
        Some(Value::String(group)) => group == &names.supervisor_group,
        Some(Value::Array(groups)) => groups
            .iter()
            .any(|g| g.as_str() == Some(names.supervisor_group.as_str())),
        Some(_) => return Err(missing(&names.groups)),
    };
    let expires_at = claims.get("exp").and_then(Value::as_i64).map(|secs| {
        let leeway = i64::try_from(leeway.as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_millis(secs.saturating_mul(1000).saturating_add(leeway))
    });
    Ok(Identity {
        agent,
        role: if supervisor {
            UserRole::Supervisor
        } else {
            UserRole::Agent
        },
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        expires_at,
    })
}

/// The caller-facing reason for a verification failure.
pub(crate) fn auth_error(error: &JwtError) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidClaimFormat(_) => AuthError::Malformed,
        // Anything else (a key the crypto backend refused, ...) means the token could not be
        // verified: it is not let in.
        _ => AuthError::BadSignature,
    }
}

/// Why a token's header could not be read. `alg: none` (and any name `jsonwebtoken` does not
/// know) fails here, before any key is looked at; it is reported as a refused algorithm rather
/// than a malformed token. This only picks the reason: the algorithm used to verify is always
/// the configured one.
pub(crate) fn header_error(token: &str, error: &JwtError) -> AuthError {
    let alg_named = token
        .split('.')
        .next()
        .and_then(|segment| URL_SAFE_NO_PAD.decode(segment).ok())
        .and_then(|bytes| serde_json::from_slice::<Claims>(&bytes).ok())
        .is_some_and(|header| header.get("alg").is_some_and(Value::is_string));
    if alg_named && matches!(error.kind(), ErrorKind::Json(_)) {
        AuthError::WrongAlgorithm
    } else {
        AuthError::Malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn roles_come_from_the_groups_claim() {
        let names = ClaimNames::default();
        let cases = [
            (json!(["Supervisor"]), UserRole::Supervisor),
            (json!(["Agents", "Supervisor"]), UserRole::Supervisor),
            (json!("Supervisor"), UserRole::Supervisor),
            (json!(["supervisor"]), UserRole::Agent),
            (json!([]), UserRole::Agent),
            (Value::Null, UserRole::Agent),
        ];
        for (groups, role) in cases {
            let c = claims(
                json!({"custom:profileId": "a-1", "cognito:groups": groups, "exp": 10, "sub": "s"}),
            );
            let id = identity(&c, &names, Duration::from_secs(2)).unwrap();
            assert_eq!(id.role, role, "{groups}");
            assert_eq!(id.agent.as_str(), "a-1");
            assert_eq!(id.subject, "s");
            assert_eq!(id.expires_at, Some(Timestamp::from_millis(12_000)));
        }
    }

    #[test]
    fn a_missing_or_bad_agent_id_is_refused() {
        let names = ClaimNames::default();
        for c in [
            json!({}),
            json!({"custom:profileId": 7}),
            json!({"custom:profileId": "a b"}),
            json!({"custom:profileId": "a", "cognito:groups": 3}),
        ] {
            assert!(
                matches!(
                    identity(&claims(c.clone()), &names, Duration::ZERO),
                    Err(AuthError::MissingClaim(_))
                ),
                "{c}"
            );
        }
    }
}
