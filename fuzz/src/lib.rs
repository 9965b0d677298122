//! The checks behind every fuzz target, one public function per target, so that the libFuzzer
//! binaries (`fuzz_targets/`) and the plain `cargo test` corpus replay (`tests/replay.rs`) run
//! exactly the same code. Each function takes arbitrary bytes and panics only when socks-proto
//! breaks one of its promises:
//!
//! - decoders: no panic; a success never claims more bytes than given, and re-decoding exactly
//!   the bytes it used gives the same value (so "need more" and the length are consistent);
//!   encoders round-trip what the decoders accept where the encoding is canonical;
//! - handshakes: fed in the chunks the input describes, the result, the replies and the
//!   leftover are those of feeding the same bytes whole; while a handshake still needs more,
//!   everything fed fits the longest valid handshake (so buffering is bounded);
//! - rule files: parsing never panics; a parsed rule set decides any request (first match);
//!   a rule's canonical text parses back to the same text.
//!
//! Not here: sockets, sockd, or the property tests that run in the normal suite
//! (proto/tests/properties.rs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socks_proto::auth::{self, Credentials};
use socks_proto::client::{ClientHandshake, ClientStep, ClientVersion, Identity};
use socks_proto::rules::{ClientRules, Request as RuleRequest, RuleSet, StaticLookup};
use socks_proto::server::{AuthPolicy, Command, ServerHandshake, Step};
use socks_proto::{udp, v4, v5, TargetAddr};

/// The longest server handshake: SOCKS5 greeting, RFC 1929 request, request with a 255-byte name.
pub const MAX_SERVER_HANDSHAKE: usize = (2 + 255) + (3 + 255 + 255) + (4 + 1 + 255 + 2);
/// The longest server side of a client handshake: selection, auth status, reply with a name.
pub const MAX_CLIENT_HANDSHAKE: usize = 2 + 2 + (4 + 1 + 255 + 2);

/// A decoder's result is consistent with itself: `used <= len`, and decoding `buf[..used]`
/// gives the same value.
fn consistent<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    buf: &[u8],
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
) -> Option<(T, usize)> {
    match decode(buf) {
        Ok(Some((value, used))) => {
            assert!(used >= 1 && used <= buf.len(), "used {used} of {} bytes", buf.len());
            match decode(&buf[..used]) {
                Ok(Some((again, used_again))) => {
                    assert_eq!(again, value, "re-decoding the used bytes");
                    assert_eq!(used_again, used);
                }
                other => panic!("the {used} used bytes alone do not decode: {other:?}"),
            }
            Some((value, used))
        }
        _ => None,
    }
}

/// `v4::decode_request`; an IPv4 (not 4a) request with a UTF-8 USERID re-encodes identically.
pub fn v4_decode_request(data: &[u8]) {
    if let Some((req, used)) = consistent(data, v4::decode_request) {
        let mut again = Vec::new();
        let raw_user = data[8..used].split(|&b| b == 0).next().unwrap_or_default();
        let utf8_user = std::str::from_utf8(raw_user).is_ok();
        if matches!(req.dst, TargetAddr::Ip(_)) && utf8_user {
            v4::encode_request(&req, &mut again).expect("a decoded request encodes");
            assert_eq!(again, &data[..used], "SOCKS4 round trip");
        }
    }
}

/// `v5::decode_request`; what decodes re-encodes identically.
pub fn v5_decode_request(data: &[u8]) {
    if let Some((req, used)) = consistent(data, v5::decode_request) {
        let mut again = Vec::new();
        v5::encode_request(&req, &mut again).expect("a decoded request encodes");
        assert_eq!(again, &data[..used], "SOCKS5 request round trip");
    }
}

/// `v5::decode_greeting`; what decodes re-encodes identically.
pub fn v5_decode_greeting(data: &[u8]) {
    if let Some((methods, used)) = consistent(data, v5::decode_greeting) {
        let mut again = Vec::new();
        v5::encode_greeting(&methods, &mut again).expect("decoded methods encode");
        assert_eq!(again, &data[..used], "greeting round trip");
    }
}

