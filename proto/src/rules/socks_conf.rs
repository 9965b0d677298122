//! The client rule file `socks.conf` (read by `libsocks.so`): [`ClientRules::parse`] and
//! first-match [`ClientRules::decide`], plus the `@=` server list ([`ServerSpec`],
//! [`parse_server`], [`parse_server_list`]).
//!
//! Grammar, one rule per line (the original SOCKS4 client format, plus CIDR, IPv6 and server URLs):
//!
//! ```text
//! direct [*=users] DST [OP PORT]
//! deny   [*=users] DST [OP PORT]
//! sockd  [@=SERVER,SERVER…] [*=users] DST [OP PORT]
//! DST    := ADDR MASK | ADDR/PREFIX      (as in sockd.conf: inverted masks, names resolved now)
//! SERVER := [SCHEME://][USER[:PASSWORD]@]HOST[:PORT]
//! SCHEME := socks4 | socks4a | socks5    HOST := name | IPv4 | [IPv6] (bare IPv6 without port)
//! ```
//!
//! `#` starts a comment; blank lines are ignored. The options `@=` and `*=` may come in either
//! order, each at most once; `@=` only on `sockd` lines. Rules are tried top to bottom and the first
//! whose user list, destination and port match decides; no match is `None`, which the caller
//! treats as `direct`. The users of `*=` are local user names (the process's effective uid, passed
//! in by the caller); a caller without a name matches no list.
//!
//! A server without a scheme uses the caller's default version (`version: None`); without a port,
//! 1080. A host name is resolved now, through [`Lookup::host`], keeping every address in resolver
//! order. USER and PASSWORD may contain `%XX` escapes (for `,`, `#`, `@`, `:`, `%` or blanks) and
//! are at most 255 bytes each (RFC 1929); SOCKS4/4a servers take a USER (the USERID) but no
//! PASSWORD. Passwords never appear in `Debug`, `Display` or error messages: they print as `***`.
//!
//! As in `sockd.conf`, the CSTC `?=` and `: shell command` extensions are rejected, and any error
//! stops the parse. Not here: reading the file, the environment (`SOCKS_SERVER`), DNS, choosing a
//! live server, or logging. [`ClientRules::decide`] allocates nothing, so it is safe to call
//! inside `connect()`.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

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
            write!(f, "[{}]:{}", self.host, self.port())
        } else {
            write!(f, "{}:{}", self.host, self.port())
        }
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
    server(&shown, text, &shown, lookup)
}

/// Parses an `@=SERVER,SERVER…` token (no blanks; at least one server). Call it only on tokens
/// that start with `@=`. Errors carry the token with passwords replaced by `***`.
pub fn parse_server_list(tok: &str, lookup: &dyn Lookup) -> Result<Vec<ServerSpec>, LineError> {
    let shown = redact_list(tok);
    let body = tok.strip_prefix("@=").unwrap_or(tok);
    if body.is_empty() {
        return Err(LineError::empty_server_list(&shown));
    }
    let mut servers = Vec::new();
    for item in body.split(',') {
        if item.is_empty() {
            return Err(LineError::empty_server(&shown));
        }
        servers.push(server(&shown, item, &redact_server(item), lookup)?);
    }
    Ok(servers)
}

/// One server `item`; `tok` (the error token) and `shown` (the item in messages) are redacted.
fn server(
    tok: &str,
    item: &str,
    shown: &str,
    lookup: &dyn Lookup,
) -> Result<ServerSpec, LineError> {
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
    Ok(ServerSpec {
        addrs: ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect(),
        host: host.to_owned(),
        version,
        username,
        password,
    })
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
    /// `*=…` local user names; `None` = any user, including an unknown one.
    pub users: Option<UserList>,
    /// The destination condition.
    pub dst: AddrMatch,
    /// The port condition; `None` = any port.
    pub port: Option<PortMatch>,
}

