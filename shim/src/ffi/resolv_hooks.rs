//! The resolver calls below getaddrinfo (issue 11, item 12): `res_query`, `res_search`,
//! `res_querydomain`, their `res_n*` forms with a resolver state, the `__res_*` names older
//! programs were linked against, `res_send`/`res_nsend` (whose question is read from the
//! message), and `getaddrinfo_a`. glibc calls its own resolver internally, not through these
//! symbols, so each must be hooked or a name resolved on the far side would be asked of the
//! local name server.
//!
//! For a name `names` resolves remotely: an A or AAAA question (class IN) is answered here with
//! a DNS message holding its fake address (`socks_proto::dns`); any other question is refused
//! (`Cause::RemoteQuestion`) — `res_*` return -1 with h_errno NO_RECOVERY (what glibc reports
//! for a REFUSED answer) and errno ECONNREFUSED, `res_send` returns a REFUSED response. With
//! `resolve local-then-remote` the local resolver is asked first and the fake answer is given
//! only when it fails. A full fake-address map refuses (`Cause::MapFull`). Nothing of such a
//! name ever reaches the local resolver. Every failure is a `Cause`, reported with its errno
//! and h_errno (`outcome::fail_resolver`); every export runs inside `outcome::shield_resolver`
//! (`shield` for getaddrinfo_a), so a panic is -1 with errno EIO and h_errno NO_RECOVERY.
//!
//! `getaddrinfo_a`: the requests for such names are resolved at once with the library's
//! getaddrinfo (fake addresses) and completed (`gai_error` reads their result); the others go
//! to libc's getaddrinfo_a, which notifies as the `sigevent` says once they are done. When every
//! request was ours and a notification was asked for, libc's getaddrinfo_a is given one
//! numeric request to complete and notify with (kept for the life of the process: a few hundred
//! bytes per such call), since the library starts no thread of its own.
//!
//! From a signal handler that interrupted the library in the same thread (`Guard::enter_routed`)
//! the same decisions are made without the heap, but an answer message cannot be built there:
//! a question a fake address would answer fails with `Cause::SignalContext` (-1, h_errno
//! TRY_AGAIN, errno EAGAIN), other questions about such a name are refused as usual, and names
//! resolved locally go to the real function. `res_send`/`res_nsend` and `getaddrinfo_a` cannot
//! even read their questions without the heap: there they fail with `SignalContext` whenever
//! names may be resolved on the far side at all.
//!
//! Not here: getaddrinfo and gethostbyname* (see `dns_hooks`), the message format (`socks_proto::dns`),
//! the decision for one question (`answers`, shared with `dnswire`).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr};

use libc::{addrinfo, c_int, sigevent};

use crate::answers::{resolve_question, Resolved, Style};
use crate::config;
use crate::ffi::dns_hooks;
use crate::ffi::fakemap::NAME_MAX;
use crate::ffi::real;
use crate::guard::Guard;
use crate::log::{log, Level};
use crate::names::{self, Plan};
use crate::outcome::{fail_resolver, shield, shield_resolver, Cause};
use socks_proto::dns::{
    self, CLASS_IN, RCODE_NXDOMAIN, RCODE_REFUSED, TYPE_A, TYPE_AAAA, TYPE_PTR,
};

/// netdb.h: getaddrinfo_a modes.
const GAI_WAIT: c_int = 0;

/// Copies `message` into the caller's answer buffer; its length, or -1 when it does not fit
/// (`Cause::AnswerTooLong`).
///
/// # Safety
/// `answer` must be writable for `anslen` bytes.
unsafe fn deliver(message: &[u8], answer: *mut u8, anslen: c_int) -> c_int {
    if message.len() > usize::try_from(anslen).unwrap_or(0) {
        return fail_resolver(Cause::AnswerTooLong);
    }
    // SAFETY: the message fits in the caller's buffer (checked above).
    unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), answer, message.len()) };
    message.len() as c_int
}

/// The name a res_query-style call asks about: `name`, or `name.domain` for res_querydomain.
///
/// # Safety
/// `name` and `domain` are null or NUL-terminated.
unsafe fn full_name(name: *const c_char, domain: *const c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: NUL-terminated, as the caller guarantees.
    let name = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
    if domain.is_null() {
        return Some(name.to_string());
    }
    // SAFETY: as above.
    let domain = unsafe { CStr::from_ptr(domain) }.to_str().ok()?;
    Some(format!("{}.{domain}", name.strip_suffix('.').unwrap_or(name)))
}

