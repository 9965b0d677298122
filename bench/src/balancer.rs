//! The `balancer` section: what sockd costs behind a load balancer (issue 14). One HAProxy
//! (TCP mode) with three frontends on 127.0.0.1: two forward straight to the benchmark's echo
//! server and sink ("HAProxy alone": the balancer with nothing behind it but the destination),
//! one forwards with `send-proxy-v2` to a sockd started with `--accept-proxy-protocol
//! 127.0.0.1`, through which the benchmark's SOCKS5 client reaches the same destinations. It
//! measures the connection rate (connect, 1-byte echo, close) and one stream's download
//! throughput over each path, and the direct path for scale, and prints them as ratios.
//!
//! `forwarder` starts a plain HAProxy TCP forwarder for the connection-rate section's HAProxy
//! row (issue 17).
//!
//! Not here: the main sections' servers and measurements (servers.rs, connrate.rs, relay.rs);
//! this section starts its own processes and needs the `haproxy` program (Debian `haproxy`),
//! without which it says SKIPPED.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::report::{median, num, pct, Table};
use crate::servers::find_program;
use crate::socks5::Path as Route;
use crate::sys;
use crate::targets::{Echo, Sink, DOWNLOAD};

/// Concurrent clients of the connection-rate runs.
const CLIENTS: usize = 4;

/// A child process killed (and reaped) on drop.
pub struct Process(Child);

