//! The client side of a CONNECT handshake with no heap allocation, for a caller that must not
//! allocate: the preload library answering a connect made by a signal handler that interrupted
//! code which may hold malloc's lock. Every message is encoded into a fixed buffer inside the
//! handshake, the server's bytes are collected in a fixed buffer sized for the longest reply
//! (a SOCKS5 reply naming a 255-byte host: 262 bytes), and nothing is returned that would need
//! the heap (a reply that names a host instead of an address is granted without it).
//!
//! Same protocol and the same bytes as [`crate::client::ClientHandshake`] without pipelining
//! (the tests drive both against the server state machine and compare): SOCKS4 (IPv4),
//! SOCKS4a (IPv4 or a name), SOCKS5 (IPv4, IPv6 or a name; RFC 1929 username/password when
//! credentials are given).
//!
//! Also the SOCKS5 UDP request header (RFC 1928 section 7) in a fixed buffer ([`udp_header`]),
//! for a datagram sent from such a signal handler on a socket whose association exists.
//!
//! Not here: sockets, timeouts, BIND or UDP ASSOCIATE (they need the heap anyway).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::addr::{check_name, ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, MAX_NAME_LEN};
use crate::auth::{self, Credentials};
use crate::client::{ClientError, ClientVersion, Identity};
use crate::error::ProtoError;
use crate::reply::Failure;
use crate::{v4, v5};

/// The longest message a client sends: a SOCKS4a request (VN CD DSTPORT DSTIP = 8 bytes, a
/// 255-byte USERID and its NUL, a 255-byte name and its NUL). An RFC 1929 request is at most
/// 513 bytes, a SOCKS5 request 262.
pub const MESSAGE_MAX: usize = 8 + (MAX_NAME_LEN + 1) * 2;

/// The longest message a server sends before the relay starts: a SOCKS5 reply whose BND.ADDR
/// is a 255-byte name (VER REP RSV ATYP, the length octet, the name, the port).
pub const REPLY_MAX: usize = 4 + 1 + MAX_NAME_LEN + 2;

/// Where to connect: an address, or a name the server resolves (borrowed, not owned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A numeric address.
    Ip(SocketAddr),
    /// A host name and a port.
    Name(&'a str, u16),
}

impl Destination<'_> {
    fn port(&self) -> u16 {
        match self {
            Destination::Ip(sa) => sa.port(),
            Destination::Name(_, port) => *port,
        }
    }
}

/// One message to send, in a fixed buffer.
#[derive(Clone, Copy)]
pub struct Message {
    bytes: [u8; MESSAGE_MAX],
    len: usize,
}

impl Message {
    const fn empty() -> Message {
        Message { bytes: [0; MESSAGE_MAX], len: 0 }
    }

    /// Appends; the callers' sizes are bounded by `MESSAGE_MAX` by construction.
    fn push(&mut self, data: &[u8]) {
        let end = (self.len + data.len()).min(MESSAGE_MAX);
        let take = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&data[..take]);
        self.len = end;
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Debug for Message {
    /// Only the length: a message may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({} bytes)", self.len)
    }
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// What the caller should do next. Before acting on any step, send `take_output()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixedStep {
    /// Read at most `wanted()` more bytes and `feed` them.
    NeedMore,
    /// Granted; `bound` is BND.ADDR/BND.PORT when the server named an address (SOCKS4:
    /// DSTIP/DSTPORT), `None` when it named a host.
    Granted {
        /// The server's outbound address, when numeric.
        bound: Option<SocketAddr>,
    },
    /// The handshake failed; close the connection.
    Failed(ClientError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    MethodSelection,
    AuthReply,
    Reply,
    Done,
}

/// A CONNECT handshake that never allocates.
#[derive(Debug)]
pub struct FixedConnect<'a> {
    version: ClientVersion,
    dst: Destination<'a>,
    credentials: Option<&'a Credentials>,
    state: State,
    input: [u8; REPLY_MAX],
    have: usize,
    output: Message,
}

