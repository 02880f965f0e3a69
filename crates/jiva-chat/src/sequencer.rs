//! The per-chat reorder step: stored frames leave a room in the chat's sequence order.
//!
//! A frame is whatever the transport's [`Encoder`](crate::Encoder) made of a stored message:
//! the sequencer only moves it, by its number.
//!
//! The store numbers a chat's messages (1, 2, 3, ...) when it stores them, but the tasks that
//! appended them wake up in any order. A room's [`Sequencer`] delivers frame `n` only after frame
//! `n - 1`; a frame that arrives early is held until the frames before it come.
//!
//! A number that does not arrive must not stall the chat, nor be lost: it may be another
//! server's frame held up on a slow bus (stored, acknowledged, and due here), or an append that
//! failed after the store took its number (it will never come). The room counts the appends of
//! its chat in flight on this server: while one is, a missing number is most likely its own, so
//! the held frames wait for it. Once the oldest held frame has waited [`GAP_WAIT`] with no append
//! of the chat in flight here (or [`MAX_WAIT`] in any case), the gap is **filled from the
//! store**: [`Sequencer::expire`] returns a [`Gap`], the caller reads the chat's newest messages
//! (the store has every acknowledged one) and hands their frames to [`Sequencer::fill`], which
//! delivers them in order; only the numbers the store does not have either are skipped (counted
//! in `jiva_seq_gaps_skipped_total`). Until the fill answers, frames keep being held (a fill
//! that never answers is given up after [`MAX_WAIT`] and its gap skipped).
//!
//! When other servers append to the chat too (a cluster), a number the store does not have yet
//! may be another server's append still on its way to the store (slower than [`GAP_WAIT`] under
//! load): a fill that lacks some numbers delivers what is whole, keeps the rest held and reads
//! again each [`GAP_WAIT`], and skips the numbers still missing only once the frame after them
//! has waited [`MAX_WAIT`]. (Skipped after one read, a number stored a moment later reached the
//! sockets late, after the frames behind it: seen in the three-node order test under load.) A
//! single server is the only writer of its chats: once none of its appends is in flight, a
//! number the store does not have will never come, and is skipped after the first read.
//!
//! A frame whose number is below the next one expected was either shown already (from the store,
//! or a duplicate): it is dropped (`jiva_seq_duplicate_frames_total`); or its number was skipped
//! (the store did not have it in time) or is older than where the room started: it is delivered
//! at once rather than lost (`jiva_seq_late_frames_total`); each socket still drops what it
//! replayed.
//!
//! Where a room starts: a new room does not know the chat's last number. The first socket's
//! replay tells it ([`Sequencer::baseline`]); until then frames are held, and if no baseline
//! comes within [`MAX_WAIT`] (the replay failed) the room starts at its oldest held frame. (It
//! once gave up after `wait`: under load a first replay from the store took longer than that,
//! the room started at a later frame, and the earlier ones reached its sockets late, out of
//! order.) That replay stops at a missing number that may still arrive ([`may_still_arrive`]:
//! the message after it is younger than [`MAX_WAIT`]); the messages it read past it are handed
//! to the room ([`Sequencer::ahead`]) and held like a fill's, so that the number goes out
//! before them once stored, or they go out once its gap is filled or skipped. (The replay once
//! showed them at once, the room started after them, and the number, stored a moment later,
//! reached the socket after them: seen in the three-node order test under load.)
//!
//! The fast path (the frame expected next) delivers in the caller's task, with no allocation
//! and no task hop. Timing is the caller's: every held frame gets a receiver that resolves when
//! it is delivered, and its task calls [`Sequencer::expire`] when `wait` has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiva_core::Timestamp;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a stored frame waits for the numbers before it when no append of its chat is in
/// flight on this server (the missing number can then only be lost, or come from elsewhere).
pub const GAP_WAIT: Duration = Duration::from_secs(2);

/// How long a stored frame waits for the numbers before it at most, appends in flight or not:
/// longer than a store append may take (DynamoDB's operation time-out is 10 s by default).
pub const MAX_WAIT: Duration = Duration::from_secs(15);

/// Whether a number missing from the store just before a message stored at `stored_at` may
/// still arrive, judged at `now`: an append in flight takes at most [`MAX_WAIT`], so a gap
/// followed by an older message is a number that will never come (a failed append).
pub fn may_still_arrive(stored_at: Timestamp, now: Timestamp) -> bool {
    let waited = now.as_millis().saturating_sub(stored_at.as_millis());
    u128::try_from(waited).map_or(true, |waited| waited < MAX_WAIT.as_millis())
}

