//! Limits on what one client can take from the server: open sockets (in total and per client
//! IP), handshakes per IP per second, messages per socket, copilot questions per agent per
//! minute, and how long a silent socket stays open.
//!
//! Rate limits use `governor` (GCRA token buckets). Its keyed state is swept of keys that are
//! back to a full bucket every [`SWEEP_EVERY`] checks, so it holds only the recently active keys
//! plus at most that many stale ones. The per-IP socket counts drop an IP when its last socket
//! closes. A limit set to 0 is off.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiva_core::{AgentId, ConnectionType, Message};
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

use crate::frames::{self, Frame};
use crate::state::State;

/// Keyed limiters are swept of idle keys once per this many checks.
const SWEEP_EVERY: u64 = 1024;

/// Excess frames in a row (with no accepted frame between them) after which a socket is closed
/// with [`crate::CLOSE_POLICY`].
pub const EXCESS_FRAMES_BEFORE_CLOSE: u32 = 10;

/// The limits of one transport. `Limits::default()` is what the server uses unless told
/// otherwise; 0 turns a limit off.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sockets open at once (handshakes in progress included); one more is answered 503.
    pub max_sockets: usize,
    /// Sockets open at once from one client IP; one more is answered 429.
    pub max_sockets_per_ip: usize,
    /// Take the client IP from the right-most `X-Forwarded-For` entry (the one the trusted
    /// proxy in front of the server appended) instead of the TCP peer. Only behind a proxy that
    /// appends it: otherwise any client can pick its own IP.
    pub trust_forwarded_for: bool,
    /// WebSocket handshakes per client IP per second (and as a burst); one more is answered 429.
    pub handshakes_per_ip_per_sec: u32,
    /// Data frames per socket per second, after the burst (keepalives count). An excess frame
    /// is not handled: the first of a run gets an error frame, and a socket that sends
    /// [`EXCESS_FRAMES_BEFORE_CLOSE`] in a row is closed with 1008.
    pub messages_per_sec: u32,
    /// Frames a socket may send at once before `messages_per_sec` paces it.
    pub message_burst: u32,
    /// Copilot questions per agent per minute (and as a burst); one more gets an error frame
    /// and `end`, and is neither stored nor asked.
    pub copilot_questions_per_min: u32,
    /// A socket from which nothing (no frame, no pong) arrived for this long is closed; the
    /// server pings it every third of this.
    pub idle_timeout: Duration,
    /// A connection that has not sent a whole request head this long after connecting (or
    /// after its previous request) is closed.
    pub request_header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sockets: 100_000,
            max_sockets_per_ip: 100,
            trust_forwarded_for: false,
            handshakes_per_ip_per_sec: 50,
            messages_per_sec: 50,
            message_burst: 500,
            copilot_questions_per_min: 30,
            idle_timeout: Duration::from_secs(90),
            request_header_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a handshake or a frame was refused; `code()` is the stable label of its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_sockets` reached.
    SocketsTotal,
    /// `max_sockets_per_ip` reached.
    SocketsPerIp,
    /// `handshakes_per_ip_per_sec` exceeded.
    HandshakeRate,
    /// `messages_per_sec` exceeded.
    MessageRate,
    /// `copilot_questions_per_min` exceeded.
    CopilotRate,
}

impl Refusal {
    /// The label of this refusal in `jiva_handshakes_refused_total` and
    /// `jiva_messages_refused_total`.
    pub fn code(self) -> &'static str {
        match self {
            Self::SocketsTotal => "sockets_total",
            Self::SocketsPerIp => "sockets_per_ip",
            Self::HandshakeRate => "handshake_rate",
            Self::MessageRate => "message_rate",
            Self::CopilotRate => "copilot_rate",
        }
    }

    /// The reason the client is given.
    pub fn reason(self) -> &'static str {
        match self {
            Self::SocketsTotal => "too many connections",
            Self::SocketsPerIp => "too many connections from this address",
            Self::HandshakeRate => "too many connection attempts from this address",
            Self::MessageRate => "rate limit exceeded; message not stored",
            Self::CopilotRate => "copilot question limit reached; message not stored",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::SocketsTotal => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The HTTP answer to a refused handshake.
    pub fn response(self) -> Response {
        metrics::counter!("jiva_handshakes_refused_total", "reason" => self.code()).increment(1);
        (self.status(), format!("{}\n", self.reason())).into_response()
    }

    /// The frames a refused chat message gets.
    pub fn frames(self) -> Vec<Frame> {
        match self {
            Self::CopilotRate => vec![frames::error(self.reason()), frames::end()],
            _ => vec![frames::error(self.reason())],
        }
    }
}

fn quota(per: Duration, n: u32, burst: u32) -> Option<Quota> {
    let n = NonZeroU32::new(n)?;
    let burst = NonZeroU32::new(burst).unwrap_or(n);
    let quota = if per == Duration::from_secs(60) {
        Quota::per_minute(n)
    } else {
        Quota::per_second(n)
    };
    Some(quota.allow_burst(burst))
}

/// A keyed rate limiter swept of idle keys now and then.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &K) -> bool {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).is_ok()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// The transport's limit state.
pub(crate) struct Limiter {
    limits: Limits,
    open: Arc<AtomicUsize>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    handshakes: Option<Keyed<IpAddr>>,
    copilot: Option<Keyed<AgentId>>,
}

/// One admitted socket's place in the counts; released when dropped.
pub(crate) struct SocketPermit {
    open: Arc<AtomicUsize>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: Option<IpAddr>,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        let handshakes = quota(
            Duration::from_secs(1),
            limits.handshakes_per_ip_per_sec,
            limits.handshakes_per_ip_per_sec,
        )
        .map(Keyed::new);
        let copilot = quota(
            Duration::from_secs(60),
            limits.copilot_questions_per_min,
            limits.copilot_questions_per_min,
        )
        .map(Keyed::new);
        Self {
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            per_ip: Arc::new(Mutex::new(HashMap::new())),
            handshakes,
            copilot,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The client's IP: the right-most `X-Forwarded-For` entry when trusted and present, else
    /// the TCP peer (when the router was served with connect info).
    pub fn client_ip<B>(&self, request: &Request<B>) -> Option<IpAddr> {
        let forwarded = self
            .limits
            .trust_forwarded_for
            .then(|| forwarded_for(request.headers()))
            .flatten();
        forwarded.or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        })
    }

    /// Admits one more socket from `ip` (handshake rate, then total, then per IP), or refuses.
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<SocketPermit, Refusal> {
        if let (Some(handshakes), Some(ip)) = (&self.handshakes, ip) {
            if !handshakes.check(&ip) {
                return Err(Refusal::HandshakeRate);
            }
        }
        let max = self.limits.max_sockets;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refusal::SocketsTotal);
        }
        let mut permit = SocketPermit {
            open: Arc::clone(&self.open),
            per_ip: Arc::clone(&self.per_ip),
            ip: None,
        };
        if let Some(ip) = ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = per_ip.entry(ip).or_insert(0);
            let max = self.limits.max_sockets_per_ip;
            if max != 0 && *n >= max {
                if *n == 0 {
                    per_ip.remove(&ip);
                }
                return Err(Refusal::SocketsPerIp);
            }
            *n += 1;
            permit.ip = Some(ip);
        }
        Ok(permit)
    }

    /// Whether `agent` may ask the copilot one more question now.
    pub fn copilot_question(&self, agent: &AgentId) -> Result<(), Refusal> {
        match &self.copilot {
            Some(copilot) if !copilot.check(agent) => {
                count_refused_message(Refusal::CopilotRate);
                Err(Refusal::CopilotRate)
            }
            _ => Ok(()),
        }
    }

    /// A fresh message bucket for one socket.
    pub fn message_bucket(&self) -> MessageBucket {
        MessageBucket {
            limiter: quota(
                Duration::from_secs(1),
                self.limits.messages_per_sec,
                self.limits.message_burst,
            )
            .map(RateLimiter::direct),
            excess: 0,
        }
    }
}

/// Why a chat message to the copilot must be refused now, if it must.
pub(crate) fn copilot_refusal(state: &State, message: &Message) -> Option<Refusal> {
    if message.chat.kind() != ConnectionType::Copilot {
        return None;
    }
    state.limiter.copilot_question(message.chat.agent()).err()
}

/// When a socket was last heard from, and the ticks at which the server pings it.
pub(crate) struct Liveness {
    timeout: Duration,
    last: Instant,
    ticker: Option<Interval>,
}

impl Liveness {
    /// Pings every third of `timeout`; a zero timeout never ticks.
    pub fn new(timeout: Duration) -> Self {
        let ticker = (!timeout.is_zero()).then(|| {
            let period = (timeout / 3).max(Duration::from_millis(1));
            let mut ticker = interval_at(Instant::now() + period, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker
        });
        Self {
            timeout,
            last: Instant::now(),
            ticker,
        }
    }

    /// Something (a frame, a pong) arrived.
    pub fn seen(&mut self) {
        self.last = Instant::now();
    }

    /// Waits for the next tick: true when the socket should be pinged, false when it has been
    /// silent for the whole timeout and must be closed (counted here). Cancel-safe.
    pub async fn tick(&mut self) -> bool {
        let Some(ticker) = &mut self.ticker else {
            return std::future::pending().await;
        };
        ticker.tick().await;
        if self.last.elapsed() >= self.timeout {
            metrics::counter!("jiva_idle_closes_total").increment(1);
            tracing::debug!("closing an idle socket");
            return false;
        }
        true
    }
}

/// The right-most parseable `X-Forwarded-For` entry (of the last such header).
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

fn count_refused_message(refusal: Refusal) {
    metrics::counter!("jiva_messages_refused_total", "reason" => refusal.code()).increment(1);
}

/// What to do with one inbound data frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Handle it.
    Accept,
    /// Drop it, telling the client (the first excess frame of a run).
    Refuse,
    /// Drop it silently (a later excess frame of the same run).
    Drop,
    /// The client kept sending over the limit: close the socket with 1008.
    Close,
}

/// One socket's message token bucket.
pub(crate) struct MessageBucket {
    limiter: Option<DefaultDirectRateLimiter>,
    excess: u32,
}

impl MessageBucket {
    /// Takes a token for one inbound data frame.
    pub fn take(&mut self) -> Verdict {
        let Some(limiter) = &self.limiter else {
            return Verdict::Accept;
        };
        if limiter.check().is_ok() {
            self.excess = 0;
            return Verdict::Accept;
        }
        self.excess += 1;
        count_refused_message(Refusal::MessageRate);
        match self.excess {
            1 => Verdict::Refuse,
            n if n >= EXCESS_FRAMES_BEFORE_CLOSE => {
                metrics::counter!("jiva_rate_limit_closes_total").increment(1);
                Verdict::Close
            }
            _ => Verdict::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn socket_counts_are_released_and_empty_ips_forgotten() {
        let limiter = Limiter::new(Limits {
            max_sockets: 3,
            max_sockets_per_ip: 2,
            handshakes_per_ip_per_sec: 0,
            ..Limits::default()
        });
        let a1 = limiter.admit(ip(1)).unwrap();
        let _a2 = limiter.admit(ip(1)).unwrap();
        assert_eq!(limiter.admit(ip(1)).err(), Some(Refusal::SocketsPerIp));
        let _b = limiter.admit(ip(2)).unwrap();
        assert_eq!(limiter.admit(ip(3)).err(), Some(Refusal::SocketsTotal));
        assert_eq!(limiter.admit(None).err(), Some(Refusal::SocketsTotal));
        drop(a1);
        let c = limiter.admit(ip(3)).unwrap();
        drop(c);
        assert!(
            !limiter
                .per_ip
                .lock()
                .unwrap()
                .contains_key(&IpAddr::from([10, 0, 0, 3]))
        );
        assert_eq!(limiter.open.load(Ordering::Acquire), 2);
    }

    #[test]
    fn handshake_rate_is_per_ip_and_a_sweep_keeps_active_keys() {
        let limiter = Limiter::new(Limits {
            handshakes_per_ip_per_sec: 1,
            ..Limits::default()
        });
        assert!(limiter.admit(ip(1)).is_ok());
        assert_eq!(limiter.admit(ip(1)).err(), Some(Refusal::HandshakeRate));
        assert!(limiter.admit(ip(2)).is_ok());
        let handshakes = limiter.handshakes.as_ref().unwrap();
        assert_eq!(handshakes.len(), 2);
        handshakes.limiter.retain_recent();
        // Both buckets were used within the second, so both are still there.
        assert_eq!(handshakes.len(), 2);
    }

    #[test]
    fn forwarded_for_takes_the_right_most_entry() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        headers.append("x-forwarded-for", "3.3.3.3, 4.4.4.4".parse().unwrap());
        assert_eq!(forwarded_for(&headers), Some(IpAddr::from([4, 4, 4, 4])));
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "[::1]:80".parse().unwrap());
        assert_eq!(
            forwarded_for(&headers),
            Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(forwarded_for(&headers), None);
    }

    #[test]
    fn a_message_run_is_refused_once_then_dropped_then_closed() {
        let limiter = Limiter::new(Limits {
            messages_per_sec: 1,
            message_burst: 2,
            ..Limits::default()
        });
        let mut bucket = limiter.message_bucket();
        assert_eq!(bucket.take(), Verdict::Accept);
        assert_eq!(bucket.take(), Verdict::Accept);
        assert_eq!(bucket.take(), Verdict::Refuse);
        for _ in 2..EXCESS_FRAMES_BEFORE_CLOSE {
            assert_eq!(bucket.take(), Verdict::Drop);
        }
        assert_eq!(bucket.take(), Verdict::Close);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_socket_is_pinged_then_given_up_and_any_frame_keeps_it() {
        let mut liveness = Liveness::new(Duration::from_secs(3));
        // Pinged at 1 s and 2 s, given up at 3 s.
        assert!(liveness.tick().await);
        assert!(liveness.tick().await);
        assert!(!liveness.tick().await);
        // Something arrived just before each tick: never given up.
        let mut liveness = Liveness::new(Duration::from_secs(3));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(900)).await;
            liveness.seen();
            assert!(liveness.tick().await);
        }
        // Off: never ticks.
        let mut off = Liveness::new(Duration::ZERO);
        let ticked = tokio::time::timeout(Duration::from_secs(3600), off.tick()).await;
        assert!(ticked.is_err());
    }

    #[test]
    fn zero_turns_limits_off() {
        let limiter = Limiter::new(Limits {
            max_sockets: 0,
            max_sockets_per_ip: 0,
            handshakes_per_ip_per_sec: 0,
            messages_per_sec: 0,
            copilot_questions_per_min: 0,
            ..Limits::default()
        });
        let permits: Vec<_> = (0..1000).map(|_| limiter.admit(ip(1)).unwrap()).collect();
        assert_eq!(permits.len(), 1000);
        let mut bucket = limiter.message_bucket();
        assert!((0..1000).all(|_| bucket.take() == Verdict::Accept));
        let agent = AgentId::parse("a").unwrap();
        assert!((0..1000).all(|_| limiter.copilot_question(&agent).is_ok()));
    }
}
