//! `runbook schema` (being written).

use crate::error::{Error, ExitCode};

/// (being written)
#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {}

impl SchemaArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        Err(Error::new(ExitCode::Internal, "`runbook schema` is not built yet"))
    }
}
