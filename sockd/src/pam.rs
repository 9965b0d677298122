//! `--pam SERVICE`: RFC 1929 usernames and passwords checked through the system's PAM stack
//! (libpam, opened at run time: `libpam`), so a site's LDAP, RADIUS, Kerberos or SSSD modules
//! decide. A check is `pam_authenticate` then `pam_acct_mgmt` (an expired or locked account is
//! refused too), run on tokio's blocking threads, at most `MAX_CHECKS` at once and within
//! `CHECK_TIMEOUT`: a module that hangs (an unreachable directory server) holds a blocking
//! thread and a place until it returns, never an async worker, and the client is refused at
//! the deadline.
//!
//! Not here: the slow-down of repeated failures and the log lines (the session does both, the
//! same way for PAM and for the users file), the RFC 1929 bytes (socks-proto).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, error, warn};
use tokio::sync::Semaphore;

use crate::libpam::{self, Refusal};
use crate::session::printable;

/// PAM checks running at once; more wait for a place (within the timeout).
const MAX_CHECKS: usize = 16;

/// Time for one check, the wait for a place included.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Linux-PAM looks for a service's stack.
const PAM_D: &str = "/etc/pam.d";

/// Places for running checks, shared by every session.
static CHECKS: Semaphore = Semaphore::const_new(MAX_CHECKS);

/// The PAM service named by `--pam`.
#[derive(Debug, Clone)]
pub struct Pam {
    service: Arc<str>,
}

impl Pam {
    /// The service `name`, whose stack must exist as `/etc/pam.d/NAME`: without it PAM would
    /// silently use the `other` stack, which is not what `--pam NAME` asked for.
    pub fn new(name: &str) -> Result<Pam, String> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!("--pam {}: not a PAM service name", printable(name)));
        }
        let stack = Path::new(PAM_D).join(name);
        if !stack.is_file() {
            return Err(format!(
                "--pam {name}: no PAM service file {} (PAM would use its `other` stack)",
                stack.display()
            ));
        }
        libpam::load().map_err(|e| format!("--pam {name}: {e}"))?;
        Ok(Pam { service: name.into() })
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether `username` may log in with `password`. Anything but a yes — wrong password,
    /// unknown user, a refused account, a broken stack, the timeout — is a no; the reasons that
    /// are not the client's (a broken stack, a module that hangs) are logged here as well.
    /// A password that is not UTF-8, or a name or password holding a NUL byte, cannot be put
    /// to PAM (C strings) and is refused without asking it.
    pub async fn check(&self, username: String, password: Vec<u8>) -> bool {
        let Ok(password) = String::from_utf8(password) else { return false };
        if username.contains('\0') || password.contains('\0') {
            return false;
        }
        let service = self.service.clone();
        let user = username.clone();
        let checked = tokio::time::timeout(CHECK_TIMEOUT, async move {
            let place = CHECKS.acquire().await.ok()?;
            tokio::task::spawn_blocking(move || {
                // The place is held until PAM returns, even after the deadline.
                let _place = place;
                libpam::check(&service, &user, &password)
            })
            .await
            .ok()
        })
        .await;
        match checked {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(Refusal::Client(code, message)))) => {
                debug!(
                    "pam: service {} refused user={}: {message} ({code})",
                    self.service,
                    printable(&username)
                );
                false
            }
            Ok(Some(Err(Refusal::Stack(message)))) => {
                error!(
                    "pam: service {} could not check user={} error={message}",
                    self.service,
                    printable(&username)
                );
                false
            }
            Ok(None) => false,
            Err(_) => {
                warn!(
                    "pam: service {} did not answer for user={} within {}s; refused",
                    self.service,
                    printable(&username),
                    CHECK_TIMEOUT.as_secs()
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_checked() {
        for bad in ["", "../etc/shadow", "a/b", ".hidden"] {
            assert!(Pam::new(bad).is_err(), "{bad:?}");
        }
        let missing = Pam::new("sockd-no-such-service").expect_err("no such file");
        assert!(missing.contains("/etc/pam.d/sockd-no-such-service"), "{missing}");
    }
}
