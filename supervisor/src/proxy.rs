//! CONNECT (and BIND, with its second reply) through a SOCKS server on the supervisor's copy of
//! the program's socket: connect the copy to the first server that answers, in the order
//! `socks_client::order` gives (as the library: servers that failed lately skipped, a `?spread`
//! list started at a different server each time, round robin over every program this
//! supervisor serves), run `socks_proto`'s client handshake over it under a deadline, and say
//! which errno the program should see otherwise. Every wait is a `poll` with the time left,
//! and every read and write is non-blocking (MSG_DONTWAIT), so a blocking socket never blocks
//! the supervisor past the deadline; a blocking socket is made non-blocking for the connect
//! only and given its flags back.
//!
//! Reads take exactly what the handshake still needs (`ClientHandshake::wanted`), so bytes the
//! destination sends right after the reply stay in the socket for the program.
//!
//! A chain of proxies (`A>B>C`) or an HTTP proxy: the copy is connected to the first hop, then
//! each hop's handshake runs in turn on it (SOCKS with `ClientHandshake`, HTTP with
//! `socks_proto::http_connect`, read exactly to the blank line), each asking for the next hop,
//! the last for the destination, each hop within its share of the time (`Server::hop_share`);
//! failures name the hop. BIND ending at an HTTP proxy and UDP
//! through either are refused before any connection (ECONNREFUSED), never made direct.
//!
//! Not here: choosing the servers (`route`), answering the notification (`supervise`).

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use socks_client::settings::Protocol;
use socks_proto::client::{ClientError, ClientHandshake, ClientStep, ClientVersion, Identity};
use socks_proto::error::ProtoError;
use socks_proto::http_connect::{encode_request, HttpConnectError, ResponseReader, ResponseStep};
use socks_proto::reply::Failure;
use socks_proto::server::Command;
use socks_proto::TargetAddr;

use socks_client::order::{order, Health, Spreader};

use crate::config::{Server, Settings};
use crate::supervise::log;
use crate::{sockaddr, sys};

/// When each server last failed, for every program this supervisor serves: one that failed is
/// skipped for `socks_client::order::SERVER_RETRY_AFTER`, as in the library.
static HEALTH: Health = Health::new();

/// The start of each `?spread` walk: round robin over all the supervised programs' connections.
static SPREADER: Spreader = Spreader::new();

/// Why a proxied connect failed: the errno for the program and a line for the log.
#[derive(Debug)]
pub struct Failed {
    /// The errno the program gets.
    pub errno: i32,
    /// What happened, for `SOCKS_LOG`.
    pub why: String,
}

fn failed(errno: i32, why: impl Into<String>) -> Failed {
    Failed { errno, why: why.into() }
}

/// Whose request it is, for the walk's debug lines (`SOCKS_LOG=debug`: each server address
/// tried, `trying server ADDR first (spread)` or `… next`, in the library's words): the
/// settings (their log level) and the program's process. `None` for the supervisor's own
/// requests (its name service's).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub settings: &'a Settings,
    pub pid: u32,
}

impl Asker<'_> {
    fn debug(asker: Option<Asker<'_>>, line: std::fmt::Arguments<'_>) {
        if let Some(Asker { settings, pid }) = asker {
            log(settings, LOG_DEBUG, pid, line);
        }
    }
}

/// The supervisor's log level of debug lines (`SOCKS_LOG=debug`, `-vv`).
const LOG_DEBUG: u8 = 4;

/// Connects `fd` (a TCP socket of family `family`, its SO_DOMAIN) to `target` (an address, or
/// the name behind a fake address) through the first of `servers` that accepts a TCP
/// connection. Returns the server address used, the protocol and any detour taken.
pub fn connect_via(
    fd: BorrowedFd<'_>,
    family: i32,
    target: &TargetAddr,
    servers: &[Server],
    deadline: Instant,
    asker: Option<Asker<'_>>,
) -> Result<Granted, Failed> {
    request_via(fd, family, Command::Connect, target, servers, deadline, asker)
}

