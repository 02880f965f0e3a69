//! The sends not acknowledged yet: resent, in order, on every new connection until an `ack`
//! (or an `error`) answers them.

use std::collections::VecDeque;

/// One unacknowledged send and whoever waits for its answer.
#[derive(Debug)]
pub(crate) struct PendingSend<W> {
    /// The idempotency key (also the frame's `ref`).
    pub(crate) client_id: String,
    /// The frame's JSON text, written again on each connection.
    pub(crate) frame: String,
    /// Everyone waiting for the answer (a send repeated with the same id adds one).
    pub(crate) waiters: Vec<W>,
}

/// The table of unacknowledged sends, oldest first, bounded.
#[derive(Debug)]
pub(crate) struct PendingSends<W> {
    entries: VecDeque<PendingSend<W>>,
    capacity: usize,
}

impl<W> PendingSends<W> {
    /// An empty table holding at most `capacity` distinct sends.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity,
        }
    }

    /// Adds a send (or a waiter to the pending send with the same `client_id`, whose frame is
    /// replaced by the newer one). A full table gives the waiter back.
    pub(crate) fn add(&mut self, client_id: &str, frame: String, waiter: W) -> Result<(), W> {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.client_id == client_id) {
            entry.frame = frame;
            entry.waiters.push(waiter);
            return Ok(());
        }
        if self.entries.len() >= self.capacity {
            return Err(waiter);
        }
        self.entries.push_back(PendingSend {
            client_id: client_id.to_owned(),
            frame,
            waiters: vec![waiter],
        });
        Ok(())
    }

    /// Removes and returns the send answered for `client_id` (by an `ack` or an `error`).
    pub(crate) fn answer(&mut self, client_id: &str) -> Option<PendingSend<W>> {
        let at = self.entries.iter().position(|e| e.client_id == client_id)?;
        self.entries.remove(at)
    }

    /// The frames to write on a new connection, oldest first.
    pub(crate) fn frames(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.frame.as_str())
    }

    /// The frame of the pending send `client_id`.
    pub(crate) fn frame_of(&self, client_id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.client_id == client_id)
            .map(|e| e.frame.as_str())
    }

    /// How many sends wait for an answer.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Empties the table (the client is closing), returning every waiter.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = PendingSend<W>> + '_ {
        self.entries.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_resent_oldest_first_until_answered() {
        let mut p = PendingSends::new(8);
        p.add("a", "A".into(), 1).unwrap();
        p.add("b", "B".into(), 2).unwrap();
        p.add("c", "C".into(), 3).unwrap();
        assert_eq!(p.frames().collect::<Vec<_>>(), ["A", "B", "C"]);
        let b = p.answer("b").unwrap();
        assert_eq!(b.waiters, [2]);
        assert_eq!(p.frames().collect::<Vec<_>>(), ["A", "C"]);
        assert!(p.answer("b").is_none(), "a second ack answers nobody");
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn the_same_client_id_is_one_entry_with_every_waiter() {
        let mut p = PendingSends::new(1);
        p.add("a", "A1".into(), 1).unwrap();
        p.add("a", "A2".into(), 2).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p.frames().collect::<Vec<_>>(), ["A2"]);
        assert_eq!(p.answer("a").unwrap().waiters, [1, 2]);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut p = PendingSends::new(2);
        p.add("a", "A".into(), 1).unwrap();
        p.add("b", "B".into(), 2).unwrap();
        assert_eq!(p.add("c", "C".into(), 3), Err(3), "the waiter comes back");
        p.answer("a");
        assert_eq!(p.add("c", "C".into(), 3), Ok(()));
        assert_eq!(p.frame_of("c"), Some("C"));
        assert_eq!(p.drain().count(), 2);
        assert_eq!(p.len(), 0);
    }
}
