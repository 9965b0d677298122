//! UDP through a SOCKS5 server (RFC 1928 section 7, UDP ASSOCIATE) for supervised programs:
//! a userspace relay in the supervisor per program socket, so that the program's own reads and
//! writes stay in the kernel (nothing without an address is trapped) and never see a SOCKS
//! header.
//!
//! For a UDP socket of the program (known by its `SO_COOKIE`) and a destination D that
//! socks.conf sends through a server, the supervisor holds:
//! - one association per program socket: a TCP control connection to the first SOCKS5 server
//!   of the route (SOCKS4 has no UDP: refused, ECONNREFUSED) and an outer UDP socket of its own
//!   bound to the wildcard address, whose address (port; the unspecified address meaning "the
//!   control connection's host") the request declares — sockd locks the relay to it;
//! - one local UDP socket L_D per destination, on 127.0.0.1 (reached through
//!   `::ffff:127.0.0.1` by a dual-stack IPv6 socket) or `::1` (an IPV6_V6ONLY socket).
//!
//! A datagram the program sends to L_D (from its socket's address, checked: anything else
//! arriving at L_D is dropped) gets the SOCKS5 UDP header naming D — or the name behind a fake
//! address the supervisor handed out — and goes from the outer socket to sockd's relay. A
//! datagram from the relay (from its address only; FRAG ≠ 0 dropped) has its header stripped
//! and is sent from the L of the source it names to the program's socket. A reply naming an
//! address no L stands for (a name's resolved address) goes out of the newest L of a name with
//! the same port. So `connect(udp, D)` connects the program's socket to L_D (`getpeername`
//! answers D, see `supervise`), and an unconnected `sendto(D)` is sent by the supervisor to
//! L_D (see `send`); either way the reply comes back from L_D, which the trapped receives
//! report as D (the `rewrites` table, see `recv`).
//!
//! Each association has one relay thread (poll over the control connection, the outer socket,
//! a waker and the L sockets). It ends, closing everything, when the server closes the
//! control connection, when the program's socket is gone — checked every
//! [`LIVENESS_EVERY`]: the program's descriptor number must still hold a socket with the same
//! cookie (`pidfd_getfd`; a socket moved to another number by dup2 and closed at the old one
//! loses its association, and a later send makes a new one) — or when the tables are full
//! ([`ASSOCIATIONS_MAX`] associations, [`DESTINATIONS_MAX`] destinations each; oldest forgotten
//! first: a program socket connected to a forgotten L then gets ECONNREFUSED, as from a closed
//! port). A datagram whose header no longer fits in one UDP datagram is dropped on the way out
//! (the library's EMSGSIZE can be given only for sends the supervisor performs).
//!
//! Also here: [`exchange_once`], one datagram through a fresh association (the name service's
//! queries to a name server only reachable through sockd).
//!
//! Not here: deciding the route (`route`), the trapped calls (`supervise`, `send`, `recv`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use socks_proto::client::ClientVersion;
use socks_proto::server::Command;
use socks_proto::udp::{decode_datagram, encode_header, UdpHeader};
use socks_proto::TargetAddr;

use crate::config::Server;
use crate::supervise::{log, Shared};
use crate::{proxy, sockaddr, sys};

/// How many program sockets have an association at once.
pub const ASSOCIATIONS_MAX: usize = 1024;
/// How many destinations (local sockets) one association serves.
pub const DESTINATIONS_MAX: usize = 256;
/// How often a relay thread checks that the program's socket still exists.
pub const LIVENESS_EVERY: Duration = Duration::from_secs(2);
/// Largest UDP payload over IPv4 (65,535 minus the IP and UDP headers).
const UDP_PAYLOAD_MAX: usize = 65_507;

/// The supervisor's UDP state: associations by program socket, and reply sources to rewrite.
#[derive(Debug, Default)]
pub struct Udp {
    associations: Mutex<Associations>,
    pub rewrites: crate::rewrites::Rewrites,
}

