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
//! Not here: pointers and panics (see `hooks`), errnos (see `outcome`).

use std::net::SocketAddr;

use libc::c_int;

use socks_proto::fixed::Destination;
use socks_proto::TargetAddr;

use crate::config::{self, Server, Settings};
use crate::fdtable::{self, Entry, Kind};
use crate::ffi::fakemap::NAME_MAX;
use crate::ffi::real;
use crate::ffi::sockaddr::{canonical, for_family, RawAddr};
use crate::log::{log, Level};
use crate::names;
use crate::outcome::{Cause, Outcome};
use crate::proxy::{self, Command};
use crate::route::{route, route_name, Route};

fn is_stream(fd: c_int) -> bool {
    real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}

fn family_of(fd: c_int) -> Option<c_int> {
    real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
}

fn os_error() -> Cause {
    Cause::Os(real::errno())
}

/// A connect (or TCP Fast Open send) to `dst` that arrives while this thread is inside the
/// library reading its settings for the first time (`Guard::enter_connect` gives no guard):
/// it comes from a signal handler that interrupted that read, or from a name-service module
/// the read runs (those reach their daemons over local sockets). There are no rules yet to
/// route by, so an IP destination fails closed, never direct; any other goes on.
pub fn connect_while_loading(dst: Option<&RawAddr>) -> Outcome {
    if dst.is_some_and(|d| d.socket_addr().is_some()) {
        Outcome::Fail(Cause::SignalContext)
    } else {
        Outcome::PassThrough
    }
}

/// connect(2) of `fd` to `dst` as the program gave it; `nested` when it comes from a signal
/// handler that interrupted the library in this thread (then no heap may be used).
pub fn connect(fd: c_int, dst: &RawAddr, nested: bool) -> Outcome {
    let Some(target) = dst.socket_addr() else { return Outcome::PassThrough };
    // A UDP socket to a name server's port 53: the library reads its queries (`dnswire`).
    if target.port() == crate::dnswire::DNS_PORT {
        if let Some(outcome) = crate::dnswire::connect(fd, dst, nested) {
            return outcome;
        }
    }
    // The common case first, without a system call: an untracked socket to a destination that
    // goes direct whatever the socket's type.
    let settings = config::settings();
    let canonical_target = canonical(target);
    let mut tracked = fdtable::get(fd).map(|e| e.kind);
    if tracked == Some(Kind::DnsTcp) {
        // Marked by its connect to a name server (`dnswire`), which did not happen or is done:
        // this connect decides afresh.
        tracked = None;
        if target.port() != crate::dnswire::DNS_PORT {
            fdtable::clear(fd);
        }
    }
    if tracked.is_none()
        && !names::is_fake(settings, canonical_target.ip())
        && matches!(route(settings, canonical_target), Route::Direct)
    {
        log!(Level::Debug, "connect {canonical_target}: direct");
        return Outcome::PassThrough;
    }
    match real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
        Some(libc::SOCK_STREAM) => {}
        // Setting up a UDP association needs the heap.
        Some(libc::SOCK_DGRAM) if nested => return Outcome::Fail(Cause::SignalContext),
        Some(libc::SOCK_DGRAM) => return crate::udp::connect(fd, dst),
        _ => return Outcome::PassThrough,
    }
    match tracked {
        // This very socket (the table checks) is connected through a server already: EISCONN,
        // as the kernel would say, without handing it the destination.
        Some(Kind::Connected) => return Outcome::Fail(Cause::Os(libc::EISCONN)),
        // Bound through a BIND after all, but used for an outbound connection: give the
        // program a plain socket again (the bind was to port 0, so nothing is lost).
        Some(Kind::Bound(_)) => {
            if let Err(cause) = replace_socket(fd, false) {
                return Outcome::Fail(cause);
            }
        }
        Some(Kind::Udp | Kind::UdpConnected | Kind::Dns | Kind::DnsConnected | Kind::DnsTcp)
        | None => {}
    }
    // The name behind a fake address, read into this stack buffer (no heap).
    let mut name_buf = [0u8; NAME_MAX];
    let (target, route) = match destination(settings, canonical_target, &mut name_buf) {
        Ok(found) => found,
        Err(cause) => return Outcome::Fail(cause),
    };
    match route {
        Route::Direct if matches!(target, Destination::Name(..)) => {
            log!(
                Level::Error,
                "connect {}: a name resolved for the proxy, but no sockd line covers it",
                Shown(target)
            );
            Outcome::Fail(Cause::NoRoute)
        }
        Route::Direct => {
            log!(Level::Debug, "connect {}: direct", Shown(target));
            Outcome::PassThrough
        }
        Route::Deny => {
            log!(Level::Info, "connect {}: denied by socks.conf", Shown(target));
            Outcome::Fail(Cause::Denied)
        }
        Route::Broken => {
            log!(Level::Error, "connect {}: refused, the configuration is broken", Shown(target));
            Outcome::Fail(Cause::BrokenConfig)
        }
        Route::Proxy(servers) => {
            let result = if nested {
                // A signal handler interrupted the library: no heap from here.
                proxy::connect_without_heap(fd, target, servers, settings.timeout)
            } else {
                proxy::request_through(
                    fd,
                    Command::Connect,
                    &owned(target),
                    servers,
                    settings.timeout,
                )
                .map(|granted| (granted.server, granted.route))
            };
            match result {
                Ok((server, route)) => {
                    let entry = Entry { kind: Kind::Connected, first: *dst, server };
                    fdtable::set(fd, &entry);
                    fdtable::remember_last_connected(&entry, route);
                    Outcome::Done
                }
                Err(cause) => Outcome::Fail(cause),
            }
        }
    }
}

