//! socks-supervise: runs a program under a seccomp filter that sends its socket calls (`connect`,
//! `getpeername`, the sends with a destination, the receives that report a source,
//! `bind`/`listen`/`getsockname`/`accept`; see `filter`) to this process, which routes them by socks.conf and connects them — directly or
//! through a SOCKS server — on a copy of the program's socket. For the programs libsocks.so cannot reach:
//! statically linked ones and Go. `socksify` picks it by itself (scripts/socksify).
//!
//! `socks-supervise [-v] [-q] [-c CONF] [-s SERVER] [--] PROGRAM [ARGS...]`, and
//! `socks-supervise --which PROGRAM`, which prints `supervise static`, `supervise go`,
//! `preload dynamic` or `preload not-elf` (what socksify asks before choosing), and
//! `socks-supervise --check-conf FILE`, which parses FILE as socks.conf the way the supervisor
//! does and prints its servers (what `socksify --system on` checks before preloading the
//! library everywhere).
//!
//! What it covers now: TCP connect by address (IPv4, IPv6), direct/deny/sockd rules, SOCKS4,
//! 4a and 5, `getpeername` naming the destination of a proxied socket, sends with a
//! destination (`sendto`/`sendmsg`/`sendmmsg`: datagrams go direct, through the server or are
//! refused, TCP Fast Open is routed as a connect), UDP through SOCKS5 UDP ASSOCIATE relayed
//! by the supervisor with replies reported from their real source (`udp`, `recv`), BIND
//! (`bind`/`listen`/`getsockname`/`accept`, for ftp's active mode; see `bind`), and host names
//! resolved on the far side: the program's own DNS queries (to port 53, UDP or TCP) are
//! answered by the supervisor with fake addresses for names that go through a server, whose
//! connect then sends the name, and forwarded to the real name server otherwise, through sockd
//! if that is how socks.conf reaches it (`dns`, `names`).
//!
//! Unsafe code is denied here and allowed only in `sys`, the libc boundary.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod bind;
mod config;
mod dns;
mod elf;
mod explain;
mod filter;
mod interrupt;
mod msghdr;
mod names;
mod pidfds;
mod pool;
mod proxy;
mod recv;
mod rewrites;
mod route;
mod send;
mod sockaddr;
mod sockname;
mod supervise;
mod sys;
mod udp;

use std::process::ExitCode;

