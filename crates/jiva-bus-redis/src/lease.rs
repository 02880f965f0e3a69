//! [`TurnLock`] on the bus's Redis: a chat's copilot turn lease is the key
//! `jiva:turn:{canonical chat id}`, taken with `SET key token NX PX ttl`, renewed and released
//! by scripts that compare the token first, so only the holder extends or deletes it.

use std::time::Duration;

use async_trait::async_trait;
use jiva_core::{ChatId, LeaseToken, TurnLock, TurnLockError};

use crate::RedisBus;

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";

fn key(chat: &ChatId) -> String {
    format!("jiva:turn:{}", chat.canonical())
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn unavailable(e: redis::RedisError) -> TurnLockError {
    TurnLockError::Unavailable(Box::new(e))
}

#[async_trait]
impl TurnLock for RedisBus {
    async fn try_acquire(
        &self,
        chat: &ChatId,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, TurnLockError> {
        let mut manager = self.manager().map_err(unavailable)?;
        let set: Option<String> = redis::cmd("SET")
            .arg(key(chat))
            .arg(token.as_str())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut manager)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn renew(
        &self,
        chat: &ChatId,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, TurnLockError> {
        let mut manager = self.manager().map_err(unavailable)?;
        let renewed: i64 = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(key(chat))
            .arg(token.as_str())
            .arg(millis(ttl))
            .query_async(&mut manager)
            .await
            .map_err(unavailable)?;
        Ok(renewed == 1)
    }

    async fn release(&self, chat: &ChatId, token: &LeaseToken) -> Result<(), TurnLockError> {
        let mut manager = self.manager().map_err(unavailable)?;
        let _deleted: i64 = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(key(chat))
            .arg(token.as_str())
            .query_async(&mut manager)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn held(&self, chat: &ChatId) -> Result<bool, TurnLockError> {
        let mut manager = self.manager().map_err(unavailable)?;
        let exists: i64 = redis::cmd("EXISTS")
            .arg(key(chat))
            .query_async(&mut manager)
            .await
            .map_err(unavailable)?;
        Ok(exists == 1)
    }
}
