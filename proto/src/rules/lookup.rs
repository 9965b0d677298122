//! The [`Lookup`] trait through which rule parsing resolves host names, service names and user
//! files, plus parsers for `/etc/hosts` ([`HostsFile`]) and `/etc/services` ([`Services`]) text and
//! an in-memory [`StaticLookup`] built from them.
//!
//! This is the only way the rule parser reaches the outside world. Nothing here opens a file or
//! asks DNS: the daemon implements [`Lookup`] with real resolvers and file reads; tests and
//! `--check` style tools can use [`StaticLookup`].

use std::collections::HashMap;
use std::net::IpAddr;

/// Name resolution and file access for the rule parser.
pub trait Lookup {
    /// Resolve a host name to its addresses (both families allowed). Err = human reason.
    fn host(&self, name: &str) -> Result<Vec<IpAddr>, String>;
    /// Port number of a TCP service name (as in /etc/services), None if unknown.
    fn service(&self, name: &str) -> Option<u16>;
    /// Contents of a user-list file named in `*=/path`. Err = human reason.
    fn read_file(&self, path: &str) -> Result<String, String>;
}

/// Strips a `#` comment.
fn uncomment(line: &str) -> &str {
    match line.find('#') {
        Some(at) => &line[..at],
        None => line,
    }
}

/// Host names are compared without case and without one trailing dot.
fn host_key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The contents of an `/etc/hosts` style file: `ADDRESS CANONICAL-NAME [ALIAS…]`, `#` comments.
///
/// Lines whose address does not parse are skipped, as the C library does. A name may appear on
/// several lines; [`HostsFile::lookup`] returns all its addresses in file order, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsFile {
    by_name: HashMap<String, Vec<IpAddr>>,
}

impl HostsFile {
    /// Parses hosts-file text. Never fails: malformed lines are ignored.
    pub fn parse(text: &str) -> HostsFile {
        let mut by_name: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let mut fields = uncomment(line).split_ascii_whitespace();
            let Some(addr) = fields.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
                continue;
            };
            for name in fields {
                let addrs = by_name.entry(host_key(name)).or_default();
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
        }
        HostsFile { by_name }
    }

    /// All addresses of `name` (canonical name or alias, any case), in file order; empty if none.
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        self.by_name.get(&host_key(name)).cloned().unwrap_or_default()
    }

    /// Whether `name` (canonical name or alias, any case, one trailing dot ignored) is in the
    /// file. Allocates nothing: a caller that must not touch the heap (a signal handler's name
    /// lookup in the preload library) can ask.
    pub fn contains(&self, name: &str) -> bool {
        let bare = name.strip_suffix('.').unwrap_or(name);
        let mut buf = [0u8; 255];
        let Some(key) = buf.get_mut(..bare.len()) else {
            // Longer than any DNS name: compared one by one rather than copied.
            return self.by_name.keys().any(|k| k.eq_ignore_ascii_case(bare));
        };
        for (d, s) in key.iter_mut().zip(bare.bytes()) {
            *d = s.to_ascii_lowercase();
        }
        // ASCII lower-casing keeps UTF-8 valid.
        std::str::from_utf8(key).is_ok_and(|key| self.by_name.contains_key(key))
    }
}

/// The TCP entries of an `/etc/services` style file: `NAME PORT/PROTO [ALIAS…]`, `#` comments.
///
/// Only `/tcp` entries are kept. Like `getservbyname`, the first entry for a name wins and names
/// are compared exactly (case-sensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    tcp: HashMap<String, u16>,
}

impl Services {
    /// Parses services-file text. Never fails: malformed lines are ignored.
    pub fn parse(text: &str) -> Services {
        let mut tcp = HashMap::new();
        for line in text.lines() {
            let mut fields = uncomment(line).split_ascii_whitespace();
            let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((port, proto)) = port_proto.split_once('/') else {
                continue;
            };
            if !proto.eq_ignore_ascii_case("tcp") {
                continue;
            }
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            for n in std::iter::once(name).chain(fields) {
                tcp.entry(n.to_owned()).or_insert(port);
            }
        }
        Services { tcp }
    }

    /// The TCP port of a service name or alias.
    pub fn tcp_port(&self, name: &str) -> Option<u16> {
        self.tcp.get(name).copied()
    }
}

