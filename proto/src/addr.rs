//! The destination of a SOCKS request: an IP socket address or a host name with a port, and the
//! address encoding SOCKS5 uses for it (ATYP + address + port, RFC 1928 section 5).
//!
//! Not here: name resolution (callers resolve) and SOCKS4 addresses (fixed 4 bytes, see `v4`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::ProtoError;

/// RFC 1928 section 5: ATYP X'01' IP V4 address.
pub const ATYP_IPV4: u8 = 0x01;
/// RFC 1928 section 5: ATYP X'03' DOMAINNAME, one length octet then the name, no NUL.
pub const ATYP_DOMAIN: u8 = 0x03;
/// RFC 1928 section 5: ATYP X'04' IP V6 address.
pub const ATYP_IPV6: u8 = 0x04;

/// Longest host name a SOCKS4a or SOCKS5 request may carry (one length octet in SOCKS5).
pub const MAX_NAME_LEN: usize = 255;

/// Where a client wants to go (or, in replies, where the server is bound).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// A numeric address.
    Ip(SocketAddr),
    /// A host name the server resolves, with a port.
    Domain(String, u16),
}

impl TargetAddr {
    /// The port of either form.
    pub fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(sa) => sa.port(),
            TargetAddr::Domain(_, port) => *port,
        }
    }

    /// The IP address when the target is numeric.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            TargetAddr::Ip(sa) => Some(sa.ip()),
            TargetAddr::Domain(..) => None,
        }
    }

    /// The all-zero IPv4 address and port 0, which RFC 1928 uses for "unknown".
    pub fn unspecified() -> TargetAddr {
        TargetAddr::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }

    /// Appends ATYP, address and port in SOCKS5 form. A name longer than 255 bytes is an error.
    pub fn encode_socks5(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        match self {
            TargetAddr::Ip(SocketAddr::V4(sa)) => {
                out.push(ATYP_IPV4);
                out.extend_from_slice(&sa.ip().octets());
            }
            TargetAddr::Ip(SocketAddr::V6(sa)) => {
                out.push(ATYP_IPV6);
                out.extend_from_slice(&sa.ip().octets());
            }
            TargetAddr::Domain(name, _) => {
                check_name(name.as_bytes())?;
                out.push(ATYP_DOMAIN);
                // check_name bounded the length to 255, so it fits one octet.
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
            }
        }
        out.extend_from_slice(&self.port().to_be_bytes());
        Ok(())
    }

    /// Decodes ATYP, address and port in SOCKS5 form from the start of `buf`.
    /// `Ok(None)` means more bytes are needed; on success, also returns the bytes used.
    pub fn decode_socks5(buf: &[u8]) -> Result<Option<(TargetAddr, usize)>, ProtoError> {
        let Some(&atyp) = buf.first() else {
            return Ok(None);
        };
        let (addr_len, start) = match atyp {
            ATYP_IPV4 => (4, 1),
            ATYP_IPV6 => (16, 1),
            ATYP_DOMAIN => match buf.get(1) {
                None => return Ok(None),
                Some(0) => return Err(ProtoError::EmptyName),
                Some(&n) => (usize::from(n), 2),
            },
            other => return Err(ProtoError::BadAddressType(other)),
        };
        let total = start + addr_len + 2;
        if buf.len() < total {
            return Ok(None);
        }
        let raw = &buf[start..start + addr_len];
        let port = u16::from_be_bytes([buf[total - 2], buf[total - 1]]);
        let target = match atyp {
            ATYP_IPV4 => {
                let octets: [u8; 4] =
                    raw.try_into().map_err(|_| ProtoError::BadAddressType(atyp))?;
                TargetAddr::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port))
            }
            ATYP_IPV6 => {
                let octets: [u8; 16] =
                    raw.try_into().map_err(|_| ProtoError::BadAddressType(atyp))?;
                TargetAddr::Ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
            }
            _ => TargetAddr::Domain(name_from_bytes(raw)?, port),
        };
        Ok(Some((target, total)))
    }
}

impl From<SocketAddr> for TargetAddr {
    fn from(sa: SocketAddr) -> Self {
        TargetAddr::Ip(sa)
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(sa) => write!(f, "{sa}"),
            TargetAddr::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// Rejects empty names and names over 255 bytes.
pub(crate) fn check_name(name: &[u8]) -> Result<(), ProtoError> {
    if name.is_empty() {
        Err(ProtoError::EmptyName)
    } else if name.len() > MAX_NAME_LEN {
        Err(ProtoError::TooLong("host name"))
    } else {
        Ok(())
    }
}

/// A host name from the wire: non-empty, at most 255 bytes, no NUL, valid UTF-8.
pub(crate) fn name_from_bytes(raw: &[u8]) -> Result<String, ProtoError> {
    check_name(raw)?;
    if raw.contains(&0) {
        return Err(ProtoError::BadName);
    }
    String::from_utf8(raw.to_vec()).map_err(|_| ProtoError::BadName)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(t: TargetAddr, wire: &[u8]) {
        let mut out = Vec::new();
        t.encode_socks5(&mut out).expect("encodes");
        assert_eq!(out, wire);
        for cut in 0..wire.len() {
            assert_eq!(TargetAddr::decode_socks5(&wire[..cut]), Ok(None), "prefix {cut}");
        }
        let mut longer = wire.to_vec();
        longer.push(0xAA);
        assert_eq!(TargetAddr::decode_socks5(&longer), Ok(Some((t, wire.len()))));
    }

    #[test]
    fn ipv4_round_trip() {
        round_trip(
            "192.0.2.1:80".parse::<SocketAddr>().expect("literal").into(),
            &[0x01, 192, 0, 2, 1, 0x00, 0x50],
        );
    }

    #[test]
    fn ipv6_round_trip() {
        let mut wire = vec![0x04, 0x20, 0x01, 0x0d, 0xb8];
        wire.extend_from_slice(&[0; 11]);
        wire.push(0x01);
        wire.extend_from_slice(&[0x01, 0xbb]);
        round_trip("[2001:db8::1]:443".parse::<SocketAddr>().expect("literal").into(), &wire);
    }

    #[test]
    fn domain_round_trip() {
        let mut wire = vec![0x03, 11];
        wire.extend_from_slice(b"example.com");
        wire.extend_from_slice(&[0x00, 0x15]);
        round_trip(TargetAddr::Domain("example.com".into(), 21), &wire);
    }

    #[test]
    fn rejects_bad_atyp_and_names() {
        assert_eq!(TargetAddr::decode_socks5(&[0x02, 1, 2]), Err(ProtoError::BadAddressType(2)));
        assert_eq!(TargetAddr::decode_socks5(&[0x03, 0, 0, 80]), Err(ProtoError::EmptyName));
        assert_eq!(TargetAddr::decode_socks5(&[0x03, 2, b'a', 0, 0, 80]), Err(ProtoError::BadName));
        let long = TargetAddr::Domain("a".repeat(256), 1);
        assert_eq!(long.encode_socks5(&mut Vec::new()), Err(ProtoError::TooLong("host name")));
    }

    #[test]
    fn display() {
        assert_eq!(TargetAddr::Domain("h".into(), 7).to_string(), "h:7");
        let v6: TargetAddr = "[::1]:7".parse::<SocketAddr>().expect("literal").into();
        assert_eq!(v6.to_string(), "[::1]:7");
    }
}
