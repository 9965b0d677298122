//! What the benchmark reads from Linux: process trees, CPU time and PSS from `/proc`, which
//! process owns a TCP socket (`/proc/net/tcp` plus `/proc/PID/fd`), and the few libc calls it
//! needs (RLIMIT_NOFILE, clock ticks, signals). Linux only; no measurement logic here.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Clock ticks per second, the unit of the CPU times in `/proc/PID/stat`.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Sends `signal` to one process, by PID.
pub fn kill(pid: i32, signal: i32) {
    // SAFETY: kill has no memory preconditions; a stale PID gives ESRCH, which is ignored.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn get_nofile() -> (u64, u64) {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a valid, writable rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    (rl.rlim_cur, rl.rlim_max)
}

fn set_nofile(soft: u64, hard: u64) -> bool {
    let rl = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `rl` is a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) == 0 }
}

/// Raises RLIMIT_NOFILE: the soft limit to the hard limit, and, when the hard limit is below
/// `wanted` and the process may raise it (root, CAP_SYS_RESOURCE), the hard limit to `wanted`.
/// Returns (soft, hard) after, and one line saying what was done.
pub fn raise_nofile(wanted: u64) -> ((u64, u64), String) {
    let (soft, hard) = get_nofile();
    let mut note = format!("RLIMIT_NOFILE was {soft} soft / {hard} hard");
    if hard < wanted && set_nofile(wanted, wanted) {
        note.push_str(&format!(
            "; raised soft and hard to {wanted} (hard limit too low for the idle-connection \
             test, raised with root's CAP_SYS_RESOURCE)"
        ));
    } else if soft < hard && set_nofile(hard, hard) {
        note.push_str(&format!("; raised the soft limit to the hard limit {hard}"));
    } else if soft >= wanted {
        note.push_str("; high enough, unchanged");
    } else {
        note.push_str("; could not be raised");
    }
    let now = get_nofile();
    note.push_str(&format!(
        " — now {} / {}, inherited by every server the benchmark starts",
        now.0, now.1
    ));
    (now, note)
}

/// The fields of `/proc/PID/stat` the benchmark uses.
#[derive(Debug, Clone)]
pub struct Stat {
    pub pid: i32,
    pub ppid: i32,
    /// utime + stime of the whole process (all threads), in clock ticks.
    pub own_ticks: u64,
    /// cutime + cstime: children that exited and were waited for, in clock ticks.
    pub child_ticks: u64,
}

/// Reads `/proc/PID/stat`.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state), so field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|s| s.parse::<u64>().ok());
    Some(Stat {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        own_ticks: num(14)? + num(15)?,
        child_ticks: num(16)? + num(17)?,
    })
}

/// The short command name of a process (`/proc/PID/comm`).
pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// `root` and all its descendants (found through the ppid of every process), root first.
pub fn tree(root: i32) -> Vec<Stat> {
    let all: Vec<Stat> = all_pids().into_iter().filter_map(stat).collect();
    let mut out: Vec<Stat> = all.iter().filter(|s| s.pid == root).cloned().collect();
    if out.is_empty() {
        return out;
    }
    let mut members: HashSet<i32> = HashSet::from([root]);
    loop {
        let before = members.len();
        for s in &all {
            if !members.contains(&s.pid) && members.contains(&s.ppid) {
                members.insert(s.pid);
                out.push(s.clone());
            }
        }
        if members.len() == before {
            return out;
        }
    }
}

/// CPU time of a process tree in clock ticks: every live member's own time plus what its
/// exited, reaped children used.
pub fn tree_cpu_ticks(root: i32) -> u64 {
    tree(root).iter().map(|s| s.own_ticks + s.child_ticks).sum()
}

/// Proportional set size of one process in KiB (`/proc/PID/smaps_rollup`).
pub fn pss_kib(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// PSS summed over a process tree in KiB, and the number of processes in it.
pub fn tree_pss_kib(root: i32) -> (u64, usize) {
    let members = tree(root);
    (members.iter().filter_map(|s| pss_kib(s.pid)).sum(), members.len())
}

fn parse_hex_v4(field: &str) -> Option<SocketAddrV4> {
    let (ip, port) = field.split_once(':')?;
    // The kernel prints the address as the host-order u32 of the network-order bytes.
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_le_bytes()), port))
}

