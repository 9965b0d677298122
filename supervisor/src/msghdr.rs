//! The x86_64 layouts of what `sendmsg`/`recvmsg` and `sendmmsg`/`recvmmsg` point at, decoded
//! from bytes the supervisor copied out of the program (`struct msghdr`, `struct iovec`,
//! `struct mmsghdr`, `struct cmsghdr`, from `<sys/socket.h>` and `<bits/uio.h>`), the kernel's
//! limits on them, and which control messages the supervisor passes on when it sends for the
//! program.
//!
//! Control messages: the supervisor sends with the control messages it read, if every one of
//! them is harmless — it cannot change where the datagram goes, and it needs no privilege the
//! supervisor might have and the program not (the kernel checks capabilities against the
//! process that sends, which is then the supervisor). Harmless: `UDP_SEGMENT`, `IP_PKTINFO`,
//! `IPV6_PKTINFO`, `IP_TOS`, `IP_TTL`, `IPV6_TCLASS`, `IPV6_HOPLIMIT`, `IPV6_DONTFRAG`,
//! `SO_TXTIME`, `SO_TIMESTAMPING`. Anything else fails the send with EINVAL: IP options (source
//! routing names other destinations), IPv6 extension headers (a routing header does too),
//! `SCM_RIGHTS`/`SCM_CREDENTIALS` (descriptors and credentials of the program, which the
//! supervisor cannot pass as the program's), `SO_MARK` and `SO_PRIORITY` (capability checks),
//! unknown types, and a malformed header.
//!
//! Not here: reading the program's memory (`sys`), what is done with the message (`send`,
//! `recv`, which writes `msg_namelen`, `msg_controllen` and `msg_flags` at their offsets: 8, 40
//! and 48).

/// `sizeof(struct msghdr)`: name, namelen (padded), iov, iovlen, control, controllen, flags
/// (padded).
pub const MSGHDR_LEN: usize = 56;
/// `sizeof(struct mmsghdr)`: a msghdr, then `unsigned int msg_len` (padded).
pub const MMSGHDR_LEN: usize = 64;
/// Offset of `msg_len` in a `struct mmsghdr`.
pub const MMSG_LEN_OFFSET: usize = 56;
/// `sizeof(struct iovec)`.
pub const IOVEC_LEN: usize = 16;
/// UIO_MAXIOV (linux/uio.h): the most iovecs in one message, and the most messages one
/// sendmmsg sends (the kernel clamps `vlen` to it).
pub const UIO_MAXIOV: usize = 1024;
/// The largest socket address the kernel takes (`sizeof(struct sockaddr_storage)`).
pub const NAME_MAX: usize = 128;
/// The most control bytes the supervisor copies (the kernel's own bound is `optmem_max`, 20480
/// by default; beyond it the kernel fails with ENOBUFS, as the supervisor does beyond this).
pub const CONTROL_MAX: usize = 65_536;
/// `sizeof(struct cmsghdr)`: `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
const CMSG_HDR_LEN: usize = 16;

/// The fields of a `struct msghdr` the supervisor uses (pointers are the program's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHdr {
    pub name: u64,
    pub namelen: u32,
    pub iov: u64,
    pub iovlen: u64,
    pub control: u64,
    pub controllen: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(word)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a msghdr; `None` when `bytes` is shorter than one.
pub fn parse_msghdr(bytes: &[u8]) -> Option<MsgHdr> {
    if bytes.len() < MSGHDR_LEN {
        return None;
    }
    Some(MsgHdr {
        name: u64_at(bytes, 0),
        namelen: u32_at(bytes, 8),
        iov: u64_at(bytes, 16),
        iovlen: u64_at(bytes, 24),
        control: u64_at(bytes, 32),
        controllen: u64_at(bytes, 40),
    })
}

/// Decodes an array of iovecs as (base, length) pairs.
pub fn parse_iovecs(bytes: &[u8]) -> Vec<(u64, u64)> {
    bytes.chunks_exact(IOVEC_LEN).map(|c| (u64_at(c, 0), u64_at(c, 8))).collect()
}

