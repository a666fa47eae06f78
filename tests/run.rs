//! Integration tests: run (being written).
