//! The library never writes into a program's data (issue 11, item 14). Preloaded system-wide
//! (a private `/etc/ld.so.preload`) with a broken `/etc/socks.conf`, a program that closed its
//! standard error and opened a data file — which got descriptor 2 — then connected somewhere:
//! the file must hold only what the program wrote. The same with `SOCKS_LOG=debug` asked for.
//! And the message is still said once on the standard error the program was started with, as
//! are the diagnostics `SOCKS_LOG` asks for.
//!
//! Not here: the system-wide battery (everywhere.rs).

use socks_e2e::preload::setup_failure;
use socks_e2e::*;

/// Closes fd 2, opens a data file (fd 2), writes to it, connects to an outside address (the
/// library reads its configuration now), writes again, then prints the file.
const DATA_FILE_ON_FD_2: &str = r#"
import os, socket, tempfile
path = tempfile.mktemp(prefix="socks-e2e-data-")
os.close(2)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
assert fd == 2, fd
os.write(fd, b"data before\n")
try:
    socket.create_connection(("198.51.100.2", 80), timeout=5).close()
    result = "connected"
except OSError as e:
    result = "refused" if e.errno else "error"
os.write(fd, b"data after\n")
os.close(fd)
print(result)
print(open(path).read(), end="")
os.unlink(path)
"#;

/// Connects to an outside address with standard error untouched.
const CONNECT: &str = r#"
import socket
try:
    socket.create_connection(("198.51.100.2", 80), timeout=5).close()
    print("connected")
except OSError:
    print("refused")
"#;

#[test]
fn messages_never_land_in_a_data_file_on_descriptor_2() {
    let Some(lab) = Lab::new("stderr-data-file") else { return };
    let _http = lab.http(80);
    let python = paths::require("python3", "python3");
    let broken = SystemWide::with_library().etc_file("socks.conf", "this is not a rule\n");
    for asked in [false, true] {
        let mut client = broken.client(&lab, &python, ["-c", DATA_FILE_ON_FD_2]);
        if asked {
            client = client.env("SOCKS_LOG", "debug");
        }
        let ran = client.run();
        assert!(setup_failure(&ran).is_none(), "{}", ran.describe());
        assert!(ran.success(), "{}", ran.describe());
        assert_eq!(
            ran.stdout_text(),
            "refused\ndata before\ndata after\n",
            "the data file on descriptor 2 must hold only the program's own data \
             (SOCKS_LOG asked: {asked})\n{}",
            ran.describe()
        );
    }
    // With the standard error it was started with, the broken file is still reported once.
    let ran = broken.client(&lab, &python, ["-c", CONNECT]).run();
    assert!(ran.success() && ran.stdout_text() == "refused\n", "{}", ran.describe());
    assert_eq!(
        ran.stderr.matches("configuration error").count(),
        1,
        "a broken socks.conf is said once on the program's own standard error\n{}",
        ran.describe()
    );
    // And messages asked for with SOCKS_LOG still reach it.
    let ran = broken.client(&lab, &python, ["-c", CONNECT]).env("SOCKS_LOG", "debug").run();
    assert!(
        ran.success() && ran.stderr.contains("refused, the configuration is broken"),
        "SOCKS_LOG diagnostics go to the program's own standard error\n{}",
        ran.describe()
    );
}
