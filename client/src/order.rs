//! The order in which one connection tries the servers of a rule, shared by the library and the
//! supervisor so both walk an `@=` list the same way: [`order`] (the walk itself), [`Health`]
//! (when each server last failed: one is skipped for [`SERVER_RETRY_AFTER`]) and [`Spreader`]
//! (the per-process start counter of a `?spread` list).
//!
//! The rules, as socks.conf(5) says them:
//! - Servers that failed within [`SERVER_RETRY_AFTER`] are skipped while any other server of the
//!   list has not; when every one has failed recently, all are tried.
//! - Without `?spread` the walk starts at the first server still alive (the order written).
//! - With `?spread` it starts at the k-th live server, k = the connection's ticket modulo the
//!   number of live servers, and goes on round the list; a dead server's share goes evenly to
//!   the others rather than all to its successor. Tickets come from [`Spreader`]: consecutive
//!   within a process (so one process's connections go round robin, exactly), offset by a
//!   number drawn once per process from the clock and the process id, plus a mix of the
//!   current process id (so separate processes, fork children of one parent included, start at
//!   random places). Nothing is shared between processes: a random start already
//!   spreads them, and shared state would need a file or a shared mapping on every workstation.
//!
//! A chain of proxies (`a>b>c`) is one [`Server`]: the walk, the failure memory and `?spread`
//! apply to whole chains (a chain whose first hop does not answer, or whose later hop could not
//! be reached, is marked failed as a whole).
//!
//! No allocation, no lock, no system call beyond reading the clock and the process id: the
//! library walks this inside `connect()`, even from a signal handler. The tables are atomics, so
//! a fork child starts with its parent's memory and can never find a lock held.
//!
//! Not here: connecting (each front end's `proxy`), logging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::settings::Server;

/// How long a server that failed is skipped (unless every server of the list failed).
pub const SERVER_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Servers whose failures are remembered (by [`Server::id`]); any further ones are always tried.
pub const TRACKED_SERVERS: usize = 1024;

/// Per server (by [`Server::id`]), seconds since the epoch when it last failed; 0 = never. A
/// fixed table: no lock and no allocation on the connect path.
#[derive(Debug)]
pub struct Health {
    failed_at: [AtomicU64; TRACKED_SERVERS],
}

impl Health {
    /// A table where no server has failed (for a `static`).
    #[allow(clippy::new_without_default)] // a const fn for statics; nothing else makes one
    pub const fn new() -> Health {
        Health { failed_at: [const { AtomicU64::new(0) }; TRACKED_SERVERS] }
    }

    /// Whether `server` has not failed within [`SERVER_RETRY_AFTER`].
    pub fn is_alive(&self, server: &Server) -> bool {
        self.is_alive_at(server, now_secs())
    }

    fn is_alive_at(&self, server: &Server, now: u64) -> bool {
        let failed = self.failed_at.get(server.id).map_or(0, |f| f.load(Ordering::Relaxed));
        failed == 0 || now.saturating_sub(failed) >= SERVER_RETRY_AFTER.as_secs()
    }

    /// Records a failure to reach `server`.
    pub fn mark_failed(&self, server: &Server) {
        if let Some(failed) = self.failed_at.get(server.id) {
            failed.store(now_secs().max(1), Ordering::Relaxed);
        }
    }

