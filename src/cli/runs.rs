//! `runbook runs` and `runbook show` (being written).

use crate::error::{Error, ExitCode};

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct RunsArgs {}

impl RunsArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook runs` is not built yet"))
    }
}

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {}

impl ShowArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook show` is not built yet"))
    }
}
