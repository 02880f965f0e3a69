//! Issues a short-lived HS256 token, verifies it, and shows what the identity may open; then
//! shows a token with `alg: none` refused.
//!
//! ```sh
//! cargo run -p jiva-auth --example verify
//! ```

#![allow(clippy::print_stdout)]

use std::time::Duration;

use jiva_auth::{HmacAuthenticator, JwtConfig, JwtSecret, issue_hs256};
use jiva_core::{AgentId, Authenticator, ChatId, ConnectionType, UserRole, authorize};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = JwtConfig::new(JwtSecret::new("example secret, at least 32 bytes long"));
    let auth = HmacAuthenticator::new(&config);
    let me = AgentId::parse("0b5c7e2a-4f1d-4c39-9a57-3c3f0e6a9d21")?;
    let token = issue_hs256(
        &config.secret,
        &config.claims,
        &me,
        UserRole::Agent,
        Duration::from_secs(60),
    )?;

    let identity = auth
        .authenticate(Some(&token))
        .await?
        .ok_or("authentication is on, so there is an identity")?;
    println!("verified: {} as {}", identity.agent, identity.role.as_str());
    let other = AgentId::parse("someone-else")?;
    for chat in [
        ChatId::new(me.clone(), ConnectionType::Supervisor),
        ChatId::new(other, ConnectionType::Supervisor),
    ] {
        match authorize(&identity, &chat) {
            Ok(()) => println!("  may open {chat}"),
            Err(denied) => println!("  may not open {chat}: {denied}"),
        }
    }

    // Same claims, no signature, `alg: none`: refused whatever the header says.
    let (_, rest) = token.split_once('.').ok_or("a JWT has three parts")?;
    let (claims, _) = rest.split_once('.').ok_or("a JWT has three parts")?;
    let none = format!("eyJhbGciOiJub25lIn0.{claims}.");
    match auth.authenticate(Some(&none)).await {
        Ok(_) => println!("alg none accepted (this must never happen)"),
        Err(e) => println!("alg none refused: {e} ({})", e.code()),
    }
    Ok(())
}
