//! Benchmark: sim (being written).

fn main() {}