/// The name a res_query-style call asks about, as [`full_name`] gives it, in `buf` (no heap);
/// `None` when not UTF-8 or longer than a name can be.
///
/// # Safety
/// `name` and `domain` are null or NUL-terminated.
unsafe fn full_name_in(
    name: *const c_char,
    domain: *const c_char,
    buf: &mut [u8; NAME_MAX],
) -> Option<&str> {
    if name.is_null() {
        return None;
    }
    // SAFETY: NUL-terminated, as the caller guarantees.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    let mut len = 0;
    let mut put = |bytes: &[u8]| -> Option<()> {
        buf.get_mut(len..len + bytes.len())?.copy_from_slice(bytes);
        len += bytes.len();
        Some(())
    };
    if domain.is_null() {
        put(name)?;
    } else {
        put(name.strip_suffix(b".").unwrap_or(name))?;
        put(b".")?;
        // SAFETY: as above.
        put(unsafe { CStr::from_ptr(domain) }.to_bytes())?;
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// [`query`] for a call from a signal handler that interrupted the library: the same
/// decisions without the heap; an answer message cannot be built here (see the module
/// documentation).
///
/// # Safety
/// As res_querydomain(3).
unsafe fn query_without_heap(
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    kind: c_int,
    real_call: impl FnOnce() -> c_int,
) -> c_int {
    let mut buf = [0u8; NAME_MAX];
    // SAFETY: as the caller guarantees.
    let Some(full) = (unsafe { full_name_in(name, domain, &mut buf) }) else { return real_call() };
    let (Ok(qclass), Ok(qtype)) = (u16::try_from(class), u16::try_from(kind)) else {
        return real_call();
    };
    if !config::loaded() {
        // No rules yet (reading them takes the heap): any name may be remote; an address's
        // reverse name is libc's.
        return if dns::reverse_address(full).is_some() {
            real_call()
        } else {
            fail_resolver(Cause::SignalContext)
        };
    }
    let settings = config::settings();
    if let Some(ip) = dns::reverse_address(full) {
        return if !names::is_fake(settings, ip) {
            real_call()
        } else if qclass == CLASS_IN && qtype == TYPE_PTR {
            fail_resolver(Cause::SignalContext)
        } else {
            fail_resolver(Cause::RemoteQuestion)
        };
    }
    let family = match qtype {
        TYPE_A => libc::AF_INET,
        TYPE_AAAA => libc::AF_INET6,
        _ => libc::AF_UNSPEC,
    };
    let address_question = qclass == CLASS_IN && matches!(qtype, TYPE_A | TYPE_AAAA);
    match names::plan(settings, full, family) {
        Plan::Local => real_call(),
        Plan::Fake { .. } if address_question => {
            log!(Level::Info, "resolve in a signal handler inside the library: TRY_AGAIN");
            fail_resolver(Cause::SignalContext)
        }
        Plan::Fake { .. } => fail_resolver(Cause::RemoteQuestion),
        Plan::LocalThenFake { .. } if address_question => match real_call() {
            rc if rc >= 0 => rc,
            _ => fail_resolver(Cause::SignalContext),
        },
        Plan::LocalThenFake { .. } => real_call(),
    }
}

/// Whether names may be resolved on the far side at all (a nested call that cannot read its
/// question without the heap must then fail rather than go to the real resolver); before the
/// settings are loaded, they may.
fn remote_names() -> bool {
    !config::loaded() || config::settings().names.is_some()
}

/// The common part of the res_query family.
///
/// # Safety
/// As res_querydomain(3).
unsafe fn query(
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut u8,
    anslen: c_int,
    real_call: impl FnOnce() -> c_int,
) -> c_int {
    let guard = Guard::enter_routed();
    if answer.is_null() || anslen < 0 {
        return real_call();
    }
    if guard.is_nested() {
        // SAFETY: as the caller guarantees.
        return unsafe { query_without_heap(name, domain, class, kind, real_call) };
    }
    // SAFETY: as the caller guarantees.
    let Some(full) = (unsafe { full_name(name, domain) }) else { return real_call() };
    let (Ok(qclass), Ok(qtype)) = (u16::try_from(class), u16::try_from(kind)) else {
        return real_call();
    };
    match resolve_question(config::settings(), &full, qclass, qtype, 0, true, Style::Resolver) {
        Resolved::Local => real_call(),
        // SAFETY: the caller's answer buffer.
        Resolved::Answer(message) => unsafe { deliver(&message, answer, anslen) },
        Resolved::LocalThen(message) => match real_call() {
            rc if rc >= 0 => rc,
            // SAFETY: as above.
            _ => unsafe { deliver(&message, answer, anslen) },
        },
        Resolved::Refused(cause) => fail_resolver(cause),
    }
}

/// The common part of res_send and res_nsend: the question is read from the message.
///
/// # Safety
/// As res_send(3).
unsafe fn send(
    msg: *const u8,
    msglen: c_int,
    answer: *mut u8,
    anslen: c_int,
    real_call: impl FnOnce() -> c_int,
) -> c_int {
    let guard = Guard::enter_routed();
    if msg.is_null() || msglen <= 0 || answer.is_null() || anslen < 0 {
        return real_call();
    }
    if guard.is_nested() {
        // Reading the question takes the heap: see the module documentation.
        return if remote_names() { fail_resolver(Cause::SignalContext) } else { real_call() };
    }
    // SAFETY: the caller's query of `msglen` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(msg, msglen as usize) };
    let Some(query) = dns::parse_query(bytes) else { return real_call() };
    let Some(first) = query.questions.first() else { return real_call() };
    let decided: Vec<Resolved> = query
        .questions
        .iter()
        .map(|q| {
            let (id, rd) = (query.id, query.recursion_desired);
            resolve_question(
                config::settings(),
                &q.name,
                q.qclass,
                q.qtype,
                id,
                rd,
                Style::Resolver,
            )
        })
        .collect();
    if decided.iter().all(|r| *r == Resolved::Local) {
        return real_call();
    }
    let refused = || dns::response(query.id, query.recursion_desired, first, None, RCODE_REFUSED);
    let message = match (decided.as_slice(), query.questions.len()) {
        ([Resolved::Answer(message)], 1) => Some(message.clone()),
        ([Resolved::LocalThen(message)], 1) => {
            let rc = real_call();
            let local_rcode = (rc > 0)
                // SAFETY: the real call wrote `rc` bytes (at most `anslen`).
                .then(|| dns::rcode(unsafe { std::slice::from_raw_parts(answer, rc as usize) }))
                .flatten();
            if rc > 0 && local_rcode != Some(RCODE_NXDOMAIN) {
                return rc;
            }
            Some(message.clone())
        }
        _ => refused(),
    };
    match message {
        // SAFETY: the caller's answer buffer.
        Some(message) => unsafe { deliver(&message, answer, anslen) },
        None => fail_resolver(Cause::RemoteQuestion),
    }
}

macro_rules! query_hooks {
    ($( $(#[$doc:meta])* fn $name:ident => $real:ident; )*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// As res_query(3).
            #[no_mangle]
            pub unsafe extern "C" fn $name(
                name: *const c_char,
                class: c_int,
                kind: c_int,
                answer: *mut u8,
                anslen: c_int,
            ) -> c_int {
                // SAFETY: forwarded unchanged under the caller's guarantees.
                let real_call = || unsafe { real::$real(name, class, kind, answer, anslen) };
                // SAFETY: as the caller guarantees.
                shield_resolver(-1, || unsafe {
                    query(name, std::ptr::null(), class, kind, answer, anslen, real_call)
                })
            }
        )*
    };
}

macro_rules! nquery_hooks {
    ($( $(#[$doc:meta])* fn $name:ident => $real:ident; )*) => {
        $(
            $(#[$doc])*
            ///
            /// # Safety
            /// As res_nquery(3).
            #[no_mangle]
            pub unsafe extern "C" fn $name(
                state: *mut c_void,
                name: *const c_char,
                class: c_int,
                kind: c_int,
                answer: *mut u8,
                anslen: c_int,
            ) -> c_int {
                // SAFETY: forwarded unchanged under the caller's guarantees.
                let real_call = || unsafe { real::$real(state, name, class, kind, answer, anslen) };
                // SAFETY: as the caller guarantees.
                shield_resolver(-1, || unsafe {
                    query(name, std::ptr::null(), class, kind, answer, anslen, real_call)
                })
            }
        )*
    };
}

query_hooks! {
    /// res_query(3).
    fn res_query => res_query;
    /// res_query under the name programs linked before glibc 2.34 use.
    fn __res_query => res_query;
    /// res_search(3): the name as given (a remote name is resolved by the server).
    fn res_search => res_search;
    /// res_search under its older name.
    fn __res_search => res_search;
}

nquery_hooks! {
    /// res_nquery(3).
    fn res_nquery => res_nquery;
    /// res_nquery under its older name.
    fn __res_nquery => res_nquery;
    /// res_nsearch(3).
    fn res_nsearch => res_nsearch;
    /// res_nsearch under its older name.
    fn __res_nsearch => res_nsearch;
}

/// res_querydomain(3): the question is about `name.domain`.
///
/// # Safety
/// As res_querydomain(3).
#[no_mangle]
pub unsafe extern "C" fn res_querydomain(
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::res_querydomain(name, domain, class, kind, answer, anslen) };
    // SAFETY: as the caller guarantees.
    shield_resolver(-1, || unsafe { query(name, domain, class, kind, answer, anslen, real_call) })
}

/// res_querydomain under its older name.
///
/// # Safety
/// As res_querydomain(3).
#[no_mangle]
pub unsafe extern "C" fn __res_querydomain(
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: the same call.
    unsafe { res_querydomain(name, domain, class, kind, answer, anslen) }
}

/// res_nquerydomain(3).
///
/// # Safety
/// As res_nquerydomain(3).
#[no_mangle]
pub unsafe extern "C" fn res_nquerydomain(
    state: *mut c_void,
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call =
        || unsafe { real::res_nquerydomain(state, name, domain, class, kind, answer, anslen) };
    // SAFETY: as the caller guarantees.
    shield_resolver(-1, || unsafe { query(name, domain, class, kind, answer, anslen, real_call) })
}

/// res_nquerydomain under its older name.
///
/// # Safety
/// As res_nquerydomain(3).
#[no_mangle]
pub unsafe extern "C" fn __res_nquerydomain(
    state: *mut c_void,
    name: *const c_char,
    domain: *const c_char,
    class: c_int,
    kind: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: the same call.
    unsafe { res_nquerydomain(state, name, domain, class, kind, answer, anslen) }
}

/// res_send(3): a query about a remote name is answered (or refused) here.
///
/// # Safety
/// As res_send(3).
#[no_mangle]
pub unsafe extern "C" fn res_send(
    msg: *const u8,
    msglen: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::res_send(msg, msglen, answer, anslen) };
    // SAFETY: as the caller guarantees.
    shield_resolver(-1, || unsafe { send(msg, msglen, answer, anslen, real_call) })
}

/// res_send under its older name.
///
/// # Safety
/// As res_send(3).
#[no_mangle]
pub unsafe extern "C" fn __res_send(
    msg: *const u8,
    msglen: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: the same call.
    unsafe { res_send(msg, msglen, answer, anslen) }
}

/// res_nsend(3).
///
/// # Safety
/// As res_nsend(3).
#[no_mangle]
pub unsafe extern "C" fn res_nsend(
    state: *mut c_void,
    msg: *const u8,
    msglen: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::res_nsend(state, msg, msglen, answer, anslen) };
    // SAFETY: as the caller guarantees.
    shield_resolver(-1, || unsafe { send(msg, msglen, answer, anslen, real_call) })
}

/// res_nsend under its older name.
///
/// # Safety
/// As res_nsend(3).
#[no_mangle]
pub unsafe extern "C" fn __res_nsend(
    state: *mut c_void,
    msg: *const u8,
    msglen: c_int,
    answer: *mut u8,
    anslen: c_int,
) -> c_int {
    // SAFETY: the same call.
    unsafe { res_nsend(state, msg, msglen, answer, anslen) }
}

/// netdb.h's `struct gaicb`.
#[repr(C)]
struct Gaicb {
    ar_name: *const c_char,
    ar_service: *const c_char,
    ar_request: *const addrinfo,
    ar_result: *mut addrinfo,
    ret: c_int,
    reserved: [c_int; 5],
}

/// A numeric request for libc's getaddrinfo_a to complete and notify with.
#[repr(C)]
struct Notifier {
    request: Gaicb,
    hints: addrinfo,
}

/// getaddrinfo_a(3): see the module documentation.
///
/// # Safety
/// As getaddrinfo_a(3).
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo_a(
    mode: c_int,
    list: *mut *mut c_void,
    nitems: c_int,
    sevp: *mut sigevent,
) -> c_int {
    // SAFETY: the caller's arguments, under the caller's guarantees.
    shield(Cause::Panic.eai(), || unsafe { getaddrinfo_a_unshielded(mode, list, nitems, sevp) })
}

/// The work of [`getaddrinfo_a`], run inside the shield.
///
/// # Safety
/// As [`getaddrinfo_a`].
unsafe fn getaddrinfo_a_unshielded(
    mode: c_int,
    list: *mut *mut c_void,
    nitems: c_int,
    sevp: *mut sigevent,
) -> c_int {
    // SAFETY: forwarded unchanged under the caller's guarantees.
    let real_call = || unsafe { real::getaddrinfo_a(mode, list, nitems, sevp) };
    if list.is_null() || nitems <= 0 {
        return real_call();
    }
    let guard = Guard::enter_routed();
    if guard.is_nested() {
        // Sorting the requests takes the heap: see the module documentation.
        return if remote_names() { Cause::SignalContext.eai() } else { real_call() };
    }
    // SAFETY: the caller passes `nitems` request pointers (each null or valid).
    let requests = unsafe { std::slice::from_raw_parts(list, nitems as usize) };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for &request in requests {
        // SAFETY: each non-null entry is a gaicb the caller owns.
        let Some(cb) = (unsafe { request.cast::<Gaicb>().as_ref() }) else { continue };
        let family = if cb.ar_request.is_null() {
            libc::AF_UNSPEC
        } else {
            // SAFETY: a non-null ar_request points to the caller's hints.
            unsafe { (*cb.ar_request).ai_family }
        };
        // SAFETY: ar_name is null or NUL-terminated.
        let remote = !cb.ar_name.is_null()
            && !matches!(
                unsafe { dns_hooks::plan_for(cb.ar_name, family) },
                Ok(None | Some((_, Plan::Local)))
            );
        if remote {
            ours.push(request.cast::<Gaicb>());
        } else {
            theirs.push(request);
        }
    }
    if ours.is_empty() {
        drop(guard);
        return real_call();
    }
    // Our getaddrinfo hook does the work, so the guard must be off.
    drop(guard);
    for &request in &ours {
        // SAFETY: the caller's gaicb; our getaddrinfo under getaddrinfo's own contract.
        unsafe {
            let cb = &mut *request;
            cb.ar_result = std::ptr::null_mut();
            cb.ret =
                dns_hooks::getaddrinfo(cb.ar_name, cb.ar_service, cb.ar_request, &mut cb.ar_result);
        }
    }
    // SAFETY: `sevp` is null or the caller's sigevent.
    let notify = mode != GAI_WAIT
        && unsafe { sevp.as_ref() }.is_some_and(|s| s.sigev_notify != libc::SIGEV_NONE);
    if theirs.is_empty() && notify {
        // SAFETY: zeroed hints and request are valid starting points; the numeric request
        // lives for the rest of the process, as libc may complete it at any time.
        let notifier: &'static mut Notifier = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
        notifier.hints.ai_flags = libc::AI_NUMERICHOST;
        notifier.hints.ai_family = libc::AF_INET;
        notifier.request.ar_name = c"127.0.0.1".as_ptr();
        notifier.request.ar_request = &notifier.hints;
        theirs.push((&mut notifier.request as *mut Gaicb).cast());
    }
    if theirs.is_empty() {
        return 0;
    }
    // SAFETY: the remaining requests, the caller's sigevent.
    unsafe { real::getaddrinfo_a(mode, theirs.as_mut_ptr(), theirs.len() as c_int, sevp) }
}
