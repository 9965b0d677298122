//! Running a SOCKS request on a program's own socket: connect it to the first server that
//! answers (in the socket's family, IPv4 servers as IPv4-mapped for IPv6 sockets), run the client
//! handshake from socks-proto over it (CONNECT, or BIND and later its second reply), and report a
//! failure as the errno the program would have got from the destination. Blocking and
//! non-blocking sockets alike finish within the configured timeout; the socket's flags are
//! restored before returning.
//!
//! Not here: deciding whether to proxy (`route`) or the C-level hook (`hooks`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libc::c_int;
use socks_proto::client::{ClientError, ClientHandshake, ClientStep, ClientVersion};
pub use socks_proto::server::Command;
use socks_proto::{Failure, ProtoError, TargetAddr};

use crate::config::Server;
use crate::log::{log, Level};
use crate::real;
use crate::sockaddr::{for_family, RawAddr};

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
}

/// Runs `command` for `target` (an address, or a name the server resolves) through the first
/// usable server in `servers`. `Err` is an errno.
pub fn request_through(
    fd: c_int,
    command: Command,
    target: &TargetAddr,
    servers: &[Server],
    timeout: Duration,
) -> Result<Granted, c_int> {
    let family =
        real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok_or_else(real::errno)?;
    let flags = status_flags(fd)?;
    let deadline = Instant::now() + timeout;
    nonblocking_while(fd, flags, || try_servers(fd, family, command, target, servers, deadline))
}

/// The file status flags of `fd` (F_GETFL).
fn status_flags(fd: c_int) -> Result<c_int, c_int> {
    match real::fcntl_int(fd, libc::F_GETFL, 0) {
        flags if flags >= 0 => Ok(flags),
        _ => Err(real::errno()),
    }
}

/// Runs `work` with `fd` non-blocking (so every wait is bounded by our deadlines), then puts
/// back the program's `flags`.
fn nonblocking_while<T>(
    fd: c_int,
    flags: c_int,
    work: impl FnOnce() -> Result<T, c_int>,
) -> Result<T, c_int> {
    let was_blocking = flags & libc::O_NONBLOCK == 0;
    if was_blocking && real::fcntl_int(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
        return Err(real::errno());
    }
    let result = work();
    if was_blocking {
        real::fcntl_int(fd, libc::F_SETFL, flags);
    }
    result
}

fn try_servers(
    fd: c_int,
    family: c_int,
    command: Command,
    target: &TargetAddr,
    servers: &[Server],
    deadline: Instant,
) -> Result<Granted, c_int> {
    let mut last_error = libc::ECONNREFUSED;
    let any_alive = servers.iter().any(Server::is_alive);
    for server in servers.iter().filter(|s| !any_alive || s.is_alive()) {
        for addr in &server.addrs {
            let Some(addr) = for_family(*addr, family) else { continue };
            let raw = RawAddr::from_socket_addr(addr);
            match connect_socket(fd, &raw, deadline) {
                Ok(()) => {
                    server.mark_alive();
                    let name = version_name(server.version);
                    let mut hs = ClientHandshake::new(
                        server.version,
                        command,
                        target,
                        server.identity.clone(),
                    )
                    .map_err(|e| {
                        log!(Level::Error, "{command} {target} via {addr} ({name}): {e}");
                        libc::EAFNOSUPPORT
                    })?;
                    if server.pipeline {
                        hs = hs.pipelined();
                    }
                    return match exchange(fd, &mut hs, deadline) {
                        Ok(bound) => {
                            log!(Level::Info, "{command} {target} via {addr} ({name}): ok");
                            let bound = reachable(bound, addr);
                            Ok(Granted { server: raw, version: server.version, bound })
                        }
                        Err((errno, why)) => {
                            log!(Level::Error, "{command} {target} via {addr} ({name}): {why}");
                            Err(errno)
                        }
                    };
                }
                Err(errno) => {
                    log!(
                        Level::Warn,
                        "server {addr}: {}",
                        std::io::Error::from_raw_os_error(errno)
                    );
                    server.mark_failed();
                    last_error = errno;
                    if errno == libc::ETIMEDOUT {
                        return Err(errno);
                    }
                }
            }
        }
    }
    log!(Level::Error, "{command} {target}: no SOCKS server reachable");
    Err(last_error)
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
/// the wait with its own BIND timeout), then reads the reply within `timeout`.
pub fn second_reply(
    fd: c_int,
    version: ClientVersion,
    timeout: Duration,
) -> Result<SocketAddr, c_int> {
    let flags = status_flags(fd)?;
    if flags & libc::O_NONBLOCK != 0 {
        match real::poll_one(fd, libc::POLLIN, 0) {
            0 => return Err(libc::EAGAIN),
            n if n < 0 => return Err(real::errno()),
            _ => {}
        }
    } else if real::poll_one(fd, libc::POLLIN, -1) < 0 {
        return Err(real::errno());
    }
    let mut hs = ClientHandshake::second_reply(version);
    let result =
        nonblocking_while(fd, flags, || Ok(exchange(fd, &mut hs, Instant::now() + timeout)))?;
    match result {
        Ok(TargetAddr::Ip(peer)) => Ok(peer),
        Ok(TargetAddr::Domain(..)) => Err(libc::EPROTO),
        Err((errno, why)) => {
            log!(Level::Error, "bind: second reply: {why}");
            Err(errno)
        }
    }
}

fn version_name(version: ClientVersion) -> &'static str {
    match version {
        ClientVersion::Socks4 => "socks4",
        ClientVersion::Socks4a => "socks4a",
        ClientVersion::Socks5 => "socks5",
    }
}

