//! The supervisor's name service: how a supervised program's own DNS client (Go's, and the
//! resolvers linked into static programs) gets fake addresses for names socks.conf sends
//! through a server, without a query for such a name ever leaving the workstation.
//!
//! Go (CGO_ENABLED=0), musl and a static glibc read /etc/resolv.conf and talk to the name
//! server themselves: Go opens a UDP socket per query, connects it to server:53, writes and
//! reads (TCP on truncation); glibc connects too and sends with `sendmmsg`. Their writes and
//! reads are not trapped (that would cost every program every read), but the connect is. So a
//! connect of a UDP or TCP socket to port 53 (any address: a program may name its own server)
//! is redirected: the supervisor connects the program's socket (its copy, the same socket) to
//! a responder it owns on 127.0.0.1 — a UDP socket and a TCP listener on ports the kernel picks,
//! in the program's network namespace, which is the supervisor's — remembers the real server
//! for that socket's local address, and records the server as the socket's peer in the
//! `SO_COOKIE` table, so `getpeername` names the server as it would have.
//!
//! The responder reads each query (the first question; a message it cannot read is dropped,
//! never forwarded) and answers:
//! - A name socks.conf sends through a server (the library's rules, see `names`): an A query
//!   gets one fake IPv4 address, an AAAA query one fake IPv6 address — each only when
//!   `fake-families` includes that family (default IPv4 only: an AAAA query gets no record) —
//!   and every other type an empty NOERROR answer ("no record of that type"). Not REFUSED:
//!   resolvers take a refusal as a broken server and try the next server or search suffix,
//!   where NOERROR ends the lookup cleanly. Time to live 0.
//! - A reverse (PTR) query for a fake address handed out: the name; for one never handed out,
//!   NXDOMAIN. Nothing about a fake address is ever forwarded.
//! - Everything else (a `direct` name, /etc/hosts names, reverse lookups of real addresses): the
//!   query is forwarded unchanged by the supervisor to the real server, over UDP or TCP as it
//!   came, directly when socks.conf lets that server be reached so, else through the server
//!   socks.conf names for it (UDP: a fresh UDP association per query, `udp::exchange_once`; TCP:
//!   a SOCKS CONNECT to the name server); the reply is passed back untouched. A denied server,
//!   a broken configuration or a failure through sockd gets SERVFAIL. `resolve
//!   local-then-remote`: forwarded, and a fake address when the server has no answer.
//!
//! Unconnected `sendto`/`sendmsg` to port 53 of a UDP socket (musl's way) are redirected to the
//! responder too (`send`): the query never leaves, and the answer comes back to the socket
//! from 127.0.0.1. A resolver that drops replies whose source is not a configured server
//! (musl's `res_msend` does) gets them anyway: the socket is entered in `rewrites`, and
//! the trapped `recvfrom`/`recvmsg` (`recv`) report the server as the source. Connected UDP
//! sockets redirected here are entered too (a `recvfrom` with an address on them names the
//! server). Go and the glibc 2.36 linked into Debian's busybox-static connect their socket and
//! read the reply with no source check.
//!
//! The responder listens on 127.0.0.1 only: an IPv6 socket reaches it through the IPv4-mapped
//! address, so an IPv6 socket with IPV6_V6ONLY set cannot, and its connect to port 53 fails
//! (nothing is sent). Go's resolver does not set it for its DNS sockets.
//!
//! Why a responder and not answers written straight into the program: Go and glibc read the
//! reply with plain `read`/`recvfrom` on a connected socket, which the filter does not trap (and
//! should not: every program reads). Connecting the socket elsewhere at the one call that is
//! trapped keeps reads at kernel speed, and serves TCP (Go's fallback on truncation, `use-vc`)
//! the same way.
//!
//! Not here: the fake map and the decision (`names`), the messages (`socks_proto::dns`).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use socks_proto::rules::FakeFamilies;

use crate::names::{self, FakeMap, Plan};
use crate::route::{route, Route};
use crate::supervise::{log, Shared};
use crate::{proxy, sockaddr, udp};
use socks_proto::dns::{self, Question, Rdata};

/// How many redirected sockets the responder remembers (oldest forgotten first: such a socket's
/// queries are then dropped, and its lookup times out).
pub const CLIENTS_MAX: usize = 4096;
/// How long a forwarded query waits for the real server.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TCP connection to the responder waits for its socket to be registered.
const REGISTER_WAIT: Duration = Duration::from_secs(2);

/// The responder's sockets and state.
#[derive(Debug)]
pub struct Responder {
    udp: UdpSocket,
    tcp: TcpListener,
    /// The names handed out, for the whole supervised tree.
    pub fakes: FakeMap,
    clients: Mutex<Clients>,
    /// Signalled by `register`: a TCP connection can reach the listener (the kernel completes
    /// a loopback handshake at once) a moment before its socket is registered.
    registered: Condvar,
    /// The two serving threads, started by the first redirect ([`serve`]): a program that
    /// never looks a name up does not pay for them at start.
    serving: std::sync::Once,
}

