//! SOCKS4 and SOCKS4a messages (Ying-Da Lee, "SOCKS 4A: A Simple Extension to SOCKS 4").
//!
//! Request: `VN=4 | CD | DSTPORT[2] | DSTIP[4] | USERID | NUL`, and for 4a, when DSTIP is
//! 0.0.0.x with x != 0, `HOSTNAME | NUL` after it. Reply: `VN=0 | CD | DSTPORT[2] | DSTIP[4]`.
//! Only codecs here; the handshakes are in `server` and `client`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::addr::{name_from_bytes, TargetAddr, MAX_NAME_LEN};
use crate::error::ProtoError;
use crate::reply::Failure;

/// VN of a SOCKS4 request.
pub const VERSION: u8 = 0x04;
/// VN of a SOCKS4 reply: "the version of the reply code and should be 0".
pub const REPLY_VERSION: u8 = 0x00;
/// CD 1: CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
/// CD 2: BIND.
pub const CMD_BIND: u8 = 0x02;
/// CD 90: request granted.
pub const GRANTED: u8 = 90;
/// CD 91: request rejected or failed.
pub const REJECTED: u8 = 91;
/// CD 92: rejected because the server cannot connect to identd on the client (never sent here).
pub const NO_IDENTD: u8 = 92;
/// CD 93: rejected because identd reports a different user-id (never sent here).
pub const IDENT_MISMATCH: u8 = 93;
/// Length of a reply.
pub const REPLY_LEN: usize = 8;

/// The commands; SOCKS4 carries CONNECT (CD 1) and BIND (CD 2), not UDP ASSOCIATE.
pub use crate::command::Command;

/// A decoded SOCKS4 or SOCKS4a request. `dst` is a `Domain` exactly when it was 4a.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// CONNECT or BIND.
    pub command: Command,
    /// The destination (4a: the name and port).
    pub dst: TargetAddr,
    /// USERID, decoded lossily as UTF-8; may be empty.
    pub user_id: String,
}

/// Decodes a request from the start of `buf`; `Ok(None)` means more bytes are needed.
/// On success also returns how many bytes it used, so pipelined data stays with the caller.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ProtoError> {
    let Some(&vn) = buf.first() else {
        return Ok(None);
    };
    if vn != VERSION {
        return Err(ProtoError::BadVersion(vn));
    }
    let Some(&cd) = buf.get(1) else {
        return Ok(None);
    };
    let command = match cd {
        CMD_CONNECT => Command::Connect,
        CMD_BIND => Command::Bind,
        other => return Err(ProtoError::UnsupportedCommand(other)),
    };
    if buf.len() < 8 {
        return Ok(None);
    }
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
    let Some((user_id, user_end)) = nul_terminated(buf, 8, "USERID")? else {
        return Ok(None);
    };
    let user_id = String::from_utf8_lossy(user_id).into_owned();
    let [a, b, c, d] = ip.octets();
    let is_4a = a == 0 && b == 0 && c == 0 && d != 0;
    if !is_4a {
        let dst = TargetAddr::Ip(SocketAddr::V4(SocketAddrV4::new(ip, port)));
        return Ok(Some((Request { command, dst, user_id }, user_end)));
    }
    let Some((name, name_end)) = nul_terminated(buf, user_end, "host name")? else {
        return Ok(None);
    };
    let dst = TargetAddr::Domain(name_from_bytes(name)?, port);
    Ok(Some((Request { command, dst, user_id }, name_end)))
}

/// Finds a NUL-terminated field starting at `start`: the field and the index after its NUL.
/// More than 255 bytes without a NUL is an error, so a hostile client cannot make us buffer.
fn nul_terminated<'a>(
    buf: &'a [u8],
    start: usize,
    field: &'static str,
) -> Result<Option<(&'a [u8], usize)>, ProtoError> {
    let rest = &buf[start.min(buf.len())..];
    match rest.iter().position(|&b| b == 0) {
        Some(n) if n > MAX_NAME_LEN => Err(ProtoError::TooLong(field)),
        Some(n) => Ok(Some((&rest[..n], start + n + 1))),
        None if rest.len() > MAX_NAME_LEN => Err(ProtoError::TooLong(field)),
        None => Ok(None),
    }
}

