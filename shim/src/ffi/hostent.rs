//! Building `struct hostent` answers for fake addresses, the way the gethostby*_r functions do:
//! everything in a caller-supplied buffer. The non-reentrant functions use a per-thread buffer
//! (glibc's own is per process; a per-thread one is at least as safe).
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ffi::c_char;
use std::ptr::null_mut;

use libc::{c_int, hostent};

const PTR: usize = std::mem::size_of::<*mut c_char>();

/// Bytes the answer for a name of `name_len` needs in a caller's buffer (plus alignment slack).
pub fn needed(name_len: usize) -> usize {
    PTR - 1 + 3 * PTR + 16 + name_len + 1
}

/// Fills `ret` with a one-address answer, pointing into `buf`. `Err(ERANGE)` when `buf` is
/// too small, as the _r functions report it.
///
/// # Safety
/// `ret` must be writable; `buf` must be writable for `buflen` bytes and outlive the answer.
pub unsafe fn fill(
    name: &str,
    family: c_int,
    address: &[u8],
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: usize,
) -> Result<(), c_int> {
    if buflen < needed(name.len()) || address.len() > 16 {
        return Err(libc::ERANGE);
    }
    let skip = buf.align_offset(PTR);
    // SAFETY: `skip < PTR` bytes of slack are within `buflen` (checked by `needed`).
    let base = unsafe { buf.add(skip) };
    let aliases = base.cast::<*mut c_char>();
    // SAFETY: the addresses below lie within `buf` (3 pointers, 16 bytes, the name and a NUL,
    // which `needed` counted), and `base` is pointer-aligned.
    unsafe {
        let addr_list = aliases.add(1);
        let addr_bytes = base.add(3 * PTR);
        let name_bytes = addr_bytes.add(16);
        aliases.write(null_mut());
        std::ptr::copy_nonoverlapping(address.as_ptr(), addr_bytes.cast::<u8>(), address.len());
        addr_list.write(addr_bytes);
        addr_list.add(1).write(null_mut());
        std::ptr::copy_nonoverlapping(name.as_ptr(), name_bytes.cast::<u8>(), name.len());
        name_bytes.add(name.len()).write(0);
        ret.write(hostent {
            h_name: name_bytes,
            h_aliases: aliases,
            h_addrtype: family,
            h_length: address.len() as c_int,
            h_addr_list: addr_list,
        });
    }
    Ok(())
}

thread_local! {
    static ANSWER: UnsafeCell<hostent> = const {
        UnsafeCell::new(hostent {
            h_name: null_mut(),
            h_aliases: null_mut(),
            h_addrtype: 0,
            h_length: 0,
            h_addr_list: null_mut(),
        })
    };
    static BUFFER: UnsafeCell<[u64; 48]> = const { UnsafeCell::new([0; 48]) };
}

/// The answer in this thread's static storage, for gethostbyname and friends; null if the
/// name does not fit (it always does: names are at most 255 bytes).
pub fn in_thread_storage(name: &str, family: c_int, address: &[u8]) -> *mut hostent {
    ANSWER.with(|answer| {
        BUFFER.with(|buffer| {
            let buf = buffer.get().cast::<c_char>();
            let len = std::mem::size_of::<[u64; 48]>();
            // SAFETY: both cells belong to this thread and live as long as it; the previous
            // answer is overwritten, as with glibc's static buffer.
            match unsafe { fill(name, family, address, answer.get(), buf, len) } {
                Ok(()) => answer.get(),
                Err(_) => null_mut(),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn fills_a_readable_answer() {
        let mut buf = [0 as c_char; 400];
        // SAFETY: zeroed hostent is a valid out-parameter.
        let mut answer: hostent = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointers and buffer.
        unsafe {
            fill(
                "www.example.test",
                libc::AF_INET,
                &[198, 18, 0, 9],
                &mut answer,
                buf.as_mut_ptr(),
                buf.len(),
            )
        }
        .expect("fits");
        // SAFETY: `fill` made every pointer point into `buf`.
        unsafe {
            assert_eq!(CStr::from_ptr(answer.h_name).to_str(), Ok("www.example.test"));
            assert!((*answer.h_aliases).is_null());
            let first = *answer.h_addr_list;
            assert_eq!(std::slice::from_raw_parts(first.cast::<u8>(), 4), [198, 18, 0, 9]);
            assert!((*answer.h_addr_list.add(1)).is_null());
        }
        assert_eq!(answer.h_length, 4);
        let mut small = [0 as c_char; 20];
        // SAFETY: as above.
        let err = unsafe {
            fill("x", libc::AF_INET, &[1, 2, 3, 4], &mut answer, small.as_mut_ptr(), small.len())
        };
        assert_eq!(err, Err(libc::ERANGE));
        let p = in_thread_storage(&"n".repeat(255), libc::AF_INET6, &[0; 16]);
        assert!(!p.is_null());
    }
}
