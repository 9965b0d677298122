//! Names resolved on the far side for supervised programs (issue 12): a static Go program
//! (`CGO_ENABLED=0`, Go's own DNS client over UDP to the resolv.conf server) and busybox-static
//! (glibc's resolver, linked in: `sendmmsg` on a connected socket, `recvfrom` checking the
//! reply's source) reach an outside host by NAME through sockd, under a plain `socksify`. The
//! workstation's resolv.conf names a LAN address where nothing answers; only the firewall
//! reaches the outside name server (`socks_e2e::dns::outside_dns`). Each test checks the bytes
//! the program got, that sockd was asked for the NAME (never a fake address), that the outside
//! name server heard only the firewall, and with the leak counter that no query for the name
//! left the workstation. A name socks.conf sends direct (`direct .corp.example`) is still
//! resolved by the LAN's name server, which never hears the proxied name.
//!
//! Not here: supervised connects by address (supervised.rs), the library's names (names.rs).

use std::net::{IpAddr, SocketAddr};

use socks_e2e::build::{build_static, go_build, supervised_lab};
use socks_e2e::dns::{self, Dnsmasq, WWW};
use socks_e2e::*;

/// A Go client: each argument `http://…` is fetched (body on stdout), `lookup:NAME` prints
/// `NAME ADDRS` (net.LookupHost) and `reverse:ADDR` prints `ADDR NAMES` (net.LookupAddr).
const GO_CLIENT: &str = r#"
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for _, arg := range os.Args[1:] {
		switch {
		case strings.HasPrefix(arg, "lookup:"):
			addrs, err := net.LookupHost(arg[7:])
			if err != nil {
				fmt.Fprintln(os.Stderr, "lookup:", err)
				os.Exit(1)
			}
			fmt.Printf("%s %s\n", arg[7:], strings.Join(addrs, ","))
		case strings.HasPrefix(arg, "reverse:"):
			names, err := net.LookupAddr(arg[8:])
			if err != nil {
				fmt.Fprintln(os.Stderr, "reverse:", err)
				os.Exit(1)
			}
			fmt.Printf("%s %s\n", arg[8:], strings.Join(names, ","))
		default:
			resp, err := client.Get(arg)
			if err != nil {
				fmt.Fprintln(os.Stderr, "get:", err)
				os.Exit(1)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				fmt.Fprintln(os.Stderr, "read:", err)
				os.Exit(1)
			}
			os.Stdout.Write(body)
		}
	}
}
"#;

/// sockd connected the workstation to the NAME `name`:`port` at least once.
fn assert_session_by_name(sockd: &Daemon, name: &str, port: u16) {
    let (client, dst) = (format!("client={INSIDE_ADDR}:"), format!("dst={name}:{port} "));
    sockd.wait_line(&["connected:", &client, "cmd=connect", &dst], STARTUP);
    dns::assert_no_fake_destination(sockd);
}

/// The end of a fetch from `www.example.test:80` by NAME under the supervisor: its log says
/// it sent the name to sockd, sockd connected to the name, an HTTP server at one of the name's
/// addresses served it from the firewall, only the firewall asked the outside name server, and
/// nothing else left the workstation (`what` names the case).
fn assert_www_by_name(
    ran: &Ran,
    sockd: &Daemon,
    www: &[Server; 2],
    outside: &Dnsmasq,
    leaks: &LeakCounter,
    what: &str,
) {
    assert!(
        ran.stderr.contains(&format!("connect {WWW}:80 via {SERVER} (socks5): ok")),
        "the supervisor must send the name to sockd\n{}",
        ran.describe()
    );
    assert_session_by_name(sockd, WWW, 80);
    dns::assert_relayed(www);
    outside.assert_asked_only_by_firewall();
    leaks.assert_only_sockd(what);
}

#[test]
fn go_http_get_by_name() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-names-go")
    else {
        return;
    };
    let program = go_build(&lab, "client", GO_CLIENT);
    let www = dns::http_dual(&lab, 80);
    let ran = lab
        .client(&program)
        .args([format!("http://{WWW}/bytes/200000"), format!("lookup:{WWW}")])
        .socksify(&["-vv", "-s", SERVER])
        .run();
    ran.assert_success();
    let body = http_body("/bytes/200000");
    assert!(
        ran.stdout.starts_with(&body),
        "the Go client got {} bytes, not the 200000-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    // The name got a fake address (198.18.0.0/15), the one the connect sent as a name.
    let lookup = String::from_utf8_lossy(&ran.stdout[body.len()..]).into_owned();
    let fake: IpAddr = lookup
        .strip_prefix(&format!("{WWW} "))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("lookup printed {lookup:?}\n{}", ran.describe()));
    assert!(
        matches!(fake, IpAddr::V4(v4) if v4.octets()[0] == 198 && v4.octets()[1] & 0xfe == 18),
        "{WWW} must get one fake IPv4 address, not {fake}"
    );
    assert_www_by_name(
        &ran,
        &sockd,
        &www,
        &outside,
        &leaks,
        "a static Go HTTP client by name under the supervisor",
    );
}

