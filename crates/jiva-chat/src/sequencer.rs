//! The per-chat reorder step: stored frames leave a room in the chat's sequence order.
//!
//! A frame is whatever the transport's [`Encoder`](crate::Encoder) made of a stored message:
//! the sequencer only moves it, by its number.
//!
//! The store numbers a chat's messages (1, 2, 3, ...) when it stores them, but the tasks that
//! appended them wake up in any order. A room's [`Sequencer`] delivers frame `n` only after frame
//! `n - 1`; a frame that arrives early is held until the frames before it come.
//!
//! A number that never arrives (an append that failed after the store took the number, a task
//! that died) must not stall the chat. The room counts the appends of its chat in flight on this
//! server: while one is, a missing number is most likely its own, so the held frames wait for
//! it. The missing numbers before the oldest held frame are skipped (counted in
//! `jiva_seq_gaps_skipped_total`) once that frame has waited [`GAP_WAIT`] and no append of the
//! chat is in flight here (the number is lost, or another server's and late), or in any case
//! after [`MAX_WAIT`]. A frame whose number is below the next one expected (it arrived after its
//! gap was skipped) is delivered at once rather than lost (`jiva_seq_late_frames_total`); each
//! socket still drops what it replayed.
//!
//! Where a room starts: a new room does not know the chat's last number. The first socket's
//! replay tells it ([`Sequencer::baseline`]); until then frames are held, and if no baseline
//! comes within `wait` (the replay failed) the room starts at its oldest held frame.
//!
//! The fast path (the frame expected next) delivers in the caller's task, with no allocation
//! and no task hop. Timing is the caller's: every held frame gets a receiver that resolves when
//! it is delivered, and its task calls [`Sequencer::expire`] when `wait` has passed.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a stored frame waits for the numbers before it when no append of its chat is in
/// flight on this server (the missing number can then only be lost, or come from elsewhere).
pub const GAP_WAIT: Duration = Duration::from_secs(2);

/// How long a stored frame waits for the numbers before it at most, appends in flight or not:
/// longer than a store append may take (DynamoDB's operation time-out is 10 s by default).
pub const MAX_WAIT: Duration = Duration::from_secs(15);

struct Held<F> {
    frame: F,
    since: Instant,
    /// Dropped (so the waiting task wakes) when the frame is delivered.
    _delivered: oneshot::Sender<()>,
}

/// The reorder state of one room.
pub(crate) struct Sequencer<F> {
    /// The next number to deliver; `None` until the room knows where the chat is.
    next: Option<u64>,
    held: BTreeMap<u64, Held<F>>,
    /// Appends of this chat in flight on this server (see [`Sequencer::begin`]).
    in_flight: usize,
}

impl<F> Default for Sequencer<F> {
    fn default() -> Self {
        Self {
            next: None,
            held: BTreeMap::new(),
            in_flight: 0,
        }
    }
}

