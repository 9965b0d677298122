//! Where the per-user file of the fake-name map lives, and opening it safely: the directory
//! is `$XDG_RUNTIME_DIR/socks/` when that variable names a directory owned by the effective
//! user and closed to everybody else, else `/run/user/<euid>/socks/` under the same condition,
//! else `/tmp/socks-<euid>/` (made here, mode 0700). The file is `names-v1`: the layout version
//! is in the name, so a future layout never reads an old file.
//!
//! Every step is an `openat` relative to the directory checked just before, with `O_NOFOLLOW`
//! (a symlink is refused, never followed) and `O_CLOEXEC`, then an `fstat`: the `socks`
//! directory and the file must be owned by the effective uid with no group or other permission
//! bits, the file a regular file of exactly the map's size. A missing file is made under a
//! temporary name, sized (sparse, `ftruncate`) and `link`ed into place, which fails if another
//! process got there first: then both use the winner's file. Whatever is wrong ends in a
//! [`Failure`] saying what, and the caller falls back to a private map.
//!
//! No heap and no lock: paths are built in stack buffers and every call is an
//! async-signal-safe system call (open, mkdir, fstat, ftruncate, link, unlink, mmap, madvise,
//! close) or `getenv`, which only reads the environment. Nothing here decides *whether* the
//! file is used (secure-execution programs never call it): that is `fakemap`.
//!
//! Not here: the layout of the map or its algorithm (`fakemap`).
#![allow(unsafe_code)]

use std::ffi::{c_int, CStr};
use std::fmt;
use std::ptr::null_mut;

use crate::ffi::real;

/// The map file's name, with the layout version.
pub const FILE_NAME: &CStr = c"names-v1";

/// The directory made inside a runtime directory.
const SUBDIRECTORY: &CStr = c"socks";

/// Where to look, in order; [`Places::of_this_process`] in the library, temporary directories
/// in tests.
#[derive(Debug, Clone, Copy)]
pub struct Places<'a> {
    /// `$XDG_RUNTIME_DIR`, if set.
    pub runtime_dir: Option<&'a CStr>,
    /// The parent of per-user runtime directories, `/run/user`.
    pub run_user: &'a CStr,
    /// The shared temporary directory, `/tmp`.
    pub tmp: &'a CStr,
    /// The effective user, who must own every directory and the file.
    pub euid: u32,
}

impl Places<'static> {
    /// This process's places: its `XDG_RUNTIME_DIR` and effective uid. (The caller keeps
    /// secure-execution programs away: their environment is not theirs to trust.)
    #[cfg_attr(test, allow(dead_code))]
    pub fn of_this_process() -> Places<'static> {
        // SAFETY: getenv takes a NUL-terminated name and returns NULL or a pointer into the
        // environment, NUL-terminated; glibc's getenv only reads `environ` (no lock, no heap).
        // The string lives as long as the environment entry, which the program does not
        // replace while the library opens its map in practice; it is used only during this
        // open.
        let value = unsafe { libc::getenv(c"XDG_RUNTIME_DIR".as_ptr()) };
        // SAFETY: non-null, so a NUL-terminated string from the environment (see above).
        let runtime_dir = (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) });
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        Places { runtime_dir, run_user: c"/run/user", tmp: c"/tmp", euid }
    }
}

/// Which directory was tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Base {
    /// `$XDG_RUNTIME_DIR/socks`.
    RuntimeDir = 0,
    /// `/run/user/<euid>/socks`.
    RunUser = 1,
    /// `/tmp/socks-<euid>`.
    Tmp = 2,
}

impl Base {
    /// The base whose `as u8` is `bits` (`Tmp` for anything else).
    pub fn from_bits(bits: u8) -> Base {
        match bits {
            0 => Base::RuntimeDir,
            1 => Base::RunUser,
            _ => Base::Tmp,
        }
    }
}

/// The step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// /tmp itself cannot be opened.
    NoTmp = 0,
    /// mkdir of the directory failed.
    MakeDirectory,
    /// The directory cannot be opened (a symlink, not a directory…).
    OpenDirectory,
    /// The directory is another user's, or has group/other permissions.
    DirectoryNotPrivate,
    /// The file cannot be opened (a symlink, read-only file system…).
    OpenFile,
    /// The file is not a regular file owned by this user with mode 0600.
    FileNotPrivate,
    /// The file is not exactly the map's size.
    FileSize,
    /// The file cannot be created.
    CreateFile,
    /// The new file cannot be sized.
    SizeFile,
    /// The new file cannot be linked into place.
    LinkFile,
    /// It keeps disappearing between open and create.
    Vanishing,
    /// mmap failed.
    Map,
    /// The file system has no room for its first page.
    NoRoom,
}

