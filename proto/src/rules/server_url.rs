//! The server entries of `socks.conf`: one server ([`ServerSpec`], [`parse_server`], also usable
//! for a `SOCKS_SERVER` style setting) and the `@=` list of a `sockd` line ([`ServerList`],
//! [`parse_server_list`]), with the passwords kept out of every message.
//!
//! ```text
//! SERVERS := ENTRY[,ENTRY…][?spread]     (a list option, among the last server's options:
//!                                        `@=a,b?pipeline&spread`)
//! ENTRY  := SERVER[>SERVER…][?dynamic]   (a chain of hops, first hop first; `dynamic`, a chain
//!                                        option, among the last hop's options: `a>b?pipeline&dynamic`)
//! SERVER := [SCHEME://][USER[:PASSWORD]@]HOST[:PORT][?pipeline]
//! SCHEME := socks4 | socks4a | socks5 | http
//! HOST   := name | IPv4 | [IPv6] (bare IPv6 without port)
//! ```
//!
//! A server without a scheme uses the caller's default SOCKS version (`protocol: None`); without a port,
//! 1080 (`http://`: 8080). The first hop's host name is resolved now, through [`Lookup::host`],
//! keeping every address in resolver order; a later hop of a chain is named to the hop before
//! it, so its name is kept as written and not resolved here. Errors in a chain say which hop
//! (``hop 2 of 3 in `…` ``). A `>` inside a user name or password is written `%3E`.
//! USER and PASSWORD may contain `%XX` escapes (for `,`, `#`, `@`, `:`, `%` or blanks) and
//! are at most 255 bytes each (RFC 1929); SOCKS4/4a servers take a USER (the USERID) but no
//! PASSWORD. Passwords never appear in `Debug`, `Display` or error messages: they print as `***`.
//!
//! Options follow a server after `?`, joined by `&`. `pipeline` is the server's own. `spread`
//! belongs to the whole list ([`ServerList::spread`], kept as `ClientRule::spread`: each
//! connection starts at a different server, see socks.conf(5)); it is written once, among the
//! options of the last server, so the per-server grammar stays as it is and a list says it in one
//! place. `spread` on any other server of the list, or on a single server outside a list
//! (`SOCKS_SERVER`), is an error. `dynamic` belongs to a whole chain ([`ServerSpec::dynamic`], on
//! its first hop): written once, among the options of its last hop; on an earlier hop or on a
//! single server it is an error.
//!
//! Not here: where an `@=` list may stand on a line (the rule grammar, [`super::socks_conf`]),
//! reading `SOCKS_SERVER` from the environment, choosing a live server or speaking to it.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::addr::is_host_name;
use super::error::LineError;
use super::lookup::Lookup;
use crate::client::ClientVersion;

/// The port of a server written without one (the registered SOCKS port).
pub const DEFAULT_SERVER_PORT: u16 = 1080;

/// The port of an `http://` server written without one (8080, the registered `http-alt` port;
/// squid's 3128 and tinyproxy's 8888 are written out).
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// The longest user name or password RFC 1929 can carry (one length byte).
const MAX_CREDENTIAL: usize = 255;

/// What a server speaks, from the `SCHEME://` of a server: a SOCKS version (the one name for it
/// is [`ClientVersion`]) or HTTP. HTTP is not a SOCKS version, so it is a variant here rather
/// than in `ClientVersion`, which only the SOCKS handshakes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `socks4://`, `socks4a://` or `socks5://`.
    Socks(ClientVersion),
    /// `http://`: an HTTP proxy that opens tunnels with `CONNECT` (no BIND, no UDP).
    Http,
}

impl Protocol {
    /// The scheme name, without `://` (also the name in log lines and `--explain`).
    pub fn scheme(self) -> &'static str {
        match self {
            Protocol::Socks(version) => version.scheme(),
            Protocol::Http => "http",
        }
    }

    /// The protocol of a scheme name (any case, as URL schemes are).
    pub fn from_scheme(scheme: &str) -> Option<Protocol> {
        if scheme.eq_ignore_ascii_case("http") {
            return Some(Protocol::Http);
        }
        ClientVersion::from_scheme(scheme).map(Protocol::Socks)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// One SOCKS server of an `@=` list, host resolved. `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Every address of the host, in resolver order, with the port. Never empty for a server
    /// or the first hop of a chain; a later hop is reached through the one before it, so its
    /// name is not resolved here (empty for a name, the address for a literal).
    pub addrs: Vec<SocketAddr>,
    /// The port (written, or the scheme's default).
    pub port: u16,
    /// The host as written (a name, or an address; IPv6 without the brackets).
    pub host: String,
    /// The protocol from `SCHEME://`; `None` = the caller's default SOCKS version.
    pub protocol: Option<Protocol>,
    /// `USER` from `USER[:PASSWORD]@`, `%XX` escapes decoded.
    pub username: Option<String>,
    /// `PASSWORD` from `USER:PASSWORD@`, `%XX` escapes decoded (may be empty).
    pub password: Option<String>,
    /// `?pipeline`: the server accepts the whole SOCKS5 handshake in one write (greeting,
    /// authentication and request), as sockd does, so a connect takes one round trip.
    pub pipeline: bool,
    /// The hops after this one when the entry is a chain (`A>B>C`: this is A, `next` is
    /// [B, C], each with an empty `next`); empty for a single server.
    pub next: Vec<ServerSpec>,
    /// `?dynamic` after the chain's last hop (kept on the first hop; false on the others): a hop
    /// that is down is left out and the chain tried again without it (socks.conf(5)).
    pub dynamic: bool,
}

