//! The exported resolver entry points: getaddrinfo, getnameinfo, gethostbyname(2)(_r),
//! gethostbyaddr(_r). A name the configuration sends through a SOCKS server gets fake
//! addresses (see `names`) and no DNS query; libc itself allocates every getaddrinfo result
//! (we ask it to parse the fake address), so freeaddrinfo needs no hook. Everything else goes
//! to the real functions. A remote name that gets no fake address (a full map, a panic while
//! planning) fails the lookup; it is never handed to the real resolver. Every export runs
//! inside `outcome::shield` (a panic: EAI_SYSTEM with errno EIO, a null hostent, or EIO). The
//! res_* family and getaddrinfo_a are in `resolv_hooks`. Also the library constructor, which
//! creates the shared name map before the program can fork.
//!
//! A lookup from a signal handler that interrupted the library in the same thread (or from a
//! name-service module the real resolver runs) is decided too, never handed to the real
//! resolver unseen (`Guard::enter_routed`), and without the heap: the plan, the shared map and
//! the hostent answers allocate nothing, so gethostbyname*(_r), gethostbyaddr*(_r) and
//! getnameinfo answer a fake address as usual; getaddrinfo's result must come from libc's
//! allocator, so a name resolved on the far side fails with `Cause::SignalContext`
//! (EAI_AGAIN) there. A name resolved locally goes to the real function, as it would without
//! the library.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};

use libc::{addrinfo, c_int, hostent, size_t, sockaddr, socklen_t};

use crate::config;
use crate::ffi::fakemap::{self, MapError, NAME_MAX};
use crate::ffi::hostent as answers;
use crate::ffi::real;
use crate::ffi::sockaddr::RawAddr;
use crate::guard::Guard;
use crate::log::{log, Level};
use crate::names::{self, Plan};
use crate::outcome::{shield, shield_resolver, Cause};

/// glibc's EAI_NODATA (not in every libc crate target).
const EAI_NODATA: c_int = -5;

/// Whether a real resolver failure means "not found here", so remote resolution may follow.
fn not_found(rc: c_int) -> bool {
    matches!(rc, libc::EAI_NONAME | libc::EAI_AGAIN | libc::EAI_FAIL | EAI_NODATA)
}

/// The plan for a C name: `Ok(None)` when it is not ours to decide (not UTF-8),
/// `Err(Cause::Panic)` when planning panicked (the lookup then fails: it might have been a
/// remote name).
///
/// # Safety
/// `name` must be a NUL-terminated string (checked non-null by callers).
pub(crate) unsafe fn plan_for(
    name: *const c_char,
    family: c_int,
) -> Result<Option<(String, Plan)>, Cause> {
    // SAFETY: callers pass a NUL-terminated string (checked non-null).
    let Ok(name) = unsafe { CStr::from_ptr(name) }.to_str() else { return Ok(None) };
    match catch_unwind(|| names::plan(config::settings(), name, family)) {
        Ok(plan) => Ok(Some((name.to_string(), plan))),
        Err(_) => Err(Cause::Panic),
    }
}

/// The plan for a C name without the heap (no copy of the name): `None` when it is not ours
/// to decide (not UTF-8). Before the settings are loaded every name but a numeric address is
/// planned remote, so the caller fails closed.
///
/// # Safety
/// `name` must be a non-null, NUL-terminated string.
unsafe fn plan_without_heap(name: *const c_char, family: c_int) -> Option<Plan> {
    // SAFETY: as the caller guarantees.
    let name = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
    if !config::loaded() {
        // No rules yet (reading them takes the heap): any name but an address may be remote.
        let numeric = name.parse::<IpAddr>().is_ok();
        return Some(if numeric { Plan::Local } else { Plan::Fake { v4: true, v6: true } });
    }
    Some(names::plan(config::settings(), name, family))
}

/// getaddrinfo(3).
///
/// # Safety
/// As getaddrinfo(3).
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(Cause::Panic.eai(), || unsafe { getaddrinfo_unshielded(node, service, hints, res) })
}

