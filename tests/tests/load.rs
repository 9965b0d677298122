//! What loading libsocks.so costs a program and leaves in it (issue 17): the library brings no
//! unwinder library with it (libgcc_s: its own is linked in), and yet a panic inside it is still
//! caught — `-1` with errno EIO, nothing on the program's standard error unless `SOCKS_LOG`
//! asks — now that the panic hook is set by the first call into the library instead of at
//! load. Runs as any user in the test's own network namespace. And what the library makes the
//! dynamic linker look up in every process it is loaded into: a few symbols of libc, the rest
//! of what it calls found on first use (shim/src/ffi/imports.rs).
//!
//! Not here: how long loading takes (a benchmark, not a test: `socks-bench --only library`,
//! docs/PERFORMANCE.md).

use socks_e2e::*;

/// Calls the debug build's `socks_debug_panic` export (a panic inside the library's shield),
/// after a connect (to a closed loopback port) has made the library read its settings.
const PANIC: &str = r#"
import ctypes, socket, sys
lib = ctypes.CDLL(None, use_errno=True)
if not hasattr(lib, "socks_debug_panic"):
    print("no socks_debug_panic")
    sys.exit(0)
try:
    socket.create_connection(("127.0.0.1", 1), timeout=5).close()
except OSError:
    pass
rc = lib.socks_debug_panic()
print(rc, ctypes.get_errno())
rc = lib.socks_debug_panic()
print(rc, ctypes.get_errno())
print("still running")
"#;

#[test]
fn the_library_maps_no_unwinder_library() {
    let cat = paths::require("cat", "coreutils");
    let ran = Client::new(OWN_NETNS, cat).args(["/proc/self/maps"]).ld_preload().run();
    assert!(ran.success(), "{}", ran.describe());
    let maps = ran.stdout_text();
    assert!(maps.contains("libsocks.so"), "the library is loaded\n{}", ran.describe());
    assert!(
        !maps.contains("libgcc_s"),
        "libgcc_s is mapped: the library should carry its unwinder (shim/build.rs)\n{maps}"
    );
    assert!(ran.stderr.is_empty(), "nothing on stderr\n{}", ran.describe());
}

/// Imports the library must not bind at load: each is a symbol lookup (some 500 instructions)
/// in every process, made whether or not the process ever calls into the library. std's file,
/// environment, path and user-name helpers, its HashMap seed, the allocator, the fake-name
/// map's file calls, the memory and string functions, thread locals, and the C start files'
/// weak hooks (issue 17, docs/PERFORMANCE.md).
const NOT_AT_LOAD: [&str; 25] = [
    "realpath",
    "getcwd",
    "getpwuid_r",
    "getrandom",
    "statx",
    "stat64",
    "readlink",
    "open64",
    "openat",
    "getenv",
    "gethostname",
    "malloc",
    "free",
    "calloc",
    "realloc",
    "mmap",
    "mmap64",
    "__xpg_strerror_r",
    "__tls_get_addr",
    "_dl_find_object",
    "memcpy",
    "memset",
    "strlen",
    "__gmon_start__",
    "_ITM_registerTMCloneTable",
];

/// At most this many undefined dynamic symbols (the release build has 3: dlsym, errno and
/// abort; the debug build 9: its thread-local destructors and a few calls it does not inline
/// too).
const MOST_IMPORTS: usize = 10;

#[test]
fn the_library_binds_few_libc_symbols_at_load() {
    if cfg!(not(target_arch = "x86_64")) {
        skip(
            "the_library_binds_few_libc_symbols_at_load",
            "imports are found on first call only on x86-64 (shim/src/ffi/imports.rs)",
        );
        return;
    }
    let readelf = paths::require("readelf", "binutils");
    let library = paths::libsocks();
    let out = std::process::Command::new(readelf)
        .args(["--dyn-syms", "--wide"])
        .arg(&library)
        .output()
        .expect("readelf runs");
    assert!(out.status.success(), "readelf {}: {out:?}", library.display());
    let table = String::from_utf8_lossy(&out.stdout);
    // `  Num: Value Size Type Bind Vis Ndx Name`: an import has Ndx UND (and a name).
    let imports: Vec<&str> = table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 8 && fields[6] == "UND")
                .then(|| fields[7].split('@').next().unwrap_or(fields[7]))
        })
        .collect();
    assert!(imports.contains(&"dlsym"), "the table was read: {imports:?}\n{table}");
    let bound: Vec<&&str> = imports.iter().filter(|name| NOT_AT_LOAD.contains(name)).collect();
    assert!(
        bound.is_empty(),
        "{} imports {bound:?}: every process the library is loaded into would look them up at \
         load; list them in shim/src/ffi/imports.rs (found on first call) instead\n{imports:?}",
        library.display()
    );
    assert!(
        imports.len() <= MOST_IMPORTS,
        "{} imports {} symbols (at most {MOST_IMPORTS}): each is a lookup at load in every \
         process; a function the library calls only sometimes belongs in \
         shim/src/ffi/imports.rs\n{imports:?}",
        library.display(),
        imports.len()
    );
}

#[test]
fn a_panic_inside_the_library_is_eio_and_silent_unless_asked() {
    let python = paths::require("python3", "python3");
    for asked in [false, true] {
        let mut client = Client::new(OWN_NETNS, &python).args(["-c", PANIC]).ld_preload();
        if asked {
            client = client.env("SOCKS_LOG", "error");
        }
        let ran = client.run();
        assert!(ran.success(), "the program survives the panic\n{}", ran.describe());
        if ran.stdout_text() == "no socks_debug_panic\n" {
            skip(
                "a_panic_inside_the_library_is_eio_and_silent_unless_asked",
                "the library under test is a release build (socks_debug_panic is debug-only)",
            );
            return;
        }
        assert_eq!(
            ran.stdout_text(),
            format!("-1 {eio}\n-1 {eio}\nstill running\n", eio = libc::EIO),
            "each panic is -1 with errno EIO\n{}",
            ran.describe()
        );
        if asked {
            assert_eq!(
                ran.stderr.matches("internal error").count(),
                2,
                "SOCKS_LOG=error shows each panic through the library's log\n{}",
                ran.describe()
            );
            assert!(!ran.stderr.contains("RUST_BACKTRACE"), "not std's message\n{}", ran.stderr);
        } else {
            assert!(ran.stderr.is_empty(), "a panic prints nothing\n{}", ran.describe());
        }
    }
}
