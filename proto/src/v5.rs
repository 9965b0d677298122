//! SOCKS5 messages (RFC 1928): method negotiation, requests and replies.
//!
//! Greeting `VER=5 | NMETHODS | METHODS`, selection `VER=5 | METHOD`, request
//! `VER=5 | CMD | RSV=0 | ATYP | DST.ADDR | DST.PORT`, reply `VER=5 | REP | RSV=0 | ATYP |
//! BND.ADDR | BND.PORT`. Only codecs here; the handshakes are in `server` and `client`, the
//! username/password sub-negotiation in `auth`, the UDP header in `udp`.

use std::net::SocketAddr;

use crate::addr::TargetAddr;
use crate::error::ProtoError;
use crate::reply::Failure;

/// VER of every SOCKS5 message.
pub const VERSION: u8 = 0x05;
/// RFC 1928 section 3: X'00' NO AUTHENTICATION REQUIRED.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// RFC 1928 section 3: X'01' GSSAPI (not offered or selected here).
pub const METHOD_GSSAPI: u8 = 0x01;
/// RFC 1928 section 3: X'02' USERNAME/PASSWORD (RFC 1929).
pub const METHOD_USERNAME_PASSWORD: u8 = 0x02;
/// RFC 1928 section 3: X'FF' NO ACCEPTABLE METHODS.
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// RFC 1928 section 4: CMD X'01' CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// RFC 1928 section 4: CMD X'02' BIND.
pub const CMD_BIND: u8 = 0x02;
/// RFC 1928 section 4: CMD X'03' UDP ASSOCIATE.
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;
/// RFC 1928 section 6: REP X'00' succeeded.
pub const REP_SUCCEEDED: u8 = 0x00;

/// The three SOCKS5 commands (X'01', X'02', X'03').
pub use crate::command::Command;

/// Decodes a greeting: the methods the client offers. `Ok(None)` means more bytes are needed.
pub fn decode_greeting(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ProtoError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProtoError::BadVersion(ver));
    }
    let Some(&n) = buf.get(1) else {
        return Ok(None);
    };
    if n == 0 {
        return Err(ProtoError::NoMethods);
    }
    let end = 2 + usize::from(n);
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((buf[2..end].to_vec(), end)))
}

/// Appends a greeting offering `methods` (1 to 255 of them).
pub fn encode_greeting(methods: &[u8], out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let n = u8::try_from(methods.len()).map_err(|_| ProtoError::TooLong("method list"))?;
    if n == 0 {
        return Err(ProtoError::NoMethods);
    }
    out.push(VERSION);
    out.push(n);
    out.extend_from_slice(methods);
    Ok(())
}

/// Decodes the server's method selection (2 bytes).
pub fn decode_method_selection(buf: &[u8]) -> Result<Option<(u8, usize)>, ProtoError> {
    match buf {
        [] | [_] => Ok(None),
        [VERSION, method, ..] => Ok(Some((*method, 2))),
        [ver, ..] => Err(ProtoError::BadVersion(*ver)),
    }
}

/// Appends a method selection.
pub fn encode_method_selection(method: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[VERSION, method]);
}

/// A decoded SOCKS5 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// CONNECT, BIND or UDP ASSOCIATE.
    pub command: Command,
    /// DST.ADDR and DST.PORT.
    pub dst: TargetAddr,
}

/// Decodes a request; `Ok(None)` means more bytes are needed. An unknown command is reported
/// only once the whole request has arrived, so the server can answer it with X'07'.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ProtoError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProtoError::BadVersion(ver));
    }
    if buf.len() < 3 {
        return Ok(None);
    }
    if buf[2] != 0 {
        return Err(ProtoError::BadReserved(buf[2]));
    }
    let Some((dst, used)) = TargetAddr::decode_socks5(&buf[3..])? else {
        return Ok(None);
    };
    let command = match buf[1] {
        CMD_CONNECT => Command::Connect,
        CMD_BIND => Command::Bind,
        CMD_UDP_ASSOCIATE => Command::UdpAssociate,
        other => return Err(ProtoError::UnsupportedCommand(other)),
    };
    Ok(Some((Request { command, dst }, 3 + used)))
}

/// Appends a request.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let cmd = match req.command {
        Command::Connect => CMD_CONNECT,
        Command::Bind => CMD_BIND,
        Command::UdpAssociate => CMD_UDP_ASSOCIATE,
    };
    let start = out.len();
    out.extend_from_slice(&[VERSION, cmd, 0]);
    req.dst.encode_socks5(out).inspect_err(|_| out.truncate(start))
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `Ok(())` for X'00', otherwise the failure.
    pub result: Result<(), Failure>,
    /// BND.ADDR and BND.PORT.
    pub bound: TargetAddr,
}

/// Appends a reply. A failure carries the all-zero IPv4 address, as RFC 1928 allows.
pub fn encode_reply(result: Result<SocketAddr, Failure>, out: &mut Vec<u8>) {
    let (rep, bound) = match result {
        Ok(addr) => (REP_SUCCEEDED, TargetAddr::Ip(addr)),
        Err(failure) => (failure.socks5_code(), TargetAddr::unspecified()),
    };
    out.extend_from_slice(&[VERSION, rep, 0]);
    // A numeric address always encodes; only over-long names can fail.
    let _ = bound.encode_socks5(out);
}