/// The work of [`getaddrinfo`], run inside the shield.
///
/// # Safety
/// As [`getaddrinfo`].
unsafe fn getaddrinfo_unshielded(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees (in every use below).
    let real_call = || unsafe { real::getaddrinfo(node, service, hints, res) };
    let guard = Guard::enter_routed();
    if node.is_null() || res.is_null() {
        return real_call();
    }
    // SAFETY: `hints` is null or points to an addrinfo, as getaddrinfo requires.
    let (family, flags) = match unsafe { hints.as_ref() } {
        Some(h) => (h.ai_family, h.ai_flags),
        None => (libc::AF_UNSPEC, 0),
    };
    if flags & libc::AI_NUMERICHOST != 0 {
        return real_call();
    }
    if guard.is_nested() {
        // A fake answer is an addrinfo list from libc's allocator: not here (no heap).
        // SAFETY: `node` is non-null and NUL-terminated, as getaddrinfo requires.
        return match unsafe { plan_without_heap(node, family) } {
            None | Some(Plan::Local) => real_call(),
            Some(Plan::LocalThenFake { .. }) => match real_call() {
                rc if rc == 0 || !not_found(rc) => rc,
                _ => Cause::SignalContext.eai(),
            },
            Some(Plan::Fake { .. }) => {
                log!(Level::Info, "resolve in a signal handler inside the library: EAI_AGAIN");
                Cause::SignalContext.eai()
            }
        };
    }
    // SAFETY: `node` is non-null and NUL-terminated, as getaddrinfo requires.
    let (name, plan) = match unsafe { plan_for(node, family) } {
        Ok(Some(planned)) => planned,
        Ok(None) => return real_call(),
        Err(cause) => return cause.eai(),
    };
    match plan {
        Plan::Local => real_call(),
        // SAFETY: as above.
        Plan::Fake { v4, v6 } => unsafe { fake_addrinfo(&name, v4, v6, service, hints, res) },
        Plan::LocalThenFake { v4, v6 } => {
            let rc = real_call();
            if rc == 0 || !not_found(rc) {
                return rc;
            }
            // SAFETY: as above.
            unsafe { fake_addrinfo(&name, v4, v6, service, hints, res) }
        }
    }
}

/// The cause of a name's getting no fake address (the full map said once, even without
/// SOCKS_LOG).
pub(crate) fn map_error(name: &str, error: MapError) -> Cause {
    match error {
        MapError::Full => {
            // Said once even without SOCKS_LOG: lookups now fail for a reason the program
            // cannot know.
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                crate::log::write_line(format_args!(
                    "resolve {name}: the fake address map is full ({} names); new names cannot be resolved",
                    fakemap::CAPACITY
                ));
            }
            Cause::MapFull
        }
        MapError::Unavailable => {
            log!(
                Level::Error,
                "resolve {name}: no fake address map, or no room for a new name in its file system"
            );
            Cause::MapUnavailable
        }
        MapError::BadName => Cause::BadName,
    }
}

/// The answer for a name resolved remotely: libc parses the fake addresses (so it owns the
/// memory), then the canonical name, if asked for, is set to the real name.
///
/// # Safety
/// As getaddrinfo(3).
unsafe fn fake_addrinfo(
    name: &str,
    v4: bool,
    v6: bool,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let fakes = match names::fakes_for(config::settings(), name) {
        Ok(fakes) => fakes,
        Err(e) => return map_error(name, e).eai(),
    };
    log!(Level::Debug, "resolve {name}: remote, as {} / {}", fakes.v4, fakes.v6);
    // SAFETY: `hints` is null or valid; a zeroed addrinfo is the documented default.
    let mut numeric: addrinfo =
        unsafe { hints.as_ref().copied().unwrap_or_else(|| std::mem::zeroed()) };
    numeric.ai_flags =
        (numeric.ai_flags | libc::AI_NUMERICHOST) & !(libc::AI_ADDRCONFIG | libc::AI_V4MAPPED);
    let mut head: *mut addrinfo = null_mut();
    let mut tail: *mut *mut addrinfo = &mut head;
    let wanted =
        [(v4, fakes.v4.to_string(), libc::AF_INET), (v6, fakes.v6.to_string(), libc::AF_INET6)];
    for (_, text, family) in wanted.iter().filter(|w| w.0) {
        numeric.ai_family = *family;
        let Ok(text) = CString::new(text.as_str()) else { continue };
        let mut list: *mut addrinfo = null_mut();
        // SAFETY: valid strings, hints and out-pointer.
        let rc = unsafe { real::getaddrinfo(text.as_ptr(), service, &numeric, &mut list) };
        if rc != 0 {
            if !head.is_null() {
                // SAFETY: `head` came from getaddrinfo and is freed once.
                unsafe { real::freeaddrinfo(head) };
            }
            return rc;
        }
        // SAFETY: `tail` points at the last `ai_next` (or `head`); lists are well formed.
        unsafe {
            *tail = list;
            while !(*tail).is_null() {
                tail = &mut (**tail).ai_next;
            }
        }
    }
    if head.is_null() {
        return libc::EAI_NONAME;
    }
    // SAFETY: `head` is a valid list; glibc frees ai_canonname with free(), so a strdup'd
    // string may take its place.
    unsafe {
        if !(*head).ai_canonname.is_null() {
            if let Ok(cname) = CString::new(name) {
                libc::free((*head).ai_canonname.cast());
                (*head).ai_canonname = libc::strdup(cname.as_ptr());
            }
        }
        *res = head;
    }
    0
}

