//! The library's settings, read once per process on the first connect that could need them,
//! its memory of failed servers, and its round of `?spread` starts. What the settings say, and
//! how `socks.conf` and the `SOCKS_*` variables become them, is `socks_client::settings`
//! (shared with the supervisor); here is only the library's side: the files, user name,
//! interfaces and host name read through the real libc (never our own hooks), the environment
//! ignored entirely in secure-execution programs, `SOCKS_LOG` switched on for the process, and
//! a broken configuration reported once on stderr (connections that are not local then fail
//! closed).
//!
//! Not here: matching a destination (`route`) or talking to servers (`proxy`).

use std::net::IpAddr;
use std::sync::OnceLock;

use socks_client::order::{Health, Spreader};
pub use socks_client::settings::{Environment, Mode, Server, Settings};

use crate::ffi::real;
use crate::log;

/// The system as the library sees it: std's file reads (open/read are not hooked), everything
/// else through the real libc functions.
struct LibcSystem;

impl socks_client::System for LibcSystem {
    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn resolve_host(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        real::resolve_host(name)
    }
    fn effective_user_name(&self) -> Option<String> {
        real::effective_user_name()
    }
    fn attached_networks(&self) -> Vec<(IpAddr, u8)> {
        real::attached_networks()
    }
    fn host_name(&self) -> Option<String> {
        real::host_name()
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Whether the settings have been read already (without reading them).
pub fn loaded() -> bool {
    SETTINGS.get().is_some()
}

/// The settings, read on first use.
pub fn settings() -> &'static Settings {
    // (The panic hook that keeps panics off the program's stderr is set at load, in `hooks`.)
    SETTINGS.get_or_init(|| load(&environment()))
}

/// The environment variables the library reads (none in secure-execution mode).
fn environment() -> Environment {
    if real::secure_execution() {
        return Environment::default();
    }
    Environment::from_lookup(|name| std::env::var(name).ok())
}

/// Builds the settings from an environment (and the files it names), switches the log on as
/// `SOCKS_LOG` says, and says so once if the configuration is broken.
pub fn load(env: &Environment) -> Settings {
    let settings = socks_client::load(env, &LibcSystem);
    log::set_level(settings.log);
    if let Mode::Broken { message, .. } = &settings.mode {
        // Asked for or not, a broken configuration is said once: connections will fail
        // because of it.
        log::write_line(format_args!(
            "configuration error: {message}; connections that are not local will be refused"
        ));
    }
    settings
}

/// When each server last failed (the table is `socks_client::order`'s, shared in kind with the
/// supervisor; this instance is the process's). Atomics in a fixed table: no lock and no
/// allocation on the connect path, and a fork child starts with its parent's memory.
pub static HEALTH: Health = Health::new();

/// The start of each `?spread` walk in this process (round robin from a per-process start).
pub static SPREADER: Spreader = Spreader::new();

/// What the library remembers about a server's failures (process state, so not in the shared
/// `Server`).
pub trait ServerHealth {
    /// Whether it has not failed recently.
    fn is_alive(&self) -> bool;
    /// Records a failure to reach it.
    fn mark_failed(&self);
    /// Records that it answered.
    fn mark_alive(&self);
}

impl ServerHealth for Server {
    fn is_alive(&self) -> bool {
        HEALTH.is_alive(self)
    }

    fn mark_failed(&self) {
        HEALTH.mark_failed(self);
    }

    fn mark_alive(&self) {
        HEALTH.mark_alive(self);
    }
}

/// Settings for unit tests: `conf` as the socks.conf, server 192.0.2.1:1080.
#[cfg(test)]
pub fn settings_with(conf: &str) -> Settings {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("socks-shim-{}-{n}.conf", std::process::id()));
    std::fs::write(&path, conf).expect("temp file");
    let env = Environment {
        conf: Some(path.display().to_string()),
        server: Some("192.0.2.1:1080".into()),
        ..Default::default()
    };
    let settings = load(&env);
    let _ = std::fs::remove_file(path);
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use socks_client::order::TRACKED_SERVERS;
    use socks_proto::client::ClientVersion;

    fn write_conf(text: &str) -> String {
        let path = std::env::temp_dir().join(format!(
            "socks-shim-test-{}-{}.conf",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&path, text).expect("temp file");
        path.display().to_string()
    }

    #[test]
    fn reads_the_named_file_and_fails_closed() {
        let env =
            Environment { conf: Some("/nonexistent/socks.conf".into()), ..Default::default() };
        assert!(
            matches!(load(&env).mode, Mode::Broken { .. }),
            "an explicit missing file is an error"
        );
        let path = write_conf("direct 10.0.0.0/8\nsockd 0.0.0.0/0\n");
        let env = Environment {
            conf: Some(path.clone()),
            server: Some("socks4a://192.0.2.1:1081".into()),
            ..Default::default()
        };
        let settings = load(&env);
        let Mode::Rules { servers, .. } = &settings.mode else { panic!("{:?}", settings.mode) };
        assert_eq!(servers[1][0].version, ClientVersion::Socks4a);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn failover_clock() {
        let env = Environment { server: Some("127.0.0.1:1080".into()), ..Default::default() };
        let Mode::Everything { servers, .. } = load(&env).mode else { panic!() };
        assert_eq!(servers[0].id, 0);
        // The table is the process's: ids other tests (run in parallel) do not use.
        let server = Server { id: TRACKED_SERVERS - 1, ..servers[0].clone() };
        let neighbour = Server { id: TRACKED_SERVERS - 2, ..servers[0].clone() };
        assert!(server.is_alive());
        server.mark_failed();
        assert!(!server.is_alive());
        assert!(neighbour.is_alive(), "each server has its own record");
        server.mark_alive();
        assert!(server.is_alive());
    }
}
