//! The server rule file `sockd.conf`: [`RuleSet::parse`] and first-match [`RuleSet::decide`].
//!
//! Grammar, one rule per line (the 1992 paper's format plus CIDR and user lists):
//!
//! ```text
//! {permit | deny} [*=user,user,/file] SRC [DST [OP PORT]]
//! SRC, DST := ADDR MASK | ADDR/PREFIX          (ADDR: IPv4, IPv6 or host name; MASK inverted)
//! OP       := eq | neq | lt | gt | le | ge     PORT := number | tcp service name
//! ```
//!
//! `#` starts a comment; blank lines are ignored. Rules are tried top to bottom; the first one
//! whose user list, source, destination and port all match decides. No match is a *default deny*
//! ([`Decision::rule`] is `None`). A rule without DST matches every destination of both families;
//! without `OP PORT` every port. A port condition is only allowed after a DST, as in the paper
//! (CSTC's `SRC OP PORT` form is rejected with a hint to write `0.0.0.0/0 OP PORT`). The paper's
//! "any" (`0.0.0.0 255.255.255.255`, also `0.0.0.0/0`) is any address of either family.
//!
//! # The firewall host's own addresses
//!
//! Two kinds of destination reach services on the firewall host itself rather than the network
//! beyond it, so "any" does not include them:
//!
//! - The **unspecified** address (`0.0.0.0/8`, `::`, and their IPv4-mapped forms): connecting
//!   or sending to it reaches the host's own loopback services. It is never a destination;
//!   [`RuleSet::decide`] refuses it before any rule ([`Decision::unspecified`]).
//! - **Loopback** (`127.0.0.0/8`, `::1`, IPv4-mapped `::ffff:127.x.y.z`): a `permit` line
//!   matches it only when its destination names loopback, i.e. the matching network lies
//!   entirely inside loopback (`127.0.0.1/32`, `127.0.0.0/8`, `::1/128`, `localhost 0.0.0.0`).
//!   A permit with no destination, or with a wider one that merely covers loopback
//!   (`0.0.0.0/0`, `::/0`, `0.0.0.0/1`), does not match it. `deny` lines are not narrowed: a
//!   wide deny still refuses loopback, so nothing can walk around it.
//!
//! The host's other own addresses (its interfaces') are the same kind of destination: a
//! connection to them stays on the host, arrives over `lo` from a local address, and so passes
//! filters that guard the real interfaces and services that trust local clients. This module
//! cannot know them; a caller that does uses [`RuleSet::decide_on_host`], where a `permit`
//! matches such an address only when a matching destination network is that single address
//! (`ADDR/32`, `ADDR 0.0.0.0`, the host's name), not a network or wildcard around it.
//!
//! Not supported, with a clear error: the CSTC identd option `?=…` and the `: shell command`
//! tail (a token that is `:` or starts with one `:`; IPv6 tokens start with `::`). The CSTC
//! `#NO_IDENTD:` / `#BAD_ID:` lines are plain comments here. Any error stops the parse: a broken
//! line is never skipped, so a typo cannot silently widen or narrow the policy.
//!
//! This module does no I/O: names, services and user files come through [`Lookup`].

use std::fmt;
use std::net::IpAddr;

use super::addr::{parse_addr_spec, AddrMatch};
use super::error::{ConfigError, LineError};
use super::lex::{self, Cursor};
use super::lookup::Lookup;
use super::port::{parse_port_spec, Op, PortMatch};
use super::users::{parse_user_list, UserList};

/// What a `sockd.conf` rule does with a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the request through.
    Permit,
    /// Refuse the request.
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Permit => "permit",
            Action::Deny => "deny",
        })
    }
}

/// The facts about one SOCKS request that rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The client's address (IPv4-mapped IPv6 counts as IPv4).
    pub src: IpAddr,
    /// The destination address (for BIND: the application server named in the request).
    pub dst: IpAddr,
    /// The destination port.
    pub port: u16,
    /// The SOCKS4 USERID or SOCKS5 username, if the client sent one.
    pub user: Option<&'a str>,
}

/// One parsed line of `sockd.conf`, names and services resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line number in the file.
    pub line: usize,
    /// What to do on a match.
    pub action: Action,
    /// `*=…`; `None` = any user, including none.
    pub users: Option<UserList>,
    /// The source condition.
    pub src: AddrMatch,
    /// The destination condition; `None` = any destination of either family.
    pub dst: Option<AddrMatch>,
    /// The port condition; `None` = any port. Only present when `dst` is.
    pub port: Option<PortMatch>,
}

impl Rule {
    /// Whether every condition of the rule holds for `req`. For a `permit` line and a loopback
    /// destination that means the destination names loopback (see the module documentation).
    pub fn matches(&self, req: &Request<'_>) -> bool {
        self.matches_on_host(req, false)
    }

    /// As [`Rule::matches`]; `own_address` says that `req.dst` is one of the host's own
    /// (non-loopback) addresses, which a `permit` matches only by naming that single address.
    pub fn matches_on_host(&self, req: &Request<'_>, own_address: bool) -> bool {
        holds(self.users.as_ref(), |u| u.matches(req.user))
            && self.src.matches(req.src)
            && self.dst_matches(req.dst, own_address)
            && holds(self.port, |p| p.matches(req.port))
    }

