//! The serving threads of standalone sockd: each is an OS thread with its own single-threaded
//! tokio runtime and its own listening sockets (one per address, SO_REUSEPORT, see
//! `listeners`), so a connection is accepted, handshaken and relayed on one thread and no
//! thread wakes another for it. What the threads share is `Context` (rules, limits, the
//! stopping signal) and the process-wide counters of `metrics`.
//!
//! The main thread tells them when to stop accepting (`Workers::drain`: their listeners are
//! closed, their sessions go on) and when to end (`Workers::finish`: sessions still running are
//! dropped, closing their sockets).
//!
//! Not here: signals, systemd, the status line and the grace period (`lib.rs`), a session
//! itself (`session`, `balancer`).

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{error, warn};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::timer_tick::Ticker;
use crate::{balancer, metrics, outbound, session, Context};

/// Pause after a failed accept caused by a resource shortage, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long `drain` waits for the threads to close their listeners.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// How long a thread's runtime waits for its tasks to notice it is shutting down.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(100);

/// Where the serving threads are in their life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    Draining,
    Finished,
}

/// The running serving threads.
#[derive(Debug)]
pub struct Workers {
    phase: watch::Sender<Phase>,
    threads: Vec<JoinHandle<()>>,
    /// Each thread sends one message here once its listeners are closed (`drain`).
    drained: mpsc::UnboundedReceiver<()>,
}

impl Workers {
    /// Starts one thread per entry of `per_thread`, each serving the listeners in its entry.
    /// Fails (with the threads already started told to end) if a thread or its runtime cannot
    /// be started.
    pub fn start(
        per_thread: Vec<Vec<StdListener>>,
        context: &Arc<Context>,
    ) -> Result<Workers, String> {
        let (phase, _) = watch::channel(Phase::Serving);
        let (drained_tx, drained) = mpsc::unbounded_channel();
        let mut workers = Workers { phase, threads: Vec::new(), drained };
        for (index, listeners) in per_thread.into_iter().enumerate() {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    workers.finish();
                    return Err(format!("resource failure: cannot start a runtime: {e}"));
                }
            };
            let (phase, context) = (workers.phase.subscribe(), context.clone());
            let drained = drained_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sockd-{index}"))
                .spawn(move || serve(runtime, listeners, context, phase, drained));
            match spawned {
                Ok(thread) => workers.threads.push(thread),
                Err(e) => {
                    workers.finish();
                    return Err(format!("resource failure: cannot start a serving thread: {e}"));
                }
            }
        }
        Ok(workers)
    }

    /// How many threads serve.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// Stops accepting: returns once every thread has closed its listeners (or after
    /// `DRAIN_WAIT`, if one is stuck); running sessions go on.
    pub async fn drain(&mut self) {
        self.phase.send_replace(Phase::Draining);
        let all = async {
            for _ in 0..self.threads.len() {
                if self.drained.recv().await.is_none() {
                    break;
                }
            }
        };
        if tokio::time::timeout(DRAIN_WAIT, all).await.is_err() {
            warn!("a serving thread did not close its listeners within {DRAIN_WAIT:?}");
        }
    }

    /// Ends every thread, dropping the sessions still running (their sockets close), and waits.
    pub fn finish(&mut self) {
        self.phase.send_replace(Phase::Finished);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                error!("a serving thread panicked");
            }
        }
    }
}

/// One serving thread: accepts on its listeners until told to drain, then runs its sessions
/// until told to finish.
fn serve(
    runtime: tokio::runtime::Runtime,
    listeners: Vec<StdListener>,
    context: Arc<Context>,
    mut phase: watch::Receiver<Phase>,
    drained: mpsc::UnboundedSender<()>,
) {
    runtime.block_on(async {
        // Keeps the sessions' timeouts from waking this thread's timer driver (see `timer_tick`).
        let ticker = Arc::new(Ticker::default());
        tokio::spawn(ticker.clone().run());
        let mut accepting = Vec::new();
        for listener in listeners {
            match TcpListener::from_std(listener) {
                Ok(listener) => accepting.push(tokio::spawn(accept_loop(
                    listener,
                    context.clone(),
                    ticker.clone(),
                ))),
                // Registration with this thread's epoll failed: the other threads still accept.
                Err(e) => error!("resource failure: cannot use a listening socket: {e}"),
            }
        }
        let _ = phase.wait_for(|p| *p != Phase::Serving).await;
        for task in &accepting {
            task.abort();
        }
        // An aborted task's future (its listener with it) is dropped before its handle answers.
        for task in accepting {
            let _ = task.await;
        }
        let _ = drained.send(());
        let _ = phase.wait_for(|p| *p == Phase::Finished).await;
    });
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
}

async fn accept_loop(listener: TcpListener, context: Arc<Context>, ticker: Arc<Ticker>) {
    let (mut failures, mut last_report) = (0u64, None);
    loop {
        let accepted = listener.accept().await;
        if accepted.is_ok() {
            ticker.connection();
        }
        match accepted {
            Ok((stream, peer)) if balancer::expects_header(peer.ip()) => {
                tokio::spawn(balancer::serve(stream, peer, context.clone()));
            }
            Ok((stream, peer)) => match context.admit(peer.ip().to_canonical()) {
                Ok(admitted) => {
                    let context = context.clone();
                    tokio::spawn(session::serve(stream, peer, context, Some(admitted)));
                }
                // Refused at the door, and logged (at most once a second) by `admit`.
                Err(_) => {
                    metrics::session(None, metrics::Outcome::Limit);
                    drop(stream);
                }
            },
            Err(e) if outbound::is_resource_shortage(&e) => {
                // Logged at most once a second, with how many accepts failed meanwhile.
                failures += 1;
                if last_report.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(1)) {
                    error!("resource failure: accept: {e}; new clients wait ({failures} failed accepts)");
                    failures = 0;
                    last_report = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            // Errors about one pending connection (it was reset, and so on) concern only it.
            Err(e) => warn!("accept: {e}"),
        }
    }
}
