//! The `runbook` binary: everything lives in the library.

fn main() {
    std::process::exit(runbook::cli::main());
}
