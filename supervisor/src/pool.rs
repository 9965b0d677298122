//! The handler threads: a pool that grows on demand and shrinks when idle. A job goes to an
//! idle thread when there is one and to a new thread otherwise, so a handshake that blocks for
//! seconds (a hanging server) holds only its own thread and never delays another call; a thread
//! that finds no work for [`IDLE_EXIT`] ends. Starting a thread costs about a dozen system calls
//! and two context switches, more than the rest of a connect's own work: reusing one is the
//! point.
//!
//! One pool serves the whole supervisor ([`run`]): the connects and other calls `supervise`
//! hands over, and the sends (`send`) and receives (`recv`) that have to wait.
//!
//! Not here: what a job does (`supervise`, `send`, `recv`), answering a call whose job could
//! not start (the job's own guard does that when it is dropped).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// How long an idle handler thread waits for work before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs `job` on a thread of the supervisor's pool (see [`Pool::run`]). `Err`: no thread could
/// be started; the job was dropped without running (a call in it then fails closed).
pub fn run(job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    static HANDLERS: OnceLock<Arc<Pool>> = OnceLock::new();
    Pool::run(HANDLERS.get_or_init(Arc::default), job)
}

/// Jobs waiting and the threads free to take them.
#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Threads waiting for a job; more than `queue.len()` whenever a job is queued, so each
    /// queued job has a thread of its own to take it.
    idle: usize,
}

/// A growing pool of handler threads.
#[derive(Default)]
pub struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Pool")
            .field("queued", &state.queue.len())
            .field("idle", &state.idle)
            .finish()
    }
}

impl Pool {
    /// A job never panics while holding the lock (jobs run outside it): a poisoned lock is
    /// still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on an idle thread of the pool, or on a new one when all are busy. `Err`: no
    /// thread could be started; the job was dropped without running.
    pub fn run(pool: &Arc<Pool>, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut state = pool.lock();
        if state.idle > state.queue.len() {
            state.queue.push_back(Box::new(job));
            drop(state);
            pool.work.notify_one();
            return Ok(());
        }
        drop(state);
        let pool = pool.clone();
        std::thread::Builder::new()
            .name("handler".into())
            .spawn(move || pool.serve(Box::new(job)))?;
        Ok(())
    }

    /// A handler thread: runs `first`, then whatever is queued, until idle for [`IDLE_EXIT`].
    fn serve(&self, first: Job) {
        let mut job = first;
        loop {
            // A job that panics has answered its call from its guard; the thread carries on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let mut state = self.lock();
            state.idle += 1;
            let next = loop {
                if let Some(next) = state.queue.pop_front() {
                    break Some(next);
                }
                let (guard, waited) = self
                    .work
                    .wait_timeout(state, IDLE_EXIT)
                    .unwrap_or_else(PoisonError::into_inner);
                state = guard;
                if waited.timed_out() && state.queue.is_empty() {
                    break None;
                }
            };
            state.idle -= 1;
            match next {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// Threads waiting for work now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_blocked_job_does_not_delay_the_next() {
        let pool = Arc::new(Pool::default());
        let (release, blocked) = mpsc::channel::<()>();
        let (done, finished) = mpsc::channel();
        Pool::run(&pool, move || {
            let _ = blocked.recv();
        })
        .expect("thread");
        let done2 = done.clone();
        Pool::run(&pool, move || done2.send(2).expect("receiver")).expect("thread");
        assert_eq!(finished.recv_timeout(Duration::from_secs(5)), Ok(2));
        release.send(()).expect("the first job waits");
        drop(done);
    }

    /// Waits until `n` threads wait for work.
    fn until_idle(pool: &Pool, n: usize) {
        let start = std::time::Instant::now();
        while pool.idle() != n && start.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
    }

    #[test]
    fn an_idle_thread_is_reused() {
        let pool = Arc::new(Pool::default());
        let (done, finished) = mpsc::channel();
        let ids: std::collections::HashSet<_> = (0..20)
            .map(|_| {
                let done = done.clone();
                Pool::run(&pool, move || done.send(std::thread::current().id()).expect("rx"))
                    .expect("thread");
                let id = finished.recv_timeout(Duration::from_secs(5)).expect("job ran");
                until_idle(&pool, 1);
                id
            })
            .collect();
        assert_eq!(ids.len(), 1, "one idle thread took every job in turn");
    }

    #[test]
    fn a_panicking_job_leaves_the_thread_serving() {
        let pool = Arc::new(Pool::default());
        Pool::run(&pool, || panic!("job fails")).expect("thread");
        until_idle(&pool, 1);
        assert_eq!(pool.idle(), 1);
        let (done, finished) = mpsc::channel();
        Pool::run(&pool, move || done.send(()).expect("rx")).expect("thread");
        assert_eq!(finished.recv_timeout(Duration::from_secs(5)), Ok(()));
    }
}
