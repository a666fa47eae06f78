//! Integration tests: sim (being written).