impl Step {
    const ALL: [Step; 13] = [
        Step::NoTmp,
        Step::MakeDirectory,
        Step::OpenDirectory,
        Step::DirectoryNotPrivate,
        Step::OpenFile,
        Step::FileNotPrivate,
        Step::FileSize,
        Step::CreateFile,
        Step::SizeFile,
        Step::LinkFile,
        Step::Vanishing,
        Step::Map,
        Step::NoRoom,
    ];

    /// The step whose `as u8` is `bits` (`NoRoom` for anything else).
    pub fn from_bits(bits: u8) -> Step {
        Step::ALL.get(usize::from(bits)).copied().unwrap_or(Step::NoRoom)
    }

    fn text(self) -> &'static str {
        match self {
            Step::NoTmp => "cannot open /tmp",
            Step::MakeDirectory => "cannot make the directory",
            Step::OpenDirectory => "cannot open the directory (a symlink?)",
            Step::DirectoryNotPrivate => "the directory is not this user's, or is open to others",
            Step::OpenFile => "cannot open the file (a symlink? read-only?)",
            Step::FileNotPrivate => "the file is not a regular file private to this user",
            Step::FileSize => "the file has the wrong size (remove it when no program uses it)",
            Step::CreateFile => "cannot create the file",
            Step::SizeFile => "cannot size the file",
            Step::LinkFile => "cannot link the file into place",
            Step::Vanishing => "the file keeps disappearing",
            Step::Map => "cannot map the file",
            Step::NoRoom => "no room for the file",
        }
    }
}

/// Why the per-user file cannot be used: where, which step, and the errno (0 when a check,
/// not a system call, refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The directory it happened in.
    pub base: Base,
    /// What went wrong.
    pub step: Step,
    /// errno of the failed call, or 0.
    pub errno: c_int,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.base {
            Base::RuntimeDir => "$XDG_RUNTIME_DIR/socks",
            Base::RunUser => "/run/user/<uid>/socks",
            Base::Tmp => "/tmp/socks-<uid>",
        };
        write!(f, "{place}: {}", self.step.text())?;
        if self.errno != 0 {
            write!(f, " (errno {})", self.errno)?;
        }
        Ok(())
    }
}

/// The per-user file, mapped shared: its address (`size` bytes) and the directory it is in.
#[derive(Debug, Clone, Copy)]
pub struct Mapped {
    /// The start of the mapping (page-aligned).
    pub ptr: *mut u8,
    /// Which directory holds the file.
    pub base: Base,
}

/// A descriptor closed when dropped (through the real close: ours is a hook).
struct Fd(c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        real::close_fd(self.0);
    }
}

/// Opens (making it if missing) the map file of `size` bytes at the first usable place, and
/// maps it shared, read-write. Its first `resident` bytes are made resident now (so a full file
/// system says so here, not as SIGBUS later: on tmpfs even reading a hole of a shared mapping
/// needs a page).
pub fn open(places: &Places<'_>, size: usize, resident: usize) -> Result<Mapped, Failure> {
    let (dir, base) = directory(places)?;
    let fd = file(&dir, base, size, places.euid)?;
    // SAFETY: a shared mapping of `size` bytes of a file that is exactly that long, no address
    // hint; nothing else in this process refers to it yet.
    let ptr = unsafe {
        libc::mmap(null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.0, 0)
    };
    if ptr == libc::MAP_FAILED {
        return Err(Failure { base, step: Step::Map, errno: real::errno() });
    }
    let ptr = ptr.cast::<u8>();
    if !populate(ptr, resident.min(size)) {
        let errno = real::errno();
        // SAFETY: the mapping made above, seen by nobody else.
        unsafe { libc::munmap(ptr.cast(), size) };
        return Err(Failure { base, step: Step::NoRoom, errno });
    }
    Ok(Mapped { ptr, base })
}

