//! The top-level error every subcommand returns, and the exit codes.

use std::fmt;

/// Process exit codes (documented in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// Everything asked for was done.
    Ok = 0,
    /// A run finished with a failed step (or a wait that failed / timed out).
    StepFailed = 1,
    /// Bad command line or parameters (clap uses 2 as well).
    Usage = 2,
    /// The playbook (or plan file) is invalid.
    InvalidPlaybook = 3,
    /// Credentials, endpoint or API error outside a step.
    Api = 4,
    /// Cancelled (Ctrl-C or SIGTERM) before the run finished; resume it.
    Cancelled = 5,
    /// Refused before anything is sent: approval missing, another run holds
    /// the lock, the plan file no longer matches its playbook and params, or
    /// a resume would cross between the simulator and the cloud; also a run
    /// whose approval was rejected (`runbook reject`), which sends nothing
    /// after the gate.
    Refused = 6,
    /// The run waits for an approval given from elsewhere (`runbook
    /// approve`), parked in the journal (`--detach`); `runbook resume`
    /// continues it once approved.
    WaitingApproval = 7,
    /// The journal could not be reached (or was locked) for longer than
    /// the run's `--journal-patience` (or its lease): the run stopped with
    /// nothing sent meanwhile, as journaled; resume it.
    JournalUnreachable = 8,
    /// The journal or another local resource failed.
    Internal = 10,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// An error a user sees: a message that reads well after `error: `, an exit
/// code, and optionally a pre-rendered report (diagnostics with source lines)
/// that is printed instead of the message.
#[derive(Debug)]
pub struct Error {
    /// Exit code for this failure.
    pub exit: ExitCode,
    /// The one-line message (lower-case fragment).
    pub message: String,
    /// A fully rendered multi-line report, printed as is when present.
    pub rendered: Option<String>,
    /// What to do about it, printed as `hint: ...`.
    pub hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A new error with an exit code and message.
    pub fn new(exit: ExitCode, message: impl Into<String>) -> Error {
        Error {
            exit,
            message: message.into(),
            rendered: None,
            hint: None,
            source: None,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(ExitCode::Usage, message)
    }

    /// An error whose full text has already been rendered (diagnostics).
    pub fn rendered(exit: ExitCode, summary: impl Into<String>, rendered: String) -> Error {
        Error {
            rendered: Some(rendered),
            ..Error::new(exit, summary)
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// Adds the underlying cause (shown as `caused by:`).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// Writes the error as the user sees it: `error: ...`, causes, hint.
    pub fn render(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        if let Some(text) = &self.rendered {
            write!(out, "{text}")?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
        } else {
            writeln!(out, "error: {}", self.message)?;
            let mut cause = self
                .source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static));
            while let Some(e) = cause {
                writeln!(out, "  caused by: {e}")?;
                cause = e.source();
            }
        }
        if let Some(hint) = &self.hint {
            writeln!(out, "  hint: {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Missing or unusable credentials: exit code 4, with what to do about it.
impl From<crate::cloud::credentials::CredentialsError> for Error {
    fn from(e: crate::cloud::credentials::CredentialsError) -> Error {
        Error::new(ExitCode::Api, e.to_string()).with_hint(e.hint())
    }
}

/// Result alias for subcommands.
pub type Result<T, E = Error> = std::result::Result<T, E>;
