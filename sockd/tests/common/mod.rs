//! Shared harness for sockd's integration tests: start the real `sockd` binary on `127.0.0.1:0`
//! with a temporary rule file, capture its stderr log, and provide small local servers (echo,
//! HTTP/1.0 with a known body, half-close peers), raw SOCKS byte builders and bounded I/O helpers.
//! Also process control for the lifecycle tests (signals, exit status, RLIMIT_NOFILE, CPU time
//! from /proc) and clients bound to other loopback addresses (127.0.0.2…) as other hosts.
//!
//! What this is not: a SOCKS client library. Requests are built from literal bytes here so the
//! tests stay independent of the project's own codec crate (`socks-proto`). Every wait in this
//! file is bounded; a helper that cannot finish in time panics with the daemon's log attached.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default bound for one blocking read or write in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound for a log line to show up.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

/// A unique directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir()
            .join(format!("sockd-test-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `contents` to `name` inside the directory and return the full path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// External programs
// ---------------------------------------------------------------------------------------------

/// Find `program` in PATH (plus the sbin directories). Panics, naming the Debian package to
/// install, when it is missing: a missing tool is a failure, never a silent skip.
pub fn require_program(program: &str, debian_package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    for d in dirs {
        let candidate = d.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "required program `{program}` not found in PATH or sbin; install the Debian package \
         `{debian_package}` (apt-get install -y {debian_package})"
    );
}

/// Run a command to completion with a deadline; kill it and panic if it overruns.
pub fn run_bounded(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin was piped");
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = reader_thread(child.stdout.take().expect("stdout was piped"));
    let err = reader_thread(child.stderr.take().expect("stderr was piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = out.join().unwrap_or_default();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "{cmd:?} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr \
                     ---\n{}",
                    String::from_utf8_lossy(&stdout),
                    tail(&String::from_utf8_lossy(&stderr), 60)
                );
            }
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn reader_thread<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// The last `n` lines of `s` (for readable panic messages).
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Wait for a child to exit by itself within `timeout`; kill it and return None otherwise.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------------------------

/// Lines read from a child's pipe, shared with the reader thread.
#[derive(Debug, Clone, Default)]
pub struct LogLines(Arc<Mutex<Vec<String>>>);

impl LogLines {
    /// Spawn a thread that appends every line read from `r` (lossy UTF-8) and echoes it to the
    /// test's captured output with `prefix`.
    pub fn capture<R: Read + Send + 'static>(r: R, prefix: &'static str) -> LogLines {
        let lines = LogLines::default();
        let sink = lines.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        eprintln!("[{prefix}] {line}");
                        sink.lock().push(line);
                    }
                }
            }
        });
        lines
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lock().clone()
    }

    pub fn joined(&self) -> String {
        self.snapshot().join("\n")
    }

    /// The first line matching all `needles` (see [`line_matches`]), waiting up to `timeout`.
    pub fn wait_for(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.snapshot().into_iter().find(|l| line_matches(l, needles)) {
                return Some(l);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn count(&self, needles: &[&str]) -> usize {
        self.snapshot().iter().filter(|l| line_matches(l, needles)).count()
    }
}

/// Does `line` match every needle? A needle with whitespace in it or ending in `=` is matched as
/// a substring (`"bad request:"`, `"error="`); any other needle must equal a whole
/// whitespace-separated token (`"dst=127.0.0.1:80"` does not match `dst=127.0.0.1:8080`).
pub fn line_matches(line: &str, needles: &[&str]) -> bool {
    needles.iter().all(|n| {
        if n.contains(char::is_whitespace) || n.ends_with('=') {
            line.contains(n)
        } else {
            line.split_whitespace().any(|t| t == *n)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

/// Path of the binary under test.
pub fn sockd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockd")
}

/// A UDP echo server (on `127.0.0.1:0` or any address given); records each datagram's source
/// and length. Its thread ends with the test process, blocked in recv_from meanwhile.
pub struct UdpEcho {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<(SocketAddr, usize)>>>,
}

impl UdpEcho {
    pub fn start() -> UdpEcho {
        UdpEcho::start_on("127.0.0.1:0")
    }

    pub fn start_on(bind: &str) -> UdpEcho {
        let socket = std::net::UdpSocket::bind(bind).expect("bind the UDP echo server");
        let addr = socket.local_addr().expect("local_addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                record.lock().unwrap_or_else(|p| p.into_inner()).push((peer, n));
                let _ = socket.send_to(&buf[..n], peer);
            }
        });
        UdpEcho { addr, seen }
    }

    /// Source and length of every datagram so far.
    pub fn seen(&self) -> Vec<(SocketAddr, usize)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Reports that test `name` could not run, and why, where the run's summary shows it: straight
/// to standard error (not captured by the test harness) and into `skipped-tests.txt` beside the
/// binary under test, which `scripts/test` lists at the end.
pub fn skip(name: &str, why: &str) {
    let line = format!("SKIPPED: {name}: {why}\n");
    let _ = io::stderr().write_all(line.as_bytes());
    let file = Path::new(sockd_bin()).with_file_name("skipped-tests.txt");
    let file = std::fs::OpenOptions::new().create(true).append(true).open(file);
    let _ = file.and_then(|mut file| file.write_all(line.as_bytes()));
}

/// Builder for a standalone sockd: a temp dir holding `sockd.conf`, extra files, listen
/// addresses (default `127.0.0.1:0`) and extra arguments.
#[derive(Debug)]
pub struct SockdBuilder {
    dir: TempDir,
    conf: PathBuf,
    listen: Vec<String>,
    args: Vec<OsString>,
    nofile: Option<libc::rlim_t>,
}

impl SockdBuilder {
    pub fn new(rules: &str) -> SockdBuilder {
        let dir = TempDir::new("sockd");
        let conf = dir.write("sockd.conf", rules);
        SockdBuilder { dir, conf, listen: Vec::new(), args: Vec::new(), nofile: None }
    }

    /// The temporary directory holding the rule file (for pid files, users files, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Start the daemon with RLIMIT_NOFILE (soft and hard) set to `n` (set in the child between
    /// fork and exec, like `prlimit --nofile=n:n`).
    pub fn nofile_limit(mut self, n: libc::rlim_t) -> SockdBuilder {
        self.nofile = Some(n);
        self
    }

    /// Write an extra file (users file, hosts file) next to the rule file; returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        self.dir.write(name, contents)
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    pub fn listen(mut self, addr: &str) -> SockdBuilder {
        self.listen.push(addr.to_string());
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> SockdBuilder {
        self.args.push(a.into());
        self
    }

    pub fn start(self) -> Sockd {
        let listen =
            if self.listen.is_empty() { vec!["127.0.0.1:0".to_string()] } else { self.listen };
        let mut cmd = Command::new(sockd_bin());
        cmd.arg("-f").arg(&self.conf);
        for l in &listen {
            cmd.arg("--listen").arg(l);
        }
        cmd.args(&self.args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(n) = self.nofile {
            set_nofile_in_child(&mut cmd, n);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let stdout = LogLines::capture(child.stdout.take().expect("piped"), "sockd stdout");
        let log = LogLines::capture(child.stderr.take().expect("piped"), "sockd");
        let mut sockd =
            Sockd { child, log, stdout, addrs: Vec::new(), conf: self.conf, dir: self.dir };
        sockd.addrs = sockd.wait_listening(listen.len(), Duration::from_secs(10));
        sockd
    }
}

/// A running sockd; killed and reaped on drop.
#[derive(Debug)]
pub struct Sockd {
    child: Child,
    log: LogLines,
    stdout: LogLines,
    addrs: Vec<SocketAddr>,
    conf: PathBuf,
    dir: TempDir,
}

impl Sockd {
    /// Start sockd on 127.0.0.1:0 with `rules` and no extra arguments.
    pub fn start(rules: &str) -> Sockd {
        SockdBuilder::new(rules).start()
    }

    /// The first listening address (the one parsed from the first `listening on` line).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The rule file path exactly as passed with `-f` (for `rule=FILE:LINE`).
    pub fn conf(&self) -> String {
        self.conf.display().to_string()
    }

    /// `rule=FILE:LINE` as the daemon must log it.
    pub fn rule_tag(&self, line: usize) -> String {
        format!("rule={}:{line}", self.conf())
    }

    pub fn logs(&self) -> Vec<String> {
        self.log.snapshot()
    }

    pub fn log_text(&self) -> String {
        self.log.joined()
    }

    /// Wait for a log line containing `substr` (plain substring); panics with the log on timeout.
    pub fn wait_for_log(&self, substr: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.logs().into_iter().find(|l| l.contains(substr)) {
                return l;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no sockd log line containing {substr:?} within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for a log line matching all `needles` (see [`line_matches`]); panics on timeout.
    pub fn wait_for_line(&self, needles: &[&str], timeout: Duration) -> String {
        self.log.wait_for(needles, timeout).unwrap_or_else(|| {
            panic!(
                "no sockd log line matching {needles:?} within {timeout:?}; log:\n{}",
                self.log_text()
            )
        })
    }

    /// Like [`Sockd::wait_for_line`] but returns None instead of panicking.
    pub fn find_line(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        self.log.wait_for(needles, timeout)
    }

    pub fn count_lines(&self, needles: &[&str]) -> usize {
        self.log.count(needles)
    }

    /// Panics if the daemon has exited (it must survive whatever a test threw at it).
    pub fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("sockd exited unexpectedly ({st}); log:\n{}", self.log_text());
        }
    }

    fn wait_listening(&mut self, n: usize, timeout: Duration) -> Vec<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            let addrs: Vec<SocketAddr> =
                self.logs().iter().filter_map(|l| parse_listening(l)).collect();
            if addrs.len() >= n {
                return addrs;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100)); // let the reader drain stderr
                panic!(
                    "sockd exited ({st}) before listening; stderr:\n{}\nstdout:\n{}",
                    self.log_text(),
                    self.stdout.joined()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "sockd did not log {n} `listening on` line(s) within {timeout:?}; \
                     stderr:\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

// Process control for the lifecycle, exhaustion and kill -9 tests.
impl Sockd {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory holding the rule file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replace the rule file's contents (then send SIGHUP to make sockd read it).
    pub fn write_conf(&self, rules: &str) {
        std::fs::write(&self.conf, rules)
            .unwrap_or_else(|e| panic!("cannot rewrite {}: {e}", self.conf.display()));
    }

    /// Send `sig` (libc::SIGHUP, SIGTERM…) to the daemon.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet (the Child still owns
        // it), so the pid cannot have been reused for another process.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait up to `timeout` for the daemon to exit by itself; `None` if it is still running
    /// (it is left running; drop kills it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => return None,
                Err(e) => panic!("waiting for sockd: {e}"),
            }
        }
    }

    /// CPU time (user + system) the daemon has used so far, from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        process_cpu_time(self.pid())
    }

    /// The daemon's open descriptors (entries of /proc/PID/fd).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }
}

/// CPU time (utime + stime) of process `pid` from /proc/PID/stat.
pub fn process_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name (field 2) is in parentheses and may contain blanks: split after it.
    let after = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after `state` (field 3).
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Duration::from_millis(ticks * 1000 / hz)
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (any user may), so that
/// it and the daemons it starts afterwards can hold `needed` descriptors; false when the hard
/// limit is below `needed`.
pub fn raise_nofile_to(needed: libc::rlim_t) -> bool {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes into the struct we own; setrlimit(2) reads it.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    raised && limit.rlim_cur >= needed
}

/// Make `cmd`'s child run with RLIMIT_NOFILE = `n` (soft and hard).
pub fn set_nofile_in_child(cmd: &mut Command, n: libc::rlim_t) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
    // SAFETY: the closure runs in the forked child before exec and calls only setrlimit(2),
    // which is async-signal-safe; it touches no locks and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A TCP connection to `dst` from the local address `src` (a loopback address other than
/// 127.0.0.1, to look like another client host), with the same timeouts as [`connect`].
pub fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> TcpStream {
    try_connect_from(src, dst).unwrap_or_else(|e| panic!("connect {src} -> {dst}: {e}"))
}

/// [`connect_from`] that returns the connect error (e.g. ECONNREFUSED) instead of panicking.
pub fn try_connect_from(src: Ipv4Addr, dst: SocketAddr) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(dst4) = dst else { panic!("connect_from: IPv4 only, got {dst}") };
    let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) returns a new descriptor or -1; nothing else owns it, so handing it to
    // TcpStream (which closes it on drop) right away is sound. bind/connect get a pointer to a
    // live, properly sized sockaddr_in.
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sin(src, 0);
        if libc::bind(fd, std::ptr::addr_of!(local).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sin(*dst4.ip(), dst4.port());
        if libc::connect(fd, std::ptr::addr_of!(remote).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        stream
    };
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

impl Drop for Sockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parse `listening on ADDR:PORT` (the startup line; not the BIND line, which has `bind:`).
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    if line.contains("bind:") {
        return None;
    }
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token = rest.split_whitespace().next()?;
    token.trim_end_matches([',', ';', ')']).parse::<SocketAddr>().ok()
}

// ---------------------------------------------------------------------------------------------
// Local servers
// ---------------------------------------------------------------------------------------------

/// A listener on a loopback address serving each connection in its own thread.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn spawn<F>(bind: &str, handler: F) -> TestServer
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(bind)
            .unwrap_or_else(|e| panic!("cannot bind test server {bind}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let (acc, st, pe) = (accepted.clone(), stop.clone(), peers.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(peer) = conn.peer_addr() {
                    pe.lock().unwrap_or_else(|p| p.into_inner()).push(peer);
                }
                acc.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
                let h = handler.clone();
                thread::spawn(move || h(conn));
            }
        });
        TestServer { addr, accepted, peers, stop }
    }

    /// Source addresses of the connections accepted so far, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many connections the server has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `HOST:PORT` as sockd logs the destination (`dst=` value).
    pub fn dst(&self) -> String {
        self.addr.to_string()
    }

    pub fn v4(&self) -> SocketAddrV4 {
        match self.addr {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => panic!("test server {a} is not IPv4"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Echo everything back; on EOF from the client, shut down the write side.
pub fn echo_server() -> TestServer {
    echo_server_on("127.0.0.1:0")
}

pub fn echo_server_on(bind: &str) -> TestServer {
    TestServer::spawn(bind, |mut s| {
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// Deterministic pseudo-random bytes (xorshift64*), for bodies whose integrity is checked.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Byte counts of one HTTP exchange as seen by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpExchange {
    /// Bytes the server read from the connection (request, up to the client's EOF).
    pub request_bytes: u64,
    /// Bytes the server wrote (status line, headers and body).
    pub response_bytes: u64,
}

/// An HTTP/1.0 server answering every GET with the same body, then closing.
#[derive(Debug)]
pub struct HttpServer {
    pub server: TestServer,
    pub body: Arc<Vec<u8>>,
    exchanges: Arc<Mutex<Vec<HttpExchange>>>,
}

impl HttpServer {
    /// 200 KiB of pseudo-random bytes on 127.0.0.1:0.
    pub fn start() -> HttpServer {
        HttpServer::with_body(pseudo_random(200 * 1024, 0x5eed_50c5))
    }

    pub fn with_body(body: Vec<u8>) -> HttpServer {
        let body = Arc::new(body);
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let (b, ex) = (body.clone(), exchanges.clone());
        let server = TestServer::spawn("127.0.0.1:0", move |mut s| {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let mut resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \
                 {}\r\nConnection: close\r\n\r\n",
                b.len()
            )
            .into_bytes();
            if !req.starts_with(b"GET ") {
                resp = b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec();
            } else {
                resp.extend_from_slice(&b);
            }
            if s.write_all(&resp).is_err() {
                return;
            }
            let _ = s.shutdown(Shutdown::Write);
            // Count whatever else the client sends until it closes.
            let mut request_bytes = req.len() as u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request_bytes += n as u64,
                }
            }
            ex.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(HttpExchange { request_bytes, response_bytes: resp.len() as u64 });
        });
        HttpServer { server, body, exchanges }
    }

    pub fn url(&self) -> String {
        format!("http://{}/data.bin", self.server.addr)
    }

    /// URL with a host name instead of the address (for remote name resolution).
    pub fn url_with_host(&self, host: &str) -> String {
        format!("http://{host}:{}/data.bin", self.server.port())
    }

    /// Completed exchanges, waiting up to `timeout` for at least `n` of them.
    pub fn wait_exchanges(&self, n: usize, timeout: Duration) -> Vec<HttpExchange> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.exchanges.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if v.len() >= n || Instant::now() >= deadline {
                return v;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------------

/// A curl command with proxy-related environment and ~/.curlrc neutralised.
pub fn curl_command() -> Command {
    let curl = require_program("curl", "curl");
    let mut cmd = Command::new(curl);
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "socks_proxy",
        "SOCKS_PROXY",
    ] {
        cmd.env_remove(v);
    }
    cmd.args(["-q", "-sS", "--max-time", "20", "--output", "-"]);
    cmd
}

/// Panics unless curl succeeded and returned exactly `body`.
pub fn assert_curl_body(out: &Output, body: &[u8], what: &str, sockd_log: &str) {
    assert!(
        out.status.success(),
        "{what}: curl failed ({}): {}\nsockd log:\n{sockd_log}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.len(),
        body.len(),
        "{what}: body length differs; curl stderr: {}\nsockd log:\n{sockd_log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == body, "{what}: body content differs (same length {})", body.len());
}

// ---------------------------------------------------------------------------------------------
// Raw SOCKS bytes
// ---------------------------------------------------------------------------------------------

pub const CMD_CONNECT: u8 = 0x01;
pub const CMD_BIND: u8 = 0x02;
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// SOCKS4 request: `04 | CD | DSTPORT | DSTIP | USERID | 00`.
pub fn socks4_request(cd: u8, dst: SocketAddrV4, userid: &[u8]) -> Vec<u8> {
    let mut v = vec![0x04, cd];
    v.extend_from_slice(&dst.port().to_be_bytes());
    v.extend_from_slice(&dst.ip().octets());
    v.extend_from_slice(userid);
    v.push(0x00);
    v
}

/// SOCKS4a request: DSTIP 0.0.0.1, then `USERID 00 HOST 00`.
pub fn socks4a_request(cd: u8, host: &str, port: u16, userid: &[u8]) -> Vec<u8> {
    let mut v = vec![0x04, cd];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&[0x00, 0x00, 0x00, 0x01]);
    v.extend_from_slice(userid);
    v.push(0x00);
    v.extend_from_slice(host.as_bytes());
    v.push(0x00);
    v
}

/// SOCKS5 greeting: `05 | NMETHODS | METHODS`.
pub fn socks5_greeting(methods: &[u8]) -> Vec<u8> {
    let mut v = vec![0x05, methods.len() as u8];
    v.extend_from_slice(methods);
    v
}

/// RFC 1929 request: `01 | ULEN | UNAME | PLEN | PASSWD`.
pub fn rfc1929_request(user: &str, pass: &str) -> Vec<u8> {
    let mut v = vec![0x01, user.len() as u8];
    v.extend_from_slice(user.as_bytes());
    v.push(pass.len() as u8);
    v.extend_from_slice(pass.as_bytes());
    v
}

/// SOCKS5 request with an IPv4 or IPv6 address: `05 | CMD | 00 | ATYP | ADDR | PORT`.
pub fn socks5_request(cmd: u8, dst: SocketAddr) -> Vec<u8> {
    let mut v = vec![0x05, cmd, 0x00];
    match dst {
        SocketAddr::V4(a) => {
            v.push(0x01);
            v.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            v.push(0x04);
            v.extend_from_slice(&a.ip().octets());
        }
    }
    v.extend_from_slice(&dst.port().to_be_bytes());
    v
}

/// SOCKS5 request with a domain name: ATYP 03, length byte, name (no NUL).
pub fn socks5_request_domain(cmd: u8, host: &str, port: u16) -> Vec<u8> {
    let mut v = vec![0x05, cmd, 0x00, 0x03, host.len() as u8];
    v.extend_from_slice(host.as_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// Connect to `addr` with TCP_NODELAY and bounded read/write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    s.set_nodelay(true).expect("TCP_NODELAY");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    s
}

/// `client=IP:PORT` for the local end of `s`, as sockd logs the client.
pub fn client_tag(s: &TcpStream) -> String {
    format!("client={}", s.local_addr().expect("local_addr"))
}

/// Read exactly `n` bytes or panic, saying what was expected.
pub fn read_n(s: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                panic!("{what}: connection closed after {got} of {n} bytes: {:02x?}", &buf[..got])
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "{what}: nothing more within the read timeout after {got} of {n} bytes: {:02x?}",
                &buf[..got.min(32)]
            ),
            Err(e) => panic!("{what}: read failed after {got} of {n} bytes: {e}"),
        }
    }
    buf
}

/// Read until EOF; panics on timeout or error (reset included).
pub fn read_to_eof(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut v = Vec::new();
    if let Err(e) = s.read_to_end(&mut v) {
        let why = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            "no EOF within the read timeout".to_string()
        } else {
            e.to_string()
        };
        panic!("{what}: read to EOF failed after {} bytes: {why}", v.len());
    }
    v
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Eof,
    Reset,
}