#[test]
fn busybox_wget_by_name() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-names-wget")
    else {
        return;
    };
    let busybox = paths::require("busybox", "busybox-static");
    let www = dns::http_dual(&lab, 80);
    let ran = lab
        .client(busybox)
        .args(["wget", "-q", "-O", "-", &format!("http://{WWW}/bytes/54321")])
        .socksify(&["-vv", "-s", SERVER])
        .run();
    ran.assert_success();
    assert!(
        ran.stdout == http_body("/bytes/54321"),
        "busybox wget got {} bytes, not the 54321-byte body\n{}",
        ran.stdout.len(),
        ran.describe()
    );
    assert_www_by_name(
        &ran,
        &sockd,
        &www,
        &outside,
        &leaks,
        "busybox-static wget by name under the supervisor",
    );
}

#[test]
fn direct_domain_resolves_on_the_lan_and_reverse_of_a_fake_names_it() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-names-direct")
    else {
        return;
    };
    let program = go_build(&lab, "client", GO_CLIENT);
    let intranet_ip = std::net::Ipv4Addr::new(192, 0, 2, 80);
    lab.net.add_address(Ns::Fw, Ns::Inside, &format!("{intranet_ip}/24"));
    let intranet = servers::http(lab.ns(Ns::Fw), SocketAddr::from((intranet_ip, 80)));
    let lan = dns::inside_lan_dns(
        &lab,
        &[
            format!("--host-record=intranet.corp.example,{intranet_ip}"),
            "--local=/corp.example/".to_owned(),
        ],
    );
    let www = dns::http_dual(&lab, 80);
    let conf = lab.write(
        "socks.conf",
        format!("direct .corp.example\ndirect 192.0.2.0/24\nsockd @={SERVER} 0.0.0.0/0\n"),
    );
    let ran = lab
        .client(&program)
        .args([
            "http://intranet.corp.example/corp".to_owned(),
            format!("http://{WWW}/outside"),
            "lookup:intranet.corp.example".to_owned(),
            format!("lookup:{WWW}"),
        ])
        .socksify(&["-vv", "-c", &conf.display().to_string()])
        .run();
    ran.assert_success();
    let text = ran.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() == 4
            && lines[0] == "hello from outside: /corp"
            && lines[1] == "hello from outside: /outside"
            && lines[2] == format!("intranet.corp.example {intranet_ip}"),
        "{text:?}\n{}",
        ran.describe()
    );
    // The fake address of the proxied name names it again (PTR from the supervisor).
    let fake = lines[3].strip_prefix(&format!("{WWW} ")).expect("lookup line").to_owned();
    let reverse = lab
        .client(&program)
        .args([format!("lookup:{WWW}"), format!("reverse:{fake}")])
        .socksify(&["-vv", "-c", &conf.display().to_string()])
        .run();
    reverse.assert_success();
    assert_eq!(
        reverse.stdout_text(),
        format!("{WWW} {fake}\n{fake} {WWW}.\n"),
        "{}",
        reverse.describe()
    );
    let exchanges = intranet.wait_done(1, STARTUP);
    assert!(
        exchanges.iter().all(|e| e.peer.ip() == IpAddr::V4(INSIDE_ADDR)),
        "the intranet host must be reached directly: {exchanges:?}"
    );
    assert_session_by_name(&sockd, WWW, 80);
    dns::assert_relayed(&www);
    assert!(
        !lan.queries_for("intranet.corp.example").is_empty(),
        "the intranet name must be resolved by the LAN's name server\n{}",
        lan.daemon.log()
    );
    assert!(
        lan.queries_for(WWW).is_empty(),
        "{WWW} must not be looked up on the LAN:\n{}",
        lan.daemon.log()
    );
    outside.assert_asked_only_by_firewall();
    let dns = format!("{DEAD_DNS_ADDR} . udp . 53");
    leaks.assert_only_sockd_and(
        "a direct domain resolved on the LAN under the supervisor",
        &[dns.clone(), format!("{DEAD_DNS_ADDR} . tcp . 53"), format!("{intranet_ip} . tcp . 80")],
    );
    let (v4, _) = leaks.leaked_destinations();
    assert!(v4.contains(&dns), "the intranet lookup must have gone to {dns}: {v4:?}");
}

