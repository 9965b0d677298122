//! Socket addresses at the C boundary: reading the `struct sockaddr` a program passed, and
//! writing one back, without allocating. IPv4-mapped IPv6 addresses are recognised so routing
//! sees the IPv4 address while the program keeps the form it used.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{sockaddr, sockaddr_in, sockaddr_in6, socklen_t, AF_INET, AF_INET6};

/// The largest address we keep: `sockaddr_in6` (28 bytes).
pub const RAW_LEN: usize = std::mem::size_of::<sockaddr_in6>();

/// A copy of a program's `sockaddr` bytes, exactly as it gave them (family, port, scope id…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAddr {
    /// The bytes; only the first `len` are meaningful.
    pub bytes: [u8; RAW_LEN],
    /// How many bytes the address has.
    pub len: usize,
}

impl RawAddr {
    /// Copies an AF_INET or AF_INET6 address from the program; `None` for anything else.
    ///
    /// # Safety
    /// `addr` must be null or point to `len` readable bytes.
    pub unsafe fn from_ptr(addr: *const sockaddr, len: socklen_t) -> Option<RawAddr> {
        if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
            return None;
        }
        // SAFETY: at least the family field is readable (checked above); read unaligned since
        // programs may pass any pointer.
        let family = unsafe { std::ptr::addr_of!((*addr).sa_family).read_unaligned() };
        let need = match i32::from(family) {
            AF_INET => std::mem::size_of::<sockaddr_in>(),
            AF_INET6 => std::mem::size_of::<sockaddr_in6>(),
            _ => return None,
        };
        if (len as usize) < need {
            return None;
        }
        let mut bytes = [0u8; RAW_LEN];
        // SAFETY: `need` bytes are readable (len >= need) and fit in `bytes` (need <= RAW_LEN).
        unsafe { std::ptr::copy_nonoverlapping(addr.cast::<u8>(), bytes.as_mut_ptr(), need) };
        Some(RawAddr { bytes, len: need })
    }

    /// The same address in the given form.
    pub fn from_socket_addr(sa: SocketAddr) -> RawAddr {
        let mut bytes = [0u8; RAW_LEN];
        let len = match sa {
            SocketAddr::V4(v4) => {
                let sin = sockaddr_in {
                    sin_family: AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in is plain old data of this size; bytes has room.
                unsafe { write_struct(&mut bytes, &sin) }
            }
            SocketAddr::V6(v6) => {
                let sin6 = sockaddr_in6 {
                    sin6_family: AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: as above.
                unsafe { write_struct(&mut bytes, &sin6) }
            }
        };
        RawAddr { bytes, len }
    }

    /// The address as Rust sees it (IPv4-mapped stays IPv6 here).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let family = i32::from(libc::sa_family_t::from_ne_bytes([self.bytes[0], self.bytes[1]]));
        let port = u16::from_be_bytes([self.bytes[2], self.bytes[3]]);
        match family {
            AF_INET => {
                let ip = Ipv4Addr::new(self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]);
                Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
            }
            AF_INET6 if self.len >= RAW_LEN => {
                let flowinfo = u32::from_ne_bytes(self.bytes[4..8].try_into().ok()?);
                let octets: [u8; 16] = self.bytes[8..24].try_into().ok()?;
                let scope = u32::from_ne_bytes(self.bytes[24..28].try_into().ok()?);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(octets),
                    port,
                    flowinfo,
                    scope,
                )))
            }
            _ => None,
        }
    }

    /// Copies the address out the way getpeername(2) does: at most `*len` bytes, and `*len`
    /// set to the full size.
    ///
    /// # Safety
    /// `addr` must point to `*len` writable bytes and `len` must be valid.
    pub unsafe fn write_to(&self, addr: *mut sockaddr, len: *mut socklen_t) {
        // SAFETY: the caller guarantees `len` is valid to read and write.
        let room = unsafe { *len } as usize;
        let n = room.min(self.len);
        // SAFETY: `n` bytes fit in the caller's buffer and in ours.
        unsafe { std::ptr::copy_nonoverlapping(self.bytes.as_ptr(), addr.cast::<u8>(), n) };
        // SAFETY: as above.
        unsafe { *len = self.len as socklen_t };
    }
}

/// Copies a C struct into the start of `bytes`, returning its size.
///
/// # Safety
/// `T` must be plain old data no larger than `RAW_LEN`.
unsafe fn write_struct<T>(bytes: &mut [u8; RAW_LEN], value: &T) -> usize {
    let size = std::mem::size_of::<T>();
    // SAFETY: the caller guarantees T fits; both pointers are valid for `size` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), bytes.as_mut_ptr(), size)
    };
    size
}

/// The address routing decisions use: IPv4-mapped IPv6 as IPv4.
pub fn canonical(sa: SocketAddr) -> SocketAddr {
    SocketAddr::new(sa.ip().to_canonical(), sa.port())
}

/// An address in the family of a socket: IPv4 destinations become IPv4-mapped for AF_INET6
/// sockets; IPv6 destinations cannot be reached from AF_INET sockets (`None`).
pub fn for_family(sa: SocketAddr, family: i32) -> Option<SocketAddr> {
    match (sa, family) {
        (SocketAddr::V4(_), AF_INET) | (SocketAddr::V6(_), AF_INET6) => Some(sa),
        (SocketAddr::V4(v4), AF_INET6) => {
            Some(SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()))
        }
        (SocketAddr::V6(v6), AF_INET) => {
            v6.ip().to_ipv4_mapped().map(|ip| SocketAddr::new(IpAddr::V4(ip), v6.port()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for text in ["192.0.2.1:80", "[2001:db8::1]:443", "[::ffff:192.0.2.1]:22"] {
            let sa: SocketAddr = text.parse().expect("literal");
            let raw = RawAddr::from_socket_addr(sa);
            assert_eq!(raw.socket_addr(), Some(sa));
            // SAFETY: raw.bytes holds raw.len valid bytes.
            let again =
                unsafe { RawAddr::from_ptr(raw.bytes.as_ptr().cast(), raw.len as socklen_t) };
            assert_eq!(again, Some(raw));
        }
    }

    #[test]
    fn rejects_short_and_foreign() {
        let raw = RawAddr::from_socket_addr("192.0.2.1:80".parse().expect("literal"));
        // SAFETY: 4 bytes of raw.bytes are readable.
        assert_eq!(unsafe { RawAddr::from_ptr(raw.bytes.as_ptr().cast(), 4) }, None);
        let unix = [1u8, 0, b'/', b'x'];
        // SAFETY: 4 readable bytes.
        assert_eq!(unsafe { RawAddr::from_ptr(unix.as_ptr().cast(), 4) }, None);
        // SAFETY: null is allowed.
        assert_eq!(unsafe { RawAddr::from_ptr(std::ptr::null(), 16) }, None);
    }

    #[test]
    fn families() {
        let v4: SocketAddr = "192.0.2.1:80".parse().expect("literal");
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:80".parse().expect("literal");
        assert_eq!(for_family(v4, AF_INET6), Some(mapped));
        assert_eq!(for_family(mapped, AF_INET), Some(v4));
        assert_eq!(canonical(mapped), v4);
        assert_eq!(for_family("[2001:db8::1]:1".parse().expect("literal"), AF_INET), None);
    }
}
