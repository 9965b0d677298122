//! Chains of proxies and HTTP CONNECT upstreams in socks.conf (issue 15), the library's side,
//! in the namespace lab: the workstation (`inside`) reaches only the firewall (`fw`,
//! 192.0.2.1); a second hop lives on the outside host (198.51.100.2), reachable only from the
//! firewall; the destinations (an HTTP server, `www.example.test` from the outside dnsmasq) are
//! outside. Real programs run under the library: curl, python3, node, dig.
//!
//! - Two sockd in a row: the first (on the firewall) may only reach the second (outside, port
//!   1081); `socks5://first>socks5://second` works by address and by name (the second hop gets
//!   the name); the leak check shows nothing leaves the workstation but to the first hop; UDP
//!   through the chain is refused (dig gets no answer, the log says why).
//! - tinyproxy as the only way out, with and without Basic auth (a wrong password: the program
//!   is refused, the log names the hop and 407).
//! - A corporate HTTP proxy behind a SOCKS jump host: `socks5://fw>http://user:pw@outside`,
//!   curl and ssh by name.
//! - A hop down: the error names it, and the next connection of the process fails over to the
//!   next chain of the list; a first hop down fails over within the same connection.
//! - ftp through two sockd: active mode (BIND asked of the last hop) and passive.
//! - BIND through exactly the chain that carried the last connection, when two chains share
//!   their first hop and the second took over (library and supervisor).
//! - Per-hop time: a silent hop 2 (a listener that never answers) fails the connect after its
//!   share of `SOCKS_TIMEOUT` (half of it for two hops), named in the log; library and
//!   supervisor.
//! - `?dynamic`: `a>b>c` with b down goes through `a>c` (leak check: only the first hop is
//!   contacted); without `?dynamic` it fails naming hop 2; every hop down fails, never direct;
//!   a silent hop is left out after its share; the supervisor does the same.
//! - python3 under the supervisor (`socksify --supervise`) through the corporate chain, and
//!   a wrong password there: refused, the hop named.
//!
//! Not here: the grammar (proto/src/rules/server_url.rs), the HTTP hop driver on loopback
//! (shim/src/chain.rs), `--explain` of a chain (supervisor/src/explain.rs).

use std::net::SocketAddr;

use socks_e2e::dns::{self, WWW};
use socks_e2e::*;

/// The second sockd's port on the outside host.
const HOP2_PORT: u16 = 1081;
/// tinyproxy's port on the outside host (behind the jump host).
const PROXY_PORT: u16 = 3128;
/// The HTTP destinations' port.
const WWW_PORT: u16 = 80;

/// The chain of two sockd, as socks.conf writes it.
fn two_sockd_chain() -> String {
    format!("socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:{HOP2_PORT}")
}

/// The first hop's rules: the workstation may reach only the second hop.
fn first_hop_rules(port: u16) -> String {
    format!(
        "# chains: the first hop may only reach the next hop\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq {port}\n"
    )
}

/// A sockd on the outside host at 198.51.100.2:`port`, serving the firewall, once it listens.
fn outside_sockd(lab: &Lab, port: u16) -> Daemon {
    let conf = lab.write(
        &format!("sockd-outside-{port}.conf"),
        format!(
            "# chains: the second hop serves the firewall, destinations on its own host too\n\
             permit {FW_OUTSIDE_ADDR}/32 {OUTSIDE_ADDR}/32\n\
             permit {FW_OUTSIDE_ADDR}/32 {}/128\n\
             permit {FW_OUTSIDE_ADDR}/32\n",
            dns::OUTSIDE_ADDR6
        ),
    );
    let listen = format!("{OUTSIDE_ADDR}:{port}");
    let sockd = Daemon::spawn(
        lab.ns(Ns::Outside),
        &format!("sockd-outside:{port}"),
        &paths::sockd(),
        &["-l", &listen, "-f", &conf.display().to_string(), "--connect-timeout", "5"],
    );
    sockd.wait_line(&["listening on", &listen], STARTUP);
    sockd
}

/// The lab with the leak counter, the outside name service (for the firewall and the outside
/// host), and HTTP servers for `www.example.test`.
fn chain_lab(name: &str) -> Option<(Lab, LeakCounter, Dnsmasq, [Server; 2])> {
    let lab = Lab::new(name)?;
    let leaks = LeakCounter::install(&lab);
    let dns = dns::outside_dns(&lab);
    lab.net.write_etc(
        Ns::Outside,
        "resolv.conf",
        &format!("# socks-e2e: the outside host's own dnsmasq\nnameserver {OUTSIDE_ADDR}\n"),
    );
    let www = dns::http_dual(&lab, WWW_PORT);
    Some((lab, leaks, dns, www))
}

