//! The seccomp filter the supervised program runs under, as a classic BPF program built here
//! (no I/O; `sys::install_filter` loads it). What it does, in order:
//!
//! 1. The architecture must be x86_64 (`AUDIT_ARCH_X86_64`): a 32-bit `int 0x80` call (i386,
//!    including its `socketcall`) or any other foreign architecture kills the process. So does
//!    an x32 call (an x86_64 call with `__X32_SYSCALL_BIT` set): its numbers are other calls'.
//! 2. `connect` and `getpeername` go to the supervisor (`SECCOMP_RET_USER_NOTIF`): the second so
//!    that a proxied socket names its destination, not the SOCKS server.
//! 3. `sendmsg` and `sendmmsg` go to the supervisor: their destination (`msg_name`) is inside a
//!    `msghdr` in the program's memory, which a BPF filter cannot read. `sendto` goes to it only
//!    when its fifth argument (`dest_addr`) is not null — both 32-bit halves are tested — so
//!    `send` and `sendto(…, NULL, 0)` on a connected socket, like `write`, stay in the kernel.
//! 4. `recvmsg` and `recvmmsg` go to the supervisor (their `msg_name` is in memory), and
//!    `recvfrom` when its fifth argument (`src_addr`) is not null, tested as `sendto`'s: so
//!    that a datagram relayed through SOCKS, or answered by the name service, reports its real
//!    source (`recv`). `read`, `recv` and `recvfrom(…, NULL, NULL)` stay in the kernel.
//! 5. `bind`, `listen`, `getsockname`, `accept` and `accept4` go to the supervisor, for BIND
//!    (`bind` module). A filter cannot tell a BIND socket from any other (the table is the
//!    supervisor's), so every such call is trapped; the supervisor lets the ones that are not
//!    BIND sockets go on to the kernel at once (PERFORMANCE.md measures the cost).
//! 6. `io_uring_setup` fails with ENOSYS: io_uring's operations bypass seccomp, and every
//!    program that uses it falls back to plain system calls on ENOSYS.
//! 7. Everything else is allowed, at full speed.
//!
//! Why hand-written and not a crate: `seccompiler` (rust-vmm) has no user-notification action,
//! and the `libseccomp` crate links the C libseccomp (a run-time dependency of the binary, and
//! its x32 handling is implicit in its arch tables) for a program of twenty-six instructions whose
//! every jump is visible here and checked by the unit tests below against a small interpreter.
//!
//! Not here: loading the filter, the listener, or what the supervisor does with a notification.

use libc::sock_filter;

/// `AUDIT_ARCH_X86_64` from linux/audit.h: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `__X32_SYSCALL_BIT` from asm/unistd.h (x86): set in the number of every x32 system call.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// x86_64 `connect` (arch/x86/entry/syscalls/syscall_64.tbl).
pub const NR_CONNECT: u32 = 42;
/// x86_64 `getpeername` (syscall_64.tbl).
pub const NR_GETPEERNAME: u32 = 52;
/// x86_64 `sendto` (syscall_64.tbl).
pub const NR_SENDTO: u32 = 44;
/// x86_64 `sendmsg` (syscall_64.tbl).
pub const NR_SENDMSG: u32 = 46;
/// x86_64 `sendmmsg` (syscall_64.tbl).
pub const NR_SENDMMSG: u32 = 307;
/// x86_64 `recvfrom` (syscall_64.tbl).
pub const NR_RECVFROM: u32 = 45;
/// x86_64 `recvmsg` (syscall_64.tbl).
pub const NR_RECVMSG: u32 = 47;
/// x86_64 `recvmmsg` (syscall_64.tbl).
pub const NR_RECVMMSG: u32 = 299;
/// x86_64 `bind` (syscall_64.tbl).
pub const NR_BIND: u32 = 49;
/// x86_64 `listen` (syscall_64.tbl).
pub const NR_LISTEN: u32 = 50;
/// x86_64 `getsockname` (syscall_64.tbl).
pub const NR_GETSOCKNAME: u32 = 51;
/// x86_64 `accept` (syscall_64.tbl).
pub const NR_ACCEPT: u32 = 43;
/// x86_64 `accept4` (syscall_64.tbl).
pub const NR_ACCEPT4: u32 = 288;
/// x86_64 `io_uring_setup` (syscall_64.tbl).
pub const NR_IO_URING_SETUP: u32 = 425;