/// A granted request.
#[derive(Debug, Clone)]
pub struct Granted {
    /// The server address the socket is connected to.
    pub server: SocketAddr,
    /// The protocol spoken.
    pub version: ClientVersion,
    /// The reply's address (for BIND, where the server listens), 0.0.0.0 or a name already
    /// replaced by the server's address.
    pub bound: SocketAddr,
    /// For the log's "ok" line: the hops a `?dynamic` chain left out on the way (` (dynamic:
    /// left out hop 2 of a>b>c)`), else empty.
    pub detour: String,
    /// The `@=` entry (its `Server::id`) that carried the request: a later BIND goes through
    /// exactly this one, even when another entry of the list starts at the same first hop.
    pub route: usize,
}

impl Granted {
    fn new(server: SocketAddr, version: ClientVersion, bound: SocketAddr, route: usize) -> Granted {
        Granted { server, version, bound, detour: String::new(), route }
    }
}

/// Runs `command` (CONNECT or BIND) for `target` on `fd` (of family `family`, its SO_DOMAIN,
/// which every caller has already read) through the first of `servers` that accepts a TCP
/// connection; `fd` is left connected to it on success, disconnected otherwise.
pub fn request_via(
    fd: BorrowedFd<'_>,
    family: i32,
    command: Command,
    target: &TargetAddr,
    servers: &[Server],
    deadline: Instant,
    asker: Option<Asker<'_>>,
) -> Result<Granted, Failed> {
    let flags = sys::status_flags(fd)
        .map_err(|e| failed(e.raw_os_error().unwrap_or(libc::EIO), format!("F_GETFL: {e}")))?;
    let blocking = flags & libc::O_NONBLOCK == 0;
    if blocking {
        sys::set_status_flags(fd, flags | libc::O_NONBLOCK)
            .map_err(|e| failed(e.raw_os_error().unwrap_or(libc::EIO), format!("F_SETFL: {e}")))?;
    }
    let result = try_servers(fd, family, command, target, servers, (deadline, asker));
    if blocking {
        // Giving the program its flags back cannot usefully fail on a descriptor we hold.
        let _ = sys::set_status_flags(fd, flags);
    }
    if result.is_err() {
        // Never leave the program's socket connected to a server after a failure.
        sys::disconnect(fd);
    }
    result
}