/// Writes socks.conf sending everything through `entry` (an `@=` list body).
fn conf(lab: &Lab, entry: &str) -> String {
    lab.write("socks.conf", format!("# chains\nsockd @={entry} 0.0.0.0/0\n")).display().to_string()
}

/// curl fetching `url` under the library with `conf`, debug log on.
fn curl(lab: &Lab, conf: &str, url: &str) -> Ran {
    curl_within(lab, conf, url, "20", None)
}

/// [`curl`] with its own `--max-time` and, if given, the library's `SOCKS_TIMEOUT`.
fn curl_within(
    lab: &Lab,
    conf: &str,
    url: &str,
    max_time: &str,
    socks_timeout: Option<&str>,
) -> Ran {
    let mut client = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", max_time, url])
        .env("SOCKS_CONF", conf)
        .env("SOCKS_LOG", "debug")
        .env("no_proxy", "*");
    if let Some(timeout) = socks_timeout {
        client = client.env("SOCKS_TIMEOUT", timeout);
    }
    client.ld_preload().run()
}

#[test]
fn two_sockd_in_a_row() {
    let Some((lab, leaks, _dns, _www)) = chain_lab("chains-two-sockd") else { return };
    let first = lab.sockd(&first_hop_rules(HOP2_PORT));
    let second = outside_sockd(&lab, HOP2_PORT);
    let chain = two_sockd_chain();
    let conf = conf(&lab, &chain);

    // The first hop alone cannot reach the destination: only the chain can.
    let alone = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", "10", &format!("http://{OUTSIDE_ADDR}/alone")])
        .env("SOCKS_SERVER", SERVER)
        .env("no_proxy", "*")
        .ld_preload()
        .run();
    assert!(!alone.success(), "the first hop must refuse the destination\n{}", alone.describe());

    let ran = curl(&lab, &conf, &format!("http://{OUTSIDE_ADDR}/by-address"));
    assert!(
        ran.success() && ran.stdout == http_body("/by-address"),
        "curl by address through two sockd\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("connect {OUTSIDE_ADDR}:{WWW_PORT} via {chain}: ok")),
        "the library logs the chain\n{}",
        ran.describe()
    );

    let ran = curl(&lab, &conf, &format!("http://{WWW}/by-name"));
    assert!(
        ran.success() && ran.stdout == http_body("/by-name"),
        "curl by name through two sockd\n{}",
        ran.describe()
    );

    let script = format!(
        "import socket\n\
         s = socket.create_connection(('{WWW}', {WWW_PORT}), timeout=10)\n\
         s.sendall(b'GET /python HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n\
         \x20   d = s.recv(4096)\n\
         \x20   if not d: break\n\
         \x20   data += d\n\
         print(data.split(b'\\r\\n\\r\\n', 1)[1].decode(), end='')\n"
    );
    let ran =
        lab.python(&script).env("SOCKS_CONF", &conf).env("SOCKS_LOG", "debug").ld_preload().run();
    assert!(
        ran.success() && ran.stdout == http_body("/python"),
        "python3 by name through two sockd\n{}",
        ran.describe()
    );

    // node (its own event loop, libuv's getaddrinfo on a thread pool) by name.
    let script = format!(
        "const http = require('http');\n\
         http.get('http://{WWW}:{WWW_PORT}/node', (res) => {{\n\
           const chunks = [];\n\
           res.on('data', (c) => chunks.push(c));\n\
           res.on('end', () => process.stdout.write(Buffer.concat(chunks)));\n\
         }}).on('error', (e) => {{ console.error(`error ${{e.code}}`); process.exit(1); }});\n"
    );
    let ran = lab
        .client(paths::require("node", "nodejs"))
        .args(["-e", &script])
        .env("SOCKS_CONF", &conf)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    assert!(
        ran.success() && ran.stdout == http_body("/node"),
        "node by name through two sockd\n{}",
        ran.describe()
    );

    // The first hop only ever saw the second hop as a destination; the second got the name.
    let hop2 = format!("dst={OUTSIDE_ADDR}:{HOP2_PORT} ");
    first.wait_lines(&["connected:", "cmd=connect", &hop2], 4, STARTUP);
    let by_name = format!("dst={WWW}:{WWW_PORT} ");
    second.wait_lines(&["connected:", "cmd=connect", &by_name], 3, STARTUP);
    assert!(
        first.lines_with(&["connected:", &by_name]).is_empty(),
        "the name must reach only the last hop:\n{}",
        first.log()
    );

    // UDP through a chain does not exist: dig gets no answer, never a direct one.
    let ran = lab
        .client(paths::require("dig", "dnsutils"))
        // A real address's PTR: a question the library never answers itself.
        .args([&format!("@{OUTSIDE_ADDR}"), "+tries=1", "+time=2", "-x", &OUTSIDE_ADDR.to_string()])
        .env("SOCKS_CONF", &conf)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    assert!(
        !ran.stdout_text().contains("ANSWER SECTION"),
        "dig must get no answer through a chain\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains("UDP cannot go through a chain of proxies"),
        "the log says why UDP was refused\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd("curl, python3 and dig through a chain of two sockd");
}

#[test]
fn tinyproxy_alone_with_and_without_basic_auth() {
    let Some((lab, leaks, _dns, _www)) = chain_lab("chains-tinyproxy") else { return };
    let fw = SocketAddr::from((FW_INSIDE_ADDR, SOCKS_PORT));
    let open = Tinyproxy {
        ns: Ns::Fw,
        listen: fw,
        allow: &["192.0.2.0/24"],
        connect_ports: &[WWW_PORT],
        basic_auth: None,
    };
    let proxy = open.start(&lab, Ns::Inside);
    let ran = curl(&lab, &conf(&lab, &format!("http://{fw}")), &format!("http://{WWW}/open"));
    assert!(
        ran.success() && ran.stdout == http_body("/open"),
        "curl by name through tinyproxy alone\n{}",
        ran.describe()
    );
    // SOCKS_SERVER takes an HTTP proxy too.
    let ran = lab
        .client(paths::require("curl", "curl"))
        .args(["-sS", "--max-time", "20", &format!("http://{OUTSIDE_ADDR}/env")])
        .env("SOCKS_SERVER", format!("http://{fw}"))
        .env("no_proxy", "*")
        .ld_preload()
        .run();
    assert!(ran.success() && ran.stdout == http_body("/env"), "{}", ran.describe());
    // A port tinyproxy does not allow: refused by the proxy, the program sees a refusal.
    let ran = curl(&lab, &conf(&lab, &format!("http://{fw}")), &format!("http://{WWW}:8080/"));
    assert!(!ran.success(), "ConnectPort must refuse port 8080\n{}", ran.describe());
    assert!(
        ran.stderr.contains("hop 1 of 1 (http://") && ran.stderr.contains("HTTP proxy refused"),
        "the log names the hop and the refusal\n{}",
        ran.describe()
    );
    drop(proxy);

    let with_auth = Tinyproxy { basic_auth: Some(("alice", "s3cret")), ..open };
    let _proxy = with_auth.start(&lab, Ns::Inside);
    let good = conf(&lab, &format!("http://alice:s3cret@{fw}"));
    let ran = curl(&lab, &good, &format!("http://{WWW}/auth"));
    assert!(
        ran.success() && ran.stdout == http_body("/auth"),
        "curl through tinyproxy with Basic auth\n{}",
        ran.describe()
    );
    let bad = conf(&lab, &format!("http://alice:wrong@{fw}"));
    let ran = curl(&lab, &bad, &format!("http://{WWW}/bad"));
    assert!(!ran.success(), "a wrong password must fail\n{}", ran.describe());
    assert!(
        ran.stderr.contains("Permission denied") || ran.stderr.contains("Couldn't connect"),
        "curl sees the refusal\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("hop 1 of 1 (http://alice:***@{fw})"))
            && (ran.stderr.contains(": 407 ") || ran.stderr.contains(": 401 ")),
        "the log names the hop and the status (tinyproxy 1.11 answers 401, others 407)\n{}",
        ran.describe()
    );
    assert!(!ran.stderr.contains("wrong"), "no password in the log\n{}", ran.describe());
    leaks.assert_only_sockd("curl through tinyproxy as the only way out");
}

#[test]
fn corporate_proxy_behind_a_socks_jump_host() {
    let Some((lab, leaks, _dns, _www)) = chain_lab("chains-corporate") else { return };
    let (_sshd, key) = lab.sshd();
    let _jump = lab.sockd(&first_hop_rules(PROXY_PORT));
    let proxy_addr = SocketAddr::from((OUTSIDE_ADDR, PROXY_PORT));
    let _proxy = Tinyproxy {
        ns: Ns::Outside,
        listen: proxy_addr,
        allow: &["198.51.100.0/24"],
        connect_ports: &[WWW_PORT, 22],
        basic_auth: Some(("alice", "s3cret")),
    }
    .start(&lab, Ns::Fw);
    let chain = format!("socks5://{SERVER}>http://alice:s3cret@{proxy_addr}");
    let conf = conf(&lab, &chain);
    let ran = curl(&lab, &conf, &format!("http://{WWW}/corporate"));
    assert!(
        ran.success() && ran.stdout == http_body("/corporate"),
        "curl by name through a SOCKS jump host and an HTTP proxy\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("via socks5://{SERVER}>http://alice:***@{proxy_addr}: ok")),
        "the log shows the chain, password hidden\n{}",
        ran.describe()
    );
    // ssh by name: the session rides the tunnel after the proxy's answer.
    let ran = lab
        .ssh(&key, &format!("root@{WWW}"), &["echo", "chained"])
        .env("SOCKS_CONF", &conf)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    assert!(
        ran.success() && ran.stdout_text().trim() == "chained",
        "ssh by name through a SOCKS jump host and an HTTP proxy\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd("curl and ssh through a SOCKS jump host and an HTTP proxy");
}

#[test]
fn a_hop_down_is_named_and_the_next_chain_takes_over() {
    let Some((lab, _leaks, _dns, _www)) = chain_lab("chains-hop-down") else { return };
    let _first = lab.sockd(&format!(
        "# chains: the first hop may reach two next hops\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq {HOP2_PORT}\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq 1089\n"
    ));
    let _second = outside_sockd(&lab, HOP2_PORT);
    // The first chain's second hop (port 1089) is down.
    let dead = format!("socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:1089");
    let conf = conf(&lab, &format!("{dead},{}", two_sockd_chain()));
    // One process, two connections: the first fails at hop 2 (the socket is spent), the
    // second skips the chain that failed.
    let script = format!(
        "import socket\n\
         for i in range(2):\n\
         \x20   try:\n\
         \x20       s = socket.create_connection(('{OUTSIDE_ADDR}', {WWW_PORT}), timeout=10)\n\
         \x20       s.sendall(b'GET /t%d HTTP/1.0\\r\\n\\r\\n' % i)\n\
         \x20       print(i, 'ok', s.recv(4096).split(b'\\r\\n')[0].decode())\n\
         \x20   except OSError as e:\n\
         \x20       print(i, 'error', e.errno)\n"
    );
    let ran =
        lab.python(&script).env("SOCKS_CONF", &conf).env("SOCKS_LOG", "debug").ld_preload().run();
    assert!(ran.success(), "{}", ran.describe());
    let out = ran.stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("0 error") && lines[1].starts_with("1 ok"),
        "the first connection fails at the dead hop, the second goes through the next chain\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!(
            "could not reach hop 2 (socks5://{OUTSIDE_ADDR}:1089): SOCKS server: connection refused"
        )),
        "the log names the hop that failed\n{}",
        ran.describe()
    );

    // A first hop down: the same connection fails over to the next chain.
    let conf = self::conf(
        &lab,
        &format!(
            "socks5://{FW_INSIDE_ADDR}:1089>socks5://{OUTSIDE_ADDR}:{HOP2_PORT},{}",
            two_sockd_chain()
        ),
    );
    let ran = curl(&lab, &conf, &format!("http://{OUTSIDE_ADDR}/failover"));
    assert!(
        ran.success() && ran.stdout == http_body("/failover"),
        "a first hop down: the next chain\n{}",
        ran.describe()
    );
}