/// Milliseconds left until `deadline`, for poll(2); 0 once it passed.
fn remaining_ms(deadline: Instant) -> c_int {
    let left = deadline.saturating_duration_since(Instant::now());
    c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX)
}

/// Waits until `fd` has one of `events`, or the deadline passes (ETIMEDOUT).
fn wait_for(fd: c_int, events: i16, deadline: Instant) -> Result<(), c_int> {
    loop {
        let ms = remaining_ms(deadline);
        if ms == 0 {
            return Err(libc::ETIMEDOUT);
        }
        match real::poll_one(fd, events, ms) {
            0 => return Err(libc::ETIMEDOUT),
            n if n > 0 => return Ok(()),
            _ if real::errno() == libc::EINTR => continue,
            _ => return Err(real::errno()),
        }
    }
}

/// A non-blocking connect to the server, completed within the deadline.
fn connect_socket(fd: c_int, server: &RawAddr, deadline: Instant) -> Result<(), c_int> {
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
        errno => return Err(errno),
    }
    wait_for(fd, libc::POLLOUT, deadline)?;
    match real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
        Some(0) => Ok(()),
        Some(errno) => Err(errno),
        None => Err(real::errno()),
    }
}

/// Drives a handshake on a connected socket until its reply, reading no byte past it; returns
/// the reply's address.
fn exchange(
    fd: c_int,
    hs: &mut ClientHandshake,
    deadline: Instant,
) -> Result<TargetAddr, (c_int, String)> {
    let io = |errno: c_int| (errno, std::io::Error::from_raw_os_error(errno).to_string());
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
                libc::ECONNRESET,
                "server closed the connection during the handshake".into(),
            ));
        }
        match hs.feed(&buffer[..n]) {
            ClientStep::NeedMore => {}
            ClientStep::Granted { bound } => return Ok(bound),
            ClientStep::Failed(error) => return Err((errno_for(&error), error.to_string())),
        }
    }
}

fn send_all(fd: c_int, mut bytes: &[u8], deadline: Instant) -> Result<(), c_int> {
    while !bytes.is_empty() {
        let n = real::send_bytes(fd, bytes, libc::MSG_NOSIGNAL);
        if n >= 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        match real::errno() {
            libc::EAGAIN | libc::EINTR => wait_for(fd, libc::POLLOUT, deadline)?,
            errno => return Err(errno),
        }
    }
    Ok(())
}

fn recv_some(fd: c_int, buffer: &mut [u8], deadline: Instant) -> Result<usize, c_int> {
    loop {
        let n = real::recv_into(fd, buffer, 0);
        if n >= 0 {
            return Ok(n as usize);
        }
        match real::errno() {
            libc::EAGAIN | libc::EINTR => wait_for(fd, libc::POLLIN, deadline)?,
            errno => return Err(errno),
        }
    }
}

