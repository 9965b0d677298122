//! The three-namespace network every end-to-end test gets for itself:
//!
//! ```text
//!  inside (workstation)          fw (SOCKS server)                   outside (destinations)
//!  192.0.2.2/24 ─── veth ─── 192.0.2.1/24   198.51.100.1/24 ─── veth ─── 198.51.100.2/24
//!  no other route               ip_forward = 0                       no other route
//! ```
//!
//! `inside` has no route to 198.51.100.0/24 and `fw` does not forward, so a destination in
//! `outside` is reachable from `inside` only through a SOCKS server running in `fw`. The
//! constructor checks that (a direct connect from `inside` must fail with ENETUNREACH).
//!
//! `inside` has no reachable DNS either: programs run there with `ip netns exec` see
//! `/etc/netns/<inside>/resolv.conf` as their `/etc/resolv.conf`, which names [`DEAD_DNS_ADDR`],
//! an address on the inside network where nothing answers (one attempt, one second). A lookup
//! that should not happen fails quickly, and its query is a packet the leak check
//! (`leaks`) counts. The file is removed with the topology, as are the files a test writes for
//! another namespace with [`Topology::write_etc`] (e.g. `fw`'s resolv.conf, see `dns`).
//!
//! A test may give the links more addresses ([`Topology::add_address`]), e.g. IPv6 on the
//! `fw`–`outside` link; `inside` never gets an IPv6 route.
//!
//! Names carry the test process's pid and a counter, so concurrent tests (and concurrent test
//! runs) never collide and can reuse the same addresses. Dropping the [`Topology`] kills every
//! process left in its namespaces and deletes them (and with them the veth pairs), also when the
//! test panicked.
//!
//! Not here: starting servers or clients (see `process` and `servers`), which use [`in_netns`]
//! and [`Topology::name`].

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The workstation's address.
pub const INSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The firewall's address on the inside network (where SOCKS servers listen).
pub const FW_INSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The firewall's address on the outside network (where relayed connections come from).
pub const FW_OUTSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The destination host's address.
pub const OUTSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The SOCKS port servers listen on in `fw`.
pub const SOCKS_PORT: u16 = 1080;
/// The name server `inside`'s resolv.conf names: on the inside network, nobody there.
pub const DEAD_DNS_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// Where `ip netns exec` finds per-namespace replacements for files in /etc.
const NETNS_ETC: &str = "/etc/netns";

/// One of the three namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// The workstation: runs the programs under the library.
    Inside,
    /// The firewall host: runs the SOCKS server.
    Fw,
    /// The Internet: runs the destination servers.
    Outside,
}

impl Ns {
    fn index(self) -> usize {
        match self {
            Ns::Inside => 0,
            Ns::Fw => 1,
            Ns::Outside => 2,
        }
    }
}

/// A test's private network; see the module documentation.
#[derive(Debug)]
pub struct Topology {
    names: [String; 3],
    /// Namespaces actually created (so a half-built topology is cleaned up too).
    created: Vec<String>,
    /// The veth ends: inside's, fw's toward inside, fw's toward outside, outside's.
    links: [String; 4],
    /// `/etc/netns/<ns>` directories written so far (removed on drop).
    etc_dirs: Mutex<Vec<PathBuf>>,
}

/// `ip netns add` racing with itself while it first mounts /run/netns can fail; creating
/// topologies one at a time within the process avoids that.
static CREATE: Mutex<()> = Mutex::new(());

