//! What the library does for each intercepted call, in safe Rust: the hooks in `hooks` convert
//! raw arguments and call these, and turn the outcome into a return value and errno.
//!
//! CONNECT: route the destination, then connect through a server on the program's socket.
//! BIND (the paper's Rbind/Rlisten/Rgetsockname/Raccept): a TCP socket bound to a wildcard or
//! own address with port 0, in a process with a proxied connection whose destination goes
//! through a server, becomes a SOCKS BIND naming that destination; `listen` is then a no-op,
//! `getsockname` reports where the server listens, and `accept` waits for the second reply and
//! returns the connection as a new descriptor.
//!
//! Not here: pointers, errno, panics (see `hooks`).

use std::net::SocketAddr;

use libc::c_int;

use socks_proto::TargetAddr;

use crate::config::{self, Server, Settings};
use crate::fakemap::NAME_MAX;
use crate::fdtable::{self, Entry, Kind};
use crate::log::{log, Level};
use crate::names;
use crate::proxy::{self, Command};
use crate::real;
use crate::route::{route, route_name, Route};
use crate::sockaddr::{canonical, for_family, RawAddr};

/// The result of handling a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not ours: make the real call with the original arguments.
    PassThrough,
    /// Handled successfully: return 0.
    Done,
    /// Handled, failed: return -1 with this errno.
    Fail(c_int),
}

fn is_stream(fd: c_int) -> bool {
    real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}

