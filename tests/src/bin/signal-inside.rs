//! `signal-inside MODE TARGET SECS SLOWNAME [early]`: a test program for the library (run under it by
//! tests/tests/everywhere.rs) whose SIGALRM handler sends or looks a name up while the thread
//! it interrupts is inside the library's getaddrinfo hook. The main thread looks SLOWNAME up
//! again and again (a slow local lookup: the test points the workstation's resolver at a name
//! server that never answers), and a SIGALRM 2 ms after the previous handler finished (no
//! SA_RESTART) runs the handler:
//!
//! - `udp IPV4:PORT`: a UDP socket that already has its association (one datagram sent and
//!   echoed before the timer starts) sends a datagram to TARGET from the handler, with
//!   sendto, sendmsg and sendmmsg in turn;
//! - `udp-fresh IPV4:PORT`: the handler sends with sendto on a new UDP socket each time (no
//!   association yet: one cannot be made without the heap);
//! - `fastopen IPV4:PORT`: the handler sends 64 bytes with sendto(MSG_FASTOPEN) on a new TCP
//!   socket to the echo server TARGET and reads them back;
//! - `resolve NAME`: the handler looks NAME up with getaddrinfo, gethostbyname,
//!   gethostbyname_r and res_query (type A) in turn.
//!
//! After SECS seconds it prints one line: `handler=N handler_failed=N in_lookup=N
//! last_errno=E main=N failed_eagain=N failed_unreachable=N` (handler calls that failed with
//! EAGAIN, and with ENETUNREACH/EHOSTUNREACH: a connection that went direct) and, for `resolve`, ` fake=N again=N other=N last_other=TEXT` (answers
//! with an address in the default fake range 198.18.0.0/15; EAI_AGAIN or TRY_AGAIN; anything
//! else), and exits 0; the test judges the counters.
//!
//! The library's settings are read before the first alarm (a lookup of localhost), unless a
//! fifth argument `early` asks for the first alarm to come first: then the handlers interrupt
//! the library's first reading of its settings.
//!
//! Only async-signal-safe calls are made in the handler apart from the calls under test (the
//! library is the thing under test), and nothing in it allocates.
//!
//! Not here: the assertions (the test), connects from handlers (`signal-connect`).

use std::ffi::{c_char, c_int, CStr, CString};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socks_e2e::alarm::{self, errno, set_errno};

/// The modes (see the module documentation).
const UDP: u32 = 1;
const UDP_FRESH: u32 = 2;
const FAST_OPEN: u32 = 3;
const RESOLVE: u32 = 4;

static MODE: AtomicU32 = AtomicU32::new(0);
static DST: AtomicU64 = AtomicU64::new(0);
/// The associated UDP socket (`udp`).
static SOCKET: AtomicI32 = AtomicI32::new(-1);
/// The name to look up (`resolve`), NUL-terminated, leaked for the life of the process.
static NAME: AtomicPtr<c_char> = AtomicPtr::new(std::ptr::null_mut());
static HANDLER_BUSY: AtomicBool = AtomicBool::new(false);
/// Set at the end: handlers stop re-arming the timer.
static STOP: AtomicBool = AtomicBool::new(false);
static TURN: AtomicU32 = AtomicU32::new(0);
static HANDLER_OK: AtomicU32 = AtomicU32::new(0);
static HANDLER_FAILED: AtomicU32 = AtomicU32::new(0);
static LAST_ERRNO: AtomicI32 = AtomicI32::new(0);
/// Handler calls that failed with EAGAIN, and with ENETUNREACH or EHOSTUNREACH (what a
/// connection that went direct gets on the workstation, which has no route out).
static FAILED_EAGAIN: AtomicU32 = AtomicU32::new(0);
static FAILED_UNREACHABLE: AtomicU32 = AtomicU32::new(0);
static IN_LOOKUP_CALLS: AtomicU32 = AtomicU32::new(0);
static FAKE: AtomicU32 = AtomicU32::new(0);
static AGAIN: AtomicU32 = AtomicU32::new(0);
static OTHER: AtomicU32 = AtomicU32::new(0);
/// The last "other" resolver result: which call (1..=4) times 10,000 plus its code + 5,000.
static LAST_OTHER: AtomicI32 = AtomicI32::new(0);

