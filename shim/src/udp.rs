//! UDP through a SOCKS5 server (RFC 1928 section 7), for the program's own UDP socket: the
//! first datagram to a destination socks.conf sends through a server sets up a UDP ASSOCIATE
//! over a TCP control connection the library owns (the program cannot close it by accident);
//! datagrams then go to the server's relay with the SOCKS5 UDP header, and datagrams from the
//! relay have it stripped and report their real source. Datagrams to and from anywhere else on
//! the same socket pass untouched, so poll/select/epoll on the socket work as before.
//!
//! The request declares where the datagrams will come from (RFC 1928: DST of UDP ASSOCIATE):
//! the socket's own address and port, bound first (to the wildcard address of its family,
//! port 0, as the kernel would on the first send) if the program has not bound it. A server
//! that locks its relay to that source, as sockd does, then relays this socket's datagrams
//! only. A socket bound to a specific address has the control connection come from that
//! address too, so both reach the server from the same host address.
//!
//! A datagram sent from a signal handler that interrupted the library in the same thread is
//! planned without the heap ([`plan_send_without_heap`]): it goes through the socket's
//! association if one exists, with a header built in a fixed buffer; one that would need a new
//! association fails with `Cause::SignalContext`. Never direct.
//!
//! Not here: the C structures (see `udp_hooks`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::c_int;
use socks_proto::fixed::{udp_header, Destination, UDP_HEADER_MAX};
use socks_proto::udp::{decode_datagram, encode_header, UdpHeader};
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

/// Largest UDP payload over IPv4 (65,535 minus the IP and UDP headers).
pub const UDP_PAYLOAD_MAX: usize = 65_507;
/// Longest SOCKS5 UDP header (a 255-byte name).
pub const HEADER_MAX: usize = 3 + 1 + 1 + 255 + 2;

/// What to do with an outgoing datagram.
#[derive(Debug)]
pub enum Send {
    /// Not ours: the real call.
    PassThrough,
    /// Send `header` then the payload to `relay`.
    Relay { relay: RawAddr, header: Vec<u8> },
    /// Refuse for this cause.
    Fail(Cause),
}

/// Whether `fd` is a UDP socket.
pub fn is_udp(fd: c_int) -> bool {
    real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_DGRAM)
}

/// The destination as the server should see it, and its route.
fn target_of(settings: &Settings, dst: SocketAddr) -> Result<(TargetAddr, Route<'_>), Cause> {
    let dst = canonical(dst);
    if !names::is_fake(settings, dst.ip()) {
        return Ok((TargetAddr::Ip(dst), route(settings, dst)));
    }
    let mut buf = [0u8; NAME_MAX];
    match names::name_of(settings, dst.ip(), &mut buf) {
        Some(name) => {
            let route = route_name(settings, name, dst);
            Ok((TargetAddr::Domain(name.to_string(), dst.port()), route))
        }
        None => Err(Cause::FakeUnknown),
    }
}

/// Plans a datagram of `len` bytes from `fd` to `dst` (as the program named it).
pub fn plan_send(fd: c_int, dst: &RawAddr, len: usize) -> Send {
    let Some(addr) = dst.socket_addr() else { return Send::PassThrough };
    let settings = config::settings();
    let (target, route) = match target_of(settings, addr) {
        Ok(found) => found,
        Err(cause) => return Send::Fail(cause),
    };
    // The socket's type costs a system call: only asked when the destination is not direct.
    let direct = matches!((&route, &target), (Route::Direct, TargetAddr::Ip(_)));
    if direct || !is_udp(fd) {
        return Send::PassThrough;
    }
    match route {
        // Only a name's fake address gets here direct: no line sends it through a server.
        Route::Direct => Send::Fail(Cause::NoRoute),
        Route::Deny => {
            log!(Level::Info, "udp {target}: denied by socks.conf");
            Send::Fail(Cause::Denied)
        }
        Route::Broken => {
            log!(Level::Error, "udp {target}: refused, the configuration is broken");
            Send::Fail(Cause::BrokenConfig)
        }
        Route::Proxy(servers) => {
            let relay = match association(fd, servers, settings) {
                Ok(relay) => relay,
                Err(cause) => return Send::Fail(cause),
            };
            if matches!(target, TargetAddr::Domain(..)) {
                remember_fake_destination(fd, dst);
            }
            match header_for(&target, len) {
                Ok(header) => Send::Relay { relay, header },
                Err(cause) => Send::Fail(cause),
            }
        }
    }
}

