//! Errors of the rule language: [`ConfigError`] (file, line, token, message) and the line-local
//! [`LineError`] that the building blocks return before the caller knows the file name.
//!
//! Every message a rule file can produce is worded here, once, so `sockd.conf` and `socks.conf`
//! say the same thing about the same mistake. This is not a logger: nothing is printed.

use std::fmt;

/// A problem in a rule file: where it is, what token caused it, and what is wrong.
///
/// `Display` gives `file:line: message`, e.g.
/// ``sockd.conf:7: unknown operator `eqq` (expected eq, neq, lt, gt, le or ge)``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to the parser (e.g. `/etc/sockd.conf`).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The offending token, exactly as written, when one token is to blame.
    pub token: Option<String>,
    /// Human-readable description; already names the token where that helps.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// An error found while parsing one line, before the file name and line number are attached.
///
/// The building blocks (`parse_addr_spec`, `parse_port_spec`, `parse_user_list`, …) return this;
/// a file parser turns it into a [`ConfigError`] with [`LineError::at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The offending token, exactly as written.
    pub token: Option<String>,
    /// Human-readable description.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LineError {}

impl LineError {
    fn new(token: &str, message: String) -> Self {
        LineError { token: Some(token.to_owned()), message }
    }

    /// Attaches the file name and line number.
    pub fn at(self, file: &str, line: usize) -> ConfigError {
        ConfigError { file: file.to_owned(), line, token: self.token, message: self.message }
    }

    /// The first word is not one of the actions of this file (`expected` lists them).
    pub fn unknown_action(token: &str, expected: &str) -> Self {
        Self::new(token, format!("unknown action `{token}` (expected {expected})"))
    }

    /// The line ends where an address was required (`what`: "source", "destination").
    pub fn missing_address(what: &str) -> Self {
        LineError {
            token: None,
            message: format!("missing {what} (write ADDR MASK or ADDR/PREFIX)"),
        }
    }

    /// An address without a mask and not in `ADDR/PREFIX` form.
    pub fn missing_mask(addr: &str) -> Self {
        Self::new(addr, format!("address `{addr}` has no mask (write ADDR MASK or ADDR/PREFIX)"))
    }

    /// A token that is neither a valid IP address nor a plausible host name.
    pub fn bad_address(token: &str) -> Self {
        Self::new(
            token,
            format!("bad address `{token}` (expected an IPv4 or IPv6 address or a host name)"),
        )
    }

    /// A mask token that is not an address.
    pub fn bad_mask(token: &str) -> Self {
        Self::new(
            token,
            format!(
                "bad mask `{token}` (expected an inverted mask such as 0.0.255.255, \
                 or ::ffff:ffff for IPv6)"
            ),
        )
    }

    /// The mask's family differs from the address's (`detail` explains which is which).
    pub fn mask_family(token: &str, detail: &str) -> Self {
        Self::new(token, format!("mask family mismatch: {detail}"))
    }

    /// `ADDR/PREFIX` with a prefix that is not a number or is too long for the family.
    pub fn bad_prefix(token: &str, detail: &str) -> Self {
        Self::new(token, format!("bad CIDR prefix in `{token}` ({detail})"))
    }

    /// A host name the resolver could not resolve (`reason` comes from the resolver).
    pub fn unknown_host(token: &str, reason: &str) -> Self {
        Self::new(token, format!("unknown host `{token}`: {reason}"))
    }

    /// A port token that is neither a number nor a known tcp service name.
    pub fn unknown_service(token: &str) -> Self {
        Self::new(
            token,
            format!("unknown service `{token}` (not a port number or a tcp service name)"),
        )
    }

    /// A numeric port outside 0..=65535.
    pub fn port_out_of_range(token: &str) -> Self {
        Self::new(token, format!("port `{token}` out of range (0 to 65535)"))
    }

