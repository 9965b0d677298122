//! The program's own DNS client over UDP (issue 16): programs that read /etc/resolv.conf and
//! send their queries to port 53 themselves (dig, Node's c-ares, Chromium's resolver) get the
//! same answers from the library as from getaddrinfo, and a query for a name resolved on the
//! far side never leaves the workstation. Design: docs/DESIGN.md, "Programs with their own DNS
//! clients".
//!
//! - **Virtual connect** ([`connect`]): `connect(fd, SERVER:53)` on a UDP socket, when the
//!   settings resolve names on the far side, does not connect the socket: it is bound (if it
//!   has no port yet, as connect would have), `fdtable` records `Kind::DnsConnected` with
//!   `first` = SERVER:53, and connect returns 0. A connected UDP socket would only accept
//!   datagrams from its peer, so the library could not put its own answer into it.
//! - **Each query** ([`query_target`], [`answer`]): a datagram to SERVER:53 of such a socket,
//!   or to an explicit port 53 from any UDP socket, is read as a DNS query. A question
//!   `answers` decides for (Wire style) is answered by a **self-send**: the answer is sent from
//!   the socket to its own address ([`answer_address`]: the bound address, 127.0.0.1 or ::1 for a
//!   wildcard one, IPv4-mapped on an IPv6 socket), so it waits in the socket's receive queue
//!   like any reply and poll/epoll/select see it; the send returns the query's length and
//!   nothing goes to the network. Any other message (a name resolved locally, a reverse lookup
//!   of a real address, something that is not a readable query) goes to the server as before:
//!   directly, or through the UDP relay when socks.conf sends the server through sockd.
//! - **Receives** ([`Receiving`]): a datagram whose source is the socket's own address is
//!   reported as from the server the query went to; on a virtually connected socket a datagram
//!   from anyone but that server (or the relay, which `udp` unwraps) is dropped, as the kernel's
//!   connected-socket filter would have. The socket's own address is stored with its `fdtable`
//!   entry when the library makes it (the virtual connect, an answered query), so a receive asks
//!   the kernel nothing but the table's identity check (one fstat) and the receive itself.
//!
//! Not here: the decision and the messages (`answers`, `socks_proto::dns`), the C structures
//! (`ffi::udp_hooks`), the relay (`udp`), DNS over TCP (`dnstcp`; only its fail-closed fallback,
//! [`tcp_query_refused`], is here).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::c_int;
use socks_proto::dns::{self, RCODE_REFUSED};

use crate::answers::{resolve_question, type_name, Resolved, Style};
use crate::config;
use crate::fdtable::{self, Entry, Kind, OwnToken};
use crate::ffi::real;
use crate::ffi::sockaddr::{canonical, for_family, RawAddr, RAW_LEN};
use crate::log::{log, Level};
use crate::names;
use crate::outcome::{Cause, Outcome};
use crate::udp;

/// The DNS port (RFC 1035 4.2).
pub const DNS_PORT: u16 = 53;

/// An empty address (no relay).
const NONE: RawAddr = RawAddr { bytes: [0; RAW_LEN], len: 0 };

/// Whether the settings resolve any name on the far side (else DNS is none of our business).
fn remote_names() -> bool {
    config::settings().names.is_some()
}

/// Whether `dst` is a name server's port 53 the library looks at: port 53, and not a fake
/// address (a datagram to a fake address is relayed by name as any other).
fn is_dns_server(dst: &RawAddr) -> Option<SocketAddr> {
    let addr = dst.socket_addr()?;
    if addr.port() != DNS_PORT || !remote_names() {
        return None;
    }
    (!names::is_fake(config::settings(), canonical(addr).ip())).then_some(addr)
}

/// The relay of `fd`'s association, if it has one (kept across the DNS kinds).
fn relay_of(fd: c_int, entry: Option<Entry>) -> RawAddr {
    match entry {
        Some(e)
            if matches!(
                e.kind,
                Kind::Udp | Kind::UdpConnected | Kind::Dns | Kind::DnsConnected
            ) && fdtable::control(fd).is_some() =>
        {
            e.server
        }
        _ => NONE,
    }
}

