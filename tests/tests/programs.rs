//! Real, unmodified programs under libsocks.so reach a destination that only our sockd can
//! reach (the `outside` namespace, see `socks_e2e::netns`): curl, wget, nc, ssh, python3
//! (blocking socket and asyncio), node and bash's `/dev/tcp`. Each test checks the bytes the
//! program got, that the destination saw the connection come from the firewall, and that sockd
//! logged the session (`connected:` … `closed:`, with the exact byte counts where the
//! destination server is the harness's own). Some load the library with `socksify`, some with
//! `LD_PRELOAD` directly.
//!
//! Not here: other SOCKS servers (interop.rs), rules and failures (rules.rs), threads and fork
//! (processes.rs).

use std::net::SocketAddr;

use socks_e2e::*;

/// The line SOCKS_LOG=info prints for a connection proxied through our server.
fn proxied(dst: SocketAddr) -> String {
    format!("connect {dst} via {SERVER} (socks5): ok")
}

#[test]
fn curl_through_sockd() {
    let Some(lab) = Lab::new("curl") else { return };
    let curl = paths::require("curl", "curl");
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let url = format!("http://{}/bytes/300000", http.addr());
    let ran = lab
        .client(curl)
        .args(["-sS", "--max-time", "20", &url])
        .socksify(&["-v", "-s", SERVER])
        .run();
    ran.assert_success();
    assert!(
        ran.stdout == http_body("/bytes/300000"),
        "curl got {} bytes, not the 300000-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&proxied(http.addr())),
        "SOCKS_LOG=info must report the proxied connect\n{}",
        ran.describe()
    );
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));
}

#[test]
fn wget_through_sockd() {
    let Some(lab) = Lab::new("wget") else { return };
    let wget = paths::require("wget", "wget");
    let http = lab.http(8080);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let url = format!("http://{}/bytes/123457", http.addr());
    let ran = lab
        .client(wget)
        .args(["-q", "-O", "-", "--tries=1", "--timeout=20", &url])
        .env("SOCKS_SERVER", SERVER)
        .ld_preload()
        .run();
    ran.assert_success();
    assert!(
        ran.stdout == http_body("/bytes/123457"),
        "wget got {} bytes, not the 123457-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));
}

#[test]
fn netcat_to_echo_server() {
    let Some(lab) = Lab::new("nc") else { return };
    let nc = paths::require("nc.openbsd", "netcat-openbsd");
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let input = pattern(200_000);
    let ran = lab
        .client(nc)
        .args(["-N", "-w", "10", &OUTSIDE_ADDR.to_string(), "7"])
        .stdin(input.clone())
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .run();
    ran.assert_success();
    assert!(
        ran.stdout == input,
        "nc got {} bytes back, not the 200000 it sent\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    assert!(ran.stderr.contains(&proxied(echo.addr())), "{}", ran.describe());
    let exchanges = echo.wait_done(1, STARTUP);
    assert_from_firewall(&echo);
    assert_session(&sockd, echo.addr(), Some(&exchanges[0]));
}

#[test]
fn ssh_to_sshd_outside() {
    let Some(lab) = Lab::new("ssh") else { return };
    let (sshd, key) = lab.sshd();
    let sockd = lab.sockd(PERMIT_INSIDE);
    let ran = lab
        .ssh(&key, "root@198.51.100.2", &["echo", "hello-from-outside"])
        .socksify(&["-v", "-s", SERVER])
        .run();
    assert!(
        ran.success() && ran.stdout_text() == "hello-from-outside\n",
        "ssh must run the command on the outside host\n{}\n--- sshd ---\n{}",
        ran.describe(),
        sshd.log()
    );
    let dst = SocketAddr::from((OUTSIDE_ADDR, 22));
    assert!(ran.stderr.contains(&proxied(dst)), "{}", ran.describe());
    // sshd saw the firewall, not the workstation.
    sshd.wait_line(&["Accepted publickey for root from 198.51.100.1"], STARTUP);
    assert_session(&sockd, dst, None);
}

#[test]
fn python_blocking_socket() {
    let Some(lab) = Lab::new("python-blocking") else { return };
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    // One plain blocking connect, one with a timeout (Python then connects non-blocking and
    // polls); both must report the destination as their peer, not the proxy.
    let script = r#"
import socket
def roundtrip(s, data):
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk
for timeout in (None, 10):
    s = socket.create_connection(("198.51.100.2", 7), timeout=timeout)
    peer = "%s:%d" % s.getpeername()
    data = bytes((i * 7 + 3) % 256 for i in range(100000))
    got = roundtrip(s, data)
    s.close()
    print(f"timeout={timeout} peer={peer} echo={'ok' if got == data else 'BAD'}")
"#;
    let ran =
        lab.python(script).env("SOCKS_SERVER", SERVER).env("SOCKS_LOG", "info").ld_preload().run();
    ran.assert_success();
    assert_eq!(
        ran.stdout_text(),
        "timeout=None peer=198.51.100.2:7 echo=ok\ntimeout=10 peer=198.51.100.2:7 echo=ok\n",
        "{}",
        ran.describe()
    );
    let exchanges = echo.wait_done(2, STARTUP);
    assert_from_firewall(&echo);
    sockd.wait_lines(
        &["closed:", "dst=198.51.100.2:7 ", "sent=100000 received=100000"],
        2,
        STARTUP,
    );
    assert_session(&sockd, echo.addr(), Some(&exchanges[0]));
}

#[test]
fn python_asyncio() {
    let Some(lab) = Lab::new("python-asyncio") else { return };
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let script = r#"
import asyncio, sys
async def main():
    reader, writer = await asyncio.wait_for(asyncio.open_connection("198.51.100.2", 80), 10)
    peer = "%s:%d" % writer.get_extra_info("peername")[:2]
    writer.write(b"GET /bytes/250000 HTTP/1.0\r\nHost: 198.51.100.2\r\n\r\n")
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    body = response.split(b"\r\n\r\n", 1)[1]
    sys.stdout.buffer.write(f"peer={peer}\n".encode() + body)
asyncio.run(main())
"#;
    let ran = lab.python(script).socksify(&["-v", "-s", SERVER]).run();
    ran.assert_success();
    let split = ran.stdout.iter().position(|&b| b == b'\n').unwrap_or(ran.stdout.len());
    let (peer, body) = ran.stdout.split_at(split);
    assert_eq!(String::from_utf8_lossy(peer), "peer=198.51.100.2:80", "{}", ran.describe());
    assert!(
        body.get(1..) == Some(&http_body("/bytes/250000")[..]),
        "asyncio got a {}-byte body, not the 250000-byte one\n{}",
        body.len().saturating_sub(1),
        ran.describe()
    );
    assert!(ran.stderr.contains(&proxied(http.addr())), "{}", ran.describe());
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));
}