/// `v5::decode_reply`; a decoded reply's address re-encodes to the bytes after the header.
pub fn v5_decode_reply(data: &[u8]) {
    if let Some((reply, used)) = consistent(data, v5::decode_reply) {
        let mut addr = Vec::new();
        reply.bound.encode_socks5(&mut addr).expect("a decoded address encodes");
        assert_eq!(addr, &data[3..used], "reply address round trip");
    }
}

/// `auth::decode_request`; a UTF-8 username re-encodes identically.
pub fn auth_decode_request(data: &[u8]) {
    if let Some((creds, used)) = consistent(data, auth::decode_request) {
        let ulen = usize::from(data[1]);
        if std::str::from_utf8(&data[2..2 + ulen]).is_ok() {
            let mut again = Vec::new();
            auth::encode_request(&creds, &mut again).expect("decoded credentials encode");
            assert_eq!(again, &data[..used], "RFC 1929 round trip");
        }
        // Credentials never show the password in Debug output (it could end up in a log).
        let expected =
            format!("Credentials {{ username: {:?}, password: \"<hidden>\" }}", creds.username);
        assert_eq!(format!("{creds:?}"), expected);
    }
}

/// `udp::decode_datagram`: header plus payload is the whole datagram; the header re-encodes.
pub fn udp_decode_datagram(data: &[u8]) {
    if let Ok((header, payload)) = udp::decode_datagram(data) {
        let mut again = Vec::new();
        udp::encode_header(&header, &mut again).expect("a decoded header encodes");
        assert_eq!(again.len() + payload.len(), data.len());
        assert_eq!(again, &data[..again.len()], "UDP header round trip");
    }
}

/// Splits `data` into chunks: each chunk is a length byte (mod 64) followed by that many bytes.
fn chunks_of(data: &[u8]) -> (Vec<&[u8]>, Vec<u8>) {
    let mut chunks = Vec::new();
    let mut whole = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = usize::from(data[at] % 64);
        at += 1;
        let end = (at + n).min(data.len());
        chunks.push(&data[at..end]);
        whole.extend_from_slice(&data[at..end]);
        at = end;
    }
    (chunks, whole)
}

/// Runs a server handshake over `chunks`, as sockd drives it.
fn run_server(policy: AuthPolicy, password_ok: bool, chunks: &[&[u8]]) -> (Step, Vec<u8>, Vec<u8>) {
    let mut hs = ServerHandshake::new(policy);
    let mut out = Vec::new();
    let mut step = Step::NeedMore;
    let mut fed = 0usize;
    let mut rest = chunks.iter();
    for chunk in rest.by_ref() {
        step = hs.feed(chunk);
        fed += chunk.len();
        if let Step::CheckPassword(_) = step {
            step = hs.password_checked(password_ok);
        }
        let replies = hs.take_output();
        assert!(replies.len() <= 2 + 2 + 10, "{} bytes of replies", replies.len());
        out.extend(replies);
        match &step {
            Step::NeedMore => {
                assert!(fed <= MAX_SERVER_HANDSHAKE, "still NeedMore after {fed} bytes")
            }
            Step::CheckPassword(_) => panic!("a second password check"),
            _ => break,
        }
    }
    let mut leftover = hs.take_leftover();
    match &step {
        Step::Failed(_) => assert!(leftover.is_empty(), "a failed handshake keeps bytes"),
        Step::Request(_) => rest.for_each(|c| leftover.extend_from_slice(c)),
        _ => {}
    }
    (step, out, leftover)
}

/// `ServerHandshake` fed arbitrary chunks: first byte = policy and password verdict, then
/// length-prefixed chunks; the outcome equals feeding the same bytes whole.
pub fn server_handshake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let policy = if mode & 1 == 0 { AuthPolicy::Open } else { AuthPolicy::PasswordRequired };
    let password_ok = mode & 2 == 0;
    let (chunks, whole) = chunks_of(rest);
    let chunked = run_server(policy, password_ok, &chunks);
    let at_once = run_server(policy, password_ok, &[&whole]);
    assert_eq!(chunked, at_once, "chunked and whole differ");
    if let (Step::Request(_), _, leftover) = &at_once {
        assert!(whole.ends_with(leftover), "the leftover is not the tail of the input");
    }
}

