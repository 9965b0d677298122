//! The PROXY protocol header a load balancer (HAProxy, and others) puts in front of the stream
//! it forwards, so that the server learns the real client's address: version 1 (one text line)
//! and version 2 (binary), receiving side only, as specified in HAProxy's `proxy-protocol.txt`.
//!
//! Sans-IO: [`parse`] is given every byte received so far (in whatever pieces they arrived) and
//! says "need more", "done: this header, N bytes used", or what is wrong, as soon as the first
//! wrong byte is there (a SOCKS client talking to a port that expects a header fails on its
//! first byte, not after a timeout). "Need more" is only ever said while every byte given is a
//! prefix of a valid header, so a caller may consume those bytes for good, and the header never
//! claims a byte that follows it. v2 TLVs are skipped (bounded by the length field); a v2 LOCAL
//! header (a balancer's own health check) and a v1 `UNKNOWN` or v2 `UNSPEC`/`UNIX` header carry
//! no address the server could use.
//!
//! Not here: sending headers, sockets, deciding which peers may send one (sockd `balancer`).
//!
//! Written here rather than taken from a crate: `ppp` (crates.io) was looked at; it parses a
//! buffer into a borrowed header model with TLV iterators, but what sockd needs is smaller —
//! the two addresses, the byte count, a decision at the first wrong byte, the 107-byte bound of
//! v1 — and socks-proto stays without dependencies, fuzzed as a whole. The two formats take
//! about a hundred lines.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes that open a v2 header (`proxy-protocol.txt` section 2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version/command, family/transport, length.
pub const V2_FIXED_LEN: usize = 16;
/// The longest v1 line, `PROXY` to CRLF included (section 2.1).
pub const V1_MAX_LEN: usize = 107;
/// The longest header of either version (v2 with the largest length field).
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// What a complete header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied TCP connection: the real client (`source`) and the address it connected to.
    Proxied {
        /// The client's address and port, as the balancer saw it.
        source: SocketAddr,
        /// The address and port the client connected to (the balancer's frontend).
        destination: SocketAddr,
    },
    /// v2 LOCAL: the balancer speaks for itself (a health check); no address.
    Local,
    /// v1 `UNKNOWN`, or v2 PROXY with an unspecified or UNIX family: the balancer could not
    /// say; the connection's own addresses are to be used.
    Unknown,
}

/// The result of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Every byte given is the start of a valid header; read more.
    NeedMore,
    /// A complete header, which used the first `consumed` bytes.
    Done {
        /// What it says.
        header: ProxyHeader,
        /// Its length in bytes; what follows belongs to the proxied stream.
        consumed: usize,
    },
}