impl<F> Sequencer<F> {
    /// The next number this room will deliver, when it knows.
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// An append of this chat starts on this server; [`Sequencer::end`] when it has ended
    /// (stored and pushed, or failed).
    pub fn begin(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// An append counted by [`Sequencer::begin`] ended.
    pub fn end(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Offers stored frame number `seq`. Delivers it (and the held frames it unblocks) through
    /// `deliver`, or holds it and returns a receiver that resolves when it is delivered.
    pub fn push(
        &mut self,
        seq: u64,
        frame: F,
        now: Instant,
        deliver: &mut impl FnMut(F),
    ) -> Option<oneshot::Receiver<()>> {
        match self.next {
            Some(next) if seq == next => {
                deliver(frame);
                self.next = Some(seq.saturating_add(1));
                self.drain(deliver);
                None
            }
            Some(next) if seq < next => {
                metrics::counter!("jiva_seq_late_frames_total").increment(1);
                deliver(frame);
                None
            }
            _ => {
                metrics::counter!("jiva_seq_held_frames_total").increment(1);
                let (tx, rx) = oneshot::channel();
                self.held.insert(
                    seq,
                    Held {
                        frame,
                        since: now,
                        _delivered: tx,
                    },
                );
                Some(rx)
            }
        }
    }

    /// Tells a room that does not yet know where its chat is that `last` was the chat's last
    /// number when a socket read its history (0: none). Ignored once the room knows.
    pub fn baseline(&mut self, last: u64, deliver: &mut impl FnMut(F)) {
        if self.next.is_some() {
            return;
        }
        let next = last.saturating_add(1);
        self.next = Some(next);
        // Held frames the history already had go out at once (sockets drop what they replayed).
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() >= next {
                break;
            }
            deliver(entry.remove().frame);
        }
        self.drain(deliver);
    }

    /// Skips the missing numbers before held frames that have waited long enough by `now`
    /// (`wait` with no append in flight, [`MAX_WAIT`] in any case), and delivers what that
    /// unblocks.
    pub fn expire(&mut self, now: Instant, wait: Duration, deliver: &mut impl FnMut(F)) {
        let patience = if self.in_flight == 0 {
            wait
        } else {
            MAX_WAIT.max(wait)
        };
        while let Some((&first, held)) = self.held.first_key_value() {
            if now.saturating_duration_since(held.since) < patience {
                return;
            }
            match self.next {
                None => tracing::debug!(first, "no baseline in time; starting at a held frame"),
                Some(next) => {
                    let skipped = first.saturating_sub(next);
                    metrics::counter!("jiva_seq_gaps_skipped_total").increment(skipped);
                    tracing::warn!(
                        from = next,
                        to = first,
                        "skipping sequence numbers that never arrived"
                    );
                }
            }
            self.next = Some(first);
            self.drain(deliver);
        }
    }

    /// Frames held (for tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    fn drain(&mut self, deliver: &mut impl FnMut(F)) {
        let Some(mut next) = self.next else {
            return;
        };
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != next {
                break;
            }
            deliver(entry.remove().frame);
            next = next.saturating_add(1);
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(2);

    fn frame(n: u64) -> String {
        format!("{n}")
    }

    /// Pushes each number; returns what was delivered and the receivers of held frames.
    fn push_all(
        seqs: &[u64],
        order: &mut Sequencer<String>,
        out: &mut Vec<String>,
    ) -> Vec<oneshot::Receiver<()>> {
        let mut waits = Vec::new();
        for &n in seqs {
            let mut deliver = |f: String| out.push(f);
            waits.extend(order.push(n, frame(n), Instant::now(), &mut deliver));
        }
        waits
    }

    fn numbers(out: &[String]) -> Vec<u64> {
        out.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn frames_leave_in_sequence_order_whatever_order_they_arrive_in() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        let mut waits = push_all(&[3, 1, 5, 2, 4, 6], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(order.held(), 0);
        // Every held frame's receiver resolved when it went out.
        assert_eq!(waits.len(), 2);
        for w in &mut waits {
            assert!(
                w.try_recv()
                    .is_err_and(|e| e == oneshot::error::TryRecvError::Closed)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_that_never_fills_is_skipped_after_the_wait() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        let _waits = push_all(&[1, 3, 4], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![1]);
        // Not yet: 3 has waited less than the wait.
        tokio::time::advance(WAIT - Duration::from_millis(1)).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![1]);
        tokio::time::advance(Duration::from_millis(1)).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![1, 3, 4]);
        // The chat goes on at once, and 2 arriving late is delivered, not lost.
        push_all(&[5, 2], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 3, 4, 5, 2]);
        assert_eq!(order.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_waits_for_an_append_in_flight_until_it_ends() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        // Two appends start; the second's number (2) comes back first.
        order.begin();
        order.begin();
        order.end();
        push_all(&[2], &mut order, &mut out);
        tokio::time::advance(WAIT * 3).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert!(
            out.is_empty(),
            "number 1 may still come: its append is in flight"
        );
        // That append failed: nothing can fill the gap now, and frame 2 has waited long enough.
        order.end();
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![2]);

        // An append in flight forever (its task died without ending) holds a gap MAX_WAIT.
        order.begin();
        push_all(&[4], &mut order, &mut out);
        tokio::time::advance(MAX_WAIT - Duration::from_millis(1)).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![2]);
        tokio::time::advance(Duration::from_millis(1)).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_younger_held_frame_waits_its_own_time() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        push_all(&[1, 5], &mut order, &mut out);
        tokio::time::advance(WAIT / 2).await;
        push_all(&[3], &mut order, &mut out);
        // 5 has waited long enough, but 3 (before it) has not: nothing skips yet.
        tokio::time::advance(WAIT / 2).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![1]);
        tokio::time::advance(WAIT / 2).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![1, 3, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_room_waits_for_its_baseline_then_delivers_in_order() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        // Frames 11 and 13 arrive before the first replay says the chat was at 10.
        push_all(&[13, 11, 9], &mut order, &mut out);
        assert!(out.is_empty());
        order.baseline(10, &mut |f| out.push(f));
        // 9 was in the replay already (delivered; sockets drop it), then 11; 13 waits for 12.
        assert_eq!(numbers(&out), vec![9, 11]);
        push_all(&[12], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![9, 11, 12, 13]);
        // A second baseline changes nothing.
        order.baseline(100, &mut |f| out.push(f));
        push_all(&[14], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![9, 11, 12, 13, 14]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_baseline_a_room_starts_at_its_oldest_held_frame_after_the_wait() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        push_all(&[8, 7], &mut order, &mut out);
        tokio::time::advance(WAIT).await;
        order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![7, 8]);
        push_all(&[9], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![7, 8, 9]);
    }
}
