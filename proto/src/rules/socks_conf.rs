//! The client rule file `socks.conf` (read by `libsocks.so`): [`ClientRules::parse`], first-match
//! [`ClientRules::decide`] for addresses and [`ClientRules::decide_name`] for host names, the
//! settings for names resolved on the far side ([`ResolvePolicy`], the fake address ranges,
//! [`FakeFamilies`]), plus the `@=` server list ([`ServerSpec`], [`parse_server`],
//! [`parse_server_list`]).
//!
//! Grammar, one rule or setting per line (the original SOCKS4 client format, plus CIDR, IPv6,
//! server URLs, domain patterns and settings):
//!
//! ```text
//! direct [*=users] DST [OP PORT]
//! deny   [*=users] DST [OP PORT]
//! sockd  [@=SERVERS] [*=users] DST [OP PORT]
//! resolve remote | local | local-then-remote
//! fake-range IPv4/PREFIX | IPv6/PREFIX
//! fake-families ipv4 | ipv6 | both
//! DST    := ADDR MASK | ADDR/PREFIX      (as in sockd.conf: inverted masks, names resolved now)
//!         | .DOMAIN                      (a name suffix, no mask: `.example.test`)
//! SERVERS := SERVER[,SERVER…][?spread]  (a list option, among the last server's options:
//!                                        `@=a,b?pipeline&spread`)
//! SERVER := [SCHEME://][USER[:PASSWORD]@]HOST[:PORT][?pipeline]
//! SCHEME := socks4 | socks4a | socks5    HOST := name | IPv4 | [IPv6] (bare IPv6 without port)
//! ```
//!
//! `#` starts a comment; blank lines are ignored. The options `@=` and `*=` may come in either
//! order, each at most once; `@=` only on `sockd` lines. Rules are tried top to bottom and the first
//! whose user list, destination and port match decides; no match is `None`, which the caller
//! treats as `direct`. The users of `*=` are local user names (the process's effective uid, passed
//! in by the caller); a caller without a name matches no list.
//!
//! # Domain patterns
//!
//! A destination starting with `.` is a domain suffix: `.example.test` matches the name
//! `example.test` itself and every name ending in `.example.test`, but not `badexample.test`.
//! Matching ignores ASCII case and one trailing dot on the name. The pattern is kept in lower case
//! without its leading dot (a trailing dot on the pattern is dropped too); its labels hold letters,
//! digits, `-` and `_` (international names in their `xn--` form), and a bare `.` is an error. No
//! mask follows a domain pattern; `OP PORT` may. Domain patterns are about names and address
//! specs about addresses: [`ClientRules::decide`] (an address) skips domain lines, and
//! [`ClientRules::decide_name`] (a name being looked up) skips address lines; each keeps the file
//! order among the lines it looks at. Nothing is resolved to pick a domain rule.
//!
//! # Settings
//!
//! Settings lines may come anywhere in the file, each at most once (`fake-range` once per family);
//! a repeat is an error.
//!
//! - `resolve` ([`ResolvePolicy`], default `remote`): how a name that a `sockd` line routes is
//!   resolved. `remote`: not locally; the name gets a fake address and goes to the server, so no
//!   DNS query leaves the machine. `local`: the local resolver, as without this library (the
//!   address rules then decide). `local-then-remote`: the local resolver first, a fake address
//!   when it finds nothing.
//! - `fake-range` (defaults [`DEFAULT_FAKE_V4`] 198.18.0.0/15, the RFC 2544 benchmarking block,
//!   and [`DEFAULT_FAKE_V6`] fd73:6f63:6b73::/48, a unique-local block spelling "socks"): where
//!   fake addresses come from. IPv4 prefixes are 8 to 30, IPv6 prefixes 8 to 120; no address bits
//!   after the prefix; no overlap with the unspecified (0.0.0.0/8, ::), loopback (127.0.0.0/8,
//!   ::1), link-local (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4, ff00::/8), IPv4 limited
//!   broadcast (255.255.255.255) or IPv4-mapped (::ffff:0:0/96) blocks, which programs reject or
//!   treat specially.
//! - `fake-families` ([`FakeFamilies`], default `ipv4`): the families of fake addresses a lookup
//!   for any family (`AF_UNSPEC`) returns.
//!
//! # Servers
//!
//! A server without a scheme uses the caller's default version (`version: None`); without a port,
//! 1080. A host name is resolved now, through [`Lookup::host`], keeping every address in resolver
//! order. USER and PASSWORD may contain `%XX` escapes (for `,`, `#`, `@`, `:`, `%` or blanks) and
//! are at most 255 bytes each (RFC 1929); SOCKS4/4a servers take a USER (the USERID) but no
//! PASSWORD. Passwords never appear in `Debug`, `Display` or error messages: they print as `***`.
//!
//! Options follow a server after `?`, joined by `&`. `pipeline` is the server's own. `spread`
//! belongs to the whole list ([`ClientRule::spread`]: each connection starts at a different
//! server, see socks.conf(5)); it is written once, among the options of the last server, so the
//! per-server grammar stays as it is and a list says it in one place. `spread` on any other
//! server of the list, or on a single server outside a list (`SOCKS_SERVER`), is an error.
//!
//! As in `sockd.conf`, the CSTC `?=` and `: shell command` extensions are rejected, and any error
//! stops the parse. Not here: reading the file, the environment (`SOCKS_SERVER`), DNS, the map of
//! fake addresses, choosing a live server, or logging. [`ClientRules::decide`],
//! [`ClientRules::decide_name`] and the `fake_*_contains` helpers allocate nothing, so they are
//! safe to call inside `connect()` and `getaddrinfo()`.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::addr::{is_host_name, parse_addr_spec, AddrMatch};
use super::error::{ConfigError, LineError};
use super::lex::{self, Cursor};
use super::lookup::Lookup;
use super::port::{parse_port_spec, Op, PortMatch};
use super::sockd_conf::{holds, reject_cstc_extensions};
use super::users::{parse_user_list, UserList};
use crate::client::ClientVersion;

/// The port of a server written without one (the registered SOCKS port).
pub const DEFAULT_SERVER_PORT: u16 = 1080;

/// The longest user name or password RFC 1929 can carry (one length byte).
const MAX_CREDENTIAL: usize = 255;

/// What a `socks.conf` rule does with a matching connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAction {
    /// `direct`: the real `connect`, no proxy.
    Direct,
    /// `deny`: refuse the connection.
    Deny,
    /// `sockd`: go through a SOCKS server.
    Proxy,
}

impl ClientAction {
    /// The first word of the line: `direct`, `deny` or `sockd`.
    pub fn keyword(self) -> &'static str {
        match self {
            ClientAction::Direct => "direct",
            ClientAction::Deny => "deny",
            ClientAction::Proxy => "sockd",
        }
    }

    fn from_keyword(word: &str) -> Option<ClientAction> {
        Some(match word {
            "direct" => ClientAction::Direct,
            "deny" => ClientAction::Deny,
            "sockd" => ClientAction::Proxy,
            _ => return None,
        })
    }
}

impl fmt::Display for ClientAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// The protocol a server speaks, from the `SCHEME://` of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerVersion {
    /// `socks4://`
    Socks4,
    /// `socks4a://`
    Socks4a,
    /// `socks5://`
    Socks5,
}

impl ServerVersion {
    /// The scheme name, without `://`.
    pub fn scheme(self) -> &'static str {
        match self {
            ServerVersion::Socks4 => "socks4",
            ServerVersion::Socks4a => "socks4a",
            ServerVersion::Socks5 => "socks5",
        }
    }

    /// The version of a scheme name (any case, as URL schemes are).
    pub fn from_scheme(scheme: &str) -> Option<ServerVersion> {
        [ServerVersion::Socks4, ServerVersion::Socks4a, ServerVersion::Socks5]
            .into_iter()
            .find(|v| v.scheme().eq_ignore_ascii_case(scheme))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

impl From<ServerVersion> for ClientVersion {
    fn from(v: ServerVersion) -> ClientVersion {
        match v {
            ServerVersion::Socks4 => ClientVersion::Socks4,
            ServerVersion::Socks4a => ClientVersion::Socks4a,
            ServerVersion::Socks5 => ClientVersion::Socks5,
        }
    }
}

/// One SOCKS server of an `@=` list, host resolved. `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Every address of the host, in resolver order, with the port; never empty after parsing.
    pub addrs: Vec<SocketAddr>,
    /// The host as written (a name, or an address; IPv6 without the brackets).
    pub host: String,
    /// The protocol from `SCHEME://`; `None` = the caller's default.
    pub version: Option<ServerVersion>,
    /// `USER` from `USER[:PASSWORD]@`, `%XX` escapes decoded.
    pub username: Option<String>,
    /// `PASSWORD` from `USER:PASSWORD@`, `%XX` escapes decoded (may be empty).
    pub password: Option<String>,
    /// `?pipeline`: the server accepts the whole SOCKS5 handshake in one write (greeting,
    /// authentication and request), as sockd does, so a connect takes one round trip.
    pub pipeline: bool,
}

