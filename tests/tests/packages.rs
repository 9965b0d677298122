//! The Debian packages and the man pages (issue 13).
//!
//! - The man pages: `scripts/man` turns docs/*.md into roff that `groff -ww -z -man` and
//!   `man --warnings -l` (80 columns) read without a warning, and every long option that
//!   `sockd --help`, `socksify --help` and `socks-supervise --help` print is in its page, so the
//!   pages and the programs cannot drift apart. Runs as any user.
//! - The packages, as root, in one test (the build is a release build: once per run):
//!   `scripts/package` builds sockd_*.deb and libsocks_*.deb; lintian reports no error; apt
//!   installs them on this machine; the files are where they belong (units: whatever
//!   dist/systemd/ holds, sockd.service and sockd.socket enabled the Debian way even without a
//!   running systemd, the others not), `man -w` finds the four pages, the `sockd` system user exists, the installed
//!   `/etc/sockd.conf` passes `sockd --check` and an installed sockd started with it refuses a
//!   SOCKS4 and a SOCKS5 request, the installed socksify uses the installed library, and
//!   neither `/etc/socks.conf` nor `/etc/ld.so.preload` was touched. libsocks's prerm, run in a
//!   private `/etc` after the installed `socksify --system on`, takes the entry out and keeps
//!   the others. Then both are purged (also when a check failed: a guard) and every file is
//!   gone; the system user stays, as Debian keeps system users (debian/sockd.postinst says why).
//!   Dante's socksify (dante-client), when installed, is diverted to socksify.dante meanwhile
//!   and back in place afterwards, byte for byte.
//!   Skipped, saying so, when sockd or libsocks is already installed here (an administrator's
//!   own installation is never purged by a test).
//!
//! Not here: `socksify --system` itself (system_mode.rs); the units' own behaviour (their
//! tests belong with dist/systemd/).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use socks_e2e::*;

/// The workspace's root directory.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("workspace root")
}

