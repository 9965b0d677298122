//! Browsers and runtimes with minds of their own (issue 16), end to end, under libsocks.so.
//! The lab is that of names.rs: the workstation (`inside`) has no route out and a resolver
//! that answers nothing; sockd on the firewall; dnsmasq on the outside host answers
//! `www.example.test` (A 198.51.100.2, AAAA 2001:db8:100::2) to the firewall only; the web
//! servers listen on both addresses outside; nftables counters on the workstation
//! ([`LeakCounter`]) prove that nothing left it but traffic to sockd — no DNS query, no direct
//! UDP (Chromium's QUIC is left on: it must go through the relay or fail).
//!
//! - Chromium (Debian's `chromium`), headless, as `nobody`, with its sandbox on (no
//!   `--no-sandbox`, no `--single-process`), under `socksify`: a page whose scripts, loaded by
//!   name and by address, each add a marker to the DOM that `--dump-dom` prints. While a held
//!   script is pending, the renderers are checked to be sandboxed (seccomp mode 2, their own
//!   user and pid namespaces) and libsocks.so to be mapped in the browser and in its exec'd
//!   network service. By address, and by name (the browser process resolves, the network
//!   service connects; Chromium may use its own DNS client).
//! - Node 20: ten sequential `http.get` by address and ten by name, `dns.lookup` and a connect
//!   to what it gave (getaddrinfo, which the library hooks); three waves of twenty concurrent
//!   `fetch()` by name; `dns.resolve4` (c-ares, its own DNS client over UDP to the resolv.conf
//!   server) and a connect to its answer.
//! - `dig +short NAME` without `@server`: the program's own query to the resolv.conf server.
//!
//! Each checks what the program got, the web server's requests (from the firewall, with the
//! name in `Host`), sockd's sessions (by NAME, `dst=www.example.test:80`, never a fake
//! address) and the leak counters.
//!
//! Not here: curl, wget, python3 and node's plain `http.get` by name (names.rs), `dig @server`
//! through UDP ASSOCIATE (names.rs, udp.rs), supervised programs (supervised_names.rs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socks_e2e::chromium::{self, Run};
use socks_e2e::dns::{self, FW_OUTSIDE_ADDR6, OUTSIDE_ADDR6, WWW};
use socks_e2e::web::{Page, Web};
use socks_e2e::*;

/// The port of the outside web servers.
const PORT: u16 = 80;

/// What each script of the Chromium pages adds to the DOM.
const MARK_BY_NAME: &str = "subresource by name ran";
const MARK_BY_ADDRESS: &str = "subresource by address ran";
const MARK_HELD: &str = "held subresource ran";

/// `client` under the library with `SOCKS_SERVER` only (every name resolved remotely) and the
/// library's debug log on stderr (shown when an assertion fails).
fn under_library(client: Client) -> Client {
    client.env("SOCKS_SERVER", SERVER).env("SOCKS_LOG", "debug").env("no_proxy", "*").ld_preload()
}

/// Waits until sockd has logged `count` complete sessions from the workstation to `dst`
/// (`www.example.test:80` or `198.51.100.2:80`); returns the `connected:` lines.
fn sessions_to(sockd: &Daemon, dst: &str, count: usize) -> Vec<String> {
    let (client, dst) = (format!("client={INSIDE_ADDR}:"), format!("dst={dst} "));
    sockd.wait_lines(&["closed:", &client, "cmd=connect", &dst], count, STARTUP);
    sockd.wait_lines(&["connected:", &client, "cmd=connect", &dst], count, STARTUP)
}

/// The outside host's web servers' IPv4 and IPv6 addresses on port 80.
fn outside_addrs() -> [SocketAddr; 2] {
    [SocketAddr::from((OUTSIDE_ADDR, PORT)), SocketAddr::from((OUTSIDE_ADDR6, PORT))]
}

/// A script that appends `<p>MARK</p>` to the document.
fn marker_script(path: &str, mark: &str) -> Page {
    Page::script(
        path,
        &format!(
            "document.body.appendChild(document.createElement('p')).textContent = '{mark}';\n"
        ),
    )
}

/// A page loading `scripts` in order, then `held` (a relative path, held by the site).
fn page(path: &str, scripts: &[&str], held: &str) -> Page {
    let tags: String =
        scripts.iter().chain([&held]).map(|s| format!("<script src=\"{s}\"></script>\n")).collect();
    Page::html(
        path,
        &format!("<!doctype html>\n<html><head><title>socks-e2e</title></head><body>\n{tags}</body></html>\n"),
    )
}