/// Redirected sockets: (TCP?, their local address as the responder sees it) -> (the real
/// server, the program's process, for log lines).
#[derive(Debug, Default)]
struct Clients {
    by_addr: HashMap<(bool, SocketAddr), (SocketAddr, u32)>,
    order: VecDeque<(bool, SocketAddr)>,
}

/// The address a socket bound to `local` sends from to 127.0.0.1, IPv4-mapped turned IPv4.
fn seen_as(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip().to_canonical() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

impl Responder {
    /// Binds the UDP socket and the TCP listener on 127.0.0.1.
    pub fn bind() -> std::io::Result<Responder> {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        Ok(Responder {
            udp,
            tcp,
            fakes: FakeMap::default(),
            clients: Mutex::default(),
            registered: Condvar::new(),
            serving: std::sync::Once::new(),
        })
    }

    /// Where a socket of family `domain` is connected to reach the responder (IPv4-mapped for
    /// an IPv6 socket).
    pub fn address(&self, tcp: bool, domain: i32) -> Option<SocketAddr> {
        let addr = if tcp { self.tcp.local_addr() } else { self.udp.local_addr() }.ok()?;
        Some(match (addr, domain) {
            (SocketAddr::V4(v4), libc::AF_INET6) => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => addr,
        })
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers that the socket bound to `local`, of process `pid`, asks `server`.
    pub fn register(&self, tcp: bool, local: SocketAddr, server: SocketAddr, pid: u32) {
        let key = (tcp, seen_as(local));
        let mut clients = self.clients();
        if clients.by_addr.insert(key, (server, pid)).is_none() {
            clients.order.push_back(key);
        }
        while clients.by_addr.len() > CLIENTS_MAX {
            match clients.order.pop_front() {
                Some(old) => {
                    clients.by_addr.remove(&old);
                }
                None => break,
            }
        }
        drop(clients);
        self.registered.notify_all();
    }

    fn server_for(&self, tcp: bool, from: SocketAddr) -> Option<(SocketAddr, u32)> {
        self.clients().by_addr.get(&(tcp, seen_as(from))).copied()
    }

    /// As `server_for`, waiting up to `REGISTER_WAIT` for the registration of a TCP socket the
    /// supervisor is connecting right now (its connect completes before `register` runs).
    fn server_for_waiting(&self, from: SocketAddr) -> Option<(SocketAddr, u32)> {
        let key = (true, seen_as(from));
        let deadline = std::time::Instant::now() + REGISTER_WAIT;
        let mut clients = self.clients();
        loop {
            if let Some(found) = clients.by_addr.get(&key) {
                return Some(*found);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            clients = self
                .registered
                .wait_timeout(clients, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// Starts the responder's two threads (UDP and TCP accept), once: called before the first
/// socket is redirected to it (its sockets are bound from the start, so nothing sent before
/// the threads run is lost). Each query that must be forwarded, and each TCP connection, gets
/// a thread of its own.
pub fn serve(shared: &Arc<Shared>) {
    let Some(dns) = &shared.dns else { return };
    dns.serving.call_once(|| start(shared));
}

fn start(shared: &Arc<Shared>) {
    let udp_shared = shared.clone();
    let tcp_shared = shared.clone();
    let started = std::thread::Builder::new()
        .name("dns-udp".into())
        .spawn(move || serve_udp(udp_shared))
        .and_then(|_| {
            std::thread::Builder::new().name("dns-tcp".into()).spawn(move || serve_tcp(tcp_shared))
        });
    if let Err(e) = started {
        // Redirected lookups then time out; nothing leaks.
        eprintln!("socks-supervise: cannot start the name service: {e}");
    }
}

fn serve_udp(shared: Arc<Shared>) {
    let Some(dns) = &shared.dns else { return };
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match dns.udp.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("socks-supervise: name service (UDP): {e}");
                return;
            }
        };
        let Some((server, pid)) = dns.server_for(false, from) else { continue };
        let query = buf[..n].to_vec();
        let worker = shared.clone();
        let _ = std::thread::Builder::new().name("dns-query".into()).spawn(move || {
            if let Some(reply) = answer(&worker, &query, Asked { server, pid, tcp: false }) {
                if let Some(dns) = &worker.dns {
                    let _ = dns.udp.send_to(&reply, from);
                }
            }
        });
    }
}

fn serve_tcp(shared: Arc<Shared>) {
    let Some(dns) = &shared.dns else { return };
    loop {
        let (stream, from) = match dns.tcp.accept() {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("socks-supervise: name service (TCP): {e}");
                return;
            }
        };
        let worker = shared.clone();
        let _ = std::thread::Builder::new().name("dns-tcp-conn".into()).spawn(move || {
            // Not on the accept thread: the registration may still be on its way.
            let Some(dns) = &worker.dns else { return };
            let Some((server, pid)) = dns.server_for_waiting(from) else { return };
            serve_tcp_connection(&worker, stream, Asked { server, pid, tcp: true });
        });
    }
}

/// Reads one length-prefixed message (RFC 1035 4.2.2); `None` at the end or on an error.
fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}

fn write_framed(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&message[..usize::from(len)]);
    stream.write_all(&out)
}

fn serve_tcp_connection(shared: &Arc<Shared>, mut stream: TcpStream, asked: Asked) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    while let Some(query) = read_framed(&mut stream) {
        let Some(reply) = answer(shared, &query, asked) else { return };
        if write_framed(&mut stream, &reply).is_err() {
            return;
        }
    }
}