#[test]
fn node_http_get() {
    let Some(lab) = Lab::new("node") else { return };
    let node = paths::require("node", "nodejs");
    let http = lab.http(80);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let script = r#"
const http = require("http");
const req = http.get("http://198.51.100.2:80/bytes/400000", (res) => {
  const chunks = [];
  res.on("data", (c) => chunks.push(c));
  res.on("end", () => process.stdout.write(Buffer.concat(chunks)));
});
req.on("socket", (s) => s.on("connect", () => console.error(`remote=${s.remoteAddress}:${s.remotePort}`)));
req.on("error", (e) => { console.error(`error ${e.code} ${e.message}`); process.exit(1); });
"#;
    let ran = lab
        .client(node)
        .args(["-e", script])
        .env("SOCKS_SERVER", SERVER)
        .env("SOCKS_LOG", "info")
        .ld_preload()
        .run();
    ran.assert_success();
    assert!(
        ran.stdout == http_body("/bytes/400000"),
        "node got {} bytes, not the 400000-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    assert!(
        ran.stderr.contains("remote=198.51.100.2:80"),
        "node's socket must name the destination as its peer\n{}",
        ran.describe()
    );
    assert!(ran.stderr.contains(&proxied(http.addr())), "{}", ran.describe());
    let exchanges = http.wait_done(1, STARTUP);
    assert_from_firewall(&http);
    assert_session(&sockd, http.addr(), Some(&exchanges[0]));
}

#[test]
fn bash_dev_tcp() {
    let Some(lab) = Lab::new("bash") else { return };
    let bash = paths::require("bash", "bash");
    let echo = lab.echo(7);
    let sockd = lab.sockd(PERMIT_INSIDE);
    let script = "exec 3<>/dev/tcp/198.51.100.2/7\n\
                  printf 'hello through bash\\n' >&3\n\
                  IFS= read -r line <&3\n\
                  printf 'got: %s\\n' \"$line\"\n\
                  exec 3>&-\n";
    let ran = lab.client(bash).args(["-c", script]).socksify(&["-v", "-s", SERVER]).run();
    ran.assert_success();
    assert_eq!(ran.stdout_text(), "got: hello through bash\n", "{}", ran.describe());
    assert!(ran.stderr.contains(&proxied(echo.addr())), "{}", ran.describe());
    let exchanges = echo.wait_done(1, STARTUP);
    assert_from_firewall(&echo);
    assert_session(&sockd, echo.addr(), Some(&exchanges[0]));
}