/// getnameinfo(3): a fake address's host name is the name it stands for.
///
/// # Safety
/// As getnameinfo(3).
#[no_mangle]
pub unsafe extern "C" fn getnameinfo(
    sa: *const sockaddr,
    salen: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(Cause::Panic.eai(), || unsafe {
        getnameinfo_unshielded(sa, salen, host, hostlen, serv, servlen, flags)
    })
}

/// The work of [`getnameinfo`], run inside the shield.
///
/// # Safety
/// As [`getnameinfo`].
unsafe fn getnameinfo_unshielded(
    sa: *const sockaddr,
    salen: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::getnameinfo(sa, salen, host, hostlen, serv, servlen, flags) };
    // Nested or not, the work below allocates nothing; but with no settings yet there is no
    // fake range to know (reading them takes the heap): an address's name is libc's.
    let guard = Guard::enter_routed();
    if guard.is_nested() && !config::loaded() {
        return real_call();
    }
    if host.is_null() || hostlen == 0 || flags & libc::NI_NUMERICHOST != 0 {
        return real_call();
    }
    // SAFETY: the caller guarantees `salen` readable bytes at `sa`.
    let Some(addr) = (unsafe { RawAddr::from_ptr(sa, salen) }).and_then(|r| r.socket_addr()) else {
        return real_call();
    };
    let mut buf = [0u8; NAME_MAX];
    let name = catch_unwind(AssertUnwindSafe(|| {
        names::name_of(config::settings(), addr.ip(), &mut buf).map(str::len)
    }));
    let Ok(Some(len)) = name else { return real_call() };
    if len + 1 > hostlen as usize {
        return Cause::AnswerTooLong.eai();
    }
    // SAFETY: `host` is writable for `hostlen` bytes, which hold the name and its NUL.
    unsafe {
        std::ptr::copy_nonoverlapping(buf.as_ptr(), host.cast::<u8>(), len);
        *host.add(len) = 0;
    }
    if !serv.is_null() && servlen > 0 {
        // SAFETY: the service part only, under the caller's guarantees.
        return unsafe { real::getnameinfo(sa, salen, null_mut(), 0, serv, servlen, flags) };
    }
    0
}

/// A fake answer for the gethostby* functions, in fixed buffers (no heap).
struct FakeAnswer {
    name: [u8; NAME_MAX],
    name_len: usize,
    family: c_int,
    address: [u8; 16],
    len: usize,
}

impl FakeAnswer {
    /// The answer naming `name` (at most NAME_MAX bytes, as every name in the map) with
    /// `address` (4 or 16 bytes) of `family`.
    fn new(name: &str, family: c_int, address: &[u8]) -> Option<FakeAnswer> {
        let mut answer = FakeAnswer {
            name: [0; NAME_MAX],
            name_len: name.len(),
            family,
            address: [0; 16],
            len: address.len(),
        };
        answer.name.get_mut(..name.len())?.copy_from_slice(name.as_bytes());
        answer.address.get_mut(..address.len())?.copy_from_slice(address);
        Some(answer)
    }

    /// The fake answer for `name` in `af` (AF_INET or AF_INET6), claiming its entry in the map.
    fn for_name(name: &str, af: c_int) -> Result<FakeAnswer, Cause> {
        let fakes = names::fakes_for(config::settings(), name).map_err(|e| map_error(name, e))?;
        let answer = if af == libc::AF_INET6 {
            FakeAnswer::new(name, af, &fakes.v6.octets())
        } else {
            FakeAnswer::new(name, af, &fakes.v4.octets())
        };
        answer.ok_or(Cause::BadName)
    }

