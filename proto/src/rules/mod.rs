//! The permit/deny rule language of the 1992 SOCKS paper, as used by `sockd.conf` (server) and,
//! with a different first word and an `@=` server list, by `socks.conf` (client library).
//!
//! Layout, small reusable pieces first:
//!
//! - [`lex`]: comments, blank lines, tokens with line numbers; a token [`Cursor`].
//! - [`addr`]: `ADDR MASK` (Cisco-style inverted mask, applied to both sides) or `ADDR/PREFIX`,
//!   IPv4/IPv6/host names; [`AddrMatch`], [`parse_addr_spec`].
//! - [`port`]: `OP PORT` with `eq neq lt gt le ge`; [`PortMatch`], [`parse_port_spec`].
//! - [`users`]: `*=user,user,/file`; [`UserList`], [`parse_user_list`].
//! - [`lookup`]: the [`Lookup`] trait (host names, services, user files) and `/etc/hosts` and
//!   `/etc/services` parsers.
//! - [`error`]: [`ConfigError`] (`file:line: message`, with the token) and every message text.
//! - [`sockd_conf`]: the `sockd.conf` grammar, [`RuleSet::parse`] and [`RuleSet::decide`]
//!   (which never permits an unspecified destination, and loopback only by a line naming it).
//! - [`server_url`]: the servers of an `@=` list and of `SOCKS_SERVER` (`socks5://user:pw@host`,
//!   `?pipeline`, the list option `?spread`); [`ServerSpec`], [`parse_server`],
//!   [`parse_server_list`].
//! - [`destination`]: a `socks.conf` rule's destination, an address spec or a `.domain` pattern;
//!   [`Destination`].
//! - [`client_settings`]: the `resolve`/`fake-range`/`fake-families` lines of `socks.conf`;
//!   [`ResolvePolicy`], [`FakeFamilies`].
//! - [`socks_conf`]: the client's `socks.conf` rule lines (`direct`/`deny`/`sockd @=servers`)
//!   and the file parser tying the pieces above together, [`ClientRules::parse`] and the
//!   allocation-free [`ClientRules::decide`] (addresses) and [`ClientRules::decide_name`] (names).
//! - [`coverage`]: [`RuleSet::may_permit`], whether any `permit` line could cover a client.
//!
//! What is not here: reading files, DNS, logging or the environment. Host and service names are
//! resolved once, at parse time; a running daemon re-parses to pick up DNS changes.
//!
//! ```
//! use socks_proto::rules::{Action, Request, RuleSet, StaticLookup};
//! let lookup = StaticLookup::new("192.0.2.7 lloyd.mips.com\n", "finger 79/tcp\n");
//! let rs = RuleSet::parse(
//!     "sockd.conf",
//!     "permit lloyd.mips.com 0.0.0.0 0.0.0.0/0 eq finger\n",
//!     &lookup,
//! )
//! .unwrap();
//! let req = Request {
//!     src: "192.0.2.7".parse().unwrap(),
//!     dst: "198.51.100.1".parse().unwrap(),
//!     port: 79,
//!     user: Some("lloyd"),
//! };
//! let d = rs.decide(&req);
//! assert_eq!(d.action, Action::Permit);
//! assert_eq!(d.rule.unwrap().to_string(), "permit 192.0.2.7/32 0.0.0.0/0 eq 79");
//! ```

pub mod addr;
pub mod client_settings;
pub mod coverage;
pub mod destination;
pub mod error;
pub mod lex;
pub mod lookup;
pub mod port;
pub mod server_url;
pub mod sockd_conf;
pub mod socks_conf;
#[cfg(test)]
mod socks_conf_fixture;
pub mod users;

pub use addr::{parse_addr_spec, AddrMatch, Net};
pub use client_settings::{FakeFamilies, ResolvePolicy, DEFAULT_FAKE_V4, DEFAULT_FAKE_V6};
pub use destination::Destination;
pub use error::{ConfigError, LineError};
pub use lex::{Cursor, Line};
pub use lookup::{HostsFile, Lookup, Services, StaticLookup};
pub use port::{parse_port, parse_port_spec, Op, PortMatch};
pub use server_url::{
    parse_server, parse_server_list, Protocol, ServerList, ServerSpec, DEFAULT_HTTP_PORT,
    DEFAULT_SERVER_PORT,
};
pub use sockd_conf::{
    is_loopback, is_unspecified, Action, Decision, Request, Rule, RuleSet, BUILT_IN_RULES,
    SKIPS_LOOPBACK_NOTE,
};
pub use socks_conf::{ClientAction, ClientRule, ClientRules};
pub use users::{parse_user_list, UserList};
