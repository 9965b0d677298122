//! The client rule file `socks.conf` (read by `libsocks.so`): the rule lines and the file parser
//! that ties the grammars together. [`ClientRules::parse`] reads every line, handing settings
//! lines to [`super::client_settings`] and parsing rule lines here; first-match
//! [`ClientRules::decide`] for addresses and [`ClientRules::decide_name`] for host names.
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
//! The pieces of a line live in their own modules:
//!
//! - [`super::server_url`]: `SERVERS` and `SERVER` ([`ServerSpec`], `?pipeline`, `?spread`,
//!   credentials, passwords hidden in messages).
//! - [`super::destination`]: `DST` ([`Destination`]) and the `.DOMAIN` patterns.
//! - [`super::client_settings`]: the `resolve`, `fake-range` and `fake-families` lines
//!   (`ResolvePolicy`, the fake ranges, `FakeFamilies`).
//!
//! As in `sockd.conf`, the CSTC `?=` and `: shell command` extensions are rejected, and any error
//! stops the parse. Not here: reading the file, the environment (`SOCKS_SERVER`), DNS, the map of
//! fake addresses, choosing a live server, or logging. [`ClientRules::decide`],
//! [`ClientRules::decide_name`] and the `fake_*_contains` helpers allocate nothing, so they are
//! safe to call inside `connect()` and `getaddrinfo()`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::addr::{is_host_name, parse_addr_spec};
use super::client_settings::{
    FakeFamilies, ResolvePolicy, SeenSettings, Setting, DEFAULT_FAKE_V4, DEFAULT_FAKE_V6,
};
use super::destination::{parse_domain, Destination};
use super::error::{ConfigError, LineError};
use super::lex::{self, Cursor};
use super::lookup::Lookup;
use super::port::{parse_port_spec, Op, PortMatch};
use super::server_url::{parse_server_list, redact_list, ServerList, ServerSpec};
use super::sockd_conf::{holds, reject_cstc_extensions};
use super::users::{parse_user_list, UserList};

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
            // `&` when the last entry already printed options (its last hop's, or `dynamic`).
            let options = |s: &ServerSpec| s.dynamic || s.hops().last().is_some_and(|h| h.pipeline);
            let joiner = if self.servers.last().is_some_and(options) { "&" } else { "?" };
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
    use crate::rules::socks_conf_fixture::{check_err, ip, parse, sa, OK};

    /// (action keyword or "none", line of the deciding rule or 0).
    fn decide(rs: &ClientRules, dst: &str, port: u16, user: Option<&str>) -> (&'static str, usize) {
        match rs.decide(ip(dst), port, user) {
            Some(r) => (r.action.keyword(), r.line),
            None => ("none", 0),
        }
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
        assert_eq!(s[0].protocol, None);
        assert_eq!(
            rs.to_string(),
            "socks.conf:1: deny *=mallory 0.0.0.0/0\n\
             socks.conf:2: direct 130.62.0.0/16\n\
             socks.conf:3: direct 127.0.0.1/32\n\
             socks.conf:4: sockd @=fw.example:1080 0.0.0.0/0\n"
        );
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
    fn err_duplicate_server_list() {
        check_err(
            "sockd @=fw *=bob @=fw2.example 0.0.0.0/0",
            1,
            Some("@=fw2.example"),
            "socks.conf:1: second server list `@=fw2.example` on one line",
        );
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
}
