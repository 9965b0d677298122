//! The C boundary: every file of the library that needs `unsafe` lives here, and nowhere else
//! may use it (`#![deny(unsafe_code)]` at the crate root; each file below opts in).
//!
//! - `hooks`, `udp_hooks`, `dns_hooks`, `resolv_hooks`: the exported libc entry points. Each
//!   converts raw C arguments into safe types, runs the safe logic in `outcome::shield`, and
//!   turns the outcome into the C return value and errno (or h_errno / EAI code).
//! - `real`: libc itself, through function pointers from `dlsym(RTLD_NEXT)`, with safe wrappers
//!   where the arguments can be checked.
//! - `sockaddr`: `sockaddr_in`/`sockaddr_in6` to and from a fixed-size owned copy.
//! - `hostent`: the `struct hostent` answers of gethostbyname*, in caller or static buffers.
//! - `fakemap`: the shared memory map of fake addresses (mmap, shared across fork).
//!
//! Every `unsafe` block says why it is sound (`clippy::undocumented_unsafe_blocks` is denied),
//! and a helper that reads through a raw pointer is itself an `unsafe fn`.
//!
//! Not here: any decision (routing, proxying, names): those are safe code outside `ffi`.
#![allow(unsafe_code)]

pub mod dns_hooks;
pub mod fakemap;
pub mod hooks;
pub mod hostent;
pub mod real;
pub mod resolv_hooks;
pub mod sockaddr;
pub mod udp_hooks;

/// Runs once at load time, and does only what cannot wait for the first intercepted call:
/// - the shared map of fake addresses must exist before a fork for parent and child to share
///   it (a single mmap of untouched pages);
/// - which file descriptor 2 is must be noted before the program can close it and reuse the
///   number (one fstat);
/// - the library's own copy of std gets a panic hook that keeps panics (which the shield turns
///   into errnos) off the program's stderr unless `SOCKS_LOG` asks, from the very first call
///   (not in unit tests, whose failures must show).
extern "C" fn at_load() {
    fakemap::create();
    crate::log::remember_standard_error();
    #[cfg(not(test))]
    std::panic::set_hook(Box::new(|info| {
        crate::log::log!(crate::log::Level::Error, "internal error: {info}")
    }));
}

// SAFETY: an `.init_array` entry is a plain function pointer the dynamic loader calls once
// with no arguments, which `at_load` is; it is `extern "C"`, so it cannot unwind into the
// loader.
#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = at_load;
