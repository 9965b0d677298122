//! The re-entry guard: while the library is working on a call in this thread, a libc call it
//! makes that lands in one of its own hooks goes straight to libc. A const-initialised
//! thread-local `Cell` has no destructor, so it never allocates or registers anything and works
//! until the thread is gone.
//!
//! A proxied connect is special: once the settings are loaded, its work calls libc only through
//! the real-function table, never through our hooks. So a connect that arrives while this
//! thread is already proxying one can only come from a signal handler that interrupted it; it
//! must be routed like any other (going direct would bypass the proxy), and `enter_connect`
//! allows it.

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

    /// Whether this guard is a connect that interrupted another connect of this thread (so
    /// the interrupted code may hold locks, malloc's among them).
    pub fn is_nested(&self) -> bool {
        self.previous == CONNECTING
    }

    /// For connect: `None` when the connect comes from the library's own work (pass it
    /// through); a guard when this thread was idle, or was connecting and `settings_ready` (a
    /// signal handler interrupted a connect: handle this one too).
    pub fn enter_connect(settings_ready: bool) -> Option<Guard> {
        STATE.with(|state| match state.get() {
            IDLE => {
                state.set(CONNECTING);
                Some(Guard { previous: IDLE })
            }
            CONNECTING if settings_ready => Some(Guard { previous: CONNECTING }),
            _ => None,
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
        assert!(Guard::enter_connect(true).is_none(), "connects from our own work pass through");
        drop(outer);
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