/// Runs `program ARGS` to completion (no deadline needed: nothing here waits on the network).
fn run<S: AsRef<std::ffi::OsStr>>(program: impl AsRef<Path>, args: &[S]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .current_dir(workspace())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Stdout and stderr of a run, for messages.
fn shown(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_ran(what: &str, output: &Output) {
    assert!(output.status.success(), "{what} failed\n{}", shown(output));
}

/// The long options (`--name`) a help text mentions.
fn long_options(help: &str) -> Vec<String> {
    let mut options = Vec::new();
    let bytes = help.as_bytes();
    for at in 0..bytes.len().saturating_sub(2) {
        let starts = bytes[at] == b'-'
            && bytes[at + 1] == b'-'
            && bytes[at + 2].is_ascii_lowercase()
            && (at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'-'));
        if starts {
            let end = (at + 2..bytes.len())
                .find(|&i| !(bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-'))
                .unwrap_or(bytes.len());
            let option = help[at..end].trim_end_matches('-').to_owned();
            if !options.contains(&option) {
                options.push(option);
            }
        }
    }
    options
}

/// The text of a roff page with its escaped hyphens plain (`\-` is how roff writes `-`).
fn roff_text(path: &Path) -> String {
    let roff = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    roff.replace("\\-", "-")
}

#[test]
fn man_pages_are_clean_roff_and_name_every_option() {
    paths::require("pandoc", "pandoc");
    let groff = paths::require("groff", "groff-base");
    let man = paths::require("man", "man-db");
    let out = TempDir::new("man");
    let made = run(workspace().join("scripts/man"), &[out.path()]);
    assert_ran("scripts/man", &made);
    let pages = ["sockd.8", "sockd.conf.5", "socks.conf.5", "socksify.1"];
    for page in pages {
        let path = out.path().join(page);
        let checked =
            run(&groff, &[Path::new("-ww"), Path::new("-z"), Path::new("-man"), path.as_path()]);
        assert!(
            checked.status.success() && checked.stderr.is_empty(),
            "groff -ww -z -man {page} must pass without a warning\n{}",
            shown(&checked)
        );
        let rendered = Command::new(&man)
            .args([Path::new("--warnings"), Path::new("-l"), path.as_path()])
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .env("MANPAGER", "cat")
            .output()
            .expect("man runs");
        assert!(
            rendered.status.success() && rendered.stderr.is_empty(),
            "man --warnings -l {page} (80 columns) must pass without a warning\n{}",
            shown(&rendered)
        );
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("NAME") && text.len() > 2000, "{page} renders to a page\n{text}");
    }

    let help = |program: &Path| {
        let output = run(program, &["--help"]);
        assert_ran(&format!("{} --help", program.display()), &output);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let checks = [
        ("sockd --help", help(&paths::sockd()), "sockd.8"),
        ("socksify --help", help(&paths::socksify()), "socksify.1"),
        ("socks-supervise --help", help(&paths::supervisor()), "socksify.1"),
    ];
    for (what, text, page) in checks {
        let options = long_options(&text);
        assert!(options.len() >= 2, "{what} lists its options: {options:?}\n{text}");
        let documented = roff_text(&out.path().join(page));
        let missing: Vec<&String> =
            options.iter().filter(|option| !documented.contains(option.as_str())).collect();
        assert!(
            missing.is_empty(),
            "{page} must document every long option of {what}; missing: {missing:?} \
             (add them to docs/{page}.md)"
        );
    }
}

/// apt's wait for the dpkg lock, which another apt run on this machine may hold for a while.
const LOCK_WAIT: &str = "-oDPkg::Lock::Timeout=300";

/// Whether Debian package `name` is installed here.
fn installed(name: &str) -> bool {
    let output = run("dpkg-query", &["-W", "-f=${Status}", name]);
    String::from_utf8_lossy(&output.stdout).contains("install ok installed")
}

/// Purges both packages when dropped, so a failed check never leaves them installed.
struct Purge {
    armed: bool,
}

impl Drop for Purge {
    fn drop(&mut self) {
        if self.armed {
            let output = run("apt-get", &[LOCK_WAIT, "purge", "-y", "libsocks", "sockd"]);
            eprintln!("packages: purged after a failure\n{}", shown(&output));
        }
    }
}

/// `/etc/socks.conf` and `/etc/ld.so.preload` as they are (None: absent).
fn client_files() -> Vec<(&'static str, Option<Vec<u8>>)> {
    ["/etc/socks.conf", "/etc/ld.so.preload"]
        .into_iter()
        .map(|path| (path, std::fs::read(path).ok()))
        .collect()
}

/// Dante's `/usr/bin/socksify` and socksify(1) page as they are (None: absent).
fn dante_files() -> Vec<(String, Option<Vec<u8>>)> {
    ["/usr/bin/socksify", "/usr/share/man/man1/socksify.1.gz"]
        .into_iter()
        .map(|path| (path.to_owned(), std::fs::read(path).ok()))
        .collect()
}

/// The one `.deb` of `package` in `dir`.
fn deb(dir: &Path, package: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
        })
        .collect();
    assert_eq!(found.len(), 1, "exactly one {package}_*.deb in {}: {found:?}", dir.display());
    found.into_iter().next().expect("one")
}

/// A TCP port free on 127.0.0.1 right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Sends `request` to the SOCKS server at `addr` and returns the first `reply_len` bytes of
/// the answer (fewer if it closed).
fn socks_exchange(addr: SocketAddr, request: &[u8], reply_len: usize) -> Vec<u8> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to sockd");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(request).expect("send the request");
    let mut reply = Vec::new();
    let _ = stream.take(reply_len as u64).read_to_end(&mut reply);
    reply
}