/// What was wrong with a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The first bytes are neither `PROXY ` nor the v2 signature: no header at all.
    BadSignature,
    /// v2 with a version nibble other than 2.
    BadVersion(u8),
    /// v2 with a command other than LOCAL (0) or PROXY (1).
    BadCommand(u8),
    /// v2 family/transport byte: an unknown family, or a transport other than TCP.
    BadFamily(u8),
    /// v2 length field too short for the addresses of its family.
    ShortAddresses {
        /// The family/transport byte.
        family: u8,
        /// The length field.
        length: u16,
    },
    /// A v1 line without CRLF within 107 bytes.
    LineTooLong,
    /// A v1 line with a byte that is not printable ASCII, or a lone CR or LF.
    BadByte(u8),
    /// A v1 line that does not have the fields of its protocol.
    BadLine(&'static str),
    /// A v1 field that does not parse (which field, and its text).
    BadField(&'static str, String),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadSignature => write!(f, "no PROXY protocol header (bad signature)"),
            HeaderError::BadVersion(v) => write!(f, "PROXY v2 header with version {v}, not 2"),
            HeaderError::BadCommand(c) => {
                write!(f, "PROXY v2 header with command {c}, not LOCAL (0) or PROXY (1)")
            }
            HeaderError::BadFamily(b) => write!(
                f,
                "PROXY v2 header with family/transport 0x{b:02x} (only TCP over IPv4, IPv6, \
                 UNIX or unspecified)"
            ),
            HeaderError::ShortAddresses { family, length } => write!(
                f,
                "PROXY v2 header length {length} too short for the addresses of family 0x{family:02x}"
            ),
            HeaderError::LineTooLong => {
                write!(f, "PROXY v1 line without CRLF within {V1_MAX_LEN} bytes")
            }
            HeaderError::BadByte(b) => write!(f, "PROXY v1 line with byte 0x{b:02x}"),
            HeaderError::BadLine(why) => write!(f, "PROXY v1 line {why}"),
            HeaderError::BadField(field, text) => {
                write!(f, "PROXY v1 line with bad {field} `{text}`")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

/// Parses the header at the start of `buf` (all bytes received so far).
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    match buf.first() {
        None => Ok(Parsed::NeedMore),
        Some(b'\r') => parse_v2(buf),
        Some(b'P') => parse_v1(buf),
        Some(_) => Err(HeaderError::BadSignature),
    }
}

/// `"\r\n\r\n\0\r\nQUIT\n" | ver_cmd | fam | len[2] | addresses | TLVs`.
fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let signature_seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..signature_seen] != V2_SIGNATURE[..signature_seen] {
        return Err(HeaderError::BadSignature);
    }
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(HeaderError::BadVersion(ver_cmd >> 4));
        }
        if ver_cmd & 0x0f > 1 {
            return Err(HeaderError::BadCommand(ver_cmd & 0x0f));
        }
    }
    let local = buf.get(12).is_some_and(|ver_cmd| ver_cmd & 0x0f == 0);
    // Bytes of addresses the family needs (None: no usable address).
    let needs = |family: u8| -> Result<Option<usize>, HeaderError> {
        match family {
            0x00 => Ok(None),      // AF_UNSPEC, UNSPEC
            0x11 => Ok(Some(12)),  // TCP over IPv4
            0x21 => Ok(Some(36)),  // TCP over IPv6
            0x31 => Ok(Some(216)), // UNIX stream: no IP address
            _ => Err(HeaderError::BadFamily(family)),
        }
    };
    if let (Some(&family), false) = (buf.get(13), local) {
        needs(family)?;
    }
    let (Some(&family), Some(high), Some(low)) = (buf.get(13), buf.get(14), buf.get(15)) else {
        return Ok(Parsed::NeedMore);
    };
    let length = u16::from_be_bytes([*high, *low]);
    if !local {
        if let Some(needed) = needs(family)? {
            if usize::from(length) < needed {
                return Err(HeaderError::ShortAddresses { family, length });
            }
        }
    }
    let consumed = V2_FIXED_LEN + usize::from(length);
    let Some(body) = buf.get(V2_FIXED_LEN..consumed) else {
        return Ok(Parsed::NeedMore);
    };
    let header = match (local, family) {
        (true, _) => ProxyHeader::Local,
        (false, 0x11) => {
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(IpAddr::V4(ip(0)), port(8)),
                destination: SocketAddr::new(IpAddr::V4(ip(4)), port(10)),
            }
        }
        (false, 0x21) => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(IpAddr::V6(ip(0)), port(32)),
                destination: SocketAddr::new(IpAddr::V6(ip(16)), port(34)),
            }
        }
        (false, _) => ProxyHeader::Unknown,
    };
    Ok(Parsed::Done { header, consumed })
}

/// `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN ...\r\n`, at most 107 bytes.
fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    let prefix_seen = buf.len().min(PREFIX.len());
    if buf[..prefix_seen] != PREFIX[..prefix_seen] {
        return Err(HeaderError::BadSignature);
    }
    // The CR can be no later than byte 105, so that CRLF ends within 107 bytes.
    let mut end = None;
    for (at, &byte) in buf.iter().enumerate().take(V1_MAX_LEN - 1) {
        match byte {
            b'\r' => {
                match buf.get(at + 1) {
                    Some(b'\n') => end = Some(at),
                    Some(&other) => return Err(HeaderError::BadByte(other)),
                    None => return Ok(Parsed::NeedMore),
                }
                break;
            }
            0x20..=0x7e => {}
            other => return Err(HeaderError::BadByte(other)),
        }
    }
    let Some(end) = end else {
        return if buf.len() >= V1_MAX_LEN - 1 {
            Err(HeaderError::LineTooLong)
        } else {
            Ok(Parsed::NeedMore)
        };
    };
    // Printable ASCII only (checked above), so the line is UTF-8 and safe to quote.
    let line = String::from_utf8_lossy(&buf[PREFIX.len()..end]);
    let fields: Vec<&str> = line.split(' ').collect();
    let consumed = end + 2;
    match fields[..] {
        ["UNKNOWN", ..] => Ok(Parsed::Done { header: ProxyHeader::Unknown, consumed }),
        [protocol @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = protocol == "TCP4";
            let source = SocketAddr::new(v1_ip(src, v4, "source address")?, v1_port(sport)?);
            let destination =
                SocketAddr::new(v1_ip(dst, v4, "destination address")?, v1_port(dport)?);
            Ok(Parsed::Done { header: ProxyHeader::Proxied { source, destination }, consumed })
        }
        ["TCP4" | "TCP6", ..] => Err(HeaderError::BadLine("without exactly four address fields")),
        [protocol, ..] => {
            Err(HeaderError::BadField("protocol (TCP4, TCP6 or UNKNOWN)", protocol.to_string()))
        }
        [] => Err(HeaderError::BadLine("without a protocol")),
    }
}

