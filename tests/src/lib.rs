//! Harness for the end-to-end tests of `libsocks.so`: each test gets a [`Lab`] — its own three
//! network namespaces (`inside` → `fw` → `outside`, see [`netns`]), a temporary directory,
//! SOCKS servers started in `fw` (our `sockd`, Dante's `danted`, `microsocks`), destination
//! servers in `outside` ([`servers`]), and real client programs run in `inside` under the
//! library ([`process::Client`]). A destination in `outside` is reachable from `inside` only
//! through the SOCKS server, so no test can pass by connecting directly.
//!
//! The firewall scenario of the paper adds: real daemons outside ([`vsftpd`], fingerd and
//! telnetd under [`inetd`]), sockd itself under inetd on the firewall
//! ([`Lab::sockd_under_inetd`], logging to a [`logfile::LogFile`]), terminal sessions
//! ([`pty`]) and the leak check ([`leaks`]: nftables counters of what leaves `inside`).
//!
//! Names resolved on the far side add name servers ([`dns`]: dnsmasq on the outside host,
//! which only the firewall's resolver uses, and optionally one on the inside LAN) and IPv6 on
//! the `fw`–`outside` link.
//!
//! UDP (issue 8) adds UDP echo servers outside ([`UdpEcho`]) and the reading of sockd's
//! `closed: … cmd=udp-associate …` lines ([`UdpSession`], [`assert_udp_session`]); the leak
//! check counts UDP to sockd's address (the relay port is picked per association) as traffic
//! to sockd.
//!
//! The library loaded system-wide adds [`preload::SystemWide`]: a program run in a private
//! mount namespace whose `/etc` is an overlay carrying a generated `/etc/ld.so.preload` (and
//! `socks.conf`), optionally as another user and with file capabilities (secure execution).
//!
//! Without root, [`Lab::new`] reports the test as skipped ([`skip`]) and returns `None`; the
//! loopback suite (tests/tests/loopback.rs) runs the library under real programs in the test's
//! own network namespace ([`OWN_NETNS`]) as any user. A missing program is
//! a failure naming its Debian package ([`paths::require`]). Every wait is bounded. Dropping
//! the lab kills what it started and deletes the namespaces, also after a panic.
//!
//! Chains of proxies (issue 15) add Debian's `tinyproxy` as an HTTP CONNECT hop ([`tinyproxy`]).
//!
//! Browsers and runtimes (issue 16) add a small web site of pages and scripts with one answer
//! held until the test releases it ([`web`]), and Chromium run headless as an unprivileged
//! user with its sandbox on, its processes inspected mid-load ([`chromium`]).
//!
//! The library's map of fake names is a per-user file under `$XDG_RUNTIME_DIR` (issue 16):
//! every lab client gets the lab's own [`Lab::runtime_dir`], so tests never share one.
//!
//! Not here: the assertions themselves (tests/tests/*.rs).

pub mod alarm;
pub mod build;
pub mod chromium;
pub mod dns;
pub mod inetd;
pub mod leaks;
pub mod logfile;
pub mod netns;
pub mod paths;
pub mod preload;
pub mod probe;
pub mod process;
pub mod pty;
pub mod servers;
pub mod tinyproxy;
pub mod vsftpd;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use dns::Dnsmasq;
pub use inetd::InetdSockd;
pub use leaks::LeakCounter;
pub use logfile::LogFile;
pub use netns::{
    Ns, Topology, DEAD_DNS_ADDR, FW_INSIDE_ADDR, FW_OUTSIDE_ADDR, INSIDE_ADDR, OUTSIDE_ADDR,
    SOCKS_PORT,
};
pub use preload::SystemWide;
pub use process::{Client, Daemon, Preload, Ran, OWN_NETNS};
pub use pty::Step;
pub use servers::{http_body, pattern, whois_answer, Datagram, Exchange, Server, UdpEcho};
pub use tinyproxy::Tinyproxy;
pub use vsftpd::Vsftpd;

/// How long a server gets to come up, and a log line to show up.
pub const STARTUP: Duration = Duration::from_secs(10);

/// `SOCKS_SERVER` value for a server listening in `fw`.
pub const SERVER: &str = "192.0.2.1:1080";

/// The sockd rule file most tests use: the workstation network may go anywhere.
pub const PERMIT_INSIDE: &str = "# end-to-end tests: the inside network may go anywhere\n\
                                 permit 192.0.2.0/24\n";

/// A unique directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `socks-e2e-TAG-PID-N`.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("socks-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Makes `path` (and its parents) a directory with mode 0700.
pub fn private_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)))
        .unwrap_or_else(|e| panic!("cannot make {} private: {e}", path.display()));
}