/// Socket inodes of the IPv4 TCP sockets with the given (local, remote) addresses.
///
/// `/proc/net/tcp` is read in pieces that resume by position, so while other sockets come and
/// go (TIME_WAIT ones expiring by the thousand after a connection-rate test) a read can skip
/// live entries; it is read again, up to five times, until every pair is found.
pub fn tcp_inodes(
    pairs: &[(SocketAddrV4, SocketAddrV4)],
) -> HashMap<(SocketAddrV4, SocketAddrV4), u64> {
    let mut out = HashMap::new();
    for _ in 0..5 {
        let missing: Vec<_> = pairs.iter().filter(|p| !out.contains_key(*p)).copied().collect();
        if missing.is_empty() {
            break;
        }
        out.extend(tcp_inodes_once(&missing));
    }
    out
}

fn tcp_inodes_once(
    pairs: &[(SocketAddrV4, SocketAddrV4)],
) -> HashMap<(SocketAddrV4, SocketAddrV4), u64> {
    let wanted: HashSet<_> = pairs.iter().copied().collect();
    let mut out = HashMap::new();
    let Ok(text) = fs::read_to_string("/proc/net/tcp") else { return out };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(inode)) = (
            f.get(1).and_then(|s| parse_hex_v4(s)),
            f.get(2).and_then(|s| parse_hex_v4(s)),
            f.get(9).and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if inode != 0 && wanted.contains(&(local, remote)) {
            out.insert((local, remote), inode);
        }
    }
    out
}

/// Socket inode -> PID for every socket the given processes hold open.
pub fn socket_owners(pids: &[i32]) -> HashMap<u64, i32> {
    let mut out = HashMap::new();
    for &pid in pids {
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for entry in dir.flatten() {
            let Ok(target) = fs::read_link(entry.path()) else { continue };
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                if let Ok(inode) = inode.parse() {
                    out.insert(inode, pid);
                }
            }
        }
    }
    out
}

/// The process holding the TCP socket `local` -> `remote` among `candidates` (every process
/// when `None`), with its command name.
pub fn socket_owner(
    local: SocketAddr,
    remote: SocketAddr,
    candidates: Option<&[i32]>,
) -> Option<(i32, String)> {
    let (SocketAddr::V4(local), SocketAddr::V4(remote)) = (local, remote) else { return None };
    let inode = *tcp_inodes(&[(local, remote)]).get(&(local, remote))?;
    let pids = match candidates {
        Some(c) => c.to_vec(),
        None => all_pids(),
    };
    let pid = *socket_owners(&pids).get(&inode)?;
    Some((pid, comm(pid)))
}

/// How many of the sockets `(peer, ours)` — seen from our side as connections from `peer` —
/// are held, at the peer's end, by one of `pids`. Reads `/proc/net/tcp` once.
pub fn count_owned_by(conns: &[(SocketAddr, SocketAddr)], pids: &[i32]) -> usize {
    let pairs: Vec<(SocketAddrV4, SocketAddrV4)> = conns
        .iter()
        .filter_map(|(peer, ours)| match (peer, ours) {
            (SocketAddr::V4(p), SocketAddr::V4(o)) => Some((*p, *o)),
            _ => None,
        })
        .collect();
    let inodes = tcp_inodes(&pairs);
    let owners = socket_owners(pids);
    pairs
        .iter()
        .filter(|pair| inodes.get(pair).is_some_and(|inode| owners.contains_key(inode)))
        .count()
}

/// poll(2) over `fds` with a timeout in milliseconds; the number of ready descriptors, or -1.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> i32 {
    // SAFETY: `fds` is a valid, writable slice of pollfd for its whole length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }
}

/// Starts a non-blocking connect of a new TCP socket (non-blocking, close-on-exec) to an IPv4
/// address; the caller polls for writability and then reads SO_ERROR (`take_error`).
pub fn connect_nonblocking(addr: SocketAddrV4) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.ip().octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: `sa` is a valid sockaddr_in and the length given is its size.
    let r = unsafe {
        libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(stream)
}

/// Busy and total jiffies of all CPUs together, from the first line of `/proc/stat`.
pub fn cpu_jiffies() -> (u64, u64) {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else { return (0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of all CPUs busy between two `cpu_jiffies` readings, 0..=1.
pub fn busy_between(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return f64::NAN;
    }
    b.0.saturating_sub(a.0) as f64 / total as f64
}