/// The scripts every Chromium page may use: by name, by address, and held ones.
fn chromium_site(lab: &Lab, pages: Vec<Page>, held: &[&str]) -> Web {
    let mut all = vec![
        marker_script("/by-name.js", MARK_BY_NAME),
        marker_script("/by-address.js", MARK_BY_ADDRESS),
    ];
    all.extend(held.iter().map(|h| marker_script(h, MARK_HELD).held()));
    all.extend(pages);
    Web::start(lab.ns(Ns::Outside), &outside_addrs(), all)
}

/// Asserts the run succeeded as the unprivileged user with its sandbox on: a renderer was up
/// mid-load, every renderer
/// in seccomp filter mode (2) and in user and pid namespaces of its own; libsocks.so mapped in
/// the browser process and in the network service (a separate, exec'd process); no complaint
/// about the sandbox.
fn assert_sandboxed_run(run: &Run) {
    assert!(
        run.held_requested,
        "Chromium never asked for the held script: the page did not load (a failed navigation \
         still exits 0, with an empty DOM)\n{}",
        run.describe()
    );
    let browser = run.browser().unwrap_or_else(|| panic!("no browser process\n{}", run.describe()));
    assert!(
        run.processes.iter().all(|p| p.uid == Some(chromium::UID)),
        "every Chromium process must run as {}\n{}",
        chromium::USER,
        run.describe()
    );
    let renderers = run.of_kind("renderer");
    assert!(!renderers.is_empty(), "no renderer process mid-load\n{}", run.describe());
    for renderer in &renderers {
        assert!(
            renderer.seccomp == Some(2)
                && renderer.user_ns != browser.user_ns
                && renderer.pid_ns != browser.pid_ns,
            "renderer {} is not sandboxed (seccomp filter, own user and pid namespaces)\n{}",
            renderer.pid,
            run.describe()
        );
    }
    assert!(browser.has_library, "libsocks.so is not in the browser process\n{}", run.describe());
    let network = run
        .network_service()
        .unwrap_or_else(|| panic!("no network service process\n{}", run.describe()));
    assert!(
        network.has_library && network.pid != browser.pid,
        "libsocks.so must be in the network service process\n{}",
        run.describe()
    );
    assert!(
        !run.stderr.contains("No usable sandbox") && !run.stderr.contains("--no-sandbox"),
        "Chromium complained about its sandbox\n{}",
        run.describe()
    );
    assert!(run.success, "Chromium failed\n{}", run.describe());
}

/// Asserts the dumped DOM carries every one of `marks`.
fn assert_marks(run: &Run, marks: &[&str]) {
    for mark in marks {
        assert!(
            run.dom.contains(&format!("<p>{mark}</p>")),
            "the DOM must carry `{mark}`\n{}",
            run.describe()
        );
    }
}

/// Asserts every request the site got came from the firewall, and returns the requests for
/// `path`, of which there must be at least one.
fn relayed_requests(web: &Web, path: &str) -> Vec<web::Request> {
    let all = web.requests();
    for request in &all {
        assert!(
            request.peer.ip() == IpAddr::V4(FW_OUTSIDE_ADDR)
                || request.peer.ip() == IpAddr::V6(FW_OUTSIDE_ADDR6),
            "a request did not come from the firewall: {request:?}"
        );
    }
    let for_path: Vec<web::Request> = all.into_iter().filter(|r| r.path == path).collect();
    assert!(!for_path.is_empty(), "the web server never got {path}: {:?}", web.requests());
    for_path
}