/// Who asked: the real server the program sent its query to, its process, and how.
#[derive(Debug, Clone, Copy)]
struct Asked {
    server: SocketAddr,
    pid: u32,
    tcp: bool,
}

/// The answer to one query; `None` drops it.
fn answer(shared: &Shared, query: &[u8], asked: Asked) -> Option<Vec<u8>> {
    let Asked { server, pid, .. } = asked;
    let settings = &shared.settings;
    let dns = shared.dns.as_ref()?;
    let parsed = dns::parse_query(query)?;
    let question = parsed.questions.first()?;
    let (id, rd) = (parsed.id, parsed.recursion_desired);
    let reply = |record: Option<Rdata>, rcode: u8| dns::response(id, rd, question, record, rcode);
    let shown = |what: &str| {
        log(
            settings,
            4,
            pid,
            format_args!(
                "dns: {} type {} (asked of {server}): {what}",
                question.name, question.qtype
            ),
        )
    };
    if let Some(ip) = dns::reverse_address(&question.name) {
        if names::is_fake(settings, ip) {
            return match dns.fakes.name_of(settings, ip) {
                Some(name) if question.qtype == dns::TYPE_PTR => {
                    shown(&format!("{name} (a fake address)"));
                    reply(Some(Rdata::Pointer(name)), 0)
                }
                Some(_) => reply(None, 0),
                None => reply(None, dns::RCODE_NXDOMAIN),
            };
        }
        return forward(shared, query, question, id, rd, asked);
    }
    match names::plan(settings, &question.name) {
        Plan::Local => forward(shared, query, question, id, rd, asked),
        Plan::Fake => fake_answer(shared, &dns.fakes, question, id, rd, pid),
        Plan::LocalThenFake => {
            let real = forward(shared, query, question, id, rd, asked);
            let answered = real.as_deref().is_some_and(|r| {
                dns::rcode(r) == Some(0) && r.get(6..8).is_some_and(|c| c != [0, 0])
            });
            if answered {
                real
            } else {
                fake_answer(shared, &dns.fakes, question, id, rd, pid)
            }
        }
    }
}

/// The answer for a name resolved on the far side.
fn fake_answer(
    shared: &Shared,
    fakes: &FakeMap,
    question: &Question,
    id: u16,
    rd: bool,
    pid: u32,
) -> Option<Vec<u8>> {
    let settings = &shared.settings;
    let families = settings.names.as_ref()?.families;
    let v6 = match (question.qtype, families) {
        (dns::TYPE_A, FakeFamilies::Ipv4 | FakeFamilies::Both) => false,
        (dns::TYPE_AAAA, FakeFamilies::Ipv6 | FakeFamilies::Both) => true,
        // Another type, or a family not faked: the name exists, with no such record.
        _ => return dns::response(id, rd, question, None, 0),
    };
    match fakes.fake_for(settings, &question.name, v6) {
        Some(ip) => {
            log(
                settings,
                4,
                pid,
                format_args!("dns: {} type {}: {ip} (fake)", question.name, question.qtype),
            );
            dns::response(id, rd, question, Some(Rdata::Address(ip)), 0)
        }
        None => {
            log(
                settings,
                1,
                pid,
                format_args!("dns: {}: no fake address left (SERVFAIL)", question.name),
            );
            dns::response(id, rd, question, None, dns::RCODE_SERVFAIL)
        }
    }
}