    /// Records that `server` answered.
    pub fn mark_alive(&self, server: &Server) {
        if let Some(failed) = self.failed_at.get(server.id) {
            // Only a store when something changes: the common case stays a read.
            if failed.load(Ordering::Relaxed) != 0 {
                failed.store(0, Ordering::Relaxed);
            }
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Hands out the tickets that pick where a `?spread` walk starts (see the module notes).
#[derive(Debug)]
pub struct Spreader {
    /// The next ticket, offset by the process's random start; `u64::MAX` = not drawn yet.
    next: AtomicU64,
}

/// `next` before the first ticket (the draw happens then, not at load).
const UNDRAWN: u64 = u64::MAX;

impl Spreader {
    /// A spreader whose start is drawn at its first ticket (for a `static`).
    #[allow(clippy::new_without_default)] // a const fn for statics; nothing else makes one
    pub const fn new() -> Spreader {
        Spreader { next: AtomicU64::new(UNDRAWN) }
    }

    /// A spreader starting at `start` (tests, and a caller with its own random number).
    pub const fn starting_at(start: u64) -> Spreader {
        Spreader { next: AtomicU64::new(start & !(1 << 63)) }
    }

    /// The next connection's ticket: consecutive within the process, from a start drawn once
    /// per process out of the clock and the process id, and offset by the process id of the
    /// caller — so fork children, which inherit the counter, do not all take the same turn.
    pub fn ticket(&self) -> u64 {
        let seen = self.next.load(Ordering::Relaxed);
        if seen == UNDRAWN {
            // Two threads may both draw: one wins, the other takes a ticket after its start.
            let _ = self.next.compare_exchange(
                UNDRAWN,
                process_start(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        // The top bit is cleared at the draw, so counting never reaches UNDRAWN in practice.
        let count = self.next.fetch_add(1, Ordering::Relaxed);
        count.wrapping_add(mix(u64::from(std::process::id())))
    }
}

/// A number for this process: the clock's nanoseconds and the process id, mixed (SplitMix64's
/// finaliser), top bit clear. Not secret, only different per process and per run — processes
/// in separate PID namespaces share ids, hence the clock.
fn process_start() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    mix(nanos ^ (u64::from(std::process::id()) << 32)) & !(1 << 63)
}

/// SplitMix64's output function: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The servers of `servers` in the order one connection tries them (see the module notes):
/// `ticket` picks the start of a `?spread` list (the list's flag is [`Server::spread`]) and is
/// ignored otherwise; `alive` says whether a server has not failed recently (asked again as the
/// walk goes on, so a server that fails meanwhile is skipped).
pub fn order<'a, F: Fn(&Server) -> bool>(
    servers: &'a [Server],
    ticket: u64,
    alive: F,
) -> Order<'a, F> {
    let live = servers.iter().filter(|s| alive(s)).count();
    let only_alive = live > 0;
    let spread = servers.first().is_some_and(|s| s.spread);
    let start = match (spread, only_alive) {
        (false, _) => 0,
        (true, false) => ticket_index(ticket, servers.len()),
        (true, true) => {
            let k = ticket_index(ticket, live);
            servers.iter().enumerate().filter(|(_, s)| alive(s)).nth(k).map_or(0, |(i, _)| i)
        }
    };
    Order { servers, start, step: 0, only_alive, alive }
}

fn ticket_index(ticket: u64, len: usize) -> usize {
    // len is at least 1 where this is called; the remainder fits usize as it is below len.
    usize::try_from(ticket % len.max(1) as u64).unwrap_or(0)
}

/// The walk [`order`] returns: each server at most once.
pub struct Order<'a, F> {
    servers: &'a [Server],
    start: usize,
    step: usize,
    only_alive: bool,
    alive: F,
}

impl<F> std::fmt::Debug for Order<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Order")
            .field("servers", &self.servers.len())
            .field("start", &self.start)
            .field("step", &self.step)
            .field("only_alive", &self.only_alive)
            .finish()
    }
}

impl<'a, F: Fn(&Server) -> bool> Order<'a, F> {
    /// Where the walk starts (the first server it yields, unless that one fails meanwhile).
    pub fn first(&self) -> Option<&'a Server> {
        self.servers.get(self.start)
    }
}

impl<'a, F: Fn(&Server) -> bool> Iterator for Order<'a, F> {
    type Item = &'a Server;

