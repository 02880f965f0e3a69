//! The authentication flags (`--auth`, `--jwt-secret`, `--cognito-*`, claim names, allowed
//! origins) and the `token` command: validated with the rest of the configuration, and the
//! concrete [`Authenticator`] they choose.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jiva_auth::{ClaimNames, CognitoAuthenticator, CognitoConfig, HmacAuthenticator, JwtConfig};
use jiva_core::{AgentId, Authenticator, NoAuth, UserRole};

use crate::config::{Args, AuthChoice, Command, Config, TokenRequest};

/// Reads the authentication flags of `args` into `config`; one message per problem.
pub(crate) fn from_args(args: &Args, config: &mut Config, problems: &mut Vec<String>) {
    let claims = ClaimNames {
        agent_id: args.claim_agent_id.clone(),
        groups: args.claim_groups.clone(),
        supervisor_group: args.supervisor_group.clone(),
    };
    let claim_problems = claims.problems();
    problems.extend(
        claim_problems
            .iter()
            .map(|p| format!("--claim-agent-id / --claim-groups / --supervisor-group: {p}")),
    );
    let seconds = |problems: &mut Vec<String>, name: &str, raw: &str| {
        raw.parse::<u64>()
            .map(Duration::from_secs)
            .unwrap_or_else(|_| {
                problems.push(format!("{name}: {raw:?} is not a whole number of seconds"));
                Duration::ZERO
            })
    };
    let leeway = seconds(
        problems,
        "--auth-leeway-secs / JIVA_AUTH_LEEWAY_SECS",
        &args.auth_leeway_secs,
    );
    let refetch = seconds(
        problems,
        "--jwks-refetch-secs / JIVA_JWKS_REFETCH_SECS",
        &args.jwks_refetch_secs,
    );
    let secret = args.jwt_secret.clone().filter(|s| !s.expose().is_empty());
    config.jwt_secret = secret.clone();
    config.claims = claims.clone();
    let secret_problems = |problems: &mut Vec<String>, secret: &jiva_auth::JwtSecret| {
        let mut jwt = JwtConfig::new(secret.clone());
        jwt.claims = claims.clone();
        jwt.leeway = leeway;
        // Problems with the claim names are reported once, above.
        for p in jwt.problems() {
            if !claim_problems.contains(&p) {
                problems.push(format!("--jwt-secret / JIVA_JWT_SECRET: {p}"));
            }
        }
        jwt
    };

    match args.auth.as_str() {
        "none" => config.auth = AuthChoice::None,
        "jwt" => match &secret {
            Some(secret) => config.auth = AuthChoice::Jwt(secret_problems(problems, secret)),
            None => {
                problems.push("--jwt-secret / JIVA_JWT_SECRET: required with --auth jwt".into())
            }
        },
        "cognito" => {
            let mut required = |flag: &str, value: &Option<String>| {
                let value = value.clone().filter(|v| !v.trim().is_empty());
                if value.is_none() {
                    problems.push(format!("{flag}: required with --auth cognito"));
                }
                value
            };
            let region = required(
                "--cognito-region / JIVA_COGNITO_REGION",
                &args.cognito_region,
            );
            let pool = required(
                "--cognito-user-pool-id / JIVA_COGNITO_USER_POOL_ID",
                &args.cognito_user_pool_id,
            );
            let client = required(
                "--cognito-client-id / JIVA_COGNITO_CLIENT_ID",
                &args.cognito_client_id,
            );
            if let (Some(region), Some(pool), Some(client)) = (region, pool, client) {
                let mut cognito = CognitoConfig::new(region, pool, client);
                cognito.jwks_url = args.jwks_url.clone().filter(|u| !u.trim().is_empty());
                cognito.claims = claims.clone();
                cognito.leeway = leeway;
                cognito.min_refetch_interval = refetch;
                for p in cognito.problems() {
                    if !claim_problems.contains(&p) {
                        problems.push(format!("--auth cognito: {p}"));
                    }
                }
                config.auth = AuthChoice::Cognito(Box::new(cognito));
            }
        }
        other => problems.push(format!(
            "--auth / JIVA_AUTH: {other:?} is not none, jwt or cognito"
        )),
    }

    if let Some(origins) = &args.allowed_origins {
        for origin in origins.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if valid_origin(origin) {
                config.transport.allowed_origins.push(origin.to_owned());
            } else {
                problems.push(format!(
                    "--allowed-origins / JIVA_ALLOWED_ORIGINS: {origin:?} is not an origin like https://chat.example.com"
                ));
            }
        }
    }

    if let Command::Token(token) = &config.command {
        match &secret {
            // With --auth jwt its problems are reported already.
            Some(secret) if !matches!(config.auth, AuthChoice::Jwt(_)) => {
                secret_problems(problems, secret);
            }
            Some(_) => {}
            None => problems
                .push("--jwt-secret / JIVA_JWT_SECRET: required by the token command".into()),
        }
        let agent = AgentId::parse(&token.agent)
            .map_err(|e| problems.push(format!("token --agent: {e}")))
            .ok();
        let role = match token.role.as_str() {
            "agent" => Some(UserRole::Agent),
            "supervisor" => Some(UserRole::Supervisor),
            other => {
                problems.push(format!(
                    "token --role: {other:?} is not agent or supervisor"
                ));
                None
            }
        };
        let ttl = parse_ttl(&token.ttl)
            .map_err(|()| {
                problems.push(format!(
                    "token --ttl: {:?} is not a duration like 90s, 30m, 1h or 1d",
                    token.ttl
                ))
            })
            .ok();
        if let (Some(agent), Some(role), Some(ttl)) = (agent, role, ttl) {
            config.token = Some(TokenRequest { agent, role, ttl });
        }
    }
}