/// Whether every control message in `control` is one the supervisor passes on (see the module
/// header); a malformed buffer is not.
pub fn control_is_harmless(control: &[u8]) -> bool {
    let mut at = 0;
    while control.len().saturating_sub(at) >= CMSG_HDR_LEN {
        let len = u64_at(control, at);
        let (level, kind) = (u32_at(control, at + 8) as i32, u32_at(control, at + 12) as i32);
        let Ok(len) = usize::try_from(len) else { return false };
        if len < CMSG_HDR_LEN || len > control.len() - at || !harmless(level, kind) {
            return false;
        }
        // CMSG_NXTHDR: the next header starts at the length rounded up to 8.
        at += len.div_ceil(8) * 8;
    }
    // As the kernel: trailing bytes too short for a header are ignored.
    true
}

fn harmless(level: i32, kind: i32) -> bool {
    match level {
        libc::SOL_UDP => kind == libc::UDP_SEGMENT,
        libc::SOL_IP => matches!(kind, libc::IP_PKTINFO | libc::IP_TOS | libc::IP_TTL),
        libc::SOL_IPV6 => matches!(
            kind,
            libc::IPV6_PKTINFO | libc::IPV6_TCLASS | libc::IPV6_HOPLIMIT | libc::IPV6_DONTFRAG
        ),
        libc::SOL_SOCKET => matches!(kind, libc::SO_TXTIME | libc::SO_TIMESTAMPING),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut out = ((CMSG_HDR_LEN + data.len()) as u64).to_ne_bytes().to_vec();
        out.extend_from_slice(&(level as u32).to_ne_bytes());
        out.extend_from_slice(&(kind as u32).to_ne_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
        out
    }

    #[test]
    fn msghdr_and_iovecs() {
        let mut b = Vec::new();
        for word in [0x1000u64, 16, 0x2000, 2, 0x3000, 24, 0] {
            b.extend_from_slice(&word.to_ne_bytes());
        }
        let m = parse_msghdr(&b).expect("a whole msghdr");
        assert_eq!(
            m,
            MsgHdr {
                name: 0x1000,
                namelen: 16,
                iov: 0x2000,
                iovlen: 2,
                control: 0x3000,
                controllen: 24
            }
        );
        for cut in 0..MSGHDR_LEN {
            assert_eq!(parse_msghdr(&b[..cut]), None);
        }
        let iov: Vec<u8> = [0x10u64, 3, 0x20, 5].iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(parse_iovecs(&iov), [(0x10, 3), (0x20, 5)]);
        assert_eq!(parse_iovecs(&iov[..IOVEC_LEN + 3]), [(0x10, 3)]);
    }

    #[test]
    fn control_messages() {
        assert!(control_is_harmless(&[]));
        let tos = cmsg(libc::SOL_IP, libc::IP_TOS, &[0x10, 0, 0, 0]);
        let gso = cmsg(libc::SOL_UDP, libc::UDP_SEGMENT, &1200u16.to_ne_bytes());
        assert_eq!(tos.len(), 24);
        assert!(control_is_harmless(&tos));
        assert!(control_is_harmless(&[tos.clone(), gso.clone()].concat()));
        let lsrr = cmsg(libc::SOL_IP, libc::IP_RETOPTS, &[0x83, 7, 4, 198, 51, 100, 2, 0]);
        assert!(!control_is_harmless(&lsrr), "source routing names another destination");
        assert!(!control_is_harmless(&[tos.clone(), lsrr].concat()));
        let rights = cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &3i32.to_ne_bytes());
        assert!(!control_is_harmless(&rights));
        let mark = cmsg(libc::SOL_SOCKET, libc::SO_MARK, &1u32.to_ne_bytes());
        assert!(!control_is_harmless(&mark));
        let rthdr = cmsg(libc::SOL_IPV6, libc::IPV6_RTHDR, &[0; 8]);
        assert!(!control_is_harmless(&rthdr));
        // Malformed: a length shorter than the header, or past the buffer.
        let mut short = tos.clone();
        short[..8].copy_from_slice(&8u64.to_ne_bytes());
        assert!(!control_is_harmless(&short));
        let mut long = tos.clone();
        long[..8].copy_from_slice(&100u64.to_ne_bytes());
        assert!(!control_is_harmless(&long));
        // Trailing bytes too short for a header are ignored, as by the kernel.
        assert!(control_is_harmless(&[tos, vec![0; 8]].concat()));
    }
}
