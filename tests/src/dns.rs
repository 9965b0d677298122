//! Name service for the tests of names resolved on the far side: Debian's `dnsmasq` run in the
//! foreground as a plain authoritative server for test names only, with its own command line
//! and no configuration read from the host (`--conf-file=/dev/null --no-resolv --no-hosts`:
//! no upstream servers, no /etc/hosts, no /etc/resolv.conf), logging every query on stderr so
//! a test can tell which names were asked for.
//!
//! [`outside_dns`] builds the usual picture: the DNS server sits on the outside host
//! (198.51.100.2 and 2001:db8:100::2, an IPv6 address this module adds to the `fw`–`outside`
//! link along with the firewall's 2001:db8:100::1), only the firewall can reach it, and the
//! firewall's resolver points at it (`/etc/netns/<fw>/resolv.conf`, removed with the topology).
//! The workstation keeps its resolver that answers nothing (see `netns`). It serves:
//!
//! | name | records |
//! |---|---|
//! | `www.example.test` | A 198.51.100.2, AAAA 2001:db8:100::2 |
//! | `v6only.example.test` | AAAA 2001:db8:100::2 only |
//! | `*.many.example.test` | A 198.51.100.2 (any name under it) |
//! | anything else under `example.test` | NXDOMAIN |
//!
//! Not here: the clients that look names up (the tests), the leak check (`leaks`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::build::supervised_lab;
use crate::{
    paths, servers, Daemon, Lab, LeakCounter, Ns, Server, FW_OUTSIDE_ADDR, OUTSIDE_ADDR,
    PERMIT_INSIDE, STARTUP,
};

/// The outside host's IPv6 address (on the `fw`–`outside` link).
pub const OUTSIDE_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
/// The firewall's IPv6 address on the outside link (where relayed IPv6 connections come from).
pub const FW_OUTSIDE_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// A name with both an A and an AAAA record (the outside host).
pub const WWW: &str = "www.example.test";
/// A name with only an AAAA record (the outside host).
pub const V6ONLY: &str = "v6only.example.test";
/// Every name under this domain has an A record for the outside host.
pub const MANY: &str = "many.example.test";

/// A running dnsmasq; killed on drop.
#[derive(Debug)]
pub struct Dnsmasq {
    /// The daemon, its stderr (one line per query) captured.
    pub daemon: Daemon,
    /// Where it listens (port 53).
    pub addrs: Vec<IpAddr>,
}

impl Dnsmasq {
    /// Starts dnsmasq in `ns` answering on `addrs` (port 53, UDP and TCP; the addresses must
    /// already be on the namespace's interfaces), with `records` as extra options
    /// (`--host-record=…`, `--address=/domain/addr`, `--local=/domain/`). Returns once it
    /// listens.
    pub fn start(lab: &Lab, ns: Ns, addrs: &[IpAddr], records: &[String]) -> Dnsmasq {
        let dnsmasq = paths::require("dnsmasq", "dnsmasq-base");
        let mut args: Vec<String> = [
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-queries",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--port=53",
            "--cache-size=0",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        args.extend(addrs.iter().map(|a| format!("--listen-address={a}")));
        args.extend(records.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::spawn(lab.ns(ns), &format!("dnsmasq:{}", lab.ns(ns)), &dnsmasq, &args);
        // Its TCP listeners, read from the kernel's table (IPv4) without asking anything.
        for addr in addrs {
            if let IpAddr::V4(v4) = addr {
                let tcp = SocketAddr::from((*v4, 53));
                assert!(
                    lab.net.wait_listener(ns, tcp, STARTUP),
                    "dnsmasq did not listen on {tcp} within {STARTUP:?}; its log:\n{}",
                    daemon.log()
                );
            }
        }
        daemon.wait_line(&["started, version"], STARTUP);
        Dnsmasq { daemon, addrs: addrs.to_vec() }
    }

    /// The `query[TYPE] NAME from …` lines it logged for `name` so far (any type).
    pub fn queries_for(&self, name: &str) -> Vec<String> {
        let needle = format!("] {name} from ");
        self.daemon
            .log()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// Every query line it logged so far.
    pub fn all_queries(&self) -> Vec<String> {
        self.daemon.log().lines().filter(|l| l.contains("query[")).map(str::to_owned).collect()
    }

    /// Asserts it was asked only by the firewall (its IPv4 or IPv6 outside address): nothing
    /// from the workstation reached it.
    pub fn assert_asked_only_by_firewall(&self) {
        for line in self.all_queries() {
            assert!(
                line.ends_with(&format!("from {FW_OUTSIDE_ADDR}"))
                    || line.ends_with(&format!("from {FW_OUTSIDE_ADDR6}")),
                "the outside DNS must only hear from the firewall: {line}"
            );
        }
    }
}

/// Asserts every connection the servers accepted came from the firewall (its IPv4 or IPv6
/// outside address), and that there was at least one.
pub fn assert_relayed<'a>(servers: impl IntoIterator<Item = &'a Server>) {
    let peers: Vec<SocketAddr> = servers.into_iter().flat_map(|s| s.accepted()).collect();
    assert!(!peers.is_empty(), "the destination servers saw no connection");
    for peer in peers {
        assert!(
            peer.ip() == IpAddr::V4(FW_OUTSIDE_ADDR) || peer.ip() == IpAddr::V6(FW_OUTSIDE_ADDR6),
            "a destination was reached from {peer}, not from the firewall"
        );
    }
}

/// Asserts sockd was never asked for a fake address (the default ranges): the library or the
/// supervisor always sent the name.
pub fn assert_no_fake_destination(sockd: &Daemon) {
    let log = sockd.log();
    for fake in ["dst=198.18.", "dst=198.19.", "dst=[fd73:6f63:6b73:"] {
        assert!(!log.contains(fake), "a fake address reached sockd ({fake}…):\n{log}");
    }
}

/// The reverse-lookup name of `ip` (`2.100.51.198.in-addr.arpa`, 32 nibbles under `ip6.arpa`),
/// as dnsmasq logs it: a question about a real address, which the library never answers itself
/// (it answers names resolved on the far side, own_resolvers.rs), so a query for it goes to the
/// name server the program asked.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels: Vec<String> = Vec::with_capacity(33);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.push("ip6.arpa".to_owned());
            labels.join(".")
        }
    }
}

