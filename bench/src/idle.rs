//! Memory per idle connection: PSS summed over a server's processes before and after it holds
//! N idle SOCKS5 CONNECT sessions to the loopback holder, divided by N; and whether all N were
//! held without error, each one's far end owned by the server's processes.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::servers::Server;
use crate::sys;
use crate::targets::Holder;

/// The result for one server.
#[derive(Debug, Clone)]
pub struct Run {
    pub wanted: usize,
    pub opened: usize,
    pub held: usize,
    pub error: Option<String>,
    pub pss_before_kib: u64,
    pub pss_after_kib: u64,
    pub procs_before: usize,
    pub procs_after: usize,
    pub verified: usize,
    pub open_secs: f64,
    /// The server's main process was still there with the connections open.
    pub still_running: bool,
}

impl Run {
    pub fn kib_per_conn(&self) -> f64 {
        if self.held == 0 {
            return f64::NAN;
        }
        (self.pss_after_kib as f64 - self.pss_before_kib as f64) / self.held as f64
    }
}

pub fn run(
    server: &Server,
    holder: &mut Holder,
    n: usize,
    budget: Duration,
) -> Result<Run, String> {
    let pid = server.pid().ok_or("no server process")?;
    let route = server.route();
    let timeout = Some(Duration::from_secs(10));
    // Warm up: a few sessions opened and closed, so the baseline has the server's steady state.
    for _ in 0..64 {
        drop(route.open(holder.addr, timeout).map_err(|e| format!("warm-up: {e}"))?);
    }
    thread::sleep(Duration::from_millis(300));
    holder.clear();
    thread::sleep(Duration::from_millis(300));
    let (pss_before_kib, procs_before) = sys::tree_pss_kib(pid);

    let start = Instant::now();
    let mut clients: Vec<TcpStream> = Vec::with_capacity(n);
    let mut error = None;
    while clients.len() < n {
        if start.elapsed() > budget {
            error = Some(format!("stopped after {} s", budget.as_secs()));
            break;
        }
        match route.open(holder.addr, timeout) {
            Ok(s) => clients.push(s),
            Err(e) => {
                error = Some(format!("connection {}: {e}", clients.len() + 1));
                break;
            }
        }
    }
    let opened = clients.len();
    let open_secs = start.elapsed().as_secs_f64();
    // The holder accepts on its own thread; wait for it to have them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder.count() < opened && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(500));
    let (pss_after_kib, procs_after) = sys::tree_pss_kib(pid);
    let held = holder.count().min(opened);
    let pids = server.pids();
    let verified = sys::count_owned_by(&holder.peers(), &pids);
    let still_running = !pids.is_empty();
    // The holder closes first, then the clients once the servers have passed the end of
    // stream on: TIME_WAIT stays on listening ports, not on ephemeral ones.
    holder.clear();
    thread::sleep(Duration::from_millis(1000));
    drop(clients);
    // Give the server time to notice and release everything before the next one.
    thread::sleep(Duration::from_millis(1000));
    Ok(Run {
        wanted: n,
        opened,
        held,
        error,
        pss_before_kib,
        pss_after_kib,
        procs_before,
        procs_after,
        verified,
        open_secs,
        still_running,
    })
}
