//! The re-entry guard: while the library is working on a call in this thread, any libc call it
//! makes that lands in one of its own hooks goes straight to libc. A const-initialised
//! thread-local `Cell<bool>` has no destructor, so it never allocates or registers anything and
//! works until the thread is gone.

use std::cell::Cell;

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Held while the library handles a call; dropping it ends the protected region.
#[derive(Debug)]
pub struct Guard(());

impl Guard {
    /// `None` when this thread is already inside the library (the caller must pass through).
    pub fn enter() -> Option<Guard> {
        BUSY.with(|busy| {
            if busy.get() {
                None
            } else {
                busy.set(true);
                Some(Guard(()))
            }
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        BUSY.with(|busy| busy.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_once() {
        let outer = Guard::enter().expect("first entry");
        assert!(Guard::enter().is_none());
        drop(outer);
        assert!(Guard::enter().is_some());
    }
}