/// Binds an unbound UDP socket `fd` to the source address and port a real connect to `dst`
/// picks, so that `getsockname` after the virtual connect says what it would have said (a
/// program may connect a UDP socket to port 53 only to learn its own address from the route,
/// as WebRTC does). The real connect sends nothing; it is undone (which frees the port and
/// address it chose) and the pair bound for good. Best effort: with no route to `dst`, or the
/// port taken meanwhile, the socket is left for `udp::own_source` to bind to the wildcard.
fn bind_as_connect_would(fd: c_int, dst: &RawAddr) {
    let unbound =
        real::local_addr(fd).and_then(|raw| raw.socket_addr()).is_some_and(|addr| addr.port() == 0);
    if !unbound || real::connect_to(fd, dst) != 0 {
        return;
    }
    let chosen = real::local_addr(fd);
    if real::disconnect(fd) != 0 {
        return;
    }
    if let Some(chosen) = chosen {
        if real::bind_to(fd, &chosen) != 0 {
            if let Some(addr) = chosen.socket_addr() {
                let any_port = RawAddr::from_socket_addr(SocketAddr::new(addr.ip(), 0));
                let _ = real::bind_to(fd, &any_port);
            }
        }
    }
}

/// connect(2) of UDP socket `fd` to `dst`: the virtual connect when `dst` is a name server's
/// port 53 and names are resolved on the far side; `None` otherwise (connect as before). No
/// heap (binding and recording only), so a signal handler's connect does it too; its queries
/// then fail with `Cause::SignalContext` there (reading them takes the heap).
pub fn connect(fd: c_int, dst: &RawAddr, nested: bool) -> Option<Outcome> {
    is_dns_server(dst)?;
    match real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
        Some(libc::SOCK_DGRAM) => {}
        Some(libc::SOCK_STREAM) if !nested => return crate::dnstcp::connect(fd, dst),
        Some(libc::SOCK_STREAM) => {
            // From a signal handler inside the library (no heap, no lock): connected as
            // before (directly, or through a server, which then records the socket as its
            // own), and the sends are checked ([`tcp_query_refused`]).
            if fdtable::trackable(fd) {
                fdtable::set(fd, &Entry { kind: Kind::DnsTcp, first: *dst, server: NONE });
            }
            return None;
        }
        _ => return None,
    }
    if !fdtable::trackable(fd) {
        return Some(Outcome::Fail(Cause::TableFull));
    }
    let before = fdtable::get(fd);
    // A socket really connected (to a direct peer, or to a relay) is disconnected first: its
    // port stays, as it was bound before (explicitly, or by that connect).
    if real::peer_addr(fd).is_some() && real::disconnect(fd) != 0 {
        return Some(Outcome::Fail(Cause::Os(real::errno())));
    }
    let family = match real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN) {
        Some(family) => family,
        None => return Some(Outcome::Fail(Cause::Os(real::errno()))),
    };
    bind_as_connect_would(fd, dst);
    let own = match udp::own_source(fd, family) {
        Ok(own) => own,
        Err(cause) => return Some(Outcome::Fail(cause)),
    };
    let server = relay_of(fd, before);
    let entry = Entry { kind: Kind::DnsConnected, first: *dst, server };
    match for_family(own, family) {
        Some(own) => fdtable::set_with_own(fd, &entry, own),
        None => fdtable::set(fd, &entry),
    }
    if let Some(addr) = dst.socket_addr() {
        log!(Level::Debug, "dns: connect to {addr}: kept in the library (queries are read)");
    }
    Some(Outcome::Done)
}

/// Where a datagram from `fd` goes when the library reads it as a DNS query: the name server,
/// and whether it is the virtual peer (the program named no address). `dst` is the address the
/// program gave, if any. `None`: not a DNS query the library looks at.
pub fn query_target(fd: c_int, dst: Option<&RawAddr>) -> Option<(RawAddr, bool)> {
    match dst {
        Some(dst) => {
            is_dns_server(dst)?;
            udp::is_udp(fd).then_some((*dst, false))
        }
        None => {
            if fdtable::kind_hint(fd) != Some(Kind::DnsConnected) {
                return None;
            }
            let entry = fdtable::get(fd).filter(|e| e.kind == Kind::DnsConnected)?;
            Some((entry.first, true))
        }
    }
}

