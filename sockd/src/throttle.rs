//! Slowing down repeated failed logins (RFC 1929) from one client address, so that passwords
//! cannot be guessed at the rate sockd can check them.
//!
//! After `n` failures from an address, its next password is checked no sooner than
//! `0.2 s × 2^(n-1)` (at most 4 s) after the previous check; attempts from that address are
//! checked one at a time in that rhythm, and one that would have to wait more than 4 s is
//! refused unchecked. A success does not wipe the count (an attacker holding one account could
//! otherwise interleave it with guesses); an address is forgotten 10 minutes after its last
//! failure. Memory is bounded: at most 4,096 addresses are remembered (IPv6 by /64, since one
//! host has a whole /64), and when the table is full the one whose last failure is the oldest
//! makes room. Addresses without failures are not in the table and never wait.
//!
//! Not here: checking the password (`users`), the handshake (`session`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Delay after the first failure; doubled for each further one.
const BASE_DELAY: Duration = Duration::from_millis(200);
/// The longest delay, and the longest an attempt waits for its turn.
pub const MAX_DELAY: Duration = Duration::from_secs(4);
/// An address is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses remembered at most.
const CAPACITY: usize = 4096;

/// What is known about one address.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures in a row (not reset by a success).
    failures: u32,
    /// The next password from this address is checked no sooner than this.
    next_check: Instant,
    last_failure: Instant,
}

/// The table of addresses with recent failures.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// The delay a next attempt gets after `failures` failures in a row.
pub fn delay_after(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => BASE_DELAY.saturating_mul(1u32 << (n - 1).min(16)).min(MAX_DELAY),
    }
}

/// The key an address is remembered by: IPv4 as is, IPv6 by its /64 (one host's share).
pub fn key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl LoginThrottle {
    fn table(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        match self.table.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Before a password from `client` is checked: how long to wait for its turn, or
    /// `Err(failures)` when the turn is too far away (the attempt is refused unchecked).
    pub fn reserve(&self, client: IpAddr, now: Instant) -> Result<Duration, u32> {
        let mut table = self.table();
        let key = key(client);
        let Some(entry) = table.get_mut(&key) else { return Ok(Duration::ZERO) };
        if now.saturating_duration_since(entry.last_failure) > FORGET_AFTER {
            table.remove(&key);
            return Ok(Duration::ZERO);
        }
        let turn = entry.next_check.max(now);
        let wait = turn - now;
        if wait > MAX_DELAY {
            return Err(entry.failures);
        }
        entry.next_check = turn + delay_after(entry.failures);
        Ok(wait)
    }

    /// Records a failed login from `client`; returns the failures in a row and the delay the
    /// next attempt from there gets.
    pub fn failed(&self, client: IpAddr, now: Instant) -> (u32, Duration) {
        let mut table = self.table();
        let key = key(client);
        if !table.contains_key(&key) && table.len() >= CAPACITY {
            table.retain(|_, e| now.saturating_duration_since(e.last_failure) <= FORGET_AFTER);
            if table.len() >= CAPACITY {
                let oldest = table.iter().min_by_key(|(_, e)| e.last_failure).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    table.remove(&oldest);
                }
            }
        }
        let entry =
            table.entry(key).or_insert(Entry { failures: 0, next_check: now, last_failure: now });
        if now.saturating_duration_since(entry.last_failure) > FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let delay = delay_after(entry.failures);
        entry.next_check = entry.next_check.max(now + delay);
        (entry.failures, delay)
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("literal")
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let ms = |n| delay_after(n).as_millis();
        assert_eq!([ms(0), ms(1), ms(2), ms(3), ms(4), ms(5)], [0, 200, 400, 800, 1600, 3200]);
        assert_eq!(delay_after(6), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn attempts_after_failures_wait_their_turn_one_at_a_time() {
        let t = LoginThrottle::default();
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        assert_eq!(t.reserve(a, t0), Ok(Duration::ZERO), "no failure, no wait");
        assert_eq!(t.failed(a, t0), (1, Duration::from_millis(200)));
        assert_eq!(t.reserve(a, t0), Ok(Duration::from_millis(200)));
        // A second attempt at the same moment waits for the first one's turn to pass too.
        assert_eq!(t.reserve(a, t0), Ok(Duration::from_millis(400)));
        for _ in 0..6 {
            t.failed(a, t0);
        }
        // Far behind: refused unchecked.
        assert!(t.reserve(a, t0).is_ok());
        assert_eq!(t.reserve(a, t0), Err(7));
        // Another address is not affected; an IPv6 host is one /64.
        assert_eq!(t.reserve(ip("192.0.2.2"), t0), Ok(Duration::ZERO));
        t.failed(ip("2001:db8::1"), t0);
        assert_eq!(t.reserve(ip("2001:db8::ffff:1"), t0), Ok(Duration::from_millis(200)));
        assert_eq!(t.reserve(ip("2001:db8:0:1::1"), t0), Ok(Duration::ZERO));
        // Forgotten after a quiet while.
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(t.reserve(a, later), Ok(Duration::ZERO));
        assert_eq!(t.failed(ip("2001:db8::1"), later).0, 1, "the count starts over");
    }

    #[test]
    fn the_table_is_bounded() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for i in 0..CAPACITY as u32 + 100 {
            let at = t0 + Duration::from_millis(u64::from(i));
            t.failed(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), at);
        }
        assert_eq!(t.len(), CAPACITY);
        // The oldest made room; the newest are there.
        let v4 = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let table = t.table();
        assert!(table.contains_key(&v4(CAPACITY as u32 + 99)));
        assert!(table.contains_key(&v4(100)));
        assert!(!table.contains_key(&v4(99)) && !table.contains_key(&v4(0)));
    }
}
