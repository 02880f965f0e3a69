//! The cluster-wide copilot turn lease: [`TurnLock`].
//!
//! One copilot turn runs at a time per chat on a server (its turn queue); across servers, the
//! server about to run a turn takes its chat's lease, with an expiry, renews it while the turn
//! runs, and releases it when the turn ends. A server that dies mid-turn stops renewing, so the
//! chat is free again once the lease expires.

use std::error::Error as StdError;
use std::time::Duration;

use async_trait::async_trait;

use crate::chat::ChatId;

/// Who holds a lease: a value unique to one taking of it, so that only its holder renews or
/// releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// A fresh, unique token.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The token as a string (for the lock's storage).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnLockError {
    /// The lock's backend cannot be reached now.
    #[error("the turn lock is unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync + 'static>),
}

/// Leases on chats' copilot turns, shared by every server of a cluster.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TurnLock: Send + Sync {
    /// Takes `chat`'s lease for `ttl` as `token` if nobody holds it; false when someone does.
    async fn try_acquire(
        &self,
        chat: &ChatId,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, TurnLockError>;

    /// Extends the lease `token` holds on `chat` to `ttl` from now; false when `token` no longer
    /// holds it (it expired and someone else took it).
    async fn renew(
        &self,
        chat: &ChatId,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, TurnLockError>;

    /// Releases the lease `token` holds on `chat`; nothing happens if it does not hold it.
    async fn release(&self, chat: &ChatId, token: &LeaseToken) -> Result<(), TurnLockError>;

    /// Whether anyone holds `chat`'s lease now (a turn runs on some server). The default, for
    /// a single server whose leases are not shared: never.
    async fn held(&self, chat: &ChatId) -> Result<bool, TurnLockError> {
        let _ = chat;
        Ok(false)
    }
}
