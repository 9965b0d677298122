//! Reaching a destination on a client's behalf: resolving a requested name, keeping only the
//! addresses the rule file permits for this client, and connecting to them in turn within one
//! deadline. Failures come back as the RFC 1928 reason to reply with, plus a message to log.
//!
//! Not here: replying to the client or relaying (see `session` and `relay`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socks_proto::rules::{is_loopback, is_unspecified, Action, Request as RuleRequest, RuleSet};
use socks_proto::{Failure, TargetAddr};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// A failed step: what to reply and what to log.
#[derive(Debug)]
pub struct Refusal {
    /// The reply reason.
    pub failure: Failure,
    /// The log text.
    pub message: String,
    /// Whether this was a local resource shortage (logged as a resource failure).
    pub resource: bool,
}

impl Refusal {
    fn new(failure: Failure, message: String) -> Refusal {
        Refusal { failure, message, resource: false }
    }
}

/// The addresses a target stands for: itself, or the resolved name (all families, resolver
/// order), within `deadline`.
pub async fn resolve(target: &TargetAddr, deadline: Instant) -> Result<Vec<SocketAddr>, Refusal> {
    let (name, port) = match target {
        TargetAddr::Ip(sa) => return Ok(vec![canonical(*sa)]),
        TargetAddr::Domain(name, port) => (name.as_str(), *port),
    };
    let shown = crate::session::printable(name);
    match timeout_at(deadline, tokio::net::lookup_host((name, port))).await {
        Err(_) => Err(Refusal::new(
            Failure::HostUnreachable,
            format!("cannot resolve {shown}: timed out"),
        )),
        Ok(Err(e)) => {
            Err(Refusal::new(Failure::HostUnreachable, format!("cannot resolve {shown}: {e}")))
        }
        Ok(Ok(addrs)) => {
            let mut list: Vec<SocketAddr> = Vec::new();
            for sa in addrs.map(canonical) {
                if !list.contains(&sa) {
                    list.push(sa);
                }
            }
            if list.is_empty() {
                Err(Refusal::new(
                    Failure::HostUnreachable,
                    format!("cannot resolve {shown}: no addresses"),
                ))
            } else {
                Ok(list)
            }
        }
    }
}

/// The rule check: the addresses this client may reach, or the denial naming the deciding rule
/// (`FILE:LINE`; `unspecified` for 0.0.0.0/8 or `::`, refused before any rule; `default` when no
/// line matched, with a hint when the destination was loopback or this host) for the first
/// address. Addresses of this host are told apart with [`is_own_address`].
pub fn permitted(
    rules: &RuleSet,
    client: IpAddr,
    user: Option<&str>,
    addrs: &[SocketAddr],
) -> Result<Vec<SocketAddr>, String> {
    let mut allowed = Vec::new();
    let mut first_denial = None;
    for addr in addrs {
        let request = RuleRequest { src: client, dst: addr.ip(), port: addr.port(), user };
        // Being one of the host's own addresses only narrows which `permit` lines match, so a
        // denial by a rule stands either way: the kernel is asked (a socket per address) only
        // when the answer can change the decision, or the hint of the denial that is logged.
        let mut decision = rules.decide_on_host(&request, false);
        let matters = decision.action == Action::Permit
            || (decision.rule.is_none() && first_denial.is_none());
        let own = matters
            && !is_loopback(addr.ip())
            && !is_unspecified(addr.ip())
            && is_own_address(addr.ip());
        if own {
            decision = rules.decide_on_host(&request, true);
        }
        if decision.action == Action::Permit {
            allowed.push(*addr);
        } else if first_denial.is_none() {
            first_denial = Some(match decision.rule {
                Some(rule) => format!("{}:{}", rules.file, rule.line),
                None if decision.unspecified => "unspecified".to_string(),
                None if is_loopback(addr.ip()) => {
                    "default (loopback needs a permit naming it)".to_string()
                }
                None if own => "default (this host's address needs a permit naming it)".to_string(),
                None => "default".to_string(),
            });
        }
    }
    if allowed.is_empty() {
        Err(first_denial.unwrap_or_else(|| "default".into()))
    } else {
        Ok(allowed)
    }
}