/// Appends a request. A `Domain` destination is sent as SOCKS4a (DSTIP 0.0.0.1); IPv6 cannot be
/// expressed in SOCKS4 and is an error, as are UDP ASSOCIATE (`UnsupportedCommand(3)`, SOCKS4 has
/// no such command) and a USERID or name over 255 bytes or containing NUL.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let command = match req.command {
        Command::Connect => CMD_CONNECT,
        Command::Bind => CMD_BIND,
        Command::UdpAssociate => return Err(ProtoError::UnsupportedCommand(3)),
    };
    let user = req.user_id.as_bytes();
    if user.len() > MAX_NAME_LEN {
        return Err(ProtoError::TooLong("USERID"));
    }
    if user.contains(&0) {
        return Err(ProtoError::BadName);
    }
    let (ip, name) = match &req.dst {
        TargetAddr::Ip(SocketAddr::V4(sa)) => (*sa.ip(), None),
        TargetAddr::Ip(SocketAddr::V6(_)) => return Err(ProtoError::Socks4Address),
        TargetAddr::Domain(name, _) => {
            name_from_bytes(name.as_bytes())?;
            (Ipv4Addr::new(0, 0, 0, 1), Some(name.as_bytes()))
        }
    };
    out.push(VERSION);
    out.push(command);
    out.extend_from_slice(&req.dst.port().to_be_bytes());
    out.extend_from_slice(&ip.octets());
    out.extend_from_slice(user);
    out.push(0);
    if let Some(name) = name {
        out.extend_from_slice(name);
        out.push(0);
    }
    Ok(())
}

/// A decoded reply: the outcome and the address it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// `Ok(())` for 90; otherwise the failure (SOCKS4 has no finer reason than "rejected").
    pub result: Result<(), Failure>,
    /// DSTPORT/DSTIP. For BIND, 0.0.0.0 means "the address of the SOCKS server".
    pub addr: SocketAddrV4,
}

