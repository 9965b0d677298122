//! The library's map of fake names is a per-user file (issue 16), end to end: a fake address
//! handed out in one process means the same name in a process started separately (the
//! Chromium case: resolve in one process, connect from another that was exec'd), the maps of
//! two users (root and `nobody`) are separate whichever `XDG_RUNTIME_DIR` root has, and a map
//! directory that is a symlink or another user's makes the library fall back to a private map
//! (shared by fork only) without opening or changing the file it points at, as a
//! secure-execution program (a file capability, run by `nobody`) always does.
//!
//! The lab is names.rs's: no resolver inside, the outside name server reached only by sockd,
//! which logs the *name* it was asked for (`dst=www.example.test:80`). Every lab client has
//! the lab's own `XDG_RUNTIME_DIR` (`Lab::runtime_dir`), so tests never share a map.
//!
//! Not here: names within one process tree (names.rs), the map's own checks and bounds (unit
//! tests in shim/src/ffi/fakemap.rs), supervised programs, which keep their own map in the
//! supervisor (supervised_names.rs).

use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socks_e2e::dns::{self, Dnsmasq, WWW};
use socks_e2e::preload::{setup_failure, SETCAP_FAILED};
use socks_e2e::*;

/// A lab with the outside name service and our sockd on the firewall.
fn names_lab(name: &str) -> Option<(Lab, Dnsmasq, Daemon)> {
    let lab = Lab::new(name)?;
    let dns = dns::outside_dns(&lab);
    let sockd = lab.sockd(PERMIT_INSIDE);
    Some((lab, dns, sockd))
}

/// `client` under the library with every name resolved remotely and the debug log on.
fn under_library(client: Client) -> Client {
    client.env("SOCKS_SERVER", SERVER).env("SOCKS_LOG", "debug").env("no_proxy", "*").ld_preload()
}

/// The first address `getent ahosts NAME` prints, run under the library in a process of its
/// own (with `runtime` as XDG_RUNTIME_DIR when given).
fn fake_of(lab: &Lab, name: &str, runtime: Option<&Path>) -> Ipv4Addr {
    let mut client =
        under_library(lab.client(paths::require("getent", "libc-bin"))).args(["ahostsv4", name]);
    if let Some(dir) = runtime {
        client = client.env("XDG_RUNTIME_DIR", dir.display().to_string());
    }
    let ran = client.run();
    assert!(ran.success(), "getent must resolve {name}\n{}", ran.describe());
    let text = ran.stdout_text();
    let first = text.split_whitespace().next().unwrap_or_default();
    let ip: Ipv4Addr = first.parse().unwrap_or_else(|_| panic!("no address\n{}", ran.describe()));
    assert_eq!(ip.octets()[..2], [198, 18], "a fake address for {name}\n{}", ran.describe());
    ip
}

/// curl `url` under the library, as root in the lab.
fn curl(lab: &Lab, url: &str) -> Ran {
    under_library(lab.client(paths::require("curl", "curl")))
        .args(["-sS", "--max-time", "20", url])
        .run()
}

/// Waits until sockd has logged `count` complete sessions to the NAME `name`:80.
fn sessions_by_name(sockd: &Daemon, name: &str, count: usize) -> Vec<String> {
    let (client, dst) = (format!("client={INSIDE_ADDR}:"), format!("dst={name}:80 "));
    sockd.wait_lines(&["closed:", &client, "cmd=connect", &dst], count, STARTUP);
    sockd.wait_lines(&["connected:", &client, "cmd=connect", &dst], count, STARTUP)
}

