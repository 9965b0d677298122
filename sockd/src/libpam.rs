//! The PAM application calls `--pam` needs (`pam_start`, `pam_authenticate`, `pam_acct_mgmt`,
//! `pam_end`, `pam_strerror`) and the conversation that answers PAM's prompts with the
//! client's RFC 1929 name and password — over `libpam.so.0` opened at run time with `dlopen`.
//!
//! Why not a binding crate: the maintained one (`pam-client`, over `pam-sys`) generates its
//! declarations with bindgen at build time, so every build of sockd would need libclang and
//! libpam's headers — the README's two commands would no longer build on a fresh machine — for
//! five functions and three structures whose layout Linux-PAM has kept since 1996
//! (`security/_pam_types.h`, `pam_appl.h`). Opened at run time, sockd needs libpam only when
//! `--pam` is given (Debian installs libpam0g on every system: login needs it).
//!
//! Unsafe code is allowed here, at the libc boundary only; callers get [`check`].
//!
//! Not here: the service name's checks, timeouts and logging (`pam`).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

/// `PAM_SUCCESS` and the codes that are about the user, not the stack (`_pam_types.h`).
pub const PAM_SUCCESS: c_int = 0;
const PAM_PERM_DENIED: c_int = 6;
const PAM_AUTH_ERR: c_int = 7;
const PAM_CRED_INSUFFICIENT: c_int = 8;
const PAM_USER_UNKNOWN: c_int = 10;
const PAM_MAXTRIES: c_int = 11;
const PAM_NEW_AUTHTOK_REQD: c_int = 12;
const PAM_ACCT_EXPIRED: c_int = 13;
const PAM_CONV_ERR: c_int = 19;
const PAM_AUTHTOK_EXPIRED: c_int = 27;
/// Flags: refuse an empty password, print nothing.
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_SILENT: c_int = 0x8000;
/// Message styles a conversation gets.
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

