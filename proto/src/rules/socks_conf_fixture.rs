//! The lookup table and helpers the `socks.conf` unit tests share (server entries, settings,
//! destinations and rules each test their own module with them). Test code only; no tests here.

use std::net::{IpAddr, SocketAddr};

use super::error::ConfigError;
use super::lookup::StaticLookup;
use super::socks_conf::ClientRules;

pub(super) fn lookup() -> StaticLookup {
    StaticLookup::new(
        "192.0.2.1 fw.example fw\n2001:db8::1 fw.example\n192.0.2.2 fw2.example\n\
         198.51.100.1 sgi.com\n198.51.100.2 sgi.com\n2001:db8::5 v6only\n",
        "socks 1080/tcp\ntelnet 23/tcp\nwhois 43/tcp nicname\nhttp 80/tcp www\n",
    )
    .with_file("/etc/socks.users", "alice\nbob # the builder\n")
}

pub(super) fn parse(text: &str) -> Result<ClientRules, ConfigError> {
    ClientRules::parse("socks.conf", text, &lookup())
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Asserts the error's line, token and full Display.
pub(super) fn check_err(text: &str, line: usize, token: Option<&str>, display: &str) {
    let e = parse(text).unwrap_err();
    assert_eq!(e.to_string(), display);
    assert_eq!(e.line, line, "{e}");
    assert_eq!(e.token.as_deref(), token, "{e}");
    assert_eq!(e.file, "socks.conf");
}

pub(super) const OK: &str = "# header\ndirect 10.0.0.0/8\n";
