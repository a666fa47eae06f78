//! `runbook graph`: the step graph as Graphviz dot or Mermaid.

use std::path::PathBuf;

use crate::error::{Error, ExitCode};

/// Print the step graph (needs no params).
///
/// Edges point from a step to the steps that need it; mutating steps are
/// orange, irreversible ones red, compensation steps dashed.
///
///   runbook graph playbooks/dts-di-cutover.yaml | dot -Tsvg > cutover.svg
///   runbook graph playbooks/dts-di-cutover.yaml --format mermaid
#[derive(Debug, clap::Args)]
pub(crate) struct GraphArgs {
    /// The playbook to draw.
    #[arg(value_name = "PLAYBOOK")]
    playbook: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
}

/// Drawing formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GraphFormat {
    /// Graphviz dot.
    Dot,
    /// A Mermaid flowchart (renders in GitHub and GitLab markdown).
    Mermaid,
}

impl GraphArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let pb = crate::plan::load_playbook(&self.playbook)?;
        let text = match self.format {
            GraphFormat::Dot => crate::plan::graph::to_dot(&pb),
            GraphFormat::Mermaid => crate::plan::graph::to_mermaid(&pb),
        };
        super::out(&text);
        Ok(ExitCode::Ok)
    }
}