/// `WantedBy=` targets of a unit file.
fn wanted_by(unit: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(unit).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("WantedBy="))
        .flat_map(|targets| targets.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

#[test]
fn packages_build_install_and_purge() {
    let name = "packages::packages_build_install_and_purge";
    if !is_root() {
        skip(name, "installing Debian packages needs root");
        return;
    }
    for (program, package) in [
        ("dpkg-buildpackage", "dpkg-dev"),
        ("dh", "debhelper"),
        ("lintian", "lintian"),
        ("pandoc", "pandoc"),
        ("man", "man-db"),
        ("apt-get", "apt"),
        ("unshare", "util-linux"),
    ] {
        paths::require(program, package);
    }
    if let Some(package) = ["sockd", "libsocks"].into_iter().find(|p| installed(p)) {
        skip(name, &format!("the Debian package {package} is already installed on this machine"));
        return;
    }
    let root = workspace();
    let before = client_files();
    // Dante's socksify and its page (dante-client, which the interop tests use), diverted to
    // socksify.dante while libsocks is installed (debian/libsocks.preinst).
    let dante_before = dante_files();

    // Build.
    let built = run(root.join("scripts/package"), &[] as &[&str]);
    assert_ran("scripts/package", &built);
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("debian");
    let (sockd_deb, libsocks_deb) = (deb(&out, "sockd"), deb(&out, "libsocks"));

    // lintian: no error (overrides are in debian/*.lintian-overrides, each with its reason).
    let lint = run("lintian", &[&sockd_deb, &libsocks_deb]);
    let lint_text = String::from_utf8_lossy(&lint.stdout).into_owned();
    let errors: Vec<&str> = lint_text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian reports errors: {errors:#?}\n{}", shown(&lint));

    // Install.
    let mut guard = Purge { armed: true };
    let apt = run(
        "apt-get",
        &[Path::new(LOCK_WAIT), Path::new("install"), Path::new("-y"), &sockd_deb, &libsocks_deb],
    );
    assert_ran("apt-get install ./sockd_*.deb ./libsocks_*.deb", &apt);
    assert!(installed("sockd") && installed("libsocks"), "both packages are installed");

    let multiarch = run("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"]);
    assert_ran("dpkg-architecture", &multiarch);
    let multiarch = String::from_utf8_lossy(&multiarch.stdout).trim().to_owned();
    let library = format!("/usr/lib/{multiarch}/libsocks.so");
    let mut files = vec![
        "/usr/sbin/sockd".to_owned(),
        "/etc/sockd.conf".to_owned(),
        "/usr/share/doc/sockd/copyright".to_owned(),
        "/usr/share/doc/sockd/examples/figure5.conf".to_owned(),
        library.clone(),
        "/usr/bin/socksify".to_owned(),
        "/usr/bin/socks-supervise".to_owned(),
        "/usr/share/libsocks/socksify-system".to_owned(),
        "/usr/share/doc/libsocks/copyright".to_owned(),
        "/usr/share/doc/libsocks/examples/socks.conf".to_owned(),
    ];
    // The units: whatever dist/systemd/ holds; the standalone service and socket enabled the
    // Debian way (deb-systemd-helper's symlinks), whether or not systemd runs here.
    let (mut enabled_links, mut disabled_links) = (Vec::new(), Vec::new());
    if let Ok(entries) = std::fs::read_dir(root.join("dist/systemd")) {
        for unit in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let unit_name = unit.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
            if !(unit_name.ends_with(".service") || unit_name.ends_with(".socket")) {
                continue;
            }
            files.push(format!("/lib/systemd/system/{unit_name}"));
            for target in wanted_by(&unit) {
                let link = format!("/etc/systemd/system/{target}.wants/{unit_name}");
                if unit_name == "sockd.service" || unit_name == "sockd.socket" {
                    enabled_links.push(link);
                } else {
                    // sockd-inetd.socket wants the port sockd.socket has: left for the
                    // administrator to choose.
                    disabled_links.push(link);
                }
            }
        }
    }
    for file in files.iter().chain(&enabled_links) {
        assert!(Path::new(file).symlink_metadata().is_ok(), "{file} is installed\n{}", shown(&apt));
    }
    for link in &disabled_links {
        assert!(Path::new(link).symlink_metadata().is_err(), "{link} is not enabled");
    }
    let pages = run("man", &["-w", "sockd", "sockd.conf", "socks.conf", "socksify"]);
    assert_ran("man -w sockd sockd.conf socks.conf socksify", &pages);
    let pages = String::from_utf8_lossy(&pages.stdout).into_owned();
    for page in [
        "/usr/share/man/man8/sockd.8.gz",
        "/usr/share/man/man5/sockd.conf.5.gz",
        "/usr/share/man/man5/socks.conf.5.gz",
        "/usr/share/man/man1/socksify.1.gz",
    ] {
        assert!(pages.contains(page), "man -w finds {page}: {pages}");
    }

    let user = run("getent", &["passwd", "sockd"]);
    assert_ran("getent passwd sockd (the system user postinst creates)", &user);
    let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
    let fields: Vec<&str> = user.split(':').collect();
    let uid: u32 = fields.get(2).and_then(|u| u.parse().ok()).expect("uid field");
    assert!(uid < 1000, "sockd is a system user: {user}");
    assert!(
        fields.get(6).is_some_and(|shell| shell.ends_with("nologin") || shell.ends_with("false")),
        "sockd cannot log in: {user}"
    );

    // The default rules: valid, and they deny.
    let check = run("/usr/sbin/sockd", &["--check", "-f", "/etc/sockd.conf"]);
    assert_ran("sockd --check -f /etc/sockd.conf", &check);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let sockd = Daemon::spawn(
        OWN_NETNS,
        "installed-sockd",
        Path::new("/usr/sbin/sockd"),
        &["-f", "/etc/sockd.conf", "-l", &listen],
    );
    sockd.wait_line(&["listening on"], STARTUP);
    let addr: SocketAddr = listen.parse().expect("address");
    // SOCKS5: no authentication, then CONNECT 192.0.2.80:80 (RFC 5737; never tried, as the
    // rules decide first). Reply 0x02: connection not allowed by ruleset.
    let v5 = socks_exchange(addr, &[5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 80, 0, 80], 4);
    assert_eq!(v5.get(..2), Some(&[5u8, 0][..]), "sockd accepts no-auth: {v5:?}");
    assert_eq!(v5.get(3), Some(&2u8), "SOCKS5 CONNECT refused by the rules: {v5:?}");
    // SOCKS4 CONNECT 192.0.2.80:80, user "x": reply 91, rejected.
    let v4 = socks_exchange(addr, &[4, 1, 0, 80, 192, 0, 2, 80, b'x', 0], 2);
    assert_eq!(v4, [0, 91], "SOCKS4 CONNECT refused by the rules");
    drop(sockd);

    // The installed socksify uses the installed library and supervisor.
    let env = run("/usr/bin/socksify", &["--preload", "/usr/bin/env"]);
    assert_ran("socksify --preload env", &env);
    let env_text = String::from_utf8_lossy(&env.stdout).into_owned();
    assert!(
        env_text.lines().any(|l| l == format!("LD_PRELOAD={library}")),
        "the installed socksify preloads {library}\n{}",
        shown(&env)
    );
    let status = run("/usr/bin/socksify", &["--system", "status"]);
    assert_eq!(status.status.code(), Some(3), "system mode is off\n{}", shown(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains(&library), "{}", shown(&status));
    assert_eq!(client_files(), before, "installing libsocks touches neither file");

    // socksify --system on, then the package's prerm, in a private /etc.
    let scratch = TempDir::new("packages-etc");
    let libm = format!("/lib/{multiarch}/libm.so.6");
    let script = r#"
        scratch=$1 libm=$2
        mount -t tmpfs socks-e2e "$scratch" && mkdir "$scratch/upper" "$scratch/work" &&
          mount -t overlay socks-e2e-etc \
            -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc || exit 125
        printf 'direct 0.0.0.0/0\n' >/etc/socks.conf
        printf '%s\n' "$libm" >/etc/ld.so.preload
        /usr/bin/socksify --system on >&2 || exit 10
        echo "--- on"; cat /etc/ld.so.preload
        /var/lib/dpkg/info/libsocks.prerm remove || exit 11
        echo "--- prerm"; cat /etc/ld.so.preload
    "#;
    let ran = run(
        "unshare",
        &[
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            script,
            "sh",
            &scratch.path().display().to_string(),
            &libm,
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        format!("--- on\n{libm}\n{library}\n--- prerm\n{libm}\n"),
        "the installed socksify --system on adds the installed library; libsocks's prerm takes \
         it out and keeps the other entry\n{}",
        shown(&ran)
    );
    assert_eq!(client_files(), before, "the private /etc left the real one alone");

    // Purge.
    let purge = run("apt-get", &[LOCK_WAIT, "purge", "-y", "libsocks", "sockd"]);
    assert_ran("apt-get purge libsocks sockd", &purge);
    guard.armed = false;
    assert!(!installed("sockd") && !installed("libsocks"), "both packages are gone");
    for file in files.iter().chain(&enabled_links) {
        if dante_before.iter().any(|(path, bytes)| path == file && bytes.is_some()) {
            continue;
        }
        assert!(Path::new(file).symlink_metadata().is_err(), "{file} is gone after the purge");
    }
    assert_eq!(dante_files(), dante_before, "Dante's socksify files are back as they were");
    for (path, _) in &dante_before {
        let diverted = path.replace("socksify", "socksify.dante");
        assert!(!Path::new(&diverted).exists(), "{diverted} is gone after the purge");
    }
    let diversions = run("dpkg-divert", &["--list", "*socksify*"]);
    assert!(
        !String::from_utf8_lossy(&diversions.stdout).contains("libsocks"),
        "libsocks leaves no diversion behind\n{}",
        shown(&diversions)
    );
    let gone = run("man", &["-w", "sockd"]);
    assert!(!gone.status.success(), "man -w sockd finds nothing after the purge");
    assert!(
        run("getent", &["passwd", "sockd"]).status.success(),
        "the system user stays after the purge (debian/sockd.postinst)"
    );
    assert_eq!(client_files(), before, "removing libsocks touches neither file");
}
