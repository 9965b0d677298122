//! The one error type of the protocol codecs: what was wrong with the bytes a peer sent.
//!
//! "Need more bytes" is never an error here; decoders return `Ok(None)` for it.

use std::fmt;

/// A protocol violation found while decoding, or a value that cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    /// The first byte names no SOCKS version we speak (4 or 5); e.g. an HTTP client.
    BadVersion(u8),
    /// A command byte that the protocol does not define or we do not serve.
    UnsupportedCommand(u8),
    /// SOCKS5 ATYP other than 1, 3 or 4.
    BadAddressType(u8),
    /// A SOCKS5 reserved byte that is not zero.
    BadReserved(u8),
    /// SOCKS5 greeting with NMETHODS = 0.
    NoMethods,
    /// An empty host name.
    EmptyName,
    /// A host name with a NUL byte or not valid UTF-8.
    BadName,
    /// A NUL-terminated or length-prefixed field longer than allowed; names the field.
    TooLong(&'static str),
    /// RFC 1929 sub-negotiation with a version other than 1.
    BadAuthVersion(u8),
    /// The server chose an authentication method the client did not offer.
    UnexpectedMethod(u8),
    /// The server accepted none of the offered methods (X'FF').
    NoAcceptableMethod,
    /// SOCKS4 was used where the server requires authentication.
    Socks4NeedsAuth,
    /// SOCKS4 (not 4a) cannot carry a host name, and SOCKS4 cannot carry IPv6.
    Socks4Address,
    /// A SOCKS4 reply whose VN is not 0.
    BadReplyVersion(u8),
    /// Bytes were fed to a handshake that had already finished (a caller's mistake).
    HandshakeOver,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadVersion(v) => write!(f, "not a SOCKS request (first byte 0x{v:02x})"),
            ProtoError::UnsupportedCommand(c) => write!(f, "unsupported command 0x{c:02x}"),
            ProtoError::BadAddressType(a) => write!(f, "unsupported address type 0x{a:02x}"),
            ProtoError::BadReserved(r) => write!(f, "reserved byte is 0x{r:02x}, not 0"),
            ProtoError::NoMethods => write!(f, "greeting offers no authentication method"),
            ProtoError::EmptyName => write!(f, "empty host name"),
            ProtoError::BadName => write!(f, "host name contains NUL or is not UTF-8"),
            ProtoError::TooLong(field) => write!(f, "{field} longer than 255 bytes"),
            ProtoError::BadAuthVersion(v) => {
                write!(f, "username/password sub-negotiation version 0x{v:02x}, not 0x01")
            }
            ProtoError::UnexpectedMethod(m) => {
                write!(f, "server chose method 0x{m:02x}, which was not offered")
            }
            ProtoError::NoAcceptableMethod => write!(f, "no acceptable authentication method"),
            ProtoError::Socks4NeedsAuth => {
                write!(f, "SOCKS4 request, but this server requires username/password")
            }
            ProtoError::Socks4Address => {
                write!(f, "SOCKS4 carries only IPv4 addresses (SOCKS4a adds names)")
            }
            ProtoError::BadReplyVersion(v) => write!(f, "reply version 0x{v:02x}"),
            ProtoError::HandshakeOver => write!(f, "the handshake is already over"),
        }
    }
}

impl std::error::Error for ProtoError {}