/// Wait until the peer closes (EOF or reset) within `within`; returns the bytes received first
/// and how it ended. Panics if the connection is still open at the deadline.
pub fn expect_closed(s: &mut TcpStream, within: Duration, what: &str) -> (Vec<u8>, Closed) {
    let deadline = Instant::now() + within;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("{what}: connection still open after {within:?} (received {:02x?})", data);
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return (data, Closed::Eof),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return (data, Closed::Reset)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: unexpected read error: {e}"),
        }
    }
}

/// A parsed SOCKS4 reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socks4Reply {
    pub vn: u8,
    pub cd: u8,
    pub addr: SocketAddrV4,
}

pub fn read_socks4_reply(s: &mut TcpStream, what: &str) -> Socks4Reply {
    let b = read_n(s, 8, what);
    Socks4Reply {
        vn: b[0],
        cd: b[1],
        addr: SocketAddrV4::new(
            Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            u16::from_be_bytes([b[2], b[3]]),
        ),
    }
}

/// A parsed SOCKS5 reply (domain-name BND addresses are reported as 0.0.0.0 with `domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Reply {
    pub rep: u8,
    pub atyp: u8,
    pub addr: SocketAddr,
    pub domain: Option<String>,
}

pub fn read_socks5_reply(s: &mut TcpStream, what: &str) -> Socks5Reply {
    let head = read_n(s, 4, what);
    assert_eq!(head[0], 0x05, "{what}: reply VER must be 05, got {head:02x?}");
    assert_eq!(head[2], 0x00, "{what}: reply RSV must be 00, got {head:02x?}");
    let (addr, domain) = match head[3] {
        0x01 => {
            let b = read_n(s, 6, what);
            (
                SocketAddr::from((
                    Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                    u16::from_be_bytes([b[4], b[5]]),
                )),
                None,
            )
        }
        0x04 => {
            let b = read_n(s, 18, what);
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            (SocketAddr::from((Ipv6Addr::from(o), u16::from_be_bytes([b[16], b[17]]))), None)
        }
        0x03 => {
            let len = read_n(s, 1, what)[0] as usize;
            let b = read_n(s, len + 2, what);
            let name = String::from_utf8_lossy(&b[..len]).to_string();
            (
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, u16::from_be_bytes([b[len], b[len + 1]]))),
                Some(name),
            )
        }
        other => panic!("{what}: reply has unknown ATYP {other:02x} ({head:02x?})"),
    };
    Socks5Reply { rep: head[1], atyp: head[3], addr, domain }
}

