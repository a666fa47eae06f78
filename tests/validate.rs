//! Integration tests: validate (being written).