impl ServerSpec {
    /// The server port (1080, or 8080 for `http://`, when none was written).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every hop of the entry, first hop first (one for a single server).
    pub fn hops(&self) -> impl Iterator<Item = &ServerSpec> {
        std::iter::once(self).chain(self.next.iter())
    }
}

impl fmt::Debug for ServerSpec {
    /// Never prints the password: configuration must not leak credentials into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("addrs", &self.addrs)
            .field("host", &self.host)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("pipeline", &self.pipeline)
            .field("next", &self.next)
            .field("dynamic", &self.dynamic)
            .finish()
    }
}

/// `[SCHEME://][USER[:***]@]HOST:PORT`: the host as written (IPv6 in brackets), the port always,
/// the user name `%XX`-escaped where needed, the password as `***`. Without a password this
/// parses back to the same server.
impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.protocol {
            write!(f, "{p}://")?;
        }
        if let Some(u) = &self.username {
            write_escaped(f, u)?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port())?;
        } else {
            write!(f, "{}:{}", self.host, self.port())?;
        }
        if self.pipeline {
            f.write_str("?pipeline")?;
        }
        for hop in &self.next {
            write!(f, ">{hop}")?;
        }
        if self.dynamic {
            let last_pipeline = self.next.last().is_some_and(|hop| hop.pipeline);
            f.write_str(if last_pipeline { "&dynamic" } else { "?dynamic" })?;
        }
        Ok(())
    }
}

/// Writes `s` with every byte outside `A-Z a-z 0-9 - . _ ~` as `%XX`.
fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            write!(f, "{}", char::from(b))?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `SCHEME://rest`; no `://` means no scheme.
fn split_scheme(item: &str) -> (Option<&str>, &str) {
    match item.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, item),
    }
}

/// `item` (a server or a chain `A>B>C`) with every password replaced by `***`, for messages.
fn redact_server(item: &str) -> Cow<'_, str> {
    if !item.contains('>') {
        return redact_hop(item);
    }
    let hops: Vec<Cow<'_, str>> = item.split('>').map(redact_hop).collect();
    Cow::Owned(hops.join(">"))
}

/// One hop with its password (if any) replaced by `***`.
fn redact_hop(item: &str) -> Cow<'_, str> {
    let (scheme, rest) = split_scheme(item);
    match rest.rsplit_once('@').and_then(|(ui, hp)| Some((ui.split_once(':')?.0, hp))) {
        Some((user, hostport)) => {
            let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
            Cow::Owned(format!("{scheme}{user}:***@{hostport}"))
        }
        None => Cow::Borrowed(item),
    }
}

/// An `@=…` token with every item's password replaced by `***`.
pub(super) fn redact_list(tok: &str) -> String {
    match tok.strip_prefix("@=") {
        Some(body) => {
            let items: Vec<Cow<'_, str>> = body.split(',').map(redact_server).collect();
            format!("@={}", items.join(","))
        }
        None => redact_server(tok).into_owned(),
    }
}

/// Parses one server, `[SCHEME://][USER[:PASSWORD]@]HOST[:PORT]`, resolving a host name through
/// `lookup`. Errors name `text` with its password replaced by `***`. Also usable for a
/// `SOCKS_SERVER` style setting.
pub fn parse_server(text: &str, lookup: &dyn Lookup) -> Result<ServerSpec, LineError> {
    let shown = redact_server(text);
    match chain(&shown, text, lookup)? {
        (_, true) => Err(LineError::spread_without_list(&shown)),
        (spec, false) => Ok(spec),
    }
}

/// An `@=` list: its servers in the order written, and the list's own option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerList {
    /// The servers, in the order written; never empty after parsing.
    pub servers: Vec<ServerSpec>,
    /// `?spread` (after the last server): start each connection at a different server.
    pub spread: bool,
}