/// The client handshake a mode byte describes.
fn client_for(mode: u8) -> Option<ClientHandshake> {
    let version = match mode % 3 {
        0 => ClientVersion::Socks4,
        1 => ClientVersion::Socks4a,
        _ => ClientVersion::Socks5,
    };
    let command = if mode & 4 == 0 { Command::Connect } else { Command::Bind };
    let dst = match (mode >> 3) & 3 {
        0 => TargetAddr::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 80)),
        1 => TargetAddr::Ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 443)),
        _ => TargetAddr::Domain("example.test".into(), 21),
    };
    let credentials = (mode & 0x20 != 0)
        .then(|| Credentials { username: "user".into(), password: b"secret".to_vec() });
    let identity = Identity { user_id: "id".into(), credentials };
    let hs = ClientHandshake::new(version, command, &dst, identity).ok()?;
    Some(if mode & 0x40 != 0 { hs.pipelined() } else { hs })
}

fn run_client(mode: u8, chunks: &[&[u8]]) -> Option<(ClientStep, Vec<u8>, Vec<u8>)> {
    let mut hs = client_for(mode)?;
    let mut out = hs.take_output();
    let mut step = ClientStep::NeedMore;
    let mut fed = 0usize;
    let mut rest = chunks.iter();
    for chunk in rest.by_ref() {
        step = hs.feed(chunk);
        fed += chunk.len();
        out.extend(hs.take_output());
        if step != ClientStep::NeedMore {
            break;
        }
        assert!(fed <= MAX_CLIENT_HANDSHAKE, "client still NeedMore after {fed} bytes");
        assert!(hs.wanted() >= 1, "NeedMore but wanted() is 0");
    }
    // After a grant the leftover is the start of the relayed stream; after a failure it means
    // nothing (the connection is closed), so it is not compared.
    let mut leftover = Vec::new();
    if matches!(step, ClientStep::Granted { .. }) {
        leftover = hs.take_leftover();
        rest.for_each(|c| leftover.extend_from_slice(c));
    }
    Some((step, out, leftover))
}

/// `ClientHandshake` fed arbitrary server bytes: first byte = version, command, destination,
/// credentials, pipelining; then length-prefixed chunks; chunked equals whole; and reading
/// exactly `wanted()` bytes at a time reaches the same step without reading past the reply.
pub fn client_handshake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (chunks, whole) = chunks_of(rest);
    let Some(chunked) = run_client(mode, &chunks) else { return };
    let at_once = run_client(mode, &[&whole]).expect("same mode");
    assert_eq!(chunked, at_once, "chunked and whole differ");
    // Exactly what wanted() asks for, as the preload library reads.
    let mut hs = client_for(mode).expect("same mode");
    let _ = hs.take_output();
    let mut at = 0;
    let mut step = ClientStep::NeedMore;
    while at < whole.len() && step == ClientStep::NeedMore {
        let n = hs.wanted().min(whole.len() - at);
        assert!(n >= 1);
        step = hs.feed(&whole[at..at + n]);
        at += n;
    }
    if let (ClientStep::Granted { .. }, ClientStep::Granted { .. }) = (&step, &at_once.0) {
        assert_eq!(step, at_once.0);
        assert!(hs.take_leftover().is_empty(), "wanted() read past the reply");
        assert_eq!(whole.len() - at, at_once.2.len(), "wanted() consumed relay bytes");
    }
}

/// The lookup every rule-file target uses: a few names (both families, several addresses), a
/// few services, one user file.
pub fn lookup() -> StaticLookup {
    StaticLookup::new(
        "192.0.2.7 alpha lloyd.mips.com\n198.51.100.1 beta sgi.com\n198.51.100.2 beta\n\
         2001:db8::1 beta\n2001:db8::5 gamma\n::ffff:203.0.113.9 mapped\n192.0.2.1 fw fw.example\n",
        "finger 79/tcp\ntelnet 23/tcp\nhttp 80/tcp www\nsocks 1080/tcp\n",
    )
    .with_file("/etc/staff", "carol dave\n# comment\nerin,frank\n")
}

