//! A counting semaphore in front of the pooling allocator.
//!
//! The pool fails an instantiation outright when its slots run out; callers should queue
//! instead. std has no semaphore and tokio's is async-only (plugin calls are synchronous and run
//! on blocking threads), so this is the textbook Mutex + Condvar one.

use std::sync::{Condvar, Mutex};

pub struct Permits {
    free: Mutex<usize>,
    released: Condvar,
}

pub struct Permit<'a>(&'a Permits);

impl Permits {
    pub fn new(count: usize) -> Permits {
        Permits { free: Mutex::new(count), released: Condvar::new() }
    }

    /// Wait until a slot is free.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.released.notify_one();
    }
}