/// What to do with a datagram sent from a signal handler inside the library (no heap).
// The header travels by value on purpose: boxing it would take the heap this path avoids.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum QuietSend {
    /// Not ours: the real call.
    PassThrough,
    /// Send `header[..header_len]` then the payload to `relay` (no address when its `len` is
    /// 0: a connected socket is connected to the relay already).
    Relay { relay: RawAddr, header: [u8; UDP_HEADER_MAX], header_len: usize },
    /// Refuse for this cause.
    Fail(Cause),
}

/// Plans a datagram of `len` bytes from `fd` to `dst` — or, with `None`, to the peer of a UDP
/// socket the program connected to a proxied destination — as [`plan_send`] and
/// [`plan_connected_send`] would, without the heap: for a signal handler that interrupted the
/// library in this thread (the interrupted code may hold malloc's lock). Only an association
/// that already exists can carry it; a destination that would need a new one fails with
/// `Cause::SignalContext`.
pub fn plan_send_without_heap(fd: c_int, dst: Option<&RawAddr>, len: usize) -> QuietSend {
    let settings = config::settings();
    let (addr, connected) = match dst {
        Some(dst) => match dst.socket_addr() {
            Some(addr) => (addr, false),
            None => return QuietSend::PassThrough,
        },
        None => match fdtable::get(fd) {
            Some(entry) if entry.kind == Kind::UdpConnected => match entry.first.socket_addr() {
                Some(peer) => (peer, true),
                None => return QuietSend::PassThrough,
            },
            _ => return QuietSend::PassThrough,
        },
    };
    let mut name_buf = [0u8; NAME_MAX];
    let (target, route) =
        match crate::intercept::destination(settings, canonical(addr), &mut name_buf) {
            Ok(found) => found,
            Err(cause) => return QuietSend::Fail(cause),
        };
    let relay = if connected {
        RawAddr { bytes: [0; crate::ffi::sockaddr::RAW_LEN], len: 0 }
    } else {
        let direct = matches!((&route, &target), (Route::Direct, Destination::Ip(_)));
        if direct || !is_udp(fd) {
            return QuietSend::PassThrough;
        }
        match route {
            Route::Direct => return QuietSend::Fail(Cause::NoRoute),
            Route::Deny => return QuietSend::Fail(Cause::Denied),
            Route::Broken => return QuietSend::Fail(Cause::BrokenConfig),
            Route::Proxy(_) => {}
        }
        let existing = fdtable::get(fd).filter(|e| {
            matches!(e.kind, Kind::Udp | Kind::UdpConnected | Kind::Dns | Kind::DnsConnected)
                && fdtable::control(fd).is_some()
        });
        let Some(entry) = existing else {
            log!(Level::Info, "udp: a signal handler's datagram needs a new association: EAGAIN");
            return QuietSend::Fail(Cause::SignalContext);
        };
        if let (Some(dst), Destination::Name(..)) = (dst, &target) {
            remember_fake_destination(fd, dst);
        }
        entry.server
    };
    let mut header = [0u8; UDP_HEADER_MAX];
    let Ok(header_len) = udp_header(&target, &mut header) else {
        return QuietSend::Fail(Cause::Unsupported);
    };
    if header_len + len > UDP_PAYLOAD_MAX {
        return QuietSend::Fail(Cause::Os(libc::EMSGSIZE));
    }
    QuietSend::Relay { relay, header, header_len }
}

