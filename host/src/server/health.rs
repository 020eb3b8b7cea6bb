//! The host's probe state: started (first load and migrations done) and draining (SIGTERM).

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub struct Health {
    started: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
