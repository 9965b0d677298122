//! Running a SOCKS request on a program's own socket: connect it to the first server that
//! answers, in the order `socks_client::order` gives (the first live one, or with `?spread` a
//! start that moves on with each connection; servers that failed lately skipped), in the
//! socket's family (IPv4 servers as IPv4-mapped for IPv6 sockets), run the client handshake
//! from socks-proto over it (CONNECT, or BIND and later its second reply), and report a
//! failure as a `Cause` (see `outcome` for its errno). Blocking and non-blocking sockets alike
//! finish within the configured timeout; the socket's flags are restored before returning.
//!
//! `connect_without_heap` does a CONNECT with `socks_proto::fixed` (no allocation), for a
//! connect made by a signal handler that interrupted the library.
//!
//! A chain of proxies or an HTTP proxy (`Server::is_single_socks` false) is connected to its
//! first hop here and handed to `chain` for the hops' handshakes; what it cannot carry (UDP;
//! BIND ending in HTTP) is refused before any connection, with a log line. Each step of a chain
//! gets its share of the time (`Server::hop_share`). A `?dynamic` chain whose hop is down is
//! tried again without it (`Server::without_hop`) on the same socket, dissolved with
//! `connect(AF_UNSPEC)` in between (`dynamic_chain`); it allocates, like the rest of the chain
//! code, and like it is refused on the heap-free path.
//!
//! Not here: deciding whether to proxy (`route`) or the C-level hook (`hooks`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libc::c_int;
use socks_proto::client::{ClientHandshake, ClientStep, ClientVersion};
use socks_proto::fixed::{Destination, FixedConnect, FixedStep};
pub use socks_proto::server::Command;
use socks_proto::TargetAddr;

use socks_client::order::order;

use crate::chain;
use crate::config::{Server, ServerHealth, SPREADER};
use crate::ffi::real;
use crate::ffi::sockaddr::{for_family, RawAddr};
use crate::log::{log, Level};
use crate::outcome::Cause;

/// A granted request.
#[derive(Debug, Clone, Copy)]
pub struct Granted {
    /// The server address the socket is connected to, as the socket sees it.
    pub server: RawAddr,
    /// The protocol spoken.
    pub version: ClientVersion,
    /// The reply's address: CONNECT, the server's outbound address; BIND, where it listens
    /// (0.0.0.0 already replaced by the server's address).
    pub bound: SocketAddr,
    /// The `@=` entry (its `Server::id`) that carried the request: a later BIND goes through
    /// exactly this one, even when another entry of the list starts at the same first hop.
    pub route: usize,
}

/// The errno of the system call that just failed, as a cause.
fn os_error() -> Cause {
    Cause::Os(real::errno())
}

/// Runs `command` for `target` (an address, or a name the server resolves) through the first
/// usable server in `servers`.
pub fn request_through(
    fd: c_int,
    command: Command,
    target: &TargetAddr,
    servers: &[Server],
    timeout: Duration,
) -> Result<Granted, Cause> {
    let family =
        real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok_or_else(os_error)?;
    let flags = status_flags(fd)?;
    let deadline = Instant::now() + timeout;
    nonblocking_while(fd, flags, || try_servers(fd, family, command, target, servers, deadline))
}

/// The file status flags of `fd` (F_GETFL).
fn status_flags(fd: c_int) -> Result<c_int, Cause> {
    match real::fcntl_int(fd, libc::F_GETFL, 0) {
        flags if flags >= 0 => Ok(flags),
        _ => Err(os_error()),
    }
}

/// Runs `work` with `fd` non-blocking (so every wait is bounded by our deadlines), then puts
/// back the program's `flags`.
fn nonblocking_while<T>(
    fd: c_int,
    flags: c_int,
    work: impl FnOnce() -> Result<T, Cause>,
) -> Result<T, Cause> {
    let was_blocking = flags & libc::O_NONBLOCK == 0;
    if was_blocking && real::fcntl_int(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
        return Err(os_error());
    }
    let result = work();
    if was_blocking {
        real::fcntl_int(fd, libc::F_SETFL, flags);
    }
    result
}