/// Makes the pages covering `len` bytes at `ptr` resident and writable
/// (`MADV_POPULATE_WRITE`, Linux 5.14), so touching them later cannot raise SIGBUS when the
/// file system backing a shared mapping is full; `false` when it could not. A kernel without
/// the operation (EINVAL) is taken at its word that the write will do.
pub fn populate(ptr: *const u8, len: usize) -> bool {
    let page = page_size();
    let start = ptr as usize & !(page - 1);
    let end = (ptr as usize).saturating_add(len);
    // SAFETY: madvise only changes how the kernel backs the pages of this process's own
    // mapping (callers pass a range inside a live mapping); it reads no memory of ours.
    let rc = unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE)
    };
    rc == 0 || real::errno() == libc::EINVAL
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|s| s.is_power_of_two()).unwrap_or(4096)
}

/// The directory holding the file, opened and checked, and which one it is.
fn directory(places: &Places<'_>) -> Result<(Fd, Base), Failure> {
    let mut digits = [0u8; 12];
    let uid = decimal(places.euid, &mut digits);
    if let Some(runtime) = places.runtime_dir.filter(|p| p.to_bytes().first() == Some(&b'/')) {
        if let Ok(fd) = open_dir(libc::AT_FDCWD, runtime, libc::O_NOFOLLOW) {
            if private_to(&fd, places.euid, libc::S_IFDIR) {
                return Ok((
                    subdirectory(&fd, SUBDIRECTORY, places.euid, Base::RuntimeDir)?,
                    Base::RuntimeDir,
                ));
            }
        }
    }
    if let Ok(run_user) = open_dir(libc::AT_FDCWD, places.run_user, 0) {
        if let Ok(fd) = open_dir(run_user.0, uid, libc::O_NOFOLLOW) {
            if private_to(&fd, places.euid, libc::S_IFDIR) {
                return Ok((
                    subdirectory(&fd, SUBDIRECTORY, places.euid, Base::RunUser)?,
                    Base::RunUser,
                ));
            }
        }
    }
    let tmp = open_dir(libc::AT_FDCWD, places.tmp, 0).map_err(|errno| Failure {
        base: Base::Tmp,
        step: Step::NoTmp,
        errno,
    })?;
    let mut name = [0u8; 24];
    let name = joined(b"socks-", uid.to_bytes(), &mut name);
    Ok((subdirectory(&tmp, name, places.euid, Base::Tmp)?, Base::Tmp))
}

/// `name` in `parent`, made (0700) if missing, opened without following a symlink and checked.
fn subdirectory(parent: &Fd, name: &CStr, euid: u32, base: Base) -> Result<Fd, Failure> {
    // SAFETY: `parent` is an open directory and `name` a NUL-terminated relative name.
    let rc = unsafe { libc::mkdirat(parent.0, name.as_ptr(), 0o700) };
    if rc != 0 && real::errno() != libc::EEXIST {
        return Err(Failure { base, step: Step::MakeDirectory, errno: real::errno() });
    }
    let fd = open_dir(parent.0, name, libc::O_NOFOLLOW).map_err(|errno| Failure {
        base,
        step: Step::OpenDirectory,
        errno,
    })?;
    if !private_to(&fd, euid, libc::S_IFDIR) {
        return Err(Failure { base, step: Step::DirectoryNotPrivate, errno: 0 });
    }
    Ok(fd)
}

