//! `runbook schema`: print the playbook JSON Schema.

use crate::error::{Error, ExitCode};

/// Print the JSON Schema of the playbook language.
///
/// Editors use it for completion and checks; the example playbooks point at
/// the committed copy with a first line of
/// `# yaml-language-server: $schema=../schemas/playbook.schema.json`.
///
///   runbook schema > playbook.schema.json
#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {}

impl SchemaArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        super::out(crate::playbook::SCHEMA);
        Ok(ExitCode::Ok)
    }
}
