//! The loss, duplicate and order checks of one receiving socket, shared by `fanout` and
//! `cluster`: each bench message is `(sender, n)` (the sender's own counter, 0, 1, 2, …) and
//! may carry the store's per-chat sequence number `seq`.
//!
//! - duplicate: `(sender, n)` seen before on this socket;
//! - reordered: a sender's `n` is not the next one this socket expected (a gap counts too);
//! - loss: a sender sent more than this socket saw distinct ([`Checker::lost`]);
//! - `seq`: each frame's number must be above the previous one's on this socket
//!   (`seq_reordered`) and, every message of the chat being shown, exactly one above it
//!   (`seq_gaps` counts jumps); frames without `seq` are counted (`no_seq`);
//! - `order_hash`: a hash of the sequence of `(sender, n, seq)` seen, equal on every socket of a
//!   chat when they all saw one order.

/// What [`Checker::record`] made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First sight of this message on this socket.
    New,
    /// Seen before on this socket.
    Duplicate,
    /// A sender this run does not have.
    Foreign,
}

/// The checks of one socket.
#[derive(Debug, Clone)]
pub struct Checker {
    /// Per sender, a bitset of the `n` seen.
    seen: Vec<Vec<u64>>,
    /// Per sender, the `n` expected next.
    next: Vec<u64>,
    /// Per sender, distinct messages seen.
    pub distinct: Vec<u64>,
    pub duplicated: u64,
    pub reordered: u64,
    pub seq_reordered: u64,
    pub seq_gaps: u64,
    pub no_seq: u64,
    last_seq: Option<u64>,
    pub order_hash: u64,
}