    fn name(&self) -> &str {
        // Copied from a `&str` whole, so always UTF-8.
        std::str::from_utf8(&self.name[..self.name_len]).unwrap_or_default()
    }
}

/// How to answer gethostbyname(2)(_r) for `name` in `af`.
enum HostPlan {
    Real,
    Fake(FakeAnswer),
    RealThenFake(FakeAnswer),
    /// A remote name that gets no fake address (full map, planning panicked): fail for this
    /// cause (errno, h_errno), never ask the local resolver.
    Fail(Cause),
}

/// How to answer gethostbyname(2)(_r) for `name` in `af`.
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
unsafe fn host_plan(name: *const c_char, af: c_int) -> HostPlan {
    if name.is_null() || (af != libc::AF_INET && af != libc::AF_INET6) {
        return HostPlan::Real;
    }
    // SAFETY: checked non-null; the caller passes a NUL-terminated name.
    let (name, plan) = match unsafe { plan_for(name, af) } {
        Ok(Some(planned)) => planned,
        Ok(None) => return HostPlan::Real,
        Err(cause) => return HostPlan::Fail(cause),
    };
    let answer = |name: String| FakeAnswer::for_name(&name, af);
    let planned = catch_unwind(AssertUnwindSafe(|| match plan {
        Plan::Local => HostPlan::Real,
        Plan::Fake { .. } => answer(name).map_or_else(HostPlan::Fail, HostPlan::Fake),
        // The local resolver may be asked first here: its answer (or failure) stands if the
        // name gets no fake address.
        Plan::LocalThenFake { .. } => answer(name).map_or(HostPlan::Real, HostPlan::RealThenFake),
    }));
    planned.unwrap_or(HostPlan::Fail(Cause::Panic))
}

fn static_answer(answer: &FakeAnswer) -> *mut hostent {
    answers::in_thread_storage(answer.name(), answer.family, &answer.address[..answer.len])
}

/// How to answer gethostbyname(2)(_r) for `name` in `af` without the heap (a signal handler
/// inside the library): the same decisions as [`host_plan`], with no copy of the name.
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
unsafe fn host_plan_without_heap(name: *const c_char, af: c_int) -> HostPlan {
    if name.is_null() || (af != libc::AF_INET && af != libc::AF_INET6) {
        return HostPlan::Real;
    }
    // SAFETY: checked non-null; the caller passes a NUL-terminated name.
    let Ok(name) = unsafe { CStr::from_ptr(name) }.to_str() else { return HostPlan::Real };
    if !config::loaded() {
        // No rules yet (reading them takes the heap): any name but an address may be remote.
        return if name.parse::<IpAddr>().is_ok() {
            HostPlan::Real
        } else {
            HostPlan::Fail(Cause::SignalContext)
        };
    }
    match names::plan(config::settings(), name, af) {
        Plan::Local => HostPlan::Real,
        Plan::Fake { .. } => {
            FakeAnswer::for_name(name, af).map_or_else(HostPlan::Fail, HostPlan::Fake)
        }
        Plan::LocalThenFake { .. } => {
            FakeAnswer::for_name(name, af).map_or(HostPlan::Real, HostPlan::RealThenFake)
        }
    }
}

/// gethostbyname(3).
///
/// # Safety
/// As gethostbyname(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield_resolver(null_mut(), || unsafe { gethostbyname_unshielded(name) })
}

/// The work of [`gethostbyname`], run inside the shield.
///
/// # Safety
/// As [`gethostbyname`].
unsafe fn gethostbyname_unshielded(name: *const c_char) -> *mut hostent {
    // SAFETY: the caller's name; the real call is forwarded under the caller's guarantees.
    unsafe { by_name(name, libc::AF_INET, || real::gethostbyname(name)) }
}

/// gethostbyname2(3).
///
/// # Safety
/// As gethostbyname2(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname2(name: *const c_char, af: c_int) -> *mut hostent {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield_resolver(null_mut(), || unsafe { gethostbyname2_unshielded(name, af) })
}

/// The work of [`gethostbyname2`], run inside the shield.
///
/// # Safety
/// As [`gethostbyname2`].
unsafe fn gethostbyname2_unshielded(name: *const c_char, af: c_int) -> *mut hostent {
    // SAFETY: the caller's name; the real call is forwarded under the caller's guarantees.
    unsafe { by_name(name, af, || real::gethostbyname2(name, af)) }
}

