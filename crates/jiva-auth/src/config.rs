//! Plain configuration of the authenticators.

use std::fmt;
use std::time::Duration;

/// The shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// A shared HS256 secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(String);

impl JwtSecret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret's bytes, to sign or verify with.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(***)")
    }
}

/// Which claims carry the caller's agent id and groups, and which group makes a supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The claim holding the caller's agent id (a string). Default `custom:profileId`.
    pub agent_id: String,
    /// The claim holding the caller's groups (an array of strings, or one string). Default
    /// `cognito:groups`.
    pub groups: String,
    /// Members of this group are supervisors; everyone else is an agent. Default `Supervisor`.
    pub supervisor_group: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            agent_id: "custom:profileId".into(),
            groups: "cognito:groups".into(),
            supervisor_group: "Supervisor".into(),
        }
    }
}

impl ClaimNames {
    /// Every problem with these names, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (what, value) in [
            ("the agent id claim", &self.agent_id),
            ("the groups claim", &self.groups),
            ("the supervisor group", &self.supervisor_group),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{what} must not be empty"));
            }
        }
        problems
    }
}

/// HS256 tokens signed with a shared secret (development, tests, service clients).
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The shared secret, at least [`MIN_SECRET_BYTES`] long.
    pub secret: JwtSecret,
    /// Claim names.
    pub claims: ClaimNames,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl JwtConfig {
    /// Default claim names and a 60 s leeway.
    pub fn new(secret: JwtSecret) -> Self {
        Self {
            secret,
            claims: ClaimNames::default(),
            leeway: Duration::from_secs(60),
        }
    }

    /// Every problem with this configuration, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.claims.problems();
        if self.secret.expose().len() < MIN_SECRET_BYTES {
            problems.push(format!(
                "the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        problems
    }
}

/// RS256 tokens of an AWS Cognito user pool, verified against the pool's JWKS.
#[derive(Debug, Clone)]
pub struct CognitoConfig {
    /// The pool's AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// The user pool id, e.g. `eu-west-1_AbCdEf123`.
    pub user_pool_id: String,
    /// The app client id: `aud` of id tokens and `client_id` of access tokens must equal it.
    pub client_id: String,
    /// Where the keys come from; `None`: the pool's own
    /// `https://cognito-idp.{region}.amazonaws.com/{pool}/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// Claim names.
    pub claims: ClaimNames,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The key set is fetched again for an unknown `kid` at most this often.
    pub min_refetch_interval: Duration,
    /// The longest a key set fetch may take.
    pub fetch_timeout: Duration,
}

impl CognitoConfig {
    /// The pool `user_pool_id` in `region`, for the app client `client_id`, with defaults: keys
    /// from the pool, default claim names, 60 s leeway, a refetch at most every 30 s, 5 s fetch
    /// time-out.
    pub fn new(
        region: impl Into<String>,
        user_pool_id: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            region: region.into(),
            user_pool_id: user_pool_id.into(),
            client_id: client_id.into(),
            jwks_url: None,
            claims: ClaimNames::default(),
            leeway: Duration::from_secs(60),
            min_refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }

    /// `https://cognito-idp.{region}.amazonaws.com/{pool}`: what `iss` must be.
    pub fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.{}.amazonaws.com/{}",
            self.region, self.user_pool_id
        )
    }

    /// Where the key set is fetched from.
    pub fn jwks_url(&self) -> String {
        self.jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", self.issuer()))
    }

    /// Every problem with this configuration, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.claims.problems();
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        };
        if !plain(&self.region) {
            problems.push(format!("{:?} is not an AWS region", self.region));
        }
        if !plain(&self.user_pool_id) {
            problems.push(format!("{:?} is not a user pool id", self.user_pool_id));
        }
        if self.client_id.trim().is_empty() {
            problems.push("the app client id must not be empty".into());
        }
        if let Some(url) = &self.jwks_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
                _ => problems.push(format!("{url:?} is not an http(s) URL")),
            }
        }
        if self.fetch_timeout.is_zero() {
            problems.push("the key set fetch time-out must be positive".into());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_debug_prints() {
        let config = JwtConfig::new(JwtSecret::new("correct horse battery staple 1234"));
        assert!(!format!("{config:?}").contains("horse"));
        assert!(config.problems().is_empty());
        assert_eq!(
            JwtConfig::new(JwtSecret::new("short")).problems(),
            ["the JWT secret must be at least 32 bytes"]
        );
    }

    #[test]
    fn cognito_urls_follow_the_pool() {
        let config = CognitoConfig::new("eu-west-1", "eu-west-1_AbC123", "client");
        assert_eq!(
            config.issuer(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        assert_eq!(
            config.jwks_url(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert!(config.problems().is_empty());
    }

    #[test]
    fn every_cognito_problem_is_reported() {
        let mut config = CognitoConfig::new("eu west", "", " ");
        config.jwks_url = Some("ftp://x".into());
        config.claims.agent_id = String::new();
        assert_eq!(config.problems().len(), 5, "{:?}", config.problems());
    }
}
