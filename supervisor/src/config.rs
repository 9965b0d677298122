//! What the supervisor was told: `socks.conf` (`SOCKS_CONF`, else `/etc/socks.conf`) and the
//! environment shortcuts (`SOCKS_SERVER`, `SOCKS_VERSION`, `SOCKS_USERNAME`/`SOCKS_PASSWORD`,
//! `SOCKS_TIMEOUT`, `SOCKS_LOG`), read exactly as libsocks.so reads them: the loader is
//! `socks_client::settings`, shared with the library. Here is only the supervisor's side: the
//! files and names read through std, the user name and interfaces through `sys`. A broken
//! configuration is not fatal: destinations that are not local are then refused (fail closed),
//! and `main` says why once.
//!
//! Not here: the decision for one destination (`route`).

use std::net::{IpAddr, ToSocketAddrs};

// Every name this module had before the loader moved, so the other modules name them as they
// did (not all of them are used today).
#[allow(unused_imports)]
pub use socks_client::settings::{
    Environment, LogLevel, Mode, Server, Settings, DEFAULT_CONF, DEFAULT_TIMEOUT,
};

use crate::sys;

/// The system as the supervisor sees it (an ordinary process: std and `sys`).
struct SupervisorSystem;

impl socks_client::System for SupervisorSystem {
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn resolve_host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        (name, 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| e.to_string())
    }
    fn effective_user_name(&self) -> Option<String> {
        sys::effective_user_name()
    }
    fn attached_networks(&self) -> Vec<(IpAddr, u8)> {
        sys::attached_networks()
    }
    fn host_name(&self) -> Option<String> {
        sys::host_name()
    }
}

/// This process's environment (the supervisor is never setuid: it reads every variable).
pub fn environment() -> Environment {
    Environment::from_lookup(|name| std::env::var(name).ok())
}

/// Builds the settings from an environment (and the files it names).
pub fn load(env: &Environment) -> Settings {
    socks_client::load(env, &SupervisorSystem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socks_proto::client::ClientVersion;

    #[test]
    fn reads_the_named_file() {
        let path =
            std::env::temp_dir().join(format!("socks-supervise-{}-rules.conf", std::process::id()));
        std::fs::write(&path, "deny 198.51.100.9/32\nsockd 0.0.0.0/0\n").expect("temp file");
        let rules = load(&Environment {
            conf: Some(path.display().to_string()),
            server: Some("socks4://192.0.2.1:1081".into()),
            log: Some("info".into()),
            ..Default::default()
        });
        assert!(rules.log >= 3 && rules.log < 4, "SOCKS_LOG=info is level 3");
        match &rules.mode {
            Mode::Rules { servers, .. } => {
                assert!(servers[0].is_empty());
                assert_eq!(servers[1][0].version, ClientVersion::Socks4);
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_file(path);
        let missing =
            load(&Environment { conf: Some("/nonexistent/x".into()), ..Default::default() });
        assert!(matches!(missing.mode, Mode::Broken { .. }), "a named missing file is broken");
    }
}
