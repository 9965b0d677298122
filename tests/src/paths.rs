//! Where the things under test and the programs the tests run live: the workspace's built
//! `sockd`, `libsocks.so` and `socks-supervise` (found from the test binary's own path), `scripts/socksify`, and
//! Debian programs (searched in the system directories only, so a pyenv or nvm shim earlier in
//! `PATH` is never what gets tested).
//!
//! Not here: running anything (see `process`).

use std::path::{Path, PathBuf};

/// The cargo target profile directory the test binary was built into (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    // target/debug/deps/socks_e2e-HASH -> target/debug
    let deps = exe.parent().expect("the test binary lives in a directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

fn built(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (the end-to-end tests run the built \
         binaries)",
        path.display()
    );
    path
}

/// The built `sockd`.
pub fn sockd() -> PathBuf {
    built("sockd")
}

/// The built preload library.
pub fn libsocks() -> PathBuf {
    built("libsocks.so")
}

/// The built supervisor for static and Go programs (`socks-supervise`).
pub fn supervisor() -> PathBuf {
    built("socks-supervise")
}

/// `scripts/socksify` of this workspace.
pub fn socksify() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/socksify");
    assert!(path.is_file(), "{} is missing", path.display());
    path.canonicalize().expect("socksify path resolves")
}

/// The system directories programs are looked up in, Debian's own first.
const SYSTEM_DIRS: [&str; 6] =
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"];

/// Finds `program` in the system directories. A missing program is a failure that names the
/// Debian package to install, never a silent skip.
pub fn require(program: &str, debian_package: &str) -> PathBuf {
    for dir in SYSTEM_DIRS {
        let candidate = Path::new(dir).join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "required program `{program}` is not installed: install the Debian package \
         `{debian_package}` (apt-get install -y {debian_package}; it is listed in \
         scripts/test-packages)"
    );
}