#[test]
fn supervised_python_through_a_corporate_chain() {
    let Some(lab) = socks_e2e::build::supervised_lab("chains-supervised") else { return };
    let leaks = LeakCounter::install(&lab);
    let _dns = dns::outside_dns(&lab);
    lab.net.write_etc(
        Ns::Outside,
        "resolv.conf",
        &format!("# socks-e2e: the outside host's own dnsmasq\nnameserver {OUTSIDE_ADDR}\n"),
    );
    let _www = dns::http_dual(&lab, WWW_PORT);
    let _jump = lab.sockd(&first_hop_rules(PROXY_PORT));
    let proxy_addr = SocketAddr::from((OUTSIDE_ADDR, PROXY_PORT));
    let _proxy = Tinyproxy {
        ns: Ns::Outside,
        listen: proxy_addr,
        allow: &["198.51.100.0/24"],
        connect_ports: &[WWW_PORT],
        basic_auth: Some(("alice", "s3cret")),
    }
    .start(&lab, Ns::Fw);
    let conf = conf(&lab, &format!("socks5://{SERVER}>http://alice:s3cret@{proxy_addr}"));
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('{WWW}', {WWW_PORT}), timeout=10)\n\
         s.sendall(b'GET /supervised HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n\
         \x20   d = s.recv(4096)\n\
         \x20   if not d: break\n\
         \x20   data += d\n\
         print(data.split(b'\\r\\n\\r\\n', 1)[1].decode(), end='')\n"
    );
    let ran =
        lab.python(&script).env("SOCKS_LOG", "debug").socksify(&["--supervise", "-c", &conf]).run();
    assert!(
        ran.success() && ran.stdout == http_body("/supervised"),
        "python3 by name under the supervisor through a SOCKS jump host and an HTTP proxy\n{}",
        ran.describe()
    );
    // A wrong password: refused, the hop named, never direct.
    let bad = self::conf(&lab, &format!("socks5://{SERVER}>http://alice:wrong@{proxy_addr}"));
    let ran =
        lab.python(&script).env("SOCKS_LOG", "debug").socksify(&["--supervise", "-c", &bad]).run();
    assert!(!ran.success(), "a wrong password must fail\n{}", ran.describe());
    assert!(
        ran.stderr.contains(&format!("hop 2 of 2 (http://alice:***@{proxy_addr})")),
        "the supervisor's log names the hop\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd("python3 under the supervisor through a chain");
}