    /// A comparison operator at the end of the line.
    pub fn operator_without_port(op: &str) -> Self {
        Self::new(op, format!("operator `{op}` without a port"))
    }

    /// A port condition directly after the source spec (the paper's 2/4/6-field rule).
    pub fn port_without_destination(op: &str) -> Self {
        Self::new(
            op,
            format!(
                "port condition `{op}` needs a destination address and mask before it \
                 (e.g. `0.0.0.0/0 {op} PORT`)"
            ),
        )
    }

    /// A token in operator position that is not an operator.
    pub fn unknown_operator(token: &str) -> Self {
        Self::new(token, format!("unknown operator `{token}` (expected eq, neq, lt, gt, le or ge)"))
    }

    /// Tokens after a complete rule.
    pub fn trailing(token: &str) -> Self {
        Self::new(token, format!("unexpected `{token}` after the end of the rule"))
    }

    /// `*=` with nothing after it.
    pub fn empty_user_list(token: &str) -> Self {
        Self::new(token, format!("empty user list `{token}`"))
    }

    /// `*=a,,b` or a trailing comma.
    pub fn empty_user_name(token: &str) -> Self {
        Self::new(
            token,
            format!("empty user name in `{token}` (two commas in a row, or a comma at an end)"),
        )
    }

    /// A second `*=` on the same line.
    pub fn duplicate_user_list(token: &str) -> Self {
        Self::new(token, format!("second user list `{token}` on one line"))
    }

    /// A `/file` item the lookup could not read.
    pub fn user_file_unreadable(token: &str, path: &str, reason: &str) -> Self {
        Self::new(token, format!("cannot read user file `{path}`: {reason}"))
    }

    /// The CSTC `?=` identd option.
    pub fn identd_unsupported(token: &str) -> Self {
        Self::new(
            token,
            format!("identd checks are not supported: `{token}` (remove the `?=` option)"),
        )
    }

    /// The CSTC `: shell command` tail.
    pub fn shell_unsupported(token: &str) -> Self {
        Self::new(
            token,
            format!(
                "shell commands are not supported: `{token}` starts a `: command` \
                 (remove it; denials are logged)"
            ),
        )
    }

    /// An `@=` server list in a file that has none (sockd.conf).
    pub fn server_list_not_allowed(token: &str) -> Self {
        Self::new(
            token,
            format!("server list `{token}` is not allowed here (`@=` belongs in socks.conf)"),
        )
    }

    // socks.conf server lists. `token` is the whole `@=…` field and `server` one item of it, both
    // with any password replaced by `***` (messages end up in logs).

    /// `@=` on a `direct` or `deny` line of socks.conf.
    pub fn server_list_needs_sockd(token: &str, action: &str) -> Self {
        Self::new(
            token,
            format!(
                "server list `{token}` on a `{action}` line (`@=` belongs on `sockd` lines only)"
            ),
        )
    }

    /// `@=` with nothing after it.
    pub fn empty_server_list(token: &str) -> Self {
        Self::new(token, format!("empty server list `{token}`"))
    }

    /// `@=a,,b` or a trailing comma.
    pub fn empty_server(token: &str) -> Self {
        Self::new(
            token,
            format!("empty server in `{token}` (two commas in a row, or a comma at an end)"),
        )
    }

    /// A second `@=` on the same line.
    pub fn duplicate_server_list(token: &str) -> Self {
        Self::new(token, format!("second server list `{token}` on one line"))
    }

    /// `SCHEME://` that is not one of the SOCKS versions.
    pub fn unknown_server_option(token: &str, server: &str, option: &str) -> Self {
        Self::new(
            token,
            format!(
                "unknown option `?{option}` in server `{server}` (expected ?pipeline, ?dynamic \
                 after the last hop of a chain, or ?spread after the last server of an @= list)"
            ),
        )
    }

