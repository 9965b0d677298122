//! `socksify --system on|off|status` (issue 13): libsocks.so put into `/etc/ld.so.preload` and
//! taken out again, in the workstation's namespace with a private `/etc` (an overlay, see
//! `socks_e2e::preload`), never the host's — the host's file would put the library into every
//! process of the machine. Each scenario is one bash script run in one private `/etc`, printing
//! the file between the steps; the assertions read that transcript.
//!
//! - `on` with a good socks.conf: other entries kept (two on one line), mode and owner kept,
//!   the library's path appended once (a second `on` adds no duplicate), `status` says on, and a
//!   program started afterwards with no LD_PRELOAD (curl) reaches the outside network through
//!   sockd; `off` takes out only our entry, leaves no temporary file, `status` says off, and
//!   curl then has no way out.
//! - `on` with no socks.conf, one only root can read, a broken one, or a library that does not
//!   load, and `on`/`off` by a user who is not root: refused with the reason (the parser's own
//!   message), the file byte for byte as it was.
//! - A failing proof (socks.conf names a server nothing answers on): the file was written, the
//!   check failed, and the previous file is back (also when there was none: it is gone again).
//!
//! Not here: the package's own removal of the entry (tests/tests/packages.rs), the library's
//! behaviour system-wide (everywhere.rs).

use socks_e2e::preload::setup_failure;
use socks_e2e::*;

/// Deadline of one scenario script.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);

/// Runs `script` with bash in `inside`, in a private `/etc` holding `etc_files`, with the
/// built library and supervisor (SOCKS_LIBRARY, SOCKS_SUPERVISE) and `$S` = scripts/socksify.
fn scenario(lab: &Lab, etc_files: &[(&str, &str)], script: &str) -> Ran {
    let mut system = SystemWide::without_library();
    for (name, contents) in etc_files {
        system = system.etc_file(name, contents);
    }
    let ran = system
        .client(lab, "/bin/bash", ["-c", script])
        .env("S", paths::socksify().display().to_string())
        .env("SOCKS_LIBRARY", paths::libsocks().display().to_string())
        .env("SOCKS_SUPERVISE", paths::supervisor().display().to_string())
        .env("CURL", paths::require("curl", "curl").display().to_string())
        .timeout(DEADLINE)
        .run();
    if let Some(why) = setup_failure(&ran) {
        panic!("the private /etc could not be set up: {why}\n{}", ran.describe());
    }
    ran
}

/// The transcript's section after the line `--- NAME`, up to the next `--- ` line.
fn section(ran: &Ran, name: &str) -> String {
    let text = ran.stdout_text();
    let start = format!("--- {name}\n");
    let Some(at) = text.find(&start) else {
        panic!("the transcript has no section `{name}`\n{}", ran.describe())
    };
    let rest = &text[at + start.len()..];
    rest.split("--- ").next().unwrap_or("").to_owned()
}

/// Two real libraries of the system, harmless to preload: the other entries that must survive.
fn other_entries() -> (String, String) {
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("libm.so.6 (libc6) is installed");
    let dir = std::path::Path::new(libm).parent().expect("libm has a directory");
    let libdl = dir.join("libdl.so.2");
    assert!(libdl.is_file(), "{} (libc6) is installed", libdl.display());
    (libm.to_owned(), libdl.display().to_string())
}

