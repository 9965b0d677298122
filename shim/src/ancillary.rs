//! Ancillary data (control messages) on a UDP datagram that goes through a SOCKS5 relay
//! (issue 11, item 11). QUIC stacks send with `sendmsg` and control messages — UDP_SEGMENT
//! (generic segmentation offload), IP_TOS/IPV6_TCLASS (ECN), IP_PKTINFO — and such a datagram
//! must go through the relay like any other, never direct. What each message becomes:
//!
//! - UDP_SEGMENT: the payload is split into datagrams of that size here, and each goes to the
//!   relay with its own SOCKS5 header (the kernel would cut header and payload apart). The
//!   message itself is removed; a socket-level UDP_SEGMENT is overridden with 0 for the same
//!   reason.
//! - IP_PKTINFO, IPV6_PKTINFO: removed. They pick the source address and interface for the
//!   program's destination; the datagram goes to the relay, which the routing table reaches on
//!   its own, from the address the association was made from.
//! - IP_TOS, IP_TTL, IPV6_TCLASS, IPV6_HOPLIMIT, IPV6_DONTFRAG and the SOL_SOCKET ones that only
//!   mark or time the packet (SO_MARK, SO_PRIORITY, SO_TXTIME, SO_TIMESTAMPING): kept, they
//!   apply to the datagram to the relay as they would have to the destination.
//! - Anything else (IP options and IPv6 extension headers, which can route a packet to another
//!   first hop; descriptors or credentials; an unknown SOL_UDP type; a malformed header): the
//!   send fails with `Cause::ControlMessage` (EINVAL, as the kernel fails a control message it
//!   cannot use).
//!
//! Pure byte work on copies: the hooks hand in the program's control buffer as a slice.
//!
//! Not here: sending (see `udp_hooks`).

use libc::c_int;

use crate::outcome::Cause;

/// Linux's UDP_SEGMENT (linux/udp.h), a `u16` at level SOL_UDP.
pub const UDP_SEGMENT: c_int = 103;
/// SOL_UDP (= IPPROTO_UDP).
const SOL_UDP: c_int = libc::IPPROTO_UDP;
/// SO_TIMESTAMPING_NEW (asm-generic/socket.h), not in every libc crate target.
const SO_TIMESTAMPING_NEW: c_int = 65;

/// `cmsg_len`, `cmsg_level`, `cmsg_type` (bits/socket.h): a `size_t` and two ints.
const HEADER: usize = std::mem::size_of::<libc::cmsghdr>();
const WORD: usize = std::mem::size_of::<usize>();

fn align(len: usize) -> usize {
    len.div_ceil(WORD) * WORD
}

/// The control messages to send with each relayed datagram, and the segment size asked for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ancillary {
    /// The kept messages, as bytes in the kernel's layout.
    pub kept: Vec<u8>,
    /// A UDP_SEGMENT message's value (`Some(0)` turns segmentation off explicitly).
    pub segment: Option<u16>,
}

/// Whether a message of this level and type is kept as it is.
fn harmless(level: c_int, kind: c_int) -> bool {
    match level {
        libc::IPPROTO_IP => matches!(kind, libc::IP_TOS | libc::IP_TTL),
        libc::IPPROTO_IPV6 => {
            matches!(kind, libc::IPV6_TCLASS | libc::IPV6_HOPLIMIT | libc::IPV6_DONTFRAG)
        }
        libc::SOL_SOCKET => matches!(
            kind,
            libc::SO_MARK
                | libc::SO_PRIORITY
                | libc::SO_TXTIME
                | libc::SO_TIMESTAMPING
                | SO_TIMESTAMPING_NEW
        ),
        _ => false,
    }
}

/// Reads the program's control buffer; `Err(Cause::ControlMessage)` as described in the module
/// documentation.
pub fn parse(control: &[u8]) -> Result<Ancillary, Cause> {
    let mut result = Ancillary::default();
    let mut at = 0;
    // As CMSG_NXTHDR: a header must fit whole; what remains after the last one is ignored.
    while control.len() - at >= HEADER {
        let word = |i: usize| -> [u8; WORD] {
            let mut bytes = [0u8; WORD];
            bytes.copy_from_slice(&control[i..i + WORD]);
            bytes
        };
        let int = |i: usize| -> c_int {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&control[i..i + 4]);
            c_int::from_ne_bytes(bytes)
        };
        let len = usize::from_ne_bytes(word(at));
        let (level, kind) = (int(at + WORD), int(at + WORD + 4));
        if len < HEADER || len > control.len() - at {
            return Err(Cause::ControlMessage);
        }
        let data = &control[at + HEADER..at + len];
        if level == SOL_UDP {
            match (kind, data) {
                (UDP_SEGMENT, &[a, b]) => result.segment = Some(u16::from_ne_bytes([a, b])),
                _ => return Err(Cause::ControlMessage),
            }
        } else if matches!(
            (level, kind),
            (libc::IPPROTO_IP, libc::IP_PKTINFO) | (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
        ) {
            // Dropped: see the module documentation.
        } else if harmless(level, kind) {
            push(&mut result.kept, level, kind, data);
        } else {
            return Err(Cause::ControlMessage);
        }
        at += align(len).min(control.len() - at);
    }
    Ok(result)
}