/// Whether this process may create network namespaces (is root).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// File of the skipped tests' lines, which `scripts/test` lists after the run.
pub fn skipped_tests_file() -> PathBuf {
    paths::target_dir().join("skipped-tests.txt")
}

/// Reports that test `name` could not run, and why: written straight to standard error (which
/// the test harness does not capture, so the line shows without `--nocapture`) and appended to
/// [`skipped_tests_file`], so the summary of the run names it too.
pub fn skip(name: &str, why: &str) {
    use std::io::Write;
    let line = format!("SKIPPED: {name}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let file = std::fs::OpenOptions::new().create(true).append(true).open(skipped_tests_file());
    if let Ok(mut file) = file {
        let _ = file.write_all(line.as_bytes());
    }
}

/// One test's world; see the crate documentation. Fields drop in declaration order: the
/// topology (which kills whatever still runs in its namespaces) before the temporary directory
/// those processes may be using.
#[derive(Debug)]
pub struct Lab {
    name: String,
    /// The test's namespaces.
    pub net: Topology,
    /// The test's temporary directory.
    pub dir: TempDir,
}

impl Lab {
    /// Builds the lab for test `name`, or prints `SKIPPED: …` and returns `None` when not root.
    pub fn new(name: &str) -> Option<Lab> {
        if !is_root() {
            skip(name, "needs root to create network namespaces");
            return None;
        }
        let net = Topology::new();
        let dir = TempDir::new(name);
        let lab = Lab { name: name.to_owned(), net, dir };
        private_dir(&lab.runtime_dir());
        Some(lab)
    }

    /// The `XDG_RUNTIME_DIR` every client of this lab gets (a directory of the lab's, mode
    /// 0700): the library's per-user map of fake names (`$XDG_RUNTIME_DIR/socks/names-v1`) is
    /// then the test's own, never shared with tests running at the same time nor left to the
    /// next run.
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// The test's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Namespace name for `ip netns exec`.
    pub fn ns(&self, ns: Ns) -> &str {
        self.net.name(ns)
    }

    /// Writes `contents` to `file` in the temporary directory; returns the full path.
    pub fn write(&self, file: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// The temporary directory as a string (for command lines).
    pub fn dir_str(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Our sockd in `fw` on 192.0.2.1:1080 with `rules` as its rule file, once it listens.
    pub fn sockd(&self, rules: &str) -> Daemon {
        self.sockd_on(SOCKS_PORT, rules)
    }

    /// Our sockd in `fw` on 192.0.2.1:`port` with `rules`, once it listens.
    pub fn sockd_on(&self, port: u16, rules: &str) -> Daemon {
        let conf = self.write(&format!("sockd-{port}.conf"), rules);
        let listen = format!("{FW_INSIDE_ADDR}:{port}");
        let sockd = Daemon::spawn(
            self.ns(Ns::Fw),
            &format!("sockd:{port}"),
            &paths::sockd(),
            &["-l", &listen, "-f", &conf.display().to_string(), "--connect-timeout", "5"],
        );
        sockd.wait_line(&["listening on", &listen], STARTUP);
        sockd
    }

    /// Dante's `danted` in `fw` on 192.0.2.1:1080 relaying out of 198.51.100.1, once it
    /// accepts connections.
    pub fn danted(&self) -> Daemon {
        let danted = paths::require("danted", "dante-server");
        let conf = self.write(
            "danted.conf",
            format!(
                "# end-to-end tests: anyone on the inside network, anywhere, no authentication\n\
                 logoutput: stderr\n\
                 internal: {FW_INSIDE_ADDR} port = {SOCKS_PORT}\n\
                 external: {FW_OUTSIDE_ADDR}\n\
                 clientmethod: none\n\
                 socksmethod: none\n\
                 user.privileged: root\n\
                 user.unprivileged: nobody\n\
                 client pass {{\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  log: connect disconnect error\n}}\n\
                 socks pass {{\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  log: connect disconnect error\n}}\n"
            ),
        );
        let pid_file = self.dir.path().join("danted.pid");
        let daemon = Daemon::spawn(
            self.ns(Ns::Fw),
            "danted",
            &danted,
            &["-f", &conf.display().to_string(), "-p", &pid_file.display().to_string(), "-N", "1"],
        );
        self.wait_socks_port(&daemon);
        daemon
    }

    /// `microsocks -i 192.0.2.1 -p 1080` in `fw`, once it accepts connections.
    pub fn microsocks(&self) -> Daemon {
        let microsocks = paths::require("microsocks", "microsocks");
        let port = SOCKS_PORT.to_string();
        let fw_inside = FW_INSIDE_ADDR.to_string();
        let daemon = Daemon::spawn(
            self.ns(Ns::Fw),
            "microsocks",
            &microsocks,
            &["-i", &fw_inside, "-p", &port],
        );
        self.wait_socks_port(&daemon);
        daemon
    }

    /// OpenSSH's sshd in `outside` on 198.51.100.2:22 with its own host key and config, taking
    /// the key pair it generates for root; returns the daemon and the client's private key.
    pub fn sshd(&self) -> (Daemon, PathBuf) {
        let sshd = paths::require("sshd", "openssh-server");
        let keygen = paths::require("ssh-keygen", "openssh-client");
        let dir = self.dir.path();
        let (host_key, client_key) = (dir.join("ssh_host_ed25519_key"), dir.join("id_ed25519"));
        for key in [&host_key, &client_key] {
            let out = std::process::Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "socks-e2e", "-f"])
                .arg(key)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("ssh-keygen runs");
            assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        }
        let public = std::fs::read(dir.join("id_ed25519.pub")).expect("public key written");
        let authorized = self.write("authorized_keys", public);
        // sshd insists on its privilege separation directory, normally made at boot.
        let _ = std::fs::create_dir_all("/run/sshd");
        let config = self.write(
            "sshd_config",
            format!(
                "ListenAddress {OUTSIDE_ADDR}\n\
                 AuthorizedKeysFile {}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PidFile none\n\
                 PermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n",
                authorized.display()
            ),
        );
        let daemon = Daemon::spawn(
            self.ns(Ns::Outside),
            "sshd",
            &sshd,
            &[
                "-D",
                "-e",
                "-f",
                &config.display().to_string(),
                "-p",
                "22",
                "-h",
                &host_key.display().to_string(),
            ],
        );
        daemon.wait_line(&["Server listening on", "port 22"], STARTUP);
        (daemon, client_key)
    }

    fn wait_socks_port(&self, daemon: &Daemon) {
        let addr = SocketAddr::from((FW_INSIDE_ADDR, SOCKS_PORT));
        assert!(
            self.net.wait_listening(Ns::Inside, addr, STARTUP),
            "{}: {} did not listen on {addr} within {STARTUP:?}; its log:\n{}",
            self.name,
            daemon.name(),
            daemon.log()
        );
    }

    /// An HTTP server (see [`servers::http`]) in `outside` on 198.51.100.2:`port` (0 = any).
    pub fn http(&self, port: u16) -> Server {
        servers::http(self.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR, port)))
    }

    /// An echo server in `outside` on 198.51.100.2:`port` (0 = any).
    pub fn echo(&self, port: u16) -> Server {
        servers::echo(self.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR, port)))
    }

    /// A UDP echo server in `outside` on 198.51.100.2:`port` (0 = any).
    pub fn udp_echo(&self, port: u16) -> UdpEcho {
        UdpEcho::start(self.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR, port)))
    }

    /// A UDP echo server in any namespace at any address.
    pub fn udp_echo_in(&self, ns: Ns, addr: SocketAddr) -> UdpEcho {
        UdpEcho::start(self.ns(ns), addr)
    }

    /// An echo server in any namespace at any address (e.g. loopback inside).
    pub fn echo_in(&self, ns: Ns, addr: SocketAddr) -> Server {
        servers::echo(self.ns(ns), addr)
    }

    /// A whois responder (see [`servers::whois`]) in `outside` on 198.51.100.2:43.
    pub fn whois(&self) -> Server {
        servers::whois(self.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR, 43)))
    }

    /// A server that accepts and never answers, in `ns` at `addr`.
    pub fn silent_in(&self, ns: Ns, addr: SocketAddr) -> Server {
        servers::silent(self.ns(ns), addr)
    }

    /// `program` (a path, or a Debian program found with [`paths::require`]) to run in
    /// `inside`, without the library until told.
    pub fn client(&self, program: impl Into<PathBuf>) -> Client {
        Client::new(self.ns(Ns::Inside), program)
            .env("XDG_RUNTIME_DIR", self.runtime_dir().display().to_string())
    }

    /// ssh in `inside` with `key` to `target` (`user@host`), non-interactive, trusting any host
    /// key, then `command`.
    pub fn ssh(&self, key: &std::path::Path, target: &str, command: &[&str]) -> Client {
        self.client(paths::require("ssh", "openssh-client"))
            .args(["-F", "/dev/null", "-i"])
            .args([key])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=15", target])
            .args(command)
    }

    /// The [`probe`] script for `targets`, to run in `inside` (without the library until told).
    pub fn probe(&self, targets: &[SocketAddr]) -> Client {
        self.python(&probe::script(targets))
    }

    /// The system's `python3` (not a pyenv shim) to run in `inside`.
    pub fn python(&self, script: &str) -> Client {
        self.client(paths::require("python3", "python3")).args(["-c", script])
    }
}