impl ServerSpec {
    /// The server port (1080 when none was written).
    pub fn port(&self) -> u16 {
        self.addrs.first().map_or(DEFAULT_SERVER_PORT, SocketAddr::port)
    }
}

impl fmt::Debug for ServerSpec {
    /// Never prints the password: configuration must not leak credentials into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("addrs", &self.addrs)
            .field("host", &self.host)
            .field("version", &self.version)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `[SCHEME://][USER[:***]@]HOST:PORT`: the host as written (IPv6 in brackets), the port always,
/// the user name `%XX`-escaped where needed, the password as `***`. Without a password this
/// parses back to the same server.
impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = self.version {
            write!(f, "{v}://")?;
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

/// `item` with the password (if any) replaced by `***`, for messages.
fn redact_server(item: &str) -> Cow<'_, str> {
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
fn redact_list(tok: &str) -> String {
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
    match server(&shown, text, &shown, lookup)? {
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
        let (spec, spread) = server(&shown, item, &item_shown, lookup)?;
        if spread && items.peek().is_some() {
            return Err(LineError::spread_not_last(&shown, &item_shown));
        }
        list.spread |= spread;
        list.servers.push(spec);
    }
    Ok(list)
}

/// One server `item`, and whether its options held the list option `spread`; `tok` (the error
/// token) and `shown` (the item in messages) are redacted.
fn server(
    tok: &str,
    item: &str,
    shown: &str,
    lookup: &dyn Lookup,
) -> Result<(ServerSpec, bool), LineError> {
    let (scheme, rest) = split_scheme(item);
    let version = match scheme {
        None => None,
        Some(s) => Some(
            ServerVersion::from_scheme(s)
                .ok_or_else(|| LineError::unknown_scheme(tok, shown, s))?,
        ),
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
    for option in options.into_iter().flat_map(|o| o.split('&')) {
        match option {
            "pipeline" => pipeline = true,
            "spread" => spread = true,
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
            if let (Some(_), Some(v @ (ServerVersion::Socks4 | ServerVersion::Socks4a))) =
                (&pass, version)
            {
                let name = if v == ServerVersion::Socks4 { "SOCKS4" } else { "SOCKS4a" };
                return Err(LineError::password_needs_socks5(tok, shown, name));
            }
            (Some(user), pass)
        }
    };

    let (host, port_tok) =
        split_host_port(hostport).map_err(|d| LineError::bad_server_host(tok, shown, d))?;
    let port = match port_tok {
        None => DEFAULT_SERVER_PORT,
        Some(p) => {
            server_port(p, lookup).ok_or_else(|| LineError::bad_server_port(tok, shown, p))?
        }
    };
    let ips = resolve_server_host(host, lookup).map_err(|e| e.into_line_error(tok, shown, host))?;
    let spec = ServerSpec {
        addrs: ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect(),
        host: host.to_owned(),
        version,
        username,
        password,
        pipeline,
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

/// An address literal as itself, a name through `lookup` (all addresses, in order).
fn resolve_server_host(host: &str, lookup: &dyn Lookup) -> Result<Vec<IpAddr>, HostError> {
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
    let ips = lookup.host(host).map_err(HostError::Unknown)?;
    if ips.is_empty() {
        return Err(HostError::Unknown("no addresses".to_owned()));
    }
    Ok(ips)
}

/// The first IPv4 fake address range: 198.18.0.0/15, the RFC 2544 benchmarking block (131072
/// addresses, not routed on the Internet, not multicast, not loopback).
pub const DEFAULT_FAKE_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);

/// The IPv6 fake address range: fd73:6f63:6b73::/48, a unique-local (RFC 4193) block whose
/// "global ID" spells `socks` in ASCII.
pub const DEFAULT_FAKE_V6: (Ipv6Addr, u8) =
    (Ipv6Addr::new(0xfd73, 0x6f63, 0x6b73, 0, 0, 0, 0, 0), 48);

/// The `fake-range` prefix bounds: at least 4 IPv4 addresses, at least 256 IPv6 addresses, and no
/// range so wide that it swallows a large part of the address space.
const FAKE_V4_PREFIX: (u8, u8) = (8, 30);
const FAKE_V6_PREFIX: (u8, u8) = (8, 120);

/// IPv4 blocks a fake range must not overlap: (what, network, prefix).
const RESERVED_V4: [(&str, Ipv4Addr, u8); 5] = [
    ("unspecified", Ipv4Addr::new(0, 0, 0, 0), 8),
    ("loopback", Ipv4Addr::new(127, 0, 0, 0), 8),
    ("link-local", Ipv4Addr::new(169, 254, 0, 0), 16),
    ("multicast", Ipv4Addr::new(224, 0, 0, 0), 4),
    ("limited broadcast", Ipv4Addr::new(255, 255, 255, 255), 32),
];

/// IPv6 blocks a fake range must not overlap: (what, network, prefix).
const RESERVED_V6: [(&str, Ipv6Addr, u8); 5] = [
    ("unspecified", Ipv6Addr::UNSPECIFIED, 128),
    ("loopback", Ipv6Addr::LOCALHOST, 128),
    ("IPv4-mapped", Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    ("link-local", Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    ("multicast", Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// The network mask of an IPv4 prefix (a prefix over 32 counts as 32).
fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

/// The network mask of an IPv6 prefix (a prefix over 128 counts as 128).
fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128u32.saturating_sub(u32::from(prefix))).unwrap_or(0)
}

/// How the library resolves a name that a `sockd` line routes (the `resolve` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResolvePolicy {
    /// `remote` (the default): a fake address; the name itself goes to the SOCKS server, and no
    /// DNS query leaves the machine.
    #[default]
    Remote,
    /// `local`: the local resolver, as without the library.
    Local,
    /// `local-then-remote`: the local resolver first; a fake address when it finds nothing.
    LocalThenRemote,
}

impl ResolvePolicy {
    /// The value as written after `resolve`.
    pub fn keyword(self) -> &'static str {
        match self {
            ResolvePolicy::Remote => "remote",
            ResolvePolicy::Local => "local",
            ResolvePolicy::LocalThenRemote => "local-then-remote",
        }
    }

    fn from_keyword(word: &str) -> Option<ResolvePolicy> {
        [ResolvePolicy::Remote, ResolvePolicy::Local, ResolvePolicy::LocalThenRemote]
            .into_iter()
            .find(|p| p.keyword() == word)
    }
}

impl fmt::Display for ResolvePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// The families of fake addresses a lookup for any family (`AF_UNSPEC`) returns (the
/// `fake-families` setting). A lookup for one family always gets that family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FakeFamilies {
    /// `ipv4` (the default): one IPv4 fake address.
    #[default]
    Ipv4,
    /// `ipv6`: one IPv6 fake address.
    Ipv6,
    /// `both`: an IPv6 and an IPv4 fake address.
    Both,
}

impl FakeFamilies {
    /// The value as written after `fake-families`.
    pub fn keyword(self) -> &'static str {
        match self {
            FakeFamilies::Ipv4 => "ipv4",
            FakeFamilies::Ipv6 => "ipv6",
            FakeFamilies::Both => "both",
        }
    }

    fn from_keyword(word: &str) -> Option<FakeFamilies> {
        [FakeFamilies::Ipv4, FakeFamilies::Ipv6, FakeFamilies::Both]
            .into_iter()
            .find(|f| f.keyword() == word)
    }
}

impl fmt::Display for FakeFamilies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// The destination condition of a `socks.conf` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `ADDR MASK` or `ADDR/PREFIX`: matches addresses, never names.
    Net(AddrMatch),
    /// `.example.test`: the lower-case suffix without the leading dot; matches names, never
    /// addresses.
    Domain(String),
}

impl Destination {
    /// Whether `ip` is in the networks (IPv4-mapped addresses canonicalised); `false` for a
    /// domain pattern. Allocates nothing.
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            Destination::Net(m) => m.matches(ip),
            Destination::Domain(_) => false,
        }
    }

    /// Whether `name` is the domain or a name under it (ASCII case ignored, one trailing dot on
    /// `name` ignored); `false` for an address spec. Allocates nothing.
    pub fn matches_name(&self, name: &str) -> bool {
        match self {
            Destination::Net(_) => false,
            Destination::Domain(suffix) => domain_matches(suffix, name),
        }
    }

    /// The suffix of a domain pattern (lower case, no leading dot).
    pub fn domain(&self) -> Option<&str> {
        match self {
            Destination::Domain(d) => Some(d),
            Destination::Net(_) => None,
        }
    }
}

/// `.suffix` for a domain pattern, [`AddrMatch`]'s `Display` for an address spec.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Net(m) => write!(f, "{m}"),
            Destination::Domain(d) => write!(f, ".{d}"),
        }
    }
}