impl Topology {
    /// Builds the three namespaces and two veth pairs. Panics (after cleaning up) on failure.
    pub fn new() -> Topology {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let base = format!("se2e-{pid}-{n}");
        let names = [format!("{base}-inside"), format!("{base}-fw"), format!("{base}-outside")];
        // Interface names: at most 15 bytes ("v" + pid (≤ 7 digits) + "n" + counter + letter).
        let veth = |letter: char| format!("v{pid}n{n}{letter}");
        let links = [veth('a'), veth('b'), veth('c'), veth('d')];
        assert!(links[0].len() <= 15, "interface name {} too long", links[0]);
        let mut topology =
            Topology { names, created: Vec::new(), links, etc_dirs: Mutex::new(Vec::new()) };
        {
            let _one_at_a_time = CREATE.lock().unwrap_or_else(|p| p.into_inner());
            for name in topology.names.clone() {
                ip(&["netns", "add", &name]);
                topology.created.push(name.clone());
                ip(&["-n", &name, "link", "set", "lo", "up"]);
            }
        }
        let resolv = format!(
            "# socks-e2e: the workstation has no reachable name server; {DEAD_DNS_ADDR} is on \
             the inside network and answers nothing\nnameserver {DEAD_DNS_ADDR}\n\
             options timeout:1 attempts:1\n"
        );
        topology.write_etc(Ns::Inside, "resolv.conf", &resolv);
        let [inside, fw, outside] = topology.names.clone();
        let [a, b, c, d] = topology.links.clone();
        ip(&[
            "link", "add", &a, "netns", &inside, "type", "veth", "peer", "name", &b, "netns", &fw,
        ]);
        ip(&[
            "link", "add", &c, "netns", &fw, "type", "veth", "peer", "name", &d, "netns", &outside,
        ]);
        for (ns, dev, addr) in [
            (&inside, &a, "192.0.2.2/24"),
            (&fw, &b, "192.0.2.1/24"),
            (&fw, &c, "198.51.100.1/24"),
            (&outside, &d, "198.51.100.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        // New namespaces do not forward, but say it rather than rely on a default.
        // /proc/sys/net follows the network namespace of the thread that opens it.
        let forwarding = in_netns(&fw, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "0")?;
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        });
        assert_eq!(
            forwarding.as_deref().map(str::trim).ok(),
            Some("0"),
            "ip forwarding must be off in {fw}"
        );
        topology.check_isolated();
        topology
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self, ns: Ns) -> &str {
        &self.names[ns.index()]
    }

    /// The interface of namespace `ns` on its link to `toward` (panics for namespaces that are
    /// not neighbours).
    pub fn interface(&self, ns: Ns, toward: Ns) -> &str {
        let index = match (ns, toward) {
            (Ns::Inside, Ns::Fw) => 0,
            (Ns::Fw, Ns::Inside) => 1,
            (Ns::Fw, Ns::Outside) => 2,
            (Ns::Outside, Ns::Fw) => 3,
            _ => panic!("{ns:?} and {toward:?} share no link"),
        };
        &self.links[index]
    }