/// Asserts sockd logged one complete session from the workstation to `dst`: a `connected:`
/// line from 192.0.2.2 and a `closed:` line. When `exchange` is given, the closed line must
/// carry its exact byte counts (`sent` = what the destination received). Returns the closed
/// line.
pub fn assert_session(sockd: &Daemon, dst: SocketAddr, exchange: Option<&Exchange>) -> String {
    let dst = format!("dst={dst} ");
    let client = format!("client={INSIDE_ADDR}:");
    sockd.wait_line(&["connected:", &client, "cmd=connect", &dst], STARTUP);
    let closed = sockd.wait_line(&["closed:", &client, "cmd=connect", &dst], STARTUP);
    if let Some(exchange) = exchange {
        let sent = format!(" sent={} ", exchange.received);
        let received = format!(" received={} ", exchange.sent);
        assert!(
            closed.contains(&sent) && closed.contains(&received),
            "sockd's closed line must carry{sent}and{received}(what the destination saw); \
             got: {closed}"
        );
    }
    closed
}

/// Asserts every connection `server` accepted came from the firewall's outside address: the
/// SOCKS server relayed it, the workstation did not reach it.
pub fn assert_from_firewall(server: &Server) {
    let peers = server.accepted();
    assert!(!peers.is_empty(), "the destination server {} saw no connection", server.addr());
    for peer in peers {
        assert_eq!(
            peer.ip(),
            std::net::IpAddr::V4(FW_OUTSIDE_ADDR),
            "destination {} was reached from {peer}, not from the firewall",
            server.addr()
        );
    }
}

