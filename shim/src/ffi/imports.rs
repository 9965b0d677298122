//! The libc functions the library's code (std's and the unwinder's included) calls only
//! sometimes — reading the settings, the fake-name map's file, the allocator, a panic — found
//! when first called instead of when the library is loaded (issue 17, docs/PERFORMANCE.md
//! "Library load time"). Every symbol the library imports costs each process it is preloaded
//! into one `_dl_lookup_symbol_x` (some 500 instructions), whether or not the process ever
//! makes a call the library intercepts; most never do.
//!
//! How: `shim/build.rs` links the library with `-Wl,--wrap=NAME` for every function listed
//! below (it reads the list from this file), so every reference to `NAME` in the library
//! becomes one to `__wrap_NAME`, defined here as a hidden (never exported) jump to a Rust
//! function that finds `NAME` with `dlsym(RTLD_DEFAULT, …)` on its first call, keeps the
//! pointer, and calls it. `RTLD_DEFAULT` from this library searches what the dynamic linker
//! would have searched for the import — the program first, then the preloaded objects, then
//! libc — so a program that brings its own allocator still gets the library's `malloc` and
//! `free` calls, exactly as before. None of these names is one of the library's own hooks
//! (those are bound inside the library by `-Bsymbolic-functions`), so the search never finds
//! the library itself.
//!
//! Among them are the memory and string functions the compiler calls everywhere (memcpy,
//! memset, memmove, bcmp, strlen) and `__tls_get_addr` (every access to a thread-local): the
//! first call of each in a process, in a hook run by a signal handler too, is a `dlsym`, as
//! the first call of each function in `real` already was. What stays an ordinary import:
//! `dlsym` (what finds the others), `__errno_location` (errno must survive the lookup) and
//! `abort` (what must work when nothing else does). `tests/tests/load.rs` keeps the list of
//! imports from growing back.
//!
//! A function libc does not have would have stopped the library from loading before; here it
//! aborts the program at its first call, as a lazily bound symbol does. With the glibc the
//! remaining imports require (≥ 2.34, for `dlsym`) that can only be the unwinder's
//! `_dl_find_object` (2.35), called when a panic unwinds: on glibc 2.34 a panic inside the
//! library would end the program instead of becoming an errno. Before, the library did not
//! load there at all (it imported `_dl_find_object` directly), and a preloaded library that
//! does not load leaves the program running without it.
//!
//! x86-64 only (the jump is written in its assembly); on other architectures the functions stay
//! ordinary imports.
//!
//! Not here: the functions the library intercepts and calls on behalf of the program (`real`,
//! through `dlsym(RTLD_NEXT)`: the program's own definitions must be skipped there).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use libc::{mode_t, off_t, pid_t, size_t, ssize_t, uid_t};

/// `NAME` as the dynamic linker would have bound it for the library, found once and kept in
/// `slot`; aborts when libc has no such function (see the file's header). errno is left as it
/// was: the first call of a function may come between a failed call and the read of its errno.
/// Nothing here calls a function of this file (a first `memcpy` must not need `memcpy`).
fn find(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let kept = slot.load(Ordering::Acquire);
    if !kept.is_null() {
        return kept;
    }
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    // SAFETY: dlsym is thread-safe and takes a NUL-terminated name; RTLD_DEFAULT searches the
    // scope this library's own imports were searched in.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if found.is_null() {
        // SAFETY: abort takes no arguments and does not return.
        unsafe { libc::abort() };
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
    slot.store(found, Ordering::Release);
    found
}

