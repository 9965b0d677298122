//! RFC 1929 username/password sub-negotiation for SOCKS5.
//!
//! Request `VER=1 | ULEN | UNAME | PLEN | PASSWD`, reply `VER=1 | STATUS` (0 = success).
//! The sub-negotiation version is 0x01, not SOCKS5's 0x05. Checking the password is the
//! caller's business; this module only frames the bytes.

use std::fmt;

use crate::error::ProtoError;

/// RFC 1929 section 2: "the current version of the subnegotiation, which is X'01'".
pub const VERSION: u8 = 0x01;
/// STATUS X'00': success. Any other value is a failure, after which the server closes.
pub const STATUS_SUCCESS: u8 = 0x00;
/// The failure STATUS this project sends.
pub const STATUS_FAILURE: u8 = 0x01;

/// A username and password as sent on the wire (each at most 255 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// UNAME, decoded lossily as UTF-8.
    pub username: String,
    /// PASSWD, raw bytes.
    pub password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    /// Never prints the password: credentials must not end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Decodes a sub-negotiation request; `Ok(None)` means more bytes are needed.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Credentials, usize)>, ProtoError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProtoError::BadAuthVersion(ver));
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(None);
    };
    let uend = 2 + usize::from(ulen);
    let Some(&plen) = buf.get(uend) else {
        return Ok(None);
    };
    let pend = uend + 1 + usize::from(plen);
    if buf.len() < pend {
        return Ok(None);
    }
    let username = String::from_utf8_lossy(&buf[2..uend]).into_owned();
    let password = buf[uend + 1..pend].to_vec();
    Ok(Some((Credentials { username, password }, pend)))
}

/// Appends a sub-negotiation request; a field over 255 bytes is an error.
pub fn encode_request(creds: &Credentials, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let ulen = u8::try_from(creds.username.len()).map_err(|_| ProtoError::TooLong("username"))?;
    let plen = u8::try_from(creds.password.len()).map_err(|_| ProtoError::TooLong("password"))?;
    out.push(VERSION);
    out.push(ulen);
    out.extend_from_slice(creds.username.as_bytes());
    out.push(plen);
    out.extend_from_slice(&creds.password);
    Ok(())
}

/// Appends the 2-byte reply.
pub fn encode_reply(success: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(&[VERSION, if success { STATUS_SUCCESS } else { STATUS_FAILURE }]);
}

/// Decodes the reply: `true` for success.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(bool, usize)>, ProtoError> {
    match buf {
        [] | [_] => Ok(None),
        [VERSION, status, ..] => Ok(Some((*status == STATUS_SUCCESS, 2))),
        [ver, ..] => Err(ProtoError::BadAuthVersion(*ver)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_prefixes() {
        let wire = [0x01, 0x03, b'b', b'o', b'b', 0x02, b'p', b'w'];
        let creds = Credentials { username: "bob".into(), password: b"pw".to_vec() };
        for cut in 0..wire.len() {
            assert_eq!(decode_request(&wire[..cut]), Ok(None), "prefix {cut}");
        }
        let mut pipelined = wire.to_vec();
        pipelined.extend_from_slice(&[0x05, 0x01]);
        assert_eq!(decode_request(&pipelined), Ok(Some((creds.clone(), wire.len()))));
        let mut out = Vec::new();
        encode_request(&creds, &mut out).expect("encodes");
        assert_eq!(out, wire);
    }

    #[test]
    fn version_is_one_not_five() {
        assert_eq!(decode_request(&[0x05, 0x01, b'a']), Err(ProtoError::BadAuthVersion(5)));
        assert_eq!(decode_reply(&[0x05, 0x00]), Err(ProtoError::BadAuthVersion(5)));
    }

    #[test]
    fn replies() {
        let mut out = Vec::new();
        encode_reply(true, &mut out);
        encode_reply(false, &mut out);
        assert_eq!(out, [0x01, 0x00, 0x01, 0x01]);
        assert_eq!(decode_reply(&out[..1]), Ok(None));
        assert_eq!(decode_reply(&out), Ok(Some((true, 2))));
        assert_eq!(decode_reply(&out[2..]), Ok(Some((false, 2))));
    }

    #[test]
    fn too_long_and_hidden_password() {
        let creds = Credentials { username: "u".repeat(256), password: vec![] };
        assert_eq!(encode_request(&creds, &mut Vec::new()), Err(ProtoError::TooLong("username")));
        let creds = Credentials { username: "u".into(), password: b"secret".to_vec() };
        assert!(!format!("{creds:?}").contains("secret"));
    }
}