/// SOCKS5 no-auth greeting; asserts the server picks method 00.
pub fn socks5_noauth(s: &mut TcpStream) {
    s.write_all(&[0x05, 0x01, 0x00]).expect("write greeting");
    let m = read_n(s, 2, "SOCKS5 method selection");
    assert_eq!(m, [0x05, 0x00], "server must select method 00 (no auth)");
}

/// Full SOCKS5 CONNECT without auth; asserts success and returns the relaying stream.
pub fn socks5_connect(proxy: SocketAddr, dst: SocketAddr) -> TcpStream {
    let mut s = connect(proxy);
    socks5_noauth(&mut s);
    s.write_all(&socks5_request(CMD_CONNECT, dst)).expect("write request");
    let r = read_socks5_reply(&mut s, "SOCKS5 CONNECT reply");
    assert_eq!(r.rep, 0x00, "SOCKS5 CONNECT to {dst} must succeed: {r:?}");
    s
}

/// Full SOCKS4 CONNECT; asserts 90 and returns the relaying stream.
pub fn socks4_connect(proxy: SocketAddr, dst: SocketAddrV4, userid: &[u8]) -> TcpStream {
    let mut s = connect(proxy);
    s.write_all(&socks4_request(CMD_CONNECT, dst, userid)).expect("write request");
    let r = read_socks4_reply(&mut s, "SOCKS4 CONNECT reply");
    assert_eq!((r.vn, r.cd), (0, 90), "SOCKS4 CONNECT to {dst} must be granted: {r:?}");
    s
}