/// The header for a datagram of `len` bytes to `target`; EMSGSIZE when the two no longer fit
/// in one UDP datagram, as the kernel would say.
fn header_for(target: &TargetAddr, len: usize) -> Result<Vec<u8>, Cause> {
    let mut header = Vec::with_capacity(HEADER_MAX);
    encode_header(&UdpHeader { frag: 0, addr: target.clone() }, &mut header)
        .map_err(|_| Cause::Unsupported)?;
    if header.len() + len > UDP_PAYLOAD_MAX {
        return Err(Cause::Os(libc::EMSGSIZE));
    }
    Ok(header)
}

/// Remembers the fake (name) address the program sent to, so replies can be reported as coming
/// from it.
fn remember_fake_destination(fd: c_int, dst: &RawAddr) {
    if let Some(entry) = fdtable::get(fd) {
        if entry.kind == Kind::Udp {
            fdtable::set(fd, &Entry { first: *dst, ..entry });
        }
    }
}

/// For `send`/`write` on a UDP socket the program connected to a proxied peer: the relay and
/// the header. `None`: not such a socket.
pub fn plan_connected_send(fd: c_int, len: usize) -> Option<Result<Vec<u8>, Cause>> {
    let entry = fdtable::get(fd)?;
    if entry.kind != Kind::UdpConnected {
        return None;
    }
    let peer = entry.first.socket_addr()?;
    let settings = config::settings();
    Some(target_of(settings, peer).and_then(|(target, _)| header_for(&target, len)))
}

/// The relay address of `fd`'s association, setting one up through `servers` if needed.
fn association(fd: c_int, servers: &[Server], settings: &Settings) -> Result<RawAddr, Cause> {
    if let Some(entry) = fdtable::get(fd) {
        let kinds =
            matches!(entry.kind, Kind::Udp | Kind::UdpConnected | Kind::Dns | Kind::DnsConnected);
        if kinds && fdtable::control(fd).is_some() {
            return Ok(entry.server);
        }
    }
    let before = fdtable::get(fd);
    if !fdtable::trackable(fd) {
        return Err(Cause::TableFull);
    }
    let family = real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
        .ok_or_else(|| Cause::Os(real::errno()))?;
    let socks5: Vec<&Server> = servers
        .iter()
        .filter(|s| s.is_single_socks() && s.version == socks_proto::client::ClientVersion::Socks5)
        .collect();
    let Some(server) = socks5.first() else {
        if servers.iter().any(|s| !s.is_single_socks()) {
            log!(
                Level::Error,
                "udp: no single SOCKS5 server for UDP (UDP cannot go through a chain of proxies \
                 or an HTTP proxy): refused"
            );
            return Err(Cause::Denied);
        }
        log!(Level::Error, "udp: no SOCKS5 server for UDP (SOCKS4 has no UDP)");
        return Err(Cause::Unsupported);
    };
    let server_family = match server.addrs.first() {
        Some(SocketAddr::V6(_)) => libc::AF_INET6,
        _ => libc::AF_INET,
    };
    let source = own_source(fd, family)?;
    let control = real::new_socket(server_family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC);
    if control < 0 {
        return Err(Cause::Os(real::errno()));
    }
    same_host_address(control, server_family, source);
    let granted = match proxy::request_through(
        control,
        Command::UdpAssociate,
        &TargetAddr::Ip(source),
        std::slice::from_ref(*server),
        settings.timeout,
    ) {
        Ok(granted) => granted,
        Err(cause) => {
            real::close_fd(control);
            return Err(cause);
        }
    };
    let Some(relay) = for_family(granted.bound, family) else {
        real::close_fd(control);
        log!(Level::Error, "udp: relay {} cannot be reached from this socket", granted.bound);
        return Err(Cause::Unsupported);
    };
    // Out of the way of the program's own descriptor numbers when the limit allows.
    let control = match real::fcntl_int(control, libc::F_DUPFD_CLOEXEC, 512) {
        moved if moved >= 0 => {
            real::close_fd(control);
            moved
        }
        _ => control,
    };
    let server = granted.server.socket_addr().map_or_else(String::new, |a| a.to_string());
    log!(Level::Info, "udp: association through {server}, relay at {relay}");
    let relay = RawAddr::from_socket_addr(relay);
    let entry = match before {
        // A DNS socket (`dnswire`) stays one: its name server, now with a relay.
        Some(e) if matches!(e.kind, Kind::Dns | Kind::DnsConnected) => Entry { server: relay, ..e },
        _ => {
            let first = RawAddr { bytes: [0; crate::ffi::sockaddr::RAW_LEN], len: 0 };
            Entry { kind: Kind::Udp, first, server: relay }
        }
    };
    fdtable::set(fd, &entry);
    fdtable::set_control(fd, control);
    Ok(relay)
}

