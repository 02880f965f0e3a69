//! What a socket's reader and writer tell each other, in one allocation per socket.
//!
//! Three separate primitives (two `CancellationToken`s and an `Arc<Notify>`) cost three heap
//! blocks of 64 to 128 bytes for every open socket, most of them idle; a socket needs only
//! two one-way flags and a wake-up, so they share one `Arc`.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The signals between one socket's reader and writer.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Set once the writer joined the chat's room: the reader may then accept messages.
    pub(crate) joined: Flag,
    /// Set when the writer ended: the reader stops.
    pub(crate) done: Flag,
    /// Fired by the reader while the socket is idle: the writer sends a ping.
    pub(crate) ping: Notify,
}

/// A flag that is set once and stays set, with a wait for it.
#[derive(Debug, Default)]
pub(crate) struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Flag {
    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether the flag is set.
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Resolves once the flag is set (at once if it is).
    pub(crate) async fn wait(&self) {
        loop {
            // Made before the check: `notify_waiters` wakes every `Notified` made before it,
            // polled or not, so a `set` between the check and the await is not missed.
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_ends_when_the_flag_is_set_and_at_once_after() {
        let flag = Arc::new(Flag::default());
        assert!(!flag.is_set());
        let waiter = tokio::spawn({
            let flag = Arc::clone(&flag);
            async move { flag.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "a wait must not end before the flag is set"
        );
        flag.set();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes")
            .expect("the waiter does not panic");
        assert!(flag.is_set());
        tokio::time::timeout(Duration::from_secs(5), flag.wait())
            .await
            .expect("a wait on a set flag ends at once");
    }

    #[tokio::test]
    async fn every_waiter_wakes() {
        let flag = Arc::new(Flag::default());
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let flag = Arc::clone(&flag);
                tokio::spawn(async move { flag.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        flag.set();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("each waiter wakes")
                .expect("no panic");
        }
    }
}