/// Send `payload` and expect it back verbatim (through an echo server).
pub fn assert_echo(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(payload).expect("write payload");
    let back = read_n(s, payload.len(), "echo");
    assert!(back == payload, "echoed bytes differ from what was sent");
}

/// A well-behaved SOCKS5 client is served: CONNECT to the echo server, round trip, close, and
/// sockd logs `connected:` and `closed:` for exactly this client.
pub fn assert_served(sockd: &Sockd, echo: &TestServer) {
    let mut s = socks5_connect(sockd.addr(), echo.addr);
    let tag = client_tag(&s);
    let payload = pseudo_random(1000, 77);
    assert_echo(&mut s, &payload);
    s.shutdown(Shutdown::Write).expect("shutdown");
    let rest = read_to_eof(&mut s, "echo EOF");
    assert!(rest.is_empty(), "no extra bytes after the echo");
    let dst = format!("dst={}", echo.dst());
    sockd.wait_for_line(&["connected:", &tag, "cmd=connect", &dst], LOG_TIMEOUT);
    sockd.wait_for_line(&["closed:", &tag, &dst, "sent=1000", "received=1000"], LOG_TIMEOUT);
}

/// Write `data` in two pieces split at `at`, with a pause in between.
pub fn write_split(s: &mut TcpStream, data: &[u8], at: usize, pause: Duration) -> io::Result<()> {
    s.write_all(&data[..at])?;
    s.flush()?;
    thread::sleep(pause);
    s.write_all(&data[at..])
}

/// A currently unused loopback port (bind to :0, read it, close).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A channel-backed one-shot result from a server thread.
pub fn recv_within<T>(rx: &mpsc::Receiver<T>, timeout: Duration, what: &str) -> T {
    rx.recv_timeout(timeout).unwrap_or_else(|e| panic!("{what}: nothing within {timeout:?}: {e}"))
}
