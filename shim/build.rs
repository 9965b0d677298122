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
//! Not here: anything else about linking (the workspace `[profile.release]`). Where the C
//! compiler does not know a `libgcc_eh.a` (not gcc), nothing is changed and libgcc_s stays.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
}