/// The address `fd` is bound to, in its family's form (an AF_INET6 socket's IPv4 address
/// IPv4-mapped), binding it first to the wildcard address, port 0, when it has no port. An
/// error when the socket has no IP address or cannot be bound.
fn own_address(fd: c_int) -> Result<SocketAddr, Cause> {
    let family = real::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
        .ok_or_else(|| Cause::Os(real::errno()))?;
    let bound = udp::own_source(fd, family)?;
    for_family(bound, family).ok_or(Cause::Unsupported)
}

/// The address a socket bound to `own` (its family's form) sends its answers to itself at:
/// `own`, a wildcard IP made loopback — 127.0.0.1, IPv4-mapped on an IPv6 socket when the
/// server is IPv4, else ::1.
fn answer_address(own: SocketAddr, server: &RawAddr) -> Option<SocketAddr> {
    if !own.ip().is_unspecified() {
        return Some(own);
    }
    let v4_server = server.socket_addr().is_some_and(|s| canonical(s).is_ipv4());
    let (ip, family) = match own {
        SocketAddr::V4(_) => (IpAddr::V4(Ipv4Addr::LOCALHOST), libc::AF_INET),
        SocketAddr::V6(_) if v4_server => (IpAddr::V4(Ipv4Addr::LOCALHOST), libc::AF_INET6),
        SocketAddr::V6(_) => (IpAddr::V6(Ipv6Addr::LOCALHOST), libc::AF_INET6),
    };
    for_family(SocketAddr::new(ip, own.port()), family)
}

/// Whether a datagram from `from` came from a socket bound to `own` sending to itself (the
/// library's answer): the same port, and `own`'s IP, or a loopback one a wildcard `own` sends
/// from ([`answer_address`]). Both canonical.
fn from_itself(from: SocketAddr, own: SocketAddr) -> bool {
    let loopback =
        |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST);
    let ip = from.ip();
    from.port() == own.port()
        && !ip.is_unspecified()
        && (ip == own.ip() || (own.ip().is_unspecified() && loopback(ip)))
}

/// The library's answer to `query` when it decides for it (Wire style; shared with the TCP
/// side, `dnstcp`): `Some(Ok(message))`, or `Some(Err(cause))` when no answer can be made;
/// `None` when the query goes to the server (not a readable query, or about names resolved
/// locally). Logs the answer.
pub fn decide(query: &[u8]) -> Option<Result<Vec<u8>, Cause>> {
    // Not a query the library can read: not about a name it knows (see DESIGN.md).
    let parsed = dns::parse_query(query)?;
    let first = parsed.questions.first()?;
    let (id, rd) = (parsed.id, parsed.recursion_desired);
    let decided: Vec<Resolved> = parsed
        .questions
        .iter()
        .map(|q| {
            resolve_question(config::settings(), &q.name, q.qclass, q.qtype, id, rd, Style::Wire)
        })
        .collect();
    if decided.iter().all(|r| *r == Resolved::Local) {
        return None;
    }
    let message = match decided.as_slice() {
        [Resolved::Answer(message)] => message.clone(),
        [Resolved::Refused(cause)] => return Some(Err(*cause)),
        // Several questions, one of them about a name resolved on the far side (no resolver
        // asks so): refused whole, never forwarded.
        _ => match dns::response(id, rd, first, None, RCODE_REFUSED) {
            Some(message) => message,
            None => return Some(Err(Cause::BadName)),
        },
    };
    log!(Level::Debug, "dns: answered {} {} from the library", first.name, type_name(first.qtype));
    Some(Ok(message))
}

/// Answers `query`, sent by `fd` to `server` (`connected`: the virtual peer), when the library
/// decides for it: `Some(Ok(length))` once the answer waits in the socket, `Some(Err(cause))`
/// when it cannot be delivered; `None` when the query goes to the server.
pub fn answer(
    fd: c_int,
    server: &RawAddr,
    query: &[u8],
    connected: bool,
) -> Option<Result<usize, Cause>> {
    let message = match decide(query)? {
        Ok(message) => message,
        Err(cause) => return Some(Err(cause)),
    };
    Some(deliver(fd, server, &message, connected).map(|()| query.len()))
}

