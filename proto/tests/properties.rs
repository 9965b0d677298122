//! Property tests that run in the normal suite (issue 7), driven by a small deterministic PRNG
//! (no extra crates; every run checks the same cases, and a failure prints its case number):
//!
//! - **Chunking**: a valid handshake of every kind (SOCKS4, SOCKS4a, SOCKS5 with and without
//!   username/password, both auth policies, early data after the request) fed to
//!   `ServerHandshake` in random chunks (empty ones included) gives exactly the same step,
//!   replies and leftover as fed whole, and that is the request the bytes encode. The same for
//!   `ClientHandshake` fed the server's replies, and a client reading exactly `wanted()` bytes
//!   never takes bytes of the relayed stream.
//! - **Random bytes**: random and mutated-valid input, more than 1 MiB in all, in random chunks:
//!   no panic, and the state machines decide within a bounded number of bytes — while a
//!   handshake still says `NeedMore`, everything fed so far fits the longest possible handshake
//!   (1032 bytes server side, 266 client side), so their internal buffer is bounded by it; a
//!   failed handshake keeps no leftover, a finished one only the bytes after the request.
//!   The decoders never panic, never claim more bytes than given, and say "need more" (not an
//!   error) for every strict prefix of a valid message.
//! - **Rules**: random rule files from a small grammar (inverted masks, contiguous or not,
//!   CIDR, IPv4/IPv6/IPv4-mapped, host names with several addresses, user lists and user files,
//!   port operators and service names, comments, blank lines, tabs) decided by
//!   `RuleSet::decide` agree with a reference matcher written here from the documented
//!   semantics; and a broken line anywhere makes the parse fail naming that line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socks_proto::auth::{self, Credentials};
use socks_proto::client::{ClientHandshake, ClientStep, ClientVersion, Identity};
use socks_proto::rules::{Action, Request as RuleRequest, RuleSet, StaticLookup};
use socks_proto::server::{AuthPolicy, Command, Request, ServerHandshake, Step, Version};
use socks_proto::{udp, v4, v5, Failure, ProtoError, TargetAddr};

// ---------------------------------------------------------------------------------------------
// A deterministic PRNG (splitmix64)
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length biased towards the edges: 0, 1, the maximum, or anything in between.
    fn len_up_to(&mut self, max: usize) -> usize {
        match self.below(6) {
            0 => 0,
            1 => 1.min(max),
            2 => max,
            3 => max.saturating_sub(1),
            _ => self.range(0, max),
        }
    }

    /// Printable ASCII without NUL (host names, user names).
    fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.-_ABCXYZ";
        (0..len).map(|_| *self.pick(ALPHABET) as char).collect()
    }

    /// Random bytes without NUL (SOCKS4 USERID, which may be any bytes but NUL).
    fn non_nul(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte().max(1)).collect()
    }

    /// Random chunk boundaries for `len` bytes; chunks may be empty.
    fn chunks(&mut self, len: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = match self.below(8) {
                0 => 0,
                1..=3 => 1,
                4 | 5 => self.range(1, 8),
                _ => self.range(1, 300),
            }
            .min(left);
            sizes.push(n);
            left -= n;
        }
        if self.chance(1, 4) {
            sizes.push(0);
        }
        sizes
    }
}

/// Splits `data` into the chunks `sizes` (whose sum is `data.len()`).
fn split<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &n in sizes {
        out.push(&data[at..at + n]);
        at += n;
    }
    assert_eq!(at, data.len());
    out
}

// ---------------------------------------------------------------------------------------------
// Valid handshakes
// ---------------------------------------------------------------------------------------------

/// The longest server handshake: SOCKS5 greeting (2 + 255), RFC 1929 (3 + 255 + 255),
/// request with a 255-byte name (4 + 1 + 255 + 2).
const MAX_SERVER_HANDSHAKE: usize = 257 + 513 + 262;
/// The longest server side of a client handshake: selection, auth status, reply with a name.
const MAX_CLIENT_HANDSHAKE: usize = 2 + 2 + 262;

/// A generated client handshake and what it must come to.
#[derive(Debug, Clone)]
struct Case {
    policy: AuthPolicy,
    password_ok: bool,
    /// Handshake bytes followed by early data.
    wire: Vec<u8>,
    /// The outcome fed whole: the request (or the error), replies, leftover.
    expected: (Step, Vec<u8>, Vec<u8>),
}

fn random_ipv4(rng: &mut Rng) -> Ipv4Addr {
    Ipv4Addr::from(rng.next() as u32)
}

fn random_ipv6(rng: &mut Rng) -> Ipv6Addr {
    Ipv6Addr::from(((rng.next() as u128) << 64) | rng.next() as u128)
}

fn random_port(rng: &mut Rng) -> u16 {
    if rng.chance(1, 8) {
        *rng.pick(&[0u16, 1, 65535])
    } else {
        rng.next() as u16
    }
}

/// A destination of any SOCKS5 address type.
fn random_target(rng: &mut Rng) -> TargetAddr {
    let port = random_port(rng);
    match rng.below(3) {
        0 => TargetAddr::Ip(SocketAddr::new(IpAddr::V4(random_ipv4(rng)), port)),
        1 => TargetAddr::Ip(SocketAddr::new(IpAddr::V6(random_ipv6(rng)), port)),
        _ => {
            let len = rng.len_up_to(255).max(1);
            TargetAddr::Domain(rng.text(len), port)
        }
    }
}

