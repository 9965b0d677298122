//! UDP ASSOCIATE (RFC 1928 section 7): a UDP relay for one client, alive as long as its TCP
//! control connection (or until the idle timeout). The relay socket listens on the address the
//! client reached sockd on and takes datagrams only from the source the client declared in its
//! request; each datagram's destination is checked against the rules like a CONNECT, and
//! replies come back wrapped in the SOCKS5 UDP header with their real source. Fragments
//! (FRAG != 0) are dropped, as RFC 1928 allows an implementation without reassembly to do.
//!
//! Who may use the relay. The request's DST is the address and port the client will send
//! from. The address must be the control connection's own client address, or unspecified
//! (which stands for it); any other is refused (RFC 1928 allows it, but then anyone the client
//! names could be relayed under its name). An authenticated client (a users file is in force)
//! must also declare its port: the relay takes datagrams from that one socket only. Without
//! authentication a client may declare port 0 (or all zeros, or a name): the relay then locks
//! onto the port of the first datagram from the client's address — the weaker mode, no worse
//! than what anyone on that address could get by asking for an association of their own. A
//! client that no `permit` line could ever cover gets no relay at all.
//!
//! Memory: an idle association holds no datagram buffer. A datagram is received into one
//! 64 KiB buffer per worker thread and copied out at its own size only while it is handled.
//!
//! Not here: the TCP handshake (`session`), the rule language.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use log::info;
use socks_proto::server::Request;
use socks_proto::udp::{decode_datagram, encode_header, UdpHeader};
use socks_proto::{Failure, TargetAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{sleep_until, timeout, Instant};

use crate::balancer;
use crate::metrics::{self, Direction, Outcome, UdpDrop};
use crate::outbound::{self, canonical};
use crate::session::{refuse, Session};
use crate::{Config, Context};

/// Largest datagram handled (the IPv4 UDP maximum payload plus room).
const DATAGRAM_MAX: usize = 65_536;
/// Destinations remembered per association (decisions, names, who may answer).
const REMEMBERED_MAX: usize = 4096;
/// How long a name in a datagram may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// The receive buffer of every association served on this thread: a datagram is read into
    /// it and copied out at its own size, so an idle association holds no buffer.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What an association did, for its closing log line.
#[derive(Debug, Default)]
struct Counts {
    sent_datagrams: u64,
    sent_bytes: u64,
    received_datagrams: u64,
    received_bytes: u64,
    dropped_foreign: u64,
    dropped_malformed: u64,
    dropped_fragments: u64,
    dropped_denied: u64,
    dropped_unanswerable: u64,
}

/// What is known about one destination of an association.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// The rules denied it (decided once, logged once).
    denied: bool,
    /// The client sent to it, so it may answer.
    contacted: bool,
}

/// The per-association memory of destinations.
#[derive(Default)]
struct Destinations {
    /// Rule decisions and who may answer, per destination address.
    seen: HashMap<SocketAddr, Seen>,
    /// Names already resolved.
    names: HashMap<(String, u16), Option<SocketAddr>>,
}

/// Where the client's datagrams must come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    ip: IpAddr,
    /// `None`: not declared; the first datagram from `ip` sets it (unauthenticated only).
    port: Option<u16>,
}

impl Source {
    /// Whether a datagram from `from` is the client's; learns the port in the weaker mode.
    fn admit(&mut self, from: SocketAddr) -> bool {
        if from.ip() != self.ip || self.port.is_some_and(|p| p != from.port()) {
            return false;
        }
        self.port.get_or_insert(from.port());
        true
    }
}

/// For the `udp:` line: `locked-to=IP:PORT`, or `IP:first-datagram` in the weaker mode.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", SocketAddr::new(self.ip, port)),
            None if self.ip.is_ipv6() => write!(f, "[{}]:first-datagram", self.ip),
            None => write!(f, "{}:first-datagram", self.ip),
        }
    }
}

/// The source the client declared in its request (DST), checked: the client's own address or
/// unspecified, and a port when `authenticated`. `Err` is the reason to log.
fn declared_source(
    dst: &TargetAddr,
    client_ip: IpAddr,
    authenticated: bool,
) -> Result<Source, String> {
    let declared = match dst {
        TargetAddr::Ip(sa) => canonical(*sa),
        TargetAddr::Domain(..) if authenticated => {
            return Err(
                "an authenticated UDP ASSOCIATE must declare the address and port it sends from, not a name"
                    .into(),
            )
        }
        // The weaker mode: nothing usable declared.
        TargetAddr::Domain(..) => return Ok(Source { ip: client_ip, port: None }),
    };
    let ip = if declared.ip().is_unspecified() { client_ip } else { declared.ip() };
    if ip != client_ip {
        return Err(format!(
            "declared UDP source {declared} is not the client's address {client_ip}"
        ));
    }
    match declared.port() {
        0 if authenticated => {
            Err("an authenticated UDP ASSOCIATE must declare the port it sends from (got port 0)"
                .into())
        }
        0 => Ok(Source { ip, port: None }),
        port => Ok(Source { ip, port: Some(port) }),
    }
}

