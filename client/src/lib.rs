//! socks-client: what every client front end shares — libsocks.so (`shim`, hooks in the program)
//! and socks-supervise (`supervisor`, seccomp notifications) — so both decide exactly the same
//! way: the settings from `socks.conf` and the `SOCKS_*` variables (`settings`), the routing
//! decision for one destination (`route`), the order one connection tries a rule's servers in
//! and the memory of failed ones (`order`), which names are resolved on the far side and the fake
//! addresses that stand for them (`names`), and an ordinary (allocating, locked) store of those
//! names for a front end that is a normal process (`name_table`).
//!
//! No I/O of its own, no unsafe code, no libc: each front end reads files, the environment, the
//! user database and its network interfaces its own way (the library through the real libc
//! functions, never its own hooks; the supervisor through std) and hands them over through
//! [`settings::System`] and [`settings::Environment`]. Routing and name decisions are pure
//! functions over [`settings::Settings`]; `route`, `names::plan` and the fake-address arithmetic
//! allocate nothing, so the library may call them from a signal handler.
//!
//! Not here, on purpose:
//! - Process state: each front end keeps its own `static` [`order::Health`] and
//!   [`order::Spreader`] (the types are here, the instances are the process's), the library's
//!   log switch, its fork-shared lock-free store of fake names
//!   (`shim/src/ffi/fakemap.rs`: a shared anonymous mapping claimed with atomics, which must
//!   survive fork and work without the heap — a different job from `name_table`).
//! - The client handshake over a descriptor. The protocol itself is already shared (the state
//!   machines of `socks_proto::client` and `socks_proto::fixed`); what is left around it is I/O
//!   and cannot be shared without weakening the library: the library drives it over raw
//!   descriptors through `dlsym(RTLD_NEXT)` pointers, heap-free for a signal handler's connect,
//!   and reports `Cause`s; the supervisor drives it over a copy of the program's descriptor
//!   (`BorrowedFd`, `poll`) and reports errnos with log text. A generic I/O trait over both
//!   would cost the library its heap-free path for nothing the protocol crate does not
//!   already share.
#![forbid(unsafe_code)]

pub mod name_table;
pub mod names;
pub mod order;
pub mod route;
pub mod settings;

pub use route::{route, route_name, Route};
pub use settings::{
    load, Environment, Hop, LogLevel, Mode, NameSettings, Protocol, Server, Settings, System,
};