    fn dst_matches(&self, dst: IpAddr, own_address: bool) -> bool {
        match (&self.dst, self.action) {
            (Some(d), Action::Permit) if is_loopback(dst) => d.names_loopback(dst),
            (Some(d), Action::Permit) if own_address => d.names_host(dst),
            (None, Action::Permit) => !is_loopback(dst) && !own_address,
            (Some(d), _) => d.matches(dst),
            (None, Action::Deny) => true,
        }
    }

    /// Whether this is a `permit` line whose destination would cover loopback but for the rule
    /// that only a destination naming loopback opens it (no DST, `0.0.0.0/0`, `::/0`…): what
    /// `--check` points out.
    pub fn permit_skips_loopback(&self) -> bool {
        self.action == Action::Permit
            && self.dst.as_ref().is_none_or(|d| d.wildcard_over_loopback())
    }
}

/// Whether `ip` is a loopback address: 127.0.0.0/8, `::1`, or IPv4-mapped 127.0.0.0/8.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Whether `ip` is an unspecified address, never a destination: `0.0.0.0/8` ("this host on this
/// network", RFC 1122 3.2.1.3: a source only; `0.0.0.0` itself reaches the local host), `::`,
/// or the IPv4-mapped forms of `0.0.0.0/8`.
pub fn is_unspecified(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.octets()[0] == 0,
        IpAddr::V6(a) => a.is_unspecified(),
    }
}

/// An optional condition: absent holds (`Option::is_none_or` needs Rust 1.82).
pub(crate) fn holds<T>(cond: Option<T>, test: impl FnOnce(T) -> bool) -> bool {
    match cond {
        None => true,
        Some(c) => test(c),
    }
}

/// The canonical effective form on one line: action, expanded user list, addresses resolved and
/// masked (`ADDR/PREFIX` when the inverted mask is contiguous, else `ADDR MASK`; a name with
/// several addresses as `{A,B}/N`), port as a number. Example:
/// `permit *=lloyd 192.0.2.7/32 {198.51.100.1,198.51.100.2}/32 eq 79`.
/// Single-address rules parse back to the same rule.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.action)?;
        if let Some(u) = &self.users {
            write!(f, " {u}")?;
        }
        write!(f, " {}", self.src)?;
        if let Some(d) = &self.dst {
            write!(f, " {d}")?;
        }
        if let Some(p) = &self.port {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// The outcome of [`RuleSet::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Permit or deny.
    pub action: Action,
    /// The rule that matched; `None` = no line matched (default deny), or `unspecified`.
    pub rule: Option<&'a Rule>,
    /// The destination was an unspecified address ([`is_unspecified`]), refused before any
    /// rule was tried.
    pub unspecified: bool,
}

impl Decision<'_> {
    /// Whether no rule matched and the request is refused by default.
    pub fn is_default_deny(&self) -> bool {
        self.rule.is_none() && !self.unspecified
    }
}

/// For logs: `permit by line 8`, `deny by line 9`, `deny: default deny (no line matched)`, or
/// `deny: unspecified destination`.
impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(r) => write!(f, "{} by line {}", self.action, r.line),
            None if self.unspecified => write!(f, "{}: unspecified destination", self.action),
            None => write!(f, "{}: default deny (no line matched)", self.action),
        }
    }
}

/// What every rule set adds to the rules written (the `--check` header): the destinations that
/// are the firewall host itself (the last clause holds for [`RuleSet::decide_on_host`]).
pub const BUILT_IN_RULES: &str = "unspecified destinations (0.0.0.0/8, ::) are always refused; \
     loopback destinations (127.0.0.0/8, ::1) are permitted only by a permit line whose \
     destination lies inside loopback; this host's other addresses only by a permit line \
     naming that exact address";

/// What `--check` adds after a [`Rule::permit_skips_loopback`] line.
pub const SKIPS_LOOPBACK_NOTE: &str = "except loopback and unspecified";