/// Skipped numbers remembered (so that their frames, should they come after all, are delivered
/// rather than dropped as shown); the oldest are forgotten first.
const SKIPPED_KEPT: usize = 1024;

/// How many more of a chat's newest messages than the gap spans a fill reads, for messages
/// stored since the newest frame held here.
const FILL_MARGIN: u64 = 64;

/// The most messages a fill reads.
const FILL_MAX: u64 = 1000;

/// A gap whose wait is over: the numbers after `after` and before `before` have not arrived.
/// The caller reads the chat's newest [`Gap::window`] messages from the store and hands the
/// frames of those numbered after `after` to [`Sequencer::fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The last number delivered.
    pub after: u64,
    /// The oldest number held (the first after the gap).
    pub before: u64,
    /// The newest number held.
    pub newest: u64,
}

impl Gap {
    /// How many of the chat's newest messages to read so that the gap is among them (unless more
    /// than [`FILL_MAX`] were stored since).
    pub fn window(&self) -> usize {
        let span = self
            .newest
            .saturating_sub(self.after)
            .saturating_add(FILL_MARGIN);
        usize::try_from(span.min(FILL_MAX)).unwrap_or(usize::MAX)
    }
}

struct Held<F> {
    frame: F,
    since: Instant,
    /// Dropped (so the waiting task wakes) when the frame is delivered; `None` for a frame read
    /// from the store, which no task waits for.
    _delivered: Option<oneshot::Sender<()>>,
}

/// The reorder state of one room.
pub(crate) struct Sequencer<F> {
    /// The next number to deliver; `None` until the room knows where the chat is.
    next: Option<u64>,
    held: BTreeMap<u64, Held<F>>,
    /// Appends of this chat in flight on this server (see [`Sequencer::begin`]).
    in_flight: usize,
    /// Since when a fill from the store is awaited (see [`Sequencer::expire`]).
    filling: Option<Instant>,
    /// The first number this room delivered in order: the numbers from it to `next` were shown,
    /// except those in `skipped`.
    shown_from: Option<u64>,
    /// Numbers skipped (neither received nor in the store in time), the newest [`SKIPPED_KEPT`].
    skipped: BTreeSet<u64>,
    /// Whether other servers append to this chat too (see the module docs).
    others_append: bool,
    /// When a fill last found numbers missing from the store (read again a wait later).
    refilled: Option<Instant>,
}

impl<F> Default for Sequencer<F> {
    fn default() -> Self {
        Self {
            next: None,
            held: BTreeMap::new(),
            in_flight: 0,
            filling: None,
            shown_from: None,
            skipped: BTreeSet::new(),
            others_append: false,
            refilled: None,
        }
    }
}

