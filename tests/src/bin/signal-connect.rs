//! `signal-connect DST SECS [NAME]`: a test program for the library (run under it by
//! tests/tests/everywhere.rs) that connects from inside a real, asynchronous signal handler.
//! A SIGALRM 2 ms after the previous handler finished runs a handler (installed without SA_RESTART) that opens a TCP
//! connection to the echo server `DST` with socket(2)/connect(2) — the library's hook, in signal
//! context, interrupting whatever the thread was doing, the library's own connect included —
//! echoes 64 bytes and checks them and getpeername. Meanwhile the main thread and two others
//! connect in a loop the same way. After SECS seconds it prints one line of counters:
//! `main=N threads=N handler=N handler_failed=N (while interrupting connect: N) last_errno=E
//! bad=N` and exits 0 (the test
//! judges the counters); a deadlock shows as the test's deadline.
//!
//! With NAME, the main thread instead looks NAME up with getaddrinfo(3) again and again (a slow
//! local lookup: the test points it at a name server that never answers), no other thread
//! runs, and the handler's connections interrupt the library's getaddrinfo hook; the line then
//! ends with `in_lookup=N`, the handler connections made while the main thread was inside
//! getaddrinfo, and `again=N unreachable=N`, the handler connections that failed with EAGAIN
//! and with ENETUNREACH/EHOSTUNREACH (a connect that went direct).
//!
//! The library's settings are read before the first alarm (a lookup of localhost), unless a
//! fourth argument `early` asks for the first alarm to come first: then the handlers interrupt
//! the library's first reading of its settings.
//!
//! Only async-signal-safe calls are made in the handler (the library is the thing under
//! test). Python cannot do this: its signal handlers run later, between bytecodes.
//!
//! Not here: the assertions (the test).

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socks_e2e::alarm::{self, errno, set_errno};

static DST: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER_BUSY: AtomicBool = AtomicBool::new(false);
static HANDLER_OK: AtomicU32 = AtomicU32::new(0);
static HANDLER_FAILED: AtomicU32 = AtomicU32::new(0);
static LAST_ERRNO: AtomicI32 = AtomicI32::new(0);
static BAD: AtomicU32 = AtomicU32::new(0);
/// Handler connections that failed while the thread they interrupted was inside connect(2).
static FAILED_IN_CONNECT: AtomicU32 = AtomicU32::new(0);

/// Handler connections (ok or not) made while the main thread was inside getaddrinfo.
static IN_LOOKUP_CONNECTS: AtomicU32 = AtomicU32::new(0);
/// Handler connections that failed with EAGAIN, and with ENETUNREACH or EHOSTUNREACH (what a
/// connect that went direct gets on the workstation, which has no route out).
static AGAIN: AtomicU32 = AtomicU32::new(0);
static UNREACHABLE: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// Whether this thread is inside connect(2) (const-initialised: safe to read in a handler).
    static IN_CONNECT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Whether this thread is inside getaddrinfo(3).
    static IN_LOOKUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The destination as a sockaddr_in, from the packed atomic (no allocation, signal-safe).
fn destination() -> libc::sockaddr_in {
    alarm::sockaddr_in(DST.load(Ordering::Relaxed))
}

/// One connection, echo and getpeername check with raw calls only: Ok, or Err(errno), or
/// Err(0) for wrong bytes or a wrong peer.
fn roundtrip(tag: u8) -> Result<(), i32> {
    let dst = destination();
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain system calls on a descriptor this function owns; every pointer is to a
    // local of the stated size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(errno());
        }
        let result = (|| {
            let addr = (&dst as *const libc::sockaddr_in).cast::<libc::sockaddr>();
            let outer = IN_CONNECT.with(|c| c.replace(true));
            let rc = libc::connect(fd, addr, len);
            IN_CONNECT.with(|c| c.set(outer));
            let mut rc = rc;
            while rc != 0 {
                match errno() {
                    libc::EINTR => {}
                    // An interrupted connect goes on in the background: wait for it.
                    libc::EALREADY | libc::EINPROGRESS => {
                        let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                        libc::poll(&mut pfd, 1, 10_000);
                    }
                    libc::EISCONN => break,
                    e => return Err(e),
                }
                rc = libc::connect(fd, addr, len);
            }
            let mut peer: libc::sockaddr_in = std::mem::zeroed();
            let mut peer_len = len;
            let rc =
                libc::getpeername(fd, (&mut peer as *mut libc::sockaddr_in).cast(), &mut peer_len);
            if rc != 0
                || peer.sin_port != dst.sin_port
                || peer.sin_addr.s_addr != dst.sin_addr.s_addr
            {
                return Err(0);
            }
            let out = [tag; 64];
            let mut sent = 0;
            while sent < out.len() {
                let n = libc::write(fd, out[sent..].as_ptr().cast(), out.len() - sent);
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                if n <= 0 {
                    return Err(errno());
                }
                sent += n as usize;
            }
            let mut back = [0u8; 64];
            let mut got = 0;
            while got < back.len() {
                let n = libc::read(fd, back[got..].as_mut_ptr().cast(), back.len() - got);
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                if n <= 0 {
                    return Err(if n == 0 { 0 } else { errno() });
                }
                got += n as usize;
            }
            if back != out {
                return Err(0);
            }
            Ok(())
        })();
        libc::close(fd);
        result
    }
}

