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
//! - `imports`: the libc functions the library itself calls only sometimes (std's among them),
//!   found on their first call instead of at load (`shim/build.rs` links them there; x86-64).
//! - `fakemap`: the shared memory map of fake addresses (the per-user file, or a private map
//!   shared across fork); `mapfile`: finding and safely opening that per-user file.
//!
//! Every `unsafe` block says why it is sound (`clippy::undocumented_unsafe_blocks` is denied),
//! and a helper that reads through a raw pointer is itself an `unsafe fn`.
//!
//! - `at_load`: the load-time constructor (what every process the library is preloaded into
//!   pays for, so as little as can be).
//!
//! Not here: any decision (routing, proxying, names): those are safe code outside `ffi`.
#![allow(unsafe_code)]

pub mod dns_hooks;
pub mod fakemap;
pub mod hooks;
pub mod hostent;
#[cfg(target_arch = "x86_64")]
mod imports;
pub mod mapfile;
pub mod real;
pub mod resolv_hooks;
pub mod sockaddr;
pub mod udp_hooks;

/// Runs once at load time, and does only what cannot wait for the first intercepted call
/// (every process the library is preloaded into pays for it, most of them making no call the
/// library intercepts: issue 17, docs/PERFORMANCE.md "Library load time"): which file
/// descriptor 2 is must be noted before the program can close it and reuse the number (one
/// fstat; a `close` libc makes itself, as `fclose(stderr)` does, is never seen by a hook).
///
/// Not here, though they used to be:
/// - the panic hook that keeps panics off the program's stderr: set by the first exported
///   function that runs (`log::quiet_panics`, from the shield); only the library's own code
///   can panic, and all of it runs inside the shield;
/// - the map of fake addresses (the per-user file, or a private map): opened when the first
///   name gets a fake address or a fake address is first looked up, or by the `fork` hook just
///   before the first fork, so parent and child still share it (`fakemap`).
extern "C" fn at_load() {
    crate::log::remember_standard_error();
}

/// Runs `f` with every signal blocked in this thread (the previous mask restored after), so no
/// signal handler of the program can run in the middle of it; `f` runs anyway if the mask
/// cannot be changed.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut previous = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset fills the set it is given (a live local); pthread_sigmask reads `all`,
    // initialised just before, and writes the old mask into `previous`, another live local.
    // Neither is one of the library's hooks, so the calls go straight to libc.
    let blocked = unsafe {
        libc::sigfillset(all.as_mut_ptr()) == 0
            && libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), previous.as_mut_ptr()) == 0
    };
    let result = f();
    if blocked {
        // SAFETY: `previous` was written by the successful pthread_sigmask call above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, previous.as_ptr(), std::ptr::null_mut())
        };
    }
    result
}

/// Debug builds only (what the end-to-end tests load): panics inside the shield, so a test can
/// see what a bug in the library does to a program — `-1` with errno EIO, nothing on standard
/// error unless `SOCKS_LOG` asks, and the unwinder linked into the library working
/// (tests/tests/load.rs). Release builds do not have it.
#[cfg(debug_assertions)]
#[no_mangle]
pub extern "C" fn socks_debug_panic() -> libc::c_int {
    crate::outcome::shield(-1, || panic!("socks_debug_panic was called"))
}

// SAFETY: an `.init_array` entry is a plain function pointer the dynamic loader calls once
// with no arguments, which `at_load` is; it is `extern "C"`, so it cannot unwind into the
// loader.
#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = at_load;
