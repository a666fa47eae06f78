//! Benchmark: plan (being written).

fn main() {}