/// The ticket for a walk of `servers`: from `SPREADER` for a `?spread` list, else 0 (`order`
/// ignores it; taking one costs a getpid(2) per connection, which a plain list has no use for).
fn ticket(servers: &[Server]) -> u64 {
    if servers.first().is_some_and(|s| s.spread) {
        SPREADER.ticket()
    } else {
        0
    }
}

fn try_servers(
    fd: c_int,
    family: c_int,
    command: Command,
    target: &TargetAddr,
    servers: &[Server],
    deadline: Instant,
) -> Result<Granted, Cause> {
    let walk = order(servers, ticket(servers), Server::is_alive);
    let spread = if servers.first().is_some_and(|s| s.spread) { " (spread)" } else { "" };
    let mut refused = None;
    for (i, server) in walk.enumerate() {
        if let Some(why) = server.refusal(command) {
            log!(Level::Error, "{command} {target} via {}: {why}", server.chain_text());
            refused = Some(Cause::Denied);
            continue;
        }
        if server.dynamic && !server.is_single_socks() {
            match dynamic_chain(fd, family, command, target, server, deadline) {
                Err(Cause::Timeout) => return Err(Cause::Timeout),
                Err(cause) => refused = Some(cause),
                granted => return granted,
            }
            continue;
        }
        for addr in &server.addrs {
            let Some(addr) = for_family(*addr, family) else { continue };
            let nth = if i == 0 { "first" } else { "next" };
            log!(Level::Debug, "{command} {target}: trying server {addr} {nth}{spread}");
            let raw = RawAddr::from_socket_addr(addr);
            // A chain's steps each get a share of the time left (`Server::hop_share`).
            let share = server.hop_share(deadline.saturating_duration_since(Instant::now()));
            match connect_socket(fd, &raw, deadline.min(Instant::now() + share)) {
                Ok(()) if !server.is_single_socks() => {
                    server.mark_alive();
                    let step = Step { raw, addr, share, deadline };
                    return through_chain(fd, server, command, target, step);
                }
                Ok(()) => {
                    server.mark_alive();
                    let name = server.version.scheme();
                    let mut hs = ClientHandshake::new(
                        server.version,
                        command,
                        target,
                        server.identity.clone(),
                    )
                    .map_err(|e| {
                        log!(Level::Error, "{command} {target} via {addr} ({name}): {e}");
                        Cause::Unsupported
                    })?;
                    if server.pipeline {
                        hs = hs.pipelined();
                    }
                    return match exchange(fd, &mut hs, deadline) {
                        Ok(bound) => {
                            log!(Level::Info, "{command} {target} via {addr} ({name}): ok");
                            let bound = reachable(bound, addr);
                            Ok(Granted {
                                server: raw,
                                version: server.version,
                                bound,
                                route: server.id,
                            })
                        }
                        Err((cause, why)) => {
                            log!(Level::Error, "{command} {target} via {addr} ({name}): {why}");
                            Err(cause)
                        }
                    };
                }
                Err(cause) => {
                    log!(Level::Warn, "server {addr}: {}", describe(cause));
                    server.mark_failed();
                    // A first hop that used up its share leaves the rest to the next entry.
                    if cause == Cause::Timeout && Instant::now() >= deadline {
                        return Err(cause);
                    }
                }
            }
        }
    }
    if let Some(cause) = refused {
        return Err(cause);
    }
    log!(Level::Error, "{command} {target}: no SOCKS server reachable");
    Err(Cause::ServersDown)
}