#[test]
fn chromium_sandboxed_by_address() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("runtimes-chromium-address") else {
        return;
    };
    if let Err(why) = chromium::sandbox_possible(&lab) {
        return skip(lab.name(), &why);
    }
    let address_script = format!("http://{OUTSIDE_ADDR}/by-address.js");
    let web = chromium_site(
        &lab,
        vec![page("/address.html", &[&address_script], "/address-held.js")],
        &["/address-held.js"],
    );
    let url = format!("http://{OUTSIDE_ADDR}/address.html");
    let run = chromium::run(&lab, "address", &url, &web, "/address-held.js");
    assert_sandboxed_run(&run);
    assert_marks(&run, &[MARK_BY_ADDRESS, MARK_HELD]);

    for path in ["/address.html", "/by-address.js", "/address-held.js"] {
        let requests = relayed_requests(&web, path);
        assert!(
            requests.iter().all(|r| r.host.as_deref() == Some(&OUTSIDE_ADDR.to_string())),
            "{path} must be asked for by address: {requests:?}"
        );
    }
    sessions_to(&sockd, &format!("{OUTSIDE_ADDR}:{PORT}"), 3);
    dns::assert_no_fake_destination(&sockd);
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("Chromium by address");
}

#[test]
fn chromium_sandboxed_by_name() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("runtimes-chromium-name") else { return };
    if let Err(why) = chromium::sandbox_possible(&lab) {
        return skip(lab.name(), &why);
    }
    let scripts =
        [format!("http://{WWW}/by-name.js"), format!("http://{OUTSIDE_ADDR}/by-address.js")];
    let scripts: Vec<&str> = scripts.iter().map(String::as_str).collect();
    let web = chromium_site(
        &lab,
        vec![
            page("/name.html", &scripts, "/name-held.js"),
            page("/mixed.html", &scripts, "/mixed-held.js"),
        ],
        &["/name-held.js", "/mixed-held.js"],
    );

    // The page by name: its held script (relative) by name too.
    let run =
        chromium::run(&lab, "name", &format!("http://{WWW}/name.html"), &web, "/name-held.js");
    assert_sandboxed_run(&run);
    assert_marks(&run, &[MARK_BY_NAME, MARK_BY_ADDRESS, MARK_HELD]);
    for path in ["/name.html", "/name-held.js"] {
        let requests = relayed_requests(&web, path);
        assert!(
            requests.iter().all(|r| r.host.as_deref() == Some(WWW)),
            "{path} must be asked for by name: {requests:?}"
        );
    }

    // The same subresources from a page loaded by address.
    let url = format!("http://{OUTSIDE_ADDR}/mixed.html");
    let run = chromium::run(&lab, "mixed", &url, &web, "/mixed-held.js");
    assert_sandboxed_run(&run);
    assert_marks(&run, &[MARK_BY_NAME, MARK_BY_ADDRESS, MARK_HELD]);

    let by_name = relayed_requests(&web, "/by-name.js");
    assert!(
        by_name.len() >= 2 && by_name.iter().all(|r| r.host.as_deref() == Some(WWW)),
        "the script by name must be asked for by name, once per run: {by_name:?}"
    );
    relayed_requests(&web, "/by-address.js");
    // By name: /name.html, /by-name.js, /name-held.js, then /by-name.js again.
    sessions_to(&sockd, &format!("{WWW}:{PORT}"), 4);
    dns::assert_no_fake_destination(&sockd);
    assert!(!dns.queries_for(WWW).is_empty(), "sockd must have asked the outside DNS");
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("Chromium by name");
}

/// Chromium with its built-in resolver off: the browser process asks getaddrinfo (the
/// library's fake address) and the network service, a process exec'd apart from it, connects.
/// The fake address means the same name there only because the map of fake names is the
/// user's, not the process tree's (before, the network service refused it as "never handed
/// out").
#[test]
fn chromium_sandboxed_system_resolver_across_exec() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("runtimes-chromium-gai") else { return };
    if let Err(why) = chromium::sandbox_possible(&lab) {
        return skip(lab.name(), &why);
    }
    let script = format!("http://{WWW}/by-name.js");
    let web =
        chromium_site(&lab, vec![page("/gai.html", &[&script], "/gai-held.js")], &["/gai-held.js"]);
    let url = format!("http://{WWW}/gai.html");
    let flags = ["--disable-features=AsyncDns"];
    let run = chromium::run_with(&lab, "gai", &url, &web, "/gai-held.js", &flags);
    assert_sandboxed_run(&run);
    assert_marks(&run, &[MARK_BY_NAME, MARK_HELD]);
    for path in ["/gai.html", "/by-name.js", "/gai-held.js"] {
        let requests = relayed_requests(&web, path);
        assert!(
            requests.iter().all(|r| r.host.as_deref() == Some(WWW)),
            "{path} must be asked for by name: {requests:?}"
        );
    }
    sessions_to(&sockd, &format!("{WWW}:{PORT}"), 3);
    dns::assert_no_fake_destination(&sockd);
    assert!(
        !run.stderr.contains("never handed out"),
        "the network service must know the browser's fake addresses:\n{}",
        run.stderr
    );
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("Chromium by name, system resolver");
}