extern "C" fn on_alarm(_signal: libc::c_int) {
    let saved = errno();
    let interrupted_connect = IN_CONNECT.with(|c| c.get());
    if !HANDLER_BUSY.swap(true, Ordering::SeqCst) {
        if IN_LOOKUP.with(|c| c.get()) {
            IN_LOOKUP_CONNECTS.fetch_add(1, Ordering::Relaxed);
        }
        match roundtrip(b'h') {
            Ok(()) => HANDLER_OK.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                LAST_ERRNO.store(e, Ordering::Relaxed);
                match e {
                    libc::EAGAIN => AGAIN.fetch_add(1, Ordering::Relaxed),
                    libc::ENETUNREACH | libc::EHOSTUNREACH => {
                        UNREACHABLE.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => 0,
                };
                if interrupted_connect {
                    FAILED_IN_CONNECT.fetch_add(1, Ordering::Relaxed);
                }
                HANDLER_FAILED.fetch_add(1, Ordering::Relaxed)
            }
        };
        HANDLER_BUSY.store(false, Ordering::SeqCst);
    }
    if !STOP.load(Ordering::SeqCst) {
        alarm::arm();
    }
    set_errno(saved);
}

fn worker(tag: u8) -> u32 {
    let mut done = 0;
    while !STOP.load(Ordering::Relaxed) {
        match roundtrip(tag) {
            Ok(()) => done += 1,
            Err(_) => {
                BAD.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    done
}

/// One getaddrinfo(3) of `name` (its answer does not matter, only that it takes time).
fn look_up(name: &std::ffi::CStr) {
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    IN_LOOKUP.with(|c| c.set(true));
    // SAFETY: a NUL-terminated name, no service, no hints, a valid out-pointer.
    let rc =
        unsafe { libc::getaddrinfo(name.as_ptr(), std::ptr::null(), std::ptr::null(), &mut res) };
    IN_LOOKUP.with(|c| c.set(false));
    if rc == 0 {
        // SAFETY: the list getaddrinfo returned, freed once.
        unsafe { libc::freeaddrinfo(res) };
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let lookup = args.get(3).and_then(|n| std::ffi::CString::new(n.as_str()).ok());
    let (Some(dst), Some(secs)) = (
        args.get(1).and_then(|a| a.parse::<SocketAddrV4>().ok()),
        args.get(2).and_then(|a| a.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: signal-connect IPV4:PORT SECONDS [NAME [early]]");
        std::process::exit(2);
    };
    DST.store(alarm::pack(dst), Ordering::Relaxed);
    // The library reads its settings at its first call, and a connect from a handler that
    // interrupts that read fails closed (EAGAIN: no rules yet), which is not what this
    // program tests unless asked (`early`): otherwise the settings are read before the first
    // alarm, by a lookup the library answers locally.
    if args.get(4).map(String::as_str) != Some("early") {
        look_up(c"localhost");
    }
    alarm::install(on_alarm);
    let workers = if lookup.is_some() { 0 } else { 2u8 };
    let threads: Vec<_> =
        (0..workers).map(|k| std::thread::spawn(move || worker(b't' + k))).collect();
    alarm::arm();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut main = 0;
    while Instant::now() < deadline {
        if let Some(name) = &lookup {
            look_up(name);
            main += 1;
            continue;
        }
        match roundtrip(b'm') {
            Ok(()) => main += 1,
            Err(_) => {
                BAD.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // No handler re-arms the timer once STOP is set.
    STOP.store(true, Ordering::SeqCst);
    alarm::disarm();
    let threads: u32 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    println!(
        "main={main} threads={threads} handler={} handler_failed={} (while interrupting connect: \
         {}) last_errno={} bad={} in_lookup={} again={} unreachable={}",
        HANDLER_OK.load(Ordering::Relaxed),
        HANDLER_FAILED.load(Ordering::Relaxed),
        FAILED_IN_CONNECT.load(Ordering::Relaxed),
        LAST_ERRNO.load(Ordering::Relaxed),
        BAD.load(Ordering::Relaxed),
        IN_LOOKUP_CONNECTS.load(Ordering::Relaxed),
        AGAIN.load(Ordering::Relaxed),
        UNREACHABLE.load(Ordering::Relaxed)
    );
}