/// Appends an 8-byte reply. Every failure becomes CD 91; an IPv6 address (which SOCKS4 cannot
/// carry) is sent as 0.0.0.0 with its port.
pub fn encode_reply(result: Result<SocketAddr, Failure>, out: &mut Vec<u8>) {
    let (code, addr) = match result {
        Ok(addr) => (GRANTED, addr),
        Err(_) => (REJECTED, SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    };
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    out.extend_from_slice(&[REPLY_VERSION, code]);
    out.extend_from_slice(&addr.port().to_be_bytes());
    out.extend_from_slice(&ip.octets());
}

/// Decodes an 8-byte reply; `Ok(None)` means more bytes are needed.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtoError> {
    if buf.len() < REPLY_LEN {
        return Ok(None);
    }
    if buf[0] != REPLY_VERSION {
        return Err(ProtoError::BadReplyVersion(buf[0]));
    }
    let result = match buf[1] {
        GRANTED => Ok(()),
        // 91, 92, 93 and anything else: the server refused; SOCKS4 says no more than that.
        _ => Err(Failure::General),
    };
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    let addr = SocketAddrV4::new(Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]), port);
    Ok(Some((Reply { result, addr }, REPLY_LEN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_prefix_needs_more(wire: &[u8]) {
        for cut in 0..wire.len() {
            assert_eq!(decode_request(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn connect_with_userid_from_the_notes() {
        let wire = [0x04, 0x01, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, b'b', b'o', b'b', 0x00];
        let req = Request {
            command: Command::Connect,
            dst: TargetAddr::Ip("1.2.3.4:80".parse().expect("literal")),
            user_id: "bob".into(),
        };
        every_prefix_needs_more(&wire);
        let mut pipelined = wire.to_vec();
        pipelined.extend_from_slice(b"GET /");
        assert_eq!(decode_request(&pipelined), Ok(Some((req.clone(), wire.len()))));
        let mut out = Vec::new();
        encode_request(&req, &mut out).expect("encodes");
        assert_eq!(out, wire);
    }

    #[test]
    fn socks4a_bind_with_name() {
        let mut wire = vec![0x04, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x01, 0x00];
        wire.extend_from_slice(b"ftp.example.test\0");
        let req = Request {
            command: Command::Bind,
            dst: TargetAddr::Domain("ftp.example.test".into(), 21),
            user_id: String::new(),
        };
        every_prefix_needs_more(&wire);
        assert_eq!(decode_request(&wire), Ok(Some((req.clone(), wire.len()))));
        let mut out = Vec::new();
        encode_request(&req, &mut out).expect("encodes");
        assert_eq!(out, wire);
    }

    #[test]
    fn zero_ip_is_not_4a() {
        let wire = [0x04, 0x01, 0x00, 0x50, 0, 0, 0, 0, 0x00, b'x'];
        let (req, used) = decode_request(&wire).expect("valid").expect("complete");
        assert_eq!(used, 9);
        assert_eq!(req.dst, TargetAddr::Ip("0.0.0.0:80".parse().expect("literal")));
    }

    #[test]
    fn rejects() {
        assert_eq!(decode_request(&[0x05, 0x01]), Err(ProtoError::BadVersion(5)));
        assert_eq!(decode_request(b"GET / HTTP/1.1"), Err(ProtoError::BadVersion(b'G')));
        assert_eq!(decode_request(&[0x04, 0x03]), Err(ProtoError::UnsupportedCommand(3)));
        let mut long_user = vec![0x04, 0x01, 0, 80, 1, 2, 3, 4];
        long_user.extend(std::iter::repeat_n(b'u', 256));
        assert_eq!(decode_request(&long_user), Err(ProtoError::TooLong("USERID")));
        long_user.push(0);
        assert_eq!(decode_request(&long_user), Err(ProtoError::TooLong("USERID")));
        let mut long_name = vec![0x04, 0x01, 0, 80, 0, 0, 0, 9, 0];
        long_name.extend(std::iter::repeat_n(b'h', 256));
        assert_eq!(decode_request(&long_name), Err(ProtoError::TooLong("host name")));
        let empty_name = [0x04, 0x01, 0, 80, 0, 0, 0, 9, 0, 0];
        assert_eq!(decode_request(&empty_name), Err(ProtoError::EmptyName));
    }

    #[test]
    fn exactly_255_bytes_is_allowed() {
        let mut wire = vec![0x04, 0x01, 0, 80, 1, 2, 3, 4];
        wire.extend(std::iter::repeat_n(b'u', 255));
        wire.push(0);
        let (req, used) = decode_request(&wire).expect("valid").expect("complete");
        assert_eq!((req.user_id.len(), used), (255, wire.len()));
    }

    #[test]
    fn encode_rejects_ipv6() {
        let req = Request {
            command: Command::Connect,
            dst: TargetAddr::Ip("[::1]:80".parse().expect("literal")),
            user_id: String::new(),
        };
        assert_eq!(encode_request(&req, &mut Vec::new()), Err(ProtoError::Socks4Address));
    }

    #[test]
    fn encode_refuses_udp_associate_and_writes_nothing() {
        for dst in ["1.2.3.4:80", "[::1]:80"] {
            let req = Request {
                command: Command::UdpAssociate,
                dst: TargetAddr::Ip(dst.parse().expect("literal")),
                user_id: "bob".into(),
            };
            let mut out = Vec::new();
            assert_eq!(encode_request(&req, &mut out), Err(ProtoError::UnsupportedCommand(3)));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn replies() {
        let mut out = Vec::new();
        encode_reply(Ok("10.0.0.1:50000".parse().expect("literal")), &mut out);
        assert_eq!(out, [0x00, 90, 0xc3, 0x50, 10, 0, 0, 1]);
        for cut in 0..out.len() {
            assert_eq!(decode_reply(&out[..cut]), Ok(None));
        }
        let (reply, used) = decode_reply(&out).expect("valid").expect("complete");
        assert_eq!(used, 8);
        assert_eq!(reply.result, Ok(()));
        assert_eq!(reply.addr, "10.0.0.1:50000".parse().expect("literal"));

        out.clear();
        encode_reply(Err(Failure::Refused), &mut out);
        assert_eq!(out, [0x00, 91, 0, 0, 0, 0, 0, 0]);
        let (reply, _) = decode_reply(&out).expect("valid").expect("complete");
        assert_eq!(reply.result, Err(Failure::General));
        assert_eq!(decode_reply(&[4, 90, 0, 0, 0, 0, 0, 0]), Err(ProtoError::BadReplyVersion(4)));
    }
}