/// For each `fn NAME(args) -> ret;`: a Rust function calling libc's `NAME`, found on first
/// use, and the hidden symbol `__wrap_NAME` (what the library's references to `NAME` are
/// linked to) jumping to it. `shim/build.rs` reads the names from the lines `    fn NAME(` of
/// the macro's invocation below: one name a line.
macro_rules! lazy_imports {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $(as $variadic:ty)?; )*) => {
        $(
            /// libc's function of this name, found on first use.
            ///
            /// # Safety
            /// The same as the libc function's: pointers must be valid as libc documents.
            #[allow(clippy::too_many_arguments)]
            unsafe extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
                static SLOT: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
                const NAME: &CStr = match CStr::from_bytes_with_nul(
                    concat!(stringify!($name), "\0").as_bytes(),
                ) {
                    Ok(name) => name,
                    Err(_) => panic!("a function name has no NUL inside"),
                };
                let f = find(&SLOT, NAME);
                lazy_imports!(@call f, $($variadic)?, ($($arg: $ty),*) $(-> $ret)?)
            }

            core::arch::global_asm!(
                concat!(".globl __wrap_", stringify!($name)),
                concat!(".hidden __wrap_", stringify!($name)),
                concat!(".type __wrap_", stringify!($name), ",@function"),
                concat!("__wrap_", stringify!($name), ":"),
                "jmp {target}",
                concat!(".size __wrap_", stringify!($name), ", . - __wrap_", stringify!($name)),
                target = sym $name,
            );
        )*
    };
    (@call $f:ident, , ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {{
        // SAFETY: the symbol is libc's function of this name, whose C signature is the one
        // declared here.
        let f: unsafe extern "C" fn($($ty),*) $(-> $ret)? = unsafe { std::mem::transmute($f) };
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { f($($arg),*) }
    }};
    (@call $f:ident, $variadic:ty, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {{
        // SAFETY: as above; the function is variadic in C, and its optional argument (a mode,
        // always passed by std) goes on as one.
        let f: $variadic = unsafe { std::mem::transmute($f) };
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { f($($arg),*) }
    }};
}

/// `struct stat64` / `struct statx` / `struct passwd` … are only passed through: `c_void`.
type Opaque = c_void;

lazy_imports! {
    fn memcpy(to: *mut c_void, from: *const c_void, size: size_t) -> *mut c_void;
    fn memmove(to: *mut c_void, from: *const c_void, size: size_t) -> *mut c_void;
    fn memset(to: *mut c_void, byte: c_int, size: size_t) -> *mut c_void;
    fn bcmp(a: *const c_void, b: *const c_void, size: size_t) -> c_int;
    fn strlen(text: *const c_char) -> size_t;
    fn malloc(size: size_t) -> *mut c_void;
    fn calloc(count: size_t, size: size_t) -> *mut c_void;
    fn realloc(old: *mut c_void, size: size_t) -> *mut c_void;
    fn free(old: *mut c_void);
    fn posix_memalign(out: *mut *mut c_void, align: size_t, size: size_t) -> c_int;
    fn strdup(text: *const c_char) -> *mut c_char;
    fn access(path: *const c_char, mode: c_int) -> c_int;
    fn clock_gettime(clock: libc::clockid_t, out: *mut libc::timespec) -> c_int;
    fn dl_iterate_phdr(callback: *mut Opaque, data: *mut c_void) -> c_int;
    fn fchmod(fd: c_int, mode: mode_t) -> c_int;
    fn fstat(fd: c_int, out: *mut Opaque) -> c_int;
    fn fstat64(fd: c_int, out: *mut Opaque) -> c_int;
    fn ftruncate(fd: c_int, size: off_t) -> c_int;
    fn gai_strerror(code: c_int) -> *const c_char;
    fn getauxval(kind: c_ulong) -> c_ulong;
    fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char;
    fn getenv(name: *const c_char) -> *mut c_char;
    fn geteuid() -> uid_t;
    fn gethostname(buf: *mut c_char, size: size_t) -> c_int;
    fn getpid() -> pid_t;
    fn getpwuid_r(uid: uid_t, out: *mut Opaque, buf: *mut c_char, size: size_t, result: *mut *mut Opaque) -> c_int;
    fn getrandom(buf: *mut c_void, size: size_t, flags: c_uint) -> ssize_t;
    fn gettid() -> pid_t;
    fn linkat(from_dir: c_int, from: *const c_char, to_dir: c_int, to: *const c_char, flags: c_int) -> c_int;
    fn lseek64(fd: c_int, offset: i64, whence: c_int) -> i64;
    fn madvise(at: *mut c_void, size: size_t, advice: c_int) -> c_int;
    fn mkdirat(dir: c_int, path: *const c_char, mode: mode_t) -> c_int;
    fn mmap(at: *mut c_void, size: size_t, prot: c_int, flags: c_int, fd: c_int, offset: off_t) -> *mut c_void;
    fn mmap64(at: *mut c_void, size: size_t, prot: c_int, flags: c_int, fd: c_int, offset: i64) -> *mut c_void;
    fn munmap(at: *mut c_void, size: size_t) -> c_int;
    fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int as unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
    fn openat(dir: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int as unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int;
    fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t;
    fn realpath(path: *const c_char, out: *mut c_char) -> *mut c_char;
    fn sigfillset(set: *mut libc::sigset_t) -> c_int;
    fn stat64(path: *const c_char, out: *mut Opaque) -> c_int;
    fn statx(dir: c_int, path: *const c_char, flags: c_int, mask: c_uint, out: *mut Opaque) -> c_int;
    fn sysconf(name: c_int) -> c_long;
    fn unlinkat(dir: c_int, path: *const c_char, flags: c_int) -> c_int;
    fn __xpg_strerror_r(code: c_int, buf: *mut c_char, size: size_t) -> c_int;
    fn __pthread_key_create(key: *mut libc::pthread_key_t, destructor: *mut Opaque) -> c_int;
    fn pthread_mutex_lock(mutex: *mut Opaque) -> c_int;
    fn pthread_mutex_unlock(mutex: *mut Opaque) -> c_int;
    fn pthread_once(once: *mut libc::pthread_once_t, init: *mut Opaque) -> c_int;
    fn _dl_find_object(pc: *mut c_void, out: *mut Opaque) -> c_int;
    fn __tls_get_addr(index: *mut c_void) -> *mut c_void;
}