/// Serves a UDP ASSOCIATE on `client` until the control connection ends.
pub async fn serve(
    mut client: TcpStream,
    request: &Request,
    session: &Session,
    ctx: &Context,
    config: &Config,
) {
    let client_ip = session.client.ip();
    if !config.rules.may_permit(client_ip, session.user.as_deref()) {
        info!("denied: {session} error=no permit line covers this client, so no UDP relay");
        return refuse(client, request, Failure::NotAllowed).await;
    }
    // With a users file or PAM the handshake checked the password: an identity is at stake.
    let authenticated = config.passwords_required();
    let mut source = match declared_source(&request.dst, client_ip, authenticated) {
        Ok(source) => source,
        Err(why) => {
            info!("denied: {session} error={why}");
            return refuse(client, request, Failure::NotAllowed).await;
        }
    };
    let relay = match client.local_addr() {
        Ok(local) => balancer::bind_relay(local.ip().to_canonical()).await,
        Err(e) => Err(e),
    };
    let (relay, relay_addr) = match relay.and_then(|r| r.local_addr().map(|a| (r, a))) {
        Ok(found) => found,
        Err(e) => {
            info!("failed: {session} error=cannot open the UDP relay: {e}");
            return refuse(client, request, Failure::General).await;
        }
    };
    // Behind NAT or a balancer (--udp-advertise), the address clients can reach.
    let relay_addr = balancer::advertised(relay_addr);
    let mut reply = Vec::new();
    request.encode_reply(Ok(relay_addr), &mut reply);
    if client.write_all(&reply).await.is_err() {
        metrics::session(Some(request.command), Outcome::Aborted);
        return;
    }
    info!("udp: {session} relay on {relay_addr} locked-to={source}");
    metrics::session(Some(request.command), Outcome::Granted);
    let started = Instant::now();
    let mut outbound_v4: Option<UdpSocket> = None;
    let mut outbound_v6: Option<UdpSocket> = None;
    let mut destinations = Destinations::default();
    let mut counts = Counts::default();
    let mut control = [0u8; 64];
    let mut last_activity = Instant::now();
    let end = loop {
        let idle_due = ctx.timeouts.idle.map(|idle| last_activity + idle);
        tokio::select! {
            read = client.read(&mut control) => match read {
                Ok(0) => break "control connection closed".to_string(),
                Err(e) => break format!("control connection: {e}"),
                // Bytes on the control connection mean nothing in UDP ASSOCIATE.
                Ok(_) => {}
            },
            ready = relay.readable() => {
                if ready.is_err() {
                    continue;
                }
                // Foreign datagrams are counted without being copied out.
                let received = receive(&relay, |bytes, from| {
                    source.admit(canonical(from)).then(|| bytes.to_vec())
                });
                let datagram = match received {
                    Ok(Some(datagram)) => datagram,
                    Ok(None) => {
                        counts.dropped_foreign += 1;
                        metrics::udp_dropped(UdpDrop::Foreign);
                        continue;
                    }
                    Err(_) => continue,
                };
                last_activity = Instant::now();
                let (header, payload) = match decode_datagram(&datagram) {
                    Ok(parts) => parts,
                    Err(_) => {
                        counts.dropped_malformed += 1;
                        metrics::udp_dropped(UdpDrop::Malformed);
                        continue;
                    }
                };
                if header.frag != 0 {
                    counts.dropped_fragments += 1;
                    metrics::udp_dropped(UdpDrop::Fragment);
                    continue;
                }
                let Some(dst) = destination(&header.addr, &mut destinations).await else {
                    counts.dropped_unanswerable += 1;
                    metrics::udp_dropped(UdpDrop::Unresolved);
                    continue;
                };
                if let Some(rule) = decide(config, session, dst, &mut destinations) {
                    counts.dropped_denied += 1;
                    metrics::udp_dropped(UdpDrop::Denied);
                    if let Some(rule) = rule {
                        info!("denied: {session} udp-dst={dst} rule={rule}");
                        metrics::denied_by(&rule);
                    }
                    continue;
                }
                let socket = match outbound_socket(dst, &mut outbound_v4, &mut outbound_v6).await {
                    Ok(socket) => socket,
                    Err(e) => {
                        info!("failed: {session} udp-dst={dst} error=cannot open a UDP socket: {e}");
                        counts.dropped_unanswerable += 1;
                        metrics::udp_dropped(UdpDrop::Unresolved);
                        continue;
                    }
                };
                remember_contacted(dst, &mut destinations);
                if socket.send_to(payload, dst).await.is_ok() {
                    counts.sent_datagrams += 1;
                    counts.sent_bytes += payload.len() as u64;
                    metrics::udp_datagram(Direction::Sent, payload.len());
                }
            }
            ready = readable_either(&outbound_v4, &outbound_v6) => {
                let Ok(socket) = ready else { continue };
                // The reply is built at its own size, header first, straight from the buffer.
                let received = receive(socket, |bytes, from| {
                    let from = canonical(from);
                    let contacted = destinations.seen.get(&from).is_some_and(|s| s.contacted);
                    (contacted && source.port.is_some()).then(|| wrap_reply(from, bytes))
                });
                let (datagram, n) = match received {
                    Ok(Some(Some(wrapped))) => wrapped,
                    Ok(Some(None)) => continue,
                    Ok(None) => {
                        counts.dropped_foreign += 1;
                        metrics::udp_dropped(UdpDrop::Foreign);
                        continue;
                    }
                    Err(_) => continue,
                };
                let Some(port) = source.port else { continue };
                last_activity = Instant::now();
                if relay.send_to(&datagram, SocketAddr::new(source.ip, port)).await.is_ok() {
                    counts.received_datagrams += 1;
                    counts.received_bytes += n as u64;
                    metrics::udp_datagram(Direction::Received, n);
                }
            }
            () = idle(idle_due) => break "idle timeout".to_string(),
        }
    };
    info!(
        "closed: {session} sent={} received={} datagrams-sent={} datagrams-received={} dropped-foreign={} dropped-malformed={} dropped-fragments={} dropped-denied={} dropped-unresolved={} secs={:.3} end={end}",
        counts.sent_bytes,
        counts.received_bytes,
        counts.sent_datagrams,
        counts.received_datagrams,
        counts.dropped_foreign,
        counts.dropped_malformed,
        counts.dropped_fragments,
        counts.dropped_denied,
        counts.dropped_unanswerable,
        started.elapsed().as_secs_f64(),
    );
}