/// The errno a program would have seen had it reached the destination itself.
pub fn errno_for(error: &ClientError) -> c_int {
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

/// CONNECT to a numeric `target` without touching the heap, for a connect made by a signal
/// handler that interrupted one of ours (the interrupted code may hold malloc's lock). Only the
/// forms that need no allocation: SOCKS5 without credentials, or SOCKS4/4a with an IPv4
/// target; anything else is refused (ECONNREFUSED) rather than sent direct.
pub fn connect_without_heap(
    fd: c_int,
    target: SocketAddr,
    servers: &[Server],
    timeout: Duration,
) -> Result<RawAddr, c_int> {
    let family =
        real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok_or_else(real::errno)?;
    let flags = status_flags(fd)?;
    let deadline = Instant::now() + timeout;
    nonblocking_while(fd, flags, || {
        let server = servers
            .iter()
            .find(|s| s.identity.credentials.is_none() && s.is_alive())
            .ok_or(libc::ECONNREFUSED)?;
        let addr =
            server.addrs.iter().find_map(|a| for_family(*a, family)).ok_or(libc::ECONNREFUSED)?;
        let raw = RawAddr::from_socket_addr(addr);
        connect_socket(fd, &raw, deadline)?;
        let mut request = [0u8; 3 + 4 + 16 + 2];
        match (server.version, target) {
            (ClientVersion::Socks5, _) => {
                request[..3].copy_from_slice(&[5, 1, 0]);
                send_all(fd, &request[..3], deadline)?;
                let mut selection = [0u8; 2];
                recv_exact(fd, &mut selection, deadline)?;
                if selection != [5, 0] {
                    return Err(libc::ECONNREFUSED);
                }
                let len = match target {
                    SocketAddr::V4(v4) => {
                        request[..4].copy_from_slice(&[5, 1, 0, 1]);
                        request[4..8].copy_from_slice(&v4.ip().octets());
                        request[8..10].copy_from_slice(&v4.port().to_be_bytes());
                        10
                    }
                    SocketAddr::V6(v6) => {
                        request[..4].copy_from_slice(&[5, 1, 0, 4]);
                        request[4..20].copy_from_slice(&v6.ip().octets());
                        request[20..22].copy_from_slice(&v6.port().to_be_bytes());
                        22
                    }
                };
                send_all(fd, &request[..len], deadline)?;
                let mut reply = [0u8; 4 + 255 + 2];
                recv_exact(fd, &mut reply[..5], deadline)?;
                let rest = match reply[3] {
                    1 => 4 + 2 - 1,
                    4 => 16 + 2 - 1,
                    3 => usize::from(reply[4]) + 2,
                    _ => return Err(libc::EPROTO),
                };
                recv_exact(fd, &mut reply[5..5 + rest], deadline)?;
                match Failure::from_socks5_code(reply[1]) {
                    None if reply[0] == 5 => Ok(raw),
                    None => Err(libc::EPROTO),
                    Some(failure) => Err(errno_for(&ClientError::Refused(failure))),
                }
            }
            (_, SocketAddr::V4(v4)) => {
                request[..2].copy_from_slice(&[4, 1]);
                request[2..4].copy_from_slice(&v4.port().to_be_bytes());
                request[4..8].copy_from_slice(&v4.ip().octets());
                request[8] = 0;
                send_all(fd, &request[..9], deadline)?;
                let mut reply = [0u8; 8];
                recv_exact(fd, &mut reply, deadline)?;
                if reply[1] == 90 {
                    Ok(raw)
                } else {
                    Err(libc::ECONNREFUSED)
                }
            }
            (_, SocketAddr::V6(_)) => Err(libc::EAFNOSUPPORT),
        }
    })
}

/// Reads exactly `buffer.len()` bytes (a handshake message whose length is known).
fn recv_exact(fd: c_int, buffer: &mut [u8], deadline: Instant) -> Result<(), c_int> {
    let mut got = 0;
    while got < buffer.len() {
        wait_for(fd, libc::POLLIN, deadline)?;
        match recv_some(fd, &mut buffer[got..], deadline)? {
            0 => return Err(libc::ECONNRESET),
            n => got += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_for(&ClientError::Refused(Failure::Refused)), libc::ECONNREFUSED);
        assert_eq!(errno_for(&ClientError::Refused(Failure::NotAllowed)), libc::ECONNREFUSED);
        assert_eq!(errno_for(&ClientError::Refused(Failure::HostUnreachable)), libc::EHOSTUNREACH);
        assert_eq!(
            errno_for(&ClientError::Refused(Failure::NetworkUnreachable)),
            libc::ENETUNREACH
        );
        assert_eq!(errno_for(&ClientError::Refused(Failure::TtlExpired)), libc::ETIMEDOUT);
        assert_eq!(errno_for(&ClientError::AuthRejected), libc::EACCES);
        assert_eq!(errno_for(&ClientError::Protocol(ProtoError::BadReplyVersion(4))), libc::EPROTO);
    }
}