/// A parsed `sockd.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// The file name given to [`RuleSet::parse`], for messages.
    pub file: String,
    /// The rules in file order.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// Parses the text of a `sockd.conf` named `file`, resolving names through `lookup`.
    /// The first problem found is returned; nothing is skipped.
    pub fn parse(file: &str, text: &str, lookup: &dyn Lookup) -> Result<RuleSet, ConfigError> {
        let mut rules = Vec::new();
        for line in lex::lines(text) {
            let rule = parse_rule(line.number, &line.tokens, lookup)
                .map_err(|e| e.at(file, line.number))?;
            rules.push(rule);
        }
        Ok(RuleSet { file: file.to_owned(), rules })
    }

    /// The first rule matching `req`, or a default deny; an unspecified destination is
    /// refused before any rule.
    pub fn decide(&self, req: &Request<'_>) -> Decision<'_> {
        self.decide_on_host(req, false)
    }

    /// As [`RuleSet::decide`], for a caller that knows whether `req.dst` is one of its own
    /// host's (non-loopback) addresses (`own_address`): a `permit` line then matches it only when
    /// one of its destination networks is exactly that address; `deny` lines are unchanged.
    pub fn decide_on_host(&self, req: &Request<'_>, own_address: bool) -> Decision<'_> {
        if is_unspecified(req.dst) {
            return Decision { action: Action::Deny, rule: None, unspecified: true };
        }
        match self.rules.iter().find(|r| r.matches_on_host(req, own_address)) {
            Some(rule) => Decision { action: rule.action, rule: Some(rule), unspecified: false },
            None => Decision { action: Action::Deny, rule: None, unspecified: false },
        }
    }
}

/// One `file:line: rule` per line, with `  # except loopback and unspecified` after a permit
/// line whose wildcard destination does not open loopback.
impl fmt::Display for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.rules {
            write!(f, "{}:{}: {}", self.file, r.line, r)?;
            if r.permit_skips_loopback() {
                write!(f, "  # {SKIPS_LOOPBACK_NOTE}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Whether `tok` starts a CSTC `: shell command` (IPv6 tokens may start with `::`, never `:x`).
pub(crate) fn is_shell_command(tok: &str) -> bool {
    tok.starts_with(':') && !tok.starts_with("::")
}

/// Rejects the CSTC extensions anywhere on the line, before anything else is parsed, so the
/// message names them rather than some grammar error they cause.
pub(crate) fn reject_cstc_extensions(tokens: &[&str]) -> Result<(), LineError> {
    for &t in tokens.iter().skip(1) {
        if t.starts_with("?=") {
            return Err(LineError::identd_unsupported(t));
        }
        if is_shell_command(t) {
            return Err(LineError::shell_unsupported(t));
        }
    }
    Ok(())
}

fn parse_rule(number: usize, tokens: &[&str], lookup: &dyn Lookup) -> Result<Rule, LineError> {
    reject_cstc_extensions(tokens)?;
    let mut cur = Cursor::new(tokens);
    let action = match cur.next() {
        Some("permit") => Action::Permit,
        Some("deny") => Action::Deny,
        Some(other) => return Err(LineError::unknown_action(other, "permit or deny")),
        // The lexer never yields an empty line.
        None => return Err(LineError::missing_address("source address")),
    };

    let mut users = None;
    while let Some(t) = cur.peek() {
        if t.starts_with("*=") {
            if users.is_some() {
                return Err(LineError::duplicate_user_list(t));
            }
            users = Some(parse_user_list(t, lookup)?);
        } else if t.starts_with("@=") {
            return Err(LineError::server_list_not_allowed(t));
        } else {
            break;
        }
        cur.next();
    }

    match cur.peek() {
        Some(t) if Op::from_keyword(t).is_none() => {}
        _ => return Err(LineError::missing_address("source address")),
    }
    let src = parse_addr_spec(&mut cur, lookup)?;

    let mut dst = None;
    let mut port = None;
    if let Some(t) = cur.peek() {
        if Op::from_keyword(t).is_some() {
            return Err(LineError::port_without_destination(t));
        }
        dst = Some(parse_addr_spec(&mut cur, lookup)?);
        if !cur.is_empty() {
            port = Some(parse_port_spec(&mut cur, lookup)?);
        }
    }
    if let Some(t) = cur.peek() {
        return Err(LineError::trailing(t));
    }
    Ok(Rule { line: number, action, users, src, dst, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::lookup::StaticLookup;

    fn lookup() -> StaticLookup {
        StaticLookup::new(
            "192.0.2.7 lloyd.mips.com lloyd\n198.51.100.1 sgi.com\n198.51.100.2 sgi.com\n\
             2001:db8::5 v6only\n",
            "whois 43/tcp nicname\nfinger 79/tcp\ntelnet 23/tcp\n",
        )
        .with_file("/etc/sockd.users", "alice\nbob # the builder\n")
    }

    fn parse(text: &str) -> Result<RuleSet, ConfigError> {
        RuleSet::parse("sockd.conf", text, &lookup())
    }

    fn req<'a>(src: &str, dst: &str, port: u16, user: Option<&'a str>) -> Request<'a> {
        Request { src: src.parse().unwrap(), dst: dst.parse().unwrap(), port, user }
    }

    /// Line number of the deciding rule, or 0 for default deny; plus the action.
    fn decide(rs: &RuleSet, r: Request<'_>) -> (Action, usize) {
        let d = rs.decide(&r);
        (d.action, d.rule.map_or(0, |r| r.line))
    }

    #[test]
    fn field_counts_2_4_6_and_cidr() {
        let rs = parse(
            "permit 10.0.0.0 0.255.255.255\n\
             permit 10.0.0.0/8 192.0.2.0 0.0.0.255\n\
             permit 10.0.0.0/8 192.0.2.0/24 eq 79\n\
             permit 10.0.0.0 0.255.255.255 192.0.2.0 0.0.0.255 eq finger\n",
        )
        .unwrap();
        assert_eq!(rs.rules.len(), 4);
        assert_eq!(rs.rules[0].to_string(), "permit 10.0.0.0/8");
        assert_eq!(rs.rules[1].to_string(), "permit 10.0.0.0/8 192.0.2.0/24");
        assert_eq!(rs.rules[2].to_string(), "permit 10.0.0.0/8 192.0.2.0/24 eq 79");
        assert_eq!(rs.rules[3].to_string(), "permit 10.0.0.0/8 192.0.2.0/24 eq 79");
        assert_eq!(rs.rules[3].line, 4);
    }

    #[test]
    fn first_match_wins_and_default_deny() {
        let rs = parse(
            "# comment\n\
             deny 10.0.0.0/8 192.0.2.0/24 eq 23   # no telnet\n\
             \n\
             permit 10.0.0.0/8\t192.0.2.0/24\n\
             permit 10.1.0.0/16\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, req("10.1.1.1", "192.0.2.9", 23, None)), (Action::Deny, 2));
        assert_eq!(decide(&rs, req("10.1.1.1", "192.0.2.9", 22, None)), (Action::Permit, 4));
        assert_eq!(decide(&rs, req("10.1.1.1", "8.8.8.8", 23, None)), (Action::Permit, 5));
        assert_eq!(decide(&rs, req("10.2.1.1", "8.8.8.8", 23, None)), (Action::Deny, 0));
        let d = rs.decide(&req("11.0.0.1", "8.8.8.8", 80, None));
        assert!(d.is_default_deny());
        assert_eq!(d.to_string(), "deny: default deny (no line matched)");
        let d = rs.decide(&req("10.1.1.1", "192.0.2.9", 22, None));
        assert_eq!(d.to_string(), "permit by line 4");
    }

    #[test]
    fn missing_dst_matches_both_families() {
        let rs = parse("permit 10.0.0.0/8").unwrap();
        assert_eq!(decide(&rs, req("10.0.0.1", "2001:db8::1", 1, None)).0, Action::Permit);
        assert_eq!(decide(&rs, req("::ffff:10.0.0.1", "1.2.3.4", 1, None)).0, Action::Permit);
        assert_eq!(decide(&rs, req("2001:db8::1", "1.2.3.4", 1, None)).1, 0);
    }

    #[test]
    fn ipv6_rules() {
        let rs = parse(
            "permit 2001:db8::/32 ::/0 eq 443\n\
             permit 2001:db8:: ::ffff:ffff:ffff:ffff:ffff:ffff 0.0.0.0/0 eq 80\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, req("2001:db8::1", "2001:4860::1", 443, None)).1, 1);
        assert_eq!(decide(&rs, req("2001:db8::1", "1.2.3.4", 443, None)).1, 0);
        assert_eq!(decide(&rs, req("2001:db8::1", "::ffff:1.2.3.4", 80, None)).1, 2);
        assert_eq!(rs.rules[1].to_string(), "permit 2001:db8::/32 0.0.0.0/0 eq 80");
    }

    #[test]
    fn users_and_absent_user() {
        let rs = parse(
            "permit *=lloyd,/etc/sockd.users 10.0.0.0/8 0.0.0.0/0 eq 79\n\
             deny *=mallory 0.0.0.0/0\n\
             permit 0.0.0.0/0 0.0.0.0/0 eq 80\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, req("10.0.0.1", "1.1.1.1", 79, Some("bob"))).1, 1);
        assert_eq!(decide(&rs, req("10.0.0.1", "1.1.1.1", 79, Some("lloyd"))).1, 1);
        assert_eq!(decide(&rs, req("10.0.0.1", "1.1.1.1", 79, Some("eve"))).1, 0);
        assert_eq!(decide(&rs, req("10.0.0.1", "1.1.1.1", 79, None)).1, 0);
        assert_eq!(decide(&rs, req("10.0.0.1", "1.1.1.1", 80, Some("mallory"))).1, 2);
        assert_eq!(decide(&rs, req("10.0.0.1", "1.1.1.1", 80, None)).1, 3);
        assert_eq!(rs.rules[0].to_string(), "permit *=lloyd,alice,bob 10.0.0.0/8 0.0.0.0/0 eq 79");
    }

    #[test]
    fn names_resolved_and_display() {
        let rs = parse(
            "permit *=lloyd lloyd.mips.com 0.0.0.0 sgi.com 0.0.0.0 eq finger\n\
             permit lloyd/32 sgi.com/24 le 1023\n",
        )
        .unwrap();
        assert_eq!(
            rs.rules[0].to_string(),
            "permit *=lloyd 192.0.2.7/32 {198.51.100.1,198.51.100.2}/32 eq 79"
        );
        assert_eq!(rs.rules[1].to_string(), "permit 192.0.2.7/32 198.51.100.0/24 le 1023");
        assert_eq!(rs.rules[0].dst.as_ref().unwrap().name(), Some("sgi.com"));
        assert_eq!(
            rs.to_string(),
            "sockd.conf:1: permit *=lloyd 192.0.2.7/32 {198.51.100.1,198.51.100.2}/32 eq 79\n\
             sockd.conf:2: permit 192.0.2.7/32 198.51.100.0/24 le 1023\n"
        );
    }

    #[test]
    fn display_reparses_to_same_rule() {
        let text = "permit *=a,b 130.62.0.0 0.0.255.255 10.0.0.1 0.255.0.0 neq 25\n\
                    deny ::1/128 2001:db8::/32 ge 1024\n\
                    permit lloyd 0.0.0.0\n";
        let rs = parse(text).unwrap();
        for r in &rs.rules {
            let again = parse(&r.to_string()).unwrap();
            let mut r2 = again.rules[0].clone();
            r2.line = r.line;
            let mut r1 = r.clone();
            r1.src = AddrMatch::new(None, r1.src.nets().to_vec());
            assert_eq!(r1, r2, "{r}");
        }
    }

    #[test]
    fn unspecified_destination_is_refused_before_any_rule() {
        let rs = parse(
            "permit 0.0.0.0/0 0.0.0.0/8\n\
             permit 0.0.0.0 255.255.255.255 ::/128\n\
             permit 0.0.0.0/0\n",
        )
        .unwrap();
        for dst in ["0.0.0.0", "::", "::ffff:0.0.0.0", "0.1.2.3", "::ffff:0.0.0.9"] {
            let d = rs.decide(&req("10.0.0.1", dst, 2222, None));
            assert_eq!(d.action, Action::Deny, "{dst}");
            assert!(d.unspecified && d.rule.is_none() && !d.is_default_deny(), "{dst}");
            assert_eq!(d.to_string(), "deny: unspecified destination");
        }
        // Neighbours are ordinary destinations.
        for dst in ["1.0.0.0", "::2", "::ffff:1.0.0.0", "2001:db8::"] {
            let d = rs.decide(&req("10.0.0.1", dst, 2222, None));
            assert!(!d.unspecified, "{dst}");
            assert_eq!(d.action, Action::Permit, "{dst}");
        }
    }

    #[test]
    fn the_issues_rules_keep_the_firewall_host_closed() {
        let rs = parse(
            "deny 0.0.0.0/0 127.0.0.0/8\n\
             deny 0.0.0.0/0 ::1/128\n\
             permit 127.0.0.1/32\n",
        )
        .unwrap();
        for (dst, line) in [
            ("127.0.0.1", 1),
            ("::ffff:127.0.0.1", 1),
            ("::1", 2),
            ("0.0.0.0", 0),
            ("::", 0),
            ("::ffff:0.0.0.0", 0),
        ] {
            assert_eq!(
                decide(&rs, req("127.0.0.1", dst, 2222, None)),
                (Action::Deny, line),
                "{dst}"
            );
        }
        assert_eq!(decide(&rs, req("127.0.0.1", "192.0.2.1", 2222, None)), (Action::Permit, 3));
    }

    #[test]
    fn wildcard_permit_does_not_open_loopback() {
        let rs = parse(
            "permit 10.0.0.0/8 0.0.0.0/0 eq 1\n\
             permit 10.0.0.0/8 0.0.0.0 255.255.255.255 eq 2\n\
             permit 10.0.0.0/8 ::/0 eq 3\n\
             permit 10.0.0.0/8 0.0.0.0/1 eq 4\n\
             permit 10.0.0.0/8 127.0.0.0/8 eq 5\n\
             permit 10.0.0.0/8 127.0.0.1 0.0.0.0 eq 6\n\
             permit 10.0.0.0/8 ::1/128 eq 7\n\
             permit 10.0.0.0/8 ::ffff:127.0.0.0/104 eq 8\n\
             permit 10.0.0.0/8 lloyd 0.0.0.0 eq 9\n\
             permit 10.0.0.0/8\n",
        )
        .unwrap();
        let at = |dst: &str, port: u16| decide(&rs, req("10.0.0.1", dst, port, None));
        for port in 1..=4 {
            for dst in ["127.0.0.1", "127.255.0.1", "::ffff:127.0.0.1", "::1"] {
                assert_eq!(at(dst, port), (Action::Deny, 0), "{dst} port {port}");
            }
            let (v4_line, v6_line) = match port {
                3 => (10, 3),
                4 => (4, 10),
                _ => (port, port),
            };
            assert_eq!(at("1.2.3.4", port), (Action::Permit, v4_line.into()), "port {port}");
            assert_eq!(at("2001:db8::1", port), (Action::Permit, v6_line.into()), "port {port}");
        }
        for (dst, port, line) in [
            ("127.0.0.1", 5, 5),
            ("::ffff:127.9.9.9", 5, 5),
            ("127.0.0.1", 6, 6),
            ("127.0.0.2", 6, 0),
            ("::1", 7, 7),
            ("::1", 5, 0),
            ("127.0.0.1", 7, 0),
            ("127.1.2.3", 8, 8),
        ] {
            let want = if line == 0 { Action::Deny } else { Action::Permit };
            assert_eq!(at(dst, port), (want, line), "{dst} port {port}");
        }
        // lloyd is not loopback: line 9 is an ordinary host rule.
        assert_eq!(at("192.0.2.7", 9), (Action::Permit, 9));
        assert_eq!(at("127.0.0.1", 9), (Action::Deny, 0));
        assert!(rs.rules[0].permit_skips_loopback() && rs.rules[9].permit_skips_loopback());
        assert!(rs.rules[2].permit_skips_loopback() && rs.rules[3].permit_skips_loopback());
        assert!(!rs.rules[4].permit_skips_loopback() && !rs.rules[8].permit_skips_loopback());
    }

    #[test]
    fn own_addresses_need_a_permit_naming_them() {
        let rs = parse(
            "deny 10.9.0.0/16 192.0.2.0/24 eq 22\n\
             permit 10.0.0.0/8 192.0.2.0/24 eq 22\n\
             permit 10.0.0.0/8 192.0.2.1/32 eq 3128\n\
             permit 10.0.0.0/8 sgi.com 0.0.0.0 eq 79\n\
             permit 10.0.0.0/8 0.0.0.0/0\n",
        )
        .unwrap();
        let on_host = |dst: &str, port: u16, own: bool| {
            let d = rs.decide_on_host(&req("10.1.0.1", dst, port, None), own);
            (d.action, d.rule.map_or(0, |r| r.line))
        };
        // Not own: networks and wildcards match as usual.
        assert_eq!(on_host("192.0.2.1", 22, false), (Action::Permit, 2));
        assert_eq!(on_host("192.0.2.1", 80, false), (Action::Permit, 5));
        // Own: only lines naming the exact address.
        assert_eq!(on_host("192.0.2.1", 22, true), (Action::Deny, 0));
        assert_eq!(on_host("192.0.2.1", 80, true), (Action::Deny, 0));
        assert_eq!(on_host("192.0.2.1", 3128, true), (Action::Permit, 3));
        assert_eq!(on_host("::ffff:192.0.2.1", 3128, true), (Action::Permit, 3));
        assert_eq!(on_host("198.51.100.2", 79, true), (Action::Permit, 4), "by name");
        // Deny lines still match own addresses through networks.
        let d = rs.decide_on_host(&req("10.9.0.1", "192.0.2.1", 22, None), true);
        assert_eq!((d.action, d.rule.map(|r| r.line)), (Action::Deny, Some(1)));
        // Loopback and unspecified keep their own rules whatever the flag says.
        assert_eq!(on_host("127.0.0.1", 3128, true), (Action::Deny, 0));
        assert!(rs.decide_on_host(&req("10.1.0.1", "0.0.0.0", 80, None), true).unspecified);
        assert_eq!(rs.decide(&req("10.1.0.1", "192.0.2.1", 80, None)).action, Action::Permit);
    }

    #[test]
    fn deny_lines_are_not_narrowed() {
        // A wide deny keeps refusing loopback, so a later loopback permit cannot walk around it.
        let rs = parse(
            "deny 10.1.0.0/16\n\
             deny 10.0.0.0/8 0.0.0.0/0 eq 23\n\
             permit 10.0.0.0/8 127.0.0.0/8\n\
             permit 10.0.0.0/8 ::1/128\n",
        )
        .unwrap();
        assert_eq!(decide(&rs, req("10.1.0.1", "127.0.0.1", 80, None)), (Action::Deny, 1));
        assert_eq!(decide(&rs, req("10.1.0.1", "::1", 80, None)), (Action::Deny, 1));
        assert_eq!(decide(&rs, req("10.2.0.1", "127.0.0.1", 23, None)), (Action::Deny, 2));
        assert_eq!(decide(&rs, req("10.2.0.1", "::1", 23, None)), (Action::Deny, 2));
        assert_eq!(decide(&rs, req("10.2.0.1", "127.0.0.1", 80, None)), (Action::Permit, 3));
        assert_eq!(decide(&rs, req("10.2.0.1", "::1", 80, None)), (Action::Permit, 4));
        assert!(!rs.rules[0].permit_skips_loopback() && !rs.rules[1].permit_skips_loopback());
    }

    #[test]
    fn paper_any_deny_covers_ipv6() {
        // examples/sockd.conf's whois line, then permits by CIDR for both families.
        let rs = parse(
            "deny 0.0.0.0 255.255.255.255 0.0.0.0 255.255.255.255 eq whois\n\
             permit 0.0.0.0/0 127.0.0.0/8\n\
             permit 0.0.0.0/0 ::1/128\n\
             permit 0.0.0.0/0 ::/0\n",
        )
        .unwrap();
        for src in ["127.0.0.1", "::1", "2001:db8::7", "::ffff:10.0.0.1"] {
            for dst in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "2001:db8::1", "192.0.2.1"] {
                assert_eq!(decide(&rs, req(src, dst, 43, None)), (Action::Deny, 1), "{src} {dst}");
            }
        }
        assert_eq!(decide(&rs, req("::1", "::1", 44, None)), (Action::Permit, 3));
        // As a source too: the paper's any admits IPv6 clients.
        let rs = parse("permit 0.0.0.0 255.255.255.255 192.0.2.0/24\n").unwrap();
        assert_eq!(decide(&rs, req("2001:db8::7", "192.0.2.1", 80, None)), (Action::Permit, 1));
    }

    #[test]
    fn listing_notes_what_any_leaves_out() {
        let rs = parse(
            "permit 10.0.0.0/8\n\
             permit 10.0.0.0/8 0.0.0.0 255.255.255.255 eq 80\n\
             permit 10.0.0.0/8 127.0.0.1/32 eq 25\n\
             permit 10.0.0.0/8 192.0.2.0/24\n\
             deny 0.0.0.0/0 0.0.0.0/0 eq 23\n",
        )
        .unwrap();
        assert_eq!(
            rs.to_string(),
            "sockd.conf:1: permit 10.0.0.0/8  # except loopback and unspecified\n\
             sockd.conf:2: permit 10.0.0.0/8 0.0.0.0/0 eq 80  # except loopback and unspecified\n\
             sockd.conf:3: permit 10.0.0.0/8 127.0.0.1/32 eq 25\n\
             sockd.conf:4: permit 10.0.0.0/8 192.0.2.0/24\n\
             sockd.conf:5: deny 0.0.0.0/0 0.0.0.0/0 eq 23\n"
        );
    }

    #[test]
    fn empty_file_denies_everything() {
        let rs = parse("# nothing\n\n").unwrap();
        assert!(rs.rules.is_empty());
        assert!(rs.decide(&req("1.1.1.1", "2.2.2.2", 80, None)).is_default_deny());
    }

    /// Asserts the error's line, token and full Display.
    fn check_err(text: &str, line: usize, token: Option<&str>, display: &str) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert_eq!(e.token.as_deref(), token, "{e}");
        assert_eq!(e.file, "sockd.conf");
        assert_eq!(e.to_string(), display);
    }

    const OK: &str = "# header\npermit 10.0.0.0/8\n";

    #[test]
    fn err_unknown_action() {
        check_err(
            &format!("{OK}allow 10.0.0.0/8\n"),
            3,
            Some("allow"),
            "sockd.conf:3: unknown action `allow` (expected permit or deny)",
        );
    }

    #[test]
    fn err_missing_source() {
        check_err(
            &format!("{OK}permit *=bob\n"),
            3,
            None,
            "sockd.conf:3: missing source address (write ADDR MASK or ADDR/PREFIX)",
        );
        check_err(
            "deny eq 23",
            1,
            None,
            "sockd.conf:1: missing source address (write ADDR MASK or ADDR/PREFIX)",
        );
    }

    #[test]
    fn err_missing_mask() {
        check_err(
            &format!("{OK}permit 10.0.0.0\n"),
            3,
            Some("10.0.0.0"),
            "sockd.conf:3: address `10.0.0.0` has no mask (write ADDR MASK or ADDR/PREFIX)",
        );
        check_err(
            &format!("{OK}permit 10.0.0.0/8 192.0.2.1 eq 79\n"),
            3,
            Some("192.0.2.1"),
            "sockd.conf:3: address `192.0.2.1` has no mask (write ADDR MASK or ADDR/PREFIX)",
        );
    }

    #[test]
    fn err_bad_address() {
        check_err(
            &format!("{OK}permit 10.0.0.256 0.0.0.0\n"),
            3,
            Some("10.0.0.256"),
            "sockd.conf:3: bad address `10.0.0.256` (expected an IPv4 or IPv6 address or a host name)",
        );
    }

    #[test]
    fn err_bad_mask() {
        check_err(
            &format!("{OK}permit 10.0.0.0 0.0.255\n"),
            3,
            Some("0.0.255"),
            "sockd.conf:3: bad mask `0.0.255` (expected an inverted mask such as 0.0.255.255, \
             or ::ffff:ffff for IPv6)",
        );
    }

    #[test]
    fn err_mask_family() {
        check_err(
            &format!("{OK}permit 10.0.0.0 ::ffff\n"),
            3,
            Some("::ffff"),
            "sockd.conf:3: mask family mismatch: mask `::ffff` is IPv6 but address `10.0.0.0` is IPv4",
        );
        check_err(
            "permit 10.0.0.0/8 v6only 0.0.0.0",
            1,
            Some("v6only"),
            "sockd.conf:1: mask family mismatch: host `v6only` has no IPv4 address \
             (mask `0.0.0.0` is IPv4)",
        );
    }

    #[test]
    fn err_bad_prefix() {
        check_err(
            &format!("{OK}permit 10.0.0.0/33\n"),
            3,
            Some("10.0.0.0/33"),
            "sockd.conf:3: bad CIDR prefix in `10.0.0.0/33` (IPv4 prefixes are 0 to 32)",
        );
        check_err(
            "permit 2001:db8::/200",
            1,
            Some("2001:db8::/200"),
            "sockd.conf:1: bad CIDR prefix in `2001:db8::/200` (IPv6 prefixes are 0 to 128)",
        );
        check_err(
            "permit 10.0.0.0/8x",
            1,
            Some("10.0.0.0/8x"),
            "sockd.conf:1: bad CIDR prefix in `10.0.0.0/8x` (expected a number of bits)",
        );
    }

    #[test]
    fn err_unknown_host() {
        check_err(
            &format!("{OK}permit 10.0.0.0/8 nowhere.example 0.0.0.0\n"),
            3,
            Some("nowhere.example"),
            "sockd.conf:3: unknown host `nowhere.example`: not in the hosts table",
        );
    }

    #[test]
    fn err_unknown_service() {
        check_err(
            &format!("{OK}permit 10.0.0.0/8 0.0.0.0/0 eq gopher\n"),
            3,
            Some("gopher"),
            "sockd.conf:3: unknown service `gopher` (not a port number or a tcp service name)",
        );
    }

    #[test]
    fn err_port_out_of_range() {
        check_err(
            &format!("{OK}permit 10.0.0.0/8 0.0.0.0/0 lt 65536\n"),
            3,
            Some("65536"),
            "sockd.conf:3: port `65536` out of range (0 to 65535)",
        );
    }

    #[test]
    fn err_unknown_operator() {
        check_err(
            &format!("{OK}\n\n\n\npermit 10.0.0.0/8 0.0.0.0/0 eqq 79\n"),
            7,
            Some("eqq"),
            "sockd.conf:7: unknown operator `eqq` (expected eq, neq, lt, gt, le or ge)",
        );
    }

    #[test]
    fn err_operator_without_port() {
        check_err(
            &format!("{OK}permit 10.0.0.0/8 0.0.0.0/0 eq # port forgotten\n"),
            3,
            Some("eq"),
            "sockd.conf:3: operator `eq` without a port",
        );
    }

    #[test]
    fn err_port_without_destination() {
        // CSTC allowed `SRC MASK OP PORT`; the paper's grammar (and this parser) does not.
        check_err(
            &format!("{OK}deny 128.12.0.0 0.0.255.255 eq telnet\n"),
            3,
            Some("eq"),
            "sockd.conf:3: port condition `eq` needs a destination address and mask before it \
             (e.g. `0.0.0.0/0 eq PORT`)",
        );
    }

    #[test]
    fn err_trailing_tokens() {
        check_err(
            &format!("{OK}permit 10.0.0.0/8 0.0.0.0/0 eq 79 80\n"),
            3,
            Some("80"),
            "sockd.conf:3: unexpected `80` after the end of the rule",
        );
    }

    #[test]
    fn err_empty_user_list() {
        check_err(
            &format!("{OK}permit *= 10.0.0.0/8\n"),
            3,
            Some("*="),
            "sockd.conf:3: empty user list `*=`",
        );
    }

    #[test]
    fn err_empty_user_name() {
        check_err(
            &format!("{OK}permit *=bob,,alice 10.0.0.0/8\n"),
            3,
            Some("*=bob,,alice"),
            "sockd.conf:3: empty user name in `*=bob,,alice` (two commas in a row, or a comma \
             at an end)",
        );
    }

    #[test]
    fn err_duplicate_user_list() {
        check_err(
            &format!("{OK}permit *=bob *=alice 10.0.0.0/8\n"),
            3,
            Some("*=alice"),
            "sockd.conf:3: second user list `*=alice` on one line",
        );
    }

    #[test]
    fn err_user_file_unreadable() {
        check_err(
            &format!("{OK}permit *=/etc/nope 10.0.0.0/8\n"),
            3,
            Some("*=/etc/nope"),
            "sockd.conf:3: cannot read user file `/etc/nope`: No such file or directory",
        );
    }

    #[test]
    fn err_identd_unsupported() {
        check_err(
            &format!("{OK}permit ?=I *=bob 10.0.0.0/8\n"),
            3,
            Some("?=I"),
            "sockd.conf:3: identd checks are not supported: `?=I` (remove the `?=` option)",
        );
        // Reported even where it would otherwise be a grammar error.
        assert_eq!(parse("permit *=bob ?= 10.0.0.0/8").unwrap_err().token.as_deref(), Some("?="));
    }

    #[test]
    fn err_shell_command_unsupported() {
        check_err(
            &format!(
                "{OK}deny\t*=bonnie,clyde\t128.12.6.0 0.0.0.255 : /usr/ucb/mail -s 'x %u' root\n"
            ),
            3,
            Some(":"),
            "sockd.conf:3: shell commands are not supported: `:` starts a `: command` \
             (remove it; denials are logged)",
        );
        assert_eq!(
            parse("deny 10.0.0.0/8 :finger@evil").unwrap_err().token.as_deref(),
            Some(":finger@evil")
        );
        // `::` starts an IPv6 address, not a command.
        assert!(parse("deny ::/0").is_ok());
    }

    #[test]
    fn err_server_list_in_sockd_conf() {
        check_err(
            &format!("{OK}permit @=fw.example 10.0.0.0/8\n"),
            3,
            Some("@=fw.example"),
            "sockd.conf:3: server list `@=fw.example` is not allowed here \
             (`@=` belongs in socks.conf)",
        );
    }

    #[test]
    fn cstc_special_comment_lines_are_comments() {
        let rs = parse("#NO_IDENTD: mail root\n#BAD_ID: mail root\npermit 10.0.0.0/8\n").unwrap();
        assert_eq!(rs.rules.len(), 1);
        assert_eq!(rs.rules[0].line, 3);
    }

    #[test]
    fn error_is_std_error() {
        let e: Box<dyn std::error::Error> = Box::new(parse("bogus").unwrap_err());
        assert!(e.to_string().starts_with("sockd.conf:1: unknown action `bogus`"));
    }
}