/// Whether `name` equals `suffix` or ends in `.suffix`, ignoring ASCII case and one trailing dot
/// of `name`. `suffix` is non-empty and lower case. Byte-wise, so any `name` is safe.
fn domain_matches(suffix: &str, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    let suffix = suffix.as_bytes();
    match name.len().checked_sub(suffix.len()) {
        None => false,
        Some(0) => name.eq_ignore_ascii_case(suffix),
        Some(at) => name[at - 1] == b'.' && name[at..].eq_ignore_ascii_case(suffix),
    }
}

/// The longest host name in DNS (RFC 1035), without the trailing dot.
const MAX_DOMAIN: usize = 253;
/// The longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;

/// Parses a domain pattern token (it starts with `.`) into its lower-case suffix.
fn parse_domain(tok: &str) -> Result<String, LineError> {
    let body = tok.strip_prefix('.').unwrap_or(tok);
    let body = body.strip_suffix('.').unwrap_or(body);
    let bad = |detail: &str| Err(LineError::bad_domain_pattern(tok, detail));
    if body.is_empty() {
        return bad("no name after the dot (write a suffix such as .example.test)");
    }
    if body.len() > MAX_DOMAIN {
        return bad("longer than 253 bytes");
    }
    for label in body.split('.') {
        if label.is_empty() {
            return bad("empty label (two dots in a row)");
        }
        if label.len() > MAX_LABEL {
            return bad("a label is longer than 63 bytes");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
            return bad("only letters, digits, `-` and `_` between the dots \
                 (international names in their xn-- form)");
        }
    }
    Ok(body.to_ascii_lowercase())
}

/// One parsed line of `socks.conf`, names and services resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRule {
    /// 1-based line number in the file.
    pub line: usize,
    /// What to do on a match.
    pub action: ClientAction,
    /// The `@=` servers, to be tried in order; empty = the default server (only `sockd` lines
    /// can have servers).
    pub servers: Vec<ServerSpec>,
    /// `?spread` after the last `@=` server: each connection starts at a different server of
    /// the list (the front ends' `socks_client::order`); `false` = always the first live one.
    pub spread: bool,
    /// `*=…` local user names; `None` = any user, including an unknown one.
    pub users: Option<UserList>,
    /// The destination condition: addresses, or a domain pattern for names.
    pub dst: Destination,
    /// The port condition; `None` = any port.
    pub port: Option<PortMatch>,
}

impl ClientRule {
    /// Whether every condition holds for a connection to `dst`:`port` by local user `user`.
    /// A domain pattern never matches an address. Allocates nothing.
    pub fn matches(&self, dst: IpAddr, port: u16, user: Option<&str>) -> bool {
        holds(self.users.as_ref(), |u| u.matches(user))
            && self.dst.matches_ip(dst)
            && holds(self.port, |p| p.matches(port))
    }

    /// Whether every condition holds for the host name `name` looked up by local user `user`,
    /// for `port` when known; with `port` `None` the port condition is not checked (a resolver
    /// call does not know the port). An address spec never matches a name. Allocates nothing.
    pub fn matches_name(&self, name: &str, port: Option<u16>, user: Option<&str>) -> bool {
        holds(self.users.as_ref(), |u| u.matches(user))
            && self.dst.matches_name(name)
            && holds(self.port.zip(port), |(p, port)| p.matches(port))
    }
}

/// The canonical effective form on one line, e.g.
/// `sockd @=socks5://alice:***@fw.example:1080,192.0.2.1:1080 *=bob 0.0.0.0/0 eq 80`:
/// servers as in [`ServerSpec`]'s `Display`, users expanded, addresses as in sockd.conf's `Rule`,
/// domain patterns as `.suffix`.
impl fmt::Display for ClientRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        for (i, s) in self.servers.iter().enumerate() {
            f.write_str(if i == 0 { " @=" } else { "," })?;
            write!(f, "{s}")?;
        }
        if self.spread {
            let joiner = if self.servers.last().is_some_and(|s| s.pipeline) { "&" } else { "?" };
            write!(f, "{joiner}spread")?;
        }
        if let Some(u) = &self.users {
            write!(f, " {u}")?;
        }
        write!(f, " {}", self.dst)?;
        if let Some(p) = &self.port {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// A parsed `socks.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRules {
    /// The file name given to [`ClientRules::parse`], for messages.
    pub file: String,
    /// The rules in file order.
    pub rules: Vec<ClientRule>,
    /// `resolve`: how names routed through a server are resolved (default `remote`).
    pub resolve: ResolvePolicy,
    /// The IPv4 `fake-range` as (network, prefix), host bits clear (default [`DEFAULT_FAKE_V4`]).
    pub fake_v4: (Ipv4Addr, u8),
    /// The IPv6 `fake-range` as (network, prefix), host bits clear (default [`DEFAULT_FAKE_V6`]).
    pub fake_v6: (Ipv6Addr, u8),
    /// `fake-families`: what a lookup for any family gets (default `ipv4`).
    pub fake_families: FakeFamilies,
}

impl ClientRules {
    /// Parses the text of a `socks.conf` named `file`, resolving names through `lookup`.
    /// The first problem found is returned; nothing is skipped.
    pub fn parse(file: &str, text: &str, lookup: &dyn Lookup) -> Result<ClientRules, ConfigError> {
        let mut rs = ClientRules {
            file: file.to_owned(),
            rules: Vec::new(),
            resolve: ResolvePolicy::default(),
            fake_v4: DEFAULT_FAKE_V4,
            fake_v6: DEFAULT_FAKE_V6,
            fake_families: FakeFamilies::default(),
        };
        let mut seen = SeenSettings::default();
        for line in lex::lines(text) {
            let n = line.number;
            match line.tokens.first().copied().and_then(Setting::from_keyword) {
                Some(setting) => rs
                    .apply_setting(setting, &line.tokens, n, &mut seen)
                    .map_err(|e| e.at(file, n))?,
                None => {
                    rs.rules.push(parse_rule(n, &line.tokens, lookup).map_err(|e| e.at(file, n))?)
                }
            }
        }
        Ok(rs)
    }

    /// Parses the value of settings line `number` and records it; a setting seen before is an
    /// error naming the first line.
    fn apply_setting(
        &mut self,
        setting: Setting,
        tokens: &[&str],
        number: usize,
        seen: &mut SeenSettings,
    ) -> Result<(), LineError> {
        let keyword = setting.keyword();
        let value = match tokens {
            [_, value] => *value,
            [_] => return Err(LineError::missing_setting_value(keyword, setting.expected())),
            [_, _, extra, ..] => return Err(LineError::trailing_after_setting(extra, keyword)),
            // The lexer never yields an empty line, and a settings line starts with its keyword.
            [] => return Err(LineError::missing_setting_value(keyword, setting.expected())),
        };
        let unknown = || LineError::unknown_setting_value(value, keyword, setting.expected());
        let (slot, what) = match setting {
            Setting::Resolve => {
                self.resolve = ResolvePolicy::from_keyword(value).ok_or_else(unknown)?;
                (&mut seen.resolve, "`resolve` setting")
            }
            Setting::FakeFamilies => {
                self.fake_families = FakeFamilies::from_keyword(value).ok_or_else(unknown)?;
                (&mut seen.fake_families, "`fake-families` setting")
            }
            Setting::FakeRange => match parse_fake_range(value)? {
                (IpAddr::V4(net), prefix) => {
                    self.fake_v4 = (net, prefix);
                    (&mut seen.fake_v4, "IPv4 `fake-range`")
                }
                (IpAddr::V6(net), prefix) => {
                    self.fake_v6 = (net, prefix);
                    (&mut seen.fake_v6, "IPv6 `fake-range`")
                }
            },
        };
        if let Some(first) = *slot {
            return Err(LineError::duplicate_setting(keyword, what, first));
        }
        *slot = Some(number);
        Ok(())
    }

    /// The first rule matching a connection to `dst`:`port` by local user `user`; `None` when no
    /// line matches (the caller goes direct). Domain patterns never match. Allocates nothing.
    pub fn decide(&self, dst: IpAddr, port: u16, user: Option<&str>) -> Option<&ClientRule> {
        self.rules.iter().find(|r| r.matches(dst, port, user))
    }

    /// The first rule with a domain pattern matching the host name `name` looked up by local
    /// user `user`; address lines are skipped. With `port` `None` (a resolver call, which does
    /// not know the port) port conditions are not checked; with `Some` they are. `None` when no
    /// domain line matches. Allocates nothing.
    pub fn decide_name(
        &self,
        name: &str,
        port: Option<u16>,
        user: Option<&str>,
    ) -> Option<&ClientRule> {
        self.rules.iter().find(|r| r.matches_name(name, port, user))
    }

    /// Whether any `sockd` line exists (without one, no name needs a fake address).
    pub fn has_proxy_rule(&self) -> bool {
        self.rules.iter().any(|r| r.action == ClientAction::Proxy)
    }