#[test]
fn a_separately_started_process_connects_to_a_fake_address() {
    let Some((lab, _dns, sockd)) = names_lab("map-exec") else { return };
    let www = dns::http_dual(&lab, 80);

    // One process resolves and exits; the map stays in the lab's runtime directory.
    let fake = fake_of(&lab, WWW, None);
    let file = lab.runtime_dir().join("socks/names-v1");
    let meta = std::fs::symlink_metadata(&file).expect("the per-user map file exists");
    assert!(meta.is_file() && meta.permissions().mode() & 0o777 == 0o600, "{meta:?}");
    assert_eq!(meta.uid(), 0);

    // Another process, started on its own, connects to the fake address: the name goes to
    // sockd, which reaches the outside web server by name.
    let ran = curl(&lab, &format!("http://{fake}/separate"));
    assert!(
        ran.success() && ran.stdout == http_body("/separate"),
        "curl must reach {WWW} through the fake address another process got\n{}",
        ran.describe()
    );
    let shown = format!("fake-name map: the per-user file {}", file.display());
    assert!(ran.stderr.contains(&shown), "the library says which map it uses\n{}", ran.describe());
    assert!(
        ran.stderr.contains(&format!("connect {WWW}:80 via {SERVER} (socks5): ok")),
        "the library must connect to the NAME\n{}",
        ran.describe()
    );
    sessions_by_name(&sockd, WWW, 1);

    // A third process: the reverse lookup of the fake address gives the name back, and the
    // same name resolved again gets the same address.
    let script = format!("import socket\nprint(socket.gethostbyaddr('{fake}')[0])");
    let ran = under_library(lab.python(&script)).run();
    assert!(ran.success() && ran.stdout_text() == format!("{WWW}\n"), "{}", ran.describe());
    assert_eq!(fake_of(&lab, WWW, None), fake, "one name, one fake address, in every process");
    let paths: Vec<String> =
        www.iter().flat_map(|s| s.wait_done(0, STARTUP)).filter_map(|e| e.path).collect();
    assert!(paths.iter().any(|p| p == "/separate"), "{paths:?}");
    dns::assert_no_fake_destination(&sockd);
}

/// A directory for user `nobody` (65534) in the lab, mode 0700.
fn nobodys_dir(lab: &Lab, name: &str) -> PathBuf {
    let dir = lab.dir.path().join(name);
    private_dir(&dir);
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown to nobody");
    dir
}

/// `program ARGS` run as `nobody` under the library (loaded from a copy nobody can read), with
/// `runtime` as its XDG_RUNTIME_DIR.
fn as_nobody(lab: &Lab, runtime: &Path, program: &Path, args: &[&str]) -> Ran {
    let setpriv = paths::require("setpriv", "util-linux");
    let library = preload::library(lab);
    lab.client(setpriv)
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--", "/usr/bin/env"])
        .args([
            format!("LD_PRELOAD={}", library.display()),
            format!("XDG_RUNTIME_DIR={}", runtime.display()),
        ])
        .args([program.display().to_string()])
        .args(args)
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "debug")
        .env("no_proxy", "*")
        .run()
}

#[test]
fn two_users_never_share_a_map() {
    let Some((lab, _dns, sockd)) = names_lab("map-users") else { return };
    let _www = dns::http_dual(&lab, 80);
    let getent = paths::require("getent", "libc-bin");
    let curl_path = paths::require("curl", "curl");

    // root: two names, so www gets the second entry.
    fake_of(&lab, "first.example.test", None);
    let roots_www = fake_of(&lab, WWW, None);

    // nobody, with a runtime directory of its own: root's address means nothing there.
    let runtime = nobodys_dir(&lab, "nobody-runtime");
    let ran = as_nobody(
        &lab,
        &runtime,
        &curl_path,
        &["-sS", "--max-time", "20", &format!("http://{roots_www}/")],
    );
    assert!(!ran.success(), "nobody must not reach root's fake address\n{}", ran.describe());
    assert!(ran.stderr.contains("never handed out"), "{}", ran.describe());
    assert!(
        ran.stderr.contains(&format!("the per-user file {}/socks/names-v1", runtime.display())),
        "nobody uses its own map\n{}",
        ran.describe()
    );

    // nobody's names: www gets the fourth entry of its map, in a file nobody owns.
    for name in ["n1.example.test", "n2.example.test", "n3.example.test", WWW] {
        let ran = as_nobody(&lab, &runtime, &getent, &["ahostsv4", name]);
        assert!(ran.success(), "{}", ran.describe());
    }
    let ran = as_nobody(&lab, &runtime, &getent, &["ahostsv4", WWW]);
    let nobodys_www: Ipv4Addr = ran
        .stdout_text()
        .split_whitespace()
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{}", ran.describe()));
    assert_eq!(nobodys_www, Ipv4Addr::new(198, 18, 0, 4), "{}", ran.describe());
    let file = runtime.join("socks/names-v1");
    assert_eq!(std::fs::metadata(&file).expect("nobody's map").uid(), 65534);
    // …which works for nobody's other processes (through sockd, by name)…
    let ran = as_nobody(
        &lab,
        &runtime,
        &curl_path,
        &["-sS", "--max-time", "20", &format!("http://{nobodys_www}/nobody")],
    );
    assert!(ran.success() && ran.stdout == http_body("/nobody"), "{}", ran.describe());
    sessions_by_name(&sockd, WWW, 1);

    // …and means nothing to root.
    let ran = curl(&lab, &format!("http://{nobodys_www}/"));
    assert!(!ran.success(), "root must not reach nobody's fake address\n{}", ran.describe());
    assert!(ran.stderr.contains("never handed out"), "{}", ran.describe());

    // root with nobody's XDG_RUNTIME_DIR (su without -): passes over nobody's directory, and
    // nobody's file is neither used nor changed.
    let before = std::fs::read(&file).expect("read nobody's map");
    let ran = under_library(lab.client(&curl_path))
        .args(["-sS", "--max-time", "5", &format!("http://{nobodys_www}/")])
        .env("XDG_RUNTIME_DIR", runtime.display().to_string())
        .run();
    assert!(
        ran.stderr.contains("fake-name map: the per-user file /run/user/0/socks/names-v1")
            || ran.stderr.contains("fake-name map: the per-user file /tmp/socks-0/names-v1"),
        "root uses root's own map\n{}",
        ran.describe()
    );
    assert!(!ran.stderr.contains(&runtime.display().to_string()), "{}", ran.describe());
    assert!(std::fs::read(&file).expect("read nobody's map") == before, "nobody's map unchanged");
}

