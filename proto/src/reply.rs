//! What a request came to, independent of the SOCKS version: granted, or one of the RFC 1928
//! failure reasons. The server maps its outcome to the version's reply code here; a client maps
//! a reply code back. SOCKS4 knows only "granted" and "rejected or failed" (91): 92 and 93 are
//! about identd and are never produced here.

use std::fmt;

/// Why a request failed, with RFC 1928's REP codes (section 6) as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// X'01' general SOCKS server failure.
    General,
    /// X'02' connection not allowed by ruleset.
    NotAllowed,
    /// X'03' network unreachable.
    NetworkUnreachable,
    /// X'04' host unreachable.
    HostUnreachable,
    /// X'05' connection refused.
    Refused,
    /// X'06' TTL expired.
    TtlExpired,
    /// X'07' command not supported.
    CommandNotSupported,
    /// X'08' address type not supported.
    AddressTypeNotSupported,
    /// X'09'..X'FF' unassigned; kept so a client can report what it got.
    Unassigned(u8),
}

impl Failure {
    /// The SOCKS5 REP byte.
    pub fn socks5_code(self) -> u8 {
        match self {
            Failure::General => 0x01,
            Failure::NotAllowed => 0x02,
            Failure::NetworkUnreachable => 0x03,
            Failure::HostUnreachable => 0x04,
            Failure::Refused => 0x05,
            Failure::TtlExpired => 0x06,
            Failure::CommandNotSupported => 0x07,
            Failure::AddressTypeNotSupported => 0x08,
            Failure::Unassigned(code) => code,
        }
    }

    /// The failure a SOCKS5 REP byte stands for; `None` for X'00' (succeeded).
    pub fn from_socks5_code(code: u8) -> Option<Failure> {
        Some(match code {
            0x00 => return None,
            0x01 => Failure::General,
            0x02 => Failure::NotAllowed,
            0x03 => Failure::NetworkUnreachable,
            0x04 => Failure::HostUnreachable,
            0x05 => Failure::Refused,
            0x06 => Failure::TtlExpired,
            0x07 => Failure::CommandNotSupported,
            0x08 => Failure::AddressTypeNotSupported,
            other => Failure::Unassigned(other),
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Failure::General => "general SOCKS server failure",
            Failure::NotAllowed => "connection not allowed by ruleset",
            Failure::NetworkUnreachable => "network unreachable",
            Failure::HostUnreachable => "host unreachable",
            Failure::Refused => "connection refused",
            Failure::TtlExpired => "TTL expired",
            Failure::CommandNotSupported => "command not supported",
            Failure::AddressTypeNotSupported => "address type not supported",
            Failure::Unassigned(code) => return write!(f, "unassigned reply code 0x{code:02x}"),
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        assert_eq!(Failure::from_socks5_code(0), None);
        for code in 1..=255u8 {
            let failure = Failure::from_socks5_code(code).expect("non-zero is a failure");
            assert_eq!(failure.socks5_code(), code);
        }
        assert_eq!(Failure::from_socks5_code(2), Some(Failure::NotAllowed));
        assert_eq!(Failure::from_socks5_code(9), Some(Failure::Unassigned(9)));
    }
}