fn socks4_case(rng: &mut Rng, four_a: bool) -> Case {
    let policy = if rng.chance(1, 5) { AuthPolicy::PasswordRequired } else { AuthPolicy::Open };
    let (cd, command) = if rng.chance(1, 2) {
        (v4::CMD_CONNECT, Command::Connect)
    } else {
        (v4::CMD_BIND, Command::Bind)
    };
    let port = random_port(rng);
    let userid = if rng.chance(1, 2) {
        let n = rng.len_up_to(255);
        rng.text(n).into_bytes()
    } else {
        let n = rng.len_up_to(255);
        rng.non_nul(n)
    };
    let mut wire = vec![v4::VERSION, cd];
    wire.extend_from_slice(&port.to_be_bytes());
    let dst = if four_a {
        let last = rng.range(1, 255) as u8;
        wire.extend_from_slice(&[0, 0, 0, last]);
        let len = rng.len_up_to(255).max(1);
        let host = rng.text(len);
        TargetAddr::Domain(host, port)
    } else {
        let mut ip = random_ipv4(rng);
        let o = ip.octets();
        if o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] != 0 {
            ip = Ipv4Addr::new(1, o[1], o[2], o[3]); // 0.0.0.x (x != 0) would mean SOCKS4a
        }
        wire.extend_from_slice(&ip.octets());
        TargetAddr::Ip(SocketAddr::new(IpAddr::V4(ip), port))
    };
    wire.extend_from_slice(&userid);
    wire.push(0);
    if let TargetAddr::Domain(host, _) = &dst {
        wire.extend_from_slice(host.as_bytes());
        wire.push(0);
    }
    let early = random_early_data(rng);
    let handshake_len = wire.len();
    wire.extend_from_slice(&early);
    let expected = if policy == AuthPolicy::PasswordRequired {
        let mut out = Vec::new();
        v4::encode_reply(Err(Failure::NotAllowed), &mut out);
        (Step::Failed(ProtoError::Socks4NeedsAuth), out, Vec::new())
    } else {
        let user = Some(String::from_utf8_lossy(&userid).into_owned()).filter(|u| !u.is_empty());
        let req = Request { version: Version::Socks4, command, dst, user };
        (Step::Request(req), Vec::new(), wire[handshake_len..].to_vec())
    };
    Case { policy, password_ok: true, wire, expected }
}

fn socks5_case(rng: &mut Rng) -> Case {
    let policy = if rng.chance(1, 2) { AuthPolicy::PasswordRequired } else { AuthPolicy::Open };
    let password_ok = rng.chance(3, 4);
    // Offered methods: some mix of 00, 02 and others (GSSAPI, private ones).
    let mut methods: Vec<u8> = Vec::new();
    let most = if rng.chance(1, 10) { 255 } else { 6 };
    let n = rng.range(1, most);
    for _ in 0..n {
        methods.push(match rng.below(4) {
            0 => v5::METHOD_NO_AUTH,
            1 => v5::METHOD_USERNAME_PASSWORD,
            _ => rng.byte(),
        });
    }
    let offers = |m: u8| methods.contains(&m);
    let method = match policy {
        AuthPolicy::Open if offers(v5::METHOD_NO_AUTH) => v5::METHOD_NO_AUTH,
        _ if offers(v5::METHOD_USERNAME_PASSWORD) => v5::METHOD_USERNAME_PASSWORD,
        _ => v5::METHOD_NONE_ACCEPTABLE,
    };
    let mut wire = Vec::new();
    v5::encode_greeting(&methods, &mut wire).expect("1..=255 methods encode");
    let mut output = vec![v5::VERSION, method];
    let mut user = None;
    let mut failed = None;
    match method {
        v5::METHOD_USERNAME_PASSWORD => {
            let ulen = rng.len_up_to(255);
            let plen = rng.len_up_to(255);
            let creds = Credentials { username: rng.text(ulen), password: rng.bytes(plen) };
            auth::encode_request(&creds, &mut wire).expect("<= 255 bytes encode");
            let checked = policy == AuthPolicy::PasswordRequired;
            let ok = !checked || password_ok;
            output.extend_from_slice(&[auth::VERSION, if ok { 0 } else { 1 }]);
            if ok {
                user = Some(creds.username).filter(|u| !u.is_empty());
            } else {
                failed = Some(ProtoError::NoAcceptableMethod);
            }
        }
        v5::METHOD_NO_AUTH => {}
        _ => failed = Some(ProtoError::NoAcceptableMethod),
    }
    let (cmd, command) = *rng.pick(&[
        (v5::CMD_CONNECT, Command::Connect),
        (v5::CMD_BIND, Command::Bind),
        (v5::CMD_UDP_ASSOCIATE, Command::UdpAssociate),
    ]);
    let dst = random_target(rng);
    let req_start = wire.len();
    v5::encode_request(&v5::Request { command, dst: dst.clone() }, &mut wire)
        .expect("valid request encodes");
    assert_eq!(wire[req_start + 1], cmd);
    let handshake_len = wire.len();
    let early = random_early_data(rng);
    wire.extend_from_slice(&early);
    let expected = match failed {
        // Refused before the request: nothing after the failure is kept.
        Some(e) => (Step::Failed(e), output, Vec::new()),
        None => {
            let req = Request { version: Version::Socks5, command, dst, user };
            (Step::Request(req), output, wire[handshake_len..].to_vec())
        }
    };
    Case { policy, password_ok, wire, expected }
}

fn random_early_data(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(1, 2) {
        Vec::new()
    } else {
        let n = rng.len_up_to(400);
        rng.bytes(n)
    }
}

fn random_case(rng: &mut Rng) -> Case {
    match rng.below(4) {
        0 => socks4_case(rng, false),
        1 => socks4_case(rng, true),
        _ => socks5_case(rng),
    }
}