impl Process {
    /// Its PID.
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        sys::kill(self.0.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        sys::kill(self.0.id() as i32, libc::SIGKILL);
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// Starts `cmd` with its output in `log`, once `addrs` all accept connections.
fn start(mut cmd: Command, log: &Path, addrs: &[SocketAddr]) -> Result<Process, String> {
    let out = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| format!("dup log: {e}"))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().map_err(|e| format!("start {cmd:?}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !addrs.iter().all(|a| TcpStream::connect(a).is_ok()) {
        if let Ok(Some(status)) = child.try_wait() {
            let text = fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{cmd:?} exited at start ({status}): {text}"));
        }
        if Instant::now() > deadline {
            let _ = Process(child);
            return Err(format!("{cmd:?} did not listen on {addrs:?} within 10 s"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(Process(child))
}

/// HAProxy in TCP mode on 127.0.0.1 forwarding every connection to `to`, nothing else: what an
/// L4 relay costs on this machine, for the connection-rate section. Its config and output go to
/// `dir` (`haproxy-forward.cfg`, `.log`). Returns the process, the address it listens on and
/// its version line.
pub fn forwarder(
    haproxy_bin: &Path,
    dir: &Path,
    to: SocketAddr,
) -> Result<(Process, SocketAddr, String), String> {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let config = format!(
        "# socks-bench connrate: plain TCP forwarding, no SOCKS\n\
         global\n    maxconn 4000\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend forward\n    bind {listen}\n    default_backend to\n\
         backend to\n    server d {to}\n"
    );
    let conf = dir.join("haproxy-forward.cfg");
    fs::write(&conf, config).map_err(|e| format!("write {}: {e}", conf.display()))?;
    let mut cmd = Command::new(haproxy_bin);
    cmd.arg("-db").arg("-f").arg(&conf);
    let process = start(cmd, &dir.join("haproxy-forward.log"), &[listen])?;
    Ok((process, listen, version(haproxy_bin)))
}

/// `haproxy -v`'s first line.
fn version(haproxy_bin: &Path) -> String {
    let version = Command::new(haproxy_bin).arg("-v").output().ok();
    version
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_default()
}

/// How a run reaches the destination: the route, and the address it opens to.
#[derive(Debug, Clone, Copy)]
struct Way {
    route: Route,
    /// The destination (SOCKS) or the frontend that forwards to it (HAProxy alone, direct).
    to: SocketAddr,
}

impl Way {
    fn open(self) -> std::io::Result<TcpStream> {
        let s = self.route.open(self.to, Some(Duration::from_secs(5)))?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

/// Connections per second and the median latency (µs) of connect, 1-byte echo, close.
fn connrate(way: Way, dur: Duration) -> (f64, f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, latencies, errors) = (stop.clone(), latencies.clone(), errors.clone());
            thread::spawn(move || {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let once = way.open().and_then(|mut s| {
                        s.write_all(b"x")?;
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b)
                    });
                    match once {
                        Ok(()) => mine.push(t.elapsed().as_secs_f64() * 1e6),
                        Err(_) => *errors.lock().unwrap_or_else(|p| p.into_inner()) += 1,
                    }
                }
                latencies.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            })
        })
        .collect();
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let wall = started.elapsed().as_secs_f64();
    let all = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let errors = *errors.lock().unwrap_or_else(|p| p.into_inner());
    (all.len() as f64 / wall, median(&all), errors)
}

/// One stream's download throughput (Gbit/s) for `dur`.
fn download(way: Way, dur: Duration) -> Result<f64, String> {
    let mut s = way.open().map_err(|e| format!("open: {e}"))?;
    s.write_all(&[DOWNLOAD]).map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; 128 * 1024];
    let started = Instant::now();
    let mut bytes = 0u64;
    while started.elapsed() < dur {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(bytes as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9)
}

/// Runs the section; `reps` runs per figure of `dur` each (median).
pub fn run(reps: usize, dur: Duration, dir: &Path, sockd_bin: &Path) -> Result<(), String> {
    println!(
        "\n== Behind a load balancer: HAProxy alone vs HAProxy → sockd --accept-proxy-protocol; \
         median of {reps} × {dur:?} =="
    );
    let Some(haproxy_bin) = find_program("haproxy") else {
        println!("  SKIPPED: haproxy not found (apt-get install haproxy)");
        return Ok(());
    };
    let lo: IpAddr = [127, 0, 0, 1].into();
    let echo = Echo::start(lo).map_err(|e| format!("echo server: {e}"))?;
    let sink = Sink::start(lo).map_err(|e| format!("sink: {e}"))?;
    let sockd_addr: SocketAddr = (lo, free_port()?).into();
    let rules = dir.join("sockd-balanced.conf");
    fs::write(
        &rules,
        "# socks-bench balancer: loopback to loopback\npermit 127.0.0.0/8 127.0.0.0/8\n",
    )
    .map_err(|e| format!("write {}: {e}", rules.display()))?;
    let mut sockd = Command::new(sockd_bin);
    sockd.arg("-f").arg(&rules).arg("-l").arg(sockd_addr.to_string());
    sockd.args(["--accept-proxy-protocol", "127.0.0.1"]);
    sockd.args(["--max-sessions", "1000000", "--max-sessions-per-client", "1000000"]);
    let _sockd = start(sockd, &dir.join("sockd-balanced.log"), &[sockd_addr])?;
    let (to_echo, to_sink, to_sockd): (SocketAddr, SocketAddr, SocketAddr) =
        ((lo, free_port()?).into(), (lo, free_port()?).into(), (lo, free_port()?).into());
    let config = format!(
        "# socks-bench balancer section\n\
         global\n    maxconn 4000\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend alone_echo\n    bind {to_echo}\n    default_backend echo\n\
         backend echo\n    server d {}\n\
         frontend alone_sink\n    bind {to_sink}\n    default_backend sink\n\
         backend sink\n    server d {}\n\
         frontend socks\n    bind {to_sockd}\n    default_backend sockd\n\
         backend sockd\n    server s1 {sockd_addr} send-proxy-v2\n",
        echo.addr, sink.addr
    );
    let conf = dir.join("haproxy.cfg");
    fs::write(&conf, config).map_err(|e| format!("write {}: {e}", conf.display()))?;
    let mut haproxy = Command::new(&haproxy_bin);
    haproxy.arg("-db").arg("-f").arg(&conf);
    let _haproxy = start(haproxy, &dir.join("haproxy.log"), &[to_echo, to_sink, to_sockd])?;
    let version = version(&haproxy_bin);
    println!("  {version}; sockd on {sockd_addr}; {CLIENTS} clients for the connection rate");

    let ways = [
        ("direct", Way { route: Route::Direct, to: echo.addr }, sink.addr, Route::Direct),
        ("HAProxy alone", Way { route: Route::Direct, to: to_echo }, to_sink, Route::Direct),
        (
            "HAProxy → sockd",
            Way { route: Route::Socks5(to_sockd), to: echo.addr },
            sink.addr,
            Route::Socks5(to_sockd),
        ),
    ];
    let mut rates = vec![Vec::new(); ways.len()];
    let mut p50s = vec![Vec::new(); ways.len()];
    let mut gbps = vec![Vec::new(); ways.len()];
    let mut failures = Vec::new();
    for _ in 0..reps {
        for (i, (name, way, sink_to, sink_route)) in ways.iter().enumerate() {
            let (rate, p50, errors) = connrate(*way, dur);
            if errors > 0 {
                failures.push(format!("{name}: {errors} failed connections"));
            }
            rates[i].push(rate);
            p50s[i].push(p50);
            match download(Way { route: *sink_route, to: *sink_to }, dur) {
                Ok(g) => gbps[i].push(g),
                Err(e) => failures.push(format!("{name} download: {e}")),
            }
        }
    }
    let mut t = Table::new(&["path", "conn/s", "p50 µs", "download Gbit/s", "vs HAProxy alone"]);
    let m = |v: &Vec<f64>| median(v);
    for (i, (name, ..)) in ways.iter().enumerate() {
        let versus = if i == 2 {
            format!(
                "conn/s {}, download {}",
                pct(m(&rates[2]), m(&rates[1])),
                pct(m(&gbps[2]), m(&gbps[1]))
            )
        } else {
            String::new()
        };
        t.row(vec![
            (*name).to_string(),
            num(m(&rates[i]), 0),
            num(m(&p50s[i]), 0),
            num(m(&gbps[i]), 2),
            versus,
        ]);
    }
    t.print();
    println!(
        "  HAProxy alone forwards to the destination itself; HAProxy → sockd adds the PROXY v2 \
         header, the SOCKS5 handshake and sockd's relay (and its two log lines per connection)"
    );
    for f in &failures {
        println!("  FAILED: {f}");
    }
    Ok(())
}
