//! What every session shares: the current configuration (rules and users, replaced as a whole
//! on SIGHUP while sessions keep the one they started with), the timeouts, and admission: the
//! counters that enforce `--max-sessions` and `--max-sessions-per-client` for established
//! sessions, and the separate budget `--max-handshakes` for connections still in their
//! handshake.
//!
//! A connection is admitted at the door when there is room for one more established session
//! (in all and for its address) and takes a handshake place; completing the handshake trades it
//! for a session place. Unfinished handshakes never hold session places, so silent connections
//! cannot lock out a client that completes its handshake. When the handshake budget is full, a
//! new connection is still admitted and the oldest unfinished handshake of the address (IPv6:
//! the /64) holding the most of them is closed (evicted). Refusing at the door instead would let a crowd that
//! fills the budget once keep everyone out until the handshake deadline; with eviction, keeping
//! out a client that completes its handshake within a round trip takes a whole budget of new
//! connections within that round trip, and one address can only evict its own handshakes while
//! it holds the most.
//!
//! Not here: reading the files (`config`, `users`) or the sessions themselves.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use log::warn;
use socks_proto::rules::RuleSet;
use tokio::sync::Notify;

use crate::cli::Timeouts;
use crate::pam::Pam;
use crate::throttle::{self, LoginThrottle};
use crate::users::Users;

/// The parts of the configuration a SIGHUP re-reads.
#[derive(Debug)]
pub struct Config {
    /// The parsed rule file.
    pub rules: RuleSet,
    /// RFC 1929 users, when `--users` was given.
    pub users: Option<Users>,
    /// The PAM service that checks RFC 1929 logins, when `--pam` was given.
    pub pam: Option<Pam>,
}

impl Config {
    /// Whether SOCKS5 clients must log in (RFC 1929): with `--users` or `--pam`.
    pub fn passwords_required(&self) -> bool {
        self.users.is_some() || self.pam.is_some()
    }
}

/// Admission limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Established sessions at once, all clients together.
    pub max_sessions: usize,
    /// Established sessions at once from one client address.
    pub max_per_client: usize,
    /// Connections still in their handshake, all clients together.
    pub max_handshakes: usize,
}

/// Shared by all sessions.
#[derive(Debug)]
pub struct Context {
    config: RwLock<Arc<Config>>,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// Woken when the grace period of a stop is over: relaying sessions end and log it.
    pub stopping: Notify,
    /// Repeated failed logins per client address, slowed down (outlives SIGHUP).
    pub logins: LoginThrottle,
    /// The admission limits.
    pub limits: Limits,
    admission: Mutex<Admission>,
    refusals: RateLimitedReport,
    evictions: RateLimitedReport,
}

/// Who holds which place; one lock, taken briefly on accept, handshake end and session end.
#[derive(Debug, Default)]
struct Admission {
    sessions: usize,
    sessions_by_client: HashMap<IpAddr, usize>,
    handshakes: usize,
    /// Unfinished handshakes per address (IPv6 per /64), oldest first: (id, the signal that
    /// evicts it).
    pending: HashMap<IpAddr, VecDeque<(u64, Arc<Notify>)>>,
    next_id: u64,
}

impl Admission {
    /// Removes handshake `id` of `client`; whether it was still there (not evicted).
    fn remove_handshake(&mut self, client: IpAddr, id: u64) -> bool {
        let client = throttle::key(client);
        let Some(queue) = self.pending.get_mut(&client) else { return false };
        let Some(at) = queue.iter().position(|(held, _)| *held == id) else { return false };
        queue.remove(at);
        if queue.is_empty() {
            self.pending.remove(&client);
        }
        self.handshakes -= 1;
        true
    }

    /// Evicts the oldest handshake of the address holding the most (ties: the oldest of all).
    fn evict_one(&mut self) -> Option<IpAddr> {
        let (&victim, _) = self.pending.iter().max_by(|(_, a), (_, b)| {
            // More handshakes first; then the older front (smaller id) first.
            a.len().cmp(&b.len()).then_with(|| {
                let front = |q: &VecDeque<(u64, Arc<Notify>)>| q.front().map_or(0, |(id, _)| *id);
                front(b).cmp(&front(a))
            })
        })?;
        let queue = self.pending.get_mut(&victim)?;
        let (_, evict) = queue.pop_front()?;
        if queue.is_empty() {
            self.pending.remove(&victim);
        }
        self.handshakes -= 1;
        evict.notify_one();
        Some(victim)
    }

    /// Why `client` cannot have another established session now, if it cannot.
    fn no_session_place(&self, client: IpAddr, limits: &Limits) -> Option<Full> {
        if self.sessions >= limits.max_sessions {
            Some(Full::Total(limits.max_sessions))
        } else if self.sessions_by_client.get(&client).copied().unwrap_or(0)
            >= limits.max_per_client
        {
            Some(Full::PerClient(limits.max_per_client))
        } else {
            None
        }
    }

