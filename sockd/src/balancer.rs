//! sockd behind a load balancer (HAProxy and the like): the sources that must open every
//! connection with a PROXY protocol header (`--accept-proxy-protocol CIDR`), reading that
//! header before the SOCKS handshake so the address it carries becomes the client's for
//! everything after (rules, per-client limits, logs, the UDP client lock, the login slow-down),
//! and the address UDP ASSOCIATE replies name (`--udp-advertise ADDR`).
//!
//! A connection from a listed source without a header, with a malformed or truncated one, or
//! without one within the handshake timeout is logged and closed before anything is relayed.
//! A header from any other source is never looked for: those bytes go to the SOCKS handshake,
//! which refuses them as a bad request. A v2 LOCAL header (the balancer's health check) or a
//! v1 UNKNOWN header is served as a connection from the balancer itself.
//!
//! Not here: the header's byte format (socks-proto `proxy_protocol`), the SOCKS session
//! (`session`), the UDP relay (`udp`). The settings are fixed at start (like `relay`'s), so the
//! accept loops and the UDP relay read them without a context field.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use log::{debug, info};
use socks_proto::proxy_protocol::{parse, HeaderError, Parsed, ProxyHeader};
use socks_proto::rules::Net;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::outbound::canonical;
use crate::{session, Context};

/// `--accept-proxy-protocol` and `--udp-advertise`, fixed for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Sources whose connections start with a PROXY protocol header.
    pub trusted: Vec<Cidr>,
    /// The address named in UDP ASSOCIATE replies, at most one per family.
    pub advertise: Vec<IpAddr>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Puts the settings in place (once, at start; a second call changes nothing).
pub fn configure(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> &'static Settings {
    static NONE: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get().unwrap_or_else(|| NONE.get_or_init(Settings::default))
}

impl Settings {
    /// Checks what clap cannot: at most one `--udp-advertise` address per family.
    pub fn validate(&self) -> Result<(), String> {
        let v4 = self.advertise.iter().filter(|ip| ip.is_ipv4()).count();
        let v6 = self.advertise.len() - v4;
        if v4 > 1 || v6 > 1 {
            return Err("--udp-advertise: at most one IPv4 and one IPv6 address".into());
        }
        if let Some(ip) = self.advertise.iter().find(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(format!("--udp-advertise {ip}: not an address a client can send to"));
        }
        Ok(())
    }

    /// What `--check` prints about these options, one `#` comment line each.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.trusted.is_empty() {
            let list: Vec<String> = self.trusted.iter().map(|c| c.text.clone()).collect();
            lines.push(format!(
                "# accept-proxy-protocol: connections from {} must start with a PROXY protocol \
                 header (v1 or v2); the client address it carries is used for rules, limits and \
                 logs; LOCAL/UNKNOWN headers are served as the balancer itself",
                list.join(", ")
            ));
        }
        for ip in &self.advertise {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            lines.push(format!(
                "# udp-advertise: UDP ASSOCIATE replies name {ip} for {family} relays (bound there \
                 when it is a local address, else to every local address)"
            ));
        }
        lines
    }
}

/// An `--accept-proxy-protocol` source: `ADDR` or `ADDR/PREFIX`, IPv4 or IPv6.
#[derive(Debug, Clone)]
pub struct Cidr {
    net: Net,
    text: String,
}

impl Cidr {
    /// Whether `ip` (IPv4-mapped counts as IPv4) is in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net.matches(ip)
    }
}

/// Parses `ADDR[/PREFIX]` (for clap).
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| format!("`{addr}` is not an IP address"))?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(|| format!("`/{p}` is not a prefix length of 0 to {bits}"))?,
    };
    let net = match addr {
        // `Net` reads an IPv4 /0 as "any address of both families"; an IPv4 block is meant.
        IpAddr::V4(v4) => Net::from_prefix(IpAddr::V6(v4.to_ipv6_mapped()), 96 + prefix),
        IpAddr::V6(_) => Net::from_prefix(addr, prefix),
    }
    .ok_or_else(|| format!("`{text}` is not an address block"))?;
    Ok(Cidr { net, text: text.to_string() })
}