/// Puts `message` into `fd`'s receive queue (the self-send) and records where answers on `fd`
/// are reported from, with the socket's own address (so its receives need not ask for it).
fn deliver(fd: c_int, server: &RawAddr, message: &[u8], connected: bool) -> Result<(), Cause> {
    let known = fdtable::get_with_own(fd);
    let own = match known.and_then(|(_, own, _)| own) {
        Some(own) => own,
        None => own_address(fd)?,
    };
    let to = RawAddr::from_socket_addr(answer_address(own, server).ok_or(Cause::Unsupported)?);
    let sent = real::send_to(fd, message, libc::MSG_DONTWAIT, &to);
    if sent < 0 {
        let errno = real::errno();
        log!(Level::Error, "dns: the answer cannot be put into the socket (errno {errno})");
        return Err(Cause::Os(errno));
    }
    let before = known.map(|(entry, _, _)| entry);
    match before.map(|e| e.kind) {
        None | Some(Kind::Udp | Kind::Dns) if !connected => {
            let relay = relay_of(fd, before);
            let entry = Entry { kind: Kind::Dns, first: *server, server: relay };
            fdtable::set_with_own(fd, &entry, own);
        }
        // Connected sockets report their peer already; the address, if it was not known.
        _ => {
            if let Some((_, None, token)) = known {
                fdtable::add_own(token, own);
            }
        }
    }
    Ok(())
}

/// For bytes the program writes on a TCP socket connected directly to a name server
/// (`Kind::DnsTcp`): the cause to fail the write with when they hold a query about a name
/// resolved on the far side (two-byte length, then the message, RFC 1035 4.2.2; a write that
/// starts inside a message is read from its start too). `None`: send them (not such a socket,
/// not a query the library can read, or about names resolved locally). Only for the sockets
/// `dnstcp` does not answer on (connected from a signal handler inside the library, or no
/// loopback listener): the fail-closed fallback (docs/DESIGN.md).
pub fn tcp_query_refused(fd: c_int, bytes: &[u8]) -> Option<Cause> {
    let entry = fdtable::get(fd).filter(|e| e.kind == Kind::DnsTcp)?;
    let parsed = bytes.get(2..).and_then(dns::parse_query).or_else(|| dns::parse_query(bytes))?;
    let remote = parsed.questions.iter().find(|q| {
        let (id, rd) = (parsed.id, parsed.recursion_desired);
        resolve_question(config::settings(), &q.name, q.qclass, q.qtype, id, rd, Style::Wire)
            != Resolved::Local
    })?;
    let server = entry.first.socket_addr().map_or_else(String::new, |s| s.to_string());
    log!(
        Level::Error,
        "dns: query for {} {} over TCP to {server} refused: the name is resolved on the far \
         side, and the library cannot answer on this connection",
        remote.name,
        type_name(remote.qtype)
    );
    Some(Cause::RemoteNameOverTcp)
}

/// What a receive on a DNS socket does with a datagram that did not come from the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As it came.
    Keep,
    /// The library's answer: reported as from this name server.
    Answer(RawAddr),
    /// Not from the virtual peer: dropped, as a connected socket's filter would.
    Drop,
}

/// The state a receive on a DNS socket needs, read once per call.
#[derive(Debug, Clone, Copy)]
pub struct Receiving {
    server: RawAddr,
    connected: bool,
    /// The socket's own address, canonical.
    own: Option<SocketAddr>,
}

impl Receiving {
    /// For `fd` whose entry `fdtable::get_with_own` read (with its own address, if stored, and
    /// the token to store it), when it is a DNS socket (`Kind::Dns` or `Kind::DnsConnected`).
    /// No system call when the address was stored with the entry; else one getsockname, and
    /// the address stored for the next receive (an entry made by a dup, an association or a
    /// disconnect has none).
    pub fn of(
        fd: c_int,
        entry: &Entry,
        own: Option<SocketAddr>,
        token: OwnToken,
    ) -> Option<Receiving> {
        let connected = match entry.kind {
            Kind::Dns => false,
            Kind::DnsConnected => true,
            _ => return None,
        };
        let own = own.or_else(|| {
            let own = real::local_addr(fd).and_then(|raw| raw.socket_addr())?;
            // Not bound yet (no answer can be waiting): nothing to remember.
            if own.port() != 0 {
                fdtable::add_own(token, own);
            }
            Some(own)
        });
        Some(Receiving { server: entry.first, connected, own: own.map(canonical) })
    }

