//! Liveness the service reports at `/health` that only a running component knows: whether the
//! broker connection is up. A leaf: `amqp` writes it, `api` reads it, `app` creates it.

use std::sync::atomic::{AtomicBool, Ordering};

/// Liveness of the broker connection, for `/health`.
#[derive(Debug, Default)]
pub struct Health {
    amqp: AtomicBool,
}

impl Health {
    pub fn set_amqp(&self, up: bool) {
        self.amqp.store(up, Ordering::Relaxed);
    }

    pub fn amqp_up(&self) -> bool {
        self.amqp.load(Ordering::Relaxed)
    }
}