/// Reads one datagram from `socket` (ready or not: `WouldBlock` when none is waiting) into the
/// thread's buffer and hands its bytes and source to `take`, which keeps what it needs.
fn receive<T>(socket: &UdpSocket, take: impl FnOnce(&[u8], SocketAddr) -> T) -> io::Result<T> {
    SCRATCH.with(|scratch| {
        // Never borrowed twice: `take` cannot reach this function again. Should it ever be,
        // a buffer of its own is the fallback, not a panic.
        let mut own = Vec::new();
        let mut borrowed = scratch.try_borrow_mut();
        let buf = match borrowed.as_deref_mut() {
            Ok(buf) => buf,
            Err(_) => &mut own,
        };
        if buf.len() < DATAGRAM_MAX {
            buf.resize(DATAGRAM_MAX, 0);
        }
        let (n, from) = socket.try_recv_from(buf)?;
        Ok(take(&buf[..n], from))
    })
}

/// A datagram from `from` wrapped in the SOCKS5 UDP header for the client, with its payload
/// length; `None` if the header cannot be encoded.
fn wrap_reply(from: SocketAddr, payload: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut datagram = Vec::with_capacity(payload.len() + 22);
    let header = UdpHeader { frag: 0, addr: TargetAddr::Ip(from) };
    encode_header(&header, &mut datagram).ok()?;
    datagram.extend_from_slice(payload);
    Some((datagram, payload.len()))
}

/// Marks `dst` as one the client sent to (within the memory limit).
fn remember_contacted(dst: SocketAddr, memory: &mut Destinations) {
    if let Some(seen) = memory.seen.get_mut(&dst) {
        seen.contacted = true;
    } else if memory.seen.len() < REMEMBERED_MAX {
        memory.seen.insert(dst, Seen { denied: false, contacted: true });
    }
}

/// The address a datagram goes to; names are resolved once per association.
async fn destination(addr: &TargetAddr, memory: &mut Destinations) -> Option<SocketAddr> {
    match addr {
        TargetAddr::Ip(sa) => Some(canonical(*sa)),
        TargetAddr::Domain(name, port) => {
            let key = (name.clone(), *port);
            if let Some(found) = memory.names.get(&key) {
                return *found;
            }
            let resolved =
                timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), *port)))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|mut addrs| addrs.next())
                    .map(canonical);
            if memory.names.len() < REMEMBERED_MAX {
                memory.names.insert(key, resolved);
            }
            resolved
        }
    }
}