#[derive(Debug, Default)]
struct Associations {
    by_cookie: HashMap<u64, Arc<Association>>,
    order: VecDeque<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One program socket's association.
#[derive(Debug)]
struct Association {
    pid: u32,
    cookie: u64,
    /// The program's process and the descriptor number of its socket (liveness).
    pidfd: OwnedFd,
    fd: i32,
    /// Where the program's datagrams come from, as an L sees them.
    program: SocketAddr,
    /// Whether L sockets are on `::1` (the program's socket is IPv6-only).
    v6only: bool,
    /// The program socket's family: IPv4-mapped addresses for a dual-stack IPv6 socket.
    family: i32,
    /// What `getsockname` shows for the program's socket while the kernel's answer is a
    /// loopback address the supervisor's plumbing gave it (connected to an L): this host's
    /// address towards the relay, in the socket's family, as a socket really connected to the
    /// relay (the library's) has. `None`: the socket was bound to an address of its own, or
    /// that address cannot be named in its family (the kernel's answer stands).
    shown_local: Option<IpAddr>,
    control: OwnedFd,
    outer: UdpSocket,
    relay: SocketAddr,
    server: SocketAddr,
    locals: Mutex<Locals>,
    wake_tx: UnixDatagram,
    wake_rx: UnixDatagram,
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct Locals {
    by_dst: HashMap<SocketAddr, Arc<Local>>,
    order: VecDeque<SocketAddr>,
}

/// The local socket standing for one destination.
#[derive(Debug)]
struct Local {
    socket: UdpSocket,
    /// The destination as the program named it (canonical).
    dst: SocketAddr,
    /// What the server is asked to send to.
    target: TargetAddr,
    /// L's address as the program's socket reaches it.
    shown: SocketAddr,
}

impl Association {
    fn wake(&self) {
        let _ = self.wake_tx.send(&[1]);
    }

