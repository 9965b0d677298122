//! What every session shares: the current configuration (rules and users, replaced as a whole
//! on SIGHUP while sessions keep the one they started with), the timeouts, and the admission
//! counters that enforce `--max-sessions` and `--max-sessions-per-client`.
//!
//! Not here: reading the files (`config`, `users`) or the sessions themselves.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use log::warn;
use socks_proto::rules::RuleSet;
use tokio::sync::Notify;

use crate::cli::Timeouts;
use crate::users::Users;

/// The parts of the configuration a SIGHUP re-reads.
#[derive(Debug)]
pub struct Config {
    /// The parsed rule file.
    pub rules: RuleSet,
    /// RFC 1929 users, when `--users` was given.
    pub users: Option<Users>,
}

/// Session limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sessions at once, all clients together.
    pub max_sessions: usize,
    /// Sessions at once from one client address.
    pub max_per_client: usize,
}

/// Shared by all sessions.
#[derive(Debug)]
pub struct Context {
    config: RwLock<Arc<Config>>,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// Woken when the grace period of a stop is over: relaying sessions end and log it.
    pub stopping: Notify,
    limits: Limits,
    active: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    refused_since_log: AtomicU64,
    last_refusal_log: AtomicU64,
}

/// Why a new client was turned away before its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `--max-sessions` sessions are running.
    Total(usize),
    /// `--max-sessions-per-client` sessions are running for this address.
    PerClient(usize),
}

/// A running session's place in the counters; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    context: Arc<Context>,
    client: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.context.active.fetch_sub(1, Ordering::AcqRel);
        if let Ok(mut map) = self.context.per_client.lock() {
            if let Some(count) = map.get_mut(&self.client) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&self.client);
                }
            }
        }
    }
}

impl Context {
    /// A context with these settings.
    pub fn new(config: Config, timeouts: Timeouts, limits: Limits) -> Context {
        Context {
            config: RwLock::new(Arc::new(config)),
            timeouts,
            stopping: Notify::new(),
            limits,
            active: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            refused_since_log: AtomicU64::new(0),
            last_refusal_log: AtomicU64::new(0),
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

    /// Sessions running now.
    pub fn active_sessions(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Takes a place for a new session from `client`, or says why there is none.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Admitted, Full> {
        let total = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        if total > self.limits.max_sessions {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refused(Full::Total(self.limits.max_sessions)));
        }
        let mut map = match self.per_client.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = map.entry(client).or_insert(0);
        if *count >= self.limits.max_per_client {
            drop(map);
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refused(Full::PerClient(self.limits.max_per_client)));
        }
        *count += 1;
        Ok(Admitted { context: self.clone(), client })
    }

    /// Counts a refusal and logs at most once a second, with how many were refused since.
    fn refused(&self, full: Full) -> Full {
        let refused = self.refused_since_log.fetch_add(1, Ordering::AcqRel) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_refusal_log.load(Ordering::Acquire);
        if now > last
            && self
                .last_refusal_log
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.refused_since_log.fetch_sub(refused, Ordering::AcqRel);
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

    fn context(max_sessions: usize, max_per_client: usize) -> Arc<Context> {
        let rules = RuleSet { file: "t".into(), rules: Vec::new() };
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            handshake: Duration::from_secs(1),
            idle: None,
            half_close: Duration::from_secs(1),
            bind: Duration::from_secs(1),
        };
        Arc::new(Context::new(
            Config { rules, users: None },
            timeouts,
            Limits { max_sessions, max_per_client },
        ))
    }

    #[test]
    fn limits_and_release() {
        let ctx = context(3, 2);
        let a: IpAddr = "192.0.2.1".parse().expect("literal");
        let b: IpAddr = "192.0.2.2".parse().expect("literal");
        let first = ctx.admit(a).expect("room");
        let _second = ctx.admit(a).expect("room");
        assert_eq!(ctx.admit(a).err(), Some(Full::PerClient(2)));
        let _third = ctx.admit(b).expect("room");
        assert_eq!(ctx.admit(b).err(), Some(Full::Total(3)));
        assert_eq!(ctx.active_sessions(), 3);
        drop(first);
        assert_eq!(ctx.active_sessions(), 2);
        assert!(ctx.admit(b).is_ok());
    }
}