#[test]
fn ftp_active_and_passive_through_two_sockd() {
    let Some((lab, leaks, _dns, _www)) = chain_lab("chains-ftp") else { return };
    let content = pattern(200_000);
    let vsftpd = lab.vsftpd(&[("big.bin", &content)]);
    let _first = lab.sockd(&first_hop_rules(HOP2_PORT));
    let second = outside_sockd(&lab, HOP2_PORT);
    let conf = conf(&lab, &two_sockd_chain());
    let (active, passive) = (lab.dir.path().join("active.bin"), lab.dir.path().join("passive.bin"));
    let script = format!(
        "user anonymous e2e@inside.test\nbinary\nget big.bin {}\npassive\nget big.bin {}\nquit\n",
        active.display(),
        passive.display()
    );
    let ran = lab
        .client(paths::require("inetutils-ftp", "inetutils-ftp"))
        .args(["-n", "-v", &OUTSIDE_ADDR.to_string()])
        .stdin(script)
        .env("SOCKS_CONF", &conf)
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .timeout(std::time::Duration::from_secs(60))
        .run();
    let context = || format!("{}\n--- vsftpd log ---\n{}", ran.describe(), vsftpd.log.text());
    assert!(ran.success(), "ftp failed\n{}", context());
    for (mode, file) in [("active", &active), ("passive", &passive)] {
        let got = std::fs::read(file).unwrap_or_default();
        assert!(got == content, "the {mode} download must be the whole file\n{}", context());
    }
    // BIND was asked of the last hop: it listens on the outside host's address.
    assert!(
        ran.stderr
            .contains(&format!("bind for {}: the server listens on {OUTSIDE_ADDR}:", vsftpd.addr)),
        "the data connection's bind must be a BIND at the last hop\n{}",
        context()
    );
    second.wait_line(&["cmd=bind"], STARTUP);
    leaks.assert_only_sockd("ftp active and passive through a chain of two sockd");
}