/// Whether `ip` is one of this host's own addresses (an interface's, not loopback): a connection
/// to it would stay on this host. Asked of the kernel's routing without sending anything: a UDP
/// socket "connected" to `ip` gets as its source the address the route names, which for a
/// local route is `ip` itself and for any other route one of our own addresses, never `ip`.
/// When no socket can be had (out of descriptors) the answer is yes, so a permit must name the
/// address; the connection that follows would fail anyway. No route means not ours.
pub fn is_own_address(ip: IpAddr) -> bool {
    let any: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let Ok(probe) = std::net::UdpSocket::bind(SocketAddr::new(any, 0)) else {
        return true;
    };
    // The port does not matter: connect on UDP only looks up the route.
    if probe.connect(SocketAddr::new(ip, 9)).is_err() {
        return false;
    }
    probe.local_addr().is_ok_and(|local| local.ip() == ip)
}

/// Connects to the first address that answers, trying each in turn until `deadline`; returns
/// the connection and the address it reached (so no getpeername(2) is needed to log it).
pub async fn connect_any(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), Refusal> {
    let mut last = None;
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok((stream, *addr)),
            Ok(Err(e)) => last = Some((*addr, e)),
            Err(_) => {
                let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                last = Some((*addr, e));
                break;
            }
        }
    }
    let Some((addr, error)) = last else {
        return Err(Refusal::new(Failure::General, "no address to connect to".into()));
    };
    let mut refusal = Refusal::new(failure_for(&error), format!("connect to {addr}: {error}"));
    refusal.resource = is_resource_shortage(&error);
    Err(refusal)
}

/// The RFC 1928 reply for a failed connect.
pub fn failure_for(error: &io::Error) -> Failure {
    match error.raw_os_error() {
        Some(libc::ECONNREFUSED) => Failure::Refused,
        Some(libc::ENETUNREACH) | Some(libc::ENETDOWN) => Failure::NetworkUnreachable,
        Some(libc::EHOSTUNREACH) | Some(libc::EHOSTDOWN) | Some(libc::ETIMEDOUT) => {
            Failure::HostUnreachable
        }
        Some(libc::EACCES) | Some(libc::EPERM) => Failure::NotAllowed,
        Some(libc::EAFNOSUPPORT) => Failure::AddressTypeNotSupported,
        _ if error.kind() == io::ErrorKind::TimedOut => Failure::HostUnreachable,
        _ => Failure::General,
    }
}

/// Whether an error means this host ran out of something (descriptors, memory, buffers).
pub fn is_resource_shortage(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// IPv4-mapped IPv6 addresses as plain IPv4, so rules and logs see one form.
pub fn canonical(sa: SocketAddr) -> SocketAddr {
    SocketAddr::new(sa.ip().to_canonical(), sa.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_by_route() {
        assert!(is_own_address(Ipv4Addr::LOCALHOST.into()), "127.0.0.1 routes to itself");
        // 127.0.0.5 is on this host too, but its local route's source is 127.0.0.1: loopback
        // is handled by the rules themselves, this only has to be right for other addresses.
        // The address this host would send from toward the outside is one of its own (a UDP
        // connect only looks up the route; nothing is sent). No route: nothing to check.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").expect("a socket");
        if probe.connect("203.0.113.254:9").is_ok() {
            let mine = probe.local_addr().expect("local address").ip();
            assert!(is_own_address(mine), "{mine} is this host's source address");
        }
        // Documentation addresses are nobody's here (the unit tests run outside any lab).
        for far in ["203.0.113.254", "2001:db8::fe"] {
            assert!(!is_own_address(far.parse().expect("literal")), "{far}");
        }
    }
}
