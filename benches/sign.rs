//! Benchmark: sign (being written).

fn main() {}