/// The common part of gethostbyname and gethostbyname2: a fake answer in this thread's storage
/// for a name resolved remotely, else the real function's.
///
/// # Safety
/// `name` must be null or a NUL-terminated string.
unsafe fn by_name(
    name: *const c_char,
    af: c_int,
    real_call: impl Fn() -> *mut hostent,
) -> *mut hostent {
    let guard = Guard::enter_routed();
    let plan = if guard.is_nested() {
        // SAFETY: as the caller guarantees.
        unsafe { host_plan_without_heap(name, af) }
    } else {
        // SAFETY: as the caller guarantees.
        unsafe { host_plan(name, af) }
    };
    match plan {
        HostPlan::Real => real_call(),
        HostPlan::Fail(cause) => {
            real::set_h_errno(cause.h_errno());
            real::set_errno(cause.errno());
            null_mut()
        }
        HostPlan::Fake(answer) => static_answer(&answer),
        HostPlan::RealThenFake(answer) => {
            let found = real_call();
            if found.is_null() {
                static_answer(&answer)
            } else {
                found
            }
        }
    }
}

/// Fills a caller's buffers with a fake answer, as the _r functions report results.
///
/// # Safety
/// As gethostbyname_r(3).
unsafe fn answer_r(
    answer: &FakeAnswer,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's buffers, as gethostbyname_r requires them.
    match unsafe {
        answers::fill(answer.name(), answer.family, &answer.address[..answer.len], ret, buf, buflen)
    } {
        Ok(()) => {
            // SAFETY: `result` is writable.
            unsafe { *result = ret };
            0
        }
        Err(errno) => {
            // SAFETY: `result` and `h_errnop` are writable (h_errnop may be null).
            unsafe {
                *result = null_mut();
                if !h_errnop.is_null() {
                    *h_errnop = Cause::Os(errno).h_errno();
                }
            }
            errno
        }
    }
}

/// gethostbyname_r(3).
///
/// # Safety
/// As gethostbyname_r(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname_r(
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(Cause::Panic.errno(), || unsafe {
        gethostbyname_r_unshielded(name, ret, buf, buflen, result, h_errnop)
    })
}

/// The work of [`gethostbyname_r`], run inside the shield.
///
/// # Safety
/// As [`gethostbyname_r`].
unsafe fn gethostbyname_r_unshielded(
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: forwarded under the caller's guarantees.
    let real_call = || unsafe { real::gethostbyname_r(name, ret, buf, buflen, result, h_errnop) };
    // SAFETY: as above.
    unsafe { by_name_r(name, libc::AF_INET, real_call, ret, buf, buflen, result, h_errnop) }
}

/// gethostbyname2_r(3).
///
/// # Safety
/// As gethostbyname2_r(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname2_r(
    name: *const c_char,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(Cause::Panic.errno(), || unsafe {
        gethostbyname2_r_unshielded(name, af, ret, buf, buflen, result, h_errnop)
    })
}

/// The work of [`gethostbyname2_r`], run inside the shield.
///
/// # Safety
/// As [`gethostbyname2_r`].
unsafe fn gethostbyname2_r_unshielded(
    name: *const c_char,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: forwarded under the caller's guarantees.
    let real_call =
        || unsafe { real::gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop) };
    // SAFETY: as above.
    unsafe { by_name_r(name, af, real_call, ret, buf, buflen, result, h_errnop) }
}

/// The common part of gethostbyname_r and gethostbyname2_r.
///
/// # Safety
/// As gethostbyname2_r(3).
#[allow(clippy::too_many_arguments)]
unsafe fn by_name_r(
    name: *const c_char,
    af: c_int,
    real_call: impl Fn() -> c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    let guard = Guard::enter_routed();
    let plan = if guard.is_nested() {
        // SAFETY: the caller's name, null or NUL-terminated.
        unsafe { host_plan_without_heap(name, af) }
    } else {
        // SAFETY: the caller's name, null or NUL-terminated.
        unsafe { host_plan(name, af) }
    };
    match plan {
        HostPlan::Real => real_call(),
        HostPlan::Fail(cause) => {
            // SAFETY: `result` is writable, `h_errnop` writable or null.
            unsafe {
                *result = null_mut();
                if !h_errnop.is_null() {
                    *h_errnop = cause.h_errno();
                }
            }
            real::set_errno(cause.errno());
            cause.errno()
        }
        // SAFETY: the caller's buffers.
        HostPlan::Fake(answer) => unsafe { answer_r(&answer, ret, buf, buflen, result, h_errnop) },
        HostPlan::RealThenFake(answer) => {
            let rc = real_call();
            // SAFETY: `result` was written by the real call.
            if rc == 0 && !unsafe { *result }.is_null() {
                return rc;
            }
            // SAFETY: as above.
            unsafe { answer_r(&answer, ret, buf, buflen, result, h_errnop) }
        }
    }
}

