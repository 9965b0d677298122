//! UDP ASSOCIATE (RFC 1928 section 7): a UDP relay for one client, alive as long as its TCP
//! control connection (or until the idle timeout). The relay socket listens on the address the
//! client reached sockd on and takes datagrams only from the client's address (and port, once
//! known); each datagram's destination is checked against the rules like a CONNECT, and replies
//! come back wrapped in the SOCKS5 UDP header with their real source. Fragments (FRAG != 0) are
//! dropped, as RFC 1928 allows an implementation without reassembly to do.
//!
//! Not here: the TCP handshake (`session`), the rule language.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use log::info;
use socks_proto::server::Request;
use socks_proto::udp::{decode_datagram, encode_header, UdpHeader};
use socks_proto::{Failure, TargetAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{sleep_until, timeout, Instant};

use crate::outbound::{self, canonical};
use crate::session::{refuse, Session};
use crate::{Config, Context};

/// Largest datagram handled (the IPv4 UDP maximum payload plus room).
const DATAGRAM_MAX: usize = 65_536;
/// Destinations remembered per association (decisions, names, who may answer).
const REMEMBERED_MAX: usize = 4096;
/// How long a name in a datagram may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The per-association memory of destinations.
struct Destinations {
    /// Rule decisions: `None` = permitted, `Some(rule)` = denied by that rule.
    decided: HashMap<SocketAddr, Option<String>>,
    /// Names already resolved.
    names: HashMap<(String, u16), Option<SocketAddr>>,
    /// Who the client sent to, hence who may answer.
    contacted: HashSet<SocketAddr>,
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
    // DST names where the client will send from; zeros (or a name) mean "not known yet".
    let mut client_port = match &request.dst {
        TargetAddr::Ip(sa) if sa.port() != 0 => Some(sa.port()),
        _ => None,
    };
    let relay = match client.local_addr() {
        Ok(local) => UdpSocket::bind(SocketAddr::new(local.ip().to_canonical(), 0)).await,
        Err(e) => Err(e),
    };
    let (relay, relay_addr) = match relay.and_then(|r| r.local_addr().map(|a| (r, a))) {
        Ok(found) => found,
        Err(e) => {
            info!("failed: {session} error=cannot open the UDP relay: {e}");
            return refuse(client, request, Failure::General).await;
        }
    };
    let mut reply = Vec::new();
    request.encode_reply(Ok(relay_addr), &mut reply);
    if client.write_all(&reply).await.is_err() {
        return;
    }
    info!("udp: {session} relay on {relay_addr}");
    let started = Instant::now();
    let mut outbound_v4: Option<UdpSocket> = None;
    let mut outbound_v6: Option<UdpSocket> = None;
    let mut destinations =
        Destinations { decided: HashMap::new(), names: HashMap::new(), contacted: HashSet::new() };
    let mut counts = Counts::default();
    let mut from_client = vec![0u8; DATAGRAM_MAX];
    let mut from_remote = vec![0u8; DATAGRAM_MAX];
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
            received = relay.recv_from(&mut from_client) => {
                let Ok((n, from)) = received else { continue };
                let from = canonical(from);
                if from.ip() != client_ip || client_port.is_some_and(|p| p != from.port()) {
                    counts.dropped_foreign += 1;
                    continue;
                }
                client_port.get_or_insert(from.port());
                last_activity = Instant::now();
                let (header, payload) = match decode_datagram(&from_client[..n]) {
                    Ok(parts) => parts,
                    Err(_) => {
                        counts.dropped_malformed += 1;
                        continue;
                    }
                };
                if header.frag != 0 {
                    counts.dropped_fragments += 1;
                    continue;
                }
                let Some(dst) = destination(&header.addr, &mut destinations).await else {
                    counts.dropped_unanswerable += 1;
                    continue;
                };
                if let Some(rule) = decide(config, session, dst, &mut destinations) {
                    counts.dropped_denied += 1;
                    if let Some(rule) = rule {
                        info!("denied: {session} udp-dst={dst} rule={rule}");
                    }
                    continue;
                }
                let socket = match outbound_socket(dst, &mut outbound_v4, &mut outbound_v6).await {
                    Ok(socket) => socket,
                    Err(e) => {
                        info!("failed: {session} udp-dst={dst} error=cannot open a UDP socket: {e}");
                        counts.dropped_unanswerable += 1;
                        continue;
                    }
                };
                if destinations.contacted.len() < REMEMBERED_MAX {
                    destinations.contacted.insert(dst);
                }
                if socket.send_to(payload, dst).await.is_ok() {
                    counts.sent_datagrams += 1;
                    counts.sent_bytes += payload.len() as u64;
                }
            }
            received = recv_either(&outbound_v4, &outbound_v6, &mut from_remote) => {
                let Ok((n, from)) = received else { continue };
                let from = canonical(from);
                let Some(port) = client_port else { continue };
                if !destinations.contacted.contains(&from) {
                    counts.dropped_foreign += 1;
                    continue;
                }
                last_activity = Instant::now();
                let mut datagram = Vec::with_capacity(n + 22);
                let header = UdpHeader { frag: 0, addr: TargetAddr::Ip(from) };
                if encode_header(&header, &mut datagram).is_err() {
                    continue;
                }
                datagram.extend_from_slice(&from_remote[..n]);
                if relay.send_to(&datagram, SocketAddr::new(client_ip, port)).await.is_ok() {
                    counts.received_datagrams += 1;
                    counts.received_bytes += n as u64;
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
    if let Some(known) = memory.decided.get(&dst) {
        return known.as_ref().map(|_| None);
    }
    let verdict =
        outbound::permitted(&config.rules, session.client.ip(), session.user.as_deref(), &[dst])
            .err();
    if memory.decided.len() < REMEMBERED_MAX {
        memory.decided.insert(dst, verdict.clone());
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

/// A datagram from whichever outbound socket has one; pending while neither exists.
async fn recv_either(
    v4: &Option<UdpSocket>,
    v6: &Option<UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match (v4, v6) {
        (Some(a), Some(b)) => {
            tokio::select! {
                r = a.readable() => { r?; a.try_recv_from(buf) }
                r = b.readable() => { r?; b.try_recv_from(buf) }
            }
        }
        (Some(a), None) => a.recv_from(buf).await,
        (None, Some(b)) => b.recv_from(buf).await,
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