    /// `?spread` on a server that is not the last of its `@=` list.
    pub fn spread_not_last(token: &str, server: &str) -> Self {
        Self::new(
            token,
            format!(
                "`?spread` in server `{server}`: it is an option of the whole list, written \
                 once, after the last server"
            ),
        )
    }

    /// `?spread` on a single server (`SOCKS_SERVER`), not a list.
    pub fn spread_without_list(server: &str) -> Self {
        Self::new(
            server,
            format!("`?spread` in `{server}`: it is an option of an @= list in socks.conf"),
        )
    }

    /// `?dynamic` anywhere but after the last hop of a chain of two hops or more.
    pub fn dynamic_not_after_chain(token: &str, server: &str) -> Self {
        Self::new(
            token,
            format!(
                "`?dynamic` in server `{server}`: it is an option of a whole chain (`a>b>c?dynamic`), \
                 written once, after its last hop"
            ),
        )
    }

    /// An empty hop in a chain (`A>>B`, or `>` at an end).
    pub fn empty_hop(token: &str, hop: &str) -> Self {
        Self::new(token, format!("empty {hop} (two `>` in a row, or a `>` at an end of the chain)"))
    }

    pub fn unknown_scheme(token: &str, server: &str, scheme: &str) -> Self {
        Self::new(
            token,
            format!(
                "unknown scheme `{scheme}://` in server `{server}` \
                 (expected socks4://, socks4a://, socks5:// or http://)"
            ),
        )
    }

    /// A server port that is 0, too large, empty or an unknown service.
    pub fn bad_server_port(token: &str, server: &str, port: &str) -> Self {
        Self::new(
            token,
            format!(
                "bad port `{port}` in server `{server}` \
                 (expected 1 to 65535 or a tcp service name)"
            ),
        )
    }

    /// A server whose host part is not an address or a plausible host name (`detail` says why).
    pub fn bad_server_host(token: &str, server: &str, detail: &str) -> Self {
        Self::new(token, format!("bad host in server `{server}`: {detail}"))
    }

    /// A server host name the resolver could not resolve (`reason` comes from the resolver).
    pub fn unknown_server_host(token: &str, host: &str, reason: &str) -> Self {
        Self::new(token, format!("unknown server host `{host}`: {reason}"))
    }

    /// `:password@host` or `@host`: credentials without a user name.
    pub fn empty_server_user(token: &str, server: &str) -> Self {
        Self::new(
            token,
            format!("empty user name in server `{server}` (write USER[:PASSWORD]@HOST)"),
        )
    }

    /// A user name or password over 255 bytes (`what`: "user name", "password").
    pub fn server_credential_too_long(token: &str, server: &str, what: &str) -> Self {
        Self::new(
            token,
            format!("{what} in server `{server}` is longer than 255 bytes (the RFC 1929 limit)"),
        )
    }

    /// A `%` not followed by two hex digits, or escapes that do not decode to UTF-8.
    pub fn bad_percent_escape(token: &str, server: &str) -> Self {
        Self::new(
            token,
            format!(
                "bad %-escape in server `{server}` (write %XX with two hex digits; \
                 the result must be UTF-8)"
            ),
        )
    }

    /// A password for a server that speaks SOCKS4 or SOCKS4a (`scheme`), which has none.
    pub fn password_needs_socks5(token: &str, server: &str, scheme: &str) -> Self {
        Self::new(
            token,
            format!(
                "password in server `{server}`: {scheme} has no passwords \
                 (use socks5:// or drop `:PASSWORD`)"
            ),
        )
    }

    // socks.conf domain patterns (`.example.test`) and settings lines (`resolve`, `fake-range`,
    // `fake-families`).

    /// A destination starting with `.` that is not a usable domain suffix (`detail` says why).
    pub fn bad_domain_pattern(token: &str, detail: &str) -> Self {
        Self::new(token, format!("bad domain pattern `{token}`: {detail}"))
    }

