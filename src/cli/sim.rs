//! `runbook sim` (being written).

use crate::error::{Error, ExitCode};

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {}

impl SimArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook sim` is not built yet"))
    }
}
