//! The client side of a SOCKS handshake as a sans-IO state machine, for the preload library and
//! for tests: it produces the bytes to send, takes the server's bytes in any chunks, and reports
//! the grant (with BND.ADDR) or the failure. For BIND, `expect_second_reply` waits for the
//! reply that announces the inbound connection.
//!
//! Not here: sockets, timeouts, or choosing a server.

use crate::addr::TargetAddr;
use crate::auth::{self, Credentials};
use crate::command::Command;
use crate::error::ProtoError;
use crate::reply::Failure;
use crate::{v4, v5};

/// The protocol to speak to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientVersion {
    /// SOCKS4: IPv4 destinations only.
    Socks4,
    /// SOCKS4a: IPv4 or a host name resolved by the server.
    Socks4a,
    /// SOCKS5: IPv4, IPv6 or a host name; optional username/password.
    Socks5,
}

impl ClientVersion {
    /// The name of the version as a `socks.conf` server scheme (without `://`) and in log lines:
    /// `socks4`, `socks4a` or `socks5`.
    pub fn scheme(self) -> &'static str {
        match self {
            ClientVersion::Socks4 => "socks4",
            ClientVersion::Socks4a => "socks4a",
            ClientVersion::Socks5 => "socks5",
        }
    }

    /// The version of a scheme name (any case, as URL schemes are); `None` for anything else.
    pub fn from_scheme(scheme: &str) -> Option<ClientVersion> {
        [ClientVersion::Socks4, ClientVersion::Socks4a, ClientVersion::Socks5]
            .into_iter()
            .find(|v| v.scheme().eq_ignore_ascii_case(scheme))
    }
}

impl std::fmt::Display for ClientVersion {
    /// The scheme name, `socks4`, `socks4a` or `socks5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.scheme())
    }
}

/// Who the client says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// SOCKS4 USERID (for logging and `*=` user lists on the server).
    pub user_id: String,
    /// SOCKS5 username/password; when present, method X'02' is offered too.
    pub credentials: Option<Credentials>,
}