/// The map file in `dir`, opened read-write and checked; made first if missing.
fn file(dir: &Fd, base: Base, size: usize, euid: u32) -> Result<Fd, Failure> {
    // Bounded: each round either opens the file or makes one; only a file removed between
    // the two by another process sends it round again.
    for _ in 0..4 {
        // SAFETY: `dir` is an open directory, the name NUL-terminated and relative.
        let fd = unsafe {
            libc::openat(
                dir.0,
                FILE_NAME.as_ptr(),
                libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        };
        if fd >= 0 {
            let fd = Fd(fd);
            let st =
                stat(&fd).map_err(|errno| Failure { base, step: Step::FileNotPrivate, errno })?;
            if !owned_and_private(&st, euid, libc::S_IFREG) {
                return Err(Failure { base, step: Step::FileNotPrivate, errno: 0 });
            }
            if usize::try_from(st.st_size).ok() != Some(size) {
                return Err(Failure { base, step: Step::FileSize, errno: 0 });
            }
            return Ok(fd);
        }
        if real::errno() != libc::ENOENT {
            return Err(Failure { base, step: Step::OpenFile, errno: real::errno() });
        }
        make_file(dir, base, size)?;
    }
    Err(Failure { base, step: Step::Vanishing, errno: 0 })
}

/// Makes the file under a temporary name, sizes it and links it into place; another process
/// that linked its own first wins (EEXIST), and either way the caller opens the one in place.
fn make_file(dir: &Fd, base: Base, size: usize) -> Result<(), Failure> {
    // SAFETY: gettid has no preconditions; a thread id is unique among live threads.
    let tid = unsafe { libc::gettid() };
    let mut digits = [0u8; 12];
    let tid = decimal(tid.unsigned_abs(), &mut digits);
    let mut name = [0u8; 40];
    let temporary = joined(b"names-v1.new-", tid.to_bytes(), &mut name);
    // A leftover of a thread that died here with the same id.
    // SAFETY: relative, NUL-terminated name in an open directory.
    unsafe { libc::unlinkat(dir.0, temporary.as_ptr(), 0) };
    // SAFETY: as above; O_EXCL makes a new file, never opens an existing one.
    let fd = unsafe {
        libc::openat(
            dir.0,
            temporary.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(Failure { base, step: Step::CreateFile, errno: real::errno() });
    }
    let fd = Fd(fd);
    let Ok(length) = libc::off_t::try_from(size) else {
        return Err(Failure { base, step: Step::SizeFile, errno: 0 });
    };
    // SAFETY: `fd` is the new file, open for writing; no pointers.
    let sized = unsafe { libc::fchmod(fd.0, 0o600) == 0 && libc::ftruncate(fd.0, length) == 0 };
    let errno = real::errno();
    // SAFETY: both names relative to the open directory, NUL-terminated; link never replaces.
    let linked = sized
        && unsafe { libc::linkat(dir.0, temporary.as_ptr(), dir.0, FILE_NAME.as_ptr(), 0) } == 0;
    let link_errno = real::errno();
    // SAFETY: as above.
    unsafe { libc::unlinkat(dir.0, temporary.as_ptr(), 0) };
    if !sized {
        return Err(Failure { base, step: Step::SizeFile, errno });
    }
    if !linked && link_errno != libc::EEXIST {
        return Err(Failure { base, step: Step::LinkFile, errno: link_errno });
    }
    Ok(())
}

/// Opens directory `name` relative to `at` (O_DIRECTORY, O_CLOEXEC and `flags`); the errno on
/// failure.
fn open_dir(at: c_int, name: &CStr, flags: c_int) -> Result<Fd, c_int> {
    // SAFETY: a NUL-terminated name; `at` is AT_FDCWD or an open directory.
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | flags,
        )
    };
    if fd < 0 {
        Err(real::errno())
    } else {
        Ok(Fd(fd))
    }
}

fn stat(fd: &Fd) -> Result<libc::stat, c_int> {
    // SAFETY: all-zero bytes are a valid `stat`, which fstat only writes.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable `stat` and `fd` an open descriptor.
    if unsafe { libc::fstat(fd.0, &mut st) } == 0 {
        Ok(st)
    } else {
        Err(real::errno())
    }
}

/// Whether `st` is of `kind`, owned by `euid`, and has no group or other permission bits.
fn owned_and_private(st: &libc::stat, euid: u32, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind && st.st_uid == euid && st.st_mode & 0o077 == 0
}

/// Whether the directory or file open as `fd` is of `kind`, `euid`'s and closed to others.
fn private_to(fd: &Fd, euid: u32, kind: libc::mode_t) -> bool {
    stat(fd).is_ok_and(|st| owned_and_private(&st, euid, kind))
}

/// `n` in decimal, NUL-terminated, in `buf`.
fn decimal(mut n: u32, buf: &mut [u8; 12]) -> &CStr {
    let mut digits = [0u8; 10];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..count].iter().rev().enumerate() {
        buf[i] = *d;
    }
    buf[count] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"0")
}

/// `prefix` then `rest`, NUL-terminated, in `buf` (cut to fit).
fn joined<'b, const N: usize>(prefix: &[u8], rest: &[u8], buf: &'b mut [u8; N]) -> &'b CStr {
    let mut len = 0;
    for &b in prefix.iter().chain(rest).take(N - 1) {
        buf[len] = b;
        len += 1;
    }
    buf[len] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"")
}

/// For tests: a C string for a path.
#[cfg(test)]
pub fn c_path(path: &std::path::Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temp path")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        let mut buf = [0u8; 12];
        assert_eq!(decimal(0, &mut buf), c"0");
        assert_eq!(decimal(65534, &mut buf), c"65534");
        assert_eq!(decimal(u32::MAX, &mut buf), c"4294967295");
        let mut name = [0u8; 10];
        assert_eq!(joined(b"socks-", b"1000", &mut name), c"socks-100");
    }
}