fn try_servers(
    fd: BorrowedFd<'_>,
    family: i32,
    command: Command,
    target: &TargetAddr,
    servers: &[Server],
    (deadline, asker): (Instant, Option<Asker<'_>>),
) -> Result<Granted, Failed> {
    let mut last = failed(libc::ECONNREFUSED, "no SOCKS server address of the socket's family");
    let spread = if servers.first().is_some_and(|s| s.spread) { " (spread)" } else { "" };
    let walk = order(servers, SPREADER.ticket(), |s| HEALTH.is_alive(s));
    for (i, server) in walk.enumerate() {
        if let Some(why) = server.refusal(command) {
            last = failed(libc::ECONNREFUSED, format!("via {}: {why}", server.chain_text()));
            continue;
        }
        if server.dynamic && !server.is_single_socks() {
            match dynamic_chain(fd, family, command, target, server, deadline) {
                Err(f) if f.errno == libc::ETIMEDOUT && Instant::now() >= deadline => {
                    return Err(f)
                }
                Err(f) => last = f,
                granted => return granted,
            }
            continue;
        }
        for &addr in &server.addrs {
            let Some(addr) = for_family(addr, family) else { continue };
            let nth = if i == 0 { "first" } else { "next" };
            let trying = format_args!("{command} {target}: trying server {addr} {nth}{spread}");
            Asker::debug(asker, trying);
            // A chain's steps each get a share of the time left (`Server::hop_share`).
            let share = server.hop_share(deadline.saturating_duration_since(Instant::now()));
            if let Err(errno) = connect_socket(fd, addr, deadline.min(Instant::now() + share)) {
                let error = std::io::Error::from_raw_os_error(errno);
                sys::disconnect(fd);
                HEALTH.mark_failed(server);
                // A first hop that used up its share leaves the rest to the next entry.
                if errno == libc::ETIMEDOUT && Instant::now() >= deadline {
                    return Err(failed(errno, format!("via {addr}: {error}")));
                }
                last = failed(libc::ECONNREFUSED, format!("via {addr}: {error}"));
                continue;
            }
            HEALTH.mark_alive(server);
            if !server.is_single_socks() {
                return through_chain(fd, server, command, target, addr, (share, deadline))
                    .map_err(|c| c.failed);
            }
            let name = server.version.scheme();
            let mut hs =
                ClientHandshake::new(server.version, command, target, server.identity.clone())
                    .map_err(|e| failed(libc::EAFNOSUPPORT, format!("via {addr} ({name}): {e}")))?;
            if server.pipeline {
                hs = hs.pipelined();
            }
            return exchange(fd, &mut hs, deadline)
                .map(|bound| Granted::new(addr, server.version, reachable(bound, addr), server.id))
                .map_err(|f| failed(f.errno, format!("via {addr} ({name}): {}", f.why)));
        }
    }
    Err(last)
}

/// A `?dynamic` chain on `fd`: its first hop connected, its hops run; a hop that is down is
/// left out and the rest tried again on the same socket (dissolved with `connect(AF_UNSPEC)`),
/// as long as a hop remains. A hop is down when it does not accept the connection, does not
/// answer, or fails its handshake; when a hop answers that it could not reach the next one
/// (a SOCKS failure reply, an HTTP error status), the next one is down. Err: every try failed,
/// and `fd` is disconnected again (the next entry of the list may use it).
fn dynamic_chain(
    fd: BorrowedFd<'_>,
    family: i32,
    command: Command,
    target: &TargetAddr,
    server: &Server,
    deadline: Instant,
) -> Result<Granted, Failed> {
    let mut chain = server.clone();
    // The failures so far, for the message when every try failed.
    let mut tried = String::new();
    // The hops left out so far, for the log's "ok" line.
    let mut left_out = String::new();
    loop {
        let text = chain.chain_text();
        let share = chain.hop_share(deadline.saturating_duration_since(Instant::now()));
        let mut last = failed(libc::ECONNREFUSED, format!("via {text}: no address of the family"));
        let mut reached = None;
        for addr in chain.addrs.iter().filter_map(|a| for_family(*a, family)) {
            match connect_socket(fd, addr, deadline.min(Instant::now() + share)) {
                Ok(()) => {
                    reached = Some(addr);
                    break;
                }
                Err(errno) => {
                    let error = std::io::Error::from_raw_os_error(errno);
                    last = failed(errno, format!("via {text}: hop 1 ({addr}): {error}"));
                    sys::disconnect(fd);
                }
            }
        }
        let down = match reached {
            None => 0,
            Some(addr) => {
                match through_chain(fd, &chain, command, target, addr, (share, deadline)) {
                    Ok(mut granted) => {
                        HEALTH.mark_alive(server);
                        if !left_out.is_empty() {
                            granted.detour = format!(" (dynamic: {left_out})");
                        }
                        return Ok(granted);
                    }
                    Err(c) => {
                        last = c.failed;
                        c.down
                    }
                }
            }
        };
        sys::disconnect(fd);
        if Instant::now() >= deadline {
            return Err(failed(
                libc::ETIMEDOUT,
                format!("{tried}{} (dynamic: out of time)", last.why),
            ));
        }
        let Some(rest) = chain.without_hop(down) else {
            let why = if chain.hop_count() == 1 {
                "no hop is left"
            } else {
                "the next hop is written as a name, which only the hop before it resolves"
            };
            HEALTH.mark_failed(server);
            return Err(failed(last.errno, format!("{tried}{} (dynamic: {why})", last.why)));
        };
        tried.push_str(&format!("{}; then ", last.why));
        if !left_out.is_empty() {
            left_out.push_str(", then ");
        }
        left_out.push_str(&format!("left out hop {} of {text}", down + 1));
        chain = rest;
    }
}

/// A chain's failure: what the program is told, and which hop (0 = the first) is down — the
/// one that failed, or the next one when it answered that it could not reach it.
struct ChainFailed {
    failed: Failed,
    down: usize,
}

/// The handshakes of a chain (or a lone HTTP proxy) on `fd`, connected to its first hop at
/// `addr`: each hop asked for the next hop, the last for `command` to `target`. Failures name
/// the hop; an earlier hop that cannot reach the next marks the chain failed. Each hop's
/// handshake ends after `share`, and all of them by `deadline`.
fn through_chain(
    fd: BorrowedFd<'_>,
    server: &Server,
    command: Command,
    target: &TargetAddr,
    addr: SocketAddr,
    (share, deadline): (Duration, Instant),
) -> Result<Granted, ChainFailed> {
    let count = server.hop_count();
    let chain = server.chain_text();
    let first = (server.protocol, &server.identity, server.pipeline, &server.shown);
    let hops = std::iter::once(first)
        .chain(server.next.iter().map(|h| (h.protocol, &h.identity, h.pipeline, &h.shown)));
    let mut version = server.version;
    let mut bound = TargetAddr::Ip(SocketAddr::from(([0, 0, 0, 0], 0)));
    for (i, (protocol, identity, pipeline, shown)) in hops.enumerate() {
        let last = i + 1 == count;
        let (ask, what) = match server.next.get(i) {
            Some(next) if !last => (&next.target, Command::Connect),
            _ => (target, command),
        };
        let deadline = deadline.min(Instant::now() + share);
        let name_hop = |(f, answered): (Failed, bool)| {
            if !last {
                HEALTH.mark_failed(server);
            }
            let place = match server.next.get(i) {
                Some(next) if !last => {
                    format!(
                        "hop {} of {count} ({shown}) could not reach hop {} ({})",
                        i + 1,
                        i + 2,
                        next.shown
                    )
                }
                _ => format!("hop {} of {count} ({shown})", i + 1),
            };
            let failed = failed(f.errno, format!("via {chain}: {place}: {}", f.why));
            ChainFailed { failed, down: i + usize::from(answered && !last) }
        };
        match protocol {
            Protocol::Socks(v) => {
                let mut hs = ClientHandshake::new(v, what, ask, identity.clone())
                    .map_err(|e| name_hop((failed(libc::EAFNOSUPPORT, e.to_string()), false)))?;
                if pipeline {
                    hs = hs.pipelined();
                }
                bound = exchange_answer(fd, &mut hs, deadline).map_err(name_hop)?;
                version = v;
            }
            Protocol::Http if what != Command::Connect => {
                let why = format!("{what} cannot go through an HTTP proxy");
                return Err(name_hop((failed(libc::ECONNREFUSED, why), false)));
            }
            Protocol::Http => {
                http_hop(fd, ask, identity, deadline).map_err(name_hop)?;
                bound = TargetAddr::Ip(SocketAddr::from(([0, 0, 0, 0], 0)));
            }
        }
    }
    // A reply's 0.0.0.0 names the last hop: its address when written as one.
    let last_hop = match server.next.last().map(|hop| &hop.target) {
        Some(TargetAddr::Ip(last)) => *last,
        _ => addr,
    };
    Ok(Granted::new(addr, version, reachable(bound, last_hop), server.id))
}

/// One HTTP CONNECT on `fd`: the request, then the answer read exactly to its blank line (the
/// bytes after it stay in the socket for the program). Err's flag: the proxy answered with an
/// error status (it could not open the tunnel), rather than failing itself.
fn http_hop(
    fd: BorrowedFd<'_>,
    target: &TargetAddr,
    identity: &Identity,
    deadline: Instant,
) -> Result<(), (Failed, bool)> {
    let own = |f: Failed| (f, false);
    let credentials =
        identity.credentials.as_ref().map(|c| (c.username.as_str(), c.password.as_slice()));
    let mut request = Vec::new();
    encode_request(target, credentials, &mut request)
        .map_err(|e| own(failed(libc::EAFNOSUPPORT, e.to_string())))?;
    send_all(fd, &request, deadline).map_err(own)?;
    let mut reader = ResponseReader::new();
    let mut buf = [0u8; 512];
    loop {
        let want = reader.wanted().clamp(1, buf.len());
        let n = match sys::recv_nonblocking(fd, &mut buf[..want]) {
            Ok(0) => return Err(own(failed(libc::ECONNREFUSED, "proxy closed the connection"))),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait(fd, libc::POLLIN, deadline)
                    .map_err(|errno| own(failed(errno, "timed out waiting for the answer")))?;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                return Err(own(failed(errno, format!("recv: {e}"))));
            }
        };
        match reader.feed(&buf[..n]) {
            Ok(ResponseStep::NeedMore) => {}
            Ok(ResponseStep::Open { .. }) => return Ok(()),
            Err(e) => {
                let answered =
                    matches!(&e, HttpConnectError::Refused { status, .. } if *status != 401);
                return Err((failed(http_errno(&e), e.to_string()), answered));
            }
        }
    }
}