/// The handshakes of a chain (or a lone HTTP proxy) on `fd`, connected to its first hop at
/// `addr`. A hop after the first that fails marks the chain failed, as a first hop that does
/// not answer does.
fn through_chain(
    fd: c_int,
    server: &Server,
    command: Command,
    target: &TargetAddr,
    step: Step,
) -> Result<Granted, Cause> {
    let Step { raw, addr, share, deadline } = step;
    let chain = server.chain_text();
    match chain::run(fd, server, command, target, share, deadline) {
        Ok(granted) => {
            log!(Level::Info, "{command} {target} via {chain}: ok");
            let bound = reachable(granted.bound, last_hop(server, addr));
            let version = granted.version.unwrap_or(server.version);
            Ok(Granted { server: raw, version, bound, route: server.id })
        }
        Err(failure) => {
            log!(Level::Error, "{command} {target} via {chain}: {}", failure.message);
            // An earlier hop could not reach the next one: the chain is down as a whole.
            if failure.hop + 1 < server.hop_count() {
                server.mark_failed();
            }
            Err(failure.cause)
        }
    }
}

/// A `?dynamic` chain on `fd`: its first hop connected, its hops run; a hop that is down is
/// left out and the rest tried again on the same socket (dissolved with `connect(AF_UNSPEC)`),
/// as long as a hop remains. A hop is down when it does not accept the connection, does not
/// answer, or fails its handshake; when a hop answers that it could not reach the next one
/// (a SOCKS failure reply, an HTTP error status), the next one is down. Err: every try failed,
/// and `fd` is disconnected again (the next entry of the list may use it).
fn dynamic_chain(
    fd: c_int,
    family: c_int,
    command: Command,
    target: &TargetAddr,
    server: &Server,
    deadline: Instant,
) -> Result<Granted, Cause> {
    let mut chain = server.clone();
    loop {
        let text = chain.chain_text();
        let share = chain.hop_share(deadline.saturating_duration_since(Instant::now()));
        let mut reached = None;
        let mut cause = Cause::ServersDown;
        for addr in chain.addrs.iter().filter_map(|a| for_family(*a, family)) {
            let raw = RawAddr::from_socket_addr(addr);
            match connect_socket(fd, &raw, deadline.min(Instant::now() + share)) {
                Ok(()) => {
                    reached = Some((raw, addr));
                    break;
                }
                Err(why) => {
                    log!(Level::Warn, "server {addr}: {}", describe(why));
                    cause = why;
                    real::disconnect(fd);
                }
            }
        }
        let down = match reached {
            None => 0,
            Some((raw, addr)) => match chain::run(fd, &chain, command, target, share, deadline) {
                Ok(granted) => {
                    log!(Level::Info, "{command} {target} via {text}: ok");
                    server.mark_alive();
                    let bound = reachable(granted.bound, last_hop(&chain, addr));
                    let version = granted.version.unwrap_or(chain.version);
                    return Ok(Granted { server: raw, version, bound, route: server.id });
                }
                Err(failure) => {
                    log!(Level::Warn, "{command} {target} via {text}: {}", failure.message);
                    cause = failure.cause;
                    let answered = matches!(failure.cause, Cause::Server(_));
                    failure.hop + usize::from(answered && failure.hop + 1 < chain.hop_count())
                }
            },
        };
        real::disconnect(fd);
        if Instant::now() >= deadline {
            log!(Level::Error, "{command} {target} via {text} (dynamic): out of time");
            return Err(Cause::Timeout);
        }
        let Some(rest) = chain.without_hop(down) else {
            let why = if chain.hop_count() == 1 {
                "no hop is left"
            } else {
                "the next hop is written as a name, which only the hop before it resolves"
            };
            log!(
                Level::Error,
                "{command} {target} via {text} (dynamic): hop {} is down and {why}",
                down + 1
            );
            server.mark_failed();
            return Err(cause);
        };
        log!(
            Level::Warn,
            "{command} {target} (dynamic): leaving out hop {} of {text}, trying {}",
            down + 1,
            rest.chain_text()
        );
        chain = rest;
    }
}

