//! The server side of a SOCKS handshake as a sans-IO state machine: feed it whatever bytes
//! arrived, send what it asks to send, and it tells you when it needs a password checked and
//! when the request is complete. SOCKS4, SOCKS4a and SOCKS5 (with RFC 1929) are told apart by the
//! first byte. Bytes that follow the request (a pipelining client's early data) are kept.
//!
//! Not here: deciding whether a request is allowed, connecting anywhere, or timeouts.

use std::net::SocketAddr;

use crate::addr::TargetAddr;
use crate::auth::{self, Credentials};
use crate::error::ProtoError;
use crate::reply::Failure;
use crate::{v4, v5};

/// Which protocol the client speaks (SOCKS4a is SOCKS4 with a `Domain` destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SOCKS4 or SOCKS4a.
    Socks4,
    /// SOCKS5.
    Socks5,
}

/// What the client asks for, across versions.
pub use crate::command::Command;

/// Whether clients must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    /// No authentication required. A SOCKS5 client that offers only username/password gets it,
    /// and its username is taken as claimed (like a SOCKS4 USERID), without a password check.
    Open,
    /// SOCKS5 username/password required and checked by the caller; SOCKS4 is refused.
    PasswordRequired,
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The protocol, which decides the reply format.
    pub version: Version,
    /// What to do.
    pub command: Command,
    /// Where to (for BIND: the host expected to connect; for UDP ASSOCIATE: the client's source).
    pub dst: TargetAddr,
    /// The SOCKS4 USERID or SOCKS5 username, if the client gave a non-empty one.
    pub user: Option<String>,
}

impl Request {
    /// Appends the reply for this request's version: success with the bound address, or failure.
    pub fn encode_reply(&self, result: Result<SocketAddr, Failure>, out: &mut Vec<u8>) {
        encode_reply(self.version, result, out);
    }
}

/// Appends a reply in `version`'s format (SOCKS4: every failure is 91).
pub fn encode_reply(version: Version, result: Result<SocketAddr, Failure>, out: &mut Vec<u8>) {
    match version {
        Version::Socks4 => v4::encode_reply(result, out),
        Version::Socks5 => v5::encode_reply(result, out),
    }
}

/// What the caller should do next. Before acting on any step, send `take_output()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read more bytes and `feed` them.
    NeedMore,
    /// Check these credentials and call `password_checked`.
    CheckPassword(Credentials),
    /// The handshake is complete; `take_leftover()` holds any bytes that followed.
    Request(Request),
    /// The client broke the protocol or was refused; send the output (a failure reply, possibly
    /// empty) and close.
    Failed(ProtoError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Socks4Request,
    Greeting,
    Auth,
    AuthPending,
    Socks5Request,
    Finished,
}

/// The server handshake for one client connection.
#[derive(Debug)]
pub struct ServerHandshake {
    policy: AuthPolicy,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    user: Option<String>,
}

impl ServerHandshake {
    /// A handshake that has seen no bytes yet.
    pub fn new(policy: AuthPolicy) -> Self {
        ServerHandshake {
            policy,
            state: State::Start,
            input: Vec::new(),
            output: Vec::new(),
            user: None,
        }
    }

    /// Adds bytes from the client and advances as far as they allow. Until the request is
    /// complete no more than about 1 KiB is ever kept (the decoders bound every field); callers
    /// stop feeding once a step other than `NeedMore` comes back, since bytes fed while a
    /// password check is pending, or after the end, are kept as they come.
    pub fn feed(&mut self, data: &[u8]) -> Step {
        self.input.extend_from_slice(data);
        self.advance()
    }

