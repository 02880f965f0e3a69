//! Presence and typing (protocol v1): who is in each chat, one entry per identity, on every
//! server; and typing indicators, never stored, at most one per identity and chat per
//! [`TYPING_INTERVAL`].
//!
//! Every socket (v0 and v1) is counted while it is open ([`Presence::enter`]); v1 sockets also
//! listen (they receive `presence_join`, `presence_leave` and `typing`). Across servers, over
//! the bus's ephemeral events: a server announces a member when its first socket of the chat
//! opens there (`Present`), when asked (`Query`, sent by a v1 socket once it joined its chat),
//! and every [`REFRESH`] while someone may listen (a v1 socket here, or members of other
//! servers in the chat); and when its last one closes (`Absent`). A member another server
//! announced and has not refreshed for [`EXPIRE`] is dropped (a server that died).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use jiva_core::{Bus, ChatEvent, ChatId, EventKind, MemberRole, PresenceMember, ReceivedEvent};
use jiva_protocol::{Member, PresenceChange, Role, ServerFrame, Typing};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::encode;
use crate::frames::Frame;

/// How often a server announces its members again.
pub(crate) const REFRESH: Duration = Duration::from_secs(10);

/// How long a member announced by another server stays without a refresh.
pub(crate) const EXPIRE: Duration = Duration::from_secs(30);

/// At most one typing frame per identity and chat in this time.
pub(crate) const TYPING_INTERVAL: Duration =
    Duration::from_millis(jiva_protocol::TYPING_INTERVAL_MS as u64);

/// A v1 socket that hears presence and typing.
pub(crate) struct Listener {
    pub conn: u64,
    pub tx: mpsc::Sender<Frame>,
    pub slow: CancellationToken,
}

#[derive(Default)]
struct ChatPresence {
    /// Sockets per member here.
    local: Local,
    /// Members other servers announced, by server, with when they last did.
    remote: HashMap<String, HashMap<Member, Instant>>,
    /// v1 sockets here.
    listeners: Vec<(Member, Listener)>,
    /// When each member's last typing frame was relayed, and whether it said "typing".
    typing: HashMap<Member, (Instant, bool)>,
}

/// Sockets per member of a chat on this server. A list rather than a map: a chat has a few
/// members, and a map's first insert reserves four buckets (192 bytes with the allocator's
/// rounding) where the list holds one member in 40, for every open chat. Look-ups are linear
/// in the chat's members, once per socket that enters or leaves.
#[derive(Debug, Default)]
struct Local(Vec<(Member, usize)>);

impl Local {
    fn contains(&self, member: &Member) -> bool {
        self.0.iter().any(|(m, _)| m == member)
    }

    /// Counts one more socket of `member`; returns how many it has here now.
    fn enter(&mut self, member: &Member) -> usize {
        if let Some((_, count)) = self.0.iter_mut().find(|(m, _)| m == member) {
            *count += 1;
            return *count;
        }
        if self.0.capacity() == 0 {
            self.0.reserve_exact(1);
        }
        self.0.push((member.clone(), 1));
        1
    }

    /// Counts one socket of `member` fewer; true when that was its last here.
    fn leave(&mut self, member: &Member) -> bool {
        let Some(at) = self.0.iter().position(|(m, _)| m == member) else {
            return false;
        };
        let Some((_, count)) = self.0.get_mut(at) else {
            return false;
        };
        *count = count.saturating_sub(1);
        if *count > 0 {
            return false;
        }
        self.0.swap_remove(at);
        true
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.0.iter().map(|(m, _)| m)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ChatPresence {
    fn has(&self, member: &Member) -> bool {
        self.local.contains(member) || self.remote.values().any(|r| r.contains_key(member))
    }

    /// Everyone, sorted by role, then id.
    fn members(&self) -> Vec<Member> {
        let mut all: Vec<Member> = self
            .local
            .members()
            .chain(self.remote.values().flat_map(HashMap::keys))
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.role, &a.id).cmp(&(b.role, &b.id)));
        all.dedup();
        all
    }

