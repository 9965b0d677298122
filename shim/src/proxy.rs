//! Connecting a program's own socket through a SOCKS server: connect it to the first server
//! that answers (in the socket's family, IPv4 servers as IPv4-mapped for IPv6 sockets), run the
//! client handshake from socks-proto over it, and report the result as the errno the program
//! would have got from the destination. Blocking and non-blocking sockets alike finish within
//! the configured timeout; the socket's flags are restored before returning.
//!
//! Not here: deciding whether to proxy (`route`) or the C-level hook (`hooks`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libc::c_int;
use socks_proto::client::{ClientError, ClientHandshake, ClientStep, ClientVersion};
use socks_proto::server::Command;
use socks_proto::{Failure, ProtoError, TargetAddr};

use crate::config::Server;
use crate::log::{log, Level};
use crate::real;
use crate::sockaddr::{for_family, RawAddr};

/// Connects `fd` to `target` through the first usable server in `servers`; on success returns
/// the server address the socket is now connected to. `Err` is an errno.
pub fn connect_through(
    fd: c_int,
    target: SocketAddr,
    servers: &[Server],
    timeout: Duration,
) -> Result<RawAddr, c_int> {
    let family =
        real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok_or_else(real::errno)?;
    let flags = real::fcntl_int(fd, libc::F_GETFL, 0);
    if flags < 0 {
        return Err(real::errno());
    }
    let was_blocking = flags & libc::O_NONBLOCK == 0;
    if was_blocking && real::fcntl_int(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
        return Err(real::errno());
    }
    let deadline = Instant::now() + timeout;
    let result = try_servers(fd, family, target, servers, deadline);
    if was_blocking {
        real::fcntl_int(fd, libc::F_SETFL, flags);
    }
    result
}

fn try_servers(
    fd: c_int,
    family: c_int,
    target: SocketAddr,
    servers: &[Server],
    deadline: Instant,
) -> Result<RawAddr, c_int> {
    let mut last_error = libc::ECONNREFUSED;
    let any_alive = servers.iter().any(Server::is_alive);
    for server in servers.iter().filter(|s| !any_alive || s.is_alive()) {
        for addr in &server.addrs {
            let Some(addr) = for_family(*addr, family) else { continue };
            let raw = RawAddr::from_socket_addr(addr);
            match connect_socket(fd, &raw, deadline) {
                Ok(()) => {
                    server.mark_alive();
                    return match handshake(fd, server.version, &server.identity, target, deadline) {
                        Ok(()) => {
                            log!(
                                Level::Info,
                                "connect {target} via {addr} ({}): ok",
                                version_name(server.version)
                            );
                            Ok(raw)
                        }
                        Err((errno, why)) => {
                            log!(
                                Level::Error,
                                "connect {target} via {addr} ({}): {why}",
                                version_name(server.version)
                            );
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
    log!(Level::Error, "connect {target}: no SOCKS server reachable");
    Err(last_error)
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

/// Runs the client handshake on a connected socket, reading no byte past the final reply.
fn handshake(
    fd: c_int,
    version: ClientVersion,
    identity: &socks_proto::client::Identity,
    target: SocketAddr,
    deadline: Instant,
) -> Result<(), (c_int, String)> {
    let mut hs =
        ClientHandshake::new(version, Command::Connect, &TargetAddr::Ip(target), identity.clone())
            .map_err(|e| (libc::EAFNOSUPPORT, e.to_string()))?;
    let io = |errno: c_int| (errno, std::io::Error::from_raw_os_error(errno).to_string());
    let mut buffer = [0u8; 512];
    loop {
        send_all(fd, &hs.take_output(), deadline).map_err(io)?;
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
            ClientStep::Granted { .. } => return Ok(()),
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