const USAGE: &str = "usage: socks-supervise [-v] [-q] [-c CONF] [-s SERVER] [--] PROGRAM [ARGS...]
  -c CONF    client rule file (SOCKS_CONF; default /etc/socks.conf)
  -s SERVER  send everything that is not local through SERVER ([socks4|socks4a|socks5://]host:port)
  -v         print decisions on stderr (SOCKS_LOG=info; -vv for debug)
  -q         print nothing but fatal errors (unsets SOCKS_LOG)
usage: socks-supervise --which PROGRAM
  prints `supervise static|go` or `preload dynamic|not-elf`: which way socksify takes
usage: socks-supervise --check-conf FILE
  parses FILE as socks.conf; prints `server ADDR VERSION` for each server it names, or the
  error (exit status 1)";

fn main() -> ExitCode {
    let mut env = config::environment();
    let mut args = std::env::args_os().skip(1).peekable();
    let mut verbose = 0;
    while let Some(arg) = args.peek().and_then(|a| a.to_str()).map(str::to_owned) {
        let mut value = |what: &str| {
            args.next();
            match args.peek().and_then(|a| a.to_str()) {
                Some(v) => Ok(v.to_owned()),
                None => Err(format!("{what} needs an argument")),
            }
        };
        let parsed = match arg.as_str() {
            "--" => {
                args.next();
                break;
            }
            "--which" => {
                args.next();
                let Some(program) = args.next() else {
                    eprintln!("socks-supervise: --which needs a program\n{USAGE}");
                    return ExitCode::from(2);
                };
                return which(&program);
            }
            "--check-conf" => {
                args.next();
                let Some(file) = args.next() else {
                    eprintln!("socks-supervise: --check-conf needs a file\n{USAGE}");
                    return ExitCode::from(2);
                };
                return check_conf(&file);
            }
            "--explain" | "--check" => return explain::dispatch(&arg, args.nth(1), &env),
            "-h" | "--help" => {
                println!("{USAGE}\n{}", explain::USAGE);
                return ExitCode::SUCCESS;
            }
            "-c" => value("-c").map(|v| env.conf = Some(v)),
            "-s" => value("-s").map(|v| env.server = Some(v)),
            "-v" | "-vv" => {
                verbose += if arg == "-vv" { 2 } else { 1 };
                Ok(())
            }
            "-q" => {
                env.log = None;
                Ok(())
            }
            other if other.starts_with('-') => Err(format!("unknown option {other}")),
            _ => break,
        };
        if let Err(message) = parsed {
            eprintln!("socks-supervise: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
        args.next();
    }
    if verbose > 0 {
        env.log = Some(if verbose > 1 { "debug" } else { "info" }.to_owned());
    }
    let Some(program) = args.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let settings = config::load(&env);
    if let config::Mode::Broken { message, .. } = &settings.mode {
        eprintln!(
            "socks-supervise: configuration error: {message}; connections that are not local \
             will be refused"
        );
    }
    if let Err(e) = sys::set_child_subreaper() {
        eprintln!("socks-supervise: cannot become the subreaper of the program's processes: {e}");
    }
    // The program sees the same settings the supervisor used (its children, if dynamically
    // linked, are still supervised: the filter is inherited).
    let mut overrides = Vec::new();
    for (name, value) in [("SOCKS_CONF", &env.conf), ("SOCKS_SERVER", &env.server)] {
        if let Some(value) = value {
            overrides.push((name, value.as_str()));
        }
    }
    let args: Vec<_> = args.collect();
    // SIGCHLD is taken from a signalfd by the loop (`supervise`); blocked before the fork and
    // before any thread starts, so no exit goes unnoticed (the child unblocks it).
    let child_exits = match sys::child_exits() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("socks-supervise: cannot watch for the program's exit (signalfd): {e}");
            return ExitCode::from(126);
        }
    };
    let spawned = sys::spawn_supervised(&program, &args, &overrides, &filter::program());
    let (child, listener) = match spawned {
        Ok(pair) => pair,
        Err(e) => {
            let program = program.to_string_lossy();
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    " (a seccomp listener is already installed above it: nested supervision \
                     is not possible)"
                }
                Some(libc::EINVAL) | Some(libc::ENOSYS) => {
                    " (this kernel lacks seccomp user notification, Linux >= 5.9)"
                }
                _ => "",
            };
            eprintln!("socks-supervise: cannot start {program} under the supervisor: {e}{hint}");
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    sys::ignore_terminal_signals();
    // Faster round trips where the kernel has it (≥ 6.6); nothing changes otherwise.
    let _ = sys::notif_sync_wake_up(std::os::fd::AsFd::as_fd(&listener));
    let code = supervise::run(settings, listener, child_exits, child);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `--check-conf FILE`: the file alone (no `SOCKS_*` variables: they are not what every
/// process on the machine sees), parsed as [`config::load`] parses it for a supervised program.
/// On success prints each distinct server once, `server ADDR socks4|socks4a|socks5|http` (a chain's first
/// hop), in file
/// order; on a broken or missing file prints the parser's message and exits with status 1.
fn check_conf(file: &std::ffi::OsStr) -> ExitCode {
    let env = config::Environment {
        conf: Some(file.to_string_lossy().into_owned()),
        ..config::Environment::default()
    };
    let servers = match config::load(&env).mode {
        config::Mode::Rules { servers, .. } => servers,
        config::Mode::Broken { message, .. } => {
            eprintln!("socks-supervise: {message}");
            return ExitCode::FAILURE;
        }
        // Not reached with a file named (a missing one is Broken); nothing to list either way.
        config::Mode::Off | config::Mode::Everything { .. } => Vec::new(),
    };
    let mut seen = Vec::new();
    for server in servers.iter().flatten() {
        let version = server.protocol.scheme();
        for addr in &server.addrs {
            let line = format!("server {addr} {version}");
            if !seen.contains(&line) {
                println!("{line}");
                seen.push(line);
            }
        }
    }
    ExitCode::SUCCESS
}

/// `--which PROGRAM`: finds it (in `PATH` when it has no slash) and prints its [`elf::Kind`].
fn which(program: &std::ffi::OsStr) -> ExitCode {
    use std::os::unix::ffi::OsStrExt;
    let path = if program.as_bytes().contains(&b'/') {
        Some(std::path::PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file())
        })
    };
    let Some(path) = path else {
        eprintln!("socks-supervise: {}: command not found", program.to_string_lossy());
        return ExitCode::from(127);
    };
    match std::fs::File::open(&path) {
        Ok(file) => {
            println!("{}", elf::classify(&file));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("socks-supervise: cannot read {}: {e}", path.display());
            ExitCode::from(126)
        }
    }
}
