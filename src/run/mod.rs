//! The executor (being written).

pub mod event;
pub mod journal;
pub mod ratelimit;
pub mod retry;
