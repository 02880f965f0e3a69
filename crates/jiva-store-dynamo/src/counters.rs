//! The store's memory of each chat's next sequence number (native key design).
//!
//! An append takes the chat's next number from here and writes its message at that number's
//! sort key with a conditional put, in one round trip. The memory is only a guess: another
//! server may have taken the number (the put's condition fails and the store reads the chat's
//! newest numbers again), and an append that failed in an unknown way (a time-out after the
//! write may have landed) leaves the chat *in doubt*: its next append reads the newest numbers
//! first, and a retry of the doubtful message finds itself there instead of being stored twice.
//! The numbers of the messages this store appended last are remembered too, so that a retry of
//! a message whose append succeeded returns its number without a request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use jiva_core::{MessageId, Seq};

/// Chats remembered at most; past this the memory is cleared (each chat is then read again).
const REMEMBERED: usize = 100_000;

/// Appended messages whose numbers are remembered (the oldest is forgotten first).
const APPENDED: usize = 4096;

#[derive(Debug, Default)]
struct Chat {
    /// The next number to try; `None` when it must be read from the table first.
    next: Option<u64>,
}

/// Per-chat next numbers, shared by the clones of a store.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    chats: HashMap<String, Chat>,
    /// Messages whose append failed in a way that may have stored them.
    doubtful: HashSet<MessageId>,
    /// The numbers of the last [`APPENDED`] messages this store appended, and their order.
    appended: HashMap<MessageId, Seq>,
    appended_order: VecDeque<MessageId>,
}

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `chat`'s newest numbers must be read before appending `id`: its next number is
    /// unknown, or `id` is a message whose earlier append may have landed.
    pub fn must_read(&self, chat: &str, id: MessageId) -> bool {
        let inner = self.lock();
        inner.doubtful.contains(&id) || inner.chats.get(chat).is_none_or(|c| c.next.is_none())
    }

    /// Records that `chat`'s newest stored number is `head` (0: none).
    pub fn saw(&self, chat: &str, head: u64) {
        let mut inner = self.lock();
        if inner.chats.len() >= REMEMBERED && !inner.chats.contains_key(chat) {
            inner.chats.clear();
        }
        let entry = inner.chats.entry(chat.to_owned()).or_default();
        let after = head.saturating_add(1);
        entry.next = Some(entry.next.map_or(after, |n| n.max(after)));
    }

    /// Takes `chat`'s next number, if it is known.
    pub fn take(&self, chat: &str) -> Option<Seq> {
        let mut inner = self.lock();
        let entry = inner.chats.get_mut(chat)?;
        let next = entry.next?;
        entry.next = Some(next.saturating_add(1));
        Some(Seq::new(next))
    }

    /// Gives back `seq`, taken for `chat` and not written, when no number was taken after it,
    /// so that the chat's next append uses it (no unused number is left).
    pub fn put_back(&self, chat: &str, seq: Seq) {
        let mut inner = self.lock();
        if let Some(entry) = inner.chats.get_mut(chat) {
            if entry.next == Some(seq.get().saturating_add(1)) {
                entry.next = Some(seq.get());
            }
        }
    }

    /// The number this store appended `id` with, if it still remembers.
    pub fn appended(&self, id: MessageId) -> Option<Seq> {
        self.lock().appended.get(&id).copied()
    }

    /// The append of `id` ended with number `seq`: it is no longer in doubt.
    pub fn settled(&self, id: MessageId, seq: Seq) {
        let mut inner = self.lock();
        if !inner.doubtful.is_empty() {
            inner.doubtful.remove(&id);
        }
        if inner.appended.insert(id, seq).is_none() {
            inner.appended_order.push_back(id);
            if inner.appended_order.len() > APPENDED {
                if let Some(old) = inner.appended_order.pop_front() {
                    inner.appended.remove(&old);
                }
            }
        }
    }

    /// The append of `id` to `chat` failed in a way that may have stored it.
    pub fn doubt(&self, chat: &str, id: MessageId) {
        let mut inner = self.lock();
        if inner.doubtful.len() >= REMEMBERED {
            inner.doubtful.clear();
        }
        inner.doubtful.insert(id);
        if let Some(entry) = inner.chats.get_mut(chat) {
            entry.next = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_taken_in_order_after_what_was_seen() {
        let c = Counters::default();
        let id = MessageId::new_v7();
        assert!(c.must_read("a", id));
        assert_eq!(c.take("a"), None);
        c.saw("a", 0);
        assert!(!c.must_read("a", id));
        assert_eq!(c.take("a"), Some(Seq::new(1)));
        assert_eq!(c.take("a"), Some(Seq::new(2)));
        // Seeing an older head never moves the counter back.
        c.saw("a", 1);
        assert_eq!(c.take("a"), Some(Seq::new(3)));
        c.saw("a", 10);
        assert_eq!(c.take("a"), Some(Seq::new(11)));
    }

    #[test]
    fn a_number_given_back_is_taken_again_unless_a_later_one_was_taken() {
        let c = Counters::default();
        c.saw("a", 0);
        let one = c.take("a").unwrap();
        c.put_back("a", one);
        assert_eq!(c.take("a"), Some(one));
        let two = c.take("a").unwrap();
        let three = c.take("a").unwrap();
        c.put_back("a", two);
        assert_eq!(
            c.take("a"),
            Some(three.next()),
            "3 was taken after 2: 2 stays unused"
        );
    }

    #[test]
    fn a_doubtful_append_makes_its_chat_and_its_message_read_again() {
        let c = Counters::default();
        let id = MessageId::new_v7();
        let other = MessageId::new_v7();
        c.saw("a", 4);
        c.doubt("a", id);
        assert!(c.must_read("a", other));
        c.saw("a", 5);
        assert!(!c.must_read("a", other));
        assert!(
            c.must_read("a", id),
            "the doubtful message itself is checked"
        );
        c.settled(id, Seq::new(6));
        assert!(!c.must_read("a", id));
        assert_eq!(c.appended(id), Some(Seq::new(6)));
        assert_eq!(c.appended(other), None);
    }
}