/// Decodes a reply; `Ok(None)` means more bytes are needed.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtoError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProtoError::BadReplyVersion(ver));
    }
    if buf.len() < 3 {
        return Ok(None);
    }
    if buf[2] != 0 {
        return Err(ProtoError::BadReserved(buf[2]));
    }
    let Some((bound, used)) = TargetAddr::decode_socks5(&buf[3..])? else {
        return Ok(None);
    };
    let result = match Failure::from_socks5_code(buf[1]) {
        None => Ok(()),
        Some(failure) => Err(failure),
    };
    Ok(Some((Reply { result, bound }, 3 + used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting() {
        let wire = [0x05, 0x02, 0x00, 0x02];
        for cut in 0..wire.len() {
            assert_eq!(decode_greeting(&wire[..cut]), Ok(None));
        }
        assert_eq!(decode_greeting(&[0x05, 0x02, 0x00, 0x02, 0x05]), Ok(Some((vec![0, 2], 4))));
        let mut out = Vec::new();
        encode_greeting(&[0, 2], &mut out).expect("encodes");
        assert_eq!(out, wire);
        assert_eq!(decode_greeting(&[0x05, 0x00]), Err(ProtoError::NoMethods));
        assert_eq!(decode_greeting(&[0x04, 0x01]), Err(ProtoError::BadVersion(4)));
        assert_eq!(encode_greeting(&[], &mut out), Err(ProtoError::NoMethods));
    }

    #[test]
    fn method_selection() {
        assert_eq!(decode_method_selection(&[0x05]), Ok(None));
        assert_eq!(decode_method_selection(&[0x05, 0xFF]), Ok(Some((0xFF, 2))));
        assert_eq!(decode_method_selection(&[0x01, 0x00]), Err(ProtoError::BadVersion(1)));
        let mut out = Vec::new();
        encode_method_selection(METHOD_USERNAME_PASSWORD, &mut out);
        assert_eq!(out, [0x05, 0x02]);
    }

    #[test]
    fn connect_request_round_trip_and_prefixes() {
        let wire = [0x05, 0x01, 0x00, 0x01, 93, 184, 216, 34, 0x00, 0x50];
        let req = Request {
            command: Command::Connect,
            dst: TargetAddr::Ip("93.184.216.34:80".parse().expect("literal")),
        };
        for cut in 0..wire.len() {
            assert_eq!(decode_request(&wire[..cut]), Ok(None), "prefix {cut}");
        }
        assert_eq!(decode_request(&wire), Ok(Some((req.clone(), wire.len()))));
        let mut out = Vec::new();
        encode_request(&req, &mut out).expect("encodes");
        assert_eq!(out, wire);
    }

    #[test]
    fn bind_and_udp_requests() {
        let mut wire = vec![0x05, 0x02, 0x00, 0x03, 4];
        wire.extend_from_slice(b"host\x00\x15");
        let (req, used) = decode_request(&wire).expect("valid").expect("complete");
        assert_eq!((req.command, used), (Command::Bind, wire.len()));
        assert_eq!(req.dst, TargetAddr::Domain("host".into(), 21));
        let udp = [0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        let (req, _) = decode_request(&udp).expect("valid").expect("complete");
        assert_eq!(req.command, Command::UdpAssociate);
        assert_eq!(req.dst, TargetAddr::unspecified());
    }

    #[test]
    fn request_rejects() {
        assert_eq!(
            decode_request(&[0x05, 0x09, 0x00, 0x01, 1, 2, 3, 4, 0, 80]),
            Err(ProtoError::UnsupportedCommand(9))
        );
        // The command is judged only once the request is complete.
        assert_eq!(decode_request(&[0x05, 0x09, 0x00, 0x01, 1, 2]), Ok(None));
        assert_eq!(
            decode_request(&[0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80]),
            Err(ProtoError::BadAddressType(5))
        );
        assert_eq!(decode_request(&[0x05, 0x01, 0x01, 0x01]), Err(ProtoError::BadReserved(1)));
        assert_eq!(decode_request(&[0x04, 0x01]), Err(ProtoError::BadVersion(4)));
    }

    #[test]
    fn replies_every_code() {
        let mut out = Vec::new();
        encode_reply(Ok("10.0.0.1:50000".parse().expect("literal")), &mut out);
        assert_eq!(out, [0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0xc3, 0x50]);
        for cut in 0..out.len() {
            assert_eq!(decode_reply(&out[..cut]), Ok(None));
        }
        let (reply, used) = decode_reply(&out).expect("valid").expect("complete");
        assert_eq!((reply.result, used), (Ok(()), 10));
        for code in 1..=8u8 {
            let failure = Failure::from_socks5_code(code).expect("failure");
            out.clear();
            encode_reply(Err(failure), &mut out);
            assert_eq!(out, [0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
            let (reply, _) = decode_reply(&out).expect("valid").expect("complete");
            assert_eq!(reply.result, Err(failure));
        }
        assert_eq!(decode_reply(&[0x00, 0x5a, 0x00]), Err(ProtoError::BadReplyVersion(0)));
    }

    #[test]
    fn ipv6_reply() {
        let mut out = Vec::new();
        encode_reply(Ok("[2001:db8::2]:21".parse().expect("literal")), &mut out);
        assert_eq!(out.len(), 4 + 16 + 2);
        let (reply, _) = decode_reply(&out).expect("valid").expect("complete");
        assert_eq!(reply.bound, TargetAddr::Ip("[2001:db8::2]:21".parse().expect("literal")));
    }
}
