//! `runbook graph` (being written).

use crate::error::{Error, ExitCode};

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct GraphArgs {}

impl GraphArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook graph` is not built yet"))
    }
}