#[test]
fn on_proxies_new_programs_and_off_takes_out_only_our_entry() {
    let Some(lab) = Lab::new("system-mode-on-off") else { return };
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let (libm, libdl) = other_entries();
    let library = paths::libsocks().display().to_string();
    let conf = format!(
        "# socks-e2e: the outside network through the firewall\nsockd @={SERVER} 198.51.100.0/24\n"
    );
    let preload = format!("{libm} {libdl}\n");
    let script = r#"
        chmod 0640 /etc/ld.so.preload && chown 0:0 /etc/ld.so.preload || exit 100
        # socksify's own messages go to stderr here, so the transcript holds only the file.
        "$S" --system on >&2; echo "--- on=$?"
        cat /etc/ld.so.preload; echo "--- mode"; stat -c '%a %u:%g' /etc/ld.so.preload
        "$S" --system on >&2; echo "--- second on=$?"
        cat /etc/ld.so.preload
        echo "--- status"; "$S" --system status; echo "status=$?"
        echo "--- curl on"; "$CURL" -sS --max-time 10 http://198.51.100.2/system-mode-on; echo "curl=$?"
        "$S" --system off >&2; echo "--- off=$?"
        cat /etc/ld.so.preload; echo "--- mode off"; stat -c '%a %u:%g' /etc/ld.so.preload
        echo "--- leftovers"; ls -a /etc | grep -F '.ld.so.preload'
        echo "--- status off"; "$S" --system status; echo "status=$?"
        echo "--- curl off"; "$CURL" -sS --max-time 5 http://198.51.100.2/system-mode-off; echo "curl=$?"
        echo "--- end"
    "#;
    let ran = scenario(&lab, &[("socks.conf", &conf), ("ld.so.preload", &preload)], script);
    let describe = ran.describe();
    assert_eq!(
        section(&ran, "on=0"),
        format!("{libm} {libdl}\n{library}\n"),
        "on appends the library after the other entries\n{describe}"
    );
    assert_eq!(section(&ran, "mode"), "640 0:0\n", "on keeps mode and owner\n{describe}");
    assert!(
        ran.stdout_text().contains("--- second on=0\n"),
        "a second on succeeds (already on)\n{describe}"
    );
    assert_eq!(
        section(&ran, "second on=0"),
        format!("{libm} {libdl}\n{library}\n"),
        "a second on adds no duplicate\n{describe}"
    );
    let status = section(&ran, "status");
    assert!(
        status.contains(&format!("on: /etc/ld.so.preload names {library}"))
            && status.contains("status=0"),
        "status says on\n{describe}"
    );
    // curl was started with no LD_PRELOAD and no SOCKS_* variables: only the file put the
    // library into it, and only the library could take it through sockd.
    assert_eq!(
        section(&ran, "curl on"),
        "hello from outside: /system-mode-on\ncurl=0\n",
        "a new program goes through sockd\n{describe}"
    );
    assert_session(&sockd, http.addr(), None);
    assert_from_firewall(&http);
    assert_eq!(
        section(&ran, "off=0"),
        format!("{libm} {libdl}\n"),
        "off takes out our entry only, the others byte for byte\n{describe}"
    );
    assert_eq!(section(&ran, "mode off"), "640 0:0\n", "off keeps mode and owner\n{describe}");
    assert_eq!(section(&ran, "leftovers"), "", "no temporary file is left in /etc\n{describe}");
    assert!(
        section(&ran, "status off").contains("status=3"),
        "status says off (exit status 3)\n{describe}"
    );
    let curl_off = section(&ran, "curl off");
    assert!(
        !curl_off.contains("hello from outside") && !curl_off.contains("curl=0"),
        "after off, curl has no way out\n{describe}"
    );
    let sessions = sockd.lines_with(&["connected:", "cmd=connect"]);
    assert_eq!(sessions.len(), 1, "only the curl run while on went through sockd\n{}", sockd.log());
}