/// Why a handshake did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server's bytes broke the protocol (or the request could not be encoded).
    Protocol(ProtoError),
    /// The server rejected the username/password.
    AuthRejected,
    /// The server answered the request with a failure.
    Refused(Failure),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Protocol(e) => write!(f, "SOCKS protocol error: {e}"),
            ClientError::AuthRejected => f.write_str("SOCKS server rejected the username/password"),
            ClientError::Refused(failure) => write!(f, "SOCKS server: {failure}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What the caller should do next. Before acting on any step, send `take_output()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Read more bytes from the server and `feed` them.
    NeedMore,
    /// The request was granted. For CONNECT, `bound` is the server's outbound address; for the
    /// first BIND reply the address it listens on; for the second, the connecting peer.
    Granted {
        /// BND.ADDR/BND.PORT (SOCKS4: DSTIP/DSTPORT; 0.0.0.0 there means the server's address).
        bound: TargetAddr,
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

/// The client handshake for one connection to a SOCKS server.
#[derive(Debug)]
pub struct ClientHandshake {
    version: ClientVersion,
    identity: Identity,
    request: Vec<u8>,
    /// Authentication and request were sent with the greeting (see `pipelined`).
    pipelined: bool,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl ClientHandshake {
    /// Prepares the handshake; the first bytes to send are in `take_output()`. A destination
    /// the version cannot carry (a name in SOCKS4, IPv6 in SOCKS4/4a) or UDP ASSOCIATE over
    /// SOCKS4 is an error here, before anything is sent.
    pub fn new(
        version: ClientVersion,
        command: Command,
        dst: &TargetAddr,
        identity: Identity,
    ) -> Result<Self, ProtoError> {
        let mut request = Vec::new();
        let mut output = Vec::new();
        let state = match version {
            ClientVersion::Socks4 | ClientVersion::Socks4a => {
                if version == ClientVersion::Socks4 && matches!(dst, TargetAddr::Domain(..)) {
                    return Err(ProtoError::Socks4Address);
                }
                let req =
                    v4::Request { command, dst: dst.clone(), user_id: identity.user_id.clone() };
                v4::encode_request(&req, &mut output)?;
                State::Reply
            }
            ClientVersion::Socks5 => {
                v5::encode_request(&v5::Request { command, dst: dst.clone() }, &mut request)?;
                let mut methods = vec![v5::METHOD_NO_AUTH];
                if let Some(creds) = &identity.credentials {
                    auth::encode_request(creds, &mut Vec::new())?;
                    methods.push(v5::METHOD_USERNAME_PASSWORD);
                }
                v5::encode_greeting(&methods, &mut output)?;
                State::MethodSelection
            }
        };
        Ok(ClientHandshake {
            version,
            identity,
            request,
            pipelined: false,
            state,
            input: Vec::new(),
            output,
        })
    }

    /// Bytes to send to the server now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Bytes the server sent after the reply: the start of the relayed stream.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    /// How many more bytes the next message needs at least, so a caller can read exactly that
    /// much and never take bytes of the relayed stream that follows the reply. 0 when done.
    pub fn wanted(&self) -> usize {
        let have = self.input.len();
        // A pipelined handshake already sent everything: the messages still to come follow one
        // another, so the minimum of all of them can be read at once (5 = the shortest start
        // of a reply that tells its length).
        let credentials = self.identity.credentials.is_some();
        let need = match self.state {
            State::MethodSelection if self.pipelined => 2 + if credentials { 2 } else { 0 } + 5,
            State::AuthReply if self.pipelined => 2 + 5,
            State::MethodSelection | State::AuthReply => 2,
            State::Done => return 0,
            State::Reply => match self.version {
                ClientVersion::Socks4 | ClientVersion::Socks4a => v4::REPLY_LEN,
                // VER REP RSV ATYP, then the address (its length octet for a name) and port.
                ClientVersion::Socks5 => match (self.input.get(3), self.input.get(4)) {
                    (Some(&crate::addr::ATYP_IPV4), _) => 4 + 4 + 2,
                    (Some(&crate::addr::ATYP_IPV6), _) => 4 + 16 + 2,
                    (Some(&crate::addr::ATYP_DOMAIN), Some(&len)) => 5 + usize::from(len) + 2,
                    _ => 5,
                },
            },
        };
        need.saturating_sub(have).max(1)
    }

    /// After the first BIND reply was granted: wait for the second one.
    pub fn expect_second_reply(&mut self) {
        if self.state == State::Done {
            self.state = State::Reply;
        }
    }

    /// Sends the whole SOCKS5 handshake at once — greeting, authentication (offering only the
    /// method it will use) and request — so it takes one round trip. Only for servers known to
    /// read pipelined input (sockd does; some servers lose bytes that arrive early). SOCKS4 is
    /// one message anyway and is left as it is.
    pub fn pipelined(mut self) -> Self {
        if self.version != ClientVersion::Socks5 || self.state != State::MethodSelection {
            return self;
        }
        self.output.clear();
        let method = match self.identity.credentials {
            Some(_) => v5::METHOD_USERNAME_PASSWORD,
            None => v5::METHOD_NO_AUTH,
        };
        // One method always encodes; credentials were checked to encode in `new`.
        let _ = v5::encode_greeting(&[method], &mut self.output);
        if let Some(creds) = &self.identity.credentials {
            let _ = auth::encode_request(creds, &mut self.output);
        }
        self.output.extend_from_slice(&self.request);
        self.pipelined = true;
        self
    }

    /// A reader for the second reply of a BIND whose first reply was read earlier (for example
    /// by another handshake object): it sends nothing and waits for one reply of `version`.
    pub fn second_reply(version: ClientVersion) -> Self {
        ClientHandshake {
            version,
            identity: Identity::default(),
            request: Vec::new(),
            pipelined: false,
            state: State::Reply,
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Adds bytes from the server and advances as far as they allow.
    pub fn feed(&mut self, data: &[u8]) -> ClientStep {
        self.input.extend_from_slice(data);
        loop {
            match self.state {
                State::MethodSelection => match v5::decode_method_selection(&self.input) {
                    Ok(None) => return ClientStep::NeedMore,
                    Err(e) => return self.fail(ClientError::Protocol(e)),
                    Ok(Some((method, used))) => {
                        self.input.drain(..used);
                        let credentials = &self.identity.credentials;
                        match (method, credentials) {
                            // Pipelined with credentials, we offered only username/password.
                            (v5::METHOD_NO_AUTH, _)
                                if !(self.pipelined && credentials.is_some()) =>
                            {
                                if !self.pipelined {
                                    self.output.extend_from_slice(&self.request);
                                }
                                self.state = State::Reply;
                            }
                            (v5::METHOD_USERNAME_PASSWORD, Some(creds)) => {
                                if !self.pipelined {
                                    // Checked to encode in `new`.
                                    let _ = auth::encode_request(creds, &mut self.output);
                                }
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
                State::AuthReply => match auth::decode_reply(&self.input) {
                    Ok(None) => return ClientStep::NeedMore,
                    Err(e) => return self.fail(ClientError::Protocol(e)),
                    Ok(Some((false, _))) => return self.fail(ClientError::AuthRejected),
                    Ok(Some((true, used))) => {
                        self.input.drain(..used);
                        if !self.pipelined {
                            self.output.extend_from_slice(&self.request);
                        }
                        self.state = State::Reply;
                    }
                },
                State::Reply => return self.reply(),
                State::Done => return ClientStep::NeedMore,
            }
        }
    }

    fn reply(&mut self) -> ClientStep {
        let decoded = match self.version {
            ClientVersion::Socks4 | ClientVersion::Socks4a => {
                v4::decode_reply(&self.input).map(|r| {
                    r.map(|(reply, used)| (reply.result, TargetAddr::Ip(reply.addr.into()), used))
                })
            }
            ClientVersion::Socks5 => v5::decode_reply(&self.input)
                .map(|r| r.map(|(reply, used)| (reply.result, reply.bound, used))),
        };
        match decoded {
            Ok(None) => ClientStep::NeedMore,
            Err(e) => self.fail(ClientError::Protocol(e)),
            Ok(Some((Err(failure), _, _))) => self.fail(ClientError::Refused(failure)),
            Ok(Some((Ok(()), bound, used))) => {
                self.input.drain(..used);
                self.state = State::Done;
                ClientStep::Granted { bound }
            }
        }
    }

    fn fail(&mut self, error: ClientError) -> ClientStep {
        self.state = State::Done;
        ClientStep::Failed(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{AuthPolicy, ServerHandshake, Step};

    fn dst(s: &str) -> TargetAddr {
        TargetAddr::Ip(s.parse().expect("literal"))
    }

    /// Drives a client against the real server state machine, feeding the server's bytes to the
    /// client one at a time; the server grants with `bound`.
    fn against_server(
        client: &mut ClientHandshake,
        policy: AuthPolicy,
    ) -> (crate::server::Request, ClientStep) {
        let mut server = ServerHandshake::new(policy);
        let mut request = None;
        let mut to_server = client.take_output();
        for _ in 0..10 {
            let mut step = server.feed(&std::mem::take(&mut to_server));
            if let Step::CheckPassword(creds) = &step {
                let ok = creds.password == b"pw";
                step = server.password_checked(ok);
            }
            let mut to_client = server.take_output();
            if let Step::Request(req) = step {
                req.encode_reply(Ok("192.0.2.9:4000".parse().expect("literal")), &mut to_client);
                request = Some(req);
            }
            for byte in to_client {
                match client.feed(&[byte]) {
                    ClientStep::NeedMore => {}
                    done => return (request.expect("server saw request"), done),
                }
            }
            to_server = client.take_output();
        }
        panic!("no progress");
    }

    #[test]
    fn socks5_with_password_against_server() {
        let identity = Identity {
            user_id: String::new(),
            credentials: Some(Credentials { username: "bob".into(), password: b"pw".to_vec() }),
        };
        let mut c = ClientHandshake::new(
            ClientVersion::Socks5,
            Command::Connect,
            &dst("[2001:db8::1]:22"),
            identity,
        )
        .expect("valid");
        let (req, step) = against_server(&mut c, AuthPolicy::PasswordRequired);
        assert_eq!(req.user.as_deref(), Some("bob"));
        assert_eq!(req.dst, dst("[2001:db8::1]:22"));
        assert_eq!(step, ClientStep::Granted { bound: dst("192.0.2.9:4000") });
    }

    #[test]
    fn socks4a_name_against_server() {
        let identity = Identity { user_id: "lloyd".into(), credentials: None };
        let name = TargetAddr::Domain("sgi.com".into(), 79);
        let mut c = ClientHandshake::new(ClientVersion::Socks4a, Command::Connect, &name, identity)
            .expect("valid");
        let (req, step) = against_server(&mut c, AuthPolicy::Open);
        assert_eq!((req.dst, req.user.as_deref()), (name, Some("lloyd")));
        assert_eq!(step, ClientStep::Granted { bound: dst("192.0.2.9:4000") });
    }

    #[test]
    fn socks4_cannot_carry_names_or_udp() {
        let name = TargetAddr::Domain("sgi.com".into(), 79);
        let id = Identity::default();
        assert_eq!(
            ClientHandshake::new(ClientVersion::Socks4, Command::Connect, &name, id.clone()).err(),
            Some(ProtoError::Socks4Address)
        );
        assert!(ClientHandshake::new(
            ClientVersion::Socks4a,
            Command::UdpAssociate,
            &dst("1.2.3.4:5"),
            id
        )
        .is_err());
    }

    #[test]
    fn bind_two_replies_and_leftover() {
        let mut c = ClientHandshake::new(
            ClientVersion::Socks5,
            Command::Bind,
            &dst("198.51.100.7:21"),
            Identity::default(),
        )
        .expect("valid");
        assert_eq!(c.take_output(), [0x05, 0x01, 0x00]);
        assert_eq!(c.feed(&[0x05, 0x00]), ClientStep::NeedMore);
        assert_eq!(c.take_output(), [0x05, 0x02, 0x00, 0x01, 198, 51, 100, 7, 0, 21]);
        let first = [0x05, 0x00, 0x00, 0x01, 203, 0, 113, 1, 0x9c, 0x40];
        assert_eq!(c.feed(&first), ClientStep::Granted { bound: dst("203.0.113.1:40000") });
        c.expect_second_reply();
        let mut second = vec![0x05, 0x00, 0x00, 0x01, 198, 51, 100, 7, 0, 20];
        second.extend_from_slice(b"220 data");
        assert_eq!(c.feed(&second), ClientStep::Granted { bound: dst("198.51.100.7:20") });
        assert_eq!(c.take_leftover(), b"220 data");
    }

    #[test]
    fn wanted_never_reads_past_the_reply() {
        let mut c = ClientHandshake::new(
            ClientVersion::Socks5,
            Command::Connect,
            &dst("1.2.3.4:5"),
            Identity::default(),
        )
        .expect("valid");
        c.take_output();
        assert_eq!(c.wanted(), 2);
        c.feed(&[0x05, 0x00]);
        let mut reply = vec![0x05, 0x00, 0x00, 0x03, 4];
        reply.extend_from_slice(b"host\x00\x50");
        let mut fed = 0;
        loop {
            let n = c.wanted();
            assert!(fed + n <= reply.len(), "asks for {n} after {fed}");
            match c.feed(&reply[fed..fed + n]) {
                ClientStep::NeedMore => fed += n,
                step => {
                    assert_eq!(
                        step,
                        ClientStep::Granted { bound: TargetAddr::Domain("host".into(), 80) }
                    );
                    break;
                }
            }
        }
        assert_eq!(c.wanted(), 0);
        let mut v4 = ClientHandshake::new(
            ClientVersion::Socks4,
            Command::Connect,
            &dst("1.2.3.4:5"),
            Identity::default(),
        )
        .expect("valid");
        assert_eq!(v4.wanted(), 8);
        v4.feed(&[0, 90, 0]);
        assert_eq!(v4.wanted(), 5);
    }

    #[test]
    fn standalone_second_reply() {
        let mut c = ClientHandshake::second_reply(ClientVersion::Socks4);
        assert!(c.take_output().is_empty());
        assert_eq!(c.wanted(), 8);
        assert_eq!(
            c.feed(&[0, 90, 0, 20, 198, 51, 100, 7]),
            ClientStep::Granted { bound: dst("198.51.100.7:20") }
        );
        let mut c = ClientHandshake::second_reply(ClientVersion::Socks5);
        assert_eq!(
            c.feed(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]),
            ClientStep::Failed(ClientError::Refused(Failure::NotAllowed))
        );
    }

    #[test]
    fn pipelined_handshakes_take_one_write() {
        for credentials in
            [None, Some(Credentials { username: "bob".into(), password: b"pw".to_vec() })]
        {
            let policy =
                if credentials.is_some() { AuthPolicy::PasswordRequired } else { AuthPolicy::Open };
            let identity = Identity { user_id: String::new(), credentials };
            let mut c = ClientHandshake::new(
                ClientVersion::Socks5,
                Command::Connect,
                &dst("192.0.2.7:80"),
                identity,
            )
            .expect("valid")
            .pipelined();
            let mut server = ServerHandshake::new(policy);
            let mut step = server.feed(&c.take_output());
            if let Step::CheckPassword(_) = step {
                step = server.password_checked(true);
            }
            let Step::Request(req) = step else {
                panic!("one write must carry the request: {step:?}")
            };
            let mut answer = server.take_output();
            req.encode_reply(Ok("198.51.100.1:4000".parse().expect("literal")), &mut answer);
            let mut result = ClientStep::NeedMore;
            for byte in answer {
                result = c.feed(&[byte]);
                assert!(c.take_output().is_empty(), "nothing more to send");
            }
            assert_eq!(result, ClientStep::Granted { bound: dst("198.51.100.1:4000") });
        }
        // A server that ignores the single offered method is caught.
        let creds = Credentials { username: "bob".into(), password: b"pw".to_vec() };
        let identity = Identity { user_id: String::new(), credentials: Some(creds) };
        let mut c = ClientHandshake::new(
            ClientVersion::Socks5,
            Command::Connect,
            &dst("192.0.2.7:80"),
            identity,
        )
        .expect("valid")
        .pipelined();
        assert_eq!(
            c.feed(&[0x05, 0x00]),
            ClientStep::Failed(ClientError::Protocol(ProtoError::UnexpectedMethod(0)))
        );
    }

    #[test]
    fn failures() {
        let mut c = ClientHandshake::new(
            ClientVersion::Socks5,
            Command::Connect,
            &dst("1.2.3.4:5"),
            Identity::default(),
        )
        .expect("valid");
        assert_eq!(
            c.feed(&[0x05, 0xFF]),
            ClientStep::Failed(ClientError::Protocol(ProtoError::NoAcceptableMethod))
        );

        let mut c = ClientHandshake::new(
            ClientVersion::Socks5,
            Command::Connect,
            &dst("1.2.3.4:5"),
            Identity::default(),
        )
        .expect("valid");
        assert_eq!(
            c.feed(&[0x05, 0x02]),
            ClientStep::Failed(ClientError::Protocol(ProtoError::UnexpectedMethod(2)))
        );

        let mut c = ClientHandshake::new(
            ClientVersion::Socks5,
            Command::Connect,
            &dst("1.2.3.4:5"),
            Identity::default(),
        )
        .expect("valid");
        c.feed(&[0x05, 0x00]);
        assert_eq!(
            c.feed(&[0x05, 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0]),
            ClientStep::Failed(ClientError::Refused(Failure::Refused))
        );

        let mut c = ClientHandshake::new(
            ClientVersion::Socks4,
            Command::Connect,
            &dst("1.2.3.4:5"),
            Identity::default(),
        )
        .expect("valid");
        assert_eq!(
            c.feed(&[0x00, 91, 0, 0, 0, 0, 0, 0]),
            ClientStep::Failed(ClientError::Refused(Failure::General))
        );

        let creds = Credentials { username: "bob".into(), password: b"no".to_vec() };
        let id = Identity { user_id: String::new(), credentials: Some(creds) };
        let mut c =
            ClientHandshake::new(ClientVersion::Socks5, Command::Connect, &dst("1.2.3.4:5"), id)
                .expect("valid");
        let (_, step) = {
            let mut server = ServerHandshake::new(AuthPolicy::PasswordRequired);
            let s = server.feed(&c.take_output());
            assert_eq!(s, Step::NeedMore);
            c.feed(&server.take_output());
            let s = server.feed(&c.take_output());
            assert!(matches!(s, Step::CheckPassword(_)));
            let s = server.password_checked(false);
            (s, c.feed(&server.take_output()))
        };
        assert_eq!(step, ClientStep::Failed(ClientError::AuthRejected));
    }
}