impl ClientRule {
    /// Whether every condition holds for a connection to `dst`:`port` by local user `user`.
    /// Allocates nothing.
    pub fn matches(&self, dst: IpAddr, port: u16, user: Option<&str>) -> bool {
        holds(self.users.as_ref(), |u| u.matches(user))
            && self.dst.matches(dst)
            && holds(self.port, |p| p.matches(port))
    }
}

/// The canonical effective form on one line, e.g.
/// `sockd @=socks5://alice:***@fw.example:1080,192.0.2.1:1080 *=bob 0.0.0.0/0 eq 80`:
/// servers as in [`ServerSpec`]'s `Display`, users expanded, addresses as in sockd.conf's `Rule`.
impl fmt::Display for ClientRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        for (i, s) in self.servers.iter().enumerate() {
            f.write_str(if i == 0 { " @=" } else { "," })?;
            write!(f, "{s}")?;
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
}

impl ClientRules {
    /// Parses the text of a `socks.conf` named `file`, resolving names through `lookup`.
    /// The first problem found is returned; nothing is skipped.
    pub fn parse(file: &str, text: &str, lookup: &dyn Lookup) -> Result<ClientRules, ConfigError> {
        let mut rules = Vec::new();
        for line in lex::lines(text) {
            let rule = parse_rule(line.number, &line.tokens, lookup)
                .map_err(|e| e.at(file, line.number))?;
            rules.push(rule);
        }
        Ok(ClientRules { file: file.to_owned(), rules })
    }

    /// The first rule matching a connection to `dst`:`port` by local user `user`; `None` when no
    /// line matches (the caller goes direct). Allocates nothing.
    pub fn decide(&self, dst: IpAddr, port: u16, user: Option<&str>) -> Option<&ClientRule> {
        self.rules.iter().find(|r| r.matches(dst, port, user))
    }
}

/// One `file:line: rule` per line (a `--check` listing; passwords as `***`).
impl fmt::Display for ClientRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            writeln!(f, "{}:{}: {}", self.file, r.line, r)?;
        }
        Ok(())
    }
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
    let mut servers = None;
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

    match cur.peek() {
        Some(t) if Op::from_keyword(t).is_none() => {}
        _ => return Err(LineError::missing_address("destination address")),
    }
    let dst = parse_addr_spec(&mut cur, lookup)?;
    let port = if cur.is_empty() { None } else { Some(parse_port_spec(&mut cur, lookup)?) };
    if let Some(t) = cur.peek() {
        return Err(LineError::trailing(t));
    }
    Ok(ClientRule { line: number, action, servers: servers.unwrap_or_default(), users, dst, port })
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
    fn each_action() {
        let rs = parse("deny 10.0.0.0/8\ndirect 192.168.0.0/16\nsockd 0.0.0.0/0\n").unwrap();
        assert_eq!(decide(&rs, "10.1.2.3", 80, None), ("deny", 1));
        assert_eq!(decide(&rs, "192.168.1.1", 80, None), ("direct", 2));
        let r = rs.decide(ip("8.8.8.8"), 53, Some("alice")).unwrap();
        assert_eq!((r.action, r.line), (ClientAction::Proxy, 3));
        assert!(r.servers.is_empty(), "no @= means the default server");
        assert_eq!(decide(&rs, "2001:db8::9", 80, None), ("none", 0), "IPv4 rules skip IPv6");
        assert_eq!(rs.rules[0].to_string(), "deny 10.0.0.0/8");
        assert_eq!(rs.rules[2].to_string(), "sockd 0.0.0.0/0");
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
        assert_eq!(decide(&rs, "2001:db8::1", 80, None), ("none", 0));
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
    }

    #[test]
    fn display_reparses_to_same_rule() {
        let text =
            "sockd @=socks4a://bob@fw.example:1081,[::1] *=a,b 130.62.0.0 0.0.255.255 neq 25\n\
                    direct 10.0.0.1 0.255.0.0\n\
                    deny *=x 2001:db8::/32 le 1023\n";
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
}