/// Python: a child resolves www, the parent connects to the address the child got (the map
/// shared by fork) and prints the body.
const FORK_THEN_CONNECT: &str = r#"
import os, socket
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    ip = socket.getaddrinfo("www.example.test", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    os.write(w, ip.encode())
    os._exit(0)
os.waitpid(pid, 0)
ip = os.read(r, 100).decode()
s = socket.create_connection((ip, 80), timeout=15)
s.sendall(b"GET /fallback HTTP/1.0\r\nHost: www.example.test\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(ip, data.split(b"\r\n\r\n", 1)[1].decode().strip())
"#;

#[test]
fn unsafe_map_directories_make_a_private_map() {
    let Some((lab, _dns, sockd)) = names_lab("map-fallback") else { return };
    let _www = dns::http_dual(&lab, 80);

    // A map elsewhere (root's, in another runtime directory) with a name in it.
    let elsewhere = lab.dir.path().join("elsewhere");
    private_dir(&elsewhere);
    let theirs = fake_of(&lab, "their.example.test", Some(&elsewhere));
    let their_file = elsewhere.join("socks/names-v1");
    let before = std::fs::read(&their_file).expect("their map");

    // 1. `socks` in the runtime directory is a symlink to that map's directory.
    let symlinked = lab.dir.path().join("symlinked");
    private_dir(&symlinked);
    std::os::unix::fs::symlink(elsewhere.join("socks"), symlinked.join("socks")).expect("symlink");
    // 2. `socks` is a real directory, but nobody's, holding a copy of that map owned by nobody.
    let foreign = lab.dir.path().join("foreign");
    private_dir(&foreign);
    let foreign_socks = nobodys_dir(&lab, "foreign/socks");
    std::fs::copy(&their_file, foreign_socks.join("names-v1")).expect("copy");
    std::os::unix::fs::chown(foreign_socks.join("names-v1"), Some(65534), Some(65534))
        .expect("chown");
    let foreign_before = std::fs::read(foreign_socks.join("names-v1")).expect("read");

    for runtime in [&symlinked, &foreign] {
        let ran = under_library(lab.python(FORK_THEN_CONNECT))
            .env("XDG_RUNTIME_DIR", runtime.display().to_string())
            .run();
        assert!(ran.success(), "the program still works on a private map\n{}", ran.describe());
        let out = ran.stdout_text();
        assert!(out.ends_with(" hello from outside: /fallback\n"), "{}", ran.describe());
        assert!(
            out.starts_with(&format!("{theirs} ")),
            "a fresh private map starts at the first fake address, like the other map did\n{}",
            ran.describe()
        );
        assert!(
            ran.stderr.contains("fake-name map: private to this process tree"),
            "the fallback is said\n{}",
            ran.describe()
        );
    }
    sessions_by_name(&sockd, WWW, 2);
    assert!(
        std::fs::read(&their_file).expect("their map") == before,
        "the map behind the symlink is untouched"
    );
    assert!(
        std::fs::read(foreign_socks.join("names-v1")).expect("read") == foreign_before,
        "nobody's map is untouched"
    );
    assert!(
        !symlinked.join("socks").join("names-v1.new").exists()
            && std::fs::read_dir(elsewhere.join("socks")).expect("dir").count() == 1,
        "nothing was made behind the symlink"
    );
}

/// Python: resolves www (a fake address from /etc/socks.conf's rule) and says whether the map
/// is the per-user file (a `names-v1` mapping in /proc/self/maps) and whether it runs in
/// secure-execution mode.
const WHICH_MAP: &str = r#"
import ctypes, socket
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
libc.getauxval.argtypes = [ctypes.c_ulong]
ip = socket.getaddrinfo("www.example.test", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
maps = open("/proc/self/maps").read()
print(f"secure={libc.getauxval(23)} fake={ip} file={'names-v1' in maps}")
"#;

#[test]
fn secure_execution_programs_get_a_private_map() {
    let Some(lab) = Lab::new("map-secure") else { return };
    let python3 = paths::require("python3", "python3");
    let real_python = std::fs::canonicalize(&python3).expect("python3 resolves");
    let runtime = nobodys_dir(&lab, "nobody-runtime");
    let run = |setup: SystemWide| {
        setup
            .etc_file("socks.conf", &format!("sockd @={SERVER} 0.0.0.0/0\n"))
            .as_user("nobody", "nogroup")
            .client(&lab, &python3, ["-c", WHICH_MAP])
            .env("XDG_RUNTIME_DIR", runtime.display().to_string())
            .run()
    };

    // Control: nobody's plain python maps nobody's file.
    let plain = run(SystemWide::with_library());
    assert_eq!(
        plain.stdout_text(),
        "secure=0 fake=198.18.0.1 file=True\n",
        "an ordinary program uses the per-user file\n{}",
        plain.describe()
    );
    assert!(runtime.join("socks/names-v1").is_file());

    // The same program with a file capability (AT_SECURE=1): a private map, whatever the
    // environment says, and no file of anybody's.
    let secure =
        run(SystemWide::with_library().file_capability(&real_python, "cap_net_bind_service+ep"));
    if let Some(why) = setup_failure(&secure) {
        if secure.status.and_then(|s| s.code()) == Some(SETCAP_FAILED) {
            socks_e2e::skip(
                "secure execution private map",
                &format!("no file capabilities: {why}"),
            );
            return;
        }
        panic!("the private /etc could not be set up: {why}\n{}", secure.describe());
    }
    if secure.stdout_text().starts_with("secure=0") {
        socks_e2e::skip(
            "secure execution private map",
            &format!("the kernel did not honour the file capability\n{}", secure.describe()),
        );
        return;
    }
    assert_eq!(
        secure.stdout_text(),
        "secure=1 fake=198.18.0.1 file=False\n",
        "a secure-execution program resolves with a private map\n{}",
        secure.describe()
    );
}

/// A library with nothing to do makes no file: a shell that forks (bash; dash uses vfork), under the library with no
/// `SOCKS_SERVER`, `SOCKS_CONF` nor /etc/socks.conf, leaves the runtime directory empty; the
/// same shell with `SOCKS_SERVER` makes the map before its first fork.
#[test]
fn a_library_with_nothing_configured_makes_no_file() {
    let Some(lab) = Lab::new("map-unconfigured") else { return };
    if Path::new("/etc/socks.conf").exists() {
        socks_e2e::skip("map-unconfigured", "this host has an /etc/socks.conf");
        return;
    }
    let shell =
        |client: Client| client.args(["-c", "/bin/true; /bin/true; echo done"]).ld_preload().run();
    let ran = shell(lab.client("/bin/bash"));
    assert!(ran.success() && ran.stdout_text() == "done\n", "{}", ran.describe());
    assert!(
        !lab.runtime_dir().join("socks").exists(),
        "nothing configured: no map directory nor file"
    );
    let ran = shell(lab.client("/bin/bash").env("SOCKS_SERVER", SERVER));
    assert!(ran.success() && ran.stdout_text() == "done\n", "{}", ran.describe());
    assert!(
        lab.runtime_dir().join("socks/names-v1").is_file(),
        "configured: the fork hook opened the map"
    );
}