/// Whether `origin` is `http(s)://host[:port]`, with no path, query or fragment.
fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// `90s`, `30m`, `1h`, `1d`, or a plain number of seconds; positive.
fn parse_ttl(raw: &str) -> Result<Duration, ()> {
    let raw = raw.trim();
    let (number, unit) = match raw.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (raw.get(..i).ok_or(())?, c),
        _ => (raw, 's'),
    };
    let n: u64 = number.parse().map_err(|_| ())?;
    let secs = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86_400),
        _ => None,
    };
    secs.filter(|s| *s > 0).map(Duration::from_secs).ok_or(())
}

/// The authenticator `config` chooses. With Cognito, the signing keys are fetched now (a
/// failure is logged and retried on the first token).
pub(crate) async fn authenticator(config: &Config) -> anyhow::Result<Arc<dyn Authenticator>> {
    Ok(match &config.auth {
        AuthChoice::None => {
            tracing::info!(
                auth = "none",
                "authentication off: anyone who reaches the listener may open any chat"
            );
            Arc::new(NoAuth)
        }
        AuthChoice::Jwt(jwt) => {
            tracing::info!(auth = "jwt", "callers must present an HS256 token");
            Arc::new(HmacAuthenticator::new(jwt))
        }
        AuthChoice::Cognito(cognito) => {
            let authenticator = CognitoAuthenticator::new(cognito)
                .context("setting up Cognito token verification")?;
            tracing::info!(
                auth = "cognito",
                issuer = %cognito.issuer(),
                jwks = %cognito.jwks_url(),
                "callers must present a Cognito token"
            );
            authenticator.prefetch().await;
            Arc::new(authenticator)
        }
    })
}

/// The token the `token` command prints.
pub fn issue_token(config: &Config) -> anyhow::Result<String> {
    let request = config.token.as_ref().context("not the token command")?;
    let secret = config.jwt_secret.as_ref().context("no JWT secret")?;
    jiva_auth::issue_hs256(
        secret,
        &config.claims,
        &request.agent,
        request.role,
        request.ttl,
    )
    .context("signing the token")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(extra: &[&str]) -> Result<Config, Vec<String>> {
        let mut argv = vec!["jivachat-server"];
        argv.extend_from_slice(extra);
        Config::from_args(Args::try_parse_from(argv).unwrap())
    }

    const SECRET: &str = "a secret that is long enough for HS256";

    #[test]
    fn auth_is_off_by_default_and_modes_are_validated() {
        assert!(matches!(config(&[]).unwrap().auth, AuthChoice::None));
        assert!(matches!(
            config(&["--auth", "jwt", "--jwt-secret", SECRET])
                .unwrap()
                .auth,
            AuthChoice::Jwt(_)
        ));
        let AuthChoice::Cognito(cognito) = config(&[
            "--auth",
            "cognito",
            "--cognito-region",
            "eu-west-1",
            "--cognito-user-pool-id",
            "eu-west-1_Pool",
            "--cognito-client-id",
            "client",
            "--jwks-refetch-secs",
            "5",
        ])
        .unwrap()
        .auth
        else {
            panic!("cognito expected");
        };
        assert_eq!(cognito.min_refetch_interval, Duration::from_secs(5));
        assert_eq!(cognito.claims, ClaimNames::default());
        assert_eq!(
            config(&["--auth", "jwt"]).unwrap_err(),
            ["--jwt-secret / JIVA_JWT_SECRET: required with --auth jwt"]
        );
        assert_eq!(config(&["--auth", "cognito"]).unwrap_err().len(), 3);
        assert_eq!(
            config(&["--auth", "oauth"]).unwrap_err(),
            ["--auth / JIVA_AUTH: \"oauth\" is not none, jwt or cognito"]
        );
        assert_eq!(
            config(&[
                "--auth",
                "jwt",
                "--jwt-secret",
                "short",
                "--claim-groups",
                ""
            ])
            .unwrap_err()
            .len(),
            2
        );
    }

    #[test]
    fn the_jwt_secret_never_debug_prints() {
        let argv = ["jivachat-server", "--auth", "jwt", "--jwt-secret", SECRET];
        let args = Args::try_parse_from(argv).unwrap();
        assert!(!format!("{args:?}").contains("long enough"));
        let config = Config::from_args(args).unwrap();
        assert!(!format!("{config:?}").contains("long enough"));
    }

    #[test]
    fn allowed_origins_are_a_comma_separated_list() {
        let config = config(&[
            "--allowed-origins",
            "https://a.example, http://127.0.0.1:3030,",
        ])
        .unwrap();
        assert_eq!(
            config.transport.allowed_origins,
            ["https://a.example", "http://127.0.0.1:3030"]
        );
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_ttl("42"), Ok(Duration::from_secs(42)));
        for bad in ["", "0s", "h", "1w", "-1h", "1.5h", "1 h"] {
            assert_eq!(parse_ttl(bad), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn origins() {
        assert!(valid_origin("https://chat.example.com"));
        assert!(valid_origin("http://127.0.0.1:3030"));
        assert!(!valid_origin("chat.example.com"));
        assert!(!valid_origin("https://chat.example.com/path"));
        assert!(!valid_origin("ftp://x"));
        assert!(!valid_origin("https://"));
    }
}