/// The second hop of the chain that takes over in [`bind_through_the_chain_that_carried_the_connection`].
const OTHER_HOP2_PORT: u16 = 1082;

/// Two chains through the same first hop to two different last hops, the first one's last hop
/// down: a first connection fails there (the chain is remembered as failed), the second goes
/// through the other chain, and a BIND then (ftp's active mode: bind to 0.0.0.0, port 0) must
/// go through that same chain — its last hop listens — not through the first entry that
/// starts at the same first hop. One python3 process, under the library or the supervisor.
fn bind_after_failover(lab: &Lab, supervised: bool) {
    let _first = lab.sockd(&format!(
        "# chains: the first hop may reach two next hops\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq 1089\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq {OTHER_HOP2_PORT}\n"
    ));
    let other = outside_sockd(lab, OTHER_HOP2_PORT);
    let dead = format!("socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:1089");
    let live = format!("socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:{OTHER_HOP2_PORT}");
    let conf = conf(lab, &format!("{dead},{live}"));
    let script = format!(
        "import socket\n\
         for i in range(2):\n\
         \x20   try:\n\
         \x20       c = socket.create_connection(('{OUTSIDE_ADDR}', {WWW_PORT}), timeout=10)\n\
         \x20       print(i, 'ok')\n\
         \x20   except OSError as e:\n\
         \x20       print(i, 'error', e.errno)\n\
         b = socket.socket()\n\
         try:\n\
         \x20   b.bind(('0.0.0.0', 0))\n\
         \x20   print('bind ok %s:%d' % b.getsockname())\n\
         except OSError as e:\n\
         \x20   print('bind error', e.errno)\n"
    );
    let client = lab.python(&script).env("SOCKS_LOG", "debug");
    let ran = if supervised {
        client.socksify(&["--supervise", "-c", &conf]).run()
    } else {
        client.env("SOCKS_CONF", &conf).ld_preload().run()
    };
    let who = if supervised { "the supervisor" } else { "the library" };
    let out = ran.stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.len() == 3 && lines[0].starts_with("0 error") && lines[1] == "1 ok",
        "{who}: the first connection fails at the dead hop, the second takes the other chain\n{}",
        ran.describe()
    );
    assert!(
        lines[2].starts_with(&format!("bind ok {OUTSIDE_ADDR}:")),
        "{who}: the BIND goes through the chain that carried the connection, whose last hop \
         listens on the outside host (not through the dead one, which shares its first hop)\n{}",
        ran.describe()
    );
    let asked = format!("cmd=bind dst={OUTSIDE_ADDR}:{WWW_PORT}");
    other.wait_line(&["bind:", &format!("client={FW_OUTSIDE_ADDR}:"), &asked], STARTUP);
}