/// Appends one message in the kernel's layout (CMSG_SPACE bytes, zero padding).
pub fn push(out: &mut Vec<u8>, level: c_int, kind: c_int, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&(HEADER + data.len()).to_ne_bytes());
    out.extend_from_slice(&level.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.resize(start + HEADER, 0);
    out.extend_from_slice(data);
    out.resize(start + align(HEADER + data.len()), 0);
}

/// A UDP_SEGMENT message of `size` (0: no segmentation for this datagram).
pub fn push_segment(out: &mut Vec<u8>, size: u16) {
    push(out, SOL_UDP, UDP_SEGMENT, &size.to_ne_bytes());
}

/// The byte ranges of a payload of `len` bytes cut into segments of `size` (the last one
/// shorter); one range when `size` is 0 or not smaller than `len`.
pub fn segments(len: usize, size: u16) -> Vec<(usize, usize)> {
    let size = usize::from(size);
    if size == 0 || len <= size {
        return vec![(0, len)];
    }
    (0..len).step_by(size).map(|start| (start, (start + size).min(len))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(level: c_int, kind: c_int, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push(&mut out, level, kind, data);
        out
    }

    #[test]
    fn keeps_drops_and_refuses() {
        let tos = message(libc::IPPROTO_IP, libc::IP_TOS, &2i32.to_ne_bytes());
        assert_eq!(tos.len(), 24);
        assert_eq!(&tos[..8], &20usize.to_ne_bytes());
        let pktinfo = message(libc::IPPROTO_IP, libc::IP_PKTINFO, &[0; 12]);
        let segment = message(SOL_UDP, UDP_SEGMENT, &1200u16.to_ne_bytes());
        let all = [tos.clone(), pktinfo, segment].concat();
        assert_eq!(parse(&all), Ok(Ancillary { kept: tos.clone(), segment: Some(1200) }));
        assert_eq!(parse(&[]), Ok(Ancillary::default()));
        // Trailing bytes shorter than a header are ignored, as CMSG_NXTHDR does.
        assert_eq!(parse(&[tos.clone(), vec![0; 4]].concat()).map(|a| a.kept), Ok(tos.clone()));
        let options = message(libc::IPPROTO_IP, libc::IP_RETOPTS, &[0; 8]);
        assert_eq!(parse(&options), Err(Cause::ControlMessage));
        let rights = message(libc::SOL_SOCKET, libc::SCM_RIGHTS, &0i32.to_ne_bytes());
        assert_eq!(parse(&rights), Err(Cause::ControlMessage));
        let unknown_udp = message(SOL_UDP, 104, &[0; 4]);
        assert_eq!(parse(&unknown_udp), Err(Cause::ControlMessage));
        let bad_segment = message(SOL_UDP, UDP_SEGMENT, &[0; 4]);
        assert_eq!(parse(&bad_segment), Err(Cause::ControlMessage));
        let mut too_long = tos.clone();
        too_long[..8].copy_from_slice(&100usize.to_ne_bytes());
        assert_eq!(parse(&too_long), Err(Cause::ControlMessage));
        let mut too_short = tos;
        too_short[..8].copy_from_slice(&8usize.to_ne_bytes());
        assert_eq!(parse(&too_short), Err(Cause::ControlMessage));
    }

    #[test]
    fn cuts_segments() {
        assert_eq!(segments(14, 4), [(0, 4), (4, 8), (8, 12), (12, 14)]);
        assert_eq!(segments(8, 4), [(0, 4), (4, 8)]);
        assert_eq!(segments(4, 4), [(0, 4)]);
        assert_eq!(segments(10, 0), [(0, 10)]);
        assert_eq!(segments(0, 4), [(0, 0)]);
    }
}