impl<'a> FixedConnect<'a> {
    /// Prepares a CONNECT to `dst`; the first message is in `take_output()`. A destination the
    /// version cannot carry (a name in SOCKS4, IPv6 in SOCKS4/4a), an over-long name, user id,
    /// username or password, or a name with a NUL is an error here, before anything is sent.
    pub fn new(
        version: ClientVersion,
        dst: Destination<'a>,
        identity: &'a Identity,
    ) -> Result<Self, ProtoError> {
        if let Destination::Name(name, _) = dst {
            check_name(name.as_bytes())?;
            if name.as_bytes().contains(&0) {
                return Err(ProtoError::BadName);
            }
        }
        let mut hs = FixedConnect {
            version,
            dst,
            credentials: None,
            state: State::Reply,
            input: [0; REPLY_MAX],
            have: 0,
            output: Message::empty(),
        };
        match version {
            ClientVersion::Socks4 | ClientVersion::Socks4a => {
                let user = identity.user_id.as_bytes();
                if user.len() > MAX_NAME_LEN {
                    return Err(ProtoError::TooLong("USERID"));
                }
                if user.contains(&0) {
                    return Err(ProtoError::BadName);
                }
                let (ip, name) = match dst {
                    Destination::Ip(SocketAddr::V4(sa)) => (*sa.ip(), None),
                    Destination::Ip(SocketAddr::V6(_)) => return Err(ProtoError::Socks4Address),
                    Destination::Name(..) if version == ClientVersion::Socks4 => {
                        return Err(ProtoError::Socks4Address)
                    }
                    // SOCKS4a: DSTIP 0.0.0.x with x non-zero says "the name follows".
                    Destination::Name(name, _) => (Ipv4Addr::new(0, 0, 0, 1), Some(name)),
                };
                let out = &mut hs.output;
                out.push(&[v4::VERSION, v4::CMD_CONNECT]);
                out.push(&dst.port().to_be_bytes());
                out.push(&ip.octets());
                out.push(user);
                out.push(&[0]);
                if let Some(name) = name {
                    out.push(name.as_bytes());
                    out.push(&[0]);
                }
            }
            ClientVersion::Socks5 => {
                if let Some(creds) = &identity.credentials {
                    if creds.username.len() > MAX_NAME_LEN {
                        return Err(ProtoError::TooLong("username"));
                    }
                    if creds.password.len() > MAX_NAME_LEN {
                        return Err(ProtoError::TooLong("password"));
                    }
                    hs.credentials = Some(creds);
                    hs.output.push(&[
                        v5::VERSION,
                        2,
                        v5::METHOD_NO_AUTH,
                        v5::METHOD_USERNAME_PASSWORD,
                    ]);
                } else {
                    hs.output.push(&[v5::VERSION, 1, v5::METHOD_NO_AUTH]);
                }
                hs.state = State::MethodSelection;
            }
        }
        Ok(hs)
    }

    /// Bytes to send to the server now (empty when there is nothing to send).
    pub fn take_output(&mut self) -> Message {
        std::mem::replace(&mut self.output, Message::empty())
    }

    /// How many more bytes the next server message needs at least, so the caller can read
    /// exactly that much and never take a byte of the relayed stream that follows the reply.
    /// 0 when done.
    pub fn wanted(&self) -> usize {
        let need = match self.state {
            State::Done => return 0,
            State::MethodSelection | State::AuthReply => 2,
            State::Reply => match self.version {
                ClientVersion::Socks4 | ClientVersion::Socks4a => v4::REPLY_LEN,
                ClientVersion::Socks5 => match (self.received().get(3), self.received().get(4)) {
                    (Some(&ATYP_IPV4), _) => 4 + 4 + 2,
                    (Some(&ATYP_IPV6), _) => 4 + 16 + 2,
                    (Some(&ATYP_DOMAIN), Some(&len)) => 5 + usize::from(len) + 2,
                    _ => 5,
                },
            },
        };
        need.saturating_sub(self.have).max(1)
    }

    fn received(&self) -> &[u8] {
        &self.input[..self.have]
    }