/// Whether connections from `peer` must start with a PROXY protocol header.
pub fn expects_header(peer: IpAddr) -> bool {
    settings().trusted.iter().any(|cidr| cidr.contains(peer))
}

/// The address and port a UDP ASSOCIATE reply names for a relay bound at `relay`.
pub fn advertised(relay: SocketAddr) -> SocketAddr {
    let advertise = settings().advertise.iter().find(|ip| ip.is_ipv4() == relay.is_ipv4());
    advertise.map_or(relay, |ip| SocketAddr::new(*ip, relay.port()))
}

/// Opens the UDP relay for a control connection that reached `local`: on that address; or,
/// when an address is advertised for its family, on the advertised address if it is one of
/// this host's (replies then come from the address the client sends to), else (NAT: the
/// advertised address is translated to this host) on every local address of the family.
pub async fn bind_relay(local: IpAddr) -> std::io::Result<UdpSocket> {
    let Some(advertised) = settings().advertise.iter().find(|ip| ip.is_ipv4() == local.is_ipv4())
    else {
        return UdpSocket::bind(SocketAddr::new(local, 0)).await;
    };
    match UdpSocket::bind(SocketAddr::new(*advertised, 0)).await {
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            let any = if local.is_ipv4() {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            };
            UdpSocket::bind(SocketAddr::new(any, 0)).await
        }
        bound => bound,
    }
}

/// The client of a session as the logs name it: its address, and the balancer it came through.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address (the one the PROXY header carried, or the connection's own).
    pub addr: SocketAddr,
    /// The balancer whose connection carried it, if any.
    pub balancer: Option<SocketAddr>,
}

impl Peer {
    /// A client connected directly.
    pub fn direct(addr: SocketAddr) -> Peer {
        Peer { addr: canonical(addr), balancer: None }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if let Some(balancer) = self.balancer {
            write!(f, " balancer={balancer}")?;
        }
        Ok(())
    }
}

/// Why no header was read.
#[derive(Debug)]
enum NoHeader {
    /// The balancer closed (or reset) after `received` bytes.
    Closed { received: usize, error: Option<std::io::Error> },
    /// The bytes are not a header.
    Malformed(HeaderError),
}

/// Reads the header and nothing after it: each read is first peeked and handed to the parser,
/// and only the bytes that belong to the header are taken (the rest is the SOCKS handshake).
async fn read_header(stream: &mut TcpStream) -> Result<ProxyHeader, NoHeader> {
    let mut seen = Vec::new();
    let mut peeked = [0u8; 512];
    loop {
        let closed = |received, error| NoHeader::Closed { received, error };
        let n = match stream.peek(&mut peeked).await {
            Ok(0) => return Err(closed(seen.len(), None)),
            Ok(n) => n,
            Err(e) => return Err(closed(seen.len(), Some(e))),
        };
        let before = seen.len();
        seen.extend_from_slice(&peeked[..n]);
        let take = match parse(&seen) {
            Ok(Parsed::Done { header, consumed }) => Ok((header, consumed - before)),
            // Every byte so far is part of the header: take them all and wait for more.
            Ok(Parsed::NeedMore) => Err(n),
            Err(e) => return Err(NoHeader::Malformed(e)),
        };
        let count = match take {
            Ok((_, count)) | Err(count) => count,
        };
        if let Err(e) = stream.read_exact(&mut peeked[..count]).await {
            return Err(closed(before, Some(e)));
        }
        if let Ok((header, _)) = take {
            return Ok(header);
        }
    }
}

