//! The loopback suite: libsocks.so under real programs (curl, python3, bash) with sockd on
//! 127.0.0.1:0 and destinations on other loopback addresses (127.0.0.2…), in the test's own
//! network namespace. It needs no root, so a run as any user still loads the library and checks
//! what it promises: a destination socks.conf names goes through sockd (the destination sees
//! sockd's outbound connection, and sockd logs it), a `deny` line refuses, a dead server fails
//! closed, and loopback that no line names stays direct.
//!
//! Loopback addresses have no firewall in between, so a direct connection would succeed here:
//! every test proves the path by matching the peer the destination saw with the `via=` address
//! sockd logged (or, for refusals, by the destination seeing nothing).
//!
//! Not here: the firewall scenario (namespaces, root: the other suites).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use socks_e2e::*;

/// sockd's rules: loopback clients may reach loopback destinations, named explicitly.
const RULES: &str = "# loopback suite\npermit 127.0.0.1/32 127.0.0.0/8\n";

/// A sockd on 127.0.0.1 (a free port), a temporary directory, and socks.conf files in it.
struct Loopback {
    sockd: Daemon,
    server: SocketAddr,
    dir: TempDir,
}

impl Loopback {
    fn start(name: &str) -> Loopback {
        let dir = TempDir::new(name);
        let conf = dir.path().join("sockd.conf");
        std::fs::write(&conf, RULES).expect("write sockd.conf");
        let sockd = Daemon::spawn(
            OWN_NETNS,
            "sockd",
            &paths::sockd(),
            &["-l", "127.0.0.1:0", "-f", &conf.display().to_string(), "--connect-timeout", "5"],
        );
        let line = sockd.wait_line(&["listening on 127.0.0.1:"], STARTUP);
        let server = line
            .rsplit("listening on ")
            .next()
            .and_then(|addr| addr.trim().parse().ok())
            .unwrap_or_else(|| panic!("no address in sockd's line {line:?}"));
        Loopback { sockd, server, dir }
    }

    /// Writes socks.conf with `lines`, `@SERVER` replaced by this sockd's address.
    fn socks_conf(&self, lines: &str) -> PathBuf {
        let path = self.dir.path().join("socks.conf");
        std::fs::write(&path, lines.replace("@SERVER", &format!("@={}", self.server)))
            .expect("write socks.conf");
        path
    }

