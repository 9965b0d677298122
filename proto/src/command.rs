//! What a SOCKS client asks a server to do, one name for every version: CONNECT, BIND and UDP
//! ASSOCIATE. `v4::Command`, `v5::Command` and `server::Command` are this type.
//!
//! Not here: the command codes on the wire (`v4::CMD_*`, `v5::CMD_*`) and which version carries
//! which command (SOCKS4 has no UDP ASSOCIATE: its codec refuses it).

use std::fmt;

/// What the client asks for, across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// An outbound connection (SOCKS4 CD 1, SOCKS5 CMD X'01').
    Connect,
    /// An inbound connection from the destination host (SOCKS4 CD 2, SOCKS5 CMD X'02').
    Bind,
    /// A UDP relay (SOCKS5 CMD X'03' only). DST is where the client will send datagrams from,
    /// not a target.
    UdpAssociate,
}

impl fmt::Display for Command {
    /// `connect`, `bind` or `udp-associate`, as in sockd's `cmd=` log field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Connect => "connect",
            Command::Bind => "bind",
            Command::UdpAssociate => "udp-associate",
        })
    }
}