/// Feeds `chunks` as a server would: answers password checks, stops at the first final step;
/// returns the step, everything sent back, and the leftover (bytes after the request, including
/// chunks not fed because the handshake was over).
fn run_server(case: &Case, chunks: &[&[u8]]) -> (Step, Vec<u8>, Vec<u8>) {
    let mut hs = ServerHandshake::new(case.policy);
    let mut out = Vec::new();
    let mut step = Step::NeedMore;
    let mut rest = chunks.iter();
    for chunk in rest.by_ref() {
        step = hs.feed(chunk);
        if let Step::CheckPassword(_) = step {
            step = hs.password_checked(case.password_ok);
        }
        out.extend(hs.take_output());
        if !matches!(step, Step::NeedMore) {
            break;
        }
    }
    let mut leftover = hs.take_leftover();
    if matches!(step, Step::Request(_)) {
        rest.for_each(|c| leftover.extend_from_slice(c));
    }
    (step, out, leftover)
}

#[test]
fn server_handshake_random_chunking_matches_feeding_whole() {
    let mut rng = Rng::new(0x5EED_0001);
    for i in 0..3000 {
        let case = random_case(&mut rng);
        let whole = run_server(&case, &[&case.wire]);
        assert_eq!(whole, case.expected, "case {i}: fed whole: {case:?}");
        for _ in 0..4 {
            let sizes = rng.chunks(case.wire.len());
            let chunked = run_server(&case, &split(&case.wire, &sizes));
            assert_eq!(chunked, whole, "case {i}: chunks {sizes:?}");
        }
        // Byte by byte, the hardest split of all.
        let bytes: Vec<&[u8]> = case.wire.chunks(1).collect();
        assert_eq!(run_server(&case, &bytes), whole, "case {i}: byte by byte");
    }
}

// ---------------------------------------------------------------------------------------------
// Random bytes
// ---------------------------------------------------------------------------------------------

/// Random or mutated-valid client input.
fn hostile_input(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 => {
            let n = rng.range(0, 3000);
            rng.bytes(n)
        }
        1 => {
            // A plausible start (version byte, small counts) then garbage.
            let mut v = vec![*rng.pick(&[4u8, 5]), rng.byte() % 4];
            let n = rng.range(0, 2000);
            v.extend(rng.bytes(n));
            v
        }
        _ => {
            let mut v = random_case(rng).wire;
            for _ in 0..rng.range(1, 4) {
                match rng.below(4) {
                    0 if !v.is_empty() => {
                        let at = rng.below(v.len());
                        v[at] = rng.byte();
                    }
                    1 if !v.is_empty() => {
                        let at = rng.below(v.len());
                        v[at] ^= 1 << rng.below(8);
                    }
                    2 => {
                        let at = rng.below(v.len() + 1);
                        v.truncate(at);
                    }
                    _ => {
                        let n = rng.range(0, 1500);
                        v.extend(rng.bytes(n));
                    }
                }
            }
            v
        }
    }
}

/// Feeds `input` in random chunks until a final step; checks the bounds on the way. Returns
/// how many bytes were fed.
fn feed_hostile(rng: &mut Rng, policy: AuthPolicy, input: &[u8], what: &str) -> usize {
    let mut hs = ServerHandshake::new(policy);
    let mut fed = 0usize;
    let sizes = rng.chunks(input.len());
    for chunk in split(input, &sizes) {
        let mut step = hs.feed(chunk);
        fed += chunk.len();
        if let Step::CheckPassword(_) = step {
            step = hs.password_checked(rng.chance(1, 2));
        }
        let out = hs.take_output();
        assert!(out.len() <= 2 + 2 + 10, "{what}: {} bytes of replies", out.len());
        match step {
            Step::NeedMore => assert!(
                fed <= MAX_SERVER_HANDSHAKE,
                "{what}: still NeedMore after {fed} bytes: the handshake buffers without bound"
            ),
            Step::Failed(_) => {
                assert!(hs.take_leftover().is_empty(), "{what}: a failed handshake keeps bytes");
                // Feeding a finished handshake is a caller's mistake, reported, never a panic.
                assert_eq!(hs.feed(b"more"), Step::Failed(ProtoError::HandshakeOver));
                return fed;
            }
            Step::Request(_) => {
                let left = hs.take_leftover();
                assert!(left.len() <= fed, "{what}");
                assert_eq!(left, input[fed - left.len()..fed], "{what}: leftover is not the tail");
                assert!(fed - left.len() <= MAX_SERVER_HANDSHAKE, "{what}");
                assert_eq!(hs.feed(b"more"), Step::Failed(ProtoError::HandshakeOver));
                return fed;
            }
            Step::CheckPassword(_) => panic!("{what}: asked twice for a password check"),
        }
    }
    fed
}

#[test]
fn server_handshake_random_bytes_are_bounded_and_never_panic() {
    let mut rng = Rng::new(0x5EED_0002);
    let mut total = 0usize;
    let mut cases = 0usize;
    while total < (1 << 20) || cases < 3000 {
        let input = hostile_input(&mut rng);
        let policy = *rng.pick(&[AuthPolicy::Open, AuthPolicy::PasswordRequired]);
        total += feed_hostile(&mut rng, policy, &input, &format!("case {cases}"));
        cases += 1;
    }
    // The bound is tight: the longest valid handshake needs all of its 1032 bytes.
    let mut longest = vec![v5::VERSION, 255];
    longest.extend((0..255).map(|i| if i == 254 { v5::METHOD_USERNAME_PASSWORD } else { 0x80 }));
    longest.extend([auth::VERSION, 255]);
    longest.extend([b'u'; 255]);
    longest.push(255);
    longest.extend([b'p'; 255]);
    longest.extend([v5::VERSION, v5::CMD_CONNECT, 0, 0x03, 255]);
    longest.extend([b'h'; 255]);
    longest.extend([0, 80]);
    assert_eq!(longest.len(), MAX_SERVER_HANDSHAKE);
    let mut hs = ServerHandshake::new(AuthPolicy::Open);
    assert_eq!(hs.feed(&longest[..MAX_SERVER_HANDSHAKE - 1]), Step::NeedMore);
    assert!(matches!(hs.feed(&longest[MAX_SERVER_HANDSHAKE - 1..]), Step::Request(_)));
    // One stream of 1 MiB of random bytes starting like SOCKS5 and like SOCKS4: decided early.
    for first in [4u8, 5] {
        let mut input = rng.bytes(1 << 20);
        input[0] = first;
        input[1] = 1;
        let fed = feed_hostile(&mut rng, AuthPolicy::Open, &input, "1 MiB stream");
        assert!(fed <= MAX_SERVER_HANDSHAKE + 300, "fed {fed} bytes of a 1 MiB stream");
    }
}