    /// Bytes to send to the client now (method selection, auth status, failure replies).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Bytes that arrived after the request: application data to forward once connected.
    pub fn take_leftover(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    /// The caller's verdict on the credentials from `Step::CheckPassword`.
    pub fn password_checked(&mut self, ok: bool) -> Step {
        if self.state != State::AuthPending {
            return Step::Failed(ProtoError::UnexpectedMethod(v5::METHOD_USERNAME_PASSWORD));
        }
        auth::encode_reply(ok, &mut self.output);
        if !ok {
            self.user = None;
            return self.fail(ProtoError::NoAcceptableMethod);
        }
        self.state = State::Socks5Request;
        self.advance()
    }

    fn fail(&mut self, error: ProtoError) -> Step {
        self.state = State::Finished;
        self.input.clear();
        Step::Failed(error)
    }

    fn advance(&mut self) -> Step {
        loop {
            match self.state {
                State::Start => match self.input.first() {
                    None => return Step::NeedMore,
                    Some(&v4::VERSION) => self.state = State::Socks4Request,
                    Some(&v5::VERSION) => self.state = State::Greeting,
                    Some(&other) => return self.fail(ProtoError::BadVersion(other)),
                },
                State::Socks4Request => return self.socks4_request(),
                State::Greeting => match v5::decode_greeting(&self.input) {
                    Ok(None) => return Step::NeedMore,
                    Err(e) => return self.fail(e),
                    Ok(Some((methods, used))) => {
                        self.input.drain(..used);
                        let method = self.choose_method(&methods);
                        v5::encode_method_selection(method, &mut self.output);
                        match method {
                            v5::METHOD_NO_AUTH => self.state = State::Socks5Request,
                            v5::METHOD_USERNAME_PASSWORD => self.state = State::Auth,
                            _ => return self.fail(ProtoError::NoAcceptableMethod),
                        }
                    }
                },
                State::Auth => match auth::decode_request(&self.input) {
                    Ok(None) => return Step::NeedMore,
                    Err(e) => return self.fail(e),
                    Ok(Some((creds, used))) => {
                        self.input.drain(..used);
                        self.user = Some(creds.username.clone()).filter(|u| !u.is_empty());
                        if self.policy == AuthPolicy::PasswordRequired {
                            self.state = State::AuthPending;
                            return Step::CheckPassword(creds);
                        }
                        auth::encode_reply(true, &mut self.output);
                        self.state = State::Socks5Request;
                    }
                },
                State::AuthPending => return Step::NeedMore,
                State::Socks5Request => return self.socks5_request(),
                // Fed again after the request or a failure: a caller bug, never a client's.
                State::Finished => return Step::Failed(ProtoError::HandshakeOver),
            }
        }
    }

    fn choose_method(&self, offered: &[u8]) -> u8 {
        let offers = |m| offered.contains(&m);
        match self.policy {
            AuthPolicy::Open if offers(v5::METHOD_NO_AUTH) => v5::METHOD_NO_AUTH,
            _ if offers(v5::METHOD_USERNAME_PASSWORD) => v5::METHOD_USERNAME_PASSWORD,
            _ => v5::METHOD_NONE_ACCEPTABLE,
        }
    }

    fn socks4_request(&mut self) -> Step {
        match v4::decode_request(&self.input) {
            Ok(None) => Step::NeedMore,
            Err(e) => {
                v4::encode_reply(Err(Failure::General), &mut self.output);
                self.fail(e)
            }
            Ok(Some((req, used))) => {
                self.input.drain(..used);
                if self.policy == AuthPolicy::PasswordRequired {
                    v4::encode_reply(Err(Failure::NotAllowed), &mut self.output);
                    return self.fail(ProtoError::Socks4NeedsAuth);
                }
                self.state = State::Finished;
                let user = Some(req.user_id).filter(|u| !u.is_empty());
                let command = req.command;
                Step::Request(Request { version: Version::Socks4, command, dst: req.dst, user })
            }
        }
    }

    fn socks5_request(&mut self) -> Step {
        match v5::decode_request(&self.input) {
            Ok(None) => Step::NeedMore,
            Err(e) => {
                let failure = match e {
                    ProtoError::UnsupportedCommand(_) => Failure::CommandNotSupported,
                    ProtoError::BadAddressType(_) => Failure::AddressTypeNotSupported,
                    _ => Failure::General,
                };
                v5::encode_reply(Err(failure), &mut self.output);
                self.fail(e)
            }
            Ok(Some((req, used))) => {
                self.input.drain(..used);
                self.state = State::Finished;
                let user = self.user.take();
                let command = req.command;
                Step::Request(Request { version: Version::Socks5, command, dst: req.dst, user })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a handshake fed in the given chunks; returns the last step, all output, leftover.
    fn run(policy: AuthPolicy, chunks: &[&[u8]], password_ok: bool) -> (Step, Vec<u8>, Vec<u8>) {
        let mut hs = ServerHandshake::new(policy);
        let mut out = Vec::new();
        let mut step = Step::NeedMore;
        let mut rest = chunks.iter();
        for chunk in rest.by_ref() {
            step = hs.feed(chunk);
            if let Step::CheckPassword(_) = step {
                step = hs.password_checked(password_ok);
            }
            out.extend(hs.take_output());
            if !matches!(step, Step::NeedMore) {
                break;
            }
        }
        // What a caller reads after the request is relay data, not handshake.
        let mut leftover = hs.take_leftover();
        if matches!(step, Step::Request(_)) {
            rest.for_each(|chunk| leftover.extend_from_slice(chunk));
        }
        (step, out, leftover)
    }

    /// Feeds `wire` split at every boundary, and byte by byte; each must give the same result.
    fn every_split(policy: AuthPolicy, wire: &[u8], password_ok: bool) -> (Step, Vec<u8>, Vec<u8>) {
        let whole = run(policy, &[wire], password_ok);
        for cut in 0..=wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(run(policy, &[a, b], password_ok), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(run(policy, &bytes, password_ok), whole, "byte by byte");
        whole
    }

    #[test]
    fn socks4_connect_with_early_data() {
        let wire = b"\x04\x01\x00\x50\x0a\x00\x00\x01alice\x00GET /";
        let (step, out, left) = every_split(AuthPolicy::Open, wire, true);
        let Step::Request(req) = step else { panic!("{step:?}") };
        assert_eq!(req.version, Version::Socks4);
        assert_eq!(req.command, Command::Connect);
        assert_eq!(req.dst, TargetAddr::Ip("10.0.0.1:80".parse().expect("literal")));
        assert_eq!(req.user.as_deref(), Some("alice"));
        assert!(out.is_empty());
        assert_eq!(left, b"GET /");
    }

    #[test]
    fn socks4a_bind() {
        let wire = b"\x04\x02\x00\x15\x00\x00\x00\x07\x00ftp.test\x00";
        let (step, _, left) = every_split(AuthPolicy::Open, wire, true);
        let Step::Request(req) = step else { panic!("{step:?}") };
        assert_eq!(req.command, Command::Bind);
        assert_eq!(req.dst, TargetAddr::Domain("ftp.test".into(), 21));
        assert_eq!(req.user, None);
        assert!(left.is_empty());
    }

    #[test]
    fn socks5_no_auth_pipelined() {
        let wire = b"\x05\x01\x00\x05\x01\x00\x03\x04host\x01\xbbhello";
        let (step, out, left) = every_split(AuthPolicy::Open, wire, true);
        let Step::Request(req) = step else { panic!("{step:?}") };
        assert_eq!(req.version, Version::Socks5);
        assert_eq!(req.dst, TargetAddr::Domain("host".into(), 443));
        assert_eq!(out, [0x05, 0x00]);
        assert_eq!(left, b"hello");
    }

    #[test]
    fn socks5_password_accepted_and_refused() {
        let wire = b"\x05\x02\x00\x02\x01\x03bob\x02pw\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x07";
        let (step, out, _) = every_split(AuthPolicy::PasswordRequired, wire, true);
        let Step::Request(req) = step else { panic!("{step:?}") };
        assert_eq!(req.user.as_deref(), Some("bob"));
        assert_eq!(out, [0x05, 0x02, 0x01, 0x00]);

        let (step, out, _) = every_split(AuthPolicy::PasswordRequired, wire, false);
        assert!(matches!(step, Step::Failed(_)), "{step:?}");
        assert_eq!(out, [0x05, 0x02, 0x01, 0x01]);
    }

    #[test]
    fn open_server_takes_claimed_username() {
        let wire = b"\x05\x01\x02\x01\x03bob\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x07";
        let (step, out, _) = every_split(AuthPolicy::Open, wire, false);
        let Step::Request(req) = step else { panic!("{step:?}") };
        assert_eq!(req.user.as_deref(), Some("bob"));
        assert_eq!(out, [0x05, 0x02, 0x01, 0x00]);
    }

    #[test]
    fn refusals_carry_the_right_reply() {
        let (step, out, _) = run(AuthPolicy::PasswordRequired, &[b"\x05\x01\x00"], true);
        assert_eq!(step, Step::Failed(ProtoError::NoAcceptableMethod));
        assert_eq!(out, [0x05, 0xFF]);

        let (step, out, _) =
            run(AuthPolicy::PasswordRequired, &[b"\x04\x01\x00\x50\x01\x02\x03\x04\x00"], true);
        assert_eq!(step, Step::Failed(ProtoError::Socks4NeedsAuth));
        assert_eq!(out, [0x00, 91, 0, 0, 0, 0, 0, 0]);

        let (step, out, _) =
            run(AuthPolicy::Open, &[b"\x05\x01\x00\x05\x09\x00\x01\x01\x02\x03\x04\x00\x50"], true);
        assert_eq!(step, Step::Failed(ProtoError::UnsupportedCommand(9)));
        assert_eq!(out, [0x05, 0x00, 0x05, 0x07, 0, 1, 0, 0, 0, 0, 0, 0]);

        let (step, out, _) = run(AuthPolicy::Open, &[b"\x05\x01\x00\x05\x01\x00\x02"], true);
        assert_eq!(step, Step::Failed(ProtoError::BadAddressType(2)));
        assert_eq!(out, [0x05, 0x00, 0x05, 0x08, 0, 1, 0, 0, 0, 0, 0, 0]);

        let (step, out, _) = run(AuthPolicy::Open, &[b"GET / HTTP/1.1\r\n"], true);
        assert_eq!(step, Step::Failed(ProtoError::BadVersion(b'G')));
        assert!(out.is_empty());

        let mut long = b"\x04\x01\x00\x50\x01\x02\x03\x04".to_vec();
        long.extend([b'x'; 300]);
        let (step, out, _) = run(AuthPolicy::Open, &[&long], true);
        assert_eq!(step, Step::Failed(ProtoError::TooLong("USERID")));
        assert_eq!(out, [0x00, 91, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn replies_per_version() {
        let mut out = Vec::new();
        encode_reply(Version::Socks4, Ok("10.1.2.3:1025".parse().expect("literal")), &mut out);
        assert_eq!(out, [0x00, 90, 0x04, 0x01, 10, 1, 2, 3]);
        out.clear();
        encode_reply(Version::Socks5, Err(Failure::Refused), &mut out);
        assert_eq!(out, [0x05, 0x05, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