/// The library's soname (Debian's libpam0g).
const LIBPAM: &CStr = c"libpam.so.0";

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`: PAM frees `resp` and the array with free(3).
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

type StartFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *const PamConv, *mut *mut c_void) -> c_int;
type StepFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type StrerrorFn = unsafe extern "C" fn(*mut c_void, c_int) -> *const c_char;

/// The functions, found once.
#[derive(Debug, Clone, Copy)]
struct Api {
    start: StartFn,
    authenticate: StepFn,
    acct_mgmt: StepFn,
    end: StepFn,
    strerror: StrerrorFn,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// Opens libpam and finds its functions (once per process); the reason if it cannot.
pub fn load() -> Result<(), String> {
    api().map(|_| ())
}

fn api() -> Result<Api, String> {
    API.get_or_init(|| {
        // SAFETY: dlopen with a NUL-terminated name; the handle is never closed, so the
        // function pointers taken from it stay valid for the life of the process.
        let handle = unsafe { libc::dlopen(LIBPAM.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("cannot load {}: {}", LIBPAM.to_string_lossy(), dlerror()));
        }
        let find = |name: &CStr| {
            // SAFETY: a valid handle and a NUL-terminated symbol name.
            let symbol = unsafe { libc::dlsym(handle, name.as_ptr()) };
            if symbol.is_null() {
                Err(format!("{} has no {}", LIBPAM.to_string_lossy(), name.to_string_lossy()))
            } else {
                Ok(symbol)
            }
        };
        // SAFETY: each symbol is the Linux-PAM function of that name, whose C signature is the
        // type it is turned into (pam_appl.h).
        unsafe {
            Ok(Api {
                start: std::mem::transmute::<*mut c_void, StartFn>(find(c"pam_start")?),
                authenticate: std::mem::transmute::<*mut c_void, StepFn>(find(
                    c"pam_authenticate",
                )?),
                acct_mgmt: std::mem::transmute::<*mut c_void, StepFn>(find(c"pam_acct_mgmt")?),
                end: std::mem::transmute::<*mut c_void, StepFn>(find(c"pam_end")?),
                strerror: std::mem::transmute::<*mut c_void, StrerrorFn>(find(c"pam_strerror")?),
            })
        }
    })
    .clone()
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libdl.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: non-null and NUL-terminated (above).
    unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
}

/// Why PAM said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// About the user (wrong password, unknown user, account refused): PAM's code and message.
    Client(c_int, String),
    /// About the stack (a module missing or failing, a system error), or libpam missing.
    Stack(String),
}

/// The conversation's data: the answers to PAM's prompts.
struct Credentials {
    username: CString,
    password: CString,
}

/// One blocking PAM transaction for service `service`: authenticate `username` with
/// `password`, then the account check (an expired or locked account is refused too). Names
/// and passwords holding a NUL byte cannot be C strings: the caller refuses them first.
pub fn check(service: &str, username: &str, password: &str) -> Result<(), Refusal> {
    let api = api().map_err(Refusal::Stack)?;
    let c = |s: &str| CString::new(s).map_err(|_| Refusal::Stack("a NUL byte".to_owned()));
    let service = c(service)?;
    let credentials = Credentials { username: c(username)?, password: c(password)? };
    let conversation = PamConv {
        conv: converse,
        appdata_ptr: (&credentials as *const Credentials).cast_mut().cast::<c_void>(),
    };
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings and a conversation that outlive the transaction (it ends
    // with pam_end below, before they are dropped); `handle` receives PAM's handle.
    let started = unsafe {
        (api.start)(service.as_ptr(), credentials.username.as_ptr(), &conversation, &mut handle)
    };
    if started != PAM_SUCCESS || handle.is_null() {
        return Err(Refusal::Stack(format!("pam_start: error {started}")));
    }
    let flags = PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK;
    // SAFETY: `handle` is the live handle pam_start gave.
    let mut status = unsafe { (api.authenticate)(handle, flags) };
    let step = if status == PAM_SUCCESS {
        // SAFETY: as above.
        status = unsafe { (api.acct_mgmt)(handle, flags) };
        "pam_acct_mgmt"
    } else {
        "pam_authenticate"
    };
    let outcome = if status == PAM_SUCCESS {
        Ok(())
    } else {
        let message = strerror(&api, handle, status);
        if about_the_user(status) {
            Err(Refusal::Client(status, message))
        } else {
            Err(Refusal::Stack(format!("{step}: {message}")))
        }
    };
    // SAFETY: ends the transaction; `handle` is not used again.
    unsafe { (api.end)(handle, status) };
    outcome
}

fn about_the_user(status: c_int) -> bool {
    matches!(
        status,
        PAM_AUTH_ERR
            | PAM_USER_UNKNOWN
            | PAM_CRED_INSUFFICIENT
            | PAM_MAXTRIES
            | PAM_PERM_DENIED
            | PAM_ACCT_EXPIRED
            | PAM_NEW_AUTHTOK_REQD
            | PAM_AUTHTOK_EXPIRED
    )
}

fn strerror(api: &Api, handle: *mut c_void, status: c_int) -> String {
    // SAFETY: a live handle; the result is NULL or a static NUL-terminated string.
    let text = unsafe { (api.strerror)(handle, status) };
    if text.is_null() {
        return format!("error {status}");
    }
    // SAFETY: non-null and NUL-terminated (above).
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// The conversation: the name for a prompt that echoes, the password for one that does not,
/// nothing for PAM's informational and error messages; anything else fails the conversation.
/// Responses are allocated with calloc/strdup because PAM frees them with free(3).
unsafe extern "C" fn converse(
    count: c_int,
    messages: *mut *const PamMessage,
    responses: *mut *mut PamResponse,
    data: *mut c_void,
) -> c_int {
    let Ok(count) = usize::try_from(count) else { return PAM_CONV_ERR };
    if count == 0 || messages.is_null() || responses.is_null() || data.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: `data` is the Credentials `check` passed, alive while the transaction runs.
    let credentials = unsafe { &*data.cast::<Credentials>() };
    // SAFETY: calloc of `count` zeroed responses (null `resp` = no answer).
    let answers =
        unsafe { libc::calloc(count, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if answers.is_null() {
        return PAM_CONV_ERR;
    }
    for i in 0..count {
        // Linux-PAM passes an array of `count` pointers to messages (`*messages[i]`).
        // SAFETY: PAM gives `count` valid message pointers.
        let message = unsafe { &**messages.add(i) };
        let answer = match message.msg_style {
            PAM_PROMPT_ECHO_ON => Some(&credentials.username),
            PAM_PROMPT_ECHO_OFF => Some(&credentials.password),
            PAM_ERROR_MSG | PAM_TEXT_INFO => None,
            _ => {
                // SAFETY: frees what this call allocated so far; PAM never sees it.
                unsafe { free_answers(answers, i) };
                return PAM_CONV_ERR;
            }
        };
        if let Some(text) = answer {
            // SAFETY: strdup of a NUL-terminated string into the zeroed slot i.
            unsafe {
                let copy = libc::strdup(text.as_ptr());
                if copy.is_null() {
                    free_answers(answers, i);
                    return PAM_CONV_ERR;
                }
                (*answers.add(i)).resp = copy;
            }
        }
    }
    // SAFETY: PAM owns the array from here and frees it.
    unsafe { *responses = answers };
    PAM_SUCCESS
}

/// Frees the first `filled` answers' strings and the array.
unsafe fn free_answers(answers: *mut PamResponse, filled: usize) {
    for i in 0..filled {
        // SAFETY: slots below `filled` hold NULL or a strdup'ed string.
        unsafe { libc::free((*answers.add(i)).resp.cast::<c_void>()) };
    }
    // SAFETY: the calloc'ed array.
    unsafe { libc::free(answers.cast::<c_void>()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpam_loads_here() {
        // Debian installs libpam0g everywhere; if this fails, --pam cannot work on this host.
        assert_eq!(load(), Ok(()));
    }

    #[test]
    fn codes_about_the_user_are_told_apart() {
        assert!(about_the_user(PAM_AUTH_ERR) && about_the_user(PAM_USER_UNKNOWN));
        assert!(!about_the_user(PAM_CONV_ERR) && !about_the_user(PAM_SUCCESS));
    }
}