/// A v1 address of the line's family, in its usual text form.
fn v1_ip(text: &str, v4: bool, field: &'static str) -> Result<IpAddr, HeaderError> {
    let parsed = if v4 {
        text.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    };
    parsed.ok_or_else(|| HeaderError::BadField(field, text.to_string()))
}

/// A v1 port: decimal digits, no sign and no leading zero, at most 65535.
fn v1_port(text: &str) -> Result<u16, HeaderError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| HeaderError::BadField("port", text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().expect("literal")
    }

    fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn v2_ipv4_body(tlvs: &[u8]) -> Vec<u8> {
        let mut body = vec![192, 0, 2, 7, 10, 0, 0, 1, 0xd4, 0x31, 0x04, 0x38];
        body.extend_from_slice(tlvs);
        body
    }

    fn v2_ipv6_body() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("literal").octets());
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("literal").octets());
        body.extend_from_slice(&[0xd4, 0x31, 0x04, 0x38]);
        body
    }

    /// Every prefix needs more; the whole header (with stream bytes after it) is `expected`,
    /// using exactly its own bytes.
    fn every_split(header: &[u8], expected: ProxyHeader) {
        for cut in 0..header.len() {
            assert_eq!(parse(&header[..cut]), Ok(Parsed::NeedMore), "prefix of {cut} bytes");
        }
        let mut with_stream = header.to_vec();
        with_stream.extend_from_slice(&[5, 1, 0]);
        let done = Parsed::Done { header: expected, consumed: header.len() };
        assert_eq!(parse(header), Ok(done));
        assert_eq!(parse(&with_stream), Ok(done));
    }

    #[test]
    fn v1_tcp4_tcp6_unknown_at_every_split() {
        let proxied = |s: &str, d: &str| ProxyHeader::Proxied { source: sa(s), destination: sa(d) };
        every_split(
            b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 1080\r\n",
            proxied("192.0.2.7:54321", "10.0.0.1:1080"),
        );
        every_split(
            b"PROXY TCP6 2001:db8::7 2001:db8::1 54321 1080\r\n",
            proxied("[2001:db8::7]:54321", "[2001:db8::1]:1080"),
        );
        every_split(b"PROXY UNKNOWN\r\n", ProxyHeader::Unknown);
        every_split(b"PROXY UNKNOWN ffff:: ffff:: 65535 65535\r\n", ProxyHeader::Unknown);
        every_split(
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 0\r\n",
            proxied("255.255.255.255:65535", "255.255.255.255:0"),
        );
    }

    #[test]
    fn v2_ipv4_ipv6_local_unknown_and_tlvs_at_every_split() {
        let v4 = ProxyHeader::Proxied {
            source: sa("192.0.2.7:54321"),
            destination: sa("10.0.0.1:1080"),
        };
        every_split(&v2(0x21, 0x11, &v2_ipv4_body(&[])), v4);
        // TLVs (ALPN, a NOOP padding, an unknown type) are skipped.
        let tlvs = [0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x03, 0, 0, 0, 0xee, 0x00, 0x00];
        every_split(&v2(0x21, 0x11, &v2_ipv4_body(&tlvs)), v4);
        every_split(
            &v2(0x21, 0x21, &v2_ipv6_body()),
            ProxyHeader::Proxied {
                source: sa("[2001:db8::7]:54321"),
                destination: sa("[2001:db8::1]:1080"),
            },
        );
        // LOCAL: whatever family and body, no address (HAProxy sends family 0, length 0).
        every_split(&v2(0x20, 0x00, &[]), ProxyHeader::Local);
        every_split(&v2(0x20, 0x11, &v2_ipv4_body(&[])), ProxyHeader::Local);
        every_split(&v2(0x21, 0x00, &[]), ProxyHeader::Unknown);
        every_split(&v2(0x21, 0x31, &[0; 216]), ProxyHeader::Unknown);
    }

    #[test]
    fn garbage_fails_at_its_first_byte() {
        // A SOCKS5 greeting, a SOCKS4 request, an HTTP request: not a header.
        assert_eq!(parse(&[5, 1, 0]), Err(HeaderError::BadSignature));
        assert_eq!(parse(&[4, 1, 0, 80]), Err(HeaderError::BadSignature));
        assert_eq!(parse(b"GET / HTTP/1.0\r\n"), Err(HeaderError::BadSignature));
        assert_eq!(parse(b"PROXZ"), Err(HeaderError::BadSignature));
        assert_eq!(parse(b"PROXY\r\n"), Err(HeaderError::BadSignature));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIT\r"), Err(HeaderError::BadSignature));
        assert_eq!(parse(b"\r\r"), Err(HeaderError::BadSignature));
    }

    #[test]
    fn v2_bad_version_command_family_length() {
        let mut bad = V2_SIGNATURE.to_vec();
        bad.push(0x11);
        assert_eq!(parse(&bad), Err(HeaderError::BadVersion(1)));
        bad[12] = 0x22;
        assert_eq!(parse(&bad), Err(HeaderError::BadCommand(2)));
        bad[12] = 0x21;
        bad.push(0x12);
        assert_eq!(parse(&bad), Err(HeaderError::BadFamily(0x12)), "UDP is not served");
        bad[13] = 0x41;
        assert_eq!(parse(&bad), Err(HeaderError::BadFamily(0x41)));
        let short = v2(0x21, 0x11, &[0; 11]);
        assert_eq!(
            parse(&short[..16]),
            Err(HeaderError::ShortAddresses { family: 0x11, length: 11 }),
            "known as soon as the length is"
        );
        assert_eq!(
            parse(&v2(0x21, 0x21, &[0; 35])),
            Err(HeaderError::ShortAddresses { family: 0x21, length: 35 })
        );
    }

    #[test]
    fn v2_length_bounds_the_header() {
        // The length field says 0xffff: need more until all of it is there, never beyond.
        let mut big = v2(0x21, 0x11, &v2_ipv4_body(&[]));
        big[14..16].copy_from_slice(&[0xff, 0xff]);
        big.resize(MAX_HEADER_LEN - 1, 0);
        assert_eq!(parse(&big), Ok(Parsed::NeedMore));
        big.push(0);
        big.push(9);
        assert!(matches!(parse(&big), Ok(Parsed::Done { consumed: MAX_HEADER_LEN, .. })));
    }

    #[test]
    fn v1_bad_lines() {
        let long = format!("PROXY UNKNOWN {}", "x".repeat(V1_MAX_LEN));
        assert_eq!(parse(long.as_bytes()), Err(HeaderError::LineTooLong));
        assert_eq!(
            parse(&long.as_bytes()[..V1_MAX_LEN - 1]),
            Err(HeaderError::LineTooLong),
            "106 bytes without CR cannot end within 107"
        );
        assert_eq!(parse(&long.as_bytes()[..V1_MAX_LEN - 2]), Ok(Parsed::NeedMore));
        let mut exactly = format!("PROXY UNKNOWN {}", "x".repeat(V1_MAX_LEN - 16)).into_bytes();
        exactly.extend_from_slice(b"\r\n");
        assert_eq!(exactly.len(), V1_MAX_LEN);
        assert_eq!(
            parse(&exactly),
            Ok(Parsed::Done { header: ProxyHeader::Unknown, consumed: V1_MAX_LEN })
        );
        let mut over = exactly.clone();
        over.insert(20, b'x');
        assert_eq!(parse(&over), Err(HeaderError::LineTooLong));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4\n"), Err(HeaderError::BadByte(b'\n')));
        assert_eq!(parse(b"PROXY TCP4\r1"), Err(HeaderError::BadByte(b'1')));
        assert_eq!(parse(b"PROXY TCP4 \xc3\xa9"), Err(HeaderError::BadByte(0xc3)));
        let field = |line: &[u8]| match parse(line) {
            Err(HeaderError::BadField(field, text)) => (field, text),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(b"PROXY TCP5 a b 1 2\r\n").0, "protocol (TCP4, TCP6 or UNKNOWN)");
        assert_eq!(field(b"PROXY TCP4 ::1 10.0.0.1 1 2\r\n").0, "source address");
        assert_eq!(field(b"PROXY TCP6 ::1 10.0.0.1 1 2\r\n").0, "destination address");
        assert_eq!(field(b"PROXY TCP4 010.0.0.1 10.0.0.1 1 2\r\n").0, "source address");
        for port in ["65536", "+1", "01", "", "1x", "-1"] {
            let line = format!("PROXY TCP4 10.0.0.2 10.0.0.1 {port} 2\r\n");
            assert_eq!(field(line.as_bytes()), ("port", port.to_string()), "{line}");
        }
        assert_eq!(
            parse(b"PROXY TCP4 10.0.0.2 10.0.0.1 1\r\n"),
            Err(HeaderError::BadLine("without exactly four address fields"))
        );
        assert_eq!(
            parse(b"PROXY TCP4 10.0.0.2 10.0.0.1 1 2 \r\n"),
            Err(HeaderError::BadLine("without exactly four address fields"))
        );
    }

    #[test]
    fn truncated_headers_only_need_more() {
        let full = b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 1080\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Ok(Parsed::NeedMore));
        }
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            HeaderError::BadSignature.to_string(),
            "no PROXY protocol header (bad signature)"
        );
        assert_eq!(
            HeaderError::BadField("port", "65536".into()).to_string(),
            "PROXY v1 line with bad port `65536`"
        );
    }
}