/// Where `fd`'s datagrams come from, as the UDP ASSOCIATE request declares it (IPv4-mapped as
/// IPv4; a wildcard address stays unspecified, which the server reads as the control
/// connection's address). An unbound socket is bound first to the wildcard address of its
/// `family`, port 0, as the kernel would bind it on its first send.
pub(crate) fn own_source(fd: c_int, family: c_int) -> Result<SocketAddr, Cause> {
    let local = |fd| {
        real::local_addr(fd).and_then(|raw| raw.socket_addr()).ok_or_else(|| match real::errno() {
            0 => Cause::Unsupported,
            errno => Cause::Os(errno),
        })
    };
    let mut bound = local(fd)?;
    if bound.port() == 0 {
        let any: IpAddr = match family {
            libc::AF_INET6 => Ipv6Addr::UNSPECIFIED.into(),
            _ => Ipv4Addr::UNSPECIFIED.into(),
        };
        if real::bind_to(fd, &RawAddr::from_socket_addr(SocketAddr::new(any, 0))) != 0 {
            let errno = real::errno();
            log!(
                Level::Error,
                "udp: cannot bind the socket before its association (errno {errno})"
            );
            return Err(Cause::Os(errno));
        }
        bound = local(fd)?;
    }
    Ok(canonical(bound))
}

/// A UDP socket bound to a specific address: the control connection leaves from that address
/// too (best effort: if it cannot, the server decides), so the server sees both come from the
/// same host address.
fn same_host_address(control: c_int, control_family: c_int, source: SocketAddr) {
    let ip = source.ip();
    if ip.is_unspecified() {
        return;
    }
    let Some(local) = for_family(SocketAddr::new(ip, 0), control_family) else { return };
    if real::bind_to(control, &RawAddr::from_socket_addr(local)) != 0 {
        log!(
            Level::Debug,
            "udp: control connection cannot leave from {ip} (errno {})",
            real::errno()
        );
    }
}

/// connect(2) on a UDP socket: a proxied peer means the socket is really connected to the relay.
pub fn connect(fd: c_int, dst: &RawAddr) -> Outcome {
    let Some(addr) = dst.socket_addr() else { return Outcome::PassThrough };
    let settings = config::settings();
    let (target, route) = match target_of(settings, addr) {
        Ok(found) => found,
        Err(cause) => return Outcome::Fail(cause),
    };
    match route {
        Route::Direct if matches!(target, TargetAddr::Domain(..)) => Outcome::Fail(Cause::NoRoute),
        Route::Direct => {
            if let Some(entry) = fdtable::get(fd) {
                match entry.kind {
                    Kind::UdpConnected => fdtable::set(fd, &Entry { kind: Kind::Udp, ..entry }),
                    // No longer a DNS socket: an association it has stays (no fake peer).
                    Kind::Dns | Kind::DnsConnected if fdtable::control(fd).is_some() => {
                        let first = RawAddr { bytes: [0; crate::ffi::sockaddr::RAW_LEN], len: 0 };
                        fdtable::set(fd, &Entry { kind: Kind::Udp, first, ..entry })
                    }
                    Kind::Dns | Kind::DnsConnected => fdtable::clear(fd),
                    _ => {}
                }
            }
            Outcome::PassThrough
        }
        Route::Deny => Outcome::Fail(Cause::Denied),
        Route::Broken => Outcome::Fail(Cause::BrokenConfig),
        Route::Proxy(servers) => {
            let relay = match association(fd, servers, settings) {
                Ok(relay) => relay,
                Err(cause) => return Outcome::Fail(cause),
            };
            if real::connect_to(fd, &relay) != 0 {
                return Outcome::Fail(Cause::Os(real::errno()));
            }
            fdtable::set(fd, &Entry { kind: Kind::UdpConnected, first: *dst, server: relay });
            Outcome::Done
        }
    }
}

