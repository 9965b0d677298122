//! The C boundary: every file of the library that needs `unsafe` lives here, and nowhere else
//! may use it (`#![deny(unsafe_code)]` at the crate root; each file below opts in).
//!
//! - `hooks`, `udp_hooks`, `dns_hooks`, `resolv_hooks`: the exported libc entry points. Each
//!   converts raw C arguments into safe types, runs the safe logic in `outcome::shield`, and
//!   turns the outcome into the C return value and errno (or h_errno / EAI code).
//! - `real`: libc itself, through function pointers from `dlsym(RTLD_NEXT)`, with safe wrappers
//!   where the arguments can be checked.
//! - `sockaddr`: `sockaddr_in`/`sockaddr_in6` to and from a fixed-size owned copy.
//! - `hostent`: the `struct hostent` answers of gethostbyname*, in caller or static buffers.
//! - `fakemap`: the shared memory map of fake addresses (mmap, shared across fork).
//!
//! Every `unsafe` block says why it is sound (`clippy::undocumented_unsafe_blocks` is denied),
//! and a helper that reads through a raw pointer is itself an `unsafe fn`.
//!
//! Not here: any decision (routing, proxying, names): those are safe code outside `ffi`.

pub mod dns_hooks;
pub mod fakemap;
pub mod hooks;
pub mod hostent;
pub mod real;
pub mod resolv_hooks;
pub mod sockaddr;
pub mod udp_hooks;