/// How to build a client handshake (it cannot be cloned, so tests rebuild it).
#[derive(Debug, Clone)]
struct ClientSpec {
    version: ClientVersion,
    command: Command,
    dst: TargetAddr,
    identity: Identity,
    pipelined: bool,
}

impl ClientSpec {
    /// A fresh handshake, its first output already taken (as if sent).
    fn build(&self) -> ClientHandshake {
        let mut hs =
            ClientHandshake::new(self.version, self.command, &self.dst, self.identity.clone())
                .expect("generated requests are valid");
        if self.pipelined {
            hs = hs.pipelined();
        }
        let _ = hs.take_output();
        hs
    }
}

/// A random client handshake, the bytes a valid server answers it with, and the grant.
fn client_case(rng: &mut Rng) -> (ClientSpec, Vec<u8>, TargetAddr) {
    let version =
        *rng.pick(&[ClientVersion::Socks4, ClientVersion::Socks4a, ClientVersion::Socks5]);
    let mut dst = random_target(rng);
    match version {
        ClientVersion::Socks4 => {
            dst = TargetAddr::Ip(SocketAddr::new(IpAddr::V4(random_ipv4(rng)), dst.port()));
        }
        ClientVersion::Socks4a if matches!(dst, TargetAddr::Ip(SocketAddr::V6(_))) => {
            dst = TargetAddr::Domain("example.test".into(), dst.port());
        }
        _ => {}
    }
    let credentials = rng.chance(1, 2).then(|| {
        let (u, p) = (rng.range(1, 255), rng.range(0, 255));
        Credentials { username: rng.text(u), password: rng.bytes(p) }
    });
    let user_len = rng.range(0, 20);
    let identity = Identity { user_id: rng.text(user_len), credentials };
    let command = *rng.pick(&[Command::Connect, Command::Bind]);
    let pipelined = rng.chance(1, 3);
    let spec = ClientSpec { version, command, dst, identity, pipelined };
    let mut server = Vec::new();
    let granted = match version {
        ClientVersion::Socks4 | ClientVersion::Socks4a => {
            let addr = SocketAddr::new(IpAddr::V4(random_ipv4(rng)), random_port(rng));
            v4::encode_reply(Ok(addr), &mut server);
            TargetAddr::Ip(addr)
        }
        ClientVersion::Socks5 => {
            // With credentials the client offers 02 (a pipelined one offers only 02).
            let has_creds = spec.identity.credentials.is_some();
            let method = if has_creds && (pipelined || rng.chance(1, 2)) {
                v5::METHOD_USERNAME_PASSWORD
            } else {
                v5::METHOD_NO_AUTH
            };
            v5::encode_method_selection(method, &mut server);
            if method == v5::METHOD_USERNAME_PASSWORD {
                auth::encode_reply(true, &mut server);
            }
            let bound = random_target(rng);
            server.extend_from_slice(&[v5::VERSION, v5::REP_SUCCEEDED, 0]);
            bound.encode_socks5(&mut server).expect("bound encodes");
            bound
        }
    };
    (spec, server, granted)
}

