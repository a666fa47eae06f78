//! Plan displays (being written).