    /// Adds bytes from the server and advances as far as they allow. Bytes beyond the longest
    /// possible reply (a caller that read more than `wanted()`) are a protocol error.
    pub fn feed(&mut self, data: &[u8]) -> FixedStep {
        if self.state == State::Done {
            return FixedStep::Failed(ClientError::Protocol(ProtoError::HandshakeOver));
        }
        if self.have + data.len() > REPLY_MAX {
            return self.fail(ClientError::Protocol(ProtoError::TooLong("server message")));
        }
        self.input[self.have..self.have + data.len()].copy_from_slice(data);
        self.have += data.len();
        loop {
            match self.state {
                State::MethodSelection => match v5::decode_method_selection(self.received()) {
                    Ok(None) => return FixedStep::NeedMore,
                    Err(e) => return self.fail(ClientError::Protocol(e)),
                    Ok(Some((method, used))) => {
                        self.consume(used);
                        match (method, self.credentials) {
                            (v5::METHOD_NO_AUTH, _) => self.send_request(),
                            (v5::METHOD_USERNAME_PASSWORD, Some(creds)) => {
                                self.send_credentials(creds);
                                self.state = State::AuthReply;
                            }
                            (v5::METHOD_NONE_ACCEPTABLE, _) => {
                                return self
                                    .fail(ClientError::Protocol(ProtoError::NoAcceptableMethod))
                            }
                            (other, _) => {
                                return self.fail(ClientError::Protocol(
                                    ProtoError::UnexpectedMethod(other),
                                ))
                            }
                        }
                    }
                },
                State::AuthReply => match auth::decode_reply(self.received()) {
                    Ok(None) => return FixedStep::NeedMore,
                    Err(e) => return self.fail(ClientError::Protocol(e)),
                    Ok(Some((false, _))) => return self.fail(ClientError::AuthRejected),
                    Ok(Some((true, used))) => {
                        self.consume(used);
                        self.send_request();
                    }
                },
                State::Reply => return self.reply(),
                State::Done => return FixedStep::NeedMore,
            }
        }
    }

    fn consume(&mut self, used: usize) {
        self.input.copy_within(used..self.have, 0);
        self.have -= used;
    }

    fn send_credentials(&mut self, creds: &Credentials) {
        // Both lengths were checked to fit one octet in `new`.
        self.output.push(&[auth::VERSION, creds.username.len() as u8]);
        self.output.push(creds.username.as_bytes());
        self.output.push(&[creds.password.len() as u8]);
        self.output.push(&creds.password);
    }

    fn send_request(&mut self) {
        let out = &mut self.output;
        out.push(&[v5::VERSION, v5::CMD_CONNECT, 0]);
        // A name was checked non-empty and at most 255 bytes in `new`.
        put_address(&self.dst, |bytes| out.push(bytes));
        self.state = State::Reply;
    }

    fn reply(&mut self) -> FixedStep {
        let decoded = match self.version {
            ClientVersion::Socks4 | ClientVersion::Socks4a => v4::decode_reply(self.received())
                .map(|r| {
                    r.map(|(reply, used)| (reply.result, Some(SocketAddr::V4(reply.addr)), used))
                }),
            ClientVersion::Socks5 => decode_socks5_reply(self.received()),
        };
        match decoded {
            Ok(None) => FixedStep::NeedMore,
            Err(e) => self.fail(ClientError::Protocol(e)),
            Ok(Some((Err(failure), _, _))) => self.fail(ClientError::Refused(failure)),
            Ok(Some((Ok(()), bound, used))) => {
                self.consume(used);
                self.state = State::Done;
                FixedStep::Granted { bound }
            }
        }
    }

    fn fail(&mut self, error: ClientError) -> FixedStep {
        self.state = State::Done;
        FixedStep::Failed(error)
    }
}

/// A decoded reply: the outcome, BND as an address (`None` for a name), and the bytes used.
type ReplyParts = (Result<(), Failure>, Option<SocketAddr>, usize);

