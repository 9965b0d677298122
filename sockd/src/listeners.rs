//! sockd's own listening sockets: one per address for `--metrics` (`listen`), and one per
//! address *and serving thread* for SOCKS (`listen_shared`), bound with SO_REUSEPORT so the
//! kernel spreads new connections over the threads' accept queues and each thread accepts,
//! handshakes and relays its own connections (see `workers`).
//!
//! SO_REUSEPORT would let sockd join, without a word, a port that another process of the same
//! user already listens on with SO_REUSEPORT (a second sockd, a stale one): the connections
//! would then be shared between the two. So after listening, `listen_shared` reads the kernel's
//! table of TCP sockets (/proc/net/tcp, tcp6) and fails with "address in use" if anything but
//! its own sockets listens on that port and address (or on the wildcard of its family).
//! Without /proc to read, it falls back to one socket without SO_REUSEPORT, shared by the
//! threads (one accept queue), so a taken port is still refused.
//!
//! Not here: the accept loop and the threads (`workers`), sockets passed by systemd (`systemd`).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use log::warn;

/// Pending connections a listening socket queues (per socket: each thread has its own queue).
const BACKLOG: i32 = 1024;

/// Tries at picking a free port for port 0 (the kernel's pick can land on a port another
/// process shares with SO_REUSEPORT; sockd then picks again rather than share it).
const PORT_ZERO_TRIES: usize = 5;

/// A listening socket; IPv6 listeners are IPv6-only so `0.0.0.0` and `[::]` can both be given.
/// TCP_NODELAY is set on the listener: Linux copies it to every accepted connection, so a
/// session needs no setsockopt(2) of its own for its client side (relayed bytes go out at once,
/// as the relay wants). Non-blocking, ready for tokio.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = bound(addr, false)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// `count` listening sockets on one address, all bound with SO_REUSEPORT (port 0: one free
/// port picked for all of them), each otherwise like `listen`'s. Fails with
/// `ErrorKind::AddrInUse` if another socket, not one of these, listens there too. Where that
/// cannot be checked (no /proc), `count` descriptors of one socket without SO_REUSEPORT.
pub fn listen_shared(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let tries = if addr.port() == 0 { PORT_ZERO_TRIES } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        match listen_shared_once(addr, count.max(1)) {
            Ok(listeners) => return Ok(listeners),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

fn listen_shared_once(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    let first = bound(addr, true)?;
    // Port 0: the others take the port the kernel gave the first.
    let port = first.local_addr()?.as_socket().map_or(addr.port(), |a| a.port());
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bound(SocketAddr::new(addr.ip(), port), true)?);
    }
    for socket in &sockets {
        socket.listen(BACKLOG)?;
    }
    let at = SocketAddr::new(addr.ip(), port);
    let ours: io::Result<HashSet<u64>> =
        sockets.iter().map(|s| socket_inode(s.as_raw_fd())).collect();
    match ours.and_then(|ours| foreign_listener(at, &ours)) {
        Ok(None) => Ok(sockets.into_iter().map(TcpListener::from).collect()),
        Ok(Some(other)) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("address in use: another socket (inode {other}) listens on that port"),
        )),
        Err(e) => {
            // No /proc to look in (a chroot, say): one plain socket, which a port someone else
            // holds refuses at bind(2), handed to every thread (they share its accept queue).
            warn!("{at}: cannot check who else listens there ({e}); the threads share one socket");
            drop(sockets);
            let one = listen(at)?;
            let mut shared = Vec::with_capacity(count);
            for _ in 1..count {
                shared.push(one.try_clone()?);
            }
            shared.push(one);
            Ok(shared)
        }
    }
}

/// A bound, non-blocking TCP socket with sockd's listening options.
fn bound(addr: SocketAddr, reuse_port: bool) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_tcp_nodelay(true)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The inode of the socket behind a descriptor, as /proc/net/tcp names it (`socket:[N]`).
fn socket_inode(fd: i32) -> io::Result<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))?;
    let text = link.to_string_lossy();
    text.strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("descriptor {fd} is not a socket ({text})")))
}