#[test]
fn client_handshake_chunking_wanted_and_random_server_bytes() {
    let mut rng = Rng::new(0x5EED_0003);
    for i in 0..3000 {
        let (spec, server, granted) = client_case(&mut rng);
        // The reply followed by relayed bytes, fed whole, in random chunks, and exactly
        // `wanted()` bytes at a time: the same grant each time, the relayed bytes left over,
        // and `wanted()` never reaches past the reply.
        let relay_len = rng.range(1, 100);
        let relay = rng.bytes(relay_len);
        let mut stream = server.clone();
        stream.extend_from_slice(&relay);
        for mode in 0..3 {
            let mut hs = spec.build();
            let mut at = 0;
            let mut step = ClientStep::NeedMore;
            while at < stream.len() {
                let n = match mode {
                    0 => stream.len() - at,
                    1 => rng.range(0, 20).min(stream.len() - at),
                    _ => hs.wanted().min(stream.len() - at),
                };
                step = hs.feed(&stream[at..at + n]);
                at += n;
                let _ = hs.take_output();
                if step != ClientStep::NeedMore {
                    break;
                }
            }
            let want = ClientStep::Granted { bound: granted.clone() };
            assert_eq!(step, want, "case {i} mode {mode}: {spec:?}");
            let mut left = hs.take_leftover();
            left.extend_from_slice(&stream[at..]);
            assert_eq!(left, relay, "case {i} mode {mode}: relay bytes after the reply");
            if mode == 2 {
                assert_eq!(at, server.len(), "case {i}: wanted() read past the reply");
            }
        }
    }
    // Random and mutated server bytes: no panic, decided within the longest valid answer.
    let mut total = 0usize;
    let mut cases = 0usize;
    while total < (1 << 20) || cases < 3000 {
        let (spec, mut server, _) = client_case(&mut rng);
        let mut hs = spec.build();
        if rng.chance(1, 3) {
            let n = rng.range(0, 2000);
            server = rng.bytes(n);
        } else {
            for _ in 0..rng.range(1, 3) {
                if !server.is_empty() && rng.chance(1, 2) {
                    let at = rng.below(server.len());
                    server[at] = rng.byte();
                } else {
                    let n = rng.range(0, 600);
                    server.extend(rng.bytes(n));
                }
            }
        }
        let mut fed = 0;
        for chunk in split(&server, &rng.chunks(server.len())) {
            let step = hs.feed(chunk);
            fed += chunk.len();
            assert!(hs.take_output().len() <= 1100, "case {cases}");
            match step {
                ClientStep::NeedMore => {
                    assert!(fed <= MAX_CLIENT_HANDSHAKE, "case {cases}: NeedMore after {fed}");
                    assert!(hs.wanted() >= 1, "case {cases}: NeedMore but wants nothing");
                }
                _ => break,
            }
        }
        total += fed;
        cases += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Decoders
// ---------------------------------------------------------------------------------------------

/// Runs a decoder over random input: no panic, never claims more than it was given.
fn decoder_bounds<T>(
    rng: &mut Rng,
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ProtoError>,
    first: &[u8],
) {
    for _ in 0..20_000 {
        let n = rng.range(0, 600);
        let mut buf = rng.bytes(n);
        if !buf.is_empty() && rng.chance(3, 4) {
            buf[0] = *rng.pick(first);
        }
        if buf.len() > 1 && rng.chance(1, 2) {
            buf[1] = rng.byte() % 8;
        }
        if let Ok(Some((_, used))) = decode(&buf) {
            assert!(used >= 1 && used <= buf.len(), "used {used} of {}", buf.len());
        }
    }
}

/// Every strict prefix of a valid message needs more bytes; the whole decodes to `used` = len.
fn prefixes_need_more<T: std::fmt::Debug>(
    wire: &[u8],
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ProtoError>,
) {
    for cut in 0..wire.len() {
        let got = decode(&wire[..cut]);
        assert!(matches!(got, Ok(None)), "prefix {cut} of {wire:02x?}: {got:?}");
    }
    match decode(wire) {
        Ok(Some((_, used))) => assert_eq!(used, wire.len()),
        other => panic!("{wire:02x?} does not decode: {other:?}"),
    }
}

#[test]
fn decoders_never_panic_and_prefixes_need_more() {
    let mut rng = Rng::new(0x5EED_0004);
    decoder_bounds(&mut rng, v4::decode_request, &[4]);
    decoder_bounds(&mut rng, v5::decode_greeting, &[5]);
    decoder_bounds(&mut rng, v5::decode_request, &[5]);
    decoder_bounds(&mut rng, v5::decode_reply, &[5]);
    decoder_bounds(&mut rng, auth::decode_request, &[1]);
    decoder_bounds(&mut rng, TargetAddr::decode_socks5, &[1, 3, 4]);
    for _ in 0..20_000 {
        let n = rng.range(0, 300);
        let mut d = rng.bytes(n);
        if d.len() >= 4 && rng.chance(3, 4) {
            d[0] = 0;
            d[1] = 0;
            d[3] = *rng.pick(&[1u8, 3, 4]);
        }
        if let Ok((_, payload)) = udp::decode_datagram(&d) {
            assert!(payload.len() <= d.len());
        }
    }

    for i in 0..2000 {
        let case = random_case(&mut rng);
        if let (Step::Request(req), _, left) = &case.expected {
            let hs_len = case.wire.len() - left.len();
            let wire = &case.wire[..hs_len];
            match req.version {
                Version::Socks4 => {
                    prefixes_need_more(wire, v4::decode_request);
                    // Round trip through the encoder (USERID as decoded, lossily).
                    let (decoded, _) = v4::decode_request(wire).expect("valid").expect("complete");
                    let mut again = Vec::new();
                    if std::str::from_utf8(&wire[8..]).is_ok() {
                        v4::encode_request(&decoded, &mut again).expect("encodes");
                        if matches!(decoded.dst, TargetAddr::Ip(_)) {
                            assert_eq!(again, wire, "case {i}: SOCKS4 round trip");
                        }
                    }
                }
                Version::Socks5 => {
                    // The request is the last message; find it by decoding from the end part.
                    let mut req_wire = Vec::new();
                    v5::encode_request(
                        &v5::Request { command: req.command, dst: req.dst.clone() },
                        &mut req_wire,
                    )
                    .expect("encodes");
                    assert!(wire.ends_with(&req_wire), "case {i}");
                    prefixes_need_more(&req_wire, v5::decode_request);
                    let greeting_len = 2 + wire[1] as usize;
                    prefixes_need_more(&wire[..greeting_len], v5::decode_greeting);
                    let auth_part = &wire[greeting_len..wire.len() - req_wire.len()];
                    if !auth_part.is_empty() {
                        prefixes_need_more(auth_part, auth::decode_request);
                    }
                }
            }
        }
        // Replies and UDP headers round trip.
        let bound = random_target(&mut rng);
        let mut reply = vec![v5::VERSION, 0, 0];
        bound.encode_socks5(&mut reply).expect("encodes");
        prefixes_need_more(&reply, v5::decode_reply);
        let header = udp::UdpHeader { frag: rng.byte(), addr: bound };
        let mut dgram = Vec::new();
        udp::encode_header(&header, &mut dgram).expect("encodes");
        let payload_len = rng.range(0, 50);
        let payload = rng.bytes(payload_len);
        dgram.extend_from_slice(&payload);
        assert_eq!(udp::decode_datagram(&dgram), Ok((header, &payload[..])), "case {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Rules against a reference matcher
// ---------------------------------------------------------------------------------------------

const HOSTS: &str = "192.0.2.7 alpha\n198.51.100.1 beta\n198.51.100.2 beta\n2001:db8::1 beta\n\
                     2001:db8::5 gamma\n10.1.2.3 delta\n2001:db8:1::9 delta\n";
const SERVICES: &str = "finger 79/tcp\ntelnet 23/tcp\nhttp 80/tcp www\n";
const STAFF_FILE: &str = "/etc/staff";
const STAFF: &[&str] = &["carol", "dave"];
const USERS: &[&str] = &["alice", "bob", "carol", "dave", "eve"];

/// One network as the reference sees it: family, address bits, inverted-mask bits.
#[derive(Debug, Clone, Copy)]
struct RefNet {
    v4: bool,
    addr: u128,
    wild: u128,
}

impl RefNet {
    /// The documented test: `addr & !mask == cfg & !mask` on canonical addresses; IPv4 nets
    /// match IPv4 (and IPv4-mapped) requests; an IPv6 net written inside ::ffff:0:0/96 with a
    /// mask inside the low 32 bits is the IPv4 net it denotes; other IPv6 nets match only
    /// (non-mapped) IPv6 requests. The paper's "any", an IPv4 net with all 32 mask bits set,
    /// matches every address of both families.
    fn matches(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.v4 && self.wild & 0xffff_ffff == 0xffff_ffff {
            return true;
        }
        if self.v4 {
            return matches!(ip, IpAddr::V4(a) if (u32::from(a) as u128) & !self.wild == self.addr & !self.wild);
        }
        let mapped_net = (self.addr & !self.wild) >> 32 == 0xffff && self.wild >> 32 == 0;
        match ip {
            IpAddr::V4(a) if mapped_net => {
                let as_mapped = (0xffffu128 << 32) | u32::from(a) as u128;
                as_mapped & !self.wild == self.addr & !self.wild
            }
            IpAddr::V6(a) if !mapped_net => u128::from(a) & !self.wild == self.addr & !self.wild,
            _ => false,
        }
    }
}

impl RefNet {
    /// Whether every address of the net is loopback: checked by enumerating what the net's
    /// fixed bits allow, independently of the library's bit tricks.
    fn inside_loopback(&self) -> bool {
        let mapped_net =
            !self.v4 && (self.addr & !self.wild) >> 32 == 0xffff && self.wild >> 32 == 0;
        if self.v4 || mapped_net {
            let (addr, wild) = ((self.addr & 0xffff_ffff) as u32, (self.wild & 0xffff_ffff) as u32);
            if self.v4 && wild == u32::MAX {
                return false; // the paper's any
            }
            // The top octet may take each value its wildcard bits allow; all must be 127.
            (0..=255u32)
                .filter(|o| o & !(wild >> 24) == (addr >> 24) & !(wild >> 24))
                .all(|o| o == 127)
        } else {
            self.wild == 0 && self.addr == 1
        }
    }
}

/// Loopback as the documentation lists it: 127.0.0.0/8, ::1, IPv4-mapped 127.0.0.0/8.
fn ref_is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 127,
        IpAddr::V6(a) => {
            let o = a.octets();
            a == Ipv6Addr::LOCALHOST
                || (o[..10] == [0; 10] && o[10..12] == [0xff, 0xff] && o[12] == 127)
        }
    }
}

/// Unspecified as documented: 0.0.0.0/8, ::, IPv4-mapped 0.0.0.0/8.
fn ref_is_unspecified(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 0,
        IpAddr::V6(a) => {
            let o = a.octets();
            a == Ipv6Addr::UNSPECIFIED
                || (o[..10] == [0; 10] && o[10..12] == [0xff, 0xff] && o[12] == 0)
        }
    }
}

#[derive(Debug, Clone)]
struct RefRule {
    line: usize,
    permit: bool,
    users: Option<Vec<String>>,
    src: Vec<RefNet>,
    dst: Option<Vec<RefNet>>,
    port: Option<(&'static str, u16)>,
}

impl RefRule {
    fn matches(&self, src: IpAddr, dst: IpAddr, port: u16, user: Option<&str>) -> bool {
        let user_ok = match &self.users {
            None => true,
            Some(list) => user.is_some_and(|u| list.iter().any(|x| x == u)),
        };
        let port_ok = match self.port {
            None => true,
            Some((op, p)) => match op {
                "eq" => port == p,
                "neq" => port != p,
                "lt" => port < p,
                "gt" => port > p,
                "le" => port <= p,
                "ge" => port >= p,
                _ => unreachable!("generated operators only"),
            },
        };
        // A permit reaches loopback only through a matching net that lies inside loopback.
        let dst_ok = if self.permit && ref_is_loopback(dst) {
            self.dst
                .as_ref()
                .is_some_and(|d| d.iter().any(|n| n.matches(dst) && n.inside_loopback()))
        } else {
            self.dst.iter().all(|d| d.iter().any(|n| n.matches(dst)))
        };
        user_ok && self.src.iter().any(|n| n.matches(src)) && dst_ok && port_ok
    }
}

/// An unspecified destination is denied before any rule; then first match wins; no match is
/// deny with no line (0).
fn reference_decide(
    rules: &[RefRule],
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    user: Option<&str>,
) -> (bool, usize) {
    if ref_is_unspecified(dst) {
        return (false, 0);
    }
    rules
        .iter()
        .find(|r| r.matches(src, dst, port, user))
        .map_or((false, 0), |r| (r.permit, r.line))
}

fn host_addrs(name: &str, v4: bool) -> Vec<IpAddr> {
    HOSTS
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let ip: IpAddr = f.next()?.parse().ok()?;
            f.any(|n| n == name).then_some(ip)
        })
        .filter(|ip| ip.is_ipv4() == v4)
        .collect()
}

fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// An interesting address of one family (near the ones in the hosts table, or random).
fn config_addr(rng: &mut Rng, v4: bool) -> IpAddr {
    if v4 {
        let base = *rng.pick(&[0xC000_0207u32, 0xC633_6401, 0x0A01_0203, 0x7F00_0001, 0, u32::MAX]);
        let ip = match rng.below(3) {
            0 => base,
            1 => base ^ (1 << rng.below(32)),
            _ => rng.next() as u32,
        };
        IpAddr::V4(Ipv4Addr::from(ip))
    } else {
        let base: u128 = *rng.pick(&[
            0x2001_0db8_0000_0000_0000_0000_0000_0001u128,
            0x2001_0db8_0000_0000_0000_0000_0000_0005,
            0x2001_0db8_0001_0000_0000_0000_0000_0009,
            0,
            1,                // ::1
            0xffff_c000_0207, // ::ffff:192.0.2.7, IPv4-mapped
        ]);
        let ip = match rng.below(3) {
            0 => base,
            1 => base ^ (1 << rng.below(128)),
            _ => ((rng.next() as u128) << 64) | rng.next() as u128,
        };
        IpAddr::V6(Ipv6Addr::from(ip))
    }
}

/// An inverted mask of `bits` bits: contiguous (a prefix) or scattered.
fn inverted_mask(rng: &mut Rng, bits: u32) -> u128 {
    let all = if bits == 32 { u32::MAX as u128 } else { u128::MAX };
    match rng.below(4) {
        0 => 0,
        1 => all,
        2 => {
            let ones = rng.range(0, bits as usize) as u32;
            if ones == 0 {
                0
            } else {
                all >> (bits - ones) & all
            }
        }
        _ => (((rng.next() as u128) << 64) | rng.next() as u128) & all,
    }
}

fn mask_text(v4: bool, wild: u128) -> String {
    if v4 {
        Ipv4Addr::from(wild as u32).to_string()
    } else {
        Ipv6Addr::from(wild).to_string()
    }
}

/// One address spec: its text and the nets it stands for.
fn addr_spec(rng: &mut Rng) -> (String, Vec<RefNet>) {
    let v4 = rng.chance(2, 3);
    let bits: u32 = if v4 { 32 } else { 128 };
    let names_v4 = ["alpha", "beta", "delta"];
    let names_v6 = ["beta", "gamma", "delta"];
    let name = rng.chance(1, 4).then(|| *rng.pick(if v4 { &names_v4 } else { &names_v6 }));
    let addrs = match name {
        Some(n) => host_addrs(n, v4),
        None => vec![config_addr(rng, v4)],
    };
    let host_text = name.map_or_else(|| addrs[0].to_string(), str::to_string);
    if rng.chance(1, 2) {
        // ADDR/PREFIX. A name's family follows the prefix: <= 32 is IPv4.
        let prefix = if v4 {
            rng.range(0, 32)
        } else if name.is_some() {
            rng.range(33, 128)
        } else {
            rng.range(0, 128)
        } as u32;
        let wild = if prefix == bits {
            0
        } else {
            (if v4 { u32::MAX as u128 } else { u128::MAX }) >> prefix
        };
        let nets =
            addrs.iter().map(|a| RefNet { v4: a.is_ipv4(), addr: ip_bits(*a), wild }).collect();
        (format!("{host_text}/{prefix}"), nets)
    } else {
        let wild = inverted_mask(rng, bits);
        let nets =
            addrs.iter().map(|a| RefNet { v4: a.is_ipv4(), addr: ip_bits(*a), wild }).collect();
        (format!("{host_text} {}", mask_text(v4, wild)), nets)
    }
}

/// A random valid `sockd.conf` and its reference rules.
fn rule_file(rng: &mut Rng) -> (String, Vec<RefRule>) {
    let mut text = String::new();
    let mut rules = Vec::new();
    let mut line = 0;
    let sep = |rng: &mut Rng| {
        if rng.chance(1, 5) {
            "\t"
        } else if rng.chance(1, 5) {
            "   "
        } else {
            " "
        }
    };
    for _ in 0..rng.range(0, 12) {
        if rng.chance(1, 6) {
            line += 1;
            text.push_str(if rng.chance(1, 2) { "# a comment line\n" } else { "\n" });
        }
        line += 1;
        let permit = rng.chance(1, 2);
        let mut parts = vec![if permit { "permit" } else { "deny" }.to_string()];
        let users = if rng.chance(1, 4) {
            let mut list: Vec<String> = Vec::new();
            let mut items: Vec<String> = Vec::new();
            for _ in 0..rng.range(1, 3) {
                if rng.chance(1, 4) {
                    items.push(STAFF_FILE.into());
                    list.extend(STAFF.iter().map(|s| s.to_string()));
                } else {
                    let u = *rng.pick(&USERS[..4]);
                    items.push(u.into());
                    list.push(u.into());
                }
            }
            parts.push(format!("*={}", items.join(",")));
            Some(list)
        } else {
            None
        };
        let (src_text, src) = addr_spec(rng);
        parts.push(src_text);
        let mut dst = None;
        let mut port = None;
        if rng.chance(2, 3) {
            let (dst_text, d) = addr_spec(rng);
            parts.push(dst_text);
            dst = Some(d);
            if rng.chance(1, 2) {
                let op = *rng.pick(&["eq", "neq", "lt", "gt", "le", "ge"]);
                let (p_text, p) = match rng.below(4) {
                    0 => ("finger".to_string(), 79),
                    1 => ("www".to_string(), 80),
                    _ => {
                        let random = rng.next() as u16;
                        let p = *rng.pick(&[0u16, 1, 23, 79, 80, 1080, 65535, random]);
                        (p.to_string(), p)
                    }
                };
                parts.push(op.into());
                parts.push(p_text);
                port = Some((op, p));
            }
        }
        let mut l = String::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                l.push_str(sep(rng));
            }
            l.push_str(p);
        }
        if rng.chance(1, 5) {
            l.push_str(" # trailing comment");
        }
        text.push_str(&l);
        text.push('\n');
        rules.push(RefRule { line, permit, users, src, dst, port });
    }
    (text, rules)
}

