//! HTTP CONNECT, the client side, without I/O: the request that asks an HTTP proxy for a tunnel
//! (RFC 9110 §9.3.6, with Basic authentication, RFC 7617) and the reader of the proxy's answer,
//! fed bytes in any split, which stops exactly at the blank line that ends the response head so
//! that the bytes after it (the tunnelled stream) stay the caller's.
//!
//! The response head is framed here (where it ends, how long it may be, how many lines) and its
//! grammar is checked by `httparse`. Any 2xx opens the tunnel; anything else is an error that
//! carries the status code and reason phrase, 407 its own one. A failed response's body is never
//! read: the connection is of no further use.
//!
//! Not here: sockets, timeouts, proxy chains, and the server side of CONNECT.

use std::fmt;
use std::net::IpAddr;

use crate::addr::{TargetAddr, MAX_NAME_LEN};

/// Longest response head read (status line and headers, blank line included); a proxy's
/// answer to CONNECT is a few hundred bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines read after the status line.
pub const MAX_HEADERS: usize = 100;
/// Fewest bytes a response head can have: `HTTP/1.1 200` and two line ends (`\n\n`).
const SHORTEST_HEAD: usize = "HTTP/1.1 200\n\n".len();
/// Every HTTP/1.x status line starts with this.
const VERSION_PREFIX: &[u8] = b"HTTP/1.";

/// Why a CONNECT request could not be made or its tunnel was not opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpConnectError {
    /// The host name cannot be written in a request line (empty, too long, or with a
    /// character that would end or change it).
    BadHost,
    /// A user name or password for Basic authentication with a control character (CR, LF,
    /// NUL, …), or a user name with a colon (RFC 7617 §2).
    BadCredentials,
    /// The answer does not start with an HTTP/1.x status line.
    NotHttp,
    /// The response head is not valid HTTP (what `httparse` found wrong).
    Malformed(String),
    /// The response head did not end within [`MAX_HEAD`] bytes.
    HeadTooLong,
    /// The response head has more than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// 407: the proxy wants (other) credentials. `basic_offered`: whether one of its
    /// `Proxy-Authenticate` challenges is Basic, the only scheme this client speaks.
    ProxyAuthRequired { reason: String, basic_offered: bool },
    /// Any other status that is not 2xx: the proxy did not open the tunnel.
    Refused { status: u16, reason: String },
    /// Bytes were fed after the response was complete (a caller's mistake).
    Finished,
}

impl fmt::Display for HttpConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpConnectError::BadHost => f.write_str("host name cannot be sent in HTTP CONNECT"),
            HttpConnectError::BadCredentials => f.write_str(
                "user name or password for HTTP Basic contains a control character (or the \
                 user name a colon)",
            ),
            HttpConnectError::NotHttp => f.write_str("the proxy's answer is not HTTP/1.x"),
            HttpConnectError::Malformed(what) => {
                write!(f, "malformed HTTP response from the proxy: {what}")
            }
            HttpConnectError::HeadTooLong => {
                write!(f, "HTTP response head from the proxy longer than {MAX_HEAD} bytes")
            }
            HttpConnectError::TooManyHeaders => {
                write!(f, "HTTP response from the proxy has more than {MAX_HEADERS} header lines")
            }
            HttpConnectError::ProxyAuthRequired { reason, basic_offered } => {
                write!(f, "proxy authentication required (407 {reason})")?;
                if !basic_offered {
                    f.write_str("; the proxy does not offer Basic authentication")?;
                }
                Ok(())
            }
            HttpConnectError::Refused { status, reason } => {
                write!(f, "HTTP proxy refused CONNECT: {status} {reason}")
            }
            HttpConnectError::Finished => f.write_str("bytes fed after the HTTP response ended"),
        }
    }
}

impl std::error::Error for HttpConnectError {}

