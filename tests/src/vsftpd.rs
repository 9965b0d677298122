//! vsftpd in `outside` on 198.51.100.2:21: standalone, in the foreground, anonymous download
//! only, from a root directory of the test's own (owned by root, mode 555, as vsftpd insists),
//! active (PORT) and passive (PASV) data connections both allowed, and a protocol log in the
//! temporary directory, which tells which mode a transfer used and which address the client
//! named in its PORT command.
//!
//! Not here: the ftp client (the tests run inetutils-ftp under the library).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use crate::logfile::LogFile;
use crate::{paths, Daemon, Lab, Ns, OUTSIDE_ADDR, STARTUP};

/// A running vsftpd and its protocol log.
#[derive(Debug)]
pub struct Vsftpd {
    /// The process (vsftpd prints nothing itself: see `log`).
    pub daemon: Daemon,
    /// The protocol and transfer log (`log_ftp_protocol=YES`).
    pub log: LogFile,
    /// 198.51.100.2:21.
    pub addr: SocketAddr,
}

impl Lab {
    /// vsftpd serving `files` (name, contents) anonymously; see the module documentation.
    pub fn vsftpd(&self, files: &[(&str, &[u8])]) -> Vsftpd {
        let vsftpd = paths::require("vsftpd", "vsftpd");
        let dir = self.dir.path();
        let (root, empty, log) =
            (dir.join("ftp-root"), dir.join("ftp-empty"), dir.join("vsftpd.log"));
        for d in [&root, &empty] {
            std::fs::create_dir_all(d)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        }
        for (name, contents) in files {
            std::fs::write(root.join(name), contents).expect("ftp file written");
        }
        // vsftpd refuses a writable anonymous root ("refusing to run with writable root").
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o555))
            .expect("chmod 555 on the ftp root");
        let addr = SocketAddr::from((OUTSIDE_ADDR, 21));
        let conf = self.write(
            "vsftpd.conf",
            format!(
                "# socks-e2e: anonymous download, active and passive, in the foreground\n\
                 listen=YES\nlisten_ipv6=NO\nlisten_address={OUTSIDE_ADDR}\nlisten_port=21\n\
                 background=NO\n\
                 anonymous_enable=YES\nlocal_enable=NO\nwrite_enable=NO\nno_anon_password=YES\n\
                 anon_root={}\nftp_username=ftp\nsecure_chroot_dir={}\n\
                 pasv_enable=YES\nport_enable=YES\nconnect_from_port_20=NO\n\
                 seccomp_sandbox=NO\nisolate=NO\nisolate_network=NO\n\
                 xferlog_enable=YES\nlog_ftp_protocol=YES\nxferlog_std_format=NO\n\
                 vsftpd_log_file={}\ndual_log_enable=NO\nsyslog_enable=NO\n",
                root.display(),
                empty.display(),
                log.display()
            ),
        );
        let daemon =
            Daemon::spawn(self.ns(Ns::Outside), "vsftpd", &vsftpd, &[&conf.display().to_string()]);
        assert!(
            self.net.wait_listener(Ns::Outside, addr, STARTUP),
            "{}: vsftpd did not listen on {addr} within {STARTUP:?}; its output:\n{}",
            self.name(),
            daemon.log()
        );
        Vsftpd { daemon, log: LogFile::new("vsftpd log", log), addr }
    }
}