/// Parses an `@=SERVER,SERVER…[?spread]` token (no blanks; at least one server). Call it only
/// on tokens that start with `@=`. Errors carry the token with passwords replaced by `***`.
pub fn parse_server_list(tok: &str, lookup: &dyn Lookup) -> Result<ServerList, LineError> {
    let shown = redact_list(tok);
    let body = tok.strip_prefix("@=").unwrap_or(tok);
    if body.is_empty() {
        return Err(LineError::empty_server_list(&shown));
    }
    let mut list = ServerList { servers: Vec::new(), spread: false };
    let mut items = body.split(',').peekable();
    while let Some(item) = items.next() {
        if item.is_empty() {
            return Err(LineError::empty_server(&shown));
        }
        let item_shown = redact_server(item);
        let (spec, spread) = chain(&shown, item, lookup)?;
        if spread && items.peek().is_some() {
            return Err(LineError::spread_not_last(&shown, &item_shown));
        }
        list.spread |= spread;
        list.servers.push(spec);
    }
    Ok(list)
}

/// One entry of a list, a server or a chain of hops `A>B>C`, and whether the options of its
/// last hop held the list option `spread`. Errors name the hop (and its place in a chain).
fn chain(tok: &str, item: &str, lookup: &dyn Lookup) -> Result<(ServerSpec, bool), LineError> {
    if !item.contains('>') {
        let shown = redact_hop(item);
        let (spec, spread) = server(tok, item, &shown, lookup, true)?;
        if spec.dynamic {
            return Err(LineError::dynamic_not_after_chain(tok, &shown));
        }
        return Ok((spec, spread));
    }
    let hops: Vec<&str> = item.split('>').collect();
    let count = hops.len();
    let mut specs = Vec::with_capacity(count);
    let mut spread = false;
    for (i, hop) in hops.into_iter().enumerate() {
        let place = format!("hop {} of {count} in `{}`", i + 1, redact_server(item));
        let at_hop = |mut e: LineError| {
            e.message.push_str(&format!(" ({place})"));
            e
        };
        if hop.is_empty() {
            return Err(LineError::empty_hop(tok, &place));
        }
        let shown = redact_hop(hop);
        let (spec, hop_spread) = server(tok, hop, &shown, lookup, i == 0).map_err(at_hop)?;
        if hop_spread && i + 1 < count {
            return Err(at_hop(LineError::spread_not_last(tok, &shown)));
        }
        if spec.dynamic && i + 1 < count {
            return Err(at_hop(LineError::dynamic_not_after_chain(tok, &shown)));
        }
        spread = hop_spread;
        specs.push(spec);
    }
    let dynamic = specs.last().is_some_and(|hop| hop.dynamic);
    let mut first = specs.remove(0);
    if let Some(last) = specs.last_mut() {
        last.dynamic = false;
    }
    first.next = specs;
    first.dynamic = dynamic;
    Ok((first, spread))
}

/// One server `item`, and whether its options held the list option `spread`; `tok` (the error
/// token) and `shown` (the item in messages) are redacted. `resolve`: look the host name up
/// (the first hop; later hops are named to the hop before them).
fn server(
    tok: &str,
    item: &str,
    shown: &str,
    lookup: &dyn Lookup,
    resolve: bool,
) -> Result<(ServerSpec, bool), LineError> {
    let (scheme, rest) = split_scheme(item);
    let protocol = match scheme {
        None => None,
        Some(s) => {
            Some(Protocol::from_scheme(s).ok_or_else(|| LineError::unknown_scheme(tok, shown, s))?)
        }
    };

    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((ui, hp)) => (Some(ui), hp),
        None => (None, rest),
    };
    let (hostport, options) = match hostport.split_once('?') {
        Some((hp, options)) => (hp, Some(options)),
        None => (hostport, None),
    };
    let mut pipeline = false;
    let mut spread = false;
    let mut dynamic = false;
    for option in options.into_iter().flat_map(|o| o.split('&')) {
        match option {
            "pipeline" => pipeline = true,
            "spread" => spread = true,
            "dynamic" => dynamic = true,
            other => return Err(LineError::unknown_server_option(tok, shown, other)),
        }
    }
    let (username, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (user, pass) = match ui.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            if user.is_empty() {
                return Err(LineError::empty_server_user(tok, shown));
            }
            let decode = |s: &str, what: &str| {
                let d =
                    percent_decode(s).ok_or_else(|| LineError::bad_percent_escape(tok, shown))?;
                if d.len() > MAX_CREDENTIAL {
                    return Err(LineError::server_credential_too_long(tok, shown, what));
                }
                Ok(d)
            };
            let user = decode(user, "user name")?;
            let pass = pass.map(|p| decode(p, "password")).transpose()?;
            if let (
                Some(_),
                Some(Protocol::Socks(v @ (ClientVersion::Socks4 | ClientVersion::Socks4a))),
            ) = (&pass, protocol)
            {
                let name = if v == ClientVersion::Socks4 { "SOCKS4" } else { "SOCKS4a" };
                return Err(LineError::password_needs_socks5(tok, shown, name));
            }
            (Some(user), pass)
        }
    };

    let (host, port_tok) =
        split_host_port(hostport).map_err(|d| LineError::bad_server_host(tok, shown, d))?;
    let port = match port_tok {
        None if protocol == Some(Protocol::Http) => DEFAULT_HTTP_PORT,
        None => DEFAULT_SERVER_PORT,
        Some(p) => {
            server_port(p, lookup).ok_or_else(|| LineError::bad_server_port(tok, shown, p))?
        }
    };
    let ips = if resolve {
        resolve_server_host(host, lookup).map_err(|e| e.into_line_error(tok, shown, host))?
    } else {
        check_hop_host(host).map_err(|e| e.into_line_error(tok, shown, host))?
    };
    let spec = ServerSpec {
        addrs: ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect(),
        port,
        host: host.to_owned(),
        protocol,
        username,
        password,
        pipeline,
        next: Vec::new(),
        dynamic,
    };
    Ok((spec, spread))
}

