//! A tick that keeps a serving thread's timer driver from waking itself for every session
//! (issue 17). tokio's time driver remembers, when its thread goes to sleep, the earliest timer
//! armed; a timer armed later that is due before that one makes the driver "unpark" its own
//! thread: a write(2) to the runtime's eventfd, and an epoll_wait that returns for it. A session
//! arms its handshake timeout when it starts and its half-close timeout when one side of the
//! relay ends; on a thread where no timer due sooner is armed (one client at a time, say), each
//! of those was such a write: two system calls per connection that do nothing.
//!
//! While connections arrive, a timer due within `TICK` stays armed on the thread, so a session's
//! timers (all at least a second away: the options' minimum) are never the earliest and arm
//! without a system call. The tick re-arms once per `TICK` while the thread accepts (one eventfd
//! write a second, not one per connection) and stops when no connection came during the last
//! `TICK`: an idle sockd does not wake up for it.
//!
//! Not here: the timeouts themselves (`session`, `relay`, `outbound`); they keep their own tokio
//! timers, which fire on time whether the tick runs or not.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How far ahead the tick's timer is due: no more than the shortest timeout a session arms
/// (`--connect-timeout`, `--handshake-timeout` and `--half-close-timeout` are at least 1 s).
pub const TICK: Duration = Duration::from_secs(1);

/// Told of every connection a thread accepts; runs the thread's tick (see the module).
#[derive(Debug, Default)]
pub struct Ticker {
    arrived: Notify,
}

impl Ticker {
    /// A connection was accepted on this thread: keep (or start) the tick.
    pub fn connection(&self) {
        // One permit is kept when the tick is not waiting: no lock, no system call.
        self.arrived.notify_one();
    }

    /// Runs on the serving thread until its runtime ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.arrived.notified().await;
            tokio::time::sleep(TICK).await;
        }
    }
}