    /// Something other than `OP PORT` after a domain pattern (most likely a mask).
    pub fn mask_after_domain(token: &str, domain: &str) -> Self {
        Self::new(
            token,
            format!(
                "unexpected `{token}` after domain pattern `{domain}` (a domain pattern takes \
                 no mask; only `OP PORT` may follow)"
            ),
        )
    }

    /// A host name written without a mask where a domain pattern was probably meant.
    pub fn name_without_mask(token: &str) -> Self {
        Self::new(
            token,
            format!(
                "address `{token}` has no mask (write ADDR MASK or ADDR/PREFIX, or `.{token}` \
                 for the domain and every name under it)"
            ),
        )
    }

    /// A settings keyword with nothing after it (`expected` lists the values).
    pub fn missing_setting_value(setting: &str, expected: &str) -> Self {
        Self::new(setting, format!("`{setting}` needs a value (expected {expected})"))
    }

    /// A settings value that is not one of the keywords (`expected` lists them).
    pub fn unknown_setting_value(token: &str, setting: &str, expected: &str) -> Self {
        Self::new(token, format!("unknown `{setting}` value `{token}` (expected {expected})"))
    }

    /// Tokens after the value of a settings line.
    pub fn trailing_after_setting(token: &str, setting: &str) -> Self {
        Self::new(
            token,
            format!("unexpected `{token}` after the `{setting}` setting (one value per line)"),
        )
    }

    /// A setting given twice (`what`: "`resolve` setting", "IPv4 `fake-range`"); `token` is the
    /// keyword of the second line.
    pub fn duplicate_setting(token: &str, what: &str, first_line: usize) -> Self {
        Self::new(token, format!("second {what} (the first is on line {first_line})"))
    }

    /// A `fake-range` value that is not `IPv4/PREFIX` or `IPv6/PREFIX`.
    pub fn bad_fake_range(token: &str) -> Self {
        Self::new(
            token,
            format!(
                "bad fake range `{token}` (expected an IPv4 or IPv6 network ADDR/PREFIX, \
                 e.g. 198.18.0.0/15)"
            ),
        )
    }

    /// A `fake-range` prefix outside the family's bounds (`family`: "IPv4", "IPv6").
    pub fn fake_range_prefix(token: &str, family: &str, min: u8, max: u8) -> Self {
        Self::new(
            token,
            format!("fake range `{token}`: an {family} fake range has a prefix of {min} to {max}"),
        )
    }

    /// A `fake-range` address with bits set after the prefix (`network`: the intended form).
    pub fn fake_range_host_bits(token: &str, network: &str) -> Self {
        Self::new(
            token,
            format!("fake range `{token}` has address bits set after the prefix (write {network})"),
        )
    }

    /// A `fake-range` that overlaps a block programs treat specially (`what`: "loopback",
    /// "multicast", …; `block`: that block in CIDR form).
    pub fn fake_range_reserved(token: &str, what: &str, block: &str) -> Self {
        Self::new(
            token,
            format!(
                "fake range `{token}` overlaps the {what} block {block} (choose a range clear of \
                 unspecified, loopback, link-local, multicast and broadcast addresses, such as \
                 198.18.0.0/15 or fd73:6f63:6b73::/48)"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_message() {
        let e = LineError::unknown_operator("eqq").at("sockd.conf", 7);
        assert_eq!(
            e.to_string(),
            "sockd.conf:7: unknown operator `eqq` (expected eq, neq, lt, gt, le or ge)"
        );
        assert_eq!(e.token.as_deref(), Some("eqq"));
        assert_eq!(e.line, 7);
        assert_eq!(e.file, "sockd.conf");
    }

    #[test]
    fn missing_address_has_no_token() {
        let e = LineError::missing_address("source address").at("f", 1);
        assert_eq!(e.token, None);
        assert_eq!(e.to_string(), "f:1: missing source address (write ADDR MASK or ADDR/PREFIX)");
    }
}
