//! Loading `sockd.conf`: reads the file and resolves the host and service names in it through
//! the system (or a `--hosts` file first, then the system resolver; services from
//! /etc/services). The rule language itself is socks-proto's `rules`.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

use socks_proto::rules::{HostsFile, Lookup, RuleSet, Services};

/// Where rule-file names are looked up.
#[derive(Debug, Default)]
pub struct SystemLookup {
    hosts: Option<HostsFile>,
    services: Option<Services>,
}

impl SystemLookup {
    /// Reads /etc/services (if present) and the optional hosts file.
    pub fn new(hosts_file: Option<&Path>) -> Result<SystemLookup, String> {
        let hosts = match hosts_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: cannot read hosts file: {e}", path.display()))?;
                Some(HostsFile::parse(&text))
            }
            None => None,
        };
        let services = std::fs::read_to_string("/etc/services").ok().map(|t| Services::parse(&t));
        Ok(SystemLookup { hosts, services })
    }
}

impl Lookup for SystemLookup {
    fn host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(hosts) = &self.hosts {
            let found = hosts.lookup(name);
            if !found.is_empty() {
                return Ok(found);
            }
        }
        let mut addrs: Vec<IpAddr> =
            (name, 0).to_socket_addrs().map_err(|e| e.to_string())?.map(|sa| sa.ip()).collect();
        addrs.dedup();
        if addrs.is_empty() {
            return Err("no addresses".into());
        }
        Ok(addrs)
    }

    fn service(&self, name: &str) -> Option<u16> {
        self.services.as_ref()?.tcp_port(name)
    }

    fn read_file(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }
}

/// Reads and parses the rule file; the error names the file, line and token.
pub fn load_rules(path: &Path, lookup: &SystemLookup) -> Result<RuleSet, String> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read rule file: {e}"))?;
    RuleSet::parse(&name, &text, lookup).map_err(|e| e.to_string())
}