/// A [`Lookup`] answered from memory: a hosts table, a services table and named file contents.
///
/// Host names are also accepted when they are numeric addresses (the parser never asks for those,
/// but callers resolving a request target might).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticLookup {
    /// Host names.
    pub hosts: HostsFile,
    /// TCP service names.
    pub services: Services,
    /// File path -> contents, for `*=/path` user lists.
    pub files: HashMap<String, String>,
}

impl StaticLookup {
    /// A lookup from hosts-file and services-file text, with no files.
    pub fn new(hosts: &str, services: &str) -> StaticLookup {
        StaticLookup {
            hosts: HostsFile::parse(hosts),
            services: Services::parse(services),
            files: HashMap::new(),
        }
    }

    /// Adds a file that `*=/path` may name.
    pub fn with_file(mut self, path: &str, contents: &str) -> StaticLookup {
        self.files.insert(path.to_owned(), contents.to_owned());
        self
    }
}

impl Lookup for StaticLookup {
    fn host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let found = self.hosts.lookup(name);
        if found.is_empty() {
            Err("not in the hosts table".to_owned())
        } else {
            Ok(found)
        }
    }

    fn service(&self, name: &str) -> Option<u16> {
        self.services.tcp_port(name)
    }

    fn read_file(&self, path: &str) -> Result<String, String> {
        self.files.get(path).cloned().ok_or_else(|| "No such file or directory".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
# comment
127.0.0.1\tlocalhost
192.0.2.7   lloyd.mips.com lloyd   # trailing comment
198.51.100.1 sgi.com
198.51.100.2 SGI.com www.sgi.com
2001:db8::1 sgi.com
not-an-address bogus
198.51.100.1 sgi.com
";

    #[test]
    fn hosts_names_aliases_case_and_order() {
        let h = HostsFile::parse(HOSTS);
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(h.lookup("lloyd"), vec![v4("192.0.2.7")]);
        assert_eq!(h.lookup("LLOYD.mips.com."), vec![v4("192.0.2.7")]);
        assert_eq!(
            h.lookup("sgi.com"),
            vec![v4("198.51.100.1"), v4("198.51.100.2"), v4("2001:db8::1")]
        );
        assert_eq!(h.lookup("www.sgi.com"), vec![v4("198.51.100.2")]);
        assert!(h.lookup("bogus").is_empty());
        assert!(h.lookup("comment").is_empty());
        assert!(h.lookup("nowhere").is_empty());
        for name in ["lloyd", "LLOYD.mips.com.", "www.sgi.com", "sgi.com"] {
            assert!(h.contains(name), "{name}");
        }
        for name in ["bogus", "comment", "nowhere", "", ".", &"x".repeat(300)] {
            assert!(!h.contains(name), "{name}");
        }
    }

    #[test]
    fn services_tcp_only_aliases_first_wins() {
        let s = Services::parse(
            "# x\nwhois 43/tcp nicname\nfinger\t79/tcp\nsyslog 514/udp\n\
             domain 53/tcp\ndomain 53/udp\nbad 99999/tcp\nhttp 80/tcp www # web\nhttp 8080/tcp\n\
             junk\n",
        );
        assert_eq!(s.tcp_port("whois"), Some(43));
        assert_eq!(s.tcp_port("nicname"), Some(43));
        assert_eq!(s.tcp_port("finger"), Some(79));
        assert_eq!(s.tcp_port("syslog"), None);
        assert_eq!(s.tcp_port("domain"), Some(53));
        assert_eq!(s.tcp_port("bad"), None);
        assert_eq!(s.tcp_port("http"), Some(80));
        assert_eq!(s.tcp_port("www"), Some(80));
        assert_eq!(s.tcp_port("web"), None);
        assert_eq!(s.tcp_port("FINGER"), None);
    }

    #[test]
    fn static_lookup() {
        let l = StaticLookup::new(HOSTS, "finger 79/tcp").with_file("/u", "a b");
        assert_eq!(l.host("lloyd").unwrap().len(), 1);
        assert_eq!(l.host("10.1.2.3").unwrap(), vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert!(l.host("nowhere").is_err());
        assert_eq!(l.service("finger"), Some(79));
        assert_eq!(l.read_file("/u").unwrap(), "a b");
        assert!(l.read_file("/v").is_err());
    }
}
