//! Socket addresses as the bytes a program passes to `connect`: parsing the copy read from its
//! memory, and building the bytes for addresses the supervisor connects to. Layouts from
//! `<netinet/in.h>`: sockaddr_in (16 bytes) and sockaddr_in6 (28 bytes), family in host order,
//! port and address in network order.
//!
//! Not here: reading the program's memory (`sys::read_memory`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The address family at the start of `bytes` (0 = AF_UNSPEC; `None` when shorter than 2).
pub fn family(bytes: &[u8]) -> Option<i32> {
    Some(i32::from(u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?])))
}

/// An AF_INET/AF_INET6 address, or `None` (another family, or too short for its family).
pub fn parse(bytes: &[u8]) -> Option<SocketAddr> {
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match family(bytes)? {
        libc::AF_INET if bytes.len() >= 16 => {
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port(bytes))))
        }
        libc::AF_INET6 if bytes.len() >= 24 => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&bytes[8..24]);
            let flow = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let scope = match bytes.get(24..28) {
                Some(s) => u32::from_ne_bytes([s[0], s[1], s[2], s[3]]),
                None => 0,
            };
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port(bytes), flow, scope)))
        }
        _ => None,
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The sockaddr bytes of `addr`.
pub fn bytes(addr: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    match addr {
        SocketAddr::V4(a) => {
            out.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&[0; 8]);
        }
        SocketAddr::V6(a) => {
            out.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&a.flowinfo().to_be_bytes());
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.scope_id().to_ne_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_short_input() {
        for text in ["198.51.100.2:80", "[2001:db8::1]:443", "[::ffff:192.0.2.1]:1080"] {
            let addr: SocketAddr = text.parse().expect("literal");
            let b = bytes(addr);
            assert_eq!(b.len(), if addr.is_ipv4() { 16 } else { 28 });
            assert_eq!(parse(&b), Some(addr));
            for cut in 0..b.len() {
                let short = parse(&b[..cut]);
                assert!(short.is_none() || (addr.is_ipv6() && cut >= 24), "{text} cut {cut}");
            }
        }
        // 198.51.100.2:80 by hand: family 2 (little-endian host), port 0x0050, address.
        let v4 = [2, 0, 0, 0x50, 198, 51, 100, 2, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&v4), Some("198.51.100.2:80".parse().expect("literal")));
        assert_eq!(family(&[1, 0, b'/']), Some(libc::AF_UNIX));
        assert_eq!(parse(&[1, 0, b'/']), None);
        assert_eq!(family(&[2]), None);
    }
}
