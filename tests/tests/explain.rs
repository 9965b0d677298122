//! `socksify --explain DEST[:PORT]` and `socksify --check` (issue 15), run as a user runs them
//! (scripts/socksify with the built socks-supervise): for each kind of socks.conf line, the
//! output names the line that decides (file:line and its text) and the route; names are
//! explained as resolved locally (and why) or sent to the server; `SOCKS_SERVER` alone and no
//! configuration at all; a broken file gives `file:line: message` and exit status 1. And
//! `--explain` connects nowhere and sends no DNS query: under strace no connect or send names an
//! IPv4 or IPv6 address, and in an empty network namespace it still answers.
//!
//! No namespaces are needed except the empty one of the last test (root only, else SKIPPED).
//!
//! Not here: the routing logic itself (client/src/route.rs, names.rs unit tests).

use std::path::PathBuf;
use std::process::Command;

use socks_e2e::{paths, skip};

/// A temporary directory for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("socks-explain-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        Dir(dir)
    }

    /// Writes `socks.conf` with `text`; its path.
    fn conf(&self, text: &str) -> String {
        let path = self.0.join("socks.conf");
        std::fs::write(&path, text).expect("write socks.conf");
        path.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a run printed.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `socksify ARGS…` with no `SOCKS_*` variable but those in `env`, the built supervisor.
fn socksify(args: &[&str], env: &[(&str, &str)]) -> Out {
    socksify_via(None, args, env)
}

/// The same, run through `wrapper` (e.g. strace, unshare) when given.
fn socksify_via(wrapper: Option<&[&str]>, args: &[&str], env: &[(&str, &str)]) -> Out {
    let socksify = paths::socksify().display().to_string();
    let mut command = match wrapper {
        Some([program, rest @ ..]) => {
            let mut c = Command::new(program);
            c.args(rest).arg(&socksify);
            c
        }
        _ => Command::new(&socksify),
    };
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("SOCKS_") {
            command.env_remove(name);
        }
    }
    command.env("SOCKS_SUPERVISE", paths::supervisor());
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("socksify runs");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `socksify -c CONF --explain DEST`, which must succeed; its output.
fn explain(conf: &str, dest: &str) -> String {
    let out = socksify(&["-c", conf, "--explain", dest], &[]);
    assert_eq!(out.code, Some(0), "--explain {dest}: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// The line of `text` starting with `prefix` (panics naming the whole text if none).
fn line<'t>(text: &'t str, prefix: &str) -> &'t str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
}

const CONF: &str = "# every kind of line
direct 192.0.2.0/24
deny 198.51.100.9/32
direct .corp.test
deny .bad.test
sockd @=socks4a://192.0.2.50:1081 10.20.0.0 0.0.255.255 eq 80
sockd @=192.0.2.60:1080 .remote.test
sockd @=192.0.2.1:1080,socks5://alice:secret@192.0.2.2:1080?spread 0.0.0.0/0
";

#[test]
fn address_lines_direct_deny_one_server_and_a_spread_list() {
    let dir = Dir::new("address");
    let conf = dir.conf(CONF);
    let out = explain(&conf, "192.0.2.7:80");
    assert_eq!(line(&out, "line:"), format!("line: {conf}:2: direct 192.0.2.0/24"));
    assert_eq!(line(&out, "route:"), "route: direct");
    assert!(line(&out, "read:").contains(&conf), "{out}");
    assert_eq!(line(&out, "environment:"), format!("environment: SOCKS_CONF={conf}"));

    let out = explain(&conf, "198.51.100.9:443");
    assert_eq!(line(&out, "line:"), format!("line: {conf}:3: deny 198.51.100.9/32"));
    assert!(line(&out, "route:").starts_with("route: deny"), "{out}");

    let out = explain(&conf, "10.20.3.4:80");
    assert_eq!(
        line(&out, "line:"),
        format!("line: {conf}:6: sockd @=socks4a://192.0.2.50:1081 10.20.0.0/16 eq 80")
    );
    assert!(line(&out, "route:").contains("through 1 server"), "{out}");
    assert!(line(&out, "  1. ").starts_with("  1. socks4a 192.0.2.50:1081"), "{out}");
    // Another port: the port condition fails, the catch-all decides.
    let out = explain(&conf, "10.20.3.4:81");
    assert!(line(&out, "line:").starts_with(&format!("line: {conf}:8: sockd")), "{out}");

    let out = explain(&conf, "[2001:db8::7]:443");
    assert_eq!(
        line(&out, "line:"),
        format!("line: {conf}:8: sockd @=192.0.2.1:1080,socks5://alice:***@192.0.2.2:1080?spread 0.0.0.0/0")
    );
    assert!(line(&out, "route:").contains("through 2 server(s), ?spread"), "{out}");
    assert!(line(&out, "  1. ").starts_with("  1. socks5 192.0.2.1:1080"), "{out}");
    assert!(line(&out, "  2. ").starts_with("  2. socks5 192.0.2.2:1080"), "{out}");
    assert!(!out.contains("secret"), "the password is never printed:\n{out}");

    // Loopback under the catch-all, and the server's own address: direct, and why.
    let out = explain(&conf, "127.0.0.1:80");
    assert!(line(&out, "route:").starts_with("route: direct (loopback"), "{out}");
    let out = explain(&conf, "192.0.2.2:1080");
    assert!(line(&out, "route:").contains("the address of a SOCKS server"), "{out}");
}

#[test]
fn names_by_domain_line_by_resolve_setting_and_hosts_file() {
    let dir = Dir::new("names");
    let conf = dir.conf(CONF);
    let out = explain(&conf, "www.corp.test:443");
    assert_eq!(line(&out, "destination:"), "destination: name www.corp.test port 443");
    assert_eq!(
        line(&out, "name:"),
        format!("name: resolved locally (the domain line {conf}:4: direct .corp.test)")
    );

    let out = explain(&conf, "db.remote.test:5432");
    assert!(line(&out, "name:").starts_with("name: sent to the server by name"), "{out}");
    assert_eq!(
        line(&out, "line:"),
        format!("line: {conf}:7: sockd @=192.0.2.60:1080 .remote.test")
    );
    assert!(line(&out, "  1. ").starts_with("  1. socks5 192.0.2.60:1080"), "{out}");

    let out = explain(&conf, "x.bad.test");
    assert_eq!(line(&out, "line:"), format!("line: {conf}:5: deny .bad.test"));
    assert!(line(&out, "route:").starts_with("route: deny"), "{out}");

    // No domain line: `resolve remote` (the default) sends it, through the catch-all.
    let out = explain(&conf, "example.org:443");
    assert!(line(&out, "name:").contains("`resolve remote`"), "{out}");
    assert!(line(&out, "line:").starts_with(&format!("line: {conf}:8: sockd")), "{out}");

    // `resolve local`: resolved here, the address decides later.
    let local = dir.conf(&format!("resolve local\n{CONF}"));
    let out = explain(&local, "example.org:443");
    assert_eq!(
        line(&out, "name:"),
        "name: resolved locally (no domain line matches and `resolve local` is set)"
    );
    assert!(line(&out, "route:").contains("the address the resolver returns"), "{out}");

    // A name in /etc/hosts: local whatever the lines say, and its address is explained.
    let conf = dir.conf(CONF);
    let out = explain(&conf, "localhost:80");
    assert_eq!(line(&out, "name:"), "name: resolved locally (localhost)");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let entry = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let addr: std::net::IpAddr = words.next()?.parse().ok()?;
            words
                .find(|w| {
                    !w.eq_ignore_ascii_case("localhost") && !w.eq_ignore_ascii_case(own.trim())
                })
                .map(|w| (addr, w.to_owned()))
        })
        .next();
    match entry {
        None => skip(
            "names_by_domain_line_by_resolve_setting_and_hosts_file (hosts part)",
            "/etc/hosts names nothing but localhost",
        ),
        Some((addr, name)) => {
            let out = explain(&conf, &format!("{name}:80"));
            assert_eq!(
                line(&out, "name:"),
                "name: resolved locally (it is in /etc/hosts)",
                "{out}"
            );
            assert!(line(&out, "address:").starts_with(&format!("address: {addr}")), "{out}");
        }
    }
}