/// Requests derived from the input bytes, to decide with a parsed rule set.
fn requests(data: &[u8]) -> Vec<(IpAddr, IpAddr, u16, Option<&'static str>)> {
    let users = [None, Some("alice"), Some("carol"), Some("erin")];
    data.chunks(7)
        .take(16)
        .map(|c| {
            let b = |i: usize| c.get(i).copied().unwrap_or(0);
            let v4 = |o: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2 + (o & 1), o));
            let src = if b(0) & 0x80 == 0 {
                v4(b(1))
            } else {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(b(1))))
            };
            let dst = if b(2) & 0x80 == 0 {
                IpAddr::V6(Ipv4Addr::new(198, 51, 100, b(3)).to_ipv6_mapped())
            } else {
                v4(b(3))
            };
            (src, dst, u16::from_be_bytes([b(4), b(5)]), users[usize::from(b(6) % 4)])
        })
        .collect()
}

/// `RuleSet::parse` on arbitrary text with a static lookup; decisions are first-match; a
/// rule's canonical text parses back to the same text.
pub fn ruleset_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lookup = lookup();
    let Ok(set) = RuleSet::parse("fuzz.conf", &text, &lookup) else { return };
    for (src, dst, port, user) in requests(data) {
        let req = RuleRequest { src, dst, port, user };
        let decision = set.decide(&req);
        // An unspecified destination is refused before any rule.
        let unspecified = socks_proto::rules::is_unspecified(dst);
        assert_eq!(decision.unspecified, unspecified, "unspecified {dst}");
        let first = set.rules.iter().find(|r| r.matches(&req)).filter(|_| !unspecified);
        assert_eq!(decision.rule, first, "decide is not first match");
    }
    for rule in &set.rules {
        let shown = rule.to_string();
        // Braced multi-address forms and `*=(none)` are display-only; a user name starting with
        // `/` (from a user file) would be read back as a file name.
        let reparsable = !shown.contains('{')
            && !shown.contains("(none)")
            && rule.users.iter().all(|u| u.users().iter().all(|n| !n.starts_with('/')));
        if reparsable {
            let again = RuleSet::parse("again.conf", &shown, &lookup)
                .unwrap_or_else(|e| panic!("`{shown}` does not parse back: {e}"));
            assert_eq!(again.rules.len(), 1, "`{shown}`");
            assert_eq!(again.rules[0].to_string(), shown, "canonical form is not stable");
        }
    }
}

/// `ClientRules::parse` on arbitrary text with a static lookup; decisions never panic.
pub fn client_rules_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lookup = lookup();
    let Ok(rules) = ClientRules::parse("fuzz-socks.conf", &text, &lookup) else { return };
    for (_, dst, port, user) in requests(data) {
        let first = rules.rules.iter().find(|r| r.matches(dst, port, user));
        assert_eq!(rules.decide(dst, port, user), first, "decide is not first match");
        let _ = rules.decide_name("host.example.test", Some(port), user);
        let _ = rules.decide_name("beta", None, user);
    }
    let _ = rules.fake_v4_contains(Ipv4Addr::new(198, 18, 0, 1));
    let _ = rules.fake_v6_contains(Ipv6Addr::LOCALHOST);
    let _ = rules.has_proxy_rule();
    let _ = rules.to_string();
}

/// `proxy_protocol::parse`: a header never claims more than given nor, for v1, more than 107
/// bytes; the bytes it used alone give the same header; "need more" only while the input is
/// shorter than the longest header, and then every shorter prefix needs more too (so a caller
/// may consume what it fed); an error stays an error whatever follows.
pub fn proxy_header_parse(data: &[u8]) {
    use socks_proto::proxy_protocol::{parse, Parsed, MAX_HEADER_LEN, V1_MAX_LEN};
    match parse(data) {
        Ok(Parsed::Done { header, consumed }) => {
            assert!(consumed >= 15 && consumed <= data.len(), "used {consumed} of {}", data.len());
            if data[0] == b'P' {
                assert!(consumed <= V1_MAX_LEN, "v1 line of {consumed} bytes");
            }
            assert_eq!(parse(&data[..consumed]), Ok(Parsed::Done { header, consumed }));
            for cut in 0..consumed {
                assert_eq!(parse(&data[..cut]), Ok(Parsed::NeedMore), "prefix of {cut}");
            }
        }
        Ok(Parsed::NeedMore) => {
            assert!(data.len() < MAX_HEADER_LEN);
            for cut in 0..data.len() {
                assert_eq!(parse(&data[..cut]), Ok(Parsed::NeedMore), "prefix of {cut}");
            }
        }
        Err(error) => {
            let _ = error.to_string();
            for extra in [0u8, b'\n', 0xff] {
                let mut longer = data.to_vec();
                longer.push(extra);
                assert!(parse(&longer).is_err(), "an error undone by one more byte");
            }
        }
    }
}