    /// The outbound addresses sockd logged for connections to `dst`.
    fn via(&self, dst: SocketAddr) -> Vec<SocketAddr> {
        self.sockd
            .lines_with(&["connected:", &format!("dst={dst}")])
            .iter()
            .filter_map(|line| line.split("via=").nth(1))
            .filter_map(|via| via.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

/// A program under the library with socks.conf `conf`, logging at info level.
fn client(program: PathBuf, conf: &std::path::Path) -> Client {
    Client::new(OWN_NETNS, program)
        .env("SOCKS_CONF", conf.display().to_string())
        .env("SOCKS_LOG", "info")
        .ld_preload()
}

#[test]
fn curl_reaches_a_named_loopback_destination_through_sockd() {
    let lab = Loopback::start("loopback-curl");
    let http = servers::http(OWN_NETNS, "127.0.0.2:0".parse().expect("address"));
    let conf = lab.socks_conf("sockd @SERVER 127.0.0.2/32\n");
    let url = format!("http://{}/bytes/100000", http.addr());
    let curl = paths::require("curl", "curl");
    let ran = client(curl, &conf).args(["-sS", "--max-time", "20", &url]).run();
    ran.assert_success();
    assert!(ran.stdout == http_body("/bytes/100000"), "wrong body\n{}", ran.describe());
    let exchanges = http.wait_done(1, STARTUP);
    let via = lab.via(http.addr());
    assert!(
        via.contains(&exchanges[0].peer),
        "the destination saw {} but sockd connected from {via:?}: the connection went direct\n{}",
        exchanges[0].peer,
        ran.describe()
    );
}

#[test]
fn python_socket_gets_the_destination_as_its_peer() {
    let lab = Loopback::start("loopback-python");
    let echo = servers::echo(OWN_NETNS, "127.0.0.2:0".parse().expect("address"));
    let conf = lab.socks_conf("sockd @SERVER 127.0.0.2/32\n");
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.2', {port}), timeout=10)\n\
         print(s.getpeername())\n\
         s.sendall(b'over sockd')\n\
         s.shutdown(socket.SHUT_WR)\n\
         print(s.recv(100).decode())\n",
        port = echo.addr().port()
    );
    let python = paths::require("python3", "python3");
    let ran = client(python, &conf).args(["-c", &script]).run();
    ran.assert_success();
    let out = ran.stdout_text();
    assert!(
        out.contains(&format!("('127.0.0.2', {})", echo.addr().port()))
            && out.contains("over sockd"),
        "getpeername must name the destination and the echo must come back\n{}",
        ran.describe()
    );
    let exchanges = echo.wait_done(1, STARTUP);
    assert!(
        lab.via(echo.addr()).contains(&exchanges[0].peer),
        "not through sockd\n{}",
        ran.describe()
    );
}

#[test]
fn deny_line_refuses_and_the_destination_sees_nothing() {
    let lab = Loopback::start("loopback-deny");
    let echo = servers::echo(OWN_NETNS, "127.0.0.3:0".parse().expect("address"));
    let conf = lab.socks_conf("deny 127.0.0.3/32\nsockd @SERVER 127.0.0.0/8\n");
    let script = format!(
        "import socket, errno\n\
         try:\n    socket.create_connection(('127.0.0.3', {port}), timeout=10)\n    print('connected')\n\
         except OSError as e:\n    print(errno.errorcode.get(e.errno))\n",
        port = echo.addr().port()
    );
    let python = paths::require("python3", "python3");
    let ran = client(python, &conf).args(["-c", &script]).run();
    ran.assert_success();
    assert_eq!(ran.stdout_text().trim(), "ECONNREFUSED", "{}", ran.describe());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(echo.accepted().is_empty(), "a denied destination was reached: {:?}", echo.accepted());
    assert!(
        lab.sockd.lines_with(&["connected:"]).is_empty(),
        "sockd was asked: {}",
        lab.sockd.log()
    );
}

#[test]
fn dead_server_fails_closed() {
    let lab = Loopback::start("loopback-dead");
    let http = servers::http(OWN_NETNS, "127.0.0.2:0".parse().expect("address"));
    // A port nothing listens on: bound, then released.
    let dead = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
    let conf = lab.dir.path().join("dead.conf");
    std::fs::write(&conf, format!("sockd @={dead} 127.0.0.2/32\n")).expect("write socks.conf");
    let url = format!("http://{}/", http.addr());
    let curl = paths::require("curl", "curl");
    let ran = client(curl, &conf).args(["-sS", "--max-time", "20", &url]).run();
    assert!(!ran.success(), "curl must fail when the only server is down\n{}", ran.describe());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(http.accepted().is_empty(), "went direct to {}: {:?}", http.addr(), http.accepted());
}

#[test]
fn loopback_no_line_names_stays_direct() {
    let lab = Loopback::start("loopback-direct");
    let http = servers::http(OWN_NETNS, "127.0.0.4:0".parse().expect("address"));
    let conf = lab.socks_conf("sockd @SERVER 0.0.0.0/0\n");
    let url = format!("http://{}/direct", http.addr());
    let bash = paths::require("bash", "bash");
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.4/{port}; printf 'GET /direct HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3; cat <&3",
        port = http.addr().port()
    );
    let ran = client(bash, &conf).args(["-c", &script]).run();
    ran.assert_success();
    assert!(ran.stdout_text().contains("hello from outside: /direct"), "{url}\n{}", ran.describe());
    http.wait_done(1, STARTUP);
    assert!(lab.via(http.addr()).is_empty(), "loopback went through sockd: {}", lab.sockd.log());
}