/// `HOST[:PORT]`, `[IPv6][:PORT]` or a bare IPv6 address. Err = why the host part is bad.
fn split_host_port(hp: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(inner) = hp.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or("`[` without `]`")?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err("only IPv6 addresses go in brackets");
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, Some(p))),
                None => Err("expected `:PORT` after `]`"),
            },
        };
    }
    match hp.matches(':').count() {
        0 => Ok((hp, None)),
        1 => Ok(hp.split_once(':').map_or((hp, None), |(h, p)| (h, Some(p)))),
        _ if hp.parse::<Ipv6Addr>().is_ok() => Ok((hp, None)),
        _ => Err("not an address (an IPv6 address with a port is written [ADDR]:PORT)"),
    }
}

/// A server port: 1..=65535 or a tcp service name.
fn server_port(tok: &str, lookup: &dyn Lookup) -> Option<u16> {
    let port = if !tok.is_empty() && tok.bytes().all(|b| b.is_ascii_digit()) {
        tok.parse::<u16>().ok()?
    } else {
        lookup.service(tok)?
    };
    (port != 0).then_some(port)
}

enum HostError {
    Bad(&'static str),
    Unknown(String),
}

impl HostError {
    fn into_line_error(self, tok: &str, shown: &str, host: &str) -> LineError {
        match self {
            HostError::Bad(detail) => LineError::bad_server_host(tok, shown, detail),
            HostError::Unknown(reason) => LineError::unknown_server_host(tok, host, &reason),
        }
    }
}

/// A later hop's host: an address literal as itself, a valid name as no address (the hop
/// before resolves it).
fn check_hop_host(host: &str) -> Result<Vec<IpAddr>, HostError> {
    if host.is_empty() {
        return Err(HostError::Bad("no host"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    if host.contains(':') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(HostError::Bad("not an IPv4 or IPv6 address"));
    }
    if !is_host_name(host) {
        return Err(HostError::Bad("not an address or a host name"));
    }
    Ok(Vec::new())
}

/// An address literal as itself, a name through `lookup` (all addresses, in order).
fn resolve_server_host(host: &str, lookup: &dyn Lookup) -> Result<Vec<IpAddr>, HostError> {
    // The same checks as a later hop's host: a literal is itself, a valid name is looked up.
    let literal = check_hop_host(host)?;
    if !literal.is_empty() {
        return Ok(literal);
    }
    let ips = lookup.host(host).map_err(HostError::Unknown)?;
    if ips.is_empty() {
        return Err(HostError::Unknown("no addresses".to_owned()));
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::socks_conf_fixture::{check_err, lookup, parse, sa, OK};

    fn server(s: &str) -> ServerSpec {
        parse_server(s, &lookup()).unwrap()
    }

    #[test]
    fn spread_is_a_list_option_written_after_the_last_server() {
        let rs = parse("sockd @=fw.example,fw2.example:1081?spread 0.0.0.0/0\n").unwrap();
        let r = &rs.rules[0];
        assert!(r.spread);
        assert_eq!(r.servers.len(), 2);
        assert!(!r.servers[1].pipeline, "spread is not a server option");
        assert_eq!(r.to_string(), "sockd @=fw.example:1080,fw2.example:1081?spread 0.0.0.0/0");
        let both = parse("sockd @=fw,fw2.example?pipeline&spread 0.0.0.0/0\n").unwrap();
        assert!(both.rules[0].spread && both.rules[0].servers[1].pipeline);
        assert!(!both.rules[0].servers[0].pipeline);
        assert_eq!(
            both.rules[0].to_string(),
            "sockd @=fw:1080,fw2.example:1080?pipeline&spread 0.0.0.0/0",
            "the canonical form parses back"
        );
        let again = parse(&format!("{}\n", both.rules[0])).unwrap();
        assert_eq!(again.rules[0].spread, both.rules[0].spread);
        assert!(!parse("sockd @=fw,fw2.example 0.0.0.0/0\n").unwrap().rules[0].spread);
        let e = parse("sockd @=u:pw@fw?spread,fw2.example 0.0.0.0/0\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("after the last server") && text.contains("u:***@fw"), "{text}");
        assert!(!text.contains("pw"), "{text}");
        let one = parse("sockd @=fw?spread&pipeline 0.0.0.0/0\n").unwrap();
        assert!(
            one.rules[0].spread && one.rules[0].servers[0].pipeline,
            "a list of one, any order"
        );
        let e = parse("sockd @=fw,fw2.example?spread&fast 0.0.0.0/0\n").unwrap_err().to_string();
        assert!(e.contains("unknown option `?fast`"), "{e}");
        let e = parse_server("fw.example?spread", &lookup()).unwrap_err().to_string();
        assert!(e.contains("an option of an @= list"), "{e}");
    }

    #[test]
    fn pipeline_option() {
        let s = server("socks5://bob:pw@fw.example:1081?pipeline");
        assert!(s.pipeline);
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.to_string(), "socks5://bob:***@fw.example:1081?pipeline");
        assert!(!server("fw.example").pipeline);
        let e = parse_server("fw.example?fast", &lookup()).unwrap_err().at("socks.conf", 4);
        assert_eq!(
            e.to_string(),
            "socks.conf:4: unknown option `?fast` in server `fw.example?fast` (expected \
             ?pipeline, ?dynamic after the last hop of a chain, or ?spread after the last \
             server of an @= list)"
        );
    }

    #[test]
    fn server_list_in_order() {
        let rs =
            parse("sockd @=fw2.example,socks4://192.0.2.9:1081,[2001:db8::7] 0.0.0.0/0\n").unwrap();
        let s = &rs.rules[0].servers;
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].addrs, vec![sa("192.0.2.2:1080")]);
        assert_eq!(s[1].addrs, vec![sa("192.0.2.9:1081")]);
        assert_eq!(s[1].protocol, Some(Protocol::Socks(ClientVersion::Socks4)));
        assert_eq!(s[2].addrs, vec![sa("[2001:db8::7]:1080")]);
        assert_eq!(s[2].host, "2001:db8::7");
        assert_eq!(
            rs.rules[0].to_string(),
            "sockd @=fw2.example:1080,socks4://192.0.2.9:1081,[2001:db8::7]:1080 0.0.0.0/0"
        );
    }

    #[test]
    fn server_schemes() {
        assert_eq!(server("fw").protocol, None);
        assert_eq!(server("socks4://fw").protocol, Some(Protocol::Socks(ClientVersion::Socks4)));
        assert_eq!(server("socks4a://fw").protocol, Some(Protocol::Socks(ClientVersion::Socks4a)));
        assert_eq!(server("socks5://fw").protocol, Some(Protocol::Socks(ClientVersion::Socks5)));
        assert_eq!(server("SOCKS5://fw").protocol, Some(Protocol::Socks(ClientVersion::Socks5)));
        assert_eq!(server("http://fw").protocol, Some(Protocol::Http));
        assert_eq!(server("HTTP://fw").protocol, Some(Protocol::Http));
        assert_eq!(Protocol::from_scheme("socks4A"), Some(Protocol::Socks(ClientVersion::Socks4a)));
        assert_eq!(Protocol::from_scheme("socks"), None);
        assert_eq!(Protocol::from_scheme("https"), None);
        assert_eq!(ClientVersion::from_scheme("http"), None);
        for p in [
            Protocol::Socks(ClientVersion::Socks4),
            Protocol::Socks(ClientVersion::Socks4a),
            Protocol::Socks(ClientVersion::Socks5),
            Protocol::Http,
        ] {
            assert_eq!(Protocol::from_scheme(p.scheme()), Some(p));
            assert_eq!(p.to_string(), p.scheme());
        }
        assert_eq!(ClientVersion::Socks4a.to_string(), "socks4a");
    }

    #[test]
    fn server_ports_and_literals() {
        let s = server("192.0.2.9");
        assert_eq!((s.addrs.clone(), s.port()), (vec![sa("192.0.2.9:1080")], 1080));
        assert_eq!(server("192.0.2.9:1").addrs, vec![sa("192.0.2.9:1")]);
        assert_eq!(server("192.0.2.9:65535").port(), 65535);
        assert_eq!(server("fw:socks").port(), 1080, "service name");
        assert_eq!(server("[::1]:9050").addrs, vec![sa("[::1]:9050")]);
        assert_eq!(server("[::1]").addrs, vec![sa("[::1]:1080")]);
        assert_eq!(server("::1").addrs, vec![sa("[::1]:1080")], "bare IPv6, no port");
        assert_eq!(
            server("socks5://[2001:db8::1]:1081").to_string(),
            "socks5://[2001:db8::1]:1081"
        );
        assert_eq!(server("::ffff:192.0.2.1").addrs, vec![sa("[::ffff:192.0.2.1]:1080")]);
    }

    #[test]
    fn server_names_resolved_all_addresses() {
        let s = server("socks5://fw.example:1081");
        assert_eq!(s.host, "fw.example");
        assert_eq!(s.addrs, vec![sa("192.0.2.1:1081"), sa("[2001:db8::1]:1081")]);
        assert_eq!(s.to_string(), "socks5://fw.example:1081");
        assert_eq!(server("FW").addrs, vec![sa("192.0.2.1:1080")]);
        assert_eq!(server("v6only").addrs, vec![sa("[2001:db8::5]:1080")]);
    }

    #[test]
    fn server_credentials() {
        let s = server("socks5://alice:s3cret@fw");
        assert_eq!(s.username.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("s3cret"));
        assert_eq!(s.to_string(), "socks5://alice:***@fw:1080");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("password: Some(\"***\")"), "{dbg}");

        let s = server("bob@[::1]:1081");
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("bob"), None));
        assert_eq!(s.to_string(), "bob@[::1]:1081");
        let s = server("socks4://lloyd@fw");
        assert_eq!(s.username.as_deref(), Some("lloyd"));
        let s = server("carol:@fw");
        assert_eq!(s.password.as_deref(), Some(""), "empty password is a password");
        // Passwords may contain `:` and `@`; escapes for what the file syntax reserves.
        let s = server("dave:a:b@c@fw");
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("dave"), Some("a:b@c")));
        let s = server("e%20ve%3A:p%2C%23%25@fw");
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("e ve:"), Some("p,#%")));
        assert_eq!(s.to_string(), "e%20ve%3A:***@fw:1080");
        assert_eq!(server(&s.to_string().replace(":***", "")).username.as_deref(), Some("e ve:"));
        assert_eq!(server("%C3%A9mile@fw").username.as_deref(), Some("émile"));
        let long = "u".repeat(255);
        assert_eq!(server(&format!("{long}:{long}@fw")).username.as_deref(), Some(&*long));
    }

    #[test]
    fn err_empty_server_list() {
        check_err(
            &format!("{OK}sockd @= 0.0.0.0/0\n"),
            3,
            Some("@="),
            "socks.conf:3: empty server list `@=`",
        );
    }

    #[test]
    fn err_empty_server() {
        for t in ["@=fw,,fw2.example", "@=fw,", "@=,fw"] {
            check_err(
                &format!("sockd {t} 0.0.0.0/0"),
                1,
                Some(t),
                &format!(
                    "socks.conf:1: empty server in `{t}` (two commas in a row, or a comma at an end)"
                ),
            );
        }
    }

    #[test]
    fn err_unknown_scheme() {
        check_err(
            "sockd @=fw,ftp://fw2.example 0.0.0.0/0",
            1,
            Some("@=fw,ftp://fw2.example"),
            "socks.conf:1: unknown scheme `ftp://` in server `ftp://fw2.example` \
             (expected socks4://, socks4a://, socks5:// or http://)",
        );
        assert!(parse("sockd @=socks5h://fw 0.0.0.0/0").unwrap_err().message.contains("socks5h"));
        assert!(parse("sockd @=://fw 0.0.0.0/0").unwrap_err().message.contains("scheme `://`"));
    }

    #[test]
    fn err_bad_server_port() {
        check_err(
            "sockd @=fw:99999 0.0.0.0/0",
            1,
            Some("@=fw:99999"),
            "socks.conf:1: bad port `99999` in server `fw:99999` \
             (expected 1 to 65535 or a tcp service name)",
        );
        for (server, port) in [
            ("fw:0", "0"),
            ("fw:", ""),
            ("fw:gopher", "gopher"),
            ("[::1]:-1", "-1"),
            ("fw:+1", "+1"),
        ] {
            let e = parse(&format!("sockd @={server} 0.0.0.0/0")).unwrap_err();
            assert!(e.message.starts_with(&format!("bad port `{port}` in server")), "{e}");
        }
    }

    #[test]
    fn err_bad_server_host() {
        check_err(
            "sockd @=socks5://[::1 0.0.0.0/0",
            1,
            Some("@=socks5://[::1"),
            "socks.conf:1: bad host in server `socks5://[::1`: `[` without `]`",
        );
        let cases = [
            ("[fw]:1080", "only IPv6 addresses go in brackets"),
            ("[::1]1080", "expected `:PORT` after `]`"),
            ("::1:2:3:4:5:6:7:8", "not an address (an IPv6 address with a port is written"),
            (":1080", "no host"),
            ("u@", "no host"),
            ("192.0.2.300", "not an IPv4 or IPv6 address"),
            ("fw!x", "not an address or a host name"),
            ("fw/24", "not an address or a host name"),
        ];
        for (server, detail) in cases {
            let e = parse(&format!("sockd @={server} 0.0.0.0/0")).unwrap_err();
            assert!(
                e.message.starts_with(&format!("bad host in server `{server}`: {detail}")),
                "{e}"
            );
        }
    }

    #[test]
    fn err_unknown_server_host() {
        check_err(
            &format!("{OK}sockd @=fw,socks5://nowhere.example:1080 0.0.0.0/0\n"),
            3,
            Some("@=fw,socks5://nowhere.example:1080"),
            "socks.conf:3: unknown server host `nowhere.example`: not in the hosts table",
        );
    }

    #[test]
    fn err_empty_server_user() {
        check_err(
            "sockd @=:secret@fw 0.0.0.0/0",
            1,
            Some("@=:***@fw"),
            "socks.conf:1: empty user name in server `:***@fw` (write USER[:PASSWORD]@HOST)",
        );
        assert!(parse("sockd @=@fw 0.0.0.0/0").unwrap_err().message.contains("empty user name"));
    }

    #[test]
    fn err_server_credential_too_long() {
        let long = "x".repeat(256);
        check_err(
            &format!("sockd @={long}@fw 0.0.0.0/0"),
            1,
            Some(&format!("@={long}@fw")),
            &format!(
                "socks.conf:1: user name in server `{long}@fw` is longer than 255 bytes \
                 (the RFC 1929 limit)"
            ),
        );
        check_err(
            &format!("sockd @=u:{long}@fw 0.0.0.0/0"),
            1,
            Some("@=u:***@fw"),
            "socks.conf:1: password in server `u:***@fw` is longer than 255 bytes \
             (the RFC 1929 limit)",
        );
    }

    #[test]
    fn err_bad_percent_escape() {
        check_err(
            "sockd @=socks5://bob:pa%zz@fw 0.0.0.0/0",
            1,
            Some("@=socks5://bob:***@fw"),
            "socks.conf:1: bad %-escape in server `socks5://bob:***@fw` (write %XX with two hex \
             digits; the result must be UTF-8)",
        );
        for s in ["b%@fw", "b%4@fw", "b%ff@fw", "b%+f@fw"] {
            let e = parse(&format!("sockd @={s} 0.0.0.0/0")).unwrap_err();
            assert!(e.message.starts_with("bad %-escape"), "{e}");
        }
    }

    #[test]
    fn err_password_needs_socks5() {
        check_err(
            "sockd @=socks4://lloyd:pw@fw 0.0.0.0/0",
            1,
            Some("@=socks4://lloyd:***@fw"),
            "socks.conf:1: password in server `socks4://lloyd:***@fw`: SOCKS4 has no passwords \
             (use socks5:// or drop `:PASSWORD`)",
        );
        let e = parse("sockd @=socks4a://lloyd:@fw 0.0.0.0/0").unwrap_err();
        assert!(e.message.contains("SOCKS4a has no passwords"), "{e}");
    }

    #[test]
    fn errors_never_show_passwords() {
        for text in [
            "direct @=u:hunter2@fw 0.0.0.0/0",
            "sockd @=u:hunter2@fw @=v:hunter2@fw 0.0.0.0/0",
            "sockd @=u:hunter2@fw,ftp://v:hunter2@fw 0.0.0.0/0",
            "sockd @=u:hunter2@fw>http://v:hunter2@[x 0.0.0.0/0",
            "sockd @=u:hunter2@fw>>http://v:hunter2@x 0.0.0.0/0",
            "sockd @=u:hunter2@fw:0 0.0.0.0/0",
            "sockd @=u:hunter2@nowhere 0.0.0.0/0",
            "sockd @=u:hunter2@[fw] 0.0.0.0/0",
        ] {
            let e = parse(text).unwrap_err();
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
        let e = parse_server("u:hunter2@fw:0", &lookup()).unwrap_err();
        assert_eq!(e.token.as_deref(), Some("u:***@fw:0"));
    }

    #[test]
    fn chains_of_hops() {
        let rs = parse(
            "sockd @=socks5://a:pw@fw.example:1081>socks4a://hop2.far:1080>http://u:pw2@proxy.far:3128,fw2.example?spread 0.0.0.0/0\n",
        )
        .unwrap();
        let r = &rs.rules[0];
        assert!(r.spread, "?spread after the last entry of the list");
        assert_eq!(r.servers.len(), 2, "two alternatives, the first a chain");
        let chain = &r.servers[0];
        assert_eq!(chain.hops().count(), 3);
        assert_eq!(chain.addrs, vec![sa("192.0.2.1:1081"), sa("[2001:db8::1]:1081")]);
        assert!(chain.next[0].addrs.is_empty(), "a later hop's name is not resolved here");
        assert_eq!(chain.next[0].port(), 1080);
        assert_eq!(chain.next[0].protocol, Some(Protocol::Socks(ClientVersion::Socks4a)));
        assert_eq!(chain.next[1].protocol, Some(Protocol::Http));
        assert_eq!(chain.next[1].password.as_deref(), Some("pw2"));
        assert!(r.servers[1].next.is_empty());
        let text = r.to_string();
        assert_eq!(
            text,
            "sockd @=socks5://a:***@fw.example:1081>socks4a://hop2.far:1080>http://u:***@proxy.far:3128,fw2.example:1080?spread 0.0.0.0/0"
        );
        assert!(!format!("{r:?}").contains("pw2"));
        let literal = server("fw>192.0.2.50:1081?pipeline>http://[2001:db8::9]");
        assert_eq!(literal.next[0].addrs, vec![sa("192.0.2.50:1081")]);
        assert!(literal.next[0].pipeline, "?pipeline stays per hop");
        assert_eq!(literal.next[1].port(), DEFAULT_HTTP_PORT, "http's default port");
        assert_eq!(server("http://fw").port(), 8080);
        assert_eq!(
            literal.to_string(),
            "fw:1080>192.0.2.50:1081?pipeline>http://[2001:db8::9]:8080"
        );
        let back = server(&literal.to_string());
        assert_eq!(back, literal, "the printed chain parses back");
    }

    #[test]
    fn dynamic_is_a_chain_option_after_its_last_hop() {
        let chain = server("fw>192.0.2.50:1081>c.far?dynamic");
        assert!(chain.dynamic, "kept on the first hop");
        assert!(chain.next.iter().all(|hop| !hop.dynamic), "and only there");
        assert_eq!(chain.to_string(), "fw:1080>192.0.2.50:1081>c.far:1080?dynamic");
        assert_eq!(server(&chain.to_string()), chain, "the printed chain parses back");
        let piped = server("fw>c.far?pipeline&dynamic");
        assert!(piped.dynamic && piped.next[0].pipeline);
        assert_eq!(piped.to_string(), "fw:1080>c.far:1080?pipeline&dynamic");
        assert!(!server("fw>c.far").dynamic);
        let rs =
            parse("sockd @=fw2.example>b.far?dynamic,fw>c.far?pipeline&dynamic&spread 0.0.0.0/0\n")
                .unwrap();
        let r = &rs.rules[0];
        assert!(r.spread && r.servers[0].dynamic && r.servers[1].dynamic);
        assert_eq!(
            r.to_string(),
            "sockd @=fw2.example:1080>b.far:1080?dynamic,fw:1080>c.far:1080?pipeline&dynamic&spread 0.0.0.0/0"
        );
        let e = parse("sockd @=fw?dynamic>b.far 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("`?dynamic`") && e.contains("hop 1 of 2"), "{e}");
        let e = parse("sockd @=fw?dynamic 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("an option of a whole chain"), "{e}");
        let e = parse_server("fw?dynamic", &lookup()).unwrap_err().to_string();
        assert!(e.contains("`?dynamic`"), "{e}");
    }

    #[test]
    fn chain_errors_name_the_hop() {
        let e = parse("sockd @=fw>ftp://b.far 0.0.0.0/0").unwrap_err().to_string();
        assert!(
            e.contains("`ftp://b.far`") && e.contains("(hop 2 of 2 in `fw>ftp://b.far`)"),
            "{e}"
        );
        let e = parse("sockd @=fw>b.far:0>c.far 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("bad port `0`") && e.contains("hop 2 of 3"), "{e}");
        let e = parse("sockd @=fw>>c.far 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("empty hop 2 of 3 in `fw>>c.far`"), "{e}");
        let e = parse("sockd @=fw> 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("empty hop 2 of 2"), "{e}");
        let e = parse("sockd @=nowhere.example>b.far 0.0.0.0/0").unwrap_err().to_string();
        assert!(
            e.contains("unknown server host `nowhere.example`") && e.contains("hop 1 of 2"),
            "{e}"
        );
        let e = parse("sockd @=fw?spread>b.far 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("`?spread`") && e.contains("hop 1 of 2"), "{e}");
        let e = parse("sockd @=fw>socks4://u:pw@b.far 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("SOCKS4 has no passwords") && e.contains("hop 2 of 2"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
        let e = parse("sockd @=fw>b!far 0.0.0.0/0").unwrap_err().to_string();
        assert!(e.contains("bad host in server `b!far`") && e.contains("hop 2 of 2"), "{e}");
        let e = parse_server("fw>b.far?spread", &lookup()).unwrap_err().to_string();
        assert!(e.contains("an option of an @= list"), "{e}");
    }
}