/// A request address near the configured ones, or random, sometimes IPv4-mapped.
fn request_addr(rng: &mut Rng, rules: &[RefRule]) -> IpAddr {
    let nets: Vec<RefNet> =
        rules.iter().flat_map(|r| r.src.iter().chain(r.dst.iter().flatten()).copied()).collect();
    let ip = if !nets.is_empty() && rng.chance(3, 4) {
        let n = *rng.pick(&nets);
        let bits = if n.v4 { 32 } else { 128 };
        let mut a = n.addr;
        // Keep the fixed bits or flip one; fill the wildcard bits randomly.
        a = (a & !n.wild) | ((((rng.next() as u128) << 64) | rng.next() as u128) & n.wild);
        if rng.chance(1, 3) {
            a ^= 1 << rng.below(bits);
        }
        if n.v4 {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(a))
        }
    } else {
        let v4 = rng.chance(1, 2);
        config_addr(rng, v4)
    };
    match ip {
        IpAddr::V4(a) if rng.chance(1, 5) => IpAddr::V6(a.to_ipv6_mapped()),
        other => other,
    }
}

#[test]
fn random_rule_files_agree_with_the_reference_matcher() {
    let lookup = StaticLookup::new(HOSTS, SERVICES).with_file(STAFF_FILE, "carol\n dave # staff\n");
    let mut rng = Rng::new(0x5EED_0005);
    let mut permits = 0;
    let mut denies_by_rule = 0;
    let mut defaults = 0;
    let (mut loopback_permits, mut loopback_denies, mut unspecified) = (0, 0, 0);
    for f in 0..600 {
        let (text, rules) = rule_file(&mut rng);
        let set = RuleSet::parse("sockd.conf", &text, &lookup)
            .unwrap_or_else(|e| panic!("file {f} must parse: {e}\n{text}"));
        assert_eq!(set.rules.len(), rules.len(), "file {f}:\n{text}");
        for r in 0..300 {
            let src = request_addr(&mut rng, &rules);
            let dst = request_addr(&mut rng, &rules);
            let port = match rules.iter().find_map(|r| r.port) {
                Some((_, p)) if rng.chance(1, 2) => {
                    p.wrapping_add(rng.below(3) as u16).wrapping_sub(1)
                }
                _ => random_port(&mut rng),
            };
            let user = if rng.chance(1, 4) { None } else { Some(*rng.pick(USERS)) };
            let want = reference_decide(&rules, src, dst, port, user);
            let d = set.decide(&RuleRequest { src, dst, port, user });
            let got = (d.action == Action::Permit, d.rule.map_or(0, |r| r.line));
            assert_eq!(
                got, want,
                "file {f} request {r}: src={src} dst={dst} port={port} user={user:?}\n{text}"
            );
            if ref_is_loopback(dst) {
                if want.0 {
                    loopback_permits += 1;
                } else {
                    loopback_denies += 1;
                }
            }
            if ref_is_unspecified(dst) {
                unspecified += 1;
                assert!(d.unspecified, "file {f} request {r}: {dst} is unspecified");
            }
            match want {
                (true, _) => permits += 1,
                (false, 0) => defaults += 1,
                (false, _) => denies_by_rule += 1,
            }
        }
    }
    // The generator must exercise all three outcomes a fair amount.
    assert!(
        permits > 10_000 && denies_by_rule > 10_000 && defaults > 10_000,
        "{permits} {denies_by_rule} {defaults}"
    );
    assert!(
        loopback_permits > 50 && loopback_denies > 500 && unspecified > 500,
        "loopback and unspecified destinations must be exercised: {loopback_permits} \
         {loopback_denies} {unspecified}"
    );
}

