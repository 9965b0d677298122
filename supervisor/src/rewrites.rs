//! Which sources of the datagrams a supervised program receives are shown as another
//! address, per program socket (`SO_COOKIE`): a datagram a UDP association's loopback socket
//! relays (`udp`) is shown as coming from the destination the program named, and the name
//! service's answers (`dns`) as coming from the name server the program asked. The trapped
//! receives (`recv`) consult it; while it is empty they look at no socket at all.
//!
//! Bounded: [`REWRITES_MAX`] sockets (oldest forgotten first) and a few hundred sources each.
//! An association's entries last as long as it does (`udp` removes them); the name service's
//! expire [`NAME_SERVICE_TTL`] after the socket's last query the supervisor saw.
//!
//! Not here: receiving (`recv`), the relay (`udp`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::sockaddr;

/// How many program sockets have reply sources rewritten.
pub const REWRITES_MAX: usize = 1 << 14;
/// How many sources one socket has rewritten (an association's destinations, and a few more).
const SOURCES_MAX: usize = crate::udp::DESTINATIONS_MAX + 16;

/// For each program socket (by cookie), the sources its datagrams come from as the kernel
/// sees them (an L, or the name service's responder) and the source the program is shown
/// instead (the destination, or the real name server). An L's entries last as long as its
/// association; the name service's expire [`NAME_SERVICE_TTL`] after the socket's last query
/// the supervisor saw (a resolver's socket serves one lookup), so that a program that once
/// looked a name up does not pay a look at its socket for every later receive.
#[derive(Debug, Default)]
pub struct Rewrites {
    table: Mutex<RewriteTable>,
    /// How many sockets have entries: 0 lets every receive go on without a look at its socket.
    count: AtomicUsize,
}

/// How long the name service's entry for a socket lasts after its last query.
pub const NAME_SERVICE_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct RewriteTable {
    /// (seen, shown, until when for an entry that expires).
    by_cookie: HashMap<u64, Vec<RewriteEntry>>,
    order: VecDeque<u64>,
    /// Entries that expire, oldest first: (when, cookie, seen source).
    expiring: VecDeque<(Instant, u64, SocketAddr)>,
}