#[test]
fn socks_server_only_and_no_configuration() {
    let out = socksify(&["-s", "socks4://192.0.2.1:1081", "--explain", "203.0.113.9:80"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(line(&out.stdout, "configuration:").contains("SOCKS_SERVER only"), "{}", out.stdout);
    assert!(line(&out.stdout, "environment:").contains("SOCKS_SERVER=socks4://192.0.2.1:1081"));
    assert!(line(&out.stdout, "  1. ").starts_with("  1. socks4 192.0.2.1:1081"), "{}", out.stdout);
    assert!(!out.stdout.contains("line:"), "no socks.conf line:\n{}", out.stdout);
    let out = socksify(&["-s", "192.0.2.1:1080", "--explain", "127.0.0.1:22"], &[]);
    assert!(line(&out.stdout, "route:").starts_with("route: direct"), "{}", out.stdout);
    let out = socksify(&["--explain", "some.name:443"], &[("SOCKS_SERVER", "192.0.2.1:1080")]);
    assert!(
        line(&out.stdout, "name:").starts_with("name: sent to the server by name"),
        "{}",
        out.stdout
    );

    let out = socksify(
        &["-s", "socks5://bob:hunter2@192.0.2.1:1080", "--explain", "203.0.113.9:80"],
        &[("SOCKS_PASSWORD", "hunter3")],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("socks5://bob:***@192.0.2.1:1080"), "{}", out.stdout);
    assert!(out.stdout.contains("SOCKS_PASSWORD=***"), "{}", out.stdout);
    assert!(!out.stdout.contains("hunter"), "no password printed:\n{}", out.stdout);
    let out = socksify(&["-s", "192.0.2.1:1080", "--check"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);

    if std::path::Path::new("/etc/socks.conf").exists() {
        skip(
            "socks_server_only_and_no_configuration (none part)",
            "this machine has /etc/socks.conf",
        );
        return;
    }
    let out = socksify(&["--explain", "203.0.113.9:80"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(line(&out.stdout, "configuration:")
        .starts_with("configuration: none (/etc/socks.conf not found"));
    assert_eq!(line(&out.stdout, "environment:"), "environment: no SOCKS_* variable set");
    assert_eq!(line(&out.stdout, "route:"), "route: direct");
    let out = socksify(&["--check"], &[]);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.starts_with("no configuration"), "{}", out.stdout);
}

#[test]
fn check_summarises_or_names_the_broken_line() {
    let dir = Dir::new("check");
    let conf = dir.conf(CONF);
    let out = socksify(&["-c", &conf, "--check"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, format!("{conf}: 7 rules, syntax OK\n"));

    let broken = dir.conf("direct 192.0.2.0/24\n\nsockd @=192.0.2.1:1080 0.0.0.0/33\n");
    let out = socksify(&["-c", &broken, "--check"], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.starts_with(&format!("{broken}:3: ")), "{}", out.stderr);
    assert!(out.stderr.contains("0.0.0.0/33"), "names the token: {}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    // --explain of a broken file says so and refuses what would not be local.
    let out = explain(&broken, "203.0.113.1:80");
    assert!(
        line(&out, "configuration:").starts_with(&format!("configuration: BROKEN: {broken}:3: "))
    );
    assert!(line(&out, "route:").starts_with("route: refused"), "{out}");
    let out = explain(&broken, "example.org:443");
    assert!(line(&out, "name:").contains("the configuration is broken"), "{out}");
    assert!(line(&out, "route:").starts_with("route: refused unless"), "{out}");

    let out = socksify(&["-c", "/nonexistent/socks.conf", "--check"], &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.starts_with("/nonexistent/socks.conf: "), "{}", out.stderr);
    let out = socksify(&["--explain"], &[]);
    assert_eq!(out.code, Some(2), "a missing destination is a usage error");
    let out = socksify(&["--check", "true"], &[]);
    assert_eq!(out.code, Some(2), "--check runs no program");
}

/// A socks.conf whose servers are named by host names no resolver knows: a lookup would show.
const NAMED: &str = "sockd @=socks5://fw.explain-test.invalid:1080 0.0.0.0/0\n";

#[test]
fn explain_connects_nowhere_and_sends_no_dns_query() {
    let dir = Dir::new("quiet");
    let conf = dir.conf(NAMED);
    let strace = paths::require("strace", "strace");
    let trace = dir.0.join("trace");
    let trace_arg = trace.display().to_string();
    let wrapper = [
        strace.to_str().expect("UTF-8 path"),
        "-f",
        "-e",
        "trace=connect,sendto,sendmsg,sendmmsg",
        "-o",
        &trace_arg,
    ];
    for dest in ["example.org:443", "203.0.113.5:80"] {
        let out = socksify_via(Some(&wrapper), &["-c", &conf, "--explain", dest], &[]);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("not resolved") && out.stdout.contains("fw.explain-test.invalid")
        );
        assert!(
            line(&out.stdout, "  1. ").contains("fw.explain-test.invalid:1080"),
            "{}",
            out.stdout
        );
        let calls = std::fs::read_to_string(&trace).expect("strace wrote its trace");
        let network: Vec<&str> =
            calls.lines().filter(|l| l.contains("AF_INET") || l.contains("htons(53)")).collect();
        assert!(
            network.is_empty(),
            "--explain {dest} talked to the network:\n{}",
            network.join("\n")
        );
    }
    // The control: the same strace sees a connect to an IPv4 address.
    let status = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .args(["/bin/bash", "-c", "echo > /dev/tcp/127.0.0.1/9 || true"])
        .output()
        .expect("strace runs");
    assert!(status.status.success());
    let calls = std::fs::read_to_string(&trace).expect("strace wrote its trace");
    assert!(calls.contains("AF_INET"), "strace shows a connect: {calls}");

    // In an empty network namespace (nothing to reach): still the answer.
    if !socks_e2e::is_root() {
        skip(
            "explain_connects_nowhere_and_sends_no_dns_query (empty namespace part)",
            "unshare -n needs root",
        );
        return;
    }
    let unshare = paths::require("unshare", "util-linux");
    let unshare = unshare.to_str().expect("UTF-8 path");
    let out =
        socksify_via(Some(&[unshare, "-n"]), &["-c", &conf, "--explain", "example.org:443"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(line(&out.stdout, "route:").contains("through 1 server"), "{}", out.stdout);
}