#[test]
fn a_broken_line_anywhere_fails_the_parse_naming_it() {
    let lookup = StaticLookup::new(HOSTS, SERVICES).with_file(STAFF_FILE, "carol dave\n");
    let broken = [
        "permit",
        "permit 10.0.0.1",
        "deny 10.0.0.0 0.0.0.255 10.0.0.1 0.0.0.0 eqq 5",
        "allow 10.0.0.0/8",
        "permit 10.0.0.0/33",
        "permit nosuchhost 0.0.0.0",
        "permit 10.0.0.0/8 192.0.2.0/24 eq",
        "permit 10.0.0.0/8 eq 80",
        "permit ::1 0.0.0.0",
        "permit gamma 0.0.0.0",
        "permit 10.0.0.0/8 192.0.2.0/24 eq 65536",
        "permit 10.0.0.0/8 192.0.2.0/24 eq nosuchservice",
        "permit *= 10.0.0.0/8",
        "permit *=/nonexistent 10.0.0.0/8",
        "permit 10.0.0.0/8 ?=I",
        "permit 10.0.0.0/8 : /bin/true",
        "permit 10.0.0.0/8 192.0.2.0/24 eq 80 extra",
        "sockd @=fw 10.0.0.0/8",
    ];
    let mut rng = Rng::new(0x5EED_0006);
    for i in 0..2000 {
        let (text, _) = rule_file(&mut rng);
        let mut lines: Vec<&str> = text.lines().collect();
        let at = rng.range(0, lines.len());
        let bad = *rng.pick(&broken);
        lines.insert(at, bad);
        let file = lines.join("\n");
        match RuleSet::parse("t.conf", &file, &lookup) {
            Ok(_) => panic!("case {i}: `{bad}` must not parse:\n{file}"),
            Err(e) => {
                assert_eq!(e.line, at + 1, "case {i}: `{bad}` is line {}: {e}\n{file}", at + 1)
            }
        }
    }
}
