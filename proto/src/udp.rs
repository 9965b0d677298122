//! The SOCKS5 UDP request header (RFC 1928 section 7) that prefixes every relayed datagram:
//! `RSV[2]=0 | FRAG | ATYP | DST.ADDR | DST.PORT | DATA`.
//!
//! Only the framing; relaying and fragment policy (this project drops FRAG != 0, as RFC 1928
//! allows an implementation without reassembly to do) belong to the callers.

use crate::addr::TargetAddr;
use crate::error::ProtoError;

/// A datagram's header: its fragment number and its destination (or, from the relay, source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHeader {
    /// FRAG: 0 for a standalone datagram.
    pub frag: u8,
    /// DST.ADDR and DST.PORT.
    pub addr: TargetAddr,
}

/// Splits a whole datagram into its header and payload. A datagram is never partial, so a short
/// one is an error, not "need more".
pub fn decode_datagram(datagram: &[u8]) -> Result<(UdpHeader, &[u8]), ProtoError> {
    const TRUNCATED: ProtoError = ProtoError::TooLong("truncated UDP header");
    if datagram.len() < 4 {
        return Err(TRUNCATED);
    }
    if datagram[0] != 0 || datagram[1] != 0 {
        return Err(ProtoError::BadReserved(datagram[0] | datagram[1]));
    }
    let frag = datagram[2];
    match TargetAddr::decode_socks5(&datagram[3..])? {
        Some((addr, used)) => Ok((UdpHeader { frag, addr }, &datagram[3 + used..])),
        None => Err(TRUNCATED),
    }
}

/// Appends a header; the payload follows it.
pub fn encode_header(header: &UdpHeader, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, header.frag]);
    header.addr.encode_socks5(out).inspect_err(|_| out.truncate(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let header =
            UdpHeader { frag: 0, addr: TargetAddr::Ip("192.0.2.53:53".parse().expect("literal")) };
        let mut wire = Vec::new();
        encode_header(&header, &mut wire).expect("encodes");
        assert_eq!(wire, [0, 0, 0, 0x01, 192, 0, 2, 53, 0, 53]);
        wire.extend_from_slice(b"query");
        assert_eq!(decode_datagram(&wire), Ok((header, &b"query"[..])));
    }

    #[test]
    fn rejects() {
        assert!(decode_datagram(&[0, 0, 0]).is_err());
        assert!(decode_datagram(&[0, 0, 0, 0x01, 1, 2]).is_err());
        assert_eq!(decode_datagram(&[0, 1, 0, 0x01]), Err(ProtoError::BadReserved(1)));
        assert_eq!(decode_datagram(&[0, 0, 0, 0x07, 0]), Err(ProtoError::BadAddressType(7)));
    }
}
