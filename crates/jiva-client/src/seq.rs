//! The highest sequence number seen: where a reconnection resumes, and which replayed messages
//! were already delivered.

/// Tracks the newest message a v1 connection has delivered.
///
/// Fed by `message`, `latest` and `live` frames (not by `ack`: an acknowledged message the
/// client has not been shown yet must still come on resume). A `reload` forgets everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SeqTracker {
    last: Option<u64>,
}

/// What to do with a `message` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Newer than anything delivered: deliver it.
    New,
    /// At or below the newest delivered number: already delivered, drop it.
    Duplicate,
}

impl SeqTracker {
    /// Starts from a known point (`since` given by the caller).
    pub(crate) fn starting_at(last: Option<u64>) -> Self {
        Self { last }
    }

    /// The newest number delivered: the `since` of the next connection.
    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }

    /// A `message` frame numbered `seq`.
    pub(crate) fn message(&mut self, seq: u64) -> Seen {
        match self.last {
            Some(last) if seq <= last => Seen::Duplicate,
            _ => {
                self.last = Some(seq);
                Seen::New
            }
        }
    }

    /// A `latest` frame (or `live`): its numbers were delivered; never moves backwards.
    pub(crate) fn reached(&mut self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.last = Some(self.last.map_or(seq, |last| last.max(seq)));
        }
    }

    /// A `reload`: the view is gone; the following `latest` starts it again.
    pub(crate) fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_advance_and_replays_are_duplicates() {
        let mut t = SeqTracker::default();
        assert_eq!(t.last(), None);
        assert_eq!(t.message(1), Seen::New);
        assert_eq!(
            t.message(3),
            Seen::New,
            "a missing number is no gap to report"
        );
        assert_eq!(t.message(3), Seen::Duplicate);
        assert_eq!(t.message(2), Seen::Duplicate);
        assert_eq!(t.last(), Some(3));
    }

    #[test]
    fn latest_and_live_never_move_backwards() {
        let mut t = SeqTracker::starting_at(Some(10));
        t.reached(Some(7));
        assert_eq!(t.last(), Some(10));
        t.reached(None);
        assert_eq!(t.last(), Some(10));
        t.reached(Some(12));
        assert_eq!(t.last(), Some(12));
    }

    #[test]
    fn reload_forgets_the_view() {
        let mut t = SeqTracker::starting_at(Some(99));
        t.reset();
        assert_eq!(t.last(), None);
        t.reached(Some(4));
        assert_eq!(t.message(5), Seen::New);
    }
}