#[test]
fn bind_through_the_chain_that_carried_the_connection() {
    let Some(lab) = Lab::new("chains-bind-route") else { return };
    let _www = servers::http(lab.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR, WWW_PORT)));
    bind_after_failover(&lab, false);
}

#[test]
fn bind_through_the_chain_that_carried_the_connection_supervised() {
    let Some(lab) = socks_e2e::build::supervised_lab("chains-bind-route-sup") else { return };
    let _www = servers::http(lab.ns(Ns::Outside), SocketAddr::from((OUTSIDE_ADDR, WWW_PORT)));
    bind_after_failover(&lab, true);
}

/// The port of a silent hop on the outside host: it accepts connections and never answers.
const SILENT_PORT: u16 = 1090;

/// A TCP listener on the outside host at `SILENT_PORT` that accepts (the kernel completes the
/// handshake) and never says a word, once it listens.
fn silent_hop(lab: &Lab) -> Daemon {
    let script = format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{OUTSIDE_ADDR}', {SILENT_PORT}))\n\
         s.listen(16)\n\
         print('silent hop listening', flush=True)\n\
         held = []\n\
         while True:\n\
         \x20   held.append(s.accept())\n"
    );
    let python = paths::require("python3", "python3");
    let hop = Daemon::spawn(lab.ns(Ns::Outside), "silent-hop", &python, &["-c", &script]);
    hop.wait_line(&["silent hop listening"], STARTUP);
    hop
}

/// python3 connecting once to the outside web server; prints `ok` or `error ERRNO SECONDS`.
fn one_timed_connect() -> String {
    format!(
        "import socket, time\n\
         t = time.monotonic()\n\
         try:\n\
         \x20   s = socket.create_connection(('{OUTSIDE_ADDR}', {WWW_PORT}), timeout=60)\n\
         \x20   print('ok')\n\
         except OSError as e:\n\
         \x20   print('error', e.errno, round(time.monotonic() - t, 1))\n"
    )
}

