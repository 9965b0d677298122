//! Relay throughput: N streams at once to the loopback sink, upload or download, for a fixed
//! time, directly or through a server. Counts only bytes that arrived (upload: the sink's
//! count after the client's half-close, download: what the client read) and the server's CPU
//! time meanwhile; checks mid-run that the sink's peers are sockets of the server's processes.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::servers::{Kind, Server};
use crate::sys;
use crate::targets::{Sink, CHUNK, DOWNLOAD, UPLOAD};

/// Direction of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Upload,
    Download,
}

/// One throughput run.
#[derive(Debug, Clone)]
pub struct Run {
    pub gbps: f64,
    pub bytes: u64,
    pub wall: f64,
    pub cpu_secs: f64,
    /// Streams whose far end at the sink was owned by the server (direct: by this process).
    pub verified: usize,
    /// Upload: streams whose half-close was relayed with the other direction kept open (the
    /// sink's reply arrived after the client's shutdown(SHUT_WR)).
    pub half_closed: Option<usize>,
}

pub fn run(
    server: &Server,
    sink: &Sink,
    dir: Dir,
    streams: usize,
    dur: Duration,
) -> Result<Run, String> {
    sink.peers.lock().map_err(|_| "sink poisoned")?.clear();
    sink.uploads.lock().map_err(|_| "sink poisoned")?.clear();
    let route = server.route();
    let mut conns = Vec::new();
    for _ in 0..streams {
        let mut s = route
            .open(sink.addr, Some(Duration::from_secs(30)))
            .map_err(|e| format!("open stream to the sink: {e}"))?;
        s.write_all(&[if dir == Dir::Upload { UPLOAD } else { DOWNLOAD }])
            .map_err(|e| format!("send command: {e}"))?;
        conns.push(s);
    }
    let cpu0 = server.cpu_ticks();
    let barrier = Arc::new(Barrier::new(streams + 1));
    let mut handles = Vec::new();
    for mut s in conns {
        let barrier = barrier.clone();
        handles.push(thread::spawn(move || -> Result<(u64, Instant), String> {
            let mut buf = vec![0x5au8; CHUNK];
            barrier.wait();
            let deadline = Instant::now() + dur;
            match dir {
                Dir::Upload => {
                    while Instant::now() < deadline {
                        s.write_all(&buf).map_err(|e| format!("upload write: {e}"))?;
                    }
                    s.shutdown(Shutdown::Write).map_err(|e| format!("half-close: {e}"))?;
                    // The sink's own record counts; this says whether the half-close was
                    // relayed with the reply direction still open.
                    let mut count = [0u8; 8];
                    Ok((u64::from(s.read_exact(&mut count).is_ok()), Instant::now()))
                }
                Dir::Download => {
                    let mut total = 0u64;
                    while Instant::now() < deadline {
                        match s.read(&mut buf) {
                            Ok(0) => return Err("download: early end of stream".into()),
                            Ok(n) => total += n as u64,
                            Err(e) => return Err(format!("download read: {e}")),
                        }
                    }
                    Ok((total, Instant::now()))
                }
            }
        }));
    }
    barrier.wait();
    let start = Instant::now();
    // Mid-run: which process holds the other end of each stream the sink accepted?
    thread::sleep(dur / 2);
    let peers = sink.peers.lock().map_err(|_| "sink poisoned")?.clone();
    let owners = match server.kind {
        Kind::Direct => vec![std::process::id() as i32],
        _ => server.pids(),
    };
    let verified = sys::count_owned_by(&peers, &owners).min(streams);
    let (mut bytes, mut end, mut half_closed) = (0, start, 0);
    for h in handles {
        let (n, t) = h.join().map_err(|_| "stream thread panicked")??;
        if dir == Dir::Download {
            bytes += n;
            end = end.max(t);
        } else {
            half_closed += n as usize;
        }
    }
    if dir == Dir::Upload {
        // Bytes and time as the sink saw them: up to the last end of stream.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = sink.uploads.lock().map_err(|_| "sink poisoned")?.clone();
            if done.len() >= streams {
                bytes = done.iter().map(|d| d.0).sum();
                end = done.iter().map(|d| d.1).max().unwrap_or(start);
                break;
            }
            if Instant::now() > deadline {
                return Err("the sink did not see every upload end".into());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
    let cpu1 = server.cpu_ticks();
    let wall = (end - start).as_secs_f64();
    Ok(Run {
        gbps: bytes as f64 * 8.0 / wall / 1e9,
        bytes,
        wall,
        cpu_secs: cpu1.saturating_sub(cpu0) as f64 / sys::clk_tck() as f64,
        verified,
        half_closed: (dir == Dir::Upload).then_some(half_closed),
    })
}