/// Where a chain's walk stands once its first hop accepted: that hop's address (raw and as a
/// `SocketAddr`), each hop's share of the time and the overall deadline.
struct Step {
    raw: RawAddr,
    addr: SocketAddr,
    share: Duration,
    deadline: Instant,
}

/// The address of a chain's last hop when it is written as one (a reply's 0.0.0.0 means that
/// host), else the first hop's `addr`.
fn last_hop(server: &Server, addr: SocketAddr) -> SocketAddr {
    match server.next.last().map(|hop| &hop.target) {
        Some(TargetAddr::Ip(last)) => *last,
        _ => addr,
    }
}

/// A cause in words, for the log.
pub(crate) fn describe(cause: Cause) -> std::io::Error {
    std::io::Error::from_raw_os_error(cause.errno())
}

/// The address a reply names, with 0.0.0.0 (SOCKS4's "the server's address") or a name (which
/// we cannot use) replaced by the server's address.
fn reachable(bound: TargetAddr, server: SocketAddr) -> SocketAddr {
    match bound {
        TargetAddr::Ip(sa) if !sa.ip().is_unspecified() => sa,
        other => SocketAddr::new(server.ip().to_canonical(), other.port()),
    }
}

/// Waits for the second reply of a BIND on `fd` and returns the connecting peer. A non-blocking
/// socket with nothing to read gets EAGAIN; a blocking one waits for the server (which bounds
/// the wait with its own BIND timeout), then reads the reply within `timeout`. The wait is a
/// blocking peek at the socket, which a signal ends as it ends the kernel's accept: the kernel
/// restarts it after a SA_RESTART handler and fails it with EINTR after another (and with
/// EAGAIN when SO_RCVTIMEO expires), where poll(2) would fail with EINTR either way.
pub fn second_reply(
    fd: c_int,
    version: ClientVersion,
    timeout: Duration,
) -> Result<SocketAddr, Cause> {
    let flags = status_flags(fd)?;
    if flags & libc::O_NONBLOCK != 0 {
        match real::poll_one(fd, libc::POLLIN, 0) {
            0 => return Err(Cause::Os(libc::EAGAIN)),
            n if n < 0 => return Err(os_error()),
            _ => {}
        }
    } else if real::recv_into(fd, &mut [0u8; 1], libc::MSG_PEEK) < 0 {
        return Err(os_error());
    }
    let mut hs = ClientHandshake::second_reply(version);
    let result =
        nonblocking_while(fd, flags, || Ok(exchange(fd, &mut hs, Instant::now() + timeout)))?;
    match result {
        Ok(TargetAddr::Ip(peer)) => Ok(peer),
        Ok(TargetAddr::Domain(..)) => Err(Cause::Protocol),
        Err((cause, why)) => {
            log!(Level::Error, "bind: second reply: {why}");
            Err(cause)
        }
    }
}

/// Milliseconds left until `deadline`, for poll(2); 0 once it passed.
fn remaining_ms(deadline: Instant) -> c_int {
    let left = deadline.saturating_duration_since(Instant::now());
    c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX)
}

/// Waits until `fd` has one of `events`, or the deadline passes.
pub(crate) fn wait_for(fd: c_int, events: i16, deadline: Instant) -> Result<(), Cause> {
    loop {
        let ms = remaining_ms(deadline);
        if ms == 0 {
            return Err(Cause::Timeout);
        }
        match real::poll_one(fd, events, ms) {
            0 => return Err(Cause::Timeout),
            n if n > 0 => return Ok(()),
            _ if real::errno() == libc::EINTR => continue,
            _ => return Err(os_error()),
        }
    }
}