/// The outside name server of the module documentation: IPv6 on the `fw`–`outside` link,
/// dnsmasq on the outside host, and `fw`'s resolv.conf naming it. Call it before starting
/// sockd (a program reads its namespace's resolv.conf when `ip netns exec` starts it).
pub fn outside_dns(lab: &Lab) -> Dnsmasq {
    lab.net.add_address(Ns::Fw, Ns::Outside, &format!("{FW_OUTSIDE_ADDR6}/64"));
    lab.net.add_address(Ns::Outside, Ns::Fw, &format!("{OUTSIDE_ADDR6}/64"));
    let records = vec![
        format!("--host-record={WWW},{OUTSIDE_ADDR},{OUTSIDE_ADDR6}"),
        format!("--host-record={V6ONLY},{OUTSIDE_ADDR6}"),
        format!("--address=/{MANY}/{OUTSIDE_ADDR}"),
        "--local=/example.test/".to_owned(),
    ];
    let dns = Dnsmasq::start(
        lab,
        Ns::Outside,
        &[IpAddr::V4(OUTSIDE_ADDR), IpAddr::V6(OUTSIDE_ADDR6)],
        &records,
    );
    lab.net.write_etc(
        Ns::Fw,
        "resolv.conf",
        &format!(
            "# socks-e2e: the firewall resolves names with the outside host's dnsmasq\n\
             nameserver {OUTSIDE_ADDR}\noptions timeout:2 attempts:2\n"
        ),
    );
    dns
}

/// The inside network's own name server, for names a `direct` domain line keeps local: dnsmasq
/// on [`crate::DEAD_DNS_ADDR`] (192.0.2.53, the address the workstation's resolv.conf names),
/// added to the firewall's inside interface — another host on the workstation's LAN, so its
/// queries are packets the leak check sees. `records` as for [`Dnsmasq::start`].
pub fn inside_lan_dns(lab: &Lab, records: &[String]) -> Dnsmasq {
    let addr: Ipv4Addr = crate::DEAD_DNS_ADDR;
    lab.net.add_address(Ns::Fw, Ns::Inside, &format!("{addr}/24"));
    Dnsmasq::start(lab, Ns::Fw, &[IpAddr::V4(addr)], records)
}

/// HTTP servers on the outside host at 198.51.100.2:`port` and [2001:db8:100::2]:`port`, the
/// two addresses of `www.example.test` (sockd may pick either).
pub fn http_dual(lab: &Lab, port: u16) -> [Server; 2] {
    let ns = lab.ns(Ns::Outside);
    [
        servers::http(ns, SocketAddr::from((OUTSIDE_ADDR, port))),
        servers::http(ns, SocketAddr::from((OUTSIDE_ADDR6, port))),
    ]
}

/// A lab with the leak counters (installed first, so they see everything), the outside name
/// service and sockd permitting the inside network (started after the firewall's resolv.conf
/// is written); `None` when skipped. Drop order: sockd, dnsmasq, counters, then the lab.
pub fn names_lab(name: &str) -> Option<(Lab, LeakCounter, Dnsmasq, Daemon)> {
    Lab::new(name).map(with_names)
}

/// [`names_lab`] for programs under the supervisor (`build::supervised_lab`).
pub fn supervised_names_lab(name: &str) -> Option<(Lab, LeakCounter, Dnsmasq, Daemon)> {
    supervised_lab(name).map(with_names)
}

fn with_names(lab: Lab) -> (Lab, LeakCounter, Dnsmasq, Daemon) {
    let leaks = LeakCounter::install(&lab);
    let dns = outside_dns(&lab);
    let sockd = lab.sockd(PERMIT_INSIDE);
    (lab, leaks, dns, sockd)
}