    /// Adds `cidr` (e.g. `2001:db8:100::1/64`) to the interface of `ns` on its link to `toward`.
    /// IPv6 addresses skip duplicate address detection, so they are usable at once.
    pub fn add_address(&self, ns: Ns, toward: Ns, cidr: &str) {
        let (name, dev) = (self.name(ns), self.interface(ns, toward));
        let mut args = vec!["-n", name, "addr", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        ip(&args);
    }

    /// Writes `/etc/netns/<ns>/FILE`, which programs started in `ns` with `ip netns exec` see
    /// as `/etc/FILE` (resolv.conf, hosts…). Removed with the topology.
    pub fn write_etc(&self, ns: Ns, file: &str, contents: &str) {
        let dir = Path::new(NETNS_ETC).join(self.name(ns));
        // One at a time with other topologies, which remove /etc/netns when it is empty.
        let _one_at_a_time = CREATE.lock().unwrap_or_else(|p| p.into_inner());
        let mut dirs = self.etc_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if !dirs.contains(&dir) {
            dirs.push(dir.clone());
        }
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(file), contents))
            .unwrap_or_else(|e| panic!("cannot write {}/{file}: {e}", dir.display()));
    }

    /// A direct connection from `inside` to `outside` must be impossible.
    fn check_isolated(&self) {
        let result = in_netns(self.name(Ns::Inside), || {
            TcpStream::connect_timeout(&SocketAddr::from((OUTSIDE_ADDR, 9)), Duration::from_secs(2))
        });
        match result {
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {}
            other => panic!(
                "the topology is broken: a direct connect from inside to {OUTSIDE_ADDR} must \
                 fail with ENETUNREACH, got {other:?}"
            ),
        }
    }

    /// Waits until something accepts TCP connections on `addr` as seen from namespace `from`.
    pub fn wait_listening(&self, from: Ns, addr: SocketAddr, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let ns = self.name(from).to_owned();
        loop {
            let ok = in_netns(&ns, move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            });
            if ok {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Whether a TCP socket in namespace `ns` listens on `addr` (or on the wildcard address
    /// with that port), read from the kernel's socket table: nothing connects, so a service
    /// that inetd would start per connection is not started by asking. IPv4 only.
    pub fn is_listening(&self, ns: Ns, addr: SocketAddr) -> bool {
        // /proc/thread-self/net follows the network namespace of the reading thread.
        let text = in_netns(self.name(ns), || std::fs::read_to_string("/proc/thread-self/net/tcp"))
            .unwrap_or_default();
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                return false;
            };
            *state == "0A" && local_matches(local, addr)
        })
    }

    /// Waits (bounded) until [`Topology::is_listening`].
    pub fn wait_listener(&self, ns: Ns, addr: SocketAddr, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_listening(ns, addr) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        true
    }

    /// Kills every process in namespace `name` (bounded wait for them to go).
    fn kill_all_in(name: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let pids = Command::new("ip")
                .args(["netns", "pids", name])
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let pids: Vec<i32> = pids.split_whitespace().filter_map(|p| p.parse().ok()).collect();
            if pids.is_empty() || Instant::now() >= deadline {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) with a pid read from `ip netns pids` for our own namespace;
                // a stale pid at worst gets ESRCH.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in &self.created {
            Topology::kill_all_in(name);
        }
        let dirs = std::mem::take(self.etc_dirs.get_mut().unwrap_or_else(|p| p.into_inner()));
        if !dirs.is_empty() {
            let _one_at_a_time = CREATE.lock().unwrap_or_else(|p| p.into_inner());
            for dir in dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
            // Only when no one else (another test run) has a directory there.
            let _ = std::fs::remove_dir(NETNS_ETC);
        }
        for name in &self.created {
            let out = Command::new("ip").args(["netns", "del", name]).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "warning: ip netns del {name}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => eprintln!("warning: ip netns del {name}: {e}"),
            }
        }
    }
}

/// Whether `local` (`/proc/net/tcp` notation: hex address in memory order, `:`, hex port)
/// is `addr` or the wildcard address with `addr`'s port. IPv4 only; IPv6 entries never match.
fn local_matches(local: &str, addr: SocketAddr) -> bool {
    let Some((host, port)) = local.split_once(':') else { return false };
    let (Ok(host), Ok(port)) = (u32::from_str_radix(host, 16), u16::from_str_radix(port, 16))
    else {
        return false;
    };
    // The kernel prints the big-endian address as a native integer.
    let host = Ipv4Addr::from(u32::from_be(host));
    match addr {
        SocketAddr::V4(a) => port == a.port() && (host == *a.ip() || host.is_unspecified()),
        SocketAddr::V6(_) => false,
    }
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (Debian package iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `f` on a fresh thread that has joined network namespace `name` (or stayed in the test's
/// own for [`OWN_NETNS`](crate::process::OWN_NETNS)). Sockets created in `f` belong to that
/// namespace for their whole life, whichever thread uses them later.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    let own = name == crate::process::OWN_NETNS;
    std::thread::spawn(move || {
        if own {
            return f();
        }
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("cannot open network namespace {path}: {e}"));
        // SAFETY: setns(2) on an fd we own, for this thread only (CLONE_NEWNET may be changed
        // per thread); the thread ends when `f` returns.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