/// A non-blocking connect to the server, completed within the deadline.
pub(crate) fn connect_socket(fd: c_int, server: &RawAddr, deadline: Instant) -> Result<(), Cause> {
    if real::connect_to(fd, server) == 0 {
        return Ok(());
    }
    // After a failed non-blocking connect whose error was read through SO_ERROR (the previous
    // server), Linux answers the next connect on that socket once with ECONNABORTED; the
    // connect after that is a fresh attempt.
    if real::errno() == libc::ECONNABORTED && real::connect_to(fd, server) == 0 {
        return Ok(());
    }
    match real::errno() {
        libc::EINPROGRESS | libc::EALREADY | libc::EINTR => {}
        errno => return Err(Cause::Os(errno)),
    }
    wait_for(fd, libc::POLLOUT, deadline)?;
    match real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
        Some(0) => Ok(()),
        Some(libc::ETIMEDOUT) => Err(Cause::Timeout),
        Some(errno) => Err(Cause::Os(errno)),
        None => Err(os_error()),
    }
}

/// Drives a handshake on a connected socket until its reply, reading no byte past it; returns
/// the reply's address.
pub(crate) fn exchange(
    fd: c_int,
    hs: &mut ClientHandshake,
    deadline: Instant,
) -> Result<TargetAddr, (Cause, String)> {
    let io = |cause: Cause| (cause, describe(cause).to_string());
    let mut buffer = [0u8; 512];
    loop {
        let output = hs.take_output();
        send_all(fd, &output, deadline).map_err(io)?;
        if !output.is_empty() {
            // The answer cannot be there yet: wait for it rather than try a read that fails.
            wait_for(fd, libc::POLLIN, deadline).map_err(io)?;
        }
        let want = hs.wanted().min(buffer.len());
        let n = recv_some(fd, &mut buffer[..want], deadline).map_err(io)?;
        if n == 0 {
            return Err((
                Cause::Os(libc::ECONNRESET),
                "server closed the connection during the handshake".into(),
            ));
        }
        match hs.feed(&buffer[..n]) {
            ClientStep::NeedMore => {}
            ClientStep::Granted { bound } => return Ok(bound),
            ClientStep::Failed(error) => {
                return Err((Cause::of_handshake(&error), error.to_string()))
            }
        }
    }
}

pub(crate) fn send_all(fd: c_int, mut bytes: &[u8], deadline: Instant) -> Result<(), Cause> {
    while !bytes.is_empty() {
        let n = real::send_bytes(fd, bytes, libc::MSG_NOSIGNAL);
        if n >= 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        match real::errno() {
            libc::EAGAIN | libc::EINTR => wait_for(fd, libc::POLLOUT, deadline)?,
            errno => return Err(Cause::Os(errno)),
        }
    }
    Ok(())
}

pub(crate) fn recv_some(fd: c_int, buffer: &mut [u8], deadline: Instant) -> Result<usize, Cause> {
    loop {
        let n = real::recv_into(fd, buffer, 0);
        if n >= 0 {
            return Ok(n as usize);
        }
        match real::errno() {
            libc::EAGAIN | libc::EINTR => wait_for(fd, libc::POLLIN, deadline)?,
            errno => return Err(Cause::Os(errno)),
        }
    }
}