/// Appends `CONNECT host:port HTTP/1.1` with its `Host` header and, given `credentials`
/// (user name, password), `Proxy-Authorization: Basic …`, then the blank line. An IPv6
/// address is written in brackets (without a scope: it means nothing to the proxy). On error
/// nothing is appended.
pub fn encode_request(
    target: &TargetAddr,
    credentials: Option<(&str, &[u8])>,
    out: &mut Vec<u8>,
) -> Result<(), HttpConnectError> {
    let authority = match target {
        TargetAddr::Ip(sa) => match sa.ip() {
            IpAddr::V4(ip) => format!("{ip}:{}", sa.port()),
            IpAddr::V6(ip) => format!("[{ip}]:{}", sa.port()),
        },
        TargetAddr::Domain(name, port) => {
            if !valid_host(name) {
                return Err(HttpConnectError::BadHost);
            }
            format!("{name}:{port}")
        }
    };
    let authorization = match credentials {
        None => None,
        Some((user, password)) => {
            let control = |b: &u8| b.is_ascii_control();
            if user.bytes().any(|b| control(&b) || b == b':') || password.iter().any(control) {
                return Err(HttpConnectError::BadCredentials);
            }
            let mut pair = user.as_bytes().to_vec();
            pair.push(b':');
            pair.extend_from_slice(password);
            Some(base64(&pair))
        }
    };
    out.extend_from_slice(
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").as_bytes(),
    );
    if let Some(token) = authorization {
        out.extend_from_slice(format!("Proxy-Authorization: Basic {token}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// A name that can stand in `host:port` as the request target and in `Host`: not empty, at
/// most 255 bytes, ASCII only (an internationalised name travels as its `xn--` form), nothing
/// that ends the line or the authority (whitespace, controls, `/ ? # @ [ ]`) and no colon (a
/// bare IPv6 literal belongs in `TargetAddr::Ip`).
fn valid_host(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"/?#@[]:".contains(&b))
}

/// Standard base64 with padding (RFC 4648 §4) of the `user:password` pair. Written here rather
/// than taken from a crate: it is the only use in socks-proto, which otherwise depends only on
/// `httparse`, and the encoder (no decoder) is these few lines.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// A proxy's 2xx answer: the tunnel is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The status code (200–299).
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
}

/// What [`ResponseReader::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseStep {
    /// The head has not ended yet; every byte fed was taken.
    NeedMore,
    /// The tunnel is open. `used`: how many bytes of the last `feed` belonged to the head; the
    /// rest of them are the tunnelled stream's first bytes.
    Open { response: Established, used: usize },
}

/// Reads a proxy's response to CONNECT, fed in any split, up to and including the blank line
/// that ends its head. Line ends may be CRLF or a bare LF.
#[derive(Debug, Default)]
pub struct ResponseReader {
    /// The head so far (at most [`MAX_HEAD`] bytes).
    head: Vec<u8>,
    /// Where the line being read starts in `head`.
    line_start: usize,
    /// Complete lines so far (the status line included).
    lines: usize,
    /// The head ended (or was found wrong): nothing more may be fed.
    done: bool,
}

impl ResponseReader {
    /// A reader that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many bytes can be read from the proxy without reading past the end of the head,
    /// for a caller that must leave the stream after it in the socket (at least 1 while the
    /// head is unfinished, 0 after).
    pub fn wanted(&self) -> usize {
        if self.done {
            return 0;
        }
        if self.lines == 0 {
            return SHORTEST_HEAD.saturating_sub(self.head.len()).max(2);
        }
        match self.head[self.line_start..] {
            // Just after a line end, or after a CR there: one more LF may end the head.
            [] | [b'\r'] => 1,
            // Inside a header line: its line end and a blank line are at least 2 bytes.
            _ => 2,
        }
    }

    /// Takes bytes from the proxy. On `Open`, the bytes of `data` past `used` are the
    /// stream's. After an error or `Open` the reader takes nothing more.
    pub fn feed(&mut self, data: &[u8]) -> Result<ResponseStep, HttpConnectError> {
        if self.done {
            return Err(HttpConnectError::Finished);
        }
        for (i, &byte) in data.iter().enumerate() {
            match self.take(byte) {
                Ok(false) => {}
                Ok(true) => {
                    self.done = true;
                    let response = self.parse()?;
                    return Ok(ResponseStep::Open { response, used: i + 1 });
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
        Ok(ResponseStep::NeedMore)
    }

    /// One byte of the head; `Ok(true)` when it was the last one.
    fn take(&mut self, byte: u8) -> Result<bool, HttpConnectError> {
        if self.head.len() >= MAX_HEAD {
            return Err(HttpConnectError::HeadTooLong);
        }
        self.head.push(byte);
        let len = self.head.len();
        if self.lines == 0 && len <= VERSION_PREFIX.len() && byte != VERSION_PREFIX[len - 1] {
            return Err(HttpConnectError::NotHttp);
        }
        if byte != b'\n' {
            return Ok(false);
        }
        let line = &self.head[self.line_start..len - 1];
        let blank = line.is_empty() || line == b"\r";
        if blank {
            return Ok(true);
        }
        self.lines += 1;
        if self.lines > MAX_HEADERS + 1 {
            return Err(HttpConnectError::TooManyHeaders);
        }
        self.line_start = len;
        Ok(false)
    }

    /// The complete head, by `httparse`: a 2xx, or the error its status means.
    fn parse(&self) -> Result<Established, HttpConnectError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.head) {
            Ok(httparse::Status::Complete(n)) if n == self.head.len() => {}
            Ok(_) => {
                return Err(HttpConnectError::Malformed(
                    "the head does not end where it should".into(),
                ))
            }
            Err(httparse::Error::Version) => return Err(HttpConnectError::NotHttp),
            Err(httparse::Error::TooManyHeaders) => return Err(HttpConnectError::TooManyHeaders),
            Err(e) => return Err(HttpConnectError::Malformed(e.to_string())),
        }
        let (Some(status), Some(1 | 0)) = (response.code, response.version) else {
            return Err(HttpConnectError::NotHttp);
        };
        let reason = response.reason.unwrap_or("").to_owned();
        match status {
            200..=299 => Ok(Established { status, reason }),
            407 => {
                let basic_offered = response
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("proxy-authenticate"))
                    .any(|h| offers_basic(h.value));
                Err(HttpConnectError::ProxyAuthRequired { reason, basic_offered })
            }
            _ => Err(HttpConnectError::Refused { status, reason }),
        }
    }
}

/// Whether a `Proxy-Authenticate` value (one or more challenges, RFC 9110 §11.6.1) has a Basic
/// challenge: a comma-separated element, outside quotes, whose first word is `Basic`.
fn offers_basic(value: &[u8]) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    let mut element_start = 0;
    let is_basic = |element: &[u8]| {
        let element = element.trim_ascii_start();
        let word_end =
            element.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(element.len());
        element[..word_end].eq_ignore_ascii_case(b"basic")
    };
    for (i, &b) in value.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                if is_basic(&value[element_start..i]) {
                    return true;
                }
                element_start = i + 1;
            }
            _ => {}
        }
    }
    is_basic(&value[element_start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn request(target: TargetAddr, credentials: Option<(&str, &[u8])>) -> String {
        let mut out = Vec::new();
        encode_request(&target, credentials, &mut out).expect("encodes");
        String::from_utf8(out).expect("ASCII")
    }

    fn ip(s: &str) -> TargetAddr {
        TargetAddr::Ip(s.parse::<SocketAddr>().expect("literal"))
    }

    #[test]
    fn requests_by_address_name_and_with_basic() {
        assert_eq!(
            request(ip("192.0.2.7:443"), None),
            "CONNECT 192.0.2.7:443 HTTP/1.1\r\nHost: 192.0.2.7:443\r\n\r\n"
        );
        assert_eq!(
            request(ip("[2001:db8::1%3]:22"), None),
            "CONNECT [2001:db8::1]:22 HTTP/1.1\r\nHost: [2001:db8::1]:22\r\n\r\n"
        );
        // RFC 7617 §2's example: Aladdin / open sesame.
        assert_eq!(
            request(
                TargetAddr::Domain("example.org".into(), 80),
                Some(("Aladdin", b"open sesame"))
            ),
            "CONNECT example.org:80 HTTP/1.1\r\nHost: example.org:80\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
        assert_eq!(
            request(ip("10.0.0.1:1"), Some(("", b""))).lines().nth(2),
            Some("Proxy-Authorization: Basic Og==")
        );
    }

    #[test]
    fn base64_of_every_padding() {
        // RFC 4648 §10.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
        assert_eq!(base64("naïve".as_bytes()), "bmHDr3Zl");
    }

    #[test]
    fn refuses_what_would_break_the_request() {
        let name = |n: &str| {
            let mut out = Vec::new();
            let r = encode_request(&TargetAddr::Domain(n.into(), 80), None, &mut out);
            assert!(out.is_empty() || r.is_ok());
            r
        };
        for bad in [
            "",
            "a b",
            "a\r\nX: y",
            "a\0b",
            "a/b",
            "u@h",
            "[::1]",
            "bücher.example",
            "::1",
            &"a".repeat(256),
        ] {
            assert_eq!(name(bad), Err(HttpConnectError::BadHost), "{bad:?}");
        }
        assert!(name("xn--bcher-kva.example").is_ok());
        let creds = |u: &str, p: &[u8]| {
            let mut out = Vec::new();
            let r = encode_request(&ip("192.0.2.1:80"), Some((u, p)), &mut out);
            assert!(out.is_empty() || r.is_ok());
            r
        };
        for (u, p) in
            [("a\r\n", &b"x"[..]), ("a", b"x\ny"), ("a\0", b""), ("a", b"\r"), ("a:b", b"c")]
        {
            assert_eq!(creds(u, p), Err(HttpConnectError::BadCredentials), "{u:?} {p:?}");
        }
        assert!(
            creds("user", b"pa:ss word").is_ok(),
            "a colon and a space in the password are fine"
        );
    }

    /// Feeds `chunks` in turn; the outcome and how many bytes of the whole input were the head.
    fn feed_chunks(chunks: &[&[u8]]) -> Result<(Established, usize), HttpConnectError> {
        let mut reader = ResponseReader::new();
        let mut offset = 0;
        for chunk in chunks {
            match reader.feed(chunk)? {
                ResponseStep::NeedMore => offset += chunk.len(),
                ResponseStep::Open { response, used } => {
                    assert!(used >= 1 && used <= chunk.len());
                    return Ok((response, offset + used));
                }
            }
        }
        Err(HttpConnectError::Malformed("needs more".into()))
    }

    /// Feeding `bytes` whole, split once at every point, split twice at every pair of points,
    /// and reading `wanted()` bytes at a time all give `expected`; the last way never reads past
    /// the head.
    fn at_every_split(bytes: &[u8], expected: &Result<(Established, usize), HttpConnectError>) {
        assert_eq!(&feed_chunks(&[bytes]), expected, "whole");
        for i in 0..=bytes.len() {
            assert_eq!(&feed_chunks(&[&bytes[..i], &bytes[i..]]), expected, "split at {i}");
            for j in i..=bytes.len() {
                let got = feed_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(&got, expected, "split at {i} and {j}");
            }
        }
        let mut reader = ResponseReader::new();
        let mut at = 0;
        let got = loop {
            let want = reader.wanted();
            assert!(want >= 1, "wanted 0 while unfinished at {at}");
            let end = (at + want).min(bytes.len());
            if let Ok((_, head)) = expected {
                assert!(end <= *head, "wanted() reads past the head ({end} > {head})");
            }
            match reader.feed(&bytes[at..end]) {
                Ok(ResponseStep::NeedMore) if end == bytes.len() => {
                    break Err(HttpConnectError::Malformed("needs more".into()))
                }
                Ok(ResponseStep::NeedMore) => at = end,
                Ok(ResponseStep::Open { response, used }) => {
                    assert_eq!(used, end - at, "a wanted() read is used whole");
                    break Ok((response, end));
                }
                Err(e) => break Err(e),
            }
        };
        assert_eq!(&got, expected, "wanted() at a time");
        assert_eq!(reader.wanted(), 0);
        assert_eq!(reader.feed(b"x"), Err(HttpConnectError::Finished));
    }

    fn open(
        status: u16,
        reason: &str,
        head: usize,
    ) -> Result<(Established, usize), HttpConnectError> {
        Ok((Established { status, reason: reason.into() }, head))
    }

    #[test]
    fn two_hundred_with_headers() {
        let r = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\nX-A: b\r\n\r\n";
        at_every_split(r, &open(200, "Connection established", r.len()));
    }

    #[test]
    fn two_hundred_then_the_programs_bytes_in_the_same_read() {
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        let mut r = head.to_vec();
        r.extend_from_slice(b"SSH-2.0-OpenSSH_9.2\r\n\r\nHTTP/1.1 500 x\r\n\r\n");
        at_every_split(&r, &open(200, "OK", head.len()));
        let mut reader = ResponseReader::new();
        match reader.feed(&r) {
            Ok(ResponseStep::Open { used, .. }) => assert_eq!(&r[used..], &r[head.len()..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn any_2xx_http_1_0_bare_lf_and_mixed() {
        let r = b"HTTP/1.0 200 Connection established\n\n";
        at_every_split(r, &open(200, "Connection established", r.len()));
        let r = b"HTTP/1.1 204 \nProxy-Agent: x\r\n\nrest";
        at_every_split(r, &open(204, "", r.len() - 4));
        let r = b"HTTP/1.1 200 OK\nA: b\n\nrest";
        at_every_split(r, &open(200, "OK", r.len() - 4));
        let r = b"HTTP/1.1 299 Fine\r\nA: b\n\r\nrest";
        at_every_split(r, &open(299, "Fine", r.len() - 4));
    }

    #[test]
    fn four_oh_seven_with_and_without_basic() {
        let r = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Digest realm=\"a, Basic x\", Basic realm=\"squid\"\r\n\
                  Content-Length: 5\r\n\r\nbody.";
        at_every_split(
            r,
            &Err(HttpConnectError::ProxyAuthRequired {
                reason: "Proxy Authentication Required".into(),
                basic_offered: true,
            }),
        );
        let r = b"HTTP/1.1 407 Auth\r\nproxy-authenticate: Negotiate\r\n\
                  Proxy-Authenticate: Digest realm=\"x, Basic y\"\r\n\r\n";
        let e = HttpConnectError::ProxyAuthRequired { reason: "Auth".into(), basic_offered: false };
        at_every_split(r, &Err(e.clone()));
        let text = e.to_string();
        assert!(text.contains("407") && text.contains("does not offer Basic"), "{text}");
        let r = b"HTTP/1.1 407 x\r\nProxy-Authenticate: basic realm=x\r\n\r\n";
        at_every_split(
            r,
            &Err(HttpConnectError::ProxyAuthRequired { reason: "x".into(), basic_offered: true }),
        );
    }

    #[test]
    fn refusals_carry_status_and_reason_and_leave_the_body() {
        let r = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2000\r\n\r\n<html>denied</html>";
        let e = HttpConnectError::Refused { status: 403, reason: "Forbidden".into() };
        at_every_split(r, &Err(e.clone()));
        assert_eq!(e.to_string(), "HTTP proxy refused CONNECT: 403 Forbidden");
        let r = b"HTTP/1.0 502 Bad Gateway\n\n";
        at_every_split(
            r,
            &Err(HttpConnectError::Refused { status: 502, reason: "Bad Gateway".into() }),
        );
        let r = b"HTTP/1.1 100 Continue\r\n\r\n";
        at_every_split(
            r,
            &Err(HttpConnectError::Refused { status: 100, reason: "Continue".into() }),
        );
    }

    #[test]
    fn garbage_and_other_versions_fail_early() {
        for r in [
            &b"SSH-2.0-x\r\n"[..],
            b"\x05\x00",
            b"http/1.1 200 OK\r\n\r\n",
            b"\r\n\r\n",
            b"HTTP/1\n\n",
        ] {
            at_every_split(r, &Err(HttpConnectError::NotHttp));
        }
        // Refused at the first byte that is not a status line's, not after 8 KiB.
        let mut reader = ResponseReader::new();
        assert_eq!(reader.feed(b"HTTX"), Err(HttpConnectError::NotHttp));
        for r in [&b"HTTP/2 200\r\n\r\n"[..], b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n"] {
            let got = feed_chunks(&[r]);
            assert!(
                matches!(got, Err(HttpConnectError::NotHttp | HttpConnectError::Malformed(_))),
                "{r:?}: {got:?}"
            );
        }
        let r = b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n";
        assert!(matches!(feed_chunks(&[r]), Err(HttpConnectError::Malformed(_))));
    }

    #[test]
    fn oversize_heads_and_too_many_headers() {
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        let mut reader = ResponseReader::new();
        assert_eq!(reader.feed(&long), Err(HttpConnectError::HeadTooLong));
        let mut exact = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(feed_chunks(&[&exact]), open(200, "OK", MAX_HEAD));
        let many = |n: usize| {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..n {
                r.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
            }
            r.extend_from_slice(b"\r\n");
            feed_chunks(&[&r])
        };
        assert!(many(MAX_HEADERS).is_ok());
        assert_eq!(many(MAX_HEADERS + 1), Err(HttpConnectError::TooManyHeaders));
    }
}
