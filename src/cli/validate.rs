//! `runbook validate PLAYBOOK...`: check playbooks without params or network.

use std::io::Write as _;
use std::path::PathBuf;

use crate::error::{Error, ExitCode};
use crate::playbook::Playbook;

/// Check playbooks and report every error at once.
///
/// Each error names the file, line and column, shows the source line with a
/// caret under the value, and gives a hint. Checks: YAML syntax, unknown
/// fields and wrong types, duplicate step ids, `needs` of unknown steps,
/// dependency cycles, unknown actions and their parameters, templates that
/// read undeclared params or steps the step does not need, bad durations,
/// `for_each` over a non-list, waits without `until`, param defaults that do
/// not fit their type. Warnings (the playbook is valid, but a step that
/// calls an API names no region, so it takes ALIBABA_CLOUD_REGION_ID or the
/// aliyun CLI profile's region_id when planned) go to stderr and do not
/// change the exit code.
///
/// Exit 0 when every playbook is valid, 3 otherwise.
///
///   runbook validate playbooks/*.yaml
#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// Playbook files to check.
    #[arg(required = true, value_name = "PLAYBOOK")]
    playbooks: Vec<PathBuf>,
}

impl ValidateArgs {
    pub(crate) fn exec(self) -> Result<ExitCode, Error> {
        let mut failed = Vec::new();
        let mut report = String::new();
        let stdout = std::io::stdout();
        for path in &self.playbooks {
            match Playbook::load(path) {
                Ok(pb) => {
                    let _ = writeln!(
                        crate::safe_text::SafeWriter::new(stdout.lock()),
                        "ok: {} ({} steps)",
                        path.display(),
                        pb.steps.len()
                    );
                    let warnings = pb.warnings();
                    if !warnings.is_empty() {
                        let _ = write!(
                            crate::safe_text::SafeWriter::new(std::io::stderr().lock()),
                            "{}",
                            warnings.render()
                        );
                    }
                }
                Err(d) => {
                    if !report.is_empty() {
                        report.push('\n');
                    }
                    report.push_str(&d.render());
                    failed.push(path.display().to_string());
                }
            }
        }
        if failed.is_empty() {
            return Ok(ExitCode::Ok);
        }
        let summary = if failed.len() == 1 {
            format!("`{}` is invalid", failed[0])
        } else {
            format!("{} playbooks are invalid", failed.len())
        };
        Err(Error::rendered(ExitCode::InvalidPlaybook, summary, report))
    }
}
