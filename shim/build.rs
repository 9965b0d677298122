//! Links the unwinder into libsocks.so statically (libgcc_eh.a) instead of the shared libgcc_s,
//! so every process the library is preloaded into maps, relocates and version-checks one
//! library fewer (issue 17, docs/PERFORMANCE.md "library load time"). The library still needs
//! an unwinder: the shield turns a panic into an errno with `catch_unwind`.
//!
//! std asks for `-lgcc_s`; rustc links it with `--as-needed`, so once the `_Unwind_*`
//! functions come from the archive named here (which the linker sees first) libgcc_s is
//! dropped from the library's dependencies. The archive's symbols stay local: rustc's version
//! script exports only the library's own `#[no_mangle]` functions, so a program's C++ unwinder
//! is never interposed.
//!
//! It also links the library with `-Bsymbolic-functions`: the calls std inside the library makes
//! to functions the library itself exports (close, read, write, syscall… — its hooks, which
//! such calls reached before too, the library being first in the search order) are bound when
//! the library is linked instead of looked up by the dynamic linker in every process.
//!
//! And it links every libc function listed in `src/ffi/imports.rs` with `-Wl,--wrap=NAME`: the
//! library's references to it go to a hidden `__wrap_NAME` there, which finds the function on
//! its first call, so a process that never calls it pays no symbol lookup for it at load. The
//! list is read from that file (its `lazy_imports!` lines `    fn NAME(`), so the two cannot
//! disagree. `-z defs` makes a wrapped name without its `__wrap_` a link error, not a library
//! that fails to load.
//!
//! And without the C compiler's start files (`-nostartfiles`: crti, crtbeginS, crtendS, crtn),
//! which a Rust library does not use: their `_init`/`_fini` (the library's constructor is an
//! `.init_array` entry), the transactional-memory clone table and gprof hooks (the weak
//! `_ITM_*` and `__gmon_start__` imports, looked up in every process and never found) and the
//! `__cxa_finalize` call at unload (nothing in the library registers an `atexit` handler; a
//! preloaded library is never unloaded). `__dso_handle` (crtbeginS's) is then null: std passes
//! it to `__cxa_thread_atexit_impl` only for thread-local destructors, of which the release
//! build has none (the unwinder finds the library's frames through `.eh_frame_hdr`, which does
//! not need crtendS's terminator).
//!
//! Not here: anything else about linking (the workspace `[profile.release]`). Where the C
//! compiler does not know a `libgcc_eh.a` (not gcc), nothing is changed and libgcc_s stays.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/ffi/imports.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = Command::new(&compiler).arg("-print-file-name=libgcc_eh.a").output() else {
        println!("cargo:warning=no C compiler `{compiler}`: libsocks.so keeps libgcc_s");
        return;
    };
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // gcc prints the bare name back when it has no such file.
    let Some(dir) = Path::new(&path).parent().filter(|d| d.is_absolute() && out.status.success())
    else {
        println!("cargo:warning=no libgcc_eh.a from `{compiler}`: libsocks.so keeps libgcc_s");
        return;
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-Bsymbolic-functions");
    println!("cargo:rustc-link-arg-cdylib=-nostartfiles");
    // The `__wrap_` jumps are x86-64 assembly (src/ffi/imports.rs); elsewhere the functions
    // stay ordinary imports.
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "x86_64") {
        wrap_lazy_imports();
    }
}

/// `-Wl,--wrap=NAME` for each function of `src/ffi/imports.rs`'s `lazy_imports!` list, and
/// `-z defs` so a wrapped name nobody defines fails the link.
fn wrap_lazy_imports() {
    let source = std::fs::read_to_string("src/ffi/imports.rs").unwrap_or_default();
    let list = source.split_once("\nlazy_imports! {\n").map_or("", |(_, rest)| rest);
    let list = list.split_once("\n}").map_or("", |(list, _)| list);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|line| line.strip_prefix("    fn ")?.split_once('(').map(|(name, _)| name))
        .collect();
    if names.is_empty() {
        println!("cargo:warning=no lazy_imports! list in src/ffi/imports.rs: nothing is wrapped");
        return;
    }
    for name in names {
        println!("cargo:rustc-link-arg-cdylib=-Wl,--wrap={name}");
    }
    println!("cargo:rustc-link-arg-cdylib=-Wl,-z,defs");
}