/// The errno for a failed HTTP CONNECT, as the library's table (socks.conf(5) ERRORS).
pub fn http_errno(error: &HttpConnectError) -> i32 {
    match error {
        // 401 too: tinyproxy (1.11) answers a CONNECT with wrong credentials with it.
        HttpConnectError::ProxyAuthRequired { .. }
        | HttpConnectError::Refused { status: 401, .. } => libc::EACCES,
        HttpConnectError::Refused { status: 504, .. } => libc::ETIMEDOUT,
        HttpConnectError::Refused { .. } => libc::ECONNREFUSED,
        HttpConnectError::BadHost | HttpConnectError::BadCredentials => libc::EAFNOSUPPORT,
        HttpConnectError::NotHttp
        | HttpConnectError::Malformed(_)
        | HttpConnectError::HeadTooLong
        | HttpConnectError::TooManyHeaders
        | HttpConnectError::Finished => libc::EPROTO,
    }
}

/// The address a reply names, with 0.0.0.0 (SOCKS4's "the server's address") or a name (which
/// cannot be used) replaced by the server's address — as the library does.
fn reachable(bound: TargetAddr, server: SocketAddr) -> SocketAddr {
    match bound {
        TargetAddr::Ip(sa) if !sa.ip().is_unspecified() => sa,
        other => SocketAddr::new(server.ip().to_canonical(), other.port()),
    }
}

