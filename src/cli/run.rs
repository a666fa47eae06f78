//! `runbook run` and `runbook resume` (being written).

use crate::error::{Error, ExitCode};

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {}

impl RunArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook run` is not built yet"))
    }
}

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {}

impl ResumeArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook resume` is not built yet"))
    }
}