/// A resolver that sends from an unconnected UDP socket (musl's way: `sendto`, or `sendmsg`
/// with an address) gets its answer from the supervisor: a fake address, and no packet leaves.
#[test]
fn unconnected_queries_are_answered_and_never_leave() {
    let Some((lab, leaks, outside, _sockd)) = dns::supervised_names_lab("supervised-names-sendto")
    else {
        return;
    };
    let Some(program) = build_static(lab.name(), lab.dir.path(), "dnsquery") else { return };
    for mode in ["sendto", "sendmsg"] {
        let ran = lab
            .client(&program)
            .args([mode, &DEAD_DNS_ADDR.to_string(), WWW])
            .socksify(&["-vv", "-s", SERVER])
            .run();
        ran.assert_success();
        let text = ran.stdout_text();
        assert!(
            text.starts_with("rcode=0\nA=198.18.") || text.starts_with("rcode=0\nA=198.19."),
            "{mode}: the query must get a fake address from the supervisor: {text:?}\n{}",
            ran.describe()
        );
        assert!(
            ran.stderr.contains(&format!("{mode} {DEAD_DNS_ADDR}:53: name service (UDP)")),
            "{mode}: the supervisor must say it answered\n{}",
            ran.describe()
        );
    }
    assert!(outside.all_queries().is_empty(), "nobody asked the outside name server");
    let counts = leaks.counts();
    let (v4, v6) = leaks.leaked_destinations();
    assert!(
        counts.leaked == 0 && v4.is_empty() && v6.is_empty(),
        "no query may leave the workstation: {counts:?} {v4:?} {v6:?}\n{}",
        leaks.table()
    );
}

/// Go with `options use-vc` asks over TCP: the proxied name gets its fake address from the
/// supervisor's TCP listener, and a direct name is forwarded over TCP to the LAN's server.
#[test]
fn go_lookups_over_tcp() {
    let Some((lab, leaks, outside, sockd)) = dns::supervised_names_lab("supervised-names-tcp")
    else {
        return;
    };
    let program = go_build(&lab, "client", GO_CLIENT);
    lab.net.write_etc(
        Ns::Inside,
        "resolv.conf",
        &format!("nameserver {DEAD_DNS_ADDR}\noptions use-vc timeout:2 attempts:1\n"),
    );
    let intranet_ip = std::net::Ipv4Addr::new(192, 0, 2, 80);
    let lan = dns::inside_lan_dns(
        &lab,
        &[
            format!("--host-record=intranet.corp.example,{intranet_ip}"),
            "--local=/corp.example/".to_owned(),
        ],
    );
    let www = dns::http_dual(&lab, 80);
    let conf = lab.write(
        "socks.conf",
        format!("direct .corp.example\ndirect 192.0.2.0/24\nsockd @={SERVER} 0.0.0.0/0\n"),
    );
    let ran = lab
        .client(&program)
        .args([format!("http://{WWW}/tcp"), "lookup:intranet.corp.example".to_owned()])
        .socksify(&["-vv", "-c", &conf.display().to_string()])
        .run();
    ran.assert_success();
    assert_eq!(
        ran.stdout_text(),
        format!("hello from outside: /tcp\nintranet.corp.example {intranet_ip}\n"),
        "{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains(&format!("connect {DEAD_DNS_ADDR}:53: name service (TCP)")),
        "the lookups must have gone over TCP to the supervisor\n{}",
        ran.describe()
    );
    assert_session_by_name(&sockd, WWW, 80);
    dns::assert_relayed(&www);
    assert!(!lan.queries_for("intranet.corp.example").is_empty(), "{}", lan.daemon.log());
    assert!(lan.queries_for(WWW).is_empty(), "{WWW} must not reach the LAN");
    outside.assert_asked_only_by_firewall();
    let tcp = format!("{DEAD_DNS_ADDR} . tcp . 53");
    leaks.assert_only_sockd_and(
        "Go lookups over TCP under the supervisor",
        std::slice::from_ref(&tcp),
    );
    let (v4, _) = leaks.leaked_destinations();
    assert!(v4.contains(&tcp), "the intranet lookup must have gone to {tcp}: {v4:?}");
}

/// A fake address the supervisor never handed out (one kept from another run, say) means no
/// name: the connect fails with EHOSTUNREACH, as under the library, and nothing is sent.
#[test]
fn a_fake_address_never_handed_out_fails() {
    let Some(lab) = supervised_lab("supervised-names-unknown") else { return };
    let busybox = paths::require("busybox", "busybox-static");
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let leaks = LeakCounter::install(&lab);
    let ran = lab
        .client(busybox)
        .args(["wget", "-q", "-O", "-", "http://198.18.0.77/"])
        .socksify(&["-v", "-s", SERVER])
        .run();
    assert!(
        !ran.success()
            && ran
                .stderr
                .contains("198.18.0.77:80: a fake address this process tree never handed out")
            && ran.stderr.contains("No route to host"),
        "the connect must fail with EHOSTUNREACH and say why\n{}",
        ran.describe()
    );
    let counts = leaks.counts();
    assert!(
        counts.leaked == 0 && counts.to_sockd == 0,
        "nothing may leave for an unknown fake address: {counts:?}\n{}",
        leaks.table()
    );
}