type RewriteEntry = (SocketAddr, SocketAddr, Option<Instant>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RewriteTable {
    fn remove_source(&mut self, cookie: u64, seen: SocketAddr) {
        if let Some(entries) = self.by_cookie.get_mut(&cookie) {
            entries.retain(|(s, ..)| *s != seen);
            if entries.is_empty() {
                self.by_cookie.remove(&cookie);
                self.order.retain(|&c| c != cookie);
            }
        }
    }

    /// Drops the expired entries (one refreshed since stays: its later deadline is queued too).
    fn expire(&mut self, now: Instant) {
        while let Some(&(when, cookie, seen)) = self.expiring.front() {
            if when > now {
                break;
            }
            self.expiring.pop_front();
            let expired = self.by_cookie.get(&cookie).is_some_and(|entries| {
                entries.iter().any(|&(s, _, until)| s == seen && until.is_some_and(|u| u <= now))
            });
            if expired {
                self.remove_source(cookie, seen);
            }
        }
    }
}

impl Rewrites {
    /// Whether no socket has an entry.
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Replies to socket `cookie` from `seen` are shown as coming from `shown`.
    pub fn add(&self, cookie: u64, seen: SocketAddr, shown: SocketAddr) {
        self.insert(cookie, seen, shown, None);
    }

    /// As `add`, for [`NAME_SERVICE_TTL`] from now.
    pub fn add_expiring(&self, cookie: u64, seen: SocketAddr, shown: SocketAddr) {
        self.insert(cookie, seen, shown, Some(Instant::now() + NAME_SERVICE_TTL));
    }

    fn insert(&self, cookie: u64, seen: SocketAddr, shown: SocketAddr, until: Option<Instant>) {
        let seen = sockaddr::canonical(seen);
        let mut table = lock(&self.table);
        let entries = table.by_cookie.entry(cookie).or_default();
        let fresh = entries.is_empty();
        entries.retain(|(s, ..)| *s != seen);
        entries.push((seen, shown, until));
        if entries.len() > SOURCES_MAX {
            entries.remove(0);
        }
        if fresh {
            table.order.push_back(cookie);
        }
        if let Some(until) = until {
            table.expiring.push_back((until, cookie, seen));
            if table.expiring.len() > REWRITES_MAX * 4 {
                table.expiring.pop_front();
            }
        }
        while table.by_cookie.len() > REWRITES_MAX {
            match table.order.pop_front() {
                Some(old) => {
                    table.by_cookie.remove(&old);
                }
                None => break,
            }
        }
        table.expire(Instant::now());
        self.count.store(table.by_cookie.len(), Ordering::Relaxed);
    }

    /// The source to show for a datagram from `seen` on socket `cookie`; `None`: not ours.
    pub fn shown(&self, cookie: u64, seen: SocketAddr) -> Option<SocketAddr> {
        let seen = sockaddr::canonical(seen);
        let table = lock(&self.table);
        table.by_cookie.get(&cookie)?.iter().find(|(s, ..)| *s == seen).map(|&(_, shown, _)| shown)
    }

    /// Whether socket `cookie` has entries (expired ones dropped first).
    pub fn has(&self, cookie: u64) -> bool {
        let mut table = lock(&self.table);
        let now = Instant::now();
        if table.expiring.front().is_some_and(|&(when, ..)| when <= now) {
            table.expire(now);
            self.count.store(table.by_cookie.len(), Ordering::Relaxed);
        }
        table.by_cookie.contains_key(&cookie)
    }

    pub(crate) fn remove_source(&self, cookie: u64, seen: SocketAddr) {
        let mut table = lock(&self.table);
        table.remove_source(cookie, sockaddr::canonical(seen));
        self.count.store(table.by_cookie.len(), Ordering::Relaxed);
    }

    pub(crate) fn forget(&self, cookie: u64) {
        let mut table = lock(&self.table);
        if table.by_cookie.remove(&cookie).is_some() {
            table.order.retain(|&c| c != cookie);
        }
        self.count.store(table.by_cookie.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_are_per_socket_and_bounded() {
        let rewrites = Rewrites::default();
        assert!(rewrites.is_empty());
        let l: SocketAddr = "127.0.0.1:4000".parse().expect("literal");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().expect("literal");
        let d: SocketAddr = "198.51.100.2:7".parse().expect("literal");
        rewrites.add(1, mapped, d);
        assert!(!rewrites.is_empty());
        assert_eq!(rewrites.shown(1, l), Some(d), "IPv4-mapped and IPv4 are one source");
        assert_eq!(rewrites.shown(2, l), None, "another socket");
        assert_eq!(rewrites.shown(1, "127.0.0.1:4001".parse().expect("literal")), None);
        rewrites.remove_source(1, l);
        assert_eq!(rewrites.shown(1, l), None);
        for cookie in 0..(REWRITES_MAX as u64 + 3) {
            rewrites.add(cookie, l, d);
        }
        assert_eq!(lock(&rewrites.table).by_cookie.len(), REWRITES_MAX);
        assert!(!rewrites.has(0) && rewrites.has(3));
        rewrites.forget(3);
        assert!(!rewrites.has(3));
    }

    #[test]
    fn name_service_entries_expire_unless_refreshed() {
        let rewrites = Rewrites::default();
        let responder: SocketAddr = "127.0.0.1:5353".parse().expect("literal");
        let server: SocketAddr = "192.0.2.53:53".parse().expect("literal");
        let past = Instant::now() - Duration::from_secs(1);
        rewrites.insert(1, responder, server, Some(past));
        rewrites.insert(2, responder, server, Some(past));
        rewrites.add_expiring(2, responder, server);
        rewrites.add(3, responder, server);
        assert!(!rewrites.has(1), "expired");
        assert!(rewrites.has(2), "refreshed since");
        assert!(rewrites.has(3), "an L's entry does not expire");
        assert_eq!(rewrites.count.load(Ordering::Relaxed), 2);
    }
}