/// Reads the second reply of a BIND on `fd` (whose first reply was read), once it is
/// readable, within `deadline`: the connecting peer. Reads exactly the reply, so the first
/// bytes of the inbound connection stay in the socket.
pub fn second_reply(
    fd: BorrowedFd<'_>,
    version: ClientVersion,
    deadline: Instant,
) -> Result<SocketAddr, Failed> {
    let mut hs = ClientHandshake::second_reply(version);
    match exchange(fd, &mut hs, deadline)? {
        TargetAddr::Ip(peer) => Ok(peer),
        TargetAddr::Domain(..) => Err(failed(libc::EPROTO, "the second reply names no address")),
    }
}

/// The server address as the socket's family can reach it (IPv4 through an IPv6 socket as
/// an IPv4-mapped address).
pub fn for_family(addr: SocketAddr, family: i32) -> Option<SocketAddr> {
    match (addr, family) {
        (SocketAddr::V4(_), libc::AF_INET) | (SocketAddr::V6(_), libc::AF_INET6) => Some(addr),
        (SocketAddr::V4(v4), libc::AF_INET6) => {
            Some(SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()))
        }
        _ => None,
    }
}

fn millis_left(deadline: Instant) -> Result<i32, i32> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(libc::ETIMEDOUT);
    }
    Ok(i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1))
}