impl Checker {
    /// A checker for a chat with `senders` senders.
    pub fn new(senders: usize) -> Self {
        Self {
            seen: vec![Vec::new(); senders],
            next: vec![0; senders],
            distinct: vec![0; senders],
            duplicated: 0,
            reordered: 0,
            seq_reordered: 0,
            seq_gaps: 0,
            no_seq: 0,
            last_seq: None,
            order_hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    /// Checks a frame's `seq` against the previous one on this socket (also for frames that are
    /// not bench messages, such as `cluster`'s probes: every stored frame has a number).
    pub fn observe_seq(&mut self, seq: Option<u64>) {
        let Some(seq) = seq else {
            self.no_seq += 1;
            return;
        };
        match self.last_seq {
            Some(last) if seq <= last => self.seq_reordered += 1,
            Some(last) if seq > last.saturating_add(1) => self.seq_gaps += 1,
            _ => {}
        }
        self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
    }

    /// Records message `n` of `sender`, carrying `seq` when the frame has one (`check_seq`:
    /// whether to check it; `fanout` does not).
    pub fn record(&mut self, sender: usize, n: u64, seq: Option<u64>, check_seq: bool) -> Verdict {
        let (Some(bits), Some(expect), Some(distinct)) = (
            self.seen.get_mut(sender),
            self.next.get_mut(sender),
            self.distinct.get_mut(sender),
        ) else {
            return Verdict::Foreign;
        };
        let word = usize::try_from(n / 64).unwrap_or(usize::MAX);
        if bits.len() <= word {
            bits.resize(word.saturating_add(1), 0);
        }
        let mask = 1u64 << (n % 64);
        let Some(w) = bits.get_mut(word) else {
            return Verdict::Foreign;
        };
        if *w & mask != 0 {
            self.duplicated += 1;
            return Verdict::Duplicate;
        }
        *w |= mask;
        *distinct += 1;
        if n != *expect {
            self.reordered += 1;
        }
        *expect = (*expect).max(n + 1);
        if check_seq {
            self.observe_seq(seq);
        }
        self.order_hash = (self.order_hash ^ ((sender as u64) << 48 | n))
            .wrapping_mul(0x0100_0000_01b3)
            ^ seq.unwrap_or(0);
        Verdict::New
    }

    /// Messages the senders sent (`sent[sender]`) that this socket never saw.
    pub fn lost(&self, sent: &[u64]) -> u64 {
        sent.iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(self.distinct.get(i).copied().unwrap_or(0)))
            .sum()
    }
}

/// The number value of `"key":123` in a frame, without a full JSON parse.
pub fn number_field(frame: &str, key: &str) -> Option<u64> {
    let pattern = format!("\"{key}\":");
    let start = frame.find(&pattern)? + pattern.len();
    let rest = frame.get(start..)?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(sender, n, seq)` and returns the checker.
    fn feed(senders: usize, frames: &[(usize, u64, u64)]) -> Checker {
        let mut c = Checker::new(senders);
        for &(sender, n, seq) in frames {
            c.record(sender, n, Some(seq), true);
        }
        c
    }

    #[test]
    fn a_clean_stream_passes_every_check() {
        let c = feed(2, &[(0, 0, 1), (1, 0, 2), (0, 1, 3), (1, 1, 4)]);
        assert_eq!(c.lost(&[2, 2]), 0);
        assert_eq!(
            (
                c.duplicated,
                c.reordered,
                c.seq_reordered,
                c.seq_gaps,
                c.no_seq
            ),
            (0, 0, 0, 0, 0)
        );
    }

    #[test]
    fn a_missing_message_is_lost_and_its_successor_out_of_order() {
        let c = feed(1, &[(0, 0, 1), (0, 1, 2), (0, 3, 4)]);
        assert_eq!(c.lost(&[4]), 1);
        assert_eq!(c.reordered, 1);
        assert_eq!(c.seq_gaps, 1);
        assert_eq!(c.seq_reordered, 0);
    }

    #[test]
    fn a_message_seen_twice_is_a_duplicate_and_not_counted_again() {
        let mut c = feed(1, &[(0, 0, 1), (0, 1, 2)]);
        assert_eq!(c.record(0, 1, Some(2), true), Verdict::Duplicate);
        assert_eq!(c.duplicated, 1);
        assert_eq!(c.distinct, vec![2]);
        assert_eq!(c.lost(&[2]), 0);
        // A duplicate does not move the seq check either.
        assert_eq!(c.seq_reordered, 0);
    }

    #[test]
    fn a_sender_out_of_order_is_reordered() {
        let c = feed(1, &[(0, 0, 1), (0, 2, 2), (0, 1, 3)]);
        assert_eq!(c.reordered, 2, "2 skipped ahead of 1, then 1 came late");
        assert_eq!(c.lost(&[3]), 0);
    }

    #[test]
    fn a_seq_going_backwards_is_seq_reordered_even_when_each_sender_is_in_order() {
        // Two senders, each in order, but the chat's numbers go 1, 3, 2: sockets disagree with
        // the store's order.
        let c = feed(2, &[(0, 0, 1), (0, 1, 3), (1, 0, 2)]);
        assert_eq!(c.reordered, 0);
        assert_eq!(c.seq_reordered, 1);
    }

    #[test]
    fn frames_without_seq_are_counted_and_seq_is_not_checked_when_not_asked() {
        let mut c = Checker::new(1);
        c.record(0, 0, None, true);
        assert_eq!(c.no_seq, 1);
        let mut unchecked = Checker::new(1);
        unchecked.record(0, 0, Some(5), false);
        unchecked.record(0, 1, Some(1), false);
        assert_eq!((unchecked.no_seq, unchecked.seq_reordered), (0, 0));
    }

    #[test]
    fn an_unknown_sender_is_foreign() {
        let mut c = Checker::new(1);
        assert_eq!(c.record(3, 0, Some(1), true), Verdict::Foreign);
        assert_eq!(c.distinct, vec![0]);
    }

    #[test]
    fn order_hash_is_equal_for_one_order_and_differs_for_another() {
        let a = feed(2, &[(0, 0, 1), (1, 0, 2)]);
        let b = feed(2, &[(0, 0, 1), (1, 0, 2)]);
        let c = feed(2, &[(1, 0, 1), (0, 0, 2)]);
        assert_eq!(a.order_hash, b.order_hash);
        assert_ne!(a.order_hash, c.order_hash);
    }

    #[test]
    fn probes_between_messages_keep_the_seq_contiguous() {
        let mut c = Checker::new(1);
        c.observe_seq(Some(7));
        c.record(0, 0, Some(8), true);
        c.observe_seq(Some(9));
        c.record(0, 1, Some(10), true);
        assert_eq!((c.seq_gaps, c.seq_reordered), (0, 0));
    }

    #[test]
    fn number_field_reads_a_json_number() {
        let frame = r#"{"chat_id":"x","seq":42,"message":"0.1.2"}"#;
        assert_eq!(number_field(frame, "seq"), Some(42));
        assert_eq!(number_field(r#"{"seq": 7}"#, "seq"), Some(7));
        assert_eq!(number_field(r#"{"message":"a"}"#, "seq"), None);
        assert_eq!(number_field(r#"{"seq":"x"}"#, "seq"), None);
    }
}