    fn next(&mut self) -> Option<&'a Server> {
        let n = self.servers.len();
        while self.step < n {
            let server = &self.servers[(self.start + self.step) % n];
            self.step += 1;
            if !self.only_alive || (self.alive)(server) {
                return Some(server);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::testing::with_conf;
    use crate::settings::Mode;

    /// The servers of the first rule of `list` (an `@=` token).
    fn servers(list: &str) -> Vec<Server> {
        let settings = with_conf(&format!("sockd {list} 0.0.0.0/0\n"));
        let Mode::Rules { servers, .. } = settings.mode else { panic!("{:?}", settings.mode) };
        servers.into_iter().next().expect("one rule")
    }

    fn ids<'a>(walk: impl Iterator<Item = &'a Server>) -> Vec<usize> {
        walk.map(|s| s.id).collect()
    }

    #[test]
    fn without_spread_the_order_written() {
        let list = servers("@=192.0.2.1,192.0.2.2,192.0.2.3");
        assert!(list.iter().all(|s| !s.spread));
        for ticket in 0..5 {
            assert_eq!(ids(order(&list, ticket, |_| true)), [0, 1, 2]);
        }
        assert_eq!(ids(order(&list, 1, |s| s.id != 0)), [1, 2], "a dead server is skipped");
        assert_eq!(ids(order(&list, 1, |_| false)), [0, 1, 2], "all dead: all tried, in order");
    }

    #[test]
    fn spread_starts_round_the_list_and_gives_each_server_once() {
        let list = servers("@=192.0.2.1,192.0.2.2,192.0.2.3?spread");
        assert!(list.iter().all(|s| s.spread), "the list's flag is on every server");
        let mut firsts = [0; 3];
        for ticket in 0..30 {
            let walk = ids(order(&list, ticket, |_| true));
            let mut sorted = walk.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2], "every server once: {walk:?}");
            let start = walk[0];
            assert_eq!(start, (ticket % 3) as usize, "consecutive tickets rotate");
            assert_eq!(walk, [start, (start + 1) % 3, (start + 2) % 3], "then round the list");
            assert_eq!(order(&list, ticket, |_| true).first().map(|s| s.id), Some(start));
            firsts[start] += 1;
        }
        assert_eq!(firsts, [10, 10, 10]);
    }

    #[test]
    fn spread_shares_a_dead_servers_turn_evenly_and_skips_it() {
        let list = servers("@=192.0.2.1,192.0.2.2,192.0.2.3?spread");
        let mut firsts = [0; 3];
        for ticket in 0..40 {
            let walk = ids(order(&list, ticket, |s| s.id != 1));
            assert_eq!(walk.len(), 2, "the dead server is not tried: {walk:?}");
            assert!(!walk.contains(&1));
            firsts[walk[0]] += 1;
        }
        assert_eq!(firsts, [20, 0, 20], "not all of the dead one's share to its successor");
        let all_dead = ids(order(&list, 4, |_| false));
        assert_eq!(all_dead, [1, 2, 0], "all dead: all tried, from a spread start");
    }

    #[test]
    fn a_server_failing_during_the_walk_is_skipped() {
        let list = servers("@=192.0.2.1,192.0.2.2,192.0.2.3?spread");
        let dead = std::cell::Cell::new(usize::MAX);
        let mut walk = order(&list, 0, |s| s.id != dead.get());
        assert_eq!(walk.next().map(|s| s.id), Some(0));
        dead.set(1);
        assert_eq!(walk.next().map(|s| s.id), Some(2));
        assert!(walk.next().is_none());
        assert!(order(&[], 3, |_| true).next().is_none(), "an empty list yields nothing");
    }

    #[test]
    fn tickets_are_consecutive_from_a_per_process_start() {
        let spreader = Spreader::new();
        let a = spreader.ticket();
        assert_eq!(spreader.ticket(), a + 1);
        assert_eq!(spreader.ticket(), a + 2);
        let pid = mix(u64::from(std::process::id()));
        assert_eq!(Spreader::starting_at(7).ticket(), 7u64.wrapping_add(pid));
        // Two draws a moment apart differ (the clock); not a test of randomness, only that the
        // start is not a constant every process would share.
        let starts: std::collections::HashSet<u64> = (0..8)
            .map(|_| {
                std::thread::sleep(Duration::from_micros(50));
                Spreader::new().ticket()
            })
            .collect();
        assert!(starts.len() > 1, "{starts:?}");
    }

    #[test]
    fn failures_are_remembered_per_server_for_a_while() {
        let list = servers("@=192.0.2.1,192.0.2.2");
        let health = Health::new();
        assert!(health.is_alive(&list[0]));
        health.mark_failed(&list[0]);
        assert!(!health.is_alive(&list[0]));
        assert!(health.is_alive(&list[1]), "each server has its own record");
        let later = now_secs() + SERVER_RETRY_AFTER.as_secs();
        assert!(health.is_alive_at(&list[0], later), "tried again after the retry window");
        health.mark_alive(&list[0]);
        assert!(health.is_alive(&list[0]));
        let untracked = Server { id: TRACKED_SERVERS, ..list[0].clone() };
        health.mark_failed(&untracked);
        assert!(health.is_alive(&untracked), "a server past the table is always tried");
    }
}