    /// Whether `ip` is in the IPv4 fake range. Allocates nothing.
    pub fn fake_v4_contains(&self, ip: Ipv4Addr) -> bool {
        let (net, prefix) = self.fake_v4;
        let mask = mask_v4(prefix);
        u32::from(ip) & mask == u32::from(net) & mask
    }

    /// Whether `ip` is in the IPv6 fake range. Allocates nothing.
    pub fn fake_v6_contains(&self, ip: Ipv6Addr) -> bool {
        let (net, prefix) = self.fake_v6;
        let mask = mask_v6(prefix);
        u128::from(ip) & mask == u128::from(net) & mask
    }

    /// The settings that differ from their defaults, as they would be written.
    fn changed_settings(&self) -> impl Iterator<Item = String> + '_ {
        let resolve =
            (self.resolve != ResolvePolicy::default()).then(|| format!("resolve {}", self.resolve));
        let v4 = (self.fake_v4 != DEFAULT_FAKE_V4)
            .then(|| format!("fake-range {}/{}", self.fake_v4.0, self.fake_v4.1));
        let v6 = (self.fake_v6 != DEFAULT_FAKE_V6)
            .then(|| format!("fake-range {}/{}", self.fake_v6.0, self.fake_v6.1));
        let families = (self.fake_families != FakeFamilies::default())
            .then(|| format!("fake-families {}", self.fake_families));
        [resolve, v4, v6, families].into_iter().flatten()
    }
}

/// One `file:line: rule` per line (a `--check` listing; passwords as `***`), then one
/// `file: setting` line per setting that differs from its default.
impl fmt::Display for ClientRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            writeln!(f, "{}:{}: {}", self.file, r.line, r)?;
        }
        for s in self.changed_settings() {
            writeln!(f, "{}: {s}", self.file)?;
        }
        Ok(())
    }
}

/// The first word of a settings line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Resolve,
    FakeRange,
    FakeFamilies,
}

impl Setting {
    fn keyword(self) -> &'static str {
        match self {
            Setting::Resolve => "resolve",
            Setting::FakeRange => "fake-range",
            Setting::FakeFamilies => "fake-families",
        }
    }

    fn from_keyword(word: &str) -> Option<Setting> {
        [Setting::Resolve, Setting::FakeRange, Setting::FakeFamilies]
            .into_iter()
            .find(|s| s.keyword() == word)
    }

    /// The values, for messages.
    fn expected(self) -> &'static str {
        match self {
            Setting::Resolve => "remote, local or local-then-remote",
            Setting::FakeRange => "an IPv4 or IPv6 network ADDR/PREFIX",
            Setting::FakeFamilies => "ipv4, ipv6 or both",
        }
    }
}

/// The line of each setting seen so far.
#[derive(Debug, Default)]
struct SeenSettings {
    resolve: Option<usize>,
    fake_v4: Option<usize>,
    fake_v6: Option<usize>,
    fake_families: Option<usize>,
}

/// A `fake-range` value: `IPv4/PREFIX` or `IPv6/PREFIX` within the family's prefix bounds, no
/// address bits after the prefix, clear of the reserved blocks.
fn parse_fake_range(tok: &str) -> Result<(IpAddr, u8), LineError> {
    let (addr, prefix) = tok.split_once('/').ok_or_else(|| LineError::bad_fake_range(tok))?;
    let addr: IpAddr = addr.parse().map_err(|_| LineError::bad_fake_range(tok))?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::bad_fake_range(tok));
    }
    // Digits only: a parse failure means a huge number, which is out of bounds anyway.
    let prefix: u8 = prefix.parse().unwrap_or(u8::MAX);
    match addr {
        IpAddr::V4(a) => {
            let (min, max) = FAKE_V4_PREFIX;
            if !(min..=max).contains(&prefix) {
                return Err(LineError::fake_range_prefix(tok, "IPv4", min, max));
            }
            let net = Ipv4Addr::from(u32::from(a) & mask_v4(prefix));
            if net != a {
                return Err(LineError::fake_range_host_bits(tok, &format!("{net}/{prefix}")));
            }
            for (what, block, len) in RESERVED_V4 {
                let m = mask_v4(prefix.min(len));
                if u32::from(net) & m == u32::from(block) & m {
                    let block = format!("{block}/{len}");
                    return Err(LineError::fake_range_reserved(tok, what, &block));
                }
            }
            Ok((IpAddr::V4(net), prefix))
        }
        IpAddr::V6(a) => {
            let (min, max) = FAKE_V6_PREFIX;
            if !(min..=max).contains(&prefix) {
                return Err(LineError::fake_range_prefix(tok, "IPv6", min, max));
            }
            let net = Ipv6Addr::from(u128::from(a) & mask_v6(prefix));
            if net != a {
                return Err(LineError::fake_range_host_bits(tok, &format!("{net}/{prefix}")));
            }
            for (what, block, len) in RESERVED_V6 {
                let m = mask_v6(prefix.min(len));
                if u128::from(net) & m == u128::from(block) & m {
                    let block = format!("{block}/{len}");
                    return Err(LineError::fake_range_reserved(tok, what, &block));
                }
            }
            Ok((IpAddr::V6(net), prefix))
        }
    }
}

/// Whether `tok` can only be a host name (not an address, not a CIDR spec): used to suggest a
/// domain pattern when the mask is missing.
fn is_bare_name(tok: &str) -> bool {
    !tok.contains(':')
        && !tok.contains('/')
        && !tok.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && is_host_name(tok)
}