/// Node's helpers: `get(url, host)` resolves to `STATUS BODY` (trimmed) with a 15 s timeout,
/// no connection reuse; an error ends the program with `error CODE MESSAGE`.
const NODE_PRELUDE: &str = r#"
const http = require("http");
const dns = require("dns");
function get(url, host) {
  return new Promise((resolve, reject) => {
    const options = { agent: false, headers: host ? { Host: host } : {} };
    const req = http.get(url, options, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve(`${res.statusCode} ${Buffer.concat(chunks).toString().trim()}`));
    });
    req.setTimeout(15000, () => req.destroy(new Error(`timeout on ${url}`)));
    req.on("error", reject);
  });
}
function fail(e) {
  const cause = e.cause ? ` (cause: ${e.cause.code} ${e.cause.message})` : "";
  console.error(`error ${e.code} ${e.message}${cause}`);
  process.exit(1);
}
"#;

/// `node -e PRELUDE + script` in `inside` under the library.
fn node(lab: &Lab, script: &str) -> Client {
    let script = format!("{NODE_PRELUDE}\n{script}");
    under_library(lab.client(paths::require("node", "nodejs")).args(["-e", &script]))
        .timeout(std::time::Duration::from_secs(60))
}

/// Whether `addr` is in the library's default fake IPv4 range, 198.18.0.0/15.
fn is_fake(addr: Ipv4Addr) -> bool {
    addr.octets()[0] == 198 && (addr.octets()[1] & 0xfe) == 18
}

#[test]
fn node_http_get_by_address_and_by_name() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("runtimes-node-get") else { return };
    let www = dns::http_dual(&lab, PORT);
    let script = format!(
        r#"
(async () => {{
  for (let i = 0; i < 10; i++) console.log(`address ${{i}}: ` + await get(`http://{OUTSIDE_ADDR}/address-${{i}}`));
  for (let i = 0; i < 10; i++) console.log(`name ${{i}}: ` + await get(`http://{WWW}/name-${{i}}`));
  const found = await dns.promises.lookup("{WWW}", {{ family: 4 }});
  console.log(`lookup: ${{found.address}}`);
  console.log("lookup get: " + await get(`http://${{found.address}}/lookup`, "{WWW}"));
}})().catch(fail);
"#
    );
    let ran = node(&lab, &script).run();
    assert!(ran.success(), "node\n{}", ran.describe());
    let out = ran.stdout_text();
    let mut expected: String =
        (0..10).map(|i| format!("address {i}: 200 hello from outside: /address-{i}\n")).collect();
    expected.extend((0..10).map(|i| format!("name {i}: 200 hello from outside: /name-{i}\n")));
    assert!(out.starts_with(&expected), "node's answers\n{}", ran.describe());
    let lookup: Ipv4Addr = out
        .lines()
        .find_map(|l| l.strip_prefix("lookup: "))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("dns.lookup gave no IPv4 address\n{}", ran.describe()));
    assert!(is_fake(lookup), "dns.lookup must give a fake address, got {lookup}");
    assert!(
        out.ends_with("lookup get: 200 hello from outside: /lookup\n"),
        "a connect to dns.lookup's address must reach the server\n{}",
        ran.describe()
    );

    sessions_to(&sockd, &format!("{OUTSIDE_ADDR}:{PORT}"), 10);
    sessions_to(&sockd, &format!("{WWW}:{PORT}"), 11);
    let paths: Vec<String> =
        www.iter().flat_map(|s| s.wait_done(0, STARTUP)).filter_map(|e| e.path).collect();
    for i in 0..10 {
        for path in [format!("/address-{i}"), format!("/name-{i}")] {
            assert!(paths.contains(&path), "no request for {path}: {paths:?}");
        }
    }
    assert!(paths.iter().any(|p| p == "/lookup"), "no request for /lookup: {paths:?}");
    dns::assert_relayed([&www[0], &www[1]]);
    dns::assert_no_fake_destination(&sockd);
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("node http.get by address and by name, dns.lookup");
}