    /// The verdict on a datagram from `source`.
    pub fn judge(&self, source: Option<&RawAddr>) -> Verdict {
        let Some(from) = source.and_then(RawAddr::socket_addr).map(canonical) else {
            return Verdict::Keep;
        };
        if self.own.is_some_and(|own| from_itself(from, own)) {
            return Verdict::Answer(self.server);
        }
        let peer = self.server.socket_addr().map(canonical);
        if self.connected && Some(from) != peer {
            return Verdict::Drop;
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawAddr {
        RawAddr::from_socket_addr(text.parse().expect("literal"))
    }

    #[test]
    fn receives_are_judged_like_a_connected_socket() {
        let server = raw("192.0.2.53:53");
        let own = Some("127.0.0.1:40000".parse().expect("literal"));
        let connected = Receiving { server, connected: true, own };
        assert_eq!(connected.judge(Some(&raw("127.0.0.1:40000"))), Verdict::Answer(server));
        assert_eq!(connected.judge(Some(&raw("192.0.2.53:53"))), Verdict::Keep);
        assert_eq!(connected.judge(Some(&raw("[::ffff:192.0.2.53]:53"))), Verdict::Keep);
        assert_eq!(connected.judge(Some(&raw("127.0.0.1:40001"))), Verdict::Drop);
        assert_eq!(connected.judge(Some(&raw("192.0.2.53:54"))), Verdict::Drop);
        assert_eq!(connected.judge(None), Verdict::Keep);
        let unconnected = Receiving { server, connected: false, own };
        assert_eq!(unconnected.judge(Some(&raw("127.0.0.1:40000"))), Verdict::Answer(server));
        assert_eq!(unconnected.judge(Some(&raw("198.51.100.2:7"))), Verdict::Keep);
    }

    #[test]
    fn a_wildcard_socket_hears_itself_from_loopback_only() {
        let server = raw("192.0.2.53:53");
        for own in ["0.0.0.0:40000", "[::]:40000"] {
            let own = Some(canonical(own.parse().expect("literal")));
            let dns = Receiving { server, connected: true, own };
            for itself in ["127.0.0.1:40000", "[::ffff:127.0.0.1]:40000", "[::1]:40000"] {
                assert_eq!(dns.judge(Some(&raw(itself))), Verdict::Answer(server), "{itself}");
            }
            for other in ["127.0.0.2:40000", "198.51.100.2:40000", "[::1]:40001", "0.0.0.0:40000"] {
                assert_eq!(dns.judge(Some(&raw(other))), Verdict::Drop, "{other}");
            }
        }
        // Not bound yet: nothing is the library's answer.
        let dns = Receiving { server, connected: true, own: None };
        assert_eq!(dns.judge(Some(&raw("127.0.0.1:40000"))), Verdict::Drop);
    }

    #[test]
    fn answers_go_to_the_sockets_own_address_in_its_family() {
        let v4 = raw("192.0.2.53:53");
        let v6 = raw("[2001:db8::53]:53");
        let at = |own: &str, server: &RawAddr| {
            answer_address(own.parse().expect("literal"), server).map(|a| a.to_string())
        };
        assert_eq!(at("0.0.0.0:4000", &v4).as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(at("[::]:4000", &v4).as_deref(), Some("[::ffff:127.0.0.1]:4000"));
        assert_eq!(at("[::]:4000", &v6).as_deref(), Some("[::1]:4000"));
        assert_eq!(at("192.0.2.2:4000", &v4).as_deref(), Some("192.0.2.2:4000"));
        assert_eq!(at("[fe80::1%3]:4000", &v6).as_deref(), Some("[fe80::1%3]:4000"));
    }
}