/// Checks that `ran` (one_timed_connect through `sockd>silent`, SOCKS_TIMEOUT=12) failed
/// within hop 2's share of the time (6 s), not the whole 12 s, and that its log names hop 2.
fn assert_hop2_timed_out(ran: &Ran, who: &str) {
    let out = ran.stdout_text();
    let seconds: Option<f64> = out
        .strip_prefix(&format!("error {} ", libc::ETIMEDOUT))
        .and_then(|rest| rest.trim().parse().ok());
    assert!(
        seconds.is_some_and(|s| (5.0..10.0).contains(&s)),
        "{who}: the connect fails with ETIMEDOUT after hop 2's share (6 s of 12)\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("hop 2 of 2 (socks5://{OUTSIDE_ADDR}:{SILENT_PORT})")),
        "{who}: the log names the silent hop\n{}",
        ran.describe()
    );
}

#[test]
fn a_silent_hop_times_out_within_its_share() {
    let Some((lab, _leaks, _dns, _www)) = chain_lab("chains-hop-timeout") else { return };
    let _first = lab.sockd(&first_hop_rules(SILENT_PORT));
    let _silent = silent_hop(&lab);
    let conf = conf(&lab, &format!("socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:{SILENT_PORT}"));
    let ran = lab
        .python(&one_timed_connect())
        .env("SOCKS_CONF", &conf)
        .env("SOCKS_TIMEOUT", "12")
        .env("SOCKS_LOG", "debug")
        .ld_preload()
        .run();
    assert_hop2_timed_out(&ran, "the library");
}

#[test]
fn a_silent_hop_times_out_within_its_share_supervised() {
    let Some(lab) = socks_e2e::build::supervised_lab("chains-hop-timeout-sv") else { return };
    let _first = lab.sockd(&first_hop_rules(SILENT_PORT));
    let _silent = silent_hop(&lab);
    let conf = conf(&lab, &format!("socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:{SILENT_PORT}"));
    let ran = lab
        .python(&one_timed_connect())
        .env("SOCKS_TIMEOUT", "12")
        .env("SOCKS_LOG", "debug")
        .socksify(&["--supervise", "-c", &conf])
        .run();
    assert_hop2_timed_out(&ran, "the supervisor");
}

/// A three-hop chain `fw>down>outside` whose middle hop (port 1089 on the outside host) is down.
fn chain_with_hop2_down() -> String {
    format!("socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:1089>socks5://{OUTSIDE_ADDR}:{HOP2_PORT}")
}

/// The first hop's rules for `chain_with_hop2_down`: it may reach both later hops.
fn first_hop_rules_for_dynamic() -> String {
    format!(
        "# chains: the first hop may reach the dead hop and the live one\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq {HOP2_PORT}\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq 1089\n"
    )
}

#[test]
fn dynamic_chain_leaves_out_a_hop_that_is_down() {
    let Some((lab, leaks, _dns, _www)) = chain_lab("chains-dynamic") else { return };
    let _first = lab.sockd(&first_hop_rules_for_dynamic());
    let _third = outside_sockd(&lab, HOP2_PORT);

    // ?dynamic: hop 2 is left out, the connection goes through fw>outside.
    let dynamic = conf(&lab, &format!("{}?dynamic", chain_with_hop2_down()));
    let ran = curl(&lab, &dynamic, &format!("http://{OUTSIDE_ADDR}/dynamic"));
    assert!(
        ran.success() && ran.stdout == http_body("/dynamic"),
        "a>b>c?dynamic with b down goes through a>c\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains("(dynamic): leaving out hop 2 of")
            && ran.stderr.contains(&format!(
                "via socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:{HOP2_PORT}: ok"
            )),
        "the log says which hop was left out and which chain worked\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd("a dynamic chain: only the first hop is contacted");

    // Without ?dynamic: the connection fails, hop 2 named.
    let fixed = conf(&lab, &chain_with_hop2_down());
    let ran = curl(&lab, &fixed, &format!("http://{OUTSIDE_ADDR}/fixed"));
    assert!(!ran.success(), "a>b>c with b down must fail\n{}", ran.describe());
    assert!(
        ran.stderr.contains(&format!("could not reach hop 2 (socks5://{OUTSIDE_ADDR}:1089)")),
        "the log names hop 2\n{}",
        ran.describe()
    );

    // Every hop down: the connection fails, never direct. The first hop's port on the
    // firewall and the later hops (tried as first hops once the one before is left out) are
    // the only destinations the workstation may have tried.
    let all_down = conf(
        &lab,
        &format!(
            "socks5://{FW_INSIDE_ADDR}:1089>socks5://{OUTSIDE_ADDR}:1089>socks5://{OUTSIDE_ADDR}:1088?dynamic"
        ),
    );
    let url = format!("http://{OUTSIDE_ADDR}/all-down");
    let ran = curl_within(&lab, &all_down, &url, "20", Some("9"));
    assert!(!ran.success(), "every hop down must fail\n{}", ran.describe());
    assert!(
        ran.stderr.contains("(dynamic): hop 1 is down and no hop is left")
            || ran.stderr.contains("(dynamic): out of time"),
        "the log says the dynamic chain ran out of hops\n{}",
        ran.describe()
    );
    let allowed = [
        format!("{FW_INSIDE_ADDR} . tcp . 1089"),
        format!("{OUTSIDE_ADDR} . tcp . 1089"),
        format!("{OUTSIDE_ADDR} . tcp . 1088"),
    ];
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        v4.iter().all(|d| allowed.contains(d)) && v6.is_empty(),
        "nothing but the hops was tried, never the destination: {v4:?} {v6:?}\n{}",
        ran.describe()
    );
}

#[test]
fn dynamic_chain_under_the_supervisor() {
    let Some(lab) = socks_e2e::build::supervised_lab("chains-dynamic-sv") else { return };
    let leaks = LeakCounter::install(&lab);
    let _dns = dns::outside_dns(&lab);
    let _www = dns::http_dual(&lab, WWW_PORT);
    let _first = lab.sockd(&first_hop_rules_for_dynamic());
    let _third = outside_sockd(&lab, HOP2_PORT);
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('{OUTSIDE_ADDR}', {WWW_PORT}), timeout=10)\n\
         s.sendall(b'GET /supervised-dynamic HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n\
         \x20   d = s.recv(4096)\n\
         \x20   if not d: break\n\
         \x20   data += d\n\
         print(data.split(b'\\r\\n\\r\\n', 1)[1].decode(), end='')\n"
    );
    let dynamic = conf(&lab, &format!("{}?dynamic", chain_with_hop2_down()));
    let ran = lab
        .python(&script)
        .env("SOCKS_LOG", "debug")
        .socksify(&["--supervise", "-c", &dynamic])
        .run();
    assert!(
        ran.success() && ran.stdout == http_body("/supervised-dynamic"),
        "a>b>c?dynamic with b down, under the supervisor\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("({}): ok (dynamic: left out hop 2 of ", "socks5")),
        "the supervisor's log says which hop was left out\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd("a dynamic chain under the supervisor");
    let fixed = conf(&lab, &chain_with_hop2_down());
    let ran = lab
        .python(&script)
        .env("SOCKS_LOG", "debug")
        .socksify(&["--supervise", "-c", &fixed])
        .run();
    assert!(!ran.success(), "without ?dynamic it fails\n{}", ran.describe());
    assert!(
        ran.stderr.contains(&format!("could not reach hop 2 (socks5://{OUTSIDE_ADDR}:1089)")),
        "the supervisor's log names hop 2\n{}",
        ran.describe()
    );
}

#[test]
fn dynamic_chain_leaves_out_a_silent_hop_after_its_share() {
    let Some((lab, leaks, _dns, _www)) = chain_lab("chains-dynamic-silent") else { return };
    let _first = lab.sockd(&format!(
        "# chains: the first hop may reach the silent hop and the live one\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq {HOP2_PORT}\n\
         permit 192.0.2.0/24 {OUTSIDE_ADDR}/32 eq {SILENT_PORT}\n"
    ));
    let _silent = silent_hop(&lab);
    let _third = outside_sockd(&lab, HOP2_PORT);
    let conf = conf(
        &lab,
        &format!(
            "socks5://{SERVER}>socks5://{OUTSIDE_ADDR}:{SILENT_PORT}>socks5://{OUTSIDE_ADDR}:{HOP2_PORT}?dynamic"
        ),
    );
    let url = format!("http://{OUTSIDE_ADDR}/silent");
    let ran = curl_within(&lab, &conf, &url, "30", Some("12"));
    assert!(
        ran.success() && ran.stdout == http_body("/silent"),
        "a silent hop 2 of a dynamic chain is left out after its share (4 s of 12)\n{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("hop 2 of 3 (socks5://{OUTSIDE_ADDR}:{SILENT_PORT})"))
            && ran.stderr.contains("(dynamic): leaving out hop 2 of"),
        "the log names the silent hop and leaves it out\n{}",
        ran.describe()
    );
    leaks.assert_only_sockd("a dynamic chain with a silent hop");
}