fn family_of(fd: c_int) -> Option<c_int> {
    real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

/// connect(2) of `fd` to `dst` as the program gave it; `nested` when it comes from a signal
/// handler that interrupted another connect of this thread (then no heap may be used).
pub fn connect(fd: c_int, dst: &RawAddr, nested: bool) -> Outcome {
    let Some(target) = dst.socket_addr() else { return Outcome::PassThrough };
    // The common case first, without a system call: an untracked socket to a destination that
    // goes direct whatever the socket's type.
    let settings = config::settings();
    let canonical_target = canonical(target);
    if fdtable::get(fd).is_none()
        && !names::is_fake(settings, canonical_target.ip())
        && matches!(route(settings, canonical_target), Route::Direct)
    {
        log!(Level::Debug, "connect {canonical_target}: direct");
        return Outcome::PassThrough;
    }
    if !is_stream(fd) {
        return if crate::udp::is_udp(fd) && nested {
            // Setting up a UDP association needs the heap (see `proxy::connect_without_heap`).
            Outcome::Fail(libc::ECONNREFUSED)
        } else if crate::udp::is_udp(fd) {
            crate::udp::connect(fd, dst)
        } else {
            Outcome::PassThrough
        };
    }
    match fdtable::get(fd).map(|e| e.kind) {
        // This very socket (the table checks) is connected through a server already: EISCONN,
        // as the kernel would say, without handing it the destination.
        Some(Kind::Connected) => return Outcome::Fail(libc::EISCONN),
        // Bound through a BIND after all, but used for an outbound connection: give the
        // program a plain socket again (the bind was to port 0, so nothing is lost).
        Some(Kind::Bound(_)) => {
            if let Err(errno) = replace_socket(fd, false) {
                return Outcome::Fail(errno);
            }
        }
        Some(Kind::Udp | Kind::UdpConnected) | None => {}
    }
    if nested && names::is_fake(settings, canonical_target.ip()) {
        // The name behind a fake address would need the heap (see `proxy::connect_without_heap`).
        return Outcome::Fail(libc::ECONNREFUSED);
    }
    let (target, route) = match destination(settings, canonical_target) {
        Ok(found) => found,
        Err(errno) => return Outcome::Fail(errno),
    };
    match route {
        Route::Direct if matches!(target, TargetAddr::Domain(..)) => {
            log!(
                Level::Error,
                "connect {target}: a name resolved for the proxy, but no sockd line covers it"
            );
            Outcome::Fail(libc::EHOSTUNREACH)
        }
        Route::Direct => {
            log!(Level::Debug, "connect {target}: direct");
            Outcome::PassThrough
        }
        Route::Deny => {
            log!(Level::Info, "connect {target}: denied by socks.conf");
            Outcome::Fail(libc::ECONNREFUSED)
        }
        Route::Broken => {
            log!(Level::Error, "connect {target}: refused, the configuration is broken");
            Outcome::Fail(libc::ECONNREFUSED)
        }
        Route::Proxy(servers) => {
            let result = match (nested, target) {
                (false, target) => {
                    proxy::request_through(fd, Command::Connect, &target, servers, settings.timeout)
                        .map(|granted| granted.server)
                }
                // A signal handler interrupted one of our connects: no heap from here.
                (true, TargetAddr::Ip(addr)) => {
                    proxy::connect_without_heap(fd, addr, servers, settings.timeout)
                }
                (true, TargetAddr::Domain(..)) => Err(libc::ECONNREFUSED),
            };
            match result {
                Ok(server) => {
                    let entry = Entry { kind: Kind::Connected, first: *dst, server };
                    fdtable::set(fd, &entry);
                    fdtable::remember_last_connected(&entry);
                    Outcome::Done
                }
                Err(errno) => Outcome::Fail(errno),
            }
        }
    }
}

/// What to ask the server for when the program named `addr`, and how to route it: the name
/// behind a fake address, else the address itself.
fn destination(settings: &Settings, addr: SocketAddr) -> Result<(TargetAddr, Route<'_>), c_int> {
    if !names::is_fake(settings, addr.ip()) {
        return Ok((TargetAddr::Ip(addr), route(settings, addr)));
    }
    let mut buf = [0u8; NAME_MAX];
    match names::name_of(settings, addr.ip(), &mut buf) {
        Some(name) => {
            let route = route_name(settings, name, addr);
            Ok((TargetAddr::Domain(name.to_string(), addr.port()), route))
        }
        None => {
            log!(Level::Error, "connect {addr}: a fake address this process tree never handed out (from before an exec?)");
            Err(libc::EHOSTUNREACH)
        }
    }
}

/// The address getpeername(2) should report for `fd` when the kernel reports `actual`: the
/// program's destination if `fd` is a socket we connected through that server, else `actual`
/// (and a stale entry is dropped).
pub fn peer_name(fd: c_int, actual: &RawAddr) -> RawAddr {
    match fdtable::get(fd) {
        Some(entry) if entry.server.bytes[..entry.server.len] == actual.bytes[..actual.len] => {
            match entry.kind {
                Kind::Connected | Kind::UdpConnected => entry.first,
                Kind::Bound(_) | Kind::Udp => *actual,
            }
        }
        Some(_) => {
            fdtable::clear(fd);
            *actual
        }
        None => *actual,
    }
}

/// connect(2) with AF_UNSPEC: a UDP socket connected to a proxied peer keeps its association
/// but no longer has a peer; a TCP socket connected through a server is disconnected (Linux
/// lets it connect again, and that connect must be routed afresh).
pub fn disconnecting(fd: c_int) {
    if let Some(entry) = fdtable::get(fd) {
        match entry.kind {
            Kind::UdpConnected => {
                fdtable::set(fd, &Entry { kind: Kind::Udp, first: entry.server, ..entry })
            }
            Kind::Connected => fdtable::clear(fd),
            Kind::Bound(_) | Kind::Udp => {}
        }
    }
}

/// bind(2): a BIND through the server of the last proxied connection, or the real bind.
pub fn bind(fd: c_int, local: &RawAddr) -> Outcome {
    let Some(local_addr) = local.socket_addr() else { return Outcome::PassThrough };
    let ip = canonical(local_addr).ip();
    if local_addr.port() != 0 || ip.is_loopback() || !is_stream(fd) {
        return Outcome::PassThrough;
    }
    let Some(last) = fdtable::last_connected() else { return Outcome::PassThrough };
    let Some(peer) = last.first.socket_addr().map(canonical) else { return Outcome::PassThrough };
    let settings = config::settings();
    let Ok((peer, Route::Proxy(servers))) = destination(settings, peer) else {
        return Outcome::PassThrough;
    };
    // The real bind first, so the program's own mistakes keep their own errors.
    if real::bind_to(fd, local) != 0 {
        return Outcome::Fail(real::errno());
    }
    let servers = preferred(servers, &last.server);
    let granted = match proxy::request_through(fd, Command::Bind, &peer, servers, settings.timeout)
    {
        Ok(granted) => granted,
        Err(errno) => return Outcome::Fail(errno),
    };
    let Some(family) = family_of(fd) else { return Outcome::Fail(real::errno()) };
    let Some(listening) = for_family(granted.bound, family) else {
        log!(
            Level::Error,
            "bind: the server listens on {}, which this socket cannot name",
            granted.bound
        );
        return Outcome::Fail(libc::EAFNOSUPPORT);
    };
    log!(Level::Info, "bind for {peer}: the server listens on {listening}");
    let entry = Entry {
        kind: Kind::Bound(granted.version),
        first: RawAddr::from_socket_addr(listening),
        server: granted.server,
    };
    fdtable::set(fd, &entry);
    Outcome::Done
}

/// The server the last connection went through, if it is in the list; else the whole list.
fn preferred<'a>(servers: &'a [Server], used: &RawAddr) -> &'a [Server] {
    let used = used.socket_addr().map(canonical);
    let position = servers.iter().position(|s| s.addrs.iter().any(|a| Some(canonical(*a)) == used));
    match position {
        Some(i) => &servers[i..=i],
        None => servers,
    }
}