#[test]
fn on_refuses_a_missing_or_broken_config_and_a_library_that_does_not_load() {
    let Some(lab) = Lab::new("system-mode-refused") else { return };
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let (libm, _) = other_entries();
    let preload = format!("{libm}\n");
    let broken = format!("sockd @={SERVER} 198.51.100.0/24 bogus 80\n");
    let script = r#"
        cp -p /etc/ld.so.preload /tmp/preload.before || exit 100
        unchanged() { cmp -s /etc/ld.so.preload /tmp/preload.before && echo unchanged || echo CHANGED; }
        mv /etc/socks.conf /tmp/socks.conf.broken || exit 100
        echo "--- missing"; "$S" --system on 2>&1; echo "on=$?"; unchanged
        mv /tmp/socks.conf.broken /etc/socks.conf || exit 100
        chmod 0600 /etc/socks.conf
        echo "--- unreadable"; "$S" --system on 2>&1; echo "on=$?"; unchanged
        chmod 0644 /etc/socks.conf
        echo "--- broken"; "$S" --system on 2>&1; echo "on=$?"; unchanged
        printf 'direct 0.0.0.0/0\n' >/etc/socks.conf
        echo "--- not a library"; SOCKS_LIBRARY=/etc/hostname "$S" --system on 2>&1; echo "on=$?"; unchanged
        echo "--- not root"; setpriv --reuid 65534 --regid 65534 --clear-groups "$S" --system on 2>&1
        echo "on=$?"; unchanged
        setpriv --reuid 65534 --regid 65534 --clear-groups "$S" --system off 2>&1; echo "off=$?"; unchanged
        echo "--- leftovers"; ls -a /etc | grep -F '.ld.so.preload'
        echo "--- end"
    "#;
    paths::require("setpriv", "util-linux");
    let ran = scenario(&lab, &[("socks.conf", &broken), ("ld.so.preload", &preload)], script);
    let describe = ran.describe();
    let missing = section(&ran, "missing");
    assert!(
        missing.contains("/etc/socks.conf does not exist") && missing.contains("on=1\nunchanged\n"),
        "no socks.conf: refused, nothing changed\n{describe}"
    );
    let unreadable = section(&ran, "unreadable");
    assert!(
        unreadable.contains("is not readable by every user")
            && unreadable.contains("on=1\nunchanged\n"),
        "a socks.conf only root can read: refused, nothing changed\n{describe}"
    );
    let broken = section(&ran, "broken");
    assert!(
        broken.contains("/etc/socks.conf refused: /etc/socks.conf:1:")
            && broken.contains("bogus")
            && broken.contains("on=1\nunchanged\n"),
        "a broken socks.conf: refused with the parser's message (file:line), nothing changed\n\
         {describe}"
    );
    let not_library = section(&ran, "not a library");
    assert!(
        not_library.contains("does not load cleanly") && not_library.contains("on=1\nunchanged\n"),
        "a library ld.so cannot load: refused before the file is touched\n{describe}"
    );
    let not_root = section(&ran, "not root");
    assert_eq!(
        not_root.matches("which only root may do").count(),
        2,
        "on and off refuse a user who is not root\n{describe}"
    );
    assert!(
        not_root.contains("on=1\nunchanged\n") && not_root.contains("off=1\nunchanged\n"),
        "and change nothing\n{describe}"
    );
    assert_eq!(section(&ran, "leftovers"), "", "no temporary file is left in /etc\n{describe}");
}

#[test]
fn a_failing_proof_puts_the_previous_file_back() {
    let Some(lab) = Lab::new("system-mode-rollback") else { return };
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let (libm, libdl) = other_entries();
    let preload = format!("{libm}:{libdl}\n");
    // sockd listens on 1080; nothing on 1081 answers (connection refused).
    let dead = "sockd @=192.0.2.1:1081 198.51.100.0/24\n";
    let script = r#"
        chmod 0600 /etc/ld.so.preload || exit 100
        cp -p /etc/ld.so.preload /tmp/preload.before || exit 100
        echo "--- with a file"; "$S" --system on 2>&1; echo "on=$?"
        cmp -s /etc/ld.so.preload /tmp/preload.before && echo unchanged || echo CHANGED
        stat -c '%a' /etc/ld.so.preload
        rm /etc/ld.so.preload
        echo "--- without a file"; "$S" --system on 2>&1; echo "on=$?"
        test -e /etc/ld.so.preload && echo PRESENT || echo absent
        echo "--- leftovers"; ls -a /etc | grep -F '.ld.so.preload'
        echo "--- end"
    "#;
    let ran = scenario(&lab, &[("socks.conf", dead), ("ld.so.preload", &preload)], script);
    let describe = ran.describe();
    for (name, after) in
        [("with a file", "on=1\nunchanged\n600\n"), ("without a file", "on=1\nabsent\n")]
    {
        let text = section(&ran, name);
        assert!(
            text.contains("server 192.0.2.1:1081 (socks5) did not answer")
                && text.contains("so the previous /etc/ld.so.preload is back")
                && text.contains(after),
            "{name}: the proof failed after the file was written, and it was put back \
             (expected {after:?})\n{describe}"
        );
    }
    assert_eq!(section(&ran, "leftovers"), "", "no temporary file is left in /etc\n{describe}");
}
