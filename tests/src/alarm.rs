//! What the signal-handler test programs (`tests/src/bin/signal-connect.rs` and
//! `signal-inside.rs`) share: errno, the destination packed into one atomic word and back into
//! a `sockaddr_in` without allocating, and the SIGALRM that runs their handler — installed
//! without SA_RESTART, armed once at a time 2 ms ahead. Everything here is async-signal-safe.
//!
//! Not here: the handlers and what they call (the programs), the assertions (everywhere.rs).

use std::net::SocketAddrV4;

/// This thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's errno (a handler restores the interrupted code's).
pub fn set_errno(value: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

/// `dst` as one word for an atomic: the address above the port.
pub fn pack(dst: SocketAddrV4) -> u64 {
    (u64::from(u32::from(*dst.ip())) << 16) | u64::from(dst.port())
}

/// The destination [`pack`] made, as a sockaddr_in (no allocation, signal-safe).
pub fn sockaddr_in(packed: u64) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: ((packed & 0xffff) as u16).to_be(),
        sin_addr: libc::in_addr { s_addr: ((packed >> 16) as u32).to_be() },
        sin_zero: [0; 8],
    }
}

/// Installs `handler` for SIGALRM without SA_RESTART (interrupted calls see EINTR).
pub fn install(handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the sigaction struct is fully initialised; the handler is the caller's, which
    // makes only the calls under test.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = 0; // no SA_RESTART: interrupted calls see EINTR
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()), 0);
    }
}

/// Arms SIGALRM once, 2 ms from now. The handler re-arms it when it is done, so the
/// interrupted thread always gets 2 ms to run between two handlers: a periodic timer shorter
/// than a handler's round trip would deliver the next signal the moment the handler returns,
/// and the thread it interrupts would never run again (a livelock, not a deadlock of the
/// library).
pub fn arm() {
    set_timer(2000);
}

/// Stops the timer (the program sets its STOP flag first, so no handler re-arms it).
pub fn disarm() {
    set_timer(0);
}

fn set_timer(usec: libc::suseconds_t) {
    let once = libc::itimerval {
        it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
        it_value: libc::timeval { tv_sec: 0, tv_usec: usec },
    };
    // SAFETY: a valid itimerval; the old value is not wanted. setitimer is async-signal-safe.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &once, std::ptr::null_mut()) };
}
