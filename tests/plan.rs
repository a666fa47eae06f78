//! Integration tests: plan (being written).
