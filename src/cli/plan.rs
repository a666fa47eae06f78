//! `runbook plan` (being written).

use crate::error::{Error, ExitCode};

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {}

impl PlanArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook plan` is not built yet"))
    }
}
