//! Programs the tests build for themselves, for the supervisor's suites: static C programs
//! from `tests/c/` (`cc -static -pthread`) and static Go programs (`CGO_ENABLED=0`, Debian's
//! golang-go), and whether `socks-supervise` can start a program on this kernel at all.
//!
//! Not here: running them (see `process`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{paths, skip, Lab};

/// Whether the supervisor can start a program here; reports `test` skipped otherwise (no
/// seccomp user notification, say).
pub fn supervisor_works(test: &str) -> bool {
    let out = Command::new(paths::supervisor())
        .args(["--", "/bin/true"])
        .output()
        .expect("socks-supervise runs");
    if out.status.success() {
        return true;
    }
    let why = format!(
        "socks-supervise cannot start a program here (no seccomp user notification?): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    skip(test, &why);
    false
}

/// The lab for supervised test `name`: `None` (skip reported) without root or when the
/// supervisor cannot start a program here ([`supervisor_works`]).
pub fn supervised_lab(name: &str) -> Option<Lab> {
    let lab = Lab::new(name)?;
    if !supervisor_works(lab.name()) {
        return None;
    }
    Some(lab)
}

/// Builds `tests/c/NAME.c` statically (`cc -static -pthread`) into `dir`; `None` (skip
/// reported for `test`) when this system has no static C library.
pub fn build_static(test: &str, dir: &Path, name: &str) -> Option<PathBuf> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("c/{name}.c"));
    let binary = dir.join(name);
    let out = Command::new(paths::require("cc", "gcc"))
        .args(["-static", "-pthread", "-O2", "-Wall", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("cc runs");
    if !out.status.success() {
        let why = format!(
            "cc -static {name}.c failed (libc6-dev provides libc.a): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        skip(test, &why);
        return None;
    }
    Some(binary)
}

/// Builds `tests/c/NAME.c` into `dir`, dynamically linked (for the library), with `flags`
/// added to `cc -O2 -Wall`.
pub fn build_c(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("c/{name}.c"));
    let binary = dir.join(name);
    let out = Command::new(paths::require("cc", "gcc"))
        .args(["-O2", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("cc runs");
    assert!(out.status.success(), "cc {name}.c: {}", String::from_utf8_lossy(&out.stderr));
    binary
}

/// Builds `source` with Debian's Go, `CGO_ENABLED=0` (a static binary), into the lab's
/// directory as `name`.
pub fn go_build(lab: &Lab, name: &str, source: &str) -> PathBuf {
    let go = paths::require("go", "golang-go");
    let dir = lab.dir.path();
    let main = lab.write(&format!("{name}.go"), source);
    let binary = dir.join(name);
    let out = Command::new(go)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(&main)
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .env("GO111MODULE", "off")
        .env("HOME", dir)
        .env("GOPATH", dir.join("gopath"))
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .expect("go runs");
    assert!(out.status.success(), "go build: {}", String::from_utf8_lossy(&out.stderr));
    binary
}