/// listen(2): nothing to do for a socket bound through the server.
pub fn listen(fd: c_int) -> Outcome {
    match fdtable::get(fd) {
        Some(Entry { kind: Kind::Bound(_), .. }) => Outcome::Done,
        _ => Outcome::PassThrough,
    }
}

/// getsockname(2): for a socket bound through the server, where the server listens.
pub fn sock_name(fd: c_int) -> Option<RawAddr> {
    match fdtable::get(fd) {
        Some(Entry { kind: Kind::Bound(_), first, .. }) => Some(first),
        _ => None,
    }
}

/// accept(2)/accept4(2) on a socket bound through the server: the new descriptor and the
/// connecting peer. `Ok(None)`: not ours.
pub fn accept(fd: c_int, flags: c_int) -> Result<Option<(c_int, RawAddr)>, c_int> {
    let Some(entry) = fdtable::get(fd) else { return Ok(None) };
    let Kind::Bound(version) = entry.kind else { return Ok(None) };
    let family = family_of(fd).ok_or_else(real::errno)?;
    let peer = match proxy::second_reply(fd, version, config::settings().timeout) {
        Ok(peer) => peer,
        Err(errno @ (libc::EAGAIN | libc::EINTR)) => return Err(errno),
        Err(_) => return Err(libc::ECONNABORTED),
    };
    let peer = for_family(peer, family).unwrap_or(peer);
    let dup_cmd =
        if flags & libc::SOCK_CLOEXEC != 0 { libc::F_DUPFD_CLOEXEC } else { libc::F_DUPFD };
    let accepted = real::fcntl_int(fd, dup_cmd, 0);
    if accepted < 0 {
        return Err(real::errno());
    }
    // One accept per BIND: the listening descriptor becomes a quiet listener of its own, so
    // the program can keep it, poll it and close it as it likes.
    if let Err(errno) = replace_socket(fd, true) {
        real::close_fd(accepted);
        return Err(errno);
    }
    let status = real::fcntl_int(accepted, libc::F_GETFL, 0);
    let nonblocking = if flags & libc::SOCK_NONBLOCK != 0 { libc::O_NONBLOCK } else { 0 };
    real::fcntl_int(accepted, libc::F_SETFL, (status & !libc::O_NONBLOCK) | nonblocking);
    let peer_raw = RawAddr::from_socket_addr(peer);
    fdtable::set(accepted, &Entry { kind: Kind::Connected, first: peer_raw, server: entry.server });
    log!(Level::Info, "accept: connection from {peer}");
    Ok(Some((accepted, peer_raw)))
}

/// Puts a fresh TCP socket of the same family in `fd`'s place, keeping its close-on-exec and
/// non-blocking flags; a listening one (bound to loopback, port 0) when `listening`.
fn replace_socket(fd: c_int, listening: bool) -> Result<(), c_int> {
    let family = family_of(fd).ok_or_else(real::errno)?;
    let status = real::fcntl_int(fd, libc::F_GETFL, 0);
    let descriptor_flags = real::fcntl_int(fd, libc::F_GETFD, 0);
    if status < 0 || descriptor_flags < 0 {
        return Err(real::errno());
    }
    let fresh = real::new_socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
    if fresh < 0 {
        return Err(real::errno());
    }
    let prepared = if listening {
        let loopback: SocketAddr = if family == libc::AF_INET6 {
            SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 0))
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        real::bind_to(fresh, &RawAddr::from_socket_addr(loopback)) == 0
            && real::listen_on(fresh, 1) == 0
    } else {
        true
    };
    let cloexec = if descriptor_flags & libc::FD_CLOEXEC != 0 { libc::O_CLOEXEC } else { 0 };
    if !prepared || real::dup3_fd(fresh, fd, cloexec) < 0 {
        let errno = real::errno();
        real::close_fd(fresh);
        return Err(errno);
    }
    real::close_fd(fresh);
    real::fcntl_int(fd, libc::F_SETFL, status & libc::O_NONBLOCK);
    fdtable::clear(fd);
    Ok(())
}