/// The counters of one UDP ASSOCIATE as sockd's `closed: … cmd=udp-associate …` line gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpSession {
    /// Payload bytes client → destinations.
    pub sent: u64,
    /// Payload bytes destinations → client.
    pub received: u64,
    /// Datagrams relayed client → destinations.
    pub datagrams_sent: u64,
    /// Datagrams relayed destinations → client.
    pub datagrams_received: u64,
    /// Datagrams dropped: from a foreign source, malformed, fragments, denied by a rule, to a
    /// name that did not resolve.
    pub dropped: [u64; 5],
}

impl UdpSession {
    /// Parses the counters out of a `closed:` line (missing ones read as `u64::MAX`).
    pub fn parse(line: &str) -> UdpSession {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        UdpSession {
            sent: field("sent"),
            received: field("received"),
            datagrams_sent: field("datagrams-sent"),
            datagrams_received: field("datagrams-received"),
            dropped: [
                field("dropped-foreign"),
                field("dropped-malformed"),
                field("dropped-fragments"),
                field("dropped-denied"),
                field("dropped-unresolved"),
            ],
        }
    }

    /// A clean session: `datagrams` each way carrying `bytes` each way, nothing dropped.
    pub fn clean(datagrams: u64, bytes: u64) -> UdpSession {
        UdpSession {
            sent: bytes,
            received: bytes,
            datagrams_sent: datagrams,
            datagrams_received: datagrams,
            dropped: [0; 5],
        }
    }
}

/// Waits until sockd has logged `count` finished UDP associations from the workstation (the
/// `udp: … relay on 192.0.2.1:PORT` line and the `closed: … cmd=udp-associate …` line); returns
/// the closed lines, oldest first.
pub fn udp_sessions(sockd: &Daemon, count: usize) -> Vec<String> {
    let client = format!("client={INSIDE_ADDR}:");
    let relay = format!("relay on {FW_INSIDE_ADDR}:");
    sockd.wait_lines(&["udp:", &client, "cmd=udp-associate", &relay], count, STARTUP);
    sockd.wait_lines(&["closed:", &client, "cmd=udp-associate"], count, STARTUP)
}

/// Asserts the `nth` (1-based) finished UDP association from the workstation carries
/// `expected`'s counters; returns its closed line.
pub fn assert_udp_session(sockd: &Daemon, nth: usize, expected: &UdpSession) -> String {
    let lines = udp_sessions(sockd, nth);
    let line = lines[nth - 1].clone();
    assert_eq!(
        &UdpSession::parse(&line),
        expected,
        "sockd's closed line for UDP association {nth} must carry the counts the destinations \
         saw: {line}"
    );
    line
}