/// CONNECT to `target` without touching the heap, for a connect made by a signal handler that
/// interrupted the library in this thread (the interrupted code may hold malloc's lock): the
/// first server of the walk `socks_client::order` gives, the handshake from
/// `socks_proto::fixed` (any version, names and credentials included), one attempt. Returns
/// the server address the socket is connected to and the entry's `Server::id`.
pub fn connect_without_heap(
    fd: c_int,
    target: Destination<'_>,
    servers: &[Server],
    timeout: Duration,
) -> Result<(RawAddr, usize), Cause> {
    let family =
        real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok_or_else(os_error)?;
    let flags = status_flags(fd)?;
    let deadline = Instant::now() + timeout;
    nonblocking_while(fd, flags, || {
        let server =
            order(servers, ticket(servers), Server::is_alive).next().ok_or(Cause::ServersDown)?;
        if !server.is_single_socks() {
            // A chain or an HTTP proxy needs the heap (its request, per-hop state): refused
            // here, never connected to its first hop alone.
            return Err(Cause::SignalContext);
        }
        let addr =
            server.addrs.iter().find_map(|a| for_family(*a, family)).ok_or(Cause::Unsupported)?;
        let raw = RawAddr::from_socket_addr(addr);
        let mut hs = FixedConnect::new(server.version, target, &server.identity)
            .map_err(|_| Cause::Unsupported)?;
        if let Err(cause) = connect_socket(fd, &raw, deadline) {
            server.mark_failed();
            return Err(if cause == Cause::Timeout { cause } else { Cause::ServersDown });
        }
        let mut buffer = [0u8; socks_proto::fixed::REPLY_MAX];
        loop {
            let output = hs.take_output();
            if !output.is_empty() {
                send_all(fd, &output, deadline)?;
                wait_for(fd, libc::POLLIN, deadline)?;
            }
            let want = hs.wanted().min(buffer.len());
            let n = recv_some(fd, &mut buffer[..want], deadline)?;
            if n == 0 {
                return Err(Cause::Os(libc::ECONNRESET));
            }
            match hs.feed(&buffer[..n]) {
                FixedStep::NeedMore => {}
                FixedStep::Granted { .. } => return Ok((raw, server.id)),
                FixedStep::Failed(error) => return Err(Cause::of_handshake(&error)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot SOCKS5 server on loopback: reads the greeting and a CONNECT request for an
    /// IPv4 address, replies with `reply`, then sends `after` (the relayed stream).
    fn one_shot_server(
        reply: Vec<u8>,
        after: &'static [u8],
    ) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        let addr = listener.local_addr().expect("bound");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("the client connects");
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).expect("greeting");
            assert_eq!(greeting, [5, 1, 0]);
            s.write_all(&[5, 0]).expect("selection");
            let mut request = [0u8; 10];
            s.read_exact(&mut request).expect("request");
            assert_eq!(request, [5, 1, 0, 1, 192, 0, 2, 7, 0, 80]);
            s.write_all(&reply).expect("reply");
            s.write_all(after).expect("relayed bytes");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        (addr, server)
    }

    #[test]
    fn a_plain_list_takes_no_spread_ticket() {
        let env = crate::config::Environment {
            server: Some("127.0.0.1:1080".into()),
            ..Default::default()
        };
        let settings = crate::config::load(&env);
        let crate::config::Mode::Everything { servers, .. } = &settings.mode else {
            panic!("SOCKS_SERVER alone proxies everything")
        };
        assert!(!servers[0].spread);
        assert_eq!(ticket(servers), 0, "no ticket (and no getpid) for a list without ?spread");
    }

    #[test]
    fn heap_free_connect_takes_the_longest_reply() {
        // BND.ADDR a 255-byte name: the longest SOCKS5 reply, 262 bytes.
        let mut reply = vec![5, 0, 0, 3, 255];
        reply.extend_from_slice(&[b'a'; 255]);
        reply.extend_from_slice(&[0, 80]);
        let (addr, server) = one_shot_server(reply, b"hello");
        let env =
            crate::config::Environment { server: Some(addr.to_string()), ..Default::default() };
        let settings = crate::config::load(&env);
        let crate::config::Mode::Everything { servers, .. } = &settings.mode else {
            panic!("SOCKS_SERVER alone proxies everything")
        };
        let fd = real::new_socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
        assert!(fd >= 0);
        let target: SocketAddr = "192.0.2.7:80".parse().expect("literal");
        let result =
            connect_without_heap(fd, Destination::Ip(target), servers, Duration::from_secs(5));
        assert_eq!(result.ok().and_then(|(raw, _)| raw.socket_addr()), Some(addr));
        let mut first = [0u8; 5];
        assert_eq!(real::recv_into(fd, &mut first, 0), 5, "the relayed stream follows the reply");
        assert_eq!(&first, b"hello", "not a byte of the reply is left, none of the stream taken");
        real::close_fd(fd);
        server.join().expect("server thread");
    }
}