/// A destination for the log, without allocating.
struct Shown<'a>(Destination<'a>);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Destination::Ip(addr) => write!(f, "{addr}"),
            Destination::Name(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// The destination as the allocating handshake takes it.
fn owned(target: Destination<'_>) -> TargetAddr {
    match target {
        Destination::Ip(addr) => TargetAddr::Ip(addr),
        Destination::Name(name, port) => TargetAddr::Domain(name.to_string(), port),
    }
}

/// What to ask the server for when the program named `addr`, and how to route it: the name
/// behind a fake address (read into `buf`), else the address itself. Allocates nothing.
pub(crate) fn destination<'a, 's>(
    settings: &'s Settings,
    addr: SocketAddr,
    buf: &'a mut [u8; NAME_MAX],
) -> Result<(Destination<'a>, Route<'s>), Cause> {
    if !names::is_fake(settings, addr.ip()) {
        return Ok((Destination::Ip(addr), route(settings, addr)));
    }
    match names::name_of(settings, addr.ip(), buf) {
        Some(name) => {
            let route = route_name(settings, name, addr);
            Ok((Destination::Name(name, addr.port()), route))
        }
        None => {
            log!(Level::Error, "connect {addr}: a fake address never handed out in this map (another user's, a private map's, or from before the map was reset?)");
            Err(Cause::FakeUnknown)
        }
    }
}

/// The address getpeername(2) should report for `fd` when the kernel reports `actual`: the
/// program's destination if `fd` is a socket we connected through that server, else `actual`
/// (and a stale entry is dropped).
pub fn peer_name(fd: c_int, actual: &RawAddr) -> RawAddr {
    match fdtable::get(fd) {
        // Connected to the library's listener (`dnstcp`): the name server it stands for; else
        // connected directly to a name server, the kernel's peer is the right one.
        Some(entry) if entry.kind == Kind::DnsTcp && crate::dnstcp::end_of(fd).is_some() => {
            entry.first
        }
        Some(entry) if entry.kind == Kind::DnsTcp => *actual,
        Some(entry) if entry.server.bytes[..entry.server.len] == actual.bytes[..actual.len] => {
            match entry.kind {
                Kind::Connected | Kind::UdpConnected | Kind::DnsConnected => entry.first,
                Kind::Bound(_) | Kind::Udp | Kind::Dns | Kind::DnsTcp => *actual,
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
/// but no longer has a peer (a virtually connected DNS socket no longer has its virtual one); a TCP socket connected through a server is disconnected (Linux
/// lets it connect again, and that connect must be routed afresh).
pub fn disconnecting(fd: c_int) {
    if let Some(entry) = fdtable::get(fd) {
        match entry.kind {
            Kind::UdpConnected => {
                fdtable::set(fd, &Entry { kind: Kind::Udp, first: entry.server, ..entry })
            }
            // The virtual peer goes; answers already in the socket still name their server.
            Kind::DnsConnected => fdtable::set(fd, &Entry { kind: Kind::Dns, ..entry }),
            Kind::Connected => fdtable::clear(fd),
            Kind::DnsTcp => {
                crate::dnstcp::release(fd);
                fdtable::clear(fd);
            }
            // Stored again without the socket's own address (`dnswire`): a disconnect frees a
            // port that was not bound explicitly, so the address may change.
            Kind::Dns => fdtable::set(fd, &entry),
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
    let Some((last, route)) = fdtable::last_connected() else { return Outcome::PassThrough };
    let Some(peer) = last.first.socket_addr().map(canonical) else { return Outcome::PassThrough };
    let settings = config::settings();
    let mut name_buf = [0u8; NAME_MAX];
    let Ok((peer, Route::Proxy(servers))) = destination(settings, peer, &mut name_buf) else {
        return Outcome::PassThrough;
    };
    let peer = owned(peer);
    if !fdtable::trackable(fd) {
        return Outcome::Fail(Cause::TableFull);
    }
    // The real bind first, so the program's own mistakes keep their own errors.
    if real::bind_to(fd, local) != 0 {
        return Outcome::Fail(os_error());
    }
    let servers = preferred(servers, route, &last.server);
    let granted = match proxy::request_through(fd, Command::Bind, &peer, servers, settings.timeout)
    {
        Ok(granted) => granted,
        Err(cause) => return Outcome::Fail(cause),
    };
    let Some(family) = family_of(fd) else { return Outcome::Fail(os_error()) };
    let Some(listening) = for_family(granted.bound, family) else {
        log!(
            Level::Error,
            "bind: the server listens on {}, which this socket cannot name",
            granted.bound
        );
        return Outcome::Fail(Cause::Unsupported);
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

/// The `@=` entry the last connection went through (`route`, its `Server::id`: two chains may
/// share a first hop, so the first hop alone does not say which), if it is in the list; else
/// the first entry whose first hop is the server it went through (a BIND routed by another
/// rule than the connection); else the whole list.
fn preferred<'a>(servers: &'a [Server], route: usize, used: &RawAddr) -> &'a [Server] {
    let used = used.socket_addr().map(canonical);
    let position = servers.iter().position(|s| s.id == route).or_else(|| {
        servers.iter().position(|s| s.addrs.iter().any(|a| Some(canonical(*a)) == used))
    });
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
pub fn accept(fd: c_int, flags: c_int) -> Result<Option<(c_int, RawAddr)>, Cause> {
    let Some(entry) = fdtable::get(fd) else { return Ok(None) };
    let Kind::Bound(version) = entry.kind else { return Ok(None) };
    let family = family_of(fd).ok_or_else(os_error)?;
    let peer = match proxy::second_reply(fd, version, config::settings().timeout) {
        Ok(peer) => peer,
        Err(cause @ Cause::Os(libc::EAGAIN | libc::EINTR)) => return Err(cause),
        // The inbound connection the BIND waited for is not coming.
        Err(_) => return Err(Cause::Os(libc::ECONNABORTED)),
    };
    let peer = for_family(peer, family).unwrap_or(peer);
    let dup_cmd =
        if flags & libc::SOCK_CLOEXEC != 0 { libc::F_DUPFD_CLOEXEC } else { libc::F_DUPFD };
    let accepted = real::fcntl_int(fd, dup_cmd, 0);
    if accepted < 0 {
        return Err(os_error());
    }
    // One accept per BIND: the listening descriptor becomes a quiet listener of its own, so
    // the program can keep it, poll it and close it as it likes.
    if let Err(cause) = replace_socket(fd, true) {
        real::close_fd(accepted);
        return Err(cause);
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
fn replace_socket(fd: c_int, listening: bool) -> Result<(), Cause> {
    let family = family_of(fd).ok_or_else(os_error)?;
    let status = real::fcntl_int(fd, libc::F_GETFL, 0);
    let descriptor_flags = real::fcntl_int(fd, libc::F_GETFD, 0);
    if status < 0 || descriptor_flags < 0 {
        return Err(os_error());
    }
    let fresh = real::new_socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
    if fresh < 0 {
        return Err(os_error());
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
        let cause = os_error();
        real::close_fd(fresh);
        return Err(cause);
    }
    real::close_fd(fresh);
    real::fcntl_int(fd, libc::F_SETFL, status & libc::O_NONBLOCK);
    fdtable::clear(fd);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use socks_client::Mode;

    #[test]
    fn bind_goes_through_the_entry_that_carried_the_connection() {
        let settings = config::settings_with(
            "sockd @=socks5://192.0.2.1:1080>socks5://198.51.100.2:1081,\
             socks5://192.0.2.1:1080>socks5://198.51.100.2:1082 0.0.0.0/0\n",
        );
        let Mode::Rules { servers, .. } = &settings.mode else { panic!("{:?}", settings.mode) };
        let list = &servers[0];
        let fw = RawAddr::from_socket_addr("192.0.2.1:1080".parse().expect("literal"));
        // Both chains start at the firewall: the second carried the connection.
        let chosen = preferred(list, list[1].id, &fw);
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].id, list[1].id, "the second chain, not the first with that hop");
        // An entry of another rule: the first hop decides, as before.
        assert_eq!(preferred(list, usize::MAX, &fw)[0].id, list[0].id);
        let elsewhere = RawAddr::from_socket_addr("203.0.113.1:1080".parse().expect("literal"));
        assert_eq!(preferred(list, usize::MAX, &elsewhere).len(), 2, "unknown: the whole list");
    }
}
