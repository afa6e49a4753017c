//! Layers: wrappers that any provider can be put in, each itself a [`KeyProvider`].

mod breaker;
mod limit;
mod retry;
mod stack;
mod timeout;

pub use breaker::{BreakerConfig, CircuitBreaker, CircuitState};
pub use limit::ConcurrencyLimit;
pub use retry::{Retry, RetryPolicy};
pub use stack::{LayerStack, Layered};
pub use timeout::Timeout;

#[cfg(doc)]
use crate::KeyProvider;