thread_local! {
    /// Whether this thread is inside getaddrinfo(3).
    static IN_LOOKUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// netdb.h's TRY_AGAIN.
const TRY_AGAIN: c_int = 2;

extern "C" {
    fn __h_errno_location() -> *mut c_int;
    fn gethostbyname(name: *const c_char) -> *mut libc::hostent;
    fn gethostbyname_r(
        name: *const c_char,
        ret: *mut libc::hostent,
        buf: *mut c_char,
        buflen: usize,
        result: *mut *mut libc::hostent,
        h_errnop: *mut c_int,
    ) -> c_int;
    fn res_query(
        name: *const c_char,
        class: c_int,
        kind: c_int,
        answer: *mut u8,
        len: c_int,
    ) -> c_int;
}

fn h_errno() -> i32 {
    // SAFETY: glibc's h_errno slot for this thread, always valid.
    unsafe { *__h_errno_location() }
}

/// The destination as a sockaddr_in, from the packed atomic (no allocation, signal-safe).
fn destination() -> libc::sockaddr_in {
    alarm::sockaddr_in(DST.load(Ordering::Relaxed))
}

const SOCKADDR_IN_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as _;

/// One datagram on `fd` to the destination, with sendto, sendmsg or sendmmsg as `turn` says.
fn send_datagram(fd: c_int, turn: u32) -> Result<(), i32> {
    let dst = destination();
    let payload = *b"from a signal handler";
    let addr = (&dst as *const libc::sockaddr_in).cast::<libc::sockaddr>();
    // SAFETY: every pointer is to a local of the stated size.
    let rc = unsafe {
        let mut iov =
            libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr as *mut libc::c_void;
        msg.msg_namelen = SOCKADDR_IN_LEN;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        match turn % 3 {
            0 => libc::sendto(fd, payload.as_ptr().cast(), payload.len(), 0, addr, SOCKADDR_IN_LEN),
            1 => libc::sendmsg(fd, &msg, 0),
            _ => {
                let mut one = libc::mmsghdr { msg_hdr: msg, msg_len: 0 };
                match libc::sendmmsg(fd, &mut one, 1, 0) {
                    1 => one.msg_len as isize,
                    n => n as isize,
                }
            }
        }
    };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// A new UDP socket, one datagram with sendto, closed.
fn send_fresh() -> Result<(), i32> {
    // SAFETY: a plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return Err(errno());
    }
    let result = send_datagram(fd, 0);
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    result
}

/// A new TCP socket: 64 bytes with sendto(MSG_FASTOPEN) to the echo server, read back.
fn fast_open() -> Result<(), i32> {
    let dst = destination();
    // SAFETY: plain system calls on a descriptor this function owns; every pointer is to a
    // local of the stated size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(errno());
        }
        let result = (|| {
            let out = [b'f'; 64];
            let addr = (&dst as *const libc::sockaddr_in).cast::<libc::sockaddr>();
            let mut sent = libc::sendto(
                fd,
                out.as_ptr().cast(),
                out.len(),
                libc::MSG_FASTOPEN,
                addr,
                SOCKADDR_IN_LEN,
            );
            while sent < 0 && errno() == libc::EINTR {
                sent = libc::send(fd, out.as_ptr().cast(), out.len(), 0);
            }
            if sent < 0 {
                return Err(errno());
            }
            let mut sent = sent as usize;
            while sent < out.len() {
                let n = libc::send(fd, out[sent..].as_ptr().cast(), out.len() - sent, 0);
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

/// Whether the 4 bytes at `addr` are in 198.18.0.0/15.
fn fake_v4(addr: &[u8]) -> bool {
    addr.len() >= 4 && addr[0] == 198 && addr[1] & 0xfe == 18
}

/// How a lookup came out: a fake address, "try again", or something else (with its code).
enum Looked {
    Fake,
    Again,
    Other(i32),
}

/// One lookup of NAME with the call `turn` names.
fn resolve(turn: u32) -> (u32, Looked) {
    let name = NAME.load(Ordering::Relaxed).cast_const();
    let which = turn % 4;
    // SAFETY: NAME is a NUL-terminated string that lives as long as the process; every out
    // pointer is to a local of the stated size.
    let looked = unsafe {
        match which {
            0 => {
                let hints = libc::addrinfo {
                    ai_family: libc::AF_INET,
                    ai_socktype: libc::SOCK_STREAM,
                    ..std::mem::zeroed()
                };
                let mut res: *mut libc::addrinfo = std::ptr::null_mut();
                match libc::getaddrinfo(name, std::ptr::null(), &hints, &mut res) {
                    0 => {
                        let sin = (*res).ai_addr.cast::<libc::sockaddr_in>();
                        let octets = u32::from_be((*sin).sin_addr.s_addr).to_be_bytes();
                        // The list is freed only outside the handler's rules: it is libc's,
                        // and freeing needs the heap; leak it (this is a test).
                        if fake_v4(&octets) {
                            Looked::Fake
                        } else {
                            Looked::Other(0)
                        }
                    }
                    libc::EAI_AGAIN => Looked::Again,
                    rc => Looked::Other(rc),
                }
            }
            1 => {
                let entry = gethostbyname(name);
                if entry.is_null() {
                    match h_errno() {
                        TRY_AGAIN => Looked::Again,
                        h => Looked::Other(h),
                    }
                } else {
                    let first = *(*entry).h_addr_list;
                    let octets = std::slice::from_raw_parts(first.cast::<u8>(), 4);
                    if fake_v4(octets) {
                        Looked::Fake
                    } else {
                        Looked::Other(0)
                    }
                }
            }
            2 => {
                let mut entry: libc::hostent = std::mem::zeroed();
                let mut buf = [0 as c_char; 1024];
                let mut result: *mut libc::hostent = std::ptr::null_mut();
                let mut h = 0;
                let rc = gethostbyname_r(
                    name,
                    &mut entry,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                    &mut h,
                );
                if rc == 0 && !result.is_null() {
                    let first = *(*result).h_addr_list;
                    let octets = std::slice::from_raw_parts(first.cast::<u8>(), 4);
                    if fake_v4(octets) {
                        Looked::Fake
                    } else {
                        Looked::Other(0)
                    }
                } else if h == TRY_AGAIN {
                    Looked::Again
                } else {
                    Looked::Other(if rc != 0 { rc } else { h })
                }
            }
            _ => {
                let mut answer = [0u8; 512];
                let n = res_query(name, 1, 1, answer.as_mut_ptr(), answer.len() as c_int);
                if n > 0 {
                    // The answer's last four bytes are the A record's address.
                    if fake_v4(&answer[n as usize - 4..n as usize]) {
                        Looked::Fake
                    } else {
                        Looked::Other(0)
                    }
                } else {
                    match h_errno() {
                        TRY_AGAIN => Looked::Again,
                        h => Looked::Other(h),
                    }
                }
            }
        }
    };
    (which, looked)
}

extern "C" fn on_alarm(_signal: c_int) {
    let saved = errno();
    if !HANDLER_BUSY.swap(true, Ordering::SeqCst) {
        let in_lookup = IN_LOOKUP.with(|c| c.get());
        if in_lookup {
            IN_LOOKUP_CALLS.fetch_add(1, Ordering::Relaxed);
        }
        let turn = TURN.fetch_add(1, Ordering::Relaxed);
        let result = match MODE.load(Ordering::Relaxed) {
            UDP => send_datagram(SOCKET.load(Ordering::Relaxed), turn),
            UDP_FRESH => send_fresh(),
            FAST_OPEN => fast_open(),
            _ => {
                match resolve(turn) {
                    (_, Looked::Fake) => FAKE.fetch_add(1, Ordering::Relaxed),
                    (_, Looked::Again) => AGAIN.fetch_add(1, Ordering::Relaxed),
                    (which, Looked::Other(code)) => {
                        LAST_OTHER
                            .store((which as i32 + 1) * 10_000 + code + 5_000, Ordering::Relaxed);
                        OTHER.fetch_add(1, Ordering::Relaxed)
                    }
                };
                Ok(())
            }
        };
        match result {
            Ok(()) => HANDLER_OK.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                LAST_ERRNO.store(e, Ordering::Relaxed);
                match e {
                    libc::EAGAIN => FAILED_EAGAIN.fetch_add(1, Ordering::Relaxed),
                    libc::ENETUNREACH | libc::EHOSTUNREACH => {
                        FAILED_UNREACHABLE.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => 0,
                };
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

/// One getaddrinfo(3) of `name` (its answer does not matter, only that it takes time).
fn look_up(name: &CStr) {
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

/// The association for `udp`: one datagram to the destination and its echo, outside any
/// handler.
fn associate() -> c_int {
    // SAFETY: a plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0, "socket: errno {}", errno());
    send_datagram(fd, 0).unwrap_or_else(|e| panic!("the first datagram failed: errno {e}"));
    let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
    let mut back = [0u8; 64];
    // SAFETY: valid option value and buffer.
    let n = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        libc::recv(fd, back.as_mut_ptr().cast(), back.len(), 0)
    };
    assert!(n > 0, "the first datagram's echo did not come back: errno {}", errno());
    fd
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!(
            "usage: signal-inside udp|udp-fresh|fastopen|resolve TARGET SECONDS SLOWNAME [early]"
        );
        std::process::exit(2);
    };
    let (Some(mode), Some(target), Some(secs), Some(slow)) = (
        args.get(1),
        args.get(2),
        args.get(3).and_then(|a| a.parse::<f64>().ok()),
        args.get(4).and_then(|n| CString::new(n.as_str()).ok()),
    ) else {
        usage()
    };
    let mode = match mode.as_str() {
        "udp" => UDP,
        "udp-fresh" => UDP_FRESH,
        "fastopen" => FAST_OPEN,
        "resolve" => RESOLVE,
        _ => usage(),
    };
    MODE.store(mode, Ordering::Relaxed);
    if mode == RESOLVE {
        let name = CString::new(target.as_str()).unwrap_or_else(|_| usage());
        NAME.store(name.into_raw(), Ordering::Relaxed);
    } else {
        let Ok(dst) = target.parse::<SocketAddrV4>() else { usage() };
        DST.store(alarm::pack(dst), Ordering::Relaxed);
    }
    // The library reads its settings at its first call; a handler that interrupts that read
    // meets no rules yet (connects, sends and lookups to the network fail closed:
    // shim/src/guard.rs), which is not what these modes test unless asked (`early`):
    // otherwise the settings are read before the first alarm, by a lookup the library
    // answers locally.
    if args.get(5).map(String::as_str) != Some("early") {
        look_up(c"localhost");
    }
    if mode == UDP {
        SOCKET.store(associate(), Ordering::Relaxed);
    }
    alarm::install(on_alarm);
    alarm::arm();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut main = 0;
    while Instant::now() < deadline {
        look_up(&slow);
        main += 1;
    }
    STOP.store(true, Ordering::SeqCst);
    alarm::disarm();
    let mut line = format!(
        "handler={} handler_failed={} in_lookup={} last_errno={} main={main} failed_eagain={} \
         failed_unreachable={}",
        HANDLER_OK.load(Ordering::Relaxed),
        HANDLER_FAILED.load(Ordering::Relaxed),
        IN_LOOKUP_CALLS.load(Ordering::Relaxed),
        LAST_ERRNO.load(Ordering::Relaxed),
        FAILED_EAGAIN.load(Ordering::Relaxed),
        FAILED_UNREACHABLE.load(Ordering::Relaxed),
    );
    if mode == RESOLVE {
        line += &format!(
            " fake={} again={} other={} last_other={}",
            FAKE.load(Ordering::Relaxed),
            AGAIN.load(Ordering::Relaxed),
            OTHER.load(Ordering::Relaxed),
            LAST_OTHER.load(Ordering::Relaxed)
        );
    }
    println!("{line}");
}