/// The longest SOCKS5 UDP request header: RSV (2), FRAG, ATYP, a 255-byte name with its
/// length octet, DST.PORT (RFC 1928 section 7).
pub const UDP_HEADER_MAX: usize = 3 + 1 + 1 + MAX_NAME_LEN + 2;

/// Writes the SOCKS5 UDP request header for a datagram to `dst` (FRAG 0) into `out`; its
/// length. The same bytes as [`crate::udp::encode_header`], without the heap (and the same
/// check: a name must be 1 to 255 bytes).
pub fn udp_header(
    dst: &Destination<'_>,
    out: &mut [u8; UDP_HEADER_MAX],
) -> Result<usize, ProtoError> {
    out[..3].copy_from_slice(&[0, 0, 0]);
    if let Destination::Name(name, _) = dst {
        check_name(name.as_bytes())?;
    }
    let mut at = 3;
    put_address(dst, |bytes| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    });
    Ok(at)
}

/// Hands `put` a destination as SOCKS5 encodes it (RFC 1928 section 4): ATYP, the address (a
/// name with its length octet) and the port. A name must already be checked to be 1 to 255
/// bytes, so its length fits the octet.
fn put_address(dst: &Destination<'_>, mut put: impl FnMut(&[u8])) {
    match dst {
        Destination::Ip(SocketAddr::V4(sa)) => {
            put(&[ATYP_IPV4]);
            put(&sa.ip().octets());
        }
        Destination::Ip(SocketAddr::V6(sa)) => {
            put(&[ATYP_IPV6]);
            put(&sa.ip().octets());
        }
        Destination::Name(name, _) => {
            put(&[ATYP_DOMAIN, name.len() as u8]);
            put(name.as_bytes());
        }
    }
    put(&dst.port().to_be_bytes());
}