/// A received datagram on `fd` from `from`: `Some((header length, reported source))` when it
/// came from the relay (strip the header, report that source), `None` when it is not ours.
/// A datagram from the relay that cannot be parsed is reported as `Some((len, from))` with the
/// header length equal to the whole datagram, so the caller drops it.
pub fn unwrap_received(fd: c_int, datagram: &[u8], from: &RawAddr) -> Option<(usize, RawAddr)> {
    let entry = fdtable::get(fd)?;
    if !matches!(entry.kind, Kind::Udp | Kind::UdpConnected | Kind::Dns | Kind::DnsConnected) {
        return None;
    }
    if entry.server.len == 0 {
        return None;
    }
    let relay = entry.server.socket_addr().map(canonical);
    if from.socket_addr().map(canonical) != relay {
        return None;
    }
    let family =
        real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(libc::AF_INET);
    let Ok((header, payload)) = decode_datagram(datagram) else {
        return Some((datagram.len(), *from));
    };
    let header_len = datagram.len() - payload.len();
    let source = match header.addr {
        TargetAddr::Ip(sa) => sa,
        TargetAddr::Domain(..) => return Some((datagram.len(), *from)),
    };
    // The program sent to a name's fake address: report the reply as coming from it.
    let reported = match entry.kind {
        Kind::UdpConnected | Kind::DnsConnected => entry.first,
        _ => match entry.first.socket_addr() {
            Some(fake) if entry.first.len > 0 && fake.port() == source.port() => entry.first,
            _ => RawAddr::from_socket_addr(for_family(source, family).unwrap_or(source)),
        },
    };
    Some((header_len, reported))
}

/// The program is about to put another descriptor at number `fd` (dup2, dup3). If `fd` is one
/// of the library's control connections, it moves out of the way first; if it is a UDP socket
/// with an association, the association ends with it.
pub fn before_replacing(fd: c_int) {
    if !fdtable::is_owned(fd) {
        closing(fd);
        return;
    }
    if let Some(owner) = fdtable::owner_of(fd) {
        let moved = real::fcntl_int(fd, libc::F_DUPFD_CLOEXEC, fd + 1);
        if moved >= 0 {
            // The old number is closed by the program's dup2 itself.
            fdtable::take_control(owner);
            fdtable::set_control(owner, moved);
        }
    }
}

/// The program closes UDP socket `fd`: its control connection goes too. A DNS-over-TCP socket's
/// end (`dnstcp`) moves to a dup of the socket still open, if there is one.
pub fn closing(fd: c_int) {
    if let Some(control) = fdtable::take_control(fd) {
        if crate::dnstcp::hand_over(fd, control) {
            return;
        }
        crate::dnstcp::forget(control);
        real::close_fd(control);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_sizes() {
        let target = TargetAddr::Ip("192.0.2.53:53".parse().expect("literal"));
        let header = header_for(&target, 100).expect("fits");
        assert_eq!(header, [0, 0, 0, 1, 192, 0, 2, 53, 0, 53]);
        assert_eq!(header_for(&target, UDP_PAYLOAD_MAX - 10), Ok(header.clone()));
        assert_eq!(header_for(&target, UDP_PAYLOAD_MAX - 9), Err(Cause::Os(libc::EMSGSIZE)));
    }
}