/// Offsets into `struct seccomp_data` (linux/seccomp.h): `int nr; __u32 arch; …`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// `__u64 args[6]` starts at 16; `sendto`'s `dest_addr` and `recvfrom`'s `src_addr` are
/// args[4], low half first (x86_64 is little-endian).
const OFFSET_ARG4_LOW: u32 = 16 + 8 * 4;
const OFFSET_ARG4_HIGH: u32 = OFFSET_ARG4_LOW + 4;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The filter program. Jump offsets count instructions after the jump itself.
pub fn program() -> Vec<sock_filter> {
    vec![
        /* 0 */ stmt(LD_W_ABS, OFFSET_ARCH),
        /* 1 */ jump(JEQ_K, AUDIT_ARCH_X86_64, 0, 23), // foreign arch -> 25 (kill)
        /* 2 */ stmt(LD_W_ABS, OFFSET_NR),
        /* 3 */ jump(JGE_K, X32_SYSCALL_BIT, 21, 0), // x32 -> 25 (kill)
        /* 4 */ jump(JEQ_K, NR_CONNECT, 18, 0), // -> 23 (notify)
        /* 5 */ jump(JEQ_K, NR_GETPEERNAME, 17, 0), // -> 23 (notify)
        /* 6 */ jump(JEQ_K, NR_SENDMSG, 16, 0), // -> 23 (notify)
        /* 7 */ jump(JEQ_K, NR_SENDMMSG, 15, 0), // -> 23 (notify)
        /* 8 */ jump(JEQ_K, NR_RECVMSG, 14, 0), // -> 23 (notify)
        /* 9 */ jump(JEQ_K, NR_RECVMMSG, 13, 0), // -> 23 (notify)
        /* 10 */ jump(JEQ_K, NR_BIND, 12, 0), // -> 23 (notify)
        /* 11 */ jump(JEQ_K, NR_LISTEN, 11, 0), // -> 23 (notify)
        /* 12 */ jump(JEQ_K, NR_GETSOCKNAME, 10, 0), // -> 23 (notify)
        /* 13 */ jump(JEQ_K, NR_ACCEPT, 9, 0), // -> 23 (notify)
        /* 14 */ jump(JEQ_K, NR_ACCEPT4, 8, 0), // -> 23 (notify)
        /* 15 */ jump(JEQ_K, NR_IO_URING_SETUP, 8, 0), // -> 24 (ENOSYS)
        /* 16 */ jump(JEQ_K, NR_SENDTO, 1, 0), // sendto -> 18 (test its address)
        /* 17 */ jump(JEQ_K, NR_RECVFROM, 0, 4), // neither -> 22 (allow)
        /* 18 */ stmt(LD_W_ABS, OFFSET_ARG4_LOW),
        /* 19 */ jump(JEQ_K, 0, 0, 3), // address low half set -> 23 (notify)
        /* 20 */ stmt(LD_W_ABS, OFFSET_ARG4_HIGH),
        /* 21 */ jump(JEQ_K, 0, 0, 1), // null -> 22 (allow), else -> 23 (notify)
        /* 22 */ stmt(RET_K, libc::SECCOMP_RET_ALLOW),
        /* 23 */ stmt(RET_K, libc::SECCOMP_RET_USER_NOTIF),
        /* 24 */ stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        /* 25 */ stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic-BPF subset the program uses over (arch, nr), every argument zero.
    fn run(prog: &[sock_filter], arch: u32, nr: u32) -> u32 {
        run_args(prog, arch, nr, [0; 6])
    }

    /// Runs the program over (arch, nr, args).
    fn run_args(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            match ins.code {
                LD_W_ABS => {
                    acc = match ins.k {
                        OFFSET_ARCH => arch,
                        OFFSET_NR => nr,
                        k if (16..64).contains(&k) && k % 4 == 0 => {
                            let arg = args[(k as usize - 16) / 8];
                            if k % 8 == 0 {
                                arg as u32
                            } else {
                                (arg >> 32) as u32
                            }
                        }
                        k => panic!("load from offset {k}"),
                    }
                }
                JEQ_K | JGE_K => {
                    let taken = if ins.code == JEQ_K { acc == ins.k } else { acc >= ins.k };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
                RET_K => return ins.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn decisions() {
        let p = program();
        let x64 = AUDIT_ARCH_X86_64;
        assert_eq!(x64, 0xC000_003E);
        assert_eq!(run(&p, x64, NR_CONNECT), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, x64, NR_GETPEERNAME), libc::SECCOMP_RET_USER_NOTIF);
        for nr in [NR_BIND, NR_LISTEN, NR_GETSOCKNAME, NR_ACCEPT, NR_ACCEPT4] {
            assert_eq!(run(&p, x64, nr), libc::SECCOMP_RET_USER_NOTIF, "{nr}");
            assert_eq!(run(&p, x64, X32_SYSCALL_BIT | nr), libc::SECCOMP_RET_KILL_PROCESS);
        }
        assert_eq!(run(&p, x64, 48), libc::SECCOMP_RET_ALLOW, "shutdown");
        assert_eq!(run(&p, x64, NR_IO_URING_SETUP), libc::SECCOMP_RET_ERRNO | 38);
        assert_eq!(run(&p, x64, 0), libc::SECCOMP_RET_ALLOW, "read");
        assert_eq!(run(&p, x64, 41), libc::SECCOMP_RET_ALLOW, "socket");
        // x32 connect is 42 | X32 bit as well; any x32 call is refused.
        assert_eq!(run(&p, x64, X32_SYSCALL_BIT | NR_CONNECT), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(&p, x64, X32_SYSCALL_BIT), libc::SECCOMP_RET_KILL_PROCESS);
        // i386 (int 0x80): socketcall (102) and everything else.
        let i386 = 3 | 0x4000_0000;
        assert_eq!(run(&p, i386, 102), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(&p, i386, 1), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(libc::SYS_connect as u32, NR_CONNECT);
        assert_eq!(libc::SYS_io_uring_setup as u32, NR_IO_URING_SETUP);
        assert_eq!(libc::SYS_getpeername as u32, NR_GETPEERNAME);
        assert_eq!(libc::SYS_sendto as u32, NR_SENDTO);
        assert_eq!(libc::SYS_sendmsg as u32, NR_SENDMSG);
        assert_eq!(libc::SYS_sendmmsg as u32, NR_SENDMMSG);
        assert_eq!(libc::SYS_bind as u32, NR_BIND);
        assert_eq!(libc::SYS_listen as u32, NR_LISTEN);
        assert_eq!(libc::SYS_getsockname as u32, NR_GETSOCKNAME);
        assert_eq!(libc::SYS_accept as u32, NR_ACCEPT);
        assert_eq!(libc::SYS_accept4 as u32, NR_ACCEPT4);
    }

    #[test]
    fn sends_with_a_destination_notify() {
        let p = program();
        let x64 = AUDIT_ARCH_X86_64;
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let sendto = |dest: u64| run_args(&p, x64, NR_SENDTO, [3, 0x1000, 10, 0, dest, 16]);
        assert_eq!(sendto(0), libc::SECCOMP_RET_ALLOW, "send(2) is sendto with no address");
        assert_eq!(sendto(0x7ffd_1234_5678), notify);
        assert_eq!(sendto(0x1_0000_0000), notify, "only the high half set");
        assert_eq!(sendto(0x10), notify, "only the low half set");
        // The other arguments do not matter: only dest_addr is tested.
        assert_eq!(run_args(&p, x64, NR_SENDTO, [0, 0, 0, 0, 0, 16]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run_args(&p, x64, NR_SENDMSG, [3, 0x1000, 0, 0, 0, 0]), notify);
        assert_eq!(run(&p, x64, NR_SENDMSG), notify, "always: msg_name is in memory");
        assert_eq!(run(&p, x64, NR_SENDMMSG), notify);
        assert_eq!(run(&p, x64, 1), libc::SECCOMP_RET_ALLOW, "write");
        assert_eq!(run(&p, x64, X32_SYSCALL_BIT | NR_SENDMSG), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn receives_with_a_source_notify() {
        let p = program();
        let x64 = AUDIT_ARCH_X86_64;
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let recvfrom = |src: u64| run_args(&p, x64, NR_RECVFROM, [3, 0x1000, 10, 0, src, 0x2000]);
        assert_eq!(recvfrom(0), libc::SECCOMP_RET_ALLOW, "recv(2) is recvfrom with no address");
        assert_eq!(recvfrom(0x7ffd_1234_5678), notify);
        assert_eq!(recvfrom(0x1_0000_0000), notify, "only the high half set");
        assert_eq!(recvfrom(0x10), notify, "only the low half set");
        assert_eq!(run(&p, x64, NR_RECVMSG), notify, "always: msg_name is in memory");
        assert_eq!(run(&p, x64, NR_RECVMMSG), notify);
        assert_eq!(run(&p, x64, 0), libc::SECCOMP_RET_ALLOW, "read");
        assert_eq!(run(&p, x64, X32_SYSCALL_BIT | NR_RECVMSG), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(libc::SYS_recvfrom as u32, NR_RECVFROM);
        assert_eq!(libc::SYS_recvmsg as u32, NR_RECVMSG);
        assert_eq!(libc::SYS_recvmmsg as u32, NR_RECVMMSG);
    }
}