/// The outcome of a [`socks_proto::http_connect::ResponseReader`] fed `chunks` in turn: the
/// response or error, and how many bytes of the whole input were the head (for `Open`).
type HttpOutcome = Option<
    Result<
        (socks_proto::http_connect::Established, usize),
        socks_proto::http_connect::HttpConnectError,
    >,
>;

fn http_feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> HttpOutcome {
    use socks_proto::http_connect::{ResponseReader, ResponseStep};
    let mut reader = ResponseReader::new();
    let mut offset = 0;
    for chunk in chunks {
        match reader.feed(chunk) {
            Ok(ResponseStep::NeedMore) => offset += chunk.len(),
            Ok(ResponseStep::Open { response, used }) => {
                assert!(used >= 1 && used <= chunk.len(), "used {used} of {}", chunk.len());
                return Some(Ok((response, offset + used)));
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}

/// Target `http_connect_response`: an HTTP proxy's answer to CONNECT, fed whole, byte by byte,
/// in the chunks the first byte describes (`1 + data[0] % 16` bytes each) and `wanted()` bytes
/// at a time, gives the same outcome every way; `wanted()` never reads past the head; a head
/// still unfinished is under `MAX_HEAD`; a tunnel opens only on 2xx and its head ends with a
/// blank line; an error stays the same error with one more byte; a request for a name or
/// credentials taken from the input is either refused or one CRLF-terminated head whose only
/// blank line is its end.
pub fn http_connect_response(data: &[u8]) {
    use socks_proto::http_connect::{encode_request, ResponseReader, ResponseStep, MAX_HEAD};
    let whole = http_feed([data]);
    assert_eq!(http_feed(data.chunks(1)), whole, "byte by byte");
    if let Some((&step, rest)) = data.split_first() {
        assert_eq!(
            http_feed(rest.chunks(1 + usize::from(step % 16))),
            http_feed([rest]),
            "chunked"
        );
    }
    let mut reader = ResponseReader::new();
    let mut at = 0;
    let by_wanted = loop {
        let want = reader.wanted();
        assert!(want >= 1, "wanted 0 before the end");
        let end = (at + want).min(data.len());
        match reader.feed(&data[at..end]) {
            Ok(ResponseStep::NeedMore) if end == data.len() => break None,
            Ok(ResponseStep::NeedMore) => at = end,
            Ok(ResponseStep::Open { response, used }) => {
                assert_eq!(used, end - at, "a wanted() read went past the head");
                break Some(Ok((response, end)));
            }
            Err(e) => break Some(Err(e)),
        }
    };
    assert_eq!(by_wanted, whole, "wanted() at a time");
    match &whole {
        None => assert!(data.len() < MAX_HEAD, "unfinished after {} bytes", data.len()),
        Some(Ok((response, head))) => {
            assert!((200..300).contains(&response.status), "{response:?}");
            assert!(data[..*head].ends_with(b"\n\n") || data[..*head].ends_with(b"\n\r\n"));
        }
        Some(Err(e)) => {
            let _ = e.to_string();
            let mut longer = data.to_vec();
            longer.push(b'\n');
            assert_eq!(http_feed([&longer[..]]).as_ref(), Some(&Err(e.clone())), "one more byte");
        }
    }
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let (name, user, password) = (parts.next(), parts.next(), parts.next());
    let mut out = Vec::new();
    let target = TargetAddr::Domain(name.unwrap_or_default().to_owned(), 443);
    let credentials = user.map(|u| (u, password.unwrap_or_default().as_bytes()));
    if encode_request(&target, credentials, &mut out).is_ok() {
        let head = String::from_utf8(out).expect("the request is text");
        assert!(head.starts_with("CONNECT ") && head.ends_with("\r\n\r\n"), "{head:?}");
        assert_eq!(head.find("\r\n\r\n"), Some(head.len() - 4), "{head:?}");
        assert_eq!(head.matches('\n').count(), head.matches("\r\n").count(), "{head:?}");
        assert!(!head.contains('\0'), "{head:?}");
    } else {
        assert!(out.is_empty(), "a refused request appended bytes");
    }
}