/// The rule check for a datagram's destination, remembered per destination: `None` when
/// permitted; `Some(Some(rule))` the first time it is denied (to log), `Some(None)` after.
fn decide(
    config: &Config,
    session: &Session,
    dst: SocketAddr,
    memory: &mut Destinations,
) -> Option<Option<String>> {
    if let Some(known) = memory.seen.get(&dst) {
        return known.denied.then_some(None);
    }
    let verdict =
        outbound::permitted(&config.rules, session.client.ip(), session.user.as_deref(), &[dst])
            .err();
    if memory.seen.len() < REMEMBERED_MAX {
        memory.seen.insert(dst, Seen { denied: verdict.is_some(), contacted: false });
    }
    verdict.map(Some)
}

/// The outbound socket for `dst`'s family, opened on first use.
async fn outbound_socket<'a>(
    dst: SocketAddr,
    v4: &'a mut Option<UdpSocket>,
    v6: &'a mut Option<UdpSocket>,
) -> std::io::Result<&'a UdpSocket> {
    let (slot, any): (&mut Option<UdpSocket>, IpAddr) = match dst {
        SocketAddr::V4(_) => (v4, Ipv4Addr::UNSPECIFIED.into()),
        SocketAddr::V6(_) => (v6, Ipv6Addr::UNSPECIFIED.into()),
    };
    if slot.is_none() {
        *slot = Some(UdpSocket::bind(SocketAddr::new(any, 0)).await?);
    }
    slot.as_ref().ok_or_else(|| std::io::Error::other("no socket"))
}

/// Whichever outbound socket has a datagram waiting; pending while neither exists.
async fn readable_either<'a>(
    v4: &'a Option<UdpSocket>,
    v6: &'a Option<UdpSocket>,
) -> io::Result<&'a UdpSocket> {
    match (v4, v6) {
        (Some(a), Some(b)) => {
            tokio::select! {
                r = a.readable() => r.map(|()| a),
                r = b.readable() => r.map(|()| b),
            }
        }
        (Some(a), None) => a.readable().await.map(|()| a),
        (None, Some(b)) => b.readable().await.map(|()| b),
        (None, None) => std::future::pending().await,
    }
}

/// Completes at `due`; never when there is no idle limit.
async fn idle(due: Option<Instant>) {
    match due {
        Some(due) => sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> TargetAddr {
        TargetAddr::Ip(text.parse().expect("literal"))
    }

    #[test]
    fn declared_source_checks() {
        let client: IpAddr = "192.0.2.7".parse().expect("literal");
        let locked = |port| Ok(Source { ip: client, port });
        // Authenticated: a port is required; the address may be left unspecified.
        assert_eq!(declared_source(&ip("0.0.0.0:5353"), client, true), locked(Some(5353)));
        assert_eq!(declared_source(&ip("[::]:5353"), client, true), locked(Some(5353)));
        assert_eq!(declared_source(&ip("192.0.2.7:5353"), client, true), locked(Some(5353)));
        assert_eq!(declared_source(&ip("[::ffff:192.0.2.7]:53"), client, true), locked(Some(53)));
        assert!(declared_source(&ip("0.0.0.0:0"), client, true).is_err());
        assert!(declared_source(&ip("192.0.2.7:0"), client, true).is_err());
        let name = TargetAddr::Domain("ws.example".into(), 5353);
        assert!(declared_source(&name, client, true).is_err());
        // Unauthenticated: no port is the weaker mode.
        assert_eq!(declared_source(&ip("0.0.0.0:0"), client, false), locked(None));
        assert_eq!(declared_source(&name, client, false), locked(None));
        assert_eq!(declared_source(&ip("0.0.0.0:9"), client, false), locked(Some(9)));
        // Another address is refused either way.
        for authenticated in [false, true] {
            let err = declared_source(&ip("192.0.2.8:5353"), client, authenticated);
            assert!(err.is_err_and(|e| e.contains("192.0.2.8:5353")));
            assert!(declared_source(&ip("192.0.2.8:0"), client, authenticated).is_err());
        }
    }

    #[test]
    fn source_admits_only_its_socket() {
        let mut exact = Source { ip: "192.0.2.7".parse().expect("literal"), port: Some(5353) };
        assert!(exact.admit("192.0.2.7:5353".parse().expect("literal")));
        assert!(!exact.admit("192.0.2.7:5354".parse().expect("literal")));
        assert!(!exact.admit("192.0.2.8:5353".parse().expect("literal")));
        assert_eq!(exact.to_string(), "192.0.2.7:5353");
        // The weaker mode: the first datagram from the address sets the port.
        let mut learning = Source { ip: "2001:db8::7".parse().expect("literal"), port: None };
        assert_eq!(learning.to_string(), "[2001:db8::7]:first-datagram");
        assert!(!learning.admit("[2001:db8::8]:40000".parse().expect("literal")));
        assert!(learning.admit("[2001:db8::7]:40000".parse().expect("literal")));
        assert!(!learning.admit("[2001:db8::7]:40001".parse().expect("literal")));
        assert_eq!(learning.port, Some(40000));
    }
}
