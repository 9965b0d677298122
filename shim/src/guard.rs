//! The re-entry guard: while the library is working on a call in this thread, a libc call it
//! makes that lands in one of its own hooks goes straight to libc. A const-initialised
//! thread-local `Cell` has no destructor, so it never allocates or registers anything and works
//! until the thread is gone.
//!
//! A connect is special: once the settings are loaded, it is always routed, even when this
//! thread is already inside the library. A proxied connect's own work calls libc only through
//! the real-function table, so a connect arriving during it can only come from a signal
//! handler that interrupted it; a connect arriving inside another hook (a slow local
//! getaddrinfo, say) comes from such a handler or from a name-service module the real
//! resolver runs. Either way it must be routed like any other (going direct would bypass the
//! proxy), without the heap: the interrupted code may hold malloc's lock (`is_nested`). Only
//! while the settings are being loaded is no guard given (there are no rules yet to route by):
//! a connect or a TCP Fast Open send to a local socket goes on (the loader's own name lookups
//! reach nscd or sssd so) and one to an IP address fails closed, with `Cause::SignalContext`
//! (it can only come from a signal handler or a name-service module; never direct): one
//! decision for both, `intercept::connect_while_loading`.
//!
//! The same holds for the other calls that could carry a proxied destination or a remote
//! name out of the workstation — datagram sends (sendto, sendmsg, sendmmsg) and name lookups
//! (getaddrinfo, gethostbyname*, res_*, getaddrinfo_a): `enter_routed` always gives them a
//! guard, nested inside the library, and they decide without the heap (or fail with
//! `Cause::SignalContext`). Unlike connects they do not pass through while the settings load:
//! the loader resolves names with the real functions, never through these hooks, so a nested
//! lookup or send then comes from a signal handler, and with no rules read yet it fails closed
//! (numeric names and non-IP destinations aside).

use std::cell::Cell;

/// This thread is not inside the library.
const IDLE: u8 = 0;
/// Inside a hook whose libc calls may come back to our hooks (resolver, settings, BIND…).
const INSIDE: u8 = 1;
/// Inside a connect.
const CONNECTING: u8 = 2;

thread_local! {
    static STATE: Cell<u8> = const { Cell::new(IDLE) };
}

/// Held while the library handles a call; dropping it restores the previous state.
#[derive(Debug)]
pub struct Guard {
    previous: u8,
}

impl Guard {
    /// `None` when this thread is already inside the library (the caller must pass through).
    pub fn enter() -> Option<Guard> {
        STATE.with(|state| match state.get() {
            IDLE => {
                state.set(INSIDE);
                Some(Guard { previous: IDLE })
            }
            _ => None,
        })
    }

    /// Whether this guard is a connect that arrived while the thread was already inside the
    /// library (so the interrupted code may hold locks, malloc's among them: no heap).
    pub fn is_nested(&self) -> bool {
        self.previous != IDLE
    }

    /// For connect: a guard when this thread was idle, or when it was inside the library and
    /// `settings_ready` (handle this connect too, without the heap: see `is_nested`); `None`
    /// only while the settings are being loaded (the loader's own connects pass through).
    pub fn enter_connect(settings_ready: bool) -> Option<Guard> {
        STATE.with(|state| match state.get() {
            IDLE => {
                state.set(CONNECTING);
                Some(Guard { previous: IDLE })
            }
            previous if settings_ready => Some(Guard { previous }),
            _ => None,
        })
    }

    /// For datagram sends and name lookups: a guard when idle (entering the ordinary
    /// "inside" state), a nested one (see `is_nested`) inside the library, whether or not the
    /// settings are loaded yet (the caller checks).
    pub fn enter_routed() -> Guard {
        STATE.with(|state| match state.get() {
            IDLE => {
                state.set(INSIDE);
                Guard { previous: IDLE }
            }
            previous => Guard { previous },
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        STATE.with(|state| state.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_once() {
        let outer = Guard::enter().expect("first entry");
        assert!(Guard::enter().is_none());
        assert!(Guard::enter_connect(false).is_none(), "the settings loader's connects pass");
        let inner = Guard::enter_connect(true).expect("a connect inside another hook is routed");
        assert!(inner.is_nested(), "without the heap");
        drop(inner);
        assert!(Guard::enter().is_none(), "still inside the outer hook");
        drop(outer);
        let idle = Guard::enter_connect(true).expect("an ordinary connect");
        assert!(!idle.is_nested());
        drop(idle);
        assert!(Guard::enter().is_some());
    }

    #[test]
    fn sends_and_lookups_inside_the_library_are_nested() {
        let outer = Guard::enter().expect("first entry");
        let nested = Guard::enter_routed();
        assert!(nested.is_nested(), "a handler's send or lookup is decided without the heap");
        drop(nested);
        drop(outer);
        let idle = Guard::enter_routed();
        assert!(!idle.is_nested());
        assert!(Guard::enter().is_none(), "inside the library now");
        drop(idle);
        assert!(Guard::enter().is_some());
    }

    #[test]
    fn a_connect_interrupting_a_connect_is_handled_once_settings_exist() {
        let outer = Guard::enter_connect(true).expect("first connect");
        assert!(Guard::enter().is_none(), "resolver hooks inside a connect pass through");
        assert!(Guard::enter_connect(false).is_none(), "during the settings load: pass through");
        let nested = Guard::enter_connect(true).expect("a signal handler's connect");
        drop(nested);
        assert!(Guard::enter().is_none(), "still connecting");
        drop(outer);
        assert!(Guard::enter().is_some());
    }
}