/// Decodes a SOCKS5 reply from the start of `buf` without allocating, with the checks (and
/// the errors) of [`v5::decode_reply`]. `Ok(None)`: more bytes are needed.
pub fn decode_socks5_reply(buf: &[u8]) -> Result<Option<ReplyParts>, ProtoError> {
    let Some(&ver) = buf.first() else { return Ok(None) };
    if ver != v5::VERSION {
        return Err(ProtoError::BadReplyVersion(ver));
    }
    if buf.len() < 3 {
        return Ok(None);
    }
    if buf[2] != 0 {
        return Err(ProtoError::BadReserved(buf[2]));
    }
    let Some(&atyp) = buf.get(3) else { return Ok(None) };
    let (start, addr_len) = match atyp {
        ATYP_IPV4 => (4, 4),
        ATYP_IPV6 => (4, 16),
        ATYP_DOMAIN => match buf.get(4) {
            None => return Ok(None),
            Some(0) => return Err(ProtoError::EmptyName),
            Some(&n) => (5, usize::from(n)),
        },
        other => return Err(ProtoError::BadAddressType(other)),
    };
    let total = start + addr_len + 2;
    if buf.len() < total {
        return Ok(None);
    }
    let raw = &buf[start..start + addr_len];
    let port = u16::from_be_bytes([buf[total - 2], buf[total - 1]]);
    let bound = match atyp {
        ATYP_IPV4 => {
            let octets: [u8; 4] = raw.try_into().map_err(|_| ProtoError::BadAddressType(atyp))?;
            Some(SocketAddr::from((Ipv4Addr::from(octets), port)))
        }
        ATYP_IPV6 => {
            let octets: [u8; 16] = raw.try_into().map_err(|_| ProtoError::BadAddressType(atyp))?;
            Some(SocketAddr::from((Ipv6Addr::from(octets), port)))
        }
        _ => {
            if raw.contains(&0) || std::str::from_utf8(raw).is_err() {
                return Err(ProtoError::BadName);
            }
            None
        }
    };
    let result = match Failure::from_socks5_code(buf[1]) {
        None => Ok(()),
        Some(failure) => Err(failure),
    };
    Ok(Some((result, bound, total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::TargetAddr;
    use crate::client::{ClientHandshake, ClientStep};
    use crate::server::{AuthPolicy, Command, ServerHandshake, Step};

    fn ip(s: &str) -> SocketAddr {
        s.parse().expect("literal")
    }

    fn target(dst: Destination<'_>) -> TargetAddr {
        match dst {
            Destination::Ip(sa) => TargetAddr::Ip(sa),
            Destination::Name(name, port) => TargetAddr::Domain(name.to_owned(), port),
        }
    }

    #[test]
    fn udp_headers_are_the_heap_path_bytes() {
        let long = "n".repeat(255);
        for dst in [
            Destination::Ip(ip("192.0.2.53:53")),
            Destination::Ip(ip("[2001:db8::1]:443")),
            Destination::Name("www.example.test", 7),
            Destination::Name(&long, 65535),
        ] {
            let mut fixed = [0u8; UDP_HEADER_MAX];
            let len = udp_header(&dst, &mut fixed).expect("encodes");
            let mut heap = Vec::new();
            let header = crate::udp::UdpHeader { frag: 0, addr: target(dst) };
            crate::udp::encode_header(&header, &mut heap).expect("encodes");
            assert_eq!(&fixed[..len], &heap[..], "{dst:?}");
        }
        let mut out = [0u8; UDP_HEADER_MAX];
        assert!(udp_header(&Destination::Name("", 1), &mut out).is_err());
        assert!(udp_header(&Destination::Name(&"n".repeat(256), 1), &mut out).is_err());
    }

    fn identity(user_id: &str, credentials: Option<(&str, &[u8])>) -> Identity {
        Identity {
            user_id: user_id.to_owned(),
            credentials: credentials
                .map(|(u, p)| Credentials { username: u.to_owned(), password: p.to_vec() }),
        }
    }

    /// Drives the fixed handshake and `ClientHandshake` side by side against the server state
    /// machine (which grants with a reply carrying `bound`), feeding the server's bytes one at
    /// a time: every message must be byte for byte the same. Returns the fixed step and what
    /// the server saw.
    fn both_against_server(
        version: ClientVersion,
        dst: Destination<'_>,
        id: &Identity,
        policy: AuthPolicy,
    ) -> (FixedStep, crate::server::Request) {
        let mut fixed = FixedConnect::new(version, dst, id).expect("valid");
        let mut reference =
            ClientHandshake::new(version, Command::Connect, &target(dst), id.clone())
                .expect("valid");
        let mut server = ServerHandshake::new(policy);
        let mut request = None;
        for _ in 0..10 {
            let (mine, theirs) = (fixed.take_output(), reference.take_output());
            assert_eq!(mine.as_slice(), theirs.as_slice(), "same bytes as ClientHandshake");
            let mut step = server.feed(&mine);
            if let Step::CheckPassword(creds) = &step {
                let ok = creds.password == b"pw";
                step = server.password_checked(ok);
            }
            let mut to_client = server.take_output();
            if let Step::Request(req) = step {
                req.encode_reply(Ok(ip("192.0.2.9:4000")), &mut to_client);
                request = Some(req);
            }
            for byte in to_client {
                assert!(fixed.wanted() >= 1);
                let expected = reference.feed(&[byte]);
                match fixed.feed(&[byte]) {
                    FixedStep::NeedMore => assert_eq!(expected, ClientStep::NeedMore),
                    done => return (done, request.expect("the server saw the request")),
                }
            }
        }
        panic!("no progress");
    }

    #[test]
    fn same_bytes_as_the_allocating_handshake() {
        let long = "n".repeat(255);
        let cases: Vec<(ClientVersion, Destination<'_>, Identity, AuthPolicy)> = vec![
            (
                ClientVersion::Socks5,
                Destination::Ip(ip("192.0.2.7:80")),
                identity("", None),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks5,
                Destination::Ip(ip("[2001:db8::1]:22")),
                identity("", None),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks5,
                Destination::Name("www.example.test", 443),
                identity("", None),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks5,
                Destination::Name(&long, 443),
                identity("", None),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks5,
                Destination::Name("www.example.test", 80),
                identity("", Some(("bob", b"pw"))),
                AuthPolicy::PasswordRequired,
            ),
            (
                ClientVersion::Socks5,
                Destination::Ip(ip("192.0.2.7:80")),
                identity("", Some(("bob", b"pw"))),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks4,
                Destination::Ip(ip("192.0.2.7:79")),
                identity("lloyd", None),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks4a,
                Destination::Ip(ip("192.0.2.7:79")),
                identity("", None),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks4a,
                Destination::Name("sgi.com", 79),
                identity("lloyd", None),
                AuthPolicy::Open,
            ),
            (
                ClientVersion::Socks4a,
                Destination::Name(&long, 79),
                identity(&long, None),
                AuthPolicy::Open,
            ),
        ];
        for (version, dst, id, policy) in &cases {
            let (step, request) = both_against_server(*version, *dst, id, *policy);
            assert_eq!(request.dst, target(*dst), "{version:?} {dst:?}");
            assert_eq!(step, FixedStep::Granted { bound: Some(ip("192.0.2.9:4000")) });
        }
    }

    #[test]
    fn a_wrong_password_is_rejected() {
        let id = identity("", Some(("bob", b"wrong")));
        let dst = Destination::Ip(ip("192.0.2.7:80"));
        let mut hs = FixedConnect::new(ClientVersion::Socks5, dst, &id).expect("valid");
        let mut server = ServerHandshake::new(AuthPolicy::PasswordRequired);
        server.feed(&hs.take_output());
        assert_eq!(hs.feed(&server.take_output()), FixedStep::NeedMore);
        let step = server.feed(&hs.take_output());
        assert!(matches!(step, Step::CheckPassword(_)));
        server.password_checked(false);
        assert_eq!(hs.feed(&server.take_output()), FixedStep::Failed(ClientError::AuthRejected));
    }

    /// A fresh handshake whose request is out, waiting for the reply.
    fn waiting(version: ClientVersion, id: &Identity) -> FixedConnect<'_> {
        let mut hs =
            FixedConnect::new(version, Destination::Ip(ip("192.0.2.7:80")), id).expect("valid");
        hs.take_output();
        if version == ClientVersion::Socks5 {
            assert_eq!(hs.feed(&[5, 0]), FixedStep::NeedMore);
            assert!(!hs.take_output().is_empty(), "the request follows the selection");
        }
        hs
    }

    /// Every reply, cut at every point: each prefix needs more (and `wanted` never asks for a
    /// byte past the reply), and the two parts together give `expected`.
    fn every_split(version: ClientVersion, reply: &[u8], expected: &FixedStep) {
        let id = Identity::default();
        for cut in 0..reply.len() {
            let mut hs = waiting(version, &id);
            assert_eq!(hs.feed(&reply[..cut]), FixedStep::NeedMore, "prefix of {cut} bytes");
            assert!(hs.wanted() <= reply.len() - cut, "wanted() reads past the reply at {cut}");
            assert_eq!(&hs.feed(&reply[cut..]), expected, "split at {cut}");
        }
        let mut hs = waiting(version, &id);
        for (i, byte) in reply.iter().enumerate() {
            assert!(hs.wanted() <= reply.len() - i);
            let step = hs.feed(&[*byte]);
            if i + 1 < reply.len() {
                assert_eq!(step, FixedStep::NeedMore);
            } else {
                assert_eq!(&step, expected);
            }
        }
    }

    #[test]
    fn replies_at_every_split() {
        let granted = |bound: Option<&str>| FixedStep::Granted { bound: bound.map(ip) };
        every_split(
            ClientVersion::Socks5,
            &[5, 0, 0, 1, 198, 51, 100, 1, 0x9c, 0x40],
            &granted(Some("198.51.100.1:40000")),
        );
        let mut v6 = vec![5, 0, 0, 4];
        v6.extend_from_slice(
            &ip("[2001:db8::1]:1").ip().to_string().parse::<Ipv6Addr>().expect("v6").octets(),
        );
        v6.extend_from_slice(&[0, 1]);
        every_split(ClientVersion::Socks5, &v6, &granted(Some("[2001:db8::1]:1")));
        // The longest reply: a 255-byte name, 262 bytes.
        let mut named = vec![5, 0, 0, 3, 255];
        named.extend_from_slice(&[b'a'; 255]);
        named.extend_from_slice(&[0, 80]);
        assert_eq!(named.len(), REPLY_MAX);
        every_split(ClientVersion::Socks5, &named, &granted(None));
        every_split(
            ClientVersion::Socks5,
            &[5, 2, 0, 1, 0, 0, 0, 0, 0, 0],
            &FixedStep::Failed(ClientError::Refused(Failure::NotAllowed)),
        );
        every_split(
            ClientVersion::Socks4,
            &[0, 90, 0x9c, 0x40, 198, 51, 100, 1],
            &granted(Some("198.51.100.1:40000")),
        );
        every_split(
            ClientVersion::Socks4a,
            &[0, 91, 0, 0, 0, 0, 0, 0],
            &FixedStep::Failed(ClientError::Refused(Failure::General)),
        );
    }

    #[test]
    fn decoder_agrees_with_the_allocating_one() {
        let mut named = vec![5, 4, 0, 3, 255];
        named.extend_from_slice(&[b'z'; 255]);
        named.extend_from_slice(&[1, 2]);
        let bad: &[&[u8]] = &[
            &[4, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            &[5, 0, 1, 1, 0, 0, 0, 0, 0, 0],
            &[5, 0, 0, 9, 0, 0, 0, 0, 0, 0],
            &[5, 0, 0, 3, 0, 0, 0],
            &[5, 0, 0, 3, 2, b'a', 0, 0, 1],
            &[5, 0, 0, 3, 1, 0xff, 0, 1],
        ];
        for wire in bad.iter().copied().chain([named.as_slice()]) {
            for cut in 0..=wire.len() {
                let mine = decode_socks5_reply(&wire[..cut]);
                let theirs = v5::decode_reply(&wire[..cut]);
                match (mine, theirs) {
                    (Ok(None), Ok(None)) => {}
                    (Err(a), Err(b)) => assert_eq!(a, b, "{wire:?} cut at {cut}"),
                    (Ok(Some((result, _, used))), Ok(Some((reply, used2)))) => {
                        assert_eq!((result, used), (reply.result, used2));
                    }
                    (a, b) => panic!("{wire:?} cut at {cut}: {a:?} vs {b:?}"),
                }
            }
        }
    }

    #[test]
    fn what_a_version_cannot_carry_is_refused_before_sending() {
        let id = Identity::default();
        let v6 = Destination::Ip(ip("[2001:db8::1]:80"));
        let name = Destination::Name("sgi.com", 79);
        assert_eq!(
            FixedConnect::new(ClientVersion::Socks4, name, &id).err(),
            Some(ProtoError::Socks4Address)
        );
        assert_eq!(
            FixedConnect::new(ClientVersion::Socks4a, v6, &id).err(),
            Some(ProtoError::Socks4Address)
        );
        let long = "x".repeat(256);
        assert!(FixedConnect::new(ClientVersion::Socks5, Destination::Name(&long, 1), &id).is_err());
        assert!(FixedConnect::new(ClientVersion::Socks5, Destination::Name("", 1), &id).is_err());
        let too_long_user = identity(&long, None);
        assert!(FixedConnect::new(
            ClientVersion::Socks4,
            Destination::Ip(ip("1.2.3.4:5")),
            &too_long_user
        )
        .is_err());
    }

    #[test]
    fn overfeeding_and_feeding_after_the_end_are_errors() {
        let id = Identity::default();
        let mut hs = waiting(ClientVersion::Socks5, &id);
        let too_much = [0u8; REPLY_MAX + 1];
        assert!(matches!(hs.feed(&too_much), FixedStep::Failed(ClientError::Protocol(_))));
        assert_eq!(
            hs.feed(&[5]),
            FixedStep::Failed(ClientError::Protocol(ProtoError::HandshakeOver))
        );
        assert_eq!(hs.wanted(), 0);
    }
}