fn parse_rule(
    number: usize,
    tokens: &[&str],
    lookup: &dyn Lookup,
) -> Result<ClientRule, LineError> {
    reject_cstc_extensions(tokens)?;
    let mut cur = Cursor::new(tokens);
    let action = match cur.next() {
        Some(word) => ClientAction::from_keyword(word)
            .ok_or_else(|| LineError::unknown_action(word, "direct, deny or sockd"))?,
        // The lexer never yields an empty line.
        None => return Err(LineError::missing_address("destination address")),
    };

    let mut users = None;
    let mut servers: Option<ServerList> = None;
    while let Some(t) = cur.peek() {
        if t.starts_with("*=") {
            if users.is_some() {
                return Err(LineError::duplicate_user_list(t));
            }
            users = Some(parse_user_list(t, lookup)?);
        } else if t.starts_with("@=") {
            if action != ClientAction::Proxy {
                return Err(LineError::server_list_needs_sockd(&redact_list(t), action.keyword()));
            }
            if servers.is_some() {
                return Err(LineError::duplicate_server_list(&redact_list(t)));
            }
            servers = Some(parse_server_list(t, lookup)?);
        } else {
            break;
        }
        cur.next();
    }

    let dst = match cur.peek() {
        Some(t) if t.starts_with('.') => {
            cur.next();
            let dst = Destination::Domain(parse_domain(t)?);
            if let Some(next) = cur.peek().filter(|n| Op::from_keyword(n).is_none()) {
                return Err(LineError::mask_after_domain(next, t));
            }
            dst
        }
        Some(t) if Op::from_keyword(t).is_none() => {
            let mask_missing = !matches!(cur.peek2(), Some(m) if Op::from_keyword(m).is_none());
            if mask_missing && is_bare_name(t) {
                return Err(LineError::name_without_mask(t));
            }
            Destination::Net(parse_addr_spec(&mut cur, lookup)?)
        }
        _ => return Err(LineError::missing_address("destination address")),
    };
    let port = if cur.is_empty() { None } else { Some(parse_port_spec(&mut cur, lookup)?) };
    if let Some(t) = cur.peek() {
        return Err(LineError::trailing(t));
    }
    let ServerList { servers, spread } =
        servers.unwrap_or(ServerList { servers: Vec::new(), spread: false });
    Ok(ClientRule { line: number, action, servers, spread, users, dst, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lookup::StaticLookup;

    fn lookup() -> StaticLookup {
        StaticLookup::new(
            "192.0.2.1 fw.example fw\n2001:db8::1 fw.example\n192.0.2.2 fw2.example\n\
             198.51.100.1 sgi.com\n198.51.100.2 sgi.com\n2001:db8::5 v6only\n",
            "socks 1080/tcp\ntelnet 23/tcp\nwhois 43/tcp nicname\nhttp 80/tcp www\n",
        )
        .with_file("/etc/socks.users", "alice\nbob # the builder\n")
    }

    fn parse(text: &str) -> Result<ClientRules, ConfigError> {
        ClientRules::parse("socks.conf", text, &lookup())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// (action keyword or "none", line of the deciding rule or 0).
    fn decide(rs: &ClientRules, dst: &str, port: u16, user: Option<&str>) -> (&'static str, usize) {
        match rs.decide(ip(dst), port, user) {
            Some(r) => (r.action.keyword(), r.line),
            None => ("none", 0),
        }
    }

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
             ?pipeline, or ?spread after the last server of an @= list)"
        );
    }

    #[test]
    fn each_action() {
        let rs = parse("deny 10.0.0.0/8\ndirect 192.168.0.0/16\nsockd 0.0.0.0/0\n").unwrap();
        assert_eq!(decide(&rs, "10.1.2.3", 80, None), ("deny", 1));
        assert_eq!(decide(&rs, "192.168.1.1", 80, None), ("direct", 2));
        let r = rs.decide(ip("8.8.8.8"), 53, Some("alice")).unwrap();
        assert_eq!((r.action, r.line), (ClientAction::Proxy, 3));
        assert!(r.servers.is_empty(), "no @= means the default server");
        assert_eq!(decide(&rs, "2001:db8::9", 80, None), ("sockd", 3), "0.0.0.0/0 is any address");
        assert_eq!(rs.rules[0].to_string(), "deny 10.0.0.0/8");
        assert_eq!(rs.rules[2].to_string(), "sockd 0.0.0.0/0");
        let rs = parse("deny 10.0.0.0/8\nsockd ::ffff:0.0.0.0/96\n").unwrap();
        assert_eq!(decide(&rs, "8.8.8.8", 80, None), ("sockd", 2));
        assert_eq!(decide(&rs, "2001:db8::9", 80, None), ("none", 0), "IPv4 rules skip IPv6");
    }

    #[test]
    fn first_match_wins_and_no_match() {
        let rs = parse(
            "# local first\n\
             direct 192.0.2.0 0.0.0.255\n\
             \n\
             deny 0.0.0.0/0 eq telnet   # nobody telnets out\n\
             sockd @=fw 0.0.0.0/0 lt 1024\n\
             sockd @=fw2.example 0.0.0.0/0\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, "192.0.2.77", 23, None), ("direct", 2));
        assert_eq!(decide(&rs, "203.0.113.1", 23, None), ("deny", 4));
        assert_eq!(decide(&rs, "203.0.113.1", 80, None), ("sockd", 5));
        assert_eq!(decide(&rs, "203.0.113.1", 8080, None), ("sockd", 6));
        assert_eq!(decide(&rs, "::ffff:203.0.113.1", 8080, None), ("sockd", 6), "v4-mapped");
        // The "any" mask covers IPv6 too: no walk-around of the telnet deny over IPv6.
        assert_eq!(decide(&rs, "2001:db8::1", 23, None), ("deny", 4));
        assert_eq!(decide(&rs, "2001:db8::1", 80, None), ("sockd", 5));
        assert_eq!(rs.decide(ip("203.0.113.1"), 80, None).unwrap().servers[0].host, "fw");
    }

    #[test]
    fn man_page_examples() {
        // The SOCKS4 client's socks.conf(5) style: inverted masks, @= servers, *= users.
        let rs = parse(
            "deny *=mallory 0.0.0.0 255.255.255.255\n\
             direct 130.62.0.0 0.0.255.255\n\
             direct 127.0.0.1 0.0.0.0\n\
             sockd @=fw.example 0.0.0.0 255.255.255.255\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, "130.62.1.2", 21, Some("mallory")), ("deny", 1));
        assert_eq!(decide(&rs, "130.62.1.2", 21, Some("lloyd")), ("direct", 2));
        assert_eq!(decide(&rs, "130.62.255.255", 21, None), ("direct", 2));
        assert_eq!(decide(&rs, "127.0.0.1", 6000, None), ("direct", 3));
        assert_eq!(decide(&rs, "127.0.0.2", 6000, None), ("sockd", 4));
        assert_eq!(decide(&rs, "130.63.0.1", 21, None), ("sockd", 4));
        let s = &rs.rules[3].servers;
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].addrs, vec![sa("192.0.2.1:1080"), sa("[2001:db8::1]:1080")]);
        assert_eq!(s[0].version, None);
        assert_eq!(
            rs.to_string(),
            "socks.conf:1: deny *=mallory 0.0.0.0/0\n\
             socks.conf:2: direct 130.62.0.0/16\n\
             socks.conf:3: direct 127.0.0.1/32\n\
             socks.conf:4: sockd @=fw.example:1080 0.0.0.0/0\n"
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
        assert_eq!(s[1].version, Some(ServerVersion::Socks4));
        assert_eq!(s[2].addrs, vec![sa("[2001:db8::7]:1080")]);
        assert_eq!(s[2].host, "2001:db8::7");
        assert_eq!(
            rs.rules[0].to_string(),
            "sockd @=fw2.example:1080,socks4://192.0.2.9:1081,[2001:db8::7]:1080 0.0.0.0/0"
        );
    }

    #[test]
    fn server_schemes() {
        assert_eq!(server("fw").version, None);
        assert_eq!(server("socks4://fw").version, Some(ServerVersion::Socks4));
        assert_eq!(server("socks4a://fw").version, Some(ServerVersion::Socks4a));
        assert_eq!(server("socks5://fw").version, Some(ServerVersion::Socks5));
        assert_eq!(server("SOCKS5://fw").version, Some(ServerVersion::Socks5));
        assert_eq!(ClientVersion::from(ServerVersion::Socks4a), ClientVersion::Socks4a);
        assert_eq!(ServerVersion::from_scheme("socks4A"), Some(ServerVersion::Socks4a));
        assert_eq!(ServerVersion::from_scheme("socks"), None);
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
    fn users_are_local_names() {
        let rs = parse(
            "direct *=alice,/etc/socks.users 0.0.0.0/0 eq http\n\
             sockd *=root @=fw 0.0.0.0/0\n\
             deny 0.0.0.0/0\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, "1.1.1.1", 80, Some("bob")), ("direct", 1));
        assert_eq!(decide(&rs, "1.1.1.1", 81, Some("bob")), ("deny", 3));
        assert_eq!(decide(&rs, "1.1.1.1", 81, Some("root")), ("sockd", 2));
        assert_eq!(decide(&rs, "1.1.1.1", 80, None), ("deny", 3), "unknown user: no list");
        assert_eq!(rs.rules[0].to_string(), "direct *=alice,bob 0.0.0.0/0 eq 80");
        assert_eq!(rs.rules[1].to_string(), "sockd @=fw:1080 *=root 0.0.0.0/0");
    }

    #[test]
    fn ipv6_and_names_in_destinations() {
        let rs = parse(
            "direct 2001:db8::/32 ge 1024\n\
             sockd @=[2001:db8::1]:1080 ::/0\n\
             deny sgi.com 0.0.0.0\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, "2001:db8::9", 8080, None), ("direct", 1));
        assert_eq!(decide(&rs, "2001:db8::9", 80, None), ("sockd", 2));
        assert_eq!(decide(&rs, "198.51.100.2", 80, None), ("deny", 3));
        assert_eq!(decide(&rs, "198.51.100.3", 80, None), ("none", 0));
        assert_eq!(rs.rules[2].to_string(), "deny {198.51.100.1,198.51.100.2}/32");
        let Destination::Net(m) = &rs.rules[2].dst else { panic!("an address spec") };
        assert_eq!(m.name(), Some("sgi.com"), "a name with a mask is resolved, not a pattern");
    }

    #[test]
    fn display_reparses_to_same_rule() {
        let text =
            "sockd @=socks4a://bob@fw.example:1081,[::1] *=a,b 130.62.0.0 0.0.255.255 neq 25\n\
                    direct 10.0.0.1 0.255.0.0\n\
                    deny *=x 2001:db8::/32 le 1023\n\
                    sockd @=fw *=y .Example.Test. neq 25\n\
                    direct .corp.example\n";
        let rs = parse(text).unwrap();
        for r in &rs.rules {
            let again = parse(&r.to_string()).unwrap();
            let mut r2 = again.rules[0].clone();
            r2.line = r.line;
            assert_eq!(r, &r2, "{r}");
        }
    }

    #[test]
    fn empty_file_has_no_rules() {
        let rs = parse("# nothing\n\n").unwrap();
        assert!(rs.rules.is_empty());
        assert_eq!(decide(&rs, "1.1.1.1", 80, None), ("none", 0));
        assert_eq!(decide_name(&rs, "example.test", None, None), ("none", 0));
        assert!(!rs.has_proxy_rule());
    }

    /// (action keyword or "none", line of the deciding rule or 0) for a name.
    fn decide_name(
        rs: &ClientRules,
        name: &str,
        port: Option<u16>,
        user: Option<&str>,
    ) -> (&'static str, usize) {
        match rs.decide_name(name, port, user) {
            Some(r) => (r.action.keyword(), r.line),
            None => ("none", 0),
        }
    }

    fn domain(pattern: &str) -> Destination {
        let rs = parse(&format!("direct {pattern}")).unwrap();
        rs.rules[0].dst.clone()
    }

    #[test]
    fn domain_pattern_suffix_exact_case_and_trailing_dot() {
        let d = domain(".example.test");
        assert_eq!(d, Destination::Domain("example.test".to_owned()));
        assert_eq!(d.domain(), Some("example.test"));
        assert_eq!(d.to_string(), ".example.test");
        for name in [
            "example.test",
            "www.example.test",
            "a.b.c.example.test",
            "EXAMPLE.Test",
            "WWW.Example.TEST",
            "example.test.",
            "www.example.test.",
        ] {
            assert!(d.matches_name(name), "{name}");
        }
        for name in [
            "badexample.test",
            "example.test.evil",
            "xample.test",
            "test",
            "example.test..",
            "",
            ".",
            "example",
            "ex\u{e4}mple.test",
        ] {
            assert!(!d.matches_name(name), "{name}");
        }
        assert!(d.matches_name(".example.test"), "empty first label: still under the domain");
        assert!(!d.matches_ip(ip("192.0.2.1")), "a domain never matches an address");
    }

    #[test]
    fn domain_pattern_is_stored_lower_case_without_dots() {
        assert_eq!(domain(".Corp.EXAMPLE").domain(), Some("corp.example"));
        assert_eq!(domain(".corp.example.").domain(), Some("corp.example"), "FQDN form");
        assert_eq!(domain(".test").domain(), Some("test"), "a whole top-level domain");
        assert_eq!(domain(".xn--bcher-kva.example").domain(), Some("xn--bcher-kva.example"));
        assert_eq!(domain("._srv.example").domain(), Some("_srv.example"));
        let long = format!(".{}.{}", "a".repeat(63), "b".repeat(63));
        assert!(domain(&long).matches_name(&long[1..]));
        // Numeric labels are labels like any other.
        assert!(domain(".1.2").matches_name("3.1.2"));
    }

    #[test]
    fn net_destinations_never_match_names() {
        let d = parse("direct 0.0.0.0/0").unwrap().rules[0].dst.clone();
        assert!(matches!(&d, Destination::Net(m) if m.to_string() == "0.0.0.0/0"));
        assert_eq!(d.domain(), None);
        assert!(!d.matches_name("example.test"));
        assert!(!d.matches_name("0.0.0.0"));
        assert!(d.matches_ip(ip("203.0.113.1")));
    }

    #[test]
    fn domain_lines_with_options_and_ports() {
        let rs = parse(
            "sockd @=fw:1080 .example.test\n\
             direct .corp.example\n\
             deny .ads.example eq 80\n\
             sockd *=alice,bob @=socks5://fw2.example .Example.ORG ge 1024\n",
        )
        .unwrap();
        assert_eq!(rs.rules.len(), 4);
        assert_eq!(rs.rules[0].to_string(), "sockd @=fw:1080 .example.test");
        assert_eq!(rs.rules[1].to_string(), "direct .corp.example");
        assert_eq!(rs.rules[2].to_string(), "deny .ads.example eq 80");
        assert_eq!(
            rs.rules[3].to_string(),
            "sockd @=socks5://fw2.example:1080 *=alice,bob .example.org ge 1024"
        );
        assert_eq!(rs.rules[0].servers[0].addrs, vec![sa("192.0.2.1:1080")]);
    }

    #[test]
    fn decide_name_first_domain_match() {
        let rs = parse(
            "direct 0.0.0.0/0 eq 80\n\
             direct .corp.example\n\
             deny .ads.example eq 80\n\
             sockd *=alice .example.org\n\
             sockd @=fw .example.test\n\
             sockd @=fw2.example .test\n\
             deny ::/0\n",
        )
        .unwrap();
        assert_eq!(decide_name(&rs, "wiki.corp.example", None, None), ("direct", 2));
        assert_eq!(decide_name(&rs, "www.example.test", Some(80), None), ("sockd", 5));
        assert_eq!(decide_name(&rs, "other.test", None, None), ("sockd", 6));
        assert_eq!(decide_name(&rs, "badexample.test", None, None), ("sockd", 6), "not line 5");
        assert_eq!(
            decide_name(&rs, "example.net", None, None),
            ("none", 0),
            "address lines skipped"
        );
        assert_eq!(decide_name(&rs, "0.0.0.0", Some(80), None), ("none", 0));
        // Port conditions: checked with a port, not without one.
        assert_eq!(decide_name(&rs, "x.ads.example", Some(80), None), ("deny", 3));
        assert_eq!(decide_name(&rs, "x.ads.example", Some(443), None), ("none", 0));
        assert_eq!(decide_name(&rs, "x.ads.example", None, None), ("deny", 3), "port unknown");
        // User conditions always apply.
        assert_eq!(decide_name(&rs, "www.example.org", None, Some("alice")), ("sockd", 4));
        assert_eq!(decide_name(&rs, "www.example.org", None, Some("bob")), ("none", 0));
        assert_eq!(decide_name(&rs, "www.example.org", None, None), ("none", 0));
        assert_eq!(
            rs.decide_name("WWW.EXAMPLE.TEST.", None, None).unwrap().servers[0].host,
            "fw",
            "case and trailing dot"
        );
    }

    #[test]
    fn decide_skips_domain_lines() {
        let rs =
            parse("sockd .example.test\ndirect .corp.example\ndeny 0.0.0.0/0 eq 80\n").unwrap();
        assert_eq!(decide(&rs, "192.0.2.1", 80, None), ("deny", 3));
        assert_eq!(decide(&rs, "192.0.2.1", 81, None), ("none", 0));
        assert_eq!(decide(&rs, "2001:db8::1", 80, None), ("deny", 3), "any covers IPv6");
        assert_eq!(decide(&rs, "2001:db8::1", 81, None), ("none", 0));
    }

    #[test]
    fn has_proxy_rule() {
        assert!(!parse("").unwrap().has_proxy_rule());
        assert!(!parse("direct .corp.example\ndeny 0.0.0.0/0\nresolve local\n")
            .unwrap()
            .has_proxy_rule());
        assert!(parse("direct 10.0.0.0/8\nsockd .example.test\n").unwrap().has_proxy_rule());
        assert!(parse("sockd @=fw 0.0.0.0/0\n").unwrap().has_proxy_rule());
    }

    #[test]
    fn settings_defaults() {
        let rs = parse("direct 10.0.0.0/8\n").unwrap();
        assert_eq!(rs.resolve, ResolvePolicy::Remote);
        assert_eq!(rs.fake_v4, (Ipv4Addr::new(198, 18, 0, 0), 15));
        assert_eq!(rs.fake_v6, ("fd73:6f63:6b73::".parse().unwrap(), 48));
        assert_eq!((rs.fake_v4, rs.fake_v6), (DEFAULT_FAKE_V4, DEFAULT_FAKE_V6));
        assert_eq!(rs.fake_families, FakeFamilies::Ipv4);
        assert_eq!(rs.to_string(), "socks.conf:1: direct 10.0.0.0/8\n", "defaults not listed");
    }

    #[test]
    fn settings_anywhere_in_the_file() {
        let rs = parse(
            "fake-families both   # AAAA and A for AF_UNSPEC\n\
             direct .corp.example\n\
             fake-range 10.99.0.0/16\n\
             sockd @=fw 0.0.0.0/0\n\
             resolve local-then-remote\n\
             fake-range fd00:5::/64\n",
        )
        .unwrap();
        assert_eq!(rs.rules.len(), 2);
        assert_eq!((rs.rules[0].line, rs.rules[1].line), (2, 4));
        assert_eq!(rs.resolve, ResolvePolicy::LocalThenRemote);
        assert_eq!(rs.fake_v4, (Ipv4Addr::new(10, 99, 0, 0), 16));
        assert_eq!(rs.fake_v6, ("fd00:5::".parse().unwrap(), 64));
        assert_eq!(rs.fake_families, FakeFamilies::Both);
        assert_eq!(
            rs.to_string(),
            "socks.conf:2: direct .corp.example\n\
             socks.conf:4: sockd @=fw:1080 0.0.0.0/0\n\
             socks.conf: resolve local-then-remote\n\
             socks.conf: fake-range 10.99.0.0/16\n\
             socks.conf: fake-range fd00:5::/64\n\
             socks.conf: fake-families both\n"
        );
    }

    #[test]
    fn settings_every_value() {
        for (text, policy) in [
            ("resolve remote", ResolvePolicy::Remote),
            ("resolve local", ResolvePolicy::Local),
            ("resolve local-then-remote", ResolvePolicy::LocalThenRemote),
        ] {
            let rs = parse(text).unwrap();
            assert_eq!(rs.resolve, policy);
            assert_eq!(format!("resolve {policy}"), text);
            assert!(rs.rules.is_empty());
        }
        for (text, families) in [
            ("fake-families ipv4", FakeFamilies::Ipv4),
            ("fake-families ipv6", FakeFamilies::Ipv6),
            ("fake-families both", FakeFamilies::Both),
        ] {
            assert_eq!(parse(text).unwrap().fake_families, families);
            assert_eq!(format!("fake-families {families}"), text);
        }
        // Explicit defaults are allowed (and count as the one occurrence).
        let rs =
            parse("resolve remote\nfake-range 198.18.0.0/15\nfake-range fd73:6f63:6b73::/48\n")
                .unwrap();
        assert_eq!(
            (rs.resolve, rs.fake_v4, rs.fake_v6),
            (ResolvePolicy::Remote, DEFAULT_FAKE_V4, DEFAULT_FAKE_V6)
        );
    }

    #[test]
    fn fake_range_bounds_accepted() {
        for (text, net, prefix) in [
            ("fake-range 10.0.0.0/8", "10.0.0.0", 8),
            ("fake-range 100.64.0.0/10", "100.64.0.0", 10),
            ("fake-range 198.18.0.0/30", "198.18.0.0", 30),
            ("fake-range 223.255.255.252/30", "223.255.255.252", 30),
        ] {
            let rs = parse(text).unwrap();
            assert_eq!(rs.fake_v4, (net.parse().unwrap(), prefix), "{text}");
        }
        for (text, net, prefix) in [
            ("fake-range 2001:db8::/32", "2001:db8::", 32),
            ("fake-range fd00::/8", "fd00::", 8),
            ("fake-range fd73:6f63:6b73::ff00/120", "fd73:6f63:6b73::ff00", 120),
            ("fake-range 64:ff9b::/96", "64:ff9b::", 96),
        ] {
            let rs = parse(text).unwrap();
            assert_eq!(rs.fake_v6, (net.parse().unwrap(), prefix), "{text}");
        }
        // Next to the reserved blocks, touching none.
        for text in [
            "fake-range 1.0.0.0/8",
            "fake-range 126.0.0.0/8",
            "fake-range 128.0.0.0/8",
            "fake-range 169.253.0.0/16",
            "fake-range 169.255.0.0/16",
            "fake-range 223.0.0.0/8",
            "fake-range 255.255.255.248/30",
            "fake-range 240.0.0.0/8",
            "fake-range ::1:0/120",
            "fake-range fec0::/10",
            "fake-range fe00::/9",
        ] {
            assert!(parse(text).is_ok(), "{text}: {:?}", parse(text));
        }
    }

    #[test]
    fn fake_range_contains() {
        let rs = parse("").unwrap();
        assert!(rs.fake_v4_contains(Ipv4Addr::new(198, 18, 0, 0)));
        assert!(rs.fake_v4_contains(Ipv4Addr::new(198, 19, 255, 255)));
        assert!(!rs.fake_v4_contains(Ipv4Addr::new(198, 20, 0, 0)));
        assert!(!rs.fake_v4_contains(Ipv4Addr::new(198, 17, 255, 255)));
        assert!(rs.fake_v6_contains("fd73:6f63:6b73::1".parse().unwrap()));
        assert!(rs.fake_v6_contains("fd73:6f63:6b73:ffff:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert!(!rs.fake_v6_contains("fd73:6f63:6b74::".parse().unwrap()));
        assert!(!rs.fake_v6_contains("::ffff:198.18.0.1".parse().unwrap()));

        let rs = parse("fake-range 10.99.0.0/30\nfake-range 2001:db8::ff00/120\n").unwrap();
        assert!(rs.fake_v4_contains(Ipv4Addr::new(10, 99, 0, 3)));
        assert!(!rs.fake_v4_contains(Ipv4Addr::new(10, 99, 0, 4)));
        assert!(rs.fake_v6_contains("2001:db8::ffff".parse().unwrap()));
        assert!(!rs.fake_v6_contains("2001:db8::1:ff00".parse().unwrap()));

        // Hand-built extremes do not overflow.
        let mut rs = parse("").unwrap();
        rs.fake_v4 = (Ipv4Addr::UNSPECIFIED, 0);
        rs.fake_v6 = (Ipv6Addr::LOCALHOST, 200);
        assert!(rs.fake_v4_contains(Ipv4Addr::BROADCAST));
        assert!(rs.fake_v6_contains(Ipv6Addr::LOCALHOST));
        assert!(!rs.fake_v6_contains(Ipv6Addr::UNSPECIFIED));
    }

    /// Asserts the error's line, token and full Display.
    fn check_err(text: &str, line: usize, token: Option<&str>, display: &str) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.to_string(), display);
        assert_eq!(e.line, line, "{e}");
        assert_eq!(e.token.as_deref(), token, "{e}");
        assert_eq!(e.file, "socks.conf");
    }

    const OK: &str = "# header\ndirect 10.0.0.0/8\n";

    #[test]
    fn err_unknown_action() {
        check_err(
            &format!("{OK}permit 10.0.0.0/8\n"),
            3,
            Some("permit"),
            "socks.conf:3: unknown action `permit` (expected direct, deny or sockd)",
        );
    }

    #[test]
    fn err_missing_destination() {
        check_err(
            &format!("{OK}sockd @=fw\n"),
            3,
            None,
            "socks.conf:3: missing destination address (write ADDR MASK or ADDR/PREFIX)",
        );
        check_err(
            "deny eq 23",
            1,
            None,
            "socks.conf:1: missing destination address (write ADDR MASK or ADDR/PREFIX)",
        );
    }

    #[test]
    fn err_from_shared_building_blocks() {
        check_err(
            "direct 130.62.0.0",
            1,
            Some("130.62.0.0"),
            "socks.conf:1: address `130.62.0.0` has no mask (write ADDR MASK or ADDR/PREFIX)",
        );
        check_err(
            "deny 0.0.0.0/0 eq gopher",
            1,
            Some("gopher"),
            "socks.conf:1: unknown service `gopher` (not a port number or a tcp service name)",
        );
        check_err(
            "deny 0.0.0.0/0 eq 23 24",
            1,
            Some("24"),
            "socks.conf:1: unexpected `24` after the end of the rule",
        );
        check_err(
            "sockd *=a @=fw *=b 0.0.0.0/0",
            1,
            Some("*=b"),
            "socks.conf:1: second user list `*=b` on one line",
        );
        check_err(
            "deny ?=I 0.0.0.0/0",
            1,
            Some("?=I"),
            "socks.conf:1: identd checks are not supported: `?=I` (remove the `?=` option)",
        );
    }

    #[test]
    fn err_server_list_on_direct_or_deny() {
        check_err(
            &format!("{OK}direct @=fw 10.0.0.0/8\n"),
            3,
            Some("@=fw"),
            "socks.conf:3: server list `@=fw` on a `direct` line (`@=` belongs on `sockd` lines only)",
        );
        check_err(
            "deny *=bob @=u:pw@fw 10.0.0.0/8",
            1,
            Some("@=u:***@fw"),
            "socks.conf:1: server list `@=u:***@fw` on a `deny` line (`@=` belongs on `sockd` \
             lines only)",
        );
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
    fn err_duplicate_server_list() {
        check_err(
            "sockd @=fw *=bob @=fw2.example 0.0.0.0/0",
            1,
            Some("@=fw2.example"),
            "socks.conf:1: second server list `@=fw2.example` on one line",
        );
    }

    #[test]
    fn err_unknown_scheme() {
        check_err(
            "sockd @=fw,http://fw2.example 0.0.0.0/0",
            1,
            Some("@=fw,http://fw2.example"),
            "socks.conf:1: unknown scheme `http://` in server `http://fw2.example` \
             (expected socks4://, socks4a:// or socks5://)",
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
            "sockd @=u:hunter2@fw,http://v:hunter2@fw 0.0.0.0/0",
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
    fn err_bad_domain_pattern() {
        check_err(
            &format!("{OK}sockd @=fw .\n"),
            3,
            Some("."),
            "socks.conf:3: bad domain pattern `.`: no name after the dot \
             (write a suffix such as .example.test)",
        );
        let cases = [
            ("..", "no name after the dot"),
            (".a..b", "empty label (two dots in a row)"),
            ("...", "empty label (two dots in a row)"),
            (".a.b..", "empty label (two dots in a row)"),
            (".ex!ample.test", "only letters, digits, `-` and `_` between the dots"),
            (".exämple.test", "only letters, digits, `-` and `_` between the dots"),
            (".*.example.test", "only letters, digits, `-` and `_` between the dots"),
            (".example.test/24", "only letters, digits, `-` and `_` between the dots"),
        ];
        for (tok, detail) in cases {
            let e = parse(&format!("direct {tok}")).unwrap_err();
            assert_eq!(e.token.as_deref(), Some(tok));
            assert!(e.message.starts_with(&format!("bad domain pattern `{tok}`: {detail}")), "{e}");
        }
        let label = format!(".{}.example", "a".repeat(64));
        let e = parse(&format!("direct {label}")).unwrap_err();
        assert!(e.message.ends_with("a label is longer than 63 bytes"), "{e}");
        let long = ".a".repeat(128);
        let e = parse(&format!("direct {long}")).unwrap_err();
        assert!(e.message.ends_with("longer than 253 bytes"), "{e}");
        assert!(parse(&format!("direct {}", &long[2..])).is_ok(), "253 bytes is fine");
    }

    #[test]
    fn err_mask_after_domain() {
        check_err(
            &format!("{OK}direct .corp.example 0.0.0.0\n"),
            3,
            Some("0.0.0.0"),
            "socks.conf:3: unexpected `0.0.0.0` after domain pattern `.corp.example` \
             (a domain pattern takes no mask; only `OP PORT` may follow)",
        );
        let e = parse("deny .ads.example /24 eq 80").unwrap_err();
        assert_eq!(e.token.as_deref(), Some("/24"));
        // After a port condition the usual trailing-token message applies.
        let e = parse("deny .ads.example eq 80 x").unwrap_err();
        assert_eq!(e.message, "unexpected `x` after the end of the rule");
        let e = parse("deny .ads.example eq").unwrap_err();
        assert_eq!(e.message, "operator `eq` without a port");
    }

    #[test]
    fn err_name_without_mask() {
        check_err(
            &format!("{OK}sockd @=fw example.test\n"),
            3,
            Some("example.test"),
            "socks.conf:3: address `example.test` has no mask (write ADDR MASK or ADDR/PREFIX, \
             or `.example.test` for the domain and every name under it)",
        );
        let e = parse("deny sgi.com eq 80").unwrap_err();
        assert_eq!(e.token.as_deref(), Some("sgi.com"));
        assert!(e.message.contains("`.sgi.com` for the domain"), "{e}");
        // Addresses keep the shared message; a name with a mask is still an address spec.
        let e = parse("direct 10.0.0.1 eq 80").unwrap_err();
        assert!(e.message.ends_with("has no mask (write ADDR MASK or ADDR/PREFIX)"), "{e}");
        assert!(parse("deny sgi.com 0.0.0.0 eq 80").is_ok());
    }

    #[test]
    fn err_missing_setting_value() {
        check_err(
            &format!("{OK}resolve\n"),
            3,
            Some("resolve"),
            "socks.conf:3: `resolve` needs a value (expected remote, local or local-then-remote)",
        );
        check_err(
            "fake-range # later",
            1,
            Some("fake-range"),
            "socks.conf:1: `fake-range` needs a value (expected an IPv4 or IPv6 network \
             ADDR/PREFIX)",
        );
        check_err(
            "fake-families",
            1,
            Some("fake-families"),
            "socks.conf:1: `fake-families` needs a value (expected ipv4, ipv6 or both)",
        );
    }

    #[test]
    fn err_unknown_setting_value() {
        check_err(
            &format!("{OK}resolve remotely\n"),
            3,
            Some("remotely"),
            "socks.conf:3: unknown `resolve` value `remotely` \
             (expected remote, local or local-then-remote)",
        );
        check_err(
            "fake-families all",
            1,
            Some("all"),
            "socks.conf:1: unknown `fake-families` value `all` (expected ipv4, ipv6 or both)",
        );
        for text in ["resolve Remote", "resolve local_then_remote", "fake-families IPv4"] {
            assert!(parse(text).unwrap_err().message.starts_with("unknown `"), "{text}");
        }
    }

    #[test]
    fn err_trailing_after_setting() {
        check_err(
            &format!("{OK}resolve local remote\n"),
            3,
            Some("remote"),
            "socks.conf:3: unexpected `remote` after the `resolve` setting (one value per line)",
        );
        check_err(
            "fake-range 10.99.0.0 0.0.255.255",
            1,
            Some("0.0.255.255"),
            "socks.conf:1: unexpected `0.0.255.255` after the `fake-range` setting \
             (one value per line)",
        );
    }

    #[test]
    fn err_duplicate_setting() {
        check_err(
            "resolve local\ndirect 10.0.0.0/8\nresolve local\n",
            3,
            Some("resolve"),
            "socks.conf:3: second `resolve` setting (the first is on line 1)",
        );
        check_err(
            "fake-families ipv6\n\n\nfake-families both",
            4,
            Some("fake-families"),
            "socks.conf:4: second `fake-families` setting (the first is on line 1)",
        );
        check_err(
            "fake-range 10.99.0.0/16\nfake-range fd00:5::/64\nfake-range 10.98.0.0/16\n",
            3,
            Some("fake-range"),
            "socks.conf:3: second IPv4 `fake-range` (the first is on line 1)",
        );
        check_err(
            "fake-range fd00:5::/64\nfake-range fd00:5::/64\n",
            2,
            Some("fake-range"),
            "socks.conf:2: second IPv6 `fake-range` (the first is on line 1)",
        );
    }

    #[test]
    fn err_bad_fake_range() {
        check_err(
            &format!("{OK}fake-range 10.99.0.0\n"),
            3,
            Some("10.99.0.0"),
            "socks.conf:3: bad fake range `10.99.0.0` (expected an IPv4 or IPv6 network \
             ADDR/PREFIX, e.g. 198.18.0.0/15)",
        );
        for tok in [
            "fake.example/16",
            "10.99.0.0/",
            "10.99.0.0/x",
            "10.99.0.0/+16",
            "/16",
            "10.99.0/16",
            "10.99.0.0/16/1",
            "[fd00::]/64",
        ] {
            let e = parse(&format!("fake-range {tok}")).unwrap_err();
            assert_eq!(e.token.as_deref(), Some(tok));
            assert!(e.message.starts_with(&format!("bad fake range `{tok}`")), "{e}");
        }
    }

    #[test]
    fn err_fake_range_prefix() {
        check_err(
            &format!("{OK}fake-range 198.18.0.0/31\n"),
            3,
            Some("198.18.0.0/31"),
            "socks.conf:3: fake range `198.18.0.0/31`: an IPv4 fake range has a prefix of 8 to 30",
        );
        check_err(
            "fake-range fd00::/121",
            1,
            Some("fd00::/121"),
            "socks.conf:1: fake range `fd00::/121`: an IPv6 fake range has a prefix of 8 to 120",
        );
        for tok in ["0.0.0.0/0", "64.0.0.0/7", "10.0.0.0/32", "10.0.0.0/99999", "::/0", "fc00::/7"]
        {
            let e = parse(&format!("fake-range {tok}")).unwrap_err();
            assert!(e.message.contains("fake range has a prefix of"), "{e}");
        }
    }

    #[test]
    fn err_fake_range_host_bits() {
        check_err(
            &format!("{OK}fake-range 198.18.0.1/15\n"),
            3,
            Some("198.18.0.1/15"),
            "socks.conf:3: fake range `198.18.0.1/15` has address bits set after the prefix \
             (write 198.18.0.0/15)",
        );
        check_err(
            "fake-range fd73:6f63:6b73::1/48",
            1,
            Some("fd73:6f63:6b73::1/48"),
            "socks.conf:1: fake range `fd73:6f63:6b73::1/48` has address bits set after the \
             prefix (write fd73:6f63:6b73::/48)",
        );
    }

    #[test]
    fn err_fake_range_reserved() {
        check_err(
            &format!("{OK}fake-range 127.0.0.0/16\n"),
            3,
            Some("127.0.0.0/16"),
            "socks.conf:3: fake range `127.0.0.0/16` overlaps the loopback block 127.0.0.0/8 \
             (choose a range clear of unspecified, loopback, link-local, multicast and broadcast \
             addresses, such as 198.18.0.0/15 or fd73:6f63:6b73::/48)",
        );
        let cases = [
            ("0.0.0.0/8", "unspecified block 0.0.0.0/8"),
            ("0.128.0.0/9", "unspecified block 0.0.0.0/8"),
            ("127.128.0.0/9", "loopback block 127.0.0.0/8"),
            ("169.254.1.0/24", "link-local block 169.254.0.0/16"),
            ("169.0.0.0/8", "link-local block 169.254.0.0/16"),
            ("224.0.0.0/8", "multicast block 224.0.0.0/4"),
            ("239.255.0.0/16", "multicast block 224.0.0.0/4"),
            ("232.0.0.0/8", "multicast block 224.0.0.0/4"),
            ("255.255.255.252/30", "limited broadcast block 255.255.255.255/32"),
            ("::/8", "unspecified block ::/128"),
            ("::/120", "unspecified block ::/128"),
            ("::ffff:198.18.0.0/111", "IPv4-mapped block ::ffff:0.0.0.0/96"),
            ("fe80::/16", "link-local block fe80::/10"),
            ("febf:ff00::/24", "link-local block fe80::/10"),
            ("fe00::/8", "link-local block fe80::/10"),
            ("ff02::/16", "multicast block ff00::/8"),
        ];
        for (tok, detail) in cases {
            let e = parse(&format!("fake-range {tok}")).unwrap_err();
            assert_eq!(e.token.as_deref(), Some(tok));
            assert!(
                e.message.starts_with(&format!("fake range `{tok}` overlaps the {detail} (")),
                "{e}"
            );
        }
    }
}
