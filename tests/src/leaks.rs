//! The leak check: nftables counters in the `inside` namespace's output path. Every packet the
//! workstation sends, except on loopback, is counted either as "to sockd" (TCP to
//! 192.0.2.1:1080, and UDP to any port of 192.0.2.1: the relay port of a UDP ASSOCIATE is
//! picked by sockd per association) or as "leaked" (anything else: a direct connection
//! attempt, a DNS query to the resolv.conf server, other UDP, ICMP…). The UDP part of "to
//! sockd" is also counted on its own, so a UDP test can tell its datagrams went to the relay.
//! An ICMP destination-unreachable to sockd's address counts as to sockd too: it is the
//! kernel's answer to a datagram the relay sent after the program closed its socket (a reply
//! arriving late), carries nothing of the program's, and goes nowhere but the firewall.
//! Leaked IPv4 packets also land in a set of destination . protocol . port, so a failure says
//! what leaked.
//!
//! IPv6 link housekeeping the kernel does by itself when the veth comes up (router and
//! neighbour solicitations, MLD reports, from `::` or a link-local address) is counted apart
//! and not held against anyone: it never leaves the link and no program asked for it. ARP is
//! not IP and not counted either.
//!
//! A test where the workstation legitimately talks to something besides sockd (its LAN's name
//! server, an intranet host reached directly) names those destinations:
//! [`LeakCounter::assert_only_sockd_and`] then checks every leaked destination against them.
//!
//! The table lives in the namespace and goes with it.
//!
//! Not here: the programs whose traffic is counted (the tests).

use std::process::{Command, Stdio};

use crate::{paths, Lab, Ns, FW_INSIDE_ADDR, SOCKS_PORT};

const TABLE: &str = "socks_e2e_leaks";

/// Counters installed in a lab's `inside` namespace.
#[derive(Debug)]
pub struct LeakCounter {
    ns: String,
    nft: std::path::PathBuf,
}

/// Packet counts so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Packets to sockd: TCP to its address and port, UDP to any port of its address.
    pub to_sockd: u64,
    /// The UDP part of `to_sockd` (datagrams to a UDP ASSOCIATE relay).
    pub udp_to_sockd: u64,
    /// Every other packet that left the namespace.
    pub leaked: u64,
}

impl LeakCounter {
    /// Installs the counters in `lab`'s `inside` namespace (before the clients run).
    pub fn install(lab: &Lab) -> LeakCounter {
        let nft = paths::require("nft", "nftables");
        let ns = lab.ns(Ns::Inside).to_owned();
        let rules = format!(
            "# socks-e2e leak check: what leaves the workstation, other than to sockd\n\
             table inet {TABLE} {{\n\
             \x20   counter to_sockd {{ }}\n\
             \x20   counter udp_to_sockd {{ }}\n\
             \x20   counter leaked {{ }}\n\
             \x20   counter ipv6_housekeeping {{ }}\n\
             \x20   set leaked4 {{ type ipv4_addr . inet_proto . inet_service; flags dynamic; size 4096; }}\n\
             \x20   set leaked6 {{ type ipv6_addr . inet_proto; flags dynamic; size 4096; }}\n\
             \x20   chain output {{\n\
             \x20       type filter hook output priority filter; policy accept;\n\
             \x20       oifname \"lo\" accept\n\
             \x20       ip daddr {FW_INSIDE_ADDR} tcp dport {SOCKS_PORT} counter name \"to_sockd\" accept\n\
             \x20       ip daddr {FW_INSIDE_ADDR} meta l4proto udp counter name \"udp_to_sockd\" \
             counter name \"to_sockd\" accept\n\
             \x20       ip daddr {FW_INSIDE_ADDR} icmp type destination-unreachable \
             counter name \"to_sockd\" accept\n\
             \x20       ip6 saddr {{ ::, fe80::/10 }} icmpv6 type {{ nd-router-solicit, nd-neighbor-solicit, \
             nd-neighbor-advert, mld-listener-report, mld2-listener-report }} \
             counter name \"ipv6_housekeeping\" accept\n\
             \x20       meta nfproto ipv4 add @leaked4 {{ ip daddr . meta l4proto . th dport }}\n\
             \x20       meta nfproto ipv6 add @leaked6 {{ ip6 daddr . meta l4proto }}\n\
             \x20       counter name \"leaked\"\n\
             \x20   }}\n\
             }}\n"
        );
        let file = lab.write("leaks.nft", rules);
        let counter = LeakCounter { ns, nft };
        let out = counter.nft(&["-f", &file.display().to_string()]);
        assert!(out.0, "cannot install the leak counters in {}: {}", counter.ns, out.1);
        counter
    }