/// Reads the header of a connection from `balancer` within the handshake timeout and says who
/// the client is; `None` when the connection must be closed (logged here).
async fn arrive(stream: &mut TcpStream, balancer: SocketAddr, ctx: &Context) -> Option<Peer> {
    let limit = ctx.timeouts.handshake;
    match timeout(limit, read_header(stream)).await {
        Ok(Ok(ProxyHeader::Proxied { source, .. })) => {
            Some(Peer { addr: canonical(source), balancer: Some(balancer) })
        }
        Ok(Ok(header)) => {
            debug!("balancer={balancer} speaks for itself (PROXY header {header:?}, e.g. a health check)");
            Some(Peer { addr: balancer, balancer: None })
        }
        Ok(Err(NoHeader::Closed { received: 0, error: None })) => {
            debug!("balancer={balancer} closed without sending a PROXY header (a TCP check?)");
            None
        }
        Ok(Err(NoHeader::Closed { received, error })) => {
            let why = error.map(|e| format!(": {e}")).unwrap_or_default();
            info!(
                "bad request: balancer={balancer} error=connection closed after {received} \
                 bytes, before a complete PROXY protocol header{why}"
            );
            None
        }
        Ok(Err(NoHeader::Malformed(e))) => {
            info!("bad request: balancer={balancer} error={e}; closed, nothing relayed");
            None
        }
        Err(_) => {
            info!(
                "timeout: balancer={balancer} sent no complete PROXY protocol header within {}s",
                limit.as_secs()
            );
            None
        }
    }
}

/// Serves a connection from a `--accept-proxy-protocol` source (standalone mode): it waits for
/// its header in a handshake place of the balancer's address, then is admitted (and counted)
/// as the client the header names.
pub async fn serve(mut stream: TcpStream, balancer: SocketAddr, ctx: Arc<Context>) {
    let balancer = canonical(balancer);
    let peer = {
        // Refused at the door, and logged (at most once a second), by `admit`.
        let Ok(waiting) = ctx.admit(balancer.ip()) else { return };
        tokio::select! {
            peer = arrive(&mut stream, balancer, &ctx) => peer,
            () = waiting.evicted() => {
                info!("evicted: balancer={balancer} had not sent its PROXY header; closed to make room (--max-handshakes {})", ctx.limits.max_handshakes);
                None
            }
        }
    };
    let Some(peer) = peer else { return };
    let Ok(admitted) = ctx.admit(peer.addr.ip()) else { return };
    session::serve_from(stream, peer, ctx, Some(admitted)).await;
}

/// Serves the one connection of inetd mode, reading the header first when its source is listed.
pub async fn serve_unadmitted(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let peer = canonical(peer);
    if !expects_header(peer.ip()) {
        return session::serve_from(stream, Peer::direct(peer), ctx, None).await;
    }
    if let Some(client) = arrive(&mut stream, peer, &ctx).await {
        session::serve_from(stream, client, ctx, None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("literal")
    }

    #[test]
    fn blocks_of_either_family() {
        let lan = parse_cidr("10.1.0.0/16").expect("valid");
        assert!(lan.contains(ip("10.1.200.3")) && lan.contains(ip("::ffff:10.1.0.1")));
        assert!(!lan.contains(ip("10.2.0.1")) && !lan.contains(ip("::1")));
        let all_v4 = parse_cidr("0.0.0.0/0").expect("valid");
        assert!(all_v4.contains(ip("192.0.2.1")) && !all_v4.contains(ip("2001:db8::1")));
        let host = parse_cidr("2001:db8::5").expect("valid");
        assert!(host.contains(ip("2001:db8::5")) && !host.contains(ip("2001:db8::6")));
        assert!(parse_cidr("2001:db8::/32").expect("valid").contains(ip("2001:db8:1::9")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", "10.0.0.0/-1"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_advertised_address_per_family() {
        let settings = |advertise: &[&str]| Settings {
            trusted: Vec::new(),
            advertise: advertise.iter().map(|a| ip(a)).collect(),
        };
        assert!(settings(&["192.0.2.1", "2001:db8::1"]).validate().is_ok());
        assert!(settings(&["192.0.2.1", "192.0.2.2"]).validate().is_err());
        assert!(settings(&["0.0.0.0"]).validate().is_err());
        assert!(settings(&["224.0.0.1"]).validate().is_err());
    }

    #[test]
    fn peers_name_their_balancer() {
        let client: SocketAddr = "192.0.2.7:5000".parse().expect("literal");
        let balancer: SocketAddr = "10.0.0.1:40000".parse().expect("literal");
        assert_eq!(Peer::direct(client).to_string(), "192.0.2.7:5000");
        let via = Peer { addr: client, balancer: Some(balancer) };
        assert_eq!(via.to_string(), "192.0.2.7:5000 balancer=10.0.0.1:40000");
    }
}
