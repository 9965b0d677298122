//! libsocks.so: preloaded into an unmodified program (`socksify PROGRAM`, `LD_PRELOAD`, or
//! `/etc/ld.so.preload`), it sends the program's outbound TCP connections through a SOCKS server
//! as `socks.conf` or the environment says, on the program's own socket, so the program never
//! notices: `getpeername` still names the destination it asked for.
//!
//! Layout: `ffi` holds every file that needs `unsafe` — the exported C functions (`hooks`,
//! `udp_hooks`, `dns_hooks`, `resolv_hooks`, the only place raw pointers come in), `real` (libc
//! through dlsym(RTLD_NEXT)), `sockaddr`, `hostent` and `fakemap` (the per-user map of fake
//! addresses, opened by `mapfile`). The rest is safe code: `intercept` (what each hook does), `outcome` (the one way
//! to fail: the causes, their errno table, and the shield every export runs in), `route`
//! (direct / deny / which servers), `proxy` (connect + SOCKS handshake on the program's fd),
//! `chain` (the hops of a chain of proxies and HTTP CONNECT),
//! `config` (settings, read once), `fdtable` (per-fd state, tied to the socket's inode),
//! `guard`, `log`; names resolved on the far side in `names` (DNS messages from `socks_proto::dns`;
//! what a DNS question gets in `answers`, shared by the res_* hooks and `dnswire`, which answers
//! the program's own DNS queries to port 53 over UDP, and `dnstcp`, over TCP);
//! datagrams in `udp` (control messages: `ancillary`); TCP Fast Open in `fastopen`. The
//! decisions themselves — socks.conf and the environment made into settings, routing, which
//! names get fake addresses — are the `socks-client` crate's, shared with socks-supervise;
//! `config`, `route` and `names` are the library's side of them.
//!
//! With nothing configured every call passes straight through. The library starts no thread,
//! never exits the process, prints nothing unless `SOCKS_LOG` asks (except once for a broken
//! configuration), writes only to the standard error the program started with, and ignores the
//! environment in secure-execution programs.
//!
//! Crates left out on purpose: `redhook` (its hooks re-call the real function after a panic,
//! running side effects twice, and resolve symbols under a lock); `once_cell` (std's `OnceLock`
//! does the one job it had); `log`/`env_logger` (env_logger reacts to `RUST_LOG`, allocates and
//! takes the stdio lock, which can hang a vfork child — `log` here is a stack buffer and one
//! write(2)).
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod ancillary;
mod answers;
mod chain;
mod config;
mod dnstcp;
mod dnswire;
mod fastopen;
mod fdtable;
mod ffi;
mod guard;
mod intercept;
mod log;
mod names;
mod outcome;
mod proxy;
mod route;
mod udp;
