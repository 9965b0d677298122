//! One way to fail (issue 11): each cause of failure has one errno, whatever the call. A
//! socks.conf `deny` is ECONNREFUSED for a TCP connect, a TCP Fast Open send (sendto and
//! sendmsg with MSG_FASTOPEN) and a UDP datagram (sendto, sendmsg) alike (the datagram path
//! said EACCES before), and a configuration that is broken is ECONNREFUSED for all of them too.
//! The table is in docs/socks.conf.5.md (ERRORS).
//!
//! Not here: the errors of the proxy path itself (rules.rs: server down, silent server, sockd
//! refusing).

use socks_e2e::*;

#[test]
fn deny_and_broken_config_mean_the_same_errno_for_connect_fast_open_and_sendto() {
    let Some(lab) = Lab::new("errors-one-table") else { return };
    let _sockd = lab.sockd(PERMIT_INSIDE);
    let denied = lab
        .write("denied.conf", format!("deny 198.51.100.2/32 eq 9\nsockd @={SERVER} 0.0.0.0/0\n"));
    let broken = lab.write("broken.conf", "sockd @=192.0.2.1:1080 0.0.0.0/0 eqq 9\n");
    let script = r#"
import errno, socket
def tcp():
    s = socket.socket()
    try:
        s.connect(("198.51.100.2", 9))
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
MSG_FASTOPEN = 0x20000000
def fast_open(how):
    s = socket.socket()
    try:
        if how == "sendto":
            s.sendto(b"x", MSG_FASTOPEN, ("198.51.100.2", 9))
        else:
            s.sendmsg([b"x"], [], MSG_FASTOPEN, ("198.51.100.2", 9))
        return "sent"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def udp(how):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if how == "sendto":
            s.sendto(b"x", ("198.51.100.2", 9))
        else:
            s.sendmsg([b"x"], [], 0, ("198.51.100.2", 9))
        return "sent"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print(f"connect={tcp()} fastopen_sendto={fast_open('sendto')} "
      f"fastopen_sendmsg={fast_open('sendmsg')} sendto={udp('sendto')} sendmsg={udp('sendmsg')}")
"#;
    for conf in [&denied, &broken] {
        let ran = lab
            .python(script)
            .env("SOCKS_CONF", conf.display().to_string())
            .env("SOCKS_TIMEOUT", "5")
            .ld_preload()
            .run();
        ran.assert_success();
        assert_eq!(
            ran.stdout_text(),
            "connect=ECONNREFUSED fastopen_sendto=ECONNREFUSED fastopen_sendmsg=ECONNREFUSED \
             sendto=ECONNREFUSED sendmsg=ECONNREFUSED\n",
            "{}: one cause, one errno for connect, Fast Open and datagrams\n{}",
            conf.display(),
            ran.describe()
        );
    }
}