    fn release_session(&mut self, client: IpAddr) {
        self.sessions -= 1;
        if let Some(count) = self.sessions_by_client.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                self.sessions_by_client.remove(&client);
            }
        }
    }
}

/// Why a client was turned away (at the door, or when its handshake completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `--max-sessions` sessions are running.
    Total(usize),
    /// `--max-sessions-per-client` sessions are running for this address.
    PerClient(usize),
}

/// Which place an admitted connection holds.
#[derive(Debug)]
enum Place {
    /// A handshake place: its id and the signal that evicts it.
    Handshake(u64, Arc<Notify>),
    /// A session place.
    Session,
    /// None any more (refused when the handshake completed).
    Nothing,
}

/// An admitted connection's place in the counters; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    context: Arc<Context>,
    client: IpAddr,
    place: Place,
}

impl Admitted {
    /// Resolves when this connection's unfinished handshake is evicted to make room for a new
    /// connection (never, once it holds a session place).
    pub async fn evicted(&self) {
        match &self.place {
            Place::Handshake(_, evict) => evict.notified().await,
            Place::Session | Place::Nothing => std::future::pending().await,
        }
    }

    /// The handshake is complete: trades the handshake place for a session place, or says why
    /// there is none (established sessions filled up meanwhile; logged at most once a second).
    pub fn promote(&mut self) -> Result<(), Full> {
        let Place::Handshake(id, _) = self.place else {
            return match self.place {
                Place::Session => Ok(()),
                _ => Err(Full::Total(self.context.limits.max_sessions)),
            };
        };
        let limits = self.context.limits;
        let mut admission = self.context.admission();
        admission.remove_handshake(self.client, id);
        if let Some(full) = admission.no_session_place(self.client, &limits) {
            drop(admission);
            self.place = Place::Nothing;
            return Err(self.context.refused(full));
        }
        admission.sessions += 1;
        *admission.sessions_by_client.entry(self.client).or_insert(0) += 1;
        self.place = Place::Session;
        Ok(())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut admission = self.context.admission();
        match self.place {
            Place::Handshake(id, _) => {
                admission.remove_handshake(self.client, id);
            }
            Place::Session => admission.release_session(self.client),
            Place::Nothing => {}
        }
    }
}

/// A warning written at most once a second, saying how many events it stands for.
#[derive(Debug, Default)]
struct RateLimitedReport {
    since_log: AtomicU64,
    last_log: AtomicU64,
}

impl RateLimitedReport {
    /// Counts one event; `Some(events since the last line)` when a line is due now.
    fn count(&self) -> Option<u64> {
        let events = self.since_log.fetch_add(1, Ordering::AcqRel) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_log.load(Ordering::Acquire);
        if now > last
            && self
                .last_log
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.since_log.fetch_sub(events, Ordering::AcqRel);
            return Some(events);
        }
        None
    }
}

impl Context {
    /// A context with these settings.
    pub fn new(config: Config, timeouts: Timeouts, limits: Limits) -> Context {
        Context {
            config: RwLock::new(Arc::new(config)),
            timeouts,
            stopping: Notify::new(),
            logins: LoginThrottle::default(),
            limits,
            admission: Mutex::new(Admission::default()),
            refusals: RateLimitedReport::default(),
            evictions: RateLimitedReport::default(),
        }
    }