#[test]
fn node_fetch_waves_by_name() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("runtimes-node-fetch") else { return };
    let www = dns::http_dual(&lab, PORT);
    let script = format!(
        r#"
(async () => {{
  let ok = 0;
  for (let w = 0; w < 3; w++) {{
    const answers = await Promise.all(Array.from({{ length: 20 }}, (_, i) =>
      fetch(`http://{WWW}/wave-${{w}}-${{i}}`, {{ signal: AbortSignal.timeout(30000) }})
        .then(async (r) => `${{r.status}} ${{(await r.text()).trim()}}`)));
    answers.forEach((a, i) => {{
      if (a === `200 hello from outside: /wave-${{w}}-${{i}}`) ok++;
      else console.error(`wave ${{w}} #${{i}}: ${{a}}`);
    }});
  }}
  console.log(`fetched ${{ok}} of 60`);
}})().catch(fail);
"#
    );
    let ran = node(&lab, &script).run();
    assert!(
        ran.success() && ran.stdout_text() == "fetched 60 of 60\n",
        "node fetch() in three waves of twenty by name\n{}",
        ran.describe()
    );
    sessions_to(&sockd, &format!("{WWW}:{PORT}"), 60);
    let done = www[0].wait_done(0, STARTUP).len() + www[1].wait_done(0, STARTUP).len();
    assert!(done >= 60, "the web servers must have answered 60 requests, got {done}");
    dns::assert_relayed([&www[0], &www[1]]);
    dns::assert_no_fake_destination(&sockd);
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("node fetch() waves by name");
}

#[test]
fn node_dns_resolve4_own_client() {
    let Some((lab, leaks, dns, sockd)) = dns::names_lab("runtimes-node-resolve4") else { return };
    let www = dns::http_dual(&lab, PORT);
    let script = format!(
        r#"
(async () => {{
  // One try of 3 s: without an answer from the library this fails in seconds, not 13.
  const resolver = new dns.promises.Resolver({{ timeout: 3000, tries: 1 }});
  const addrs = await resolver.resolve4("{WWW}");
  console.log(`resolve4: ${{addrs.join(" ")}}`);
  console.log("get: " + await get(`http://${{addrs[0]}}/resolve4`, "{WWW}"));
}})().catch(fail);
"#
    );
    let ran = node(&lab, &script).run();
    assert!(ran.success(), "node dns.resolve4 (c-ares)\n{}", ran.describe());
    let out = ran.stdout_text();
    let first: Ipv4Addr = out
        .lines()
        .find_map(|l| l.strip_prefix("resolve4: "))
        .and_then(|a| a.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("dns.resolve4 gave no IPv4 address\n{}", ran.describe()));
    assert!(
        out.ends_with("get: 200 hello from outside: /resolve4\n"),
        "a connect to dns.resolve4's address must reach the server\n{}",
        ran.describe()
    );
    // Through sockd: by name when the answer was a fake address, else by that address.
    let dst = if is_fake(first) { format!("{WWW}:{PORT}") } else { format!("{first}:{PORT}") };
    sessions_to(&sockd, &dst, 1);
    dns::assert_relayed([&www[0], &www[1]]);
    dns::assert_no_fake_destination(&sockd);
    dns.assert_asked_only_by_firewall();
    leaks.assert_only_sockd("node dns.resolve4");
}

#[test]
fn dig_without_server_by_local_resolver_path() {
    let Some((lab, leaks, dns, _sockd)) = dns::names_lab("runtimes-dig") else { return };
    let ran = under_library(lab.client(paths::require("dig", "dnsutils")))
        .args(["+short", "+time=3", "+tries=1", WWW])
        .run();
    let first: Option<Ipv4Addr> = ran.stdout_text().lines().next().and_then(|l| l.parse().ok());
    assert!(
        ran.success() && first.is_some(),
        "dig +short {WWW} (no @server) must print an address\n{}",
        ran.describe()
    );
    dns.assert_asked_only_by_firewall();
    // The answer may come from the library itself (a fake address) without any packet, so
    // only "nothing else" is asserted, not "something to sockd".
    let counts = leaks.counts();
    assert!(
        counts.leaked == 0,
        "dig without @server: nothing but traffic to sockd may leave the workstation (no query \
         to its resolver {DEAD_DNS_ADDR}); counted {counts:?}:\n{}",
        leaks.table()
    );
}