    /// The local socket for `dst`, made if needed: L as the program reaches it, and the Ls
    /// forgotten to make room.
    fn local(
        &self,
        dst: SocketAddr,
        target: &TargetAddr,
    ) -> std::io::Result<(SocketAddr, Vec<SocketAddr>)> {
        let key = sockaddr::canonical(dst);
        let mut locals = lock(&self.locals);
        if let Some(local) = locals.by_dst.get(&key) {
            return Ok((local.shown, Vec::new()));
        }
        let loopback: IpAddr =
            if self.v6only { Ipv6Addr::LOCALHOST.into() } else { Ipv4Addr::LOCALHOST.into() };
        let socket = UdpSocket::bind((loopback, 0))?;
        socket.set_nonblocking(true)?;
        let bound = socket.local_addr()?;
        let shown = match proxy::for_family(bound, self.family) {
            Some(shown) => shown,
            None => bound,
        };
        let local = Local { socket, dst: key, target: target.clone(), shown };
        locals.by_dst.insert(key, Arc::new(local));
        locals.order.push_back(key);
        let mut forgotten = Vec::new();
        while locals.by_dst.len() > DESTINATIONS_MAX {
            let Some(old) = locals.order.pop_front() else { break };
            if let Some(gone) = locals.by_dst.remove(&old) {
                forgotten.push(gone.shown);
            }
        }
        drop(locals);
        self.wake();
        Ok((shown, forgotten))
    }
}

/// Why a destination cannot be given a local socket: the errno and a line for the log.
pub type Failed = proxy::Failed;

fn failed(errno: i32, why: impl Into<String>) -> Failed {
    Failed { errno, why: why.into() }
}

fn io_failed(what: &str, e: &std::io::Error) -> Failed {
    failed(e.raw_os_error().unwrap_or(libc::EIO), format!("{what}: {e}"))
}

/// A granted UDP ASSOCIATE: the control connection, the outer socket, the relay and the
/// server it goes through.
struct Granted {
    control: OwnedFd,
    outer: UdpSocket,
    relay: SocketAddr,
    server: SocketAddr,
}

/// Asks the first SOCKS5 server of `servers` for a UDP association for a new outer socket.
fn associate(servers: &[Server], deadline: Instant) -> Result<Granted, Failed> {
    let Some(server) =
        servers.iter().find(|s| s.is_single_socks() && s.version == ClientVersion::Socks5)
    else {
        if servers.iter().any(|s| !s.is_single_socks()) {
            return Err(failed(
                libc::ECONNREFUSED,
                "no single SOCKS5 server for UDP (UDP cannot go through a chain of proxies or \
                 an HTTP proxy)",
            ));
        }
        return Err(failed(libc::EAFNOSUPPORT, "no SOCKS5 server for UDP (SOCKS4 has no UDP)"));
    };
    let family = match server.addrs.first() {
        Some(SocketAddr::V6(_)) => libc::AF_INET6,
        _ => libc::AF_INET,
    };
    let any: IpAddr = if family == libc::AF_INET6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    let outer = UdpSocket::bind((any, 0)).map_err(|e| io_failed("outer UDP socket", &e))?;
    let declared = outer.local_addr().map_err(|e| io_failed("outer UDP socket", &e))?;
    let control = sys::tcp_socket(family).map_err(|e| io_failed("control socket", &e))?;
    let granted = proxy::request_via(
        control.as_fd(),
        family,
        Command::UdpAssociate,
        &TargetAddr::Ip(declared),
        std::slice::from_ref(server),
        deadline,
        None,
    )?;
    let relay = granted.bound;
    outer.set_nonblocking(true).map_err(|e| io_failed("outer UDP socket", &e))?;
    Ok(Granted { control, outer, relay, server: granted.server })
}

/// This host's address towards `relay` (the kernel's route lookup: a UDP socket connected to
/// it, nothing sent).
fn toward(relay: SocketAddr) -> Option<IpAddr> {
    let any: IpAddr = match relay {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let probe = UdpSocket::bind((any, 0)).ok()?;
    probe.connect(relay).ok()?;
    probe.local_addr().ok().map(|a| a.ip().to_canonical())
}

/// `ip` as a socket of family `domain` names it (IPv4-mapped for a dual-stack IPv6 socket);
/// `None` when it cannot (IPv4 for an IPv6-only socket, IPv6 for an IPv4 one).
fn in_family(ip: IpAddr, domain: i32, v6only: bool) -> Option<IpAddr> {
    match (ip, domain) {
        (IpAddr::V4(_), libc::AF_INET) | (IpAddr::V6(_), libc::AF_INET6) => Some(ip),
        (IpAddr::V4(v4), libc::AF_INET6) if !v6only => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        _ => None,
    }
}

/// What `getsockname` shows for program socket `cookie` whose kernel answer is `kernel`: this
/// host's address towards the relay with the socket's own port, when the kernel names a
/// loopback address only because the socket is connected to an L (see
/// `Association::shown_local`); `None`: the kernel's answer stands.
pub fn shown_name(shared: &Shared, cookie: u64, kernel: SocketAddr) -> Option<SocketAddr> {
    if !kernel.ip().to_canonical().is_loopback() {
        return None;
    }
    let association = lock(&shared.udp.associations).by_cookie.get(&cookie).cloned()?;
    if association.closed.load(Ordering::SeqCst) {
        return None;
    }
    association.shown_local.map(|ip| SocketAddr::new(ip, kernel.port()))
}

/// Where a program socket bound to `local` sends from to a loopback L, as L sees it.
fn seen_from_loopback(local: SocketAddr, v6only: bool) -> SocketAddr {
    let ip = match local.ip().to_canonical() {
        ip if ip.is_unspecified() && v6only => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// The program socket `socket` (the supervisor's copy of descriptor `fd` of process `pid`,
/// family `domain`) about to send to `dst` (asked of the server as `target`) through
/// `servers`: the address of the local socket standing for `dst`, as the program's socket
/// reaches it — setting up the association and binding an unbound socket (to the wildcard
/// address, as the kernel would on the first send) as needed. Replies from it will be shown
/// as coming from `dst`.
#[allow(clippy::too_many_arguments)]
pub fn local_for(
    shared: &Arc<Shared>,
    pid: u32,
    fd: i32,
    socket: BorrowedFd<'_>,
    domain: i32,
    dst: SocketAddr,
    target: &TargetAddr,
    servers: &[Server],
) -> Result<SocketAddr, Failed> {
    let cookie = sys::socket_cookie(socket).map_err(|e| io_failed("SO_COOKIE", &e))?;
    let existing = lock(&shared.udp.associations).by_cookie.get(&cookie).cloned();
    let association = match existing {
        Some(a) if !a.closed.load(Ordering::SeqCst) => a,
        _ => start(shared, pid, fd, socket, domain, cookie, servers)?,
    };
    let (shown, forgotten) =
        association.local(dst, target).map_err(|e| io_failed("local UDP socket", &e))?;
    for old in forgotten {
        shared.udp.rewrites.remove_source(cookie, old);
    }
    shared.udp.rewrites.add(cookie, shown, dst);
    Ok(shown)
}

/// The local socket already standing for `dst` on socket `cookie`, if any (no setup, no
/// waiting: for the notification loop's own thread).
pub fn existing_local(shared: &Shared, cookie: u64, dst: SocketAddr) -> Option<SocketAddr> {
    let association = lock(&shared.udp.associations).by_cookie.get(&cookie).cloned()?;
    if association.closed.load(Ordering::SeqCst) {
        return None;
    }
    let locals = lock(&association.locals);
    locals.by_dst.get(&sockaddr::canonical(dst)).map(|l| l.shown)
}

/// Sets up the association of program socket `cookie` and starts its relay thread.
fn start(
    shared: &Arc<Shared>,
    pid: u32,
    fd: i32,
    socket: BorrowedFd<'_>,
    domain: i32,
    cookie: u64,
    servers: &[Server],
) -> Result<Arc<Association>, Failed> {
    let v6only = domain == libc::AF_INET6
        && sys::getsockopt_int(socket, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_ok_and(|v| v != 0);
    let local = || {
        sys::local_name(socket)
            .ok()
            .and_then(|b| sockaddr::parse(&b))
            .ok_or_else(|| failed(libc::EINVAL, "the socket has no address"))
    };
    let mut bound = local()?;
    if bound.port() == 0 {
        let any: SocketAddr = if domain == libc::AF_INET6 {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        sys::bind_raw(socket, &sockaddr::bytes(any))
            .map_err(|errno| failed(errno, "cannot bind the socket before its association"))?;
        bound = local()?;
    }
    let pidfd = sys::pidfd_open(pid).map_err(|e| io_failed("pidfd_open", &e))?;
    let deadline = Instant::now() + shared.settings.timeout;
    let Granted { control, outer, relay, server } = associate(servers, deadline)?;
    let shown_local = match bound.ip().is_unspecified() {
        true => toward(relay).and_then(|ip| in_family(ip, domain, v6only)),
        false => None,
    };
    let (wake_tx, wake_rx) = UnixDatagram::pair().map_err(|e| io_failed("socketpair", &e))?;
    let _ = wake_rx.set_nonblocking(true);
    let _ = wake_tx.set_nonblocking(true);
    let association = Arc::new(Association {
        pid,
        cookie,
        pidfd,
        fd,
        program: seen_from_loopback(bound, v6only),
        v6only,
        family: domain,
        shown_local,
        control,
        outer,
        relay,
        server,
        locals: Mutex::default(),
        wake_tx,
        wake_rx,
        closed: AtomicBool::new(false),
    });
    {
        let mut table = lock(&shared.udp.associations);
        if let Some(raced) = table.by_cookie.get(&cookie) {
            if !raced.closed.load(Ordering::SeqCst) {
                // Another thread of the program set one up meanwhile: use it (ours closes).
                return Ok(raced.clone());
            }
        }
        if let Some(old) = table.by_cookie.insert(cookie, association.clone()) {
            old.closed.store(true, Ordering::SeqCst);
            old.wake();
        } else {
            table.order.push_back(cookie);
        }
        while table.by_cookie.len() > ASSOCIATIONS_MAX {
            let Some(old) = table.order.pop_front() else { break };
            if let Some(gone) = table.by_cookie.remove(&old) {
                gone.closed.store(true, Ordering::SeqCst);
                gone.wake();
            }
        }
    }
    log(
        &shared.settings,
        3,
        pid,
        format_args!("udp: association through {server}, relay at {relay}"),
    );
    let (worker, relayed) = (shared.clone(), association.clone());
    let started = std::thread::Builder::new()
        .name(format!("udp-relay-{pid}"))
        .spawn(move || relay_loop(&worker, &relayed));
    if let Err(e) = started {
        association.closed.store(true, Ordering::SeqCst);
        forget(shared, &association);
        return Err(io_failed("cannot start the relay thread", &e));
    }
    Ok(association)
}

/// Removes the association (if still the one in the table) and, unless another association
/// took its socket's place, the socket's rewrites.
fn forget(shared: &Shared, association: &Arc<Association>) {
    let cookie = association.cookie;
    let mut table = lock(&shared.udp.associations);
    let current = table.by_cookie.get(&cookie).map(|a| Arc::ptr_eq(a, association));
    match current {
        Some(false) => {}
        Some(true) => {
            table.by_cookie.remove(&cookie);
            table.order.retain(|&c| c != cookie);
            drop(table);
            shared.udp.rewrites.forget(cookie);
        }
        None => {
            drop(table);
            shared.udp.rewrites.forget(cookie);
        }
    }
}

/// Whether the program's descriptor still holds the socket of this association.
fn alive(association: &Association) -> bool {
    match sys::pidfd_getfd(association.pidfd.as_fd(), association.fd) {
        Ok(copy) => sys::socket_cookie(copy.as_fd()).is_ok_and(|c| c == association.cookie),
        Err(_) => false,
    }
}

/// The relay thread of one association, until it ends (see the module header).
fn relay_loop(shared: &Arc<Shared>, association: &Arc<Association>) {
    let settings = &shared.settings;
    let pid = association.pid;
    let mut buf = vec![0u8; 65_536];
    let mut checked = Instant::now();
    let why = loop {
        if association.closed.load(Ordering::SeqCst) {
            break "forgotten (table full)";
        }
        let locals: Vec<Arc<Local>> = lock(&association.locals).by_dst.values().cloned().collect();
        let mut fds = vec![
            (association.control.as_fd(), libc::POLLIN),
            (association.outer.as_fd(), libc::POLLIN),
            (association.wake_rx.as_fd(), libc::POLLIN),
        ];
        fds.extend(locals.iter().map(|l| (l.socket.as_fd(), libc::POLLIN)));
        let revents = match sys::poll_many(&fds, 1000) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(_) => break "poll failed",
        };
        drop(fds);
        if revents[0] != 0 {
            let mut byte = [0u8; 64];
            match sys::recv_nonblocking(association.control.as_fd(), &mut byte) {
                Ok(0) => break "the server closed the control connection",
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                    break "the control connection failed"
                }
                _ => {}
            }
        }
        if revents[2] != 0 {
            while association.wake_rx.recv(&mut buf).is_ok() {}
        }
        if revents[1] != 0 {
            from_relay(association, &locals, &mut buf);
        }
        for (local, events) in locals.iter().zip(&revents[3..]) {
            if *events != 0 {
                from_program(shared, association, local, &mut buf);
            }
        }
        if checked.elapsed() >= LIVENESS_EVERY {
            if !alive(association) {
                break "the program's socket is gone";
            }
            checked = Instant::now();
        }
    };
    log(settings, 4, pid, format_args!("udp: association through {}: {why}", association.server));
    forget(shared, association);
}

/// Datagrams the program sent to `local`: wrapped and sent to the relay.
fn from_program(shared: &Shared, association: &Association, local: &Local, buf: &mut [u8]) {
    loop {
        let (n, from) = match local.socket.recv_from(buf) {
            Ok(got) => got,
            Err(_) => return,
        };
        if sockaddr::canonical(from) != sockaddr::canonical(association.program) {
            log(
                &shared.settings,
                2,
                association.pid,
                format_args!(
                    "udp: a datagram for {} from {from}, not the program: dropped",
                    local.dst
                ),
            );
            continue;
        }
        let mut datagram = Vec::with_capacity(n + 262);
        if encode_header(&UdpHeader { frag: 0, addr: local.target.clone() }, &mut datagram).is_err()
        {
            continue;
        }
        datagram.extend_from_slice(&buf[..n]);
        if datagram.len() > UDP_PAYLOAD_MAX {
            log(
                &shared.settings,
                2,
                association.pid,
                format_args!("udp: {n} bytes to {}: too long with the header, dropped", local.dst),
            );
            continue;
        }
        let _ = association.outer.send_to(&datagram, association.relay);
    }
}

/// Datagrams from the relay: unwrapped and sent to the program from the L of their source.
fn from_relay(association: &Association, locals: &[Arc<Local>], buf: &mut [u8]) {
    loop {
        let (n, from) = match association.outer.recv_from(buf) {
            Ok(got) => got,
            Err(_) => return,
        };
        if sockaddr::canonical(from) != sockaddr::canonical(association.relay) {
            continue;
        }
        let Ok((header, payload)) = decode_datagram(&buf[..n]) else { continue };
        if header.frag != 0 {
            continue;
        }
        let Some(local) = local_of(locals, &header.addr) else { continue };
        let _ = local.socket.send_to(payload, association.program);
    }
}

/// The local socket a reply from `source` goes out of: the one standing for that address, else
/// the newest one standing for a name with the same port.
fn local_of<'l>(locals: &'l [Arc<Local>], source: &TargetAddr) -> Option<&'l Arc<Local>> {
    if let TargetAddr::Ip(sa) = source {
        let sa = sockaddr::canonical(*sa);
        if let Some(found) = locals.iter().find(|l| l.dst == sa) {
            return Some(found);
        }
    }
    let port = source.port();
    locals.iter().rev().find(|l| matches!(&l.target, TargetAddr::Domain(_, p) if *p == port))
}

/// Sends `payload` to `target` through a fresh association with the first SOCKS5 server of
/// `servers` and returns the first reply from it that `accept` takes, within `timeout`; the
/// association is closed afterwards.
pub fn exchange_once(
    servers: &[Server],
    target: &TargetAddr,
    payload: &[u8],
    timeout: Duration,
    accept: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, Failed> {
    let deadline = Instant::now() + timeout;
    let Granted { control, outer, relay, .. } = associate(servers, deadline)?;
    let mut datagram = Vec::with_capacity(payload.len() + 262);
    encode_header(&UdpHeader { frag: 0, addr: target.clone() }, &mut datagram)
        .map_err(|e| failed(libc::EINVAL, e.to_string()))?;
    datagram.extend_from_slice(payload);
    outer.send_to(&datagram, relay).map_err(|e| io_failed("send to the relay", &e))?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(failed(libc::ETIMEDOUT, "no reply through the relay"));
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        let fds = [(outer.as_fd(), libc::POLLIN), (control.as_fd(), libc::POLLIN)];
        let revents = match sys::poll_many(&fds, ms) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(io_failed("poll", &e)),
        };
        if revents[1] != 0 && revents[0] == 0 {
            return Err(failed(libc::ECONNREFUSED, "the server closed the association"));
        }
        while let Ok((n, from)) = outer.recv_from(&mut buf) {
            if sockaddr::canonical(from) != sockaddr::canonical(relay) {
                continue;
            }
            let Ok((header, reply)) = decode_datagram(&buf[..n]) else { continue };
            if header.frag == 0 && accept(reply) {
                return Ok(reply.to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_address_in_the_sockets_family() {
        let v4: IpAddr = "192.0.2.2".parse().expect("literal");
        let v6: IpAddr = "2001:db8::2".parse().expect("literal");
        assert_eq!(in_family(v4, libc::AF_INET, false), Some(v4));
        assert_eq!(
            in_family(v4, libc::AF_INET6, false),
            Some("::ffff:192.0.2.2".parse().expect("literal")),
            "a dual-stack socket names it IPv4-mapped"
        );
        assert_eq!(in_family(v4, libc::AF_INET6, true), None, "an IPv6-only socket cannot");
        assert_eq!(in_family(v6, libc::AF_INET6, true), Some(v6));
        assert_eq!(in_family(v6, libc::AF_INET, false), None);
        let loopback: SocketAddr = "127.0.0.1:9".parse().expect("literal");
        assert_eq!(toward(loopback), Some(Ipv4Addr::LOCALHOST.into()), "the route lookup");
    }

    #[test]
    fn program_sources_and_reply_locals() {
        let any4: SocketAddr = "0.0.0.0:5000".parse().expect("literal");
        let any6: SocketAddr = "[::]:5000".parse().expect("literal");
        assert_eq!(seen_from_loopback(any4, false), "127.0.0.1:5000".parse().expect("literal"));
        assert_eq!(seen_from_loopback(any6, false), "127.0.0.1:5000".parse().expect("literal"));
        assert_eq!(seen_from_loopback(any6, true), "[::1]:5000".parse().expect("literal"));
        let local = |dst: &str, target: TargetAddr| {
            Arc::new(Local {
                socket: UdpSocket::bind("127.0.0.1:0").expect("loopback"),
                dst: dst.parse().expect("literal"),
                target,
                shown: "127.0.0.1:1".parse().expect("literal"),
            })
        };
        let ip: SocketAddr = "198.51.100.2:7".parse().expect("literal");
        let locals = vec![
            local("198.51.100.2:7", TargetAddr::Ip(ip)),
            local("10.255.0.1:53", TargetAddr::Domain("a.example".into(), 53)),
            local("10.255.0.2:53", TargetAddr::Domain("b.example".into(), 53)),
        ];
        let found = |t: TargetAddr| local_of(&locals, &t).map(|l| l.dst.to_string());
        assert_eq!(found(TargetAddr::Ip(ip)), Some("198.51.100.2:7".into()));
        let resolved: SocketAddr = "203.0.113.9:53".parse().expect("literal");
        assert_eq!(found(TargetAddr::Ip(resolved)), Some("10.255.0.2:53".into()), "newest name");
        assert_eq!(found(TargetAddr::Ip("203.0.113.9:54".parse().expect("literal"))), None);
    }
}