/// The inode of a listening TCP socket on `addr`'s port, in `addr`'s family, whose address is
/// `addr`'s or the wildcard (or `addr` is the wildcard), that is not in `ours`.
fn foreign_listener(addr: SocketAddr, ours: &HashSet<u64>) -> io::Result<Option<u64>> {
    let table = if addr.is_ipv4() { "/proc/net/tcp" } else { "/proc/net/tcp6" };
    let text = std::fs::read_to_string(table)?;
    Ok(listeners_in(&text).into_iter().find_map(|(local, inode)| {
        let overlaps = local.port() == addr.port()
            && (local.ip() == addr.ip()
                || local.ip().is_unspecified()
                || addr.ip().is_unspecified());
        (overlaps && !ours.contains(&inode)).then_some(inode)
    }))
}

/// TCP state LISTEN in /proc/net/tcp (include/net/tcp_states.h: TCP_LISTEN = 10).
const TCP_LISTEN: &str = "0A";

/// The listening sockets of a /proc/net/tcp or tcp6 table: (local address, inode). Lines that
/// do not parse are skipped (a kernel that adds columns keeps the first ten).
fn listeners_in(table: &str) -> Vec<(SocketAddr, u64)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != TCP_LISTEN {
                return None;
            }
            let (ip, port) = fields[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some((SocketAddr::new(proc_ip(ip)?, port), fields[9].parse().ok()?))
        })
        .collect()
}

/// An address as /proc/net/tcp prints it: each 32-bit word of the network-order address, read
/// as a number in the machine's byte order, in 8 hex digits.
fn proc_ip(hex: &str) -> Option<IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for start in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(start..start + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions rely on this to skip a setsockopt(2) per client (see `session::relay_and_log`):
    /// if a kernel stopped copying TCP_NODELAY to accepted sockets, relayed small writes would
    /// wait for Nagle's algorithm, and this test says so.
    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_from_the_listener() {
        let mut addrs: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().expect("literal")];
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            addrs.push("[::1]:0".parse().expect("literal"));
        }
        for addr in addrs {
            for listener in [listen(addr).expect("listen")]
                .into_iter()
                // One: with two, the kernel may queue the connection on the other one.
                .chain(listen_shared(addr, 1).expect("listen_shared"))
            {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio");
                let to = listener.local_addr().expect("local address");
                let client = tokio::net::TcpStream::connect(to).await.expect("connect");
                assert!(!client.nodelay().expect("client nodelay"), "a fresh socket has Nagle on");
                let (accepted, _) = listener.accept().await.expect("accept");
                assert!(
                    accepted.nodelay().expect("nodelay"),
                    "{addr}: accepted without TCP_NODELAY"
                );
            }
        }
    }

    #[test]
    fn shared_listeners_share_one_port_and_refuse_a_taken_one() {
        let ours = listen_shared("127.0.0.1:0".parse().expect("literal"), 3).expect("listen");
        let addr = ours[0].local_addr().expect("local address");
        assert!(ours.iter().all(|l| l.local_addr().ok() == Some(addr)), "one port for all");
        // A second set on the same port, as a second sockd would open it: refused, not shared.
        let again = listen_shared(addr, 2).expect_err("a taken port must be refused");
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse, "{again}");
        // And the wildcard of the family overlaps it too.
        let wildcard = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), addr.port());
        let again = listen_shared(wildcard, 1).expect_err("the wildcard overlaps");
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse, "{again}");
    }

    #[test]
    fn proc_tables_are_read() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0438 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n   1: 0100007F:0439 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4243 1\n";
        let one = u32::from_ne_bytes([127, 0, 0, 1]);
        let v4 = v4.replace("0100007F", &format!("{one:08X}"));
        assert_eq!(listeners_in(&v4), vec![("127.0.0.1:1080".parse().expect("literal"), 4242)]);
        let loopback6: String = [0u32, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])]
            .iter()
            .map(|w| format!("{w:08X}"))
            .collect();
        let v6 = format!(
            "header\n   0: {loopback6}:0438 {} 0A 0:0 0:0 0 0 0 77 1\n",
            "0".repeat(32) + ":0000"
        );
        assert_eq!(listeners_in(&v6), vec![("[::1]:1080".parse().expect("literal"), 77)]);
        assert_eq!(listeners_in("header\n   0: ZZ:0438 x 0A a b c d e f\n"), vec![]);
    }
}