    /// The configuration now; a session keeps the one it got for its whole life.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts a new configuration in place for sessions that start from now on.
    pub fn replace_config(&self, config: Config) {
        let new = Arc::new(config);
        match self.config.write() {
            Ok(mut current) => *current = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    fn admission(&self) -> MutexGuard<'_, Admission> {
        match self.admission.lock() {
            Ok(admission) => admission,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Connections being served now: established sessions plus unfinished handshakes.
    pub fn active_sessions(&self) -> usize {
        let admission = self.admission();
        admission.sessions + admission.handshakes
    }

    /// Established sessions and unfinished handshakes now.
    pub fn counts(&self) -> (usize, usize) {
        let admission = self.admission();
        (admission.sessions, admission.handshakes)
    }

    /// Admits a new connection from `client` into its handshake, or says why not (no room for
    /// another established session). When the handshake budget is full, the oldest unfinished
    /// handshake of the address holding the most is evicted to make room.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Full> {
        let mut admission = self.admission();
        if let Some(full) = admission.no_session_place(client, &self.limits) {
            drop(admission);
            return Err(self.refused(full));
        }
        let mut evicted = None;
        while admission.handshakes >= self.limits.max_handshakes {
            match admission.evict_one() {
                Some(victim) => evicted = Some(victim),
                None => break,
            }
        }
        let id = admission.next_id;
        admission.next_id += 1;
        let evict = Arc::new(Notify::new());
        admission.pending.entry(throttle::key(client)).or_default().push_back((id, evict.clone()));
        admission.handshakes += 1;
        drop(admission);
        if let Some(victim) = evicted {
            if let Some(count) = self.evictions.count() {
                warn!(
                    "resource limit: {} connections in their handshake (--max-handshakes); \
                     closed {count} unfinished handshakes to make room, the last of {victim}",
                    self.limits.max_handshakes
                );
            }
        }
        Ok(Admitted { context: self.clone(), client, place: Place::Handshake(id, evict) })
    }

    /// Counts a refusal and logs at most once a second, with how many were refused since.
    fn refused(&self, full: Full) -> Full {
        if let Some(refused) = self.refusals.count() {
            match full {
                Full::Total(max) => warn!(
                    "resource limit: {max} sessions running (--max-sessions); refused {refused} new clients"
                ),
                Full::PerClient(max) => warn!(
                    "resource limit: a client has {max} sessions (--max-sessions-per-client); refused {refused} new clients"
                ),
            }
        }
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn context(max_sessions: usize, max_per_client: usize, max_handshakes: usize) -> Arc<Context> {
        let rules = RuleSet { file: "t".into(), rules: Vec::new() };
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            handshake: Duration::from_secs(1),
            idle: None,
            half_close: Duration::from_secs(1),
            bind: Duration::from_secs(1),
        };
        Arc::new(Context::new(
            Config { rules, users: None, pam: None },
            timeouts,
            Limits { max_sessions, max_per_client, max_handshakes },
        ))
    }

    #[test]
    fn session_limits_and_release() {
        let ctx = context(3, 2, 10);
        let a: IpAddr = "192.0.2.1".parse().expect("literal");
        let b: IpAddr = "192.0.2.2".parse().expect("literal");
        let session = |ip| {
            let mut admitted = ctx.admit(ip).expect("room");
            admitted.promote().expect("room for a session");
            admitted
        };
        let first = session(a);
        let _second = session(a);
        assert_eq!(ctx.admit(a).err(), Some(Full::PerClient(2)));
        let _third = session(b);
        assert_eq!(ctx.admit(b).err(), Some(Full::Total(3)));
        assert_eq!(ctx.counts(), (3, 0));
        drop(first);
        assert_eq!(ctx.active_sessions(), 2);
        assert!(ctx.admit(b).is_ok());
    }

    #[test]
    fn handshakes_hold_no_session_place_and_promotion_can_fail() {
        let ctx = context(1, 1, 10);
        let a: IpAddr = "192.0.2.1".parse().expect("literal");
        // Many handshakes from one address while its session limit is 1.
        let mut one = ctx.admit(a).expect("room");
        let mut two = ctx.admit(a).expect("handshakes do not count as sessions");
        assert_eq!(ctx.counts(), (0, 2));
        one.promote().expect("the first to finish gets the place");
        assert_eq!(ctx.counts(), (1, 1));
        assert_eq!(two.promote(), Err(Full::Total(1)));
        assert_eq!(ctx.counts(), (1, 0));
        drop(two);
        assert_eq!(ctx.counts(), (1, 0));
        drop(one);
        assert_eq!(ctx.counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_full_budget_evicts_the_heaviest_addresss_oldest_handshake() {
        let ctx = context(100, 100, 3);
        let a: IpAddr = "192.0.2.1".parse().expect("literal");
        let b: IpAddr = "192.0.2.2".parse().expect("literal");
        let c: IpAddr = "192.0.2.3".parse().expect("literal");
        let b1 = ctx.admit(b).expect("room");
        let a1 = ctx.admit(a).expect("room");
        let a2 = ctx.admit(a).expect("room");
        // Full: c's arrival evicts a's oldest (a holds the most), not b's older one.
        let c1 = ctx.admit(c).expect("admitted by eviction");
        // Whether `admitted` has been evicted (its signal is already there).
        async fn now(admitted: &Admitted) -> bool {
            tokio::time::timeout(Duration::from_millis(5), admitted.evicted()).await.is_ok()
        }
        assert!(now(&a1).await, "a's oldest is evicted");
        assert!(!now(&a2).await && !now(&b1).await && !now(&c1).await);
        assert_eq!(ctx.counts(), (0, 3));
        drop(a1);
        assert_eq!(ctx.counts(), (0, 3), "an evicted handshake is not counted twice");
        // Now one each: ties go to the oldest of all (b1).
        let c2 = ctx.admit(c).expect("admitted by eviction");
        assert!(now(&b1).await);
        assert!(!now(&a2).await && !now(&c1).await);
        // One IPv6 host (a /64) counts as one address: two of its addresses outweigh c's two.
        drop((a2, c1, c2));
        let v6 = |text: &str| -> IpAddr { text.parse().expect("literal") };
        let _c3 = ctx.admit(c).expect("room");
        let d1 = ctx.admit(v6("2001:db8::1")).expect("room");
        let _d2 = ctx.admit(v6("2001:db8::2")).expect("room");
        let _e1 = ctx.admit(v6("2001:db8:0:1::1")).expect("admitted by eviction");
        assert!(now(&d1).await, "the /64 holding two loses its oldest");
    }
}