/// The fake answer for a reverse lookup of a fake address, if `addr` is one. Allocates
/// nothing (a panic is the export's shield's).
///
/// # Safety
/// `addr` must point to `len` readable bytes.
unsafe fn reverse_answer(addr: *const c_void, len: socklen_t, kind: c_int) -> Option<FakeAnswer> {
    let ip = match (kind, len) {
        // SAFETY: the caller guarantees `len` readable bytes at `addr`.
        (libc::AF_INET, 4) => IpAddr::from(unsafe { addr.cast::<[u8; 4]>().read_unaligned() }),
        // SAFETY: as above.
        (libc::AF_INET6, 16) => IpAddr::from(unsafe { addr.cast::<[u8; 16]>().read_unaligned() }),
        _ => return None,
    };
    let mut buf = [0u8; NAME_MAX];
    let name = names::name_of(config::settings(), ip, &mut buf)?;
    match ip {
        IpAddr::V4(v4) => FakeAnswer::new(name, kind, &v4.octets()),
        IpAddr::V6(v6) => FakeAnswer::new(name, kind, &v6.octets()),
    }
}

/// gethostbyaddr(3): a fake address's name is the name it stands for.
///
/// # Safety
/// As gethostbyaddr(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyaddr(
    addr: *const c_void,
    len: socklen_t,
    kind: c_int,
) -> *mut hostent {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield_resolver(null_mut(), || unsafe { gethostbyaddr_unshielded(addr, len, kind) })
}

/// The work of [`gethostbyaddr`], run inside the shield.
///
/// # Safety
/// As [`gethostbyaddr`].
unsafe fn gethostbyaddr_unshielded(
    addr: *const c_void,
    len: socklen_t,
    kind: c_int,
) -> *mut hostent {
    // SAFETY: forwarded under the caller's guarantees.
    let real_call = || unsafe { real::gethostbyaddr(addr, len, kind) };
    // Nested or not, the work below allocates nothing; but with no settings yet there is no
    // fake range to know (reading them takes the heap): an address's name is libc's.
    let guard = Guard::enter_routed();
    if guard.is_nested() && !config::loaded() {
        return real_call();
    }
    if addr.is_null() {
        return real_call();
    }
    // SAFETY: the caller guarantees `len` readable bytes at `addr` (checked non-null).
    match unsafe { reverse_answer(addr, len, kind) } {
        Some(answer) => static_answer(&answer),
        None => real_call(),
    }
}

/// gethostbyaddr_r(3).
///
/// # Safety
/// As gethostbyaddr_r(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyaddr_r(
    addr: *const c_void,
    len: socklen_t,
    kind: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(Cause::Panic.errno(), || unsafe {
        gethostbyaddr_r_unshielded(addr, len, kind, ret, buf, buflen, result, h_errnop)
    })
}

/// The work of [`gethostbyaddr_r`], run inside the shield.
///
/// # Safety
/// As [`gethostbyaddr_r`].
#[allow(clippy::too_many_arguments)]
unsafe fn gethostbyaddr_r_unshielded(
    addr: *const c_void,
    len: socklen_t,
    kind: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    // SAFETY: forwarded under the caller's guarantees.
    let real_call =
        || unsafe { real::gethostbyaddr_r(addr, len, kind, ret, buf, buflen, result, h_errnop) };
    // Nested or not, the work below allocates nothing; but with no settings yet there is no
    // fake range to know (reading them takes the heap): an address's name is libc's.
    let guard = Guard::enter_routed();
    if guard.is_nested() && !config::loaded() {
        return real_call();
    }
    if addr.is_null() {
        return real_call();
    }
    // SAFETY: the caller guarantees `len` readable bytes at `addr` (checked non-null).
    match unsafe { reverse_answer(addr, len, kind) } {
        // SAFETY: as above.
        Some(answer) => unsafe { answer_r(&answer, ret, buf, buflen, result, h_errnop) },
        None => real_call(),
    }
}