    /// Queues `frame` on every listener but `except`'s sockets; a full queue marks it slow.
    fn tell(&mut self, frame: &ServerFrame, except: Option<&Member>) {
        if self.listeners.is_empty() {
            return;
        }
        let frame = encode::own(frame);
        self.listeners.retain(|(member, listener)| {
            if except == Some(member) {
                return true;
            }
            match listener.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    listener.slow.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

struct Inner {
    bus: Arc<dyn Bus>,
    chats: Mutex<HashMap<ChatId, ChatPresence>>,
    /// Where the events of the cancel relay go (set once by the server's state).
    relay: std::sync::OnceLock<Arc<jiva_chat::CancelRelay>>,
}

/// The presence of every chat with a socket here.
pub(crate) struct Presence {
    inner: Arc<Inner>,
    _stop: DropGuard,
}

/// A socket counted in its chat's presence until dropped.
pub(crate) struct Entered {
    inner: Arc<Inner>,
    chat: ChatId,
    member: Member,
    conn: Option<u64>,
}

fn to_core(member: &Member) -> PresenceMember {
    PresenceMember {
        id: member.id.clone(),
        role: match member.role {
            Role::Agent => MemberRole::Agent,
            Role::Supervisor => MemberRole::Supervisor,
            Role::Anonymous => MemberRole::Anonymous,
        },
    }
}

fn from_core(member: &PresenceMember) -> Member {
    Member {
        id: member.id.clone(),
        role: match member.role {
            MemberRole::Agent => Role::Agent,
            MemberRole::Supervisor => Role::Supervisor,
            MemberRole::Anonymous => Role::Anonymous,
        },
    }
}

fn joined(member: &Member) -> ServerFrame {
    ServerFrame::PresenceJoin(PresenceChange {
        member: member.clone(),
    })
}

fn left(member: &Member) -> ServerFrame {
    ServerFrame::PresenceLeave(PresenceChange {
        member: member.clone(),
    })
}

impl Presence {
    /// Presence over `bus`; receives other servers' events and refreshes this server's on
    /// tasks of the current tokio runtime (none outside one: then presence is this server's).
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        let inner = Arc::new(Inner {
            bus,
            chats: Mutex::new(HashMap::new()),
            relay: std::sync::OnceLock::new(),
        });
        let stop = CancellationToken::new();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            match inner.bus.events() {
                Ok(events) => {
                    runtime.spawn(receive(Arc::downgrade(&inner), events, stop.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "the bus's events are unavailable"),
            }
            runtime.spawn(refresh(Arc::downgrade(&inner), stop.clone()));
        }
        Self {
            inner,
            _stop: stop.drop_guard(),
        }
    }

    /// Counts a socket of `member` in `chat` (and, for a v1 socket, makes it a listener);
    /// returns the guard and everyone in the chat now.
    pub fn enter(
        &self,
        chat: &ChatId,
        member: Member,
        listener: Option<Listener>,
    ) -> (Entered, Vec<Member>) {
        let conn = listener.as_ref().map(|l| l.conn);
        let mut chats = self.inner.lock();
        let entry = chats.entry(chat.clone()).or_default();
        let known = entry.has(&member);
        let first_here = entry.local.enter(&member) == 1;
        if !known {
            entry.tell(&joined(&member), Some(&member));
        }
        if let Some(listener) = listener {
            entry.listeners.push((member.clone(), listener));
        }
        // Only a listener is told who is there.
        let members = match conn {
            Some(_) => entry.members(),
            None => Vec::new(),
        };
        if first_here {
            self.inner
                .publish(chat, EventKind::Present(to_core(&member)));
        }
        drop(chats);
        metrics::gauge!("jiva_v1_presence_members").increment(if first_here { 1.0 } else { 0.0 });
        (
            Entered {
                inner: Arc::clone(&self.inner),
                chat: chat.clone(),
                member,
                conn,
            },
            members,
        )
    }

    /// Hands the bus's cancel events (of the one event stream presence reads) to `relay`.
    pub fn relay_cancels(&self, relay: Arc<jiva_chat::CancelRelay>) {
        let _ = self.inner.relay.set(relay);
    }

    /// Asks the other servers who of theirs is in `chat` (after this server follows it).
    pub fn query(&self, chat: &ChatId) {
        self.inner.publish(chat, EventKind::Query);
    }

    /// Relays that `member` is typing (or stopped) to the chat's other listeners here and on
    /// other servers; false when it came too soon after the last one (dropped).
    pub fn typing(&self, chat: &ChatId, member: &Member, active: bool) -> bool {
        let mut chats = self.inner.lock();
        let Some(entry) = chats.get_mut(chat) else {
            return false;
        };
        let now = Instant::now();
        let last = entry.typing.get(member).copied();
        // A stop that clears an indicator shown is always relayed (else it would linger until
        // it expires); so at most one "typing" and one stop go out per interval.
        let clears_shown = !active && last.is_some_and(|(_, shown)| shown);
        if !clears_shown && last.is_some_and(|(at, _)| now.duration_since(at) < TYPING_INTERVAL) {
            metrics::counter!("jiva_v1_typing_dropped_total").increment(1);
            return false;
        }
        entry.typing.insert(member.clone(), (now, active));
        entry.tell(
            &ServerFrame::Typing(Typing {
                member: member.clone(),
                active,
            }),
            Some(member),
        );
        self.inner.publish(
            chat,
            EventKind::Typing {
                member: to_core(member),
                active,
            },
        );
        true
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChatId, ChatPresence>> {
        self.chats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, chat: &ChatId, kind: EventKind) {
        self.bus.publish_event(&ChatEvent {
            chat: chat.clone(),
            kind,
        });
    }

    fn leave(&self, chat: &ChatId, member: &Member, conn: Option<u64>) {
        let mut chats = self.lock();
        let Some(entry) = chats.get_mut(chat) else {
            return;
        };
        if let Some(conn) = conn {
            entry.listeners.retain(|(_, l)| l.conn != conn);
        }
        let mut last_here = false;
        if entry.local.leave(member) {
            entry.typing.remove(member);
            last_here = true;
        }
        if last_here && !entry.has(member) {
            entry.tell(&left(member), None);
        }
        if entry.local.is_empty() && entry.listeners.is_empty() {
            chats.remove(chat);
        }
        if last_here {
            self.publish(chat, EventKind::Absent(to_core(member)));
            metrics::gauge!("jiva_v1_presence_members").decrement(1.0);
        }
    }

    fn received(&self, event: ReceivedEvent) {
        if let EventKind::CancelAsk { .. }
        | EventKind::CancelTaken { .. }
        | EventKind::TurnCancelled { .. } = event.event.kind
        {
            if let Some(relay) = self.relay.get() {
                relay.received(&event);
            }
            return;
        }
        let ReceivedEvent { from, event } = event;
        let mut chats = self.lock();
        let Some(entry) = chats.get_mut(&event.chat) else {
            return;
        };
        match event.kind {
            EventKind::Query => {
                for member in entry.local.members() {
                    self.publish(&event.chat, EventKind::Present(to_core(member)));
                }
            }
            EventKind::Present(member) => {
                let member = from_core(&member);
                let known = entry.has(&member);
                entry
                    .remote
                    .entry(from)
                    .or_default()
                    .insert(member.clone(), Instant::now());
                if !known {
                    entry.tell(&joined(&member), None);
                }
            }
            EventKind::Absent(member) => {
                let member = from_core(&member);
                if let Some(theirs) = entry.remote.get_mut(&from) {
                    theirs.remove(&member);
                    if theirs.is_empty() {
                        entry.remote.remove(&from);
                    }
                }
                if !entry.has(&member) {
                    entry.tell(&left(&member), None);
                }
            }
            EventKind::Typing { member, active } => {
                let member = from_core(&member);
                let frame = ServerFrame::Typing(Typing {
                    member: member.clone(),
                    active,
                });
                entry.tell(&frame, Some(&member));
            }
            // The cancel relay's (handed over above).
            EventKind::CancelAsk { .. }
            | EventKind::CancelTaken { .. }
            | EventKind::TurnCancelled { .. } => {}
        }
    }

    /// Announces this server's members again and drops other servers' stale ones.
    fn refresh(&self) {
        let now = Instant::now();
        let mut chats = self.lock();
        for (chat, entry) in chats.iter_mut() {
            // Only where someone listens (a v1 socket here, or another server with members in
            // the chat, whose own v1 sockets may listen): a chat of v0 sockets alone costs the
            // bus nothing between joins and leaves.
            if !entry.listeners.is_empty() || !entry.remote.is_empty() {
                for member in entry.local.members() {
                    self.publish(chat, EventKind::Present(to_core(member)));
                }
            }
            let mut gone = Vec::new();
            entry.remote.retain(|_, theirs| {
                theirs.retain(|member, seen| {
                    let fresh = now.duration_since(*seen) < EXPIRE;
                    if !fresh {
                        gone.push(member.clone());
                    }
                    fresh
                });
                !theirs.is_empty()
            });
            for member in gone {
                if !entry.has(&member) {
                    entry.tell(&left(&member), None);
                }
            }
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.inner.leave(&self.chat, &self.member, self.conn);
    }
}

async fn receive(inner: Weak<Inner>, mut events: jiva_core::Events, stop: CancellationToken) {
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            () = stop.cancelled() => return,
        };
        let (Some(event), Some(inner)) = (next, inner.upgrade()) else {
            return;
        };
        inner.received(event);
    }
}

async fn refresh(inner: Weak<Inner>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(Instant::now() + REFRESH, REFRESH);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use jiva_core::{AgentId, BusError, ConnectionType, Incoming, Message};
    use serde_json::Value;

    /// A bus that records the events published and hands out those the test sends.
    struct TestBus {
        published: Mutex<Vec<ChatEvent>>,
        events: Mutex<Option<mpsc::Receiver<ReceivedEvent>>>,
    }

    #[async_trait]
    impl Bus for TestBus {
        fn publish(&self, _: &Message) {}
        async fn follow(&self, _: &ChatId) -> Result<(), BusError> {
            Ok(())
        }
        async fn unfollow(&self, _: &ChatId) -> Result<(), BusError> {
            Ok(())
        }
        fn incoming(&self) -> Result<Incoming, BusError> {
            Err(BusError::AlreadyTaken)
        }
        fn connected(&self) -> bool {
            true
        }
        fn publish_event(&self, event: &ChatEvent) {
            self.published.lock().unwrap().push(event.clone());
        }
        fn events(&self) -> Result<jiva_core::Events, BusError> {
            let rx = self.events.lock().unwrap().take().unwrap();
            Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async {
                rx.recv().await.map(|e| (e, rx))
            })))
        }
    }

    fn chat() -> ChatId {
        ChatId::new(AgentId::parse("a-1").unwrap(), ConnectionType::Supervisor)
    }

    #[test]
    fn a_member_stays_here_until_its_last_socket_leaves() {
        let mut local = Local::default();
        let ana = member("ana", Role::Agent);
        let sam = member("sam", Role::Supervisor);
        assert_eq!(local.enter(&ana), 1);
        assert_eq!(local.enter(&sam), 1);
        assert_eq!(local.enter(&ana), 2);
        assert!(!local.leave(&ana), "ana still has a socket");
        assert!(local.contains(&ana));
        assert!(local.leave(&ana), "ana's last socket left");
        assert!(!local.contains(&ana));
        assert!(!local.leave(&ana), "a member not here has nothing to leave");
        assert_eq!(local.members().collect::<Vec<_>>(), [&sam]);
        assert!(local.leave(&sam));
        assert!(local.is_empty());
    }

    fn member(id: &str, role: Role) -> Member {
        Member {
            id: id.into(),
            role,
        }
    }

    fn frame(rx: &mut mpsc::Receiver<Frame>) -> Value {
        serde_json::from_str(&rx.try_recv().unwrap().text).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_clears_the_indicator_at_once_but_typing_stays_limited() {
        let bus = Arc::new(TestBus {
            published: Mutex::new(Vec::new()),
            events: Mutex::new(Some(mpsc::channel(1).1)),
        });
        let presence = Presence::new(Arc::clone(&bus) as Arc<dyn Bus>);
        let (tx, mut rx) = mpsc::channel(16);
        let me = member("a-1", Role::Agent);
        let other = member("s-9", Role::Supervisor);
        let listener = Listener {
            conn: 1,
            tx,
            slow: CancellationToken::new(),
        };
        let (_listening, _) = presence.enter(&chat(), me, Some(listener));
        let (_typist, _) = presence.enter(&chat(), other.clone(), None);
        while rx.try_recv().is_ok() {}
        let relayed: Vec<bool> = [true, false, true, false, false]
            .into_iter()
            .map(|active| presence.typing(&chat(), &other, active))
            .collect();
        // "typing", then its stop at once; a second "typing" within the interval is dropped,
        // and so are stops of an indicator already cleared.
        assert_eq!(relayed, [true, true, false, false, false]);
        assert_eq!(frame(&mut rx)["active"], true);
        assert_eq!(frame(&mut rx)["active"], false);
        assert!(rx.try_recv().is_err());
        tokio::time::advance(TYPING_INTERVAL).await;
        assert!(presence.typing(&chat(), &other, true));
    }

    #[tokio::test(start_paused = true)]
    async fn another_servers_member_is_forgotten_when_it_stops_announcing_and_ours_are_refreshed() {
        let (events_tx, events_rx) = mpsc::channel(8);
        let bus = Arc::new(TestBus {
            published: Mutex::new(Vec::new()),
            events: Mutex::new(Some(events_rx)),
        });
        let presence = Presence::new(Arc::clone(&bus) as Arc<dyn Bus>);
        let (tx, mut rx) = mpsc::channel(16);
        let me = member("a-1", Role::Agent);
        let listener = Listener {
            conn: 1,
            tx,
            slow: CancellationToken::new(),
        };
        let (_entered, members) = presence.enter(&chat(), me.clone(), Some(listener));
        assert_eq!(members, std::slice::from_ref(&me));
        let other = member("s-9", Role::Supervisor);
        events_tx
            .send(ReceivedEvent {
                from: "node-b".into(),
                event: ChatEvent {
                    chat: chat(),
                    kind: EventKind::Present(to_core(&other)),
                },
            })
            .await
            .unwrap();
        // The event is handled on the presence's own task.
        while rx.is_empty() {
            tokio::task::yield_now().await;
        }
        let join = frame(&mut rx);
        assert_eq!(join["type"], "presence_join");
        assert_eq!(join["member"]["id"], "s-9");
        // Node B says nothing more: after EXPIRE (checked at each REFRESH) its member is gone.
        tokio::time::sleep(EXPIRE + REFRESH).await;
        let leave = frame(&mut rx);
        assert_eq!(leave["type"], "presence_leave");
        assert_eq!(leave["member"]["id"], "s-9");
        // Ours was announced at entry and again at each refresh.
        let announced = bus
            .published
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::Present(to_core(&me)))
            .count();
        assert!(announced >= 3, "{announced}");
    }
}