    /// Runs `nft ARGS` in the namespace: (success, stdout + stderr).
    fn nft(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.nft)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run nft in {}: {e}", self.ns));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn packets(&self, counter: &str) -> u64 {
        let (ok, text) = self.nft(&["list", "counter", "inet", TABLE, counter]);
        assert!(ok, "nft list counter {counter}: {text}");
        // `packets N bytes M`
        let mut words = text.split_whitespace();
        words
            .by_ref()
            .find(|w| *w == "packets")
            .and_then(|_| words.next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in: {text}"))
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            to_sockd: self.packets("to_sockd"),
            udp_to_sockd: self.packets("udp_to_sockd"),
            leaked: self.packets("leaked"),
        }
    }

    /// The whole table with its counters and the sets of leaked destinations.
    pub fn table(&self) -> String {
        self.nft(&["list", "table", "inet", TABLE]).1
    }

    /// The distinct destinations of the leaked IPv4 packets so far, as `ADDR . PROTO . PORT`
    /// (`192.0.2.53 . udp . 53`), and of the leaked IPv6 packets, as `ADDR . PROTO`.
    pub fn leaked_destinations(&self) -> (Vec<String>, Vec<String>) {
        let set = |name: &str| {
            let (ok, text) = self.nft(&["list", "set", "inet", TABLE, name]);
            assert!(ok, "nft list set {name}: {text}");
            set_elements(&text)
        };
        (set("leaked4"), set("leaked6"))
    }

    /// Asserts that packets went to sockd, and that whatever else left the workstation went to
    /// one of `allowed` (`ADDR . PROTO . PORT` as nft prints it, e.g. `192.0.2.53 . udp . 53`),
    /// over IPv4. Nothing at all may leave over IPv6.
    pub fn assert_only_sockd_and(&self, what: &str, allowed: &[String]) -> Counts {
        let counts = self.counts();
        let (v4, v6) = self.leaked_destinations();
        let unexpected: Vec<&String> = v4.iter().filter(|d| !allowed.contains(d)).collect();
        assert!(
            counts.to_sockd > 0 && unexpected.is_empty() && v6.is_empty(),
            "{what}: the workstation must send packets only to sockd at \
             {FW_INSIDE_ADDR} (TCP {SOCKS_PORT}, UDP any port) and to {allowed:?}; unexpected: \
             {unexpected:?} (IPv6: {v6:?}); counted {counts:?}:\n{}",
            self.table()
        );
        eprintln!("leak check: {what}: {counts:?}, allowed destinations seen: {v4:?}");
        counts
    }

    /// Asserts that packets went to sockd and nothing else left the workstation.
    pub fn assert_only_sockd(&self, what: &str) -> Counts {
        let counts = self.counts();
        assert!(
            counts.to_sockd > 0 && counts.leaked == 0,
            "{what}: the workstation must send packets only to sockd at \
             {FW_INSIDE_ADDR} (TCP {SOCKS_PORT}, UDP any port); counted {counts:?}:\n{}",
            self.table()
        );
        eprintln!("leak check: {what}: {counts:?}");
        counts
    }

    /// Asserts that datagrams went to sockd's address (a UDP ASSOCIATE relay), and, as
    /// [`LeakCounter::assert_only_sockd`], that nothing but traffic to sockd left the
    /// workstation.
    pub fn assert_only_sockd_udp(&self, what: &str) -> Counts {
        let counts = self.assert_only_sockd(what);
        assert!(
            counts.udp_to_sockd > 0,
            "{what}: datagrams must have gone to sockd's relay at {FW_INSIDE_ADDR}; counted \
             {counts:?}:\n{}",
            self.table()
        );
        counts
    }
}

/// The elements of the one set in `nft list set` output: what stands between `elements = {`
/// and the closing `}`, split at commas.
fn set_elements(text: &str) -> Vec<String> {
    let Some(start) = text.find("elements = {") else { return Vec::new() };
    let rest = &text[start + "elements = {".len()..];
    let body = &rest[..rest.find('}').unwrap_or(rest.len())];
    body.split(',')
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|e| !e.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::set_elements;

    #[test]
    fn parses_set_elements() {
        let text =
            "table inet t {\n\tset leaked4 {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\
                    \t\tsize 4096\n\t\tflags dynamic\n\t\telements = { 192.0.2.53 . udp . 53,\n\
                    \t\t\t     192.0.2.80 . tcp . 80 }\n\t}\n}\n";
        assert_eq!(set_elements(text), ["192.0.2.53 . udp . 53", "192.0.2.80 . tcp . 80"]);
        assert!(set_elements("set leaked6 {\n type ipv6_addr . inet_proto\n}\n").is_empty());
    }
}