/// Waits for `events` on `fd` until the deadline (ETIMEDOUT).
fn wait(fd: BorrowedFd<'_>, events: i16, deadline: Instant) -> Result<i16, i32> {
    loop {
        match sys::poll_one(fd, events, millis_left(deadline)?) {
            Ok(0) => continue,
            Ok(revents) => return Ok(revents),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// Connects the (non-blocking) socket to `addr`, waiting for the outcome.
fn connect_socket(fd: BorrowedFd<'_>, addr: SocketAddr, deadline: Instant) -> Result<(), i32> {
    match sys::connect_raw(fd, &sockaddr::bytes(addr)) {
        Ok(()) => return Ok(()),
        Err(libc::EINPROGRESS) | Err(libc::EALREADY) | Err(libc::EINTR) => {}
        Err(errno) => return Err(errno),
    }
    // A server on this host (or one answering at once) has usually completed the handshake by
    // now: a second connect then answers 0 (or the refusal), and takes the completion answer
    // (see below) without a poll and SO_ERROR.
    match sys::connect_raw(fd, &sockaddr::bytes(addr)) {
        Ok(()) | Err(libc::EISCONN) => return Ok(()),
        Err(libc::EINPROGRESS) | Err(libc::EALREADY) | Err(libc::EINTR) => {}
        Err(errno) => return Err(errno),
    }
    wait(fd, libc::POLLOUT, deadline)?;
    match sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
        Ok(0) => {}
        Ok(errno) => return Err(errno),
        Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
    }
    // The kernel keeps a socket whose non-blocking connect completed as "connecting" until the
    // next connect(2) on it, which then answers 0 whatever its address. This one takes that
    // answer, so the program's own next connect gets EISCONN, as on a socket it connected.
    match sys::connect_raw(fd, &sockaddr::bytes(addr)) {
        Ok(()) | Err(libc::EISCONN) => Ok(()),
        Err(errno) => Err(errno),
    }
}

fn send_all(fd: BorrowedFd<'_>, mut data: &[u8], deadline: Instant) -> Result<(), Failed> {
    while !data.is_empty() {
        match sys::send_nonblocking(fd, data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait(fd, libc::POLLOUT, deadline)
                    .map_err(|errno| failed(errno, "timed out sending the request"))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(failed(e.raw_os_error().unwrap_or(libc::EIO), format!("send: {e}")))
            }
        }
    }
    Ok(())
}

/// Runs the handshake to its end: the reply's address.
fn exchange(
    fd: BorrowedFd<'_>,
    hs: &mut ClientHandshake,
    deadline: Instant,
) -> Result<TargetAddr, Failed> {
    exchange_answer(fd, hs, deadline).map_err(|(f, _)| f)
}

/// [`exchange`], and on failure whether the server answered with a failure reply (it could not
/// do what was asked) rather than failing itself.
fn exchange_answer(
    fd: BorrowedFd<'_>,
    hs: &mut ClientHandshake,
    deadline: Instant,
) -> Result<TargetAddr, (Failed, bool)> {
    let own = |f: Failed| (f, false);
    let mut buf = [0u8; 512];
    loop {
        let out = hs.take_output();
        send_all(fd, &out, deadline).map_err(own)?;
        let want = hs.wanted().clamp(1, buf.len());
        let n = match sys::recv_nonblocking(fd, &mut buf[..want]) {
            Ok(0) => return Err(own(failed(libc::ECONNREFUSED, "server closed the connection"))),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait(fd, libc::POLLIN, deadline)
                    .map_err(|errno| own(failed(errno, "timed out waiting for the reply")))?;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                return Err(own(failed(errno, format!("recv: {e}"))));
            }
        };
        match hs.feed(&buf[..n]) {
            ClientStep::NeedMore => {}
            ClientStep::Granted { bound } => return Ok(bound),
            ClientStep::Failed(e) => {
                let answered = matches!(e, ClientError::Refused(_));
                return Err((failed(errno_for(&e), e.to_string()), answered));
            }
        }
    }
}

/// The errno a program would have seen had it reached the destination itself (the library's
/// table, shim/src/proxy.rs, documented in socks.conf(5)).
pub fn errno_for(error: &ClientError) -> i32 {
    match error {
        ClientError::Refused(Failure::NetworkUnreachable) => libc::ENETUNREACH,
        ClientError::Refused(Failure::HostUnreachable) => libc::EHOSTUNREACH,
        ClientError::Refused(Failure::TtlExpired) => libc::ETIMEDOUT,
        ClientError::Refused(Failure::AddressTypeNotSupported) => libc::EAFNOSUPPORT,
        ClientError::Refused(_) => libc::ECONNREFUSED,
        ClientError::AuthRejected | ClientError::Protocol(ProtoError::NoAcceptableMethod) => {
            libc::EACCES
        }
        ClientError::Protocol(_) => libc::EPROTO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_errnos() {
        let v4: SocketAddr = "192.0.2.1:1080".parse().expect("literal");
        assert_eq!(for_family(v4, libc::AF_INET), Some(v4));
        assert_eq!(
            for_family(v4, libc::AF_INET6),
            Some("[::ffff:192.0.2.1]:1080".parse().expect("literal"))
        );
        let v6: SocketAddr = "[2001:db8::1]:1080".parse().expect("literal");
        assert_eq!(for_family(v6, libc::AF_INET), None);
        assert_eq!(errno_for(&ClientError::Refused(Failure::NotAllowed)), libc::ECONNREFUSED);
        assert_eq!(errno_for(&ClientError::Refused(Failure::TtlExpired)), libc::ETIMEDOUT);
        assert_eq!(errno_for(&ClientError::AuthRejected), libc::EACCES);
    }
}