impl<F> Sequencer<F> {
    /// The reorder state of a room whose chat other servers append to as well (a cluster):
    /// numbers the store does not have yet are read again until [`MAX_WAIT`] (module docs).
    pub fn with_other_writers() -> Self {
        Self {
            others_append: true,
            ..Self::default()
        }
    }

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
                if self.was_shown(seq) {
                    // Shown already (read from the store when its gap timed out, or a duplicate).
                    metrics::counter!("jiva_seq_duplicate_frames_total").increment(1);
                } else {
                    metrics::counter!("jiva_seq_late_frames_total").increment(1);
                    deliver(frame);
                }
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
                        _delivered: Some(tx),
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
        self.shown_from = Some(next);
        // Held frames the history already had go out at once (sockets drop what they replayed).
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() >= next {
                break;
            }
            deliver(entry.remove().frame);
        }
        self.drain(deliver);
    }

    /// Holds frames a socket's replay read from the store past a missing number that may still
    /// be on its way (see [`may_still_arrive`]), so that they go out after it, in order, or
    /// once the gap is filled or skipped. Frames the room has passed already are left out:
    /// the socket replays what lies below the room's next number itself.
    pub fn ahead(&mut self, frames: Vec<(u64, F)>, now: Instant, deliver: &mut impl FnMut(F)) {
        let Some(next) = self.next else {
            return;
        };
        for (seq, frame) in frames.into_iter().filter(|(seq, _)| *seq >= next) {
            self.held.entry(seq).or_insert(Held {
                frame,
                since: now,
                _delivered: None,
            });
        }
        self.drain(deliver);
    }

    /// Looks at the held frames that have waited long enough by `now` (`wait` with no append
    /// in flight, [`MAX_WAIT`] in any case). A room without a baseline starts at its oldest held
    /// frame. Otherwise the missing numbers before that frame are returned as a [`Gap`] to fill
    /// from the store: until [`Sequencer::fill`] is called, the room keeps holding (and this
    /// returns `None`). A fill awaited longer than [`MAX_WAIT`] is given up: its gap is skipped.
    #[must_use]
    pub fn expire(
        &mut self,
        now: Instant,
        wait: Duration,
        deliver: &mut impl FnMut(F),
    ) -> Option<Gap> {
        let patience = self.patience(wait);
        let mut give_up = false;
        if let Some(since) = self.filling {
            if now.saturating_duration_since(since) < MAX_WAIT {
                return None;
            }
            tracing::warn!("no answer from the store to fill a sequence gap; skipping it");
            self.filling = None;
            give_up = true;
        }
        if self
            .refilled
            .is_some_and(|at| now.saturating_duration_since(at) < wait)
        {
            return None;
        }
        while let Some((&first, held)) = self.held.first_key_value() {
            if now.saturating_duration_since(held.since) < patience {
                return None;
            }
            let Some(next) = self.next else {
                tracing::debug!(first, "no baseline in time; starting at a held frame");
                self.next = Some(first);
                self.shown_from = Some(first);
                self.skip_to(first, deliver);
                continue;
            };
            if !give_up {
                self.filling = Some(now);
                let newest = self.held.last_key_value().map_or(first, |(&n, _)| n);
                return Some(Gap {
                    after: next.saturating_sub(1),
                    before: first,
                    newest,
                });
            }
            self.skip_to(first, deliver);
        }
        None
    }

    /// How long the oldest held frame waits before [`Sequencer::expire`] acts on it.
    fn patience(&self, wait: Duration) -> Duration {
        // A room without a baseline waits for its first socket's replay, which a loaded store
        // may take longer than `wait` to answer: starting at a held frame early would show the
        // frames before it late, out of order.
        if self.in_flight == 0 && self.next.is_some() {
            wait
        } else {
            MAX_WAIT.max(wait)
        }
    }

    /// When [`Sequencer::expire`] will next act, if nothing arrives meanwhile: when the oldest
    /// held frame has waited long enough. `None` when nothing is held, or a fill is awaited
    /// (its answer looks again).
    pub fn next_check(&self, wait: Duration) -> Option<Instant> {
        if self.filling.is_some() {
            return None;
        }
        let (_, oldest) = self.held.first_key_value()?;
        let due = oldest.since + self.patience(wait);
        Some(self.refilled.map_or(due, |at| due.max(at + wait)))
    }

    /// Ends the fill of `gap` (returned by [`Sequencer::expire`]) with the frames of the
    /// chat's messages the store returned, by number: those not delivered or held yet are held,
    /// then delivered in order; the numbers before `gap.before` the store did not have either
    /// are skipped, at once on a single server, else once the frame after them has waited
    /// [`MAX_WAIT`] (until then they stay missing and [`Sequencer::expire`] returns the gap
    /// again a wait later). An empty `frames` (the store could not be read) counts as a read
    /// that found none of them.
    pub fn fill(
        &mut self,
        gap: Gap,
        frames: Vec<(u64, F)>,
        now: Instant,
        deliver: &mut impl FnMut(F),
    ) {
        self.filling = None;
        let Some(next) = self.next else {
            return;
        };
        let mut filled = 0u64;
        for (seq, frame) in frames {
            if seq >= next && !self.held.contains_key(&seq) {
                filled += 1;
                self.held.insert(
                    seq,
                    Held {
                        frame,
                        since: now,
                        _delivered: None,
                    },
                );
            }
        }
        metrics::counter!("jiva_seq_filled_frames_total").increment(filled);
        let missing = gap.before.saturating_sub(next);
        let found = self.held.range(next..gap.before).count() as u64;
        let waited = self
            .held
            .get(&gap.before)
            .is_none_or(|held| now.saturating_duration_since(held.since) >= MAX_WAIT);
        if found < missing && self.others_append && !waited {
            // Perhaps another server's append still on its way to the store: read again later.
            metrics::counter!("jiva_seq_fills_again_total").increment(1);
            self.refilled = Some(now);
            self.drain(deliver);
            return;
        }
        self.refilled = None;
        self.skip_to(gap.before, deliver);
    }

    /// Gives up `gap` (returned by [`Sequencer::expire`]) without reading the store (no filler,
    /// or its queue full): the held frames are delivered in order, the missing numbers before
    /// `gap.before` skipped.
    pub fn skip(&mut self, gap: Gap, deliver: &mut impl FnMut(F)) {
        self.filling = None;
        self.refilled = None;
        self.skip_to(gap.before, deliver);
    }

    /// Delivers the held frames in order from the next number on, skipping the missing numbers
    /// below `before`, and goes on while the held frames follow each other.
    fn skip_to(&mut self, before: u64, deliver: &mut impl FnMut(F)) {
        let Some(mut next) = self.next else {
            return;
        };
        loop {
            match self.held.first_entry() {
                Some(entry) if *entry.key() == next => {
                    deliver(entry.remove().frame);
                    next = next.saturating_add(1);
                }
                _ if next < before => {
                    let until = self
                        .held
                        .first_key_value()
                        .map_or(before, |(&held, _)| held.min(before));
                    self.skipped_numbers(next, until);
                    next = until;
                }
                _ => break,
            }
        }
        self.next = Some(next);
    }

    /// Records that the numbers `from..to` were skipped.
    fn skipped_numbers(&mut self, from: u64, to: u64) {
        metrics::counter!("jiva_seq_gaps_skipped_total").increment(to.saturating_sub(from));
        tracing::warn!(
            from,
            to,
            "skipping sequence numbers the store does not have"
        );
        let kept = u64::try_from(SKIPPED_KEPT).unwrap_or(u64::MAX);
        self.skipped.extend(to.saturating_sub(kept).max(from)..to);
        while self.skipped.len() > SKIPPED_KEPT {
            if let Some(oldest) = self.skipped.pop_first() {
                // Below here nothing is known any more: a late frame is delivered, not dropped.
                self.shown_from = self.shown_from.map(|f| f.max(oldest.saturating_add(1)));
            }
        }
    }

    /// Whether number `seq`, below the next one, was delivered by this room.
    fn was_shown(&self, seq: u64) -> bool {
        self.shown_from.is_some_and(|from| seq >= from) && !self.skipped.contains(&seq)
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

    #[test]
    fn a_gap_before_a_message_older_than_the_longest_append_will_never_fill() {
        let now = Timestamp::from_millis(1_000_000);
        let ago = |ms: i64| Timestamp::from_millis(1_000_000 - ms);
        assert!(may_still_arrive(ago(0), now));
        assert!(may_still_arrive(ago(14_999), now));
        assert!(!may_still_arrive(ago(15_000), now));
        // A clock that went back: the message looks fresh.
        assert!(may_still_arrive(Timestamp::from_millis(2_000_000), now));
    }

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

    /// Expires what has waited; each gap is filled by a store that does not have its numbers
    /// either (an append that failed after taking its number): they are skipped.
    fn expire_unfilled(order: &mut Sequencer<String>, out: &mut Vec<String>) {
        while let Some(gap) = order.expire(Instant::now(), WAIT, &mut |f| out.push(f)) {
            order.fill(gap, Vec::new(), Instant::now(), &mut |f| out.push(f));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_out_gap_is_filled_from_the_store_in_order_and_its_late_frame_dropped() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        let _waits = push_all(&[1, 3, 6], &mut order, &mut out);
        tokio::time::advance(WAIT).await;
        let gap = order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        let gap = gap.expect("a gap to fill");
        assert_eq!(
            gap,
            Gap {
                after: 1,
                before: 3,
                newest: 6
            }
        );
        assert!(gap.window() >= 6, "the read reaches back to the gap");
        // While the store is read, the room holds, and does not ask twice.
        assert!(
            order
                .expire(Instant::now(), WAIT, &mut |f| out.push(f))
                .is_none()
        );
        push_all(&[4], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![1]);
        // The store has 2 (acknowledged, its bus frame slow), 3, 4 and 7 (stored since); not 5
        // (its append failed after taking the number).
        let stored = [2, 3, 4, 7].map(|n| (n, frame(n))).to_vec();
        order.fill(gap, stored, Instant::now(), &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![1, 2, 3, 4]);
        // 5 is a gap of its own: 6 waits for it, then it is filled (the store lacks it).
        tokio::time::advance(WAIT).await;
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 2, 3, 4, 6, 7]);
        // The late bus frames of 2 and 7, shown already, are dropped; 5, skipped, arriving
        // after all, is delivered rather than lost.
        push_all(&[2, 7, 5, 8], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 2, 3, 4, 6, 7, 5, 8]);
        assert_eq!(order.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fill_that_never_answers_is_given_up_after_the_longest_wait() {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        let _waits = push_all(&[2], &mut order, &mut out);
        tokio::time::advance(WAIT).await;
        assert!(
            order
                .expire(Instant::now(), WAIT, &mut |f| out.push(f))
                .is_some()
        );
        tokio::time::advance(MAX_WAIT - Duration::from_millis(1)).await;
        assert!(
            order
                .expire(Instant::now(), WAIT, &mut |f| out.push(f))
                .is_none()
        );
        assert!(out.is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            order
                .expire(Instant::now(), WAIT, &mut |f| out.push(f))
                .is_none()
        );
        assert_eq!(numbers(&out), vec![2]);
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
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![1]);
        tokio::time::advance(Duration::from_millis(1)).await;
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 3, 4]);
        // The chat goes on at once, and 2 arriving late is delivered, not lost.
        push_all(&[5, 2], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 3, 4, 5, 2]);
        assert_eq!(order.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_cluster_a_number_the_store_has_only_at_the_second_read_is_shown_in_order() {
        let mut order = Sequencer::<String>::with_other_writers();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        let _waits = push_all(&[1, 3, 4], &mut order, &mut out);
        tokio::time::advance(WAIT).await;
        let gap = order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        // Another server's append of 2 is still on its way to the store.
        order.fill(gap.unwrap(), Vec::new(), Instant::now(), &mut |f| {
            out.push(f)
        });
        assert_eq!(numbers(&out), vec![1], "2 may still come: 3 and 4 wait");
        assert!(
            order
                .expire(Instant::now(), WAIT, &mut |f| out.push(f))
                .is_none(),
            "the store is read again a wait later, not at once"
        );
        assert_eq!(
            order.next_check(WAIT),
            Some(Instant::now() + WAIT),
            "the filler is told when to look again"
        );
        tokio::time::advance(WAIT).await;
        let gap = order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        let stored = vec![(2, frame(2)), (3, frame(3))];
        order.fill(gap.unwrap(), stored, Instant::now(), &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![1, 2, 3, 4]);
        assert_eq!(order.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_cluster_a_number_never_stored_is_skipped_once_the_frame_after_it_waited_longest()
    {
        let mut order = Sequencer::<String>::with_other_writers();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        let _waits = push_all(&[1, 3], &mut order, &mut out);
        let mut waited = Duration::ZERO;
        while waited + WAIT < MAX_WAIT {
            tokio::time::advance(WAIT).await;
            waited += WAIT;
            expire_unfilled(&mut order, &mut out);
            assert_eq!(numbers(&out), vec![1], "skipped after {waited:?}");
        }
        tokio::time::advance(WAIT).await;
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 3]);
        // 2 arriving after all is delivered, not lost.
        push_all(&[2, 4], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![1, 3, 2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_given_up_without_a_read_is_skipped_at_once_in_a_cluster_too() {
        let mut order = Sequencer::<String>::with_other_writers();
        let mut out = Vec::new();
        order.baseline(0, &mut |f| out.push(f));
        let _waits = push_all(&[1, 3], &mut order, &mut out);
        tokio::time::advance(WAIT).await;
        let gap = order.expire(Instant::now(), WAIT, &mut |f| out.push(f));
        order.skip(gap.unwrap(), &mut |f| out.push(f));
        assert_eq!(numbers(&out), vec![1, 3]);
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
        expire_unfilled(&mut order, &mut out);
        assert!(
            out.is_empty(),
            "number 1 may still come: its append is in flight"
        );
        // That append failed: nothing can fill the gap now, and frame 2 has waited long enough.
        order.end();
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![2]);

        // An append in flight forever (its task died without ending) holds a gap MAX_WAIT.
        order.begin();
        push_all(&[4], &mut order, &mut out);
        tokio::time::advance(MAX_WAIT - Duration::from_millis(1)).await;
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![2]);
        tokio::time::advance(Duration::from_millis(1)).await;
        expire_unfilled(&mut order, &mut out);
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
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![1]);
        tokio::time::advance(WAIT / 2).await;
        expire_unfilled(&mut order, &mut out);
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
    async fn without_a_baseline_a_room_waits_the_longest_wait_then_starts_at_its_oldest_held_frame()
    {
        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        push_all(&[8, 7], &mut order, &mut out);
        // A slow first replay: the gap wait alone does not give up on the baseline.
        tokio::time::advance(WAIT).await;
        expire_unfilled(&mut order, &mut out);
        assert!(
            out.is_empty(),
            "started without a baseline after {WAIT:?}: {out:?}"
        );
        order.baseline(5, &mut |f| out.push(f));
        push_all(&[6], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![6, 7, 8]);

        let mut order = Sequencer::<String>::default();
        let mut out = Vec::new();
        push_all(&[8, 7], &mut order, &mut out);
        tokio::time::advance(MAX_WAIT).await;
        expire_unfilled(&mut order, &mut out);
        assert_eq!(numbers(&out), vec![7, 8]);
        push_all(&[9], &mut order, &mut out);
        assert_eq!(numbers(&out), vec![7, 8, 9]);
    }
}