/// Forwards the program's query, unchanged, to the real server when socks.conf lets it be
/// reached directly; SERVFAIL otherwise or when it does not answer.
fn forward(
    shared: &Shared,
    query: &[u8],
    question: &Question,
    id: u16,
    rd: bool,
    asked: Asked,
) -> Option<Vec<u8>> {
    let Asked { server, pid, tcp } = asked;
    let settings = &shared.settings;
    let servfail = || dns::response(id, rd, question, None, dns::RCODE_SERVFAIL);
    let server = sockaddr::canonical(server);
    let result = match route(settings, server) {
        Route::Direct if tcp => forward_tcp(query, server),
        Route::Direct => forward_udp(query, server, id),
        Route::Proxy(servers) => {
            let through = if tcp {
                forward_tcp_via(query, server, servers, settings.timeout)
            } else {
                forward_udp_via(query, server, servers, id)
            };
            match through {
                Ok(reply) => Ok(reply),
                Err(why) => {
                    log(
                        settings,
                        2,
                        pid,
                        format_args!(
                            "dns: {}: the name server {server} through SOCKS: {why} (SERVFAIL)",
                            question.name
                        ),
                    );
                    return servfail();
                }
            }
        }
        Route::Deny | Route::Broken => {
            log(
                settings,
                2,
                pid,
                format_args!(
                    "dns: {}: the name server {server} may not be reached (SERVFAIL)",
                    question.name
                ),
            );
            return servfail();
        }
    };
    match result {
        Ok(reply) => {
            log(
                settings,
                4,
                pid,
                format_args!(
                    "dns: {} type {}: forwarded to {server}",
                    question.name, question.qtype
                ),
            );
            Some(reply)
        }
        Err(e) => {
            log(
                settings,
                2,
                pid,
                format_args!("dns: {}: forwarding to {server}: {e}", question.name),
            );
            // As an unanswered query: the program's own timeout decides.
            None
        }
    }
}

fn forward_udp(query: &[u8], server: SocketAddr, id: u16) -> std::io::Result<Vec<u8>> {
    let any: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(FORWARD_TIMEOUT))?;
    socket.send(query)?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = socket.recv(&mut buf)?;
        if buf[..n].get(..2) == Some(&id.to_be_bytes()[..]) {
            return Ok(buf[..n].to_vec());
        }
    }
}

/// The query through a UDP association with the first SOCKS5 server of `servers`.
fn forward_udp_via(
    query: &[u8],
    server: SocketAddr,
    servers: &[crate::config::Server],
    id: u16,
) -> Result<Vec<u8>, String> {
    let target = socks_proto::TargetAddr::Ip(server);
    let matches = |reply: &[u8]| reply.get(..2) == Some(&id.to_be_bytes()[..]);
    udp::exchange_once(servers, &target, query, FORWARD_TIMEOUT, matches).map_err(|f| f.why)
}

/// The query over TCP through a SOCKS CONNECT to the name server.
fn forward_tcp_via(
    query: &[u8],
    server: SocketAddr,
    servers: &[crate::config::Server],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let family = if server.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
    let socket = crate::sys::tcp_socket(family).map_err(|e| e.to_string())?;
    let target = socks_proto::TargetAddr::Ip(server);
    let deadline = std::time::Instant::now() + timeout;
    proxy::connect_via(socket.as_fd(), family, &target, servers, deadline, None)
        .map_err(|f| f.why)?;
    let mut stream = TcpStream::from(socket);
    let _ = stream.set_read_timeout(Some(FORWARD_TIMEOUT));
    write_framed(&mut stream, query).map_err(|e| e.to_string())?;
    read_framed(&mut stream).ok_or_else(|| "no reply".to_owned())
}

fn forward_tcp(query: &[u8], server: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, FORWARD_TIMEOUT)?;
    stream.set_read_timeout(Some(FORWARD_TIMEOUT))?;
    write_framed(&mut stream, query)?;
    read_framed(&mut stream).ok_or_else(|| std::io::Error::other("no reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_keyed_as_the_responder_sees_them() {
        let responder = Responder::bind().expect("loopback");
        let server: SocketAddr = "192.0.2.53:53".parse().expect("literal");
        responder.register(false, "0.0.0.0:4000".parse().expect("literal"), server, 7);
        responder.register(true, "[::ffff:127.0.0.1]:4001".parse().expect("literal"), server, 7);
        let seen = |tcp, at: &str| responder.server_for(tcp, at.parse().expect("literal"));
        assert_eq!(seen(false, "127.0.0.1:4000"), Some((server, 7)));
        assert_eq!(seen(true, "127.0.0.1:4001"), Some((server, 7)));
        assert_eq!(seen(true, "127.0.0.1:4000"), None);
        let v6 = responder.address(false, libc::AF_INET6).expect("bound");
        assert!(matches!(v6.ip(), IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some()));
        for port in 0..(CLIENTS_MAX as u16 + 5) {
            let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 10_000 + port));
            responder.register(false, local, server, 7);
        }
        assert_eq!(responder.clients().by_addr.len(), CLIENTS_MAX);
    }
}
