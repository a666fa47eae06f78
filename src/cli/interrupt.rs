//! Stopping a run from outside: SIGINT (Ctrl-C) and SIGTERM (what systemd,
//! Kubernetes and CI send) both cancel the run gracefully: nothing new
//! starts, calls in flight finish and are journaled, and the run exits 5,
//! resumable. A second signal of either kind quits at once.

use tokio_util::sync::CancellationToken;

use crate::error::{Error, ExitCode};

/// The installed signal handlers. From [`Interrupts::install`] on, a signal
/// no longer kills the process: it is delivered here.
pub(crate) struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Installs the handlers; call it inside the runtime, before the run is
    /// journaled.
    pub(crate) fn install() -> Result<Interrupts, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let failed = |e| {
                Error::new(ExitCode::Internal, "cannot install the signal handlers").with_source(e)
            };
            Ok(Interrupts {
                int: signal(SignalKind::interrupt()).map_err(failed)?,
                term: signal(SignalKind::terminate()).map_err(failed)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// Waits for the next signal and returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }

    /// Cancels `cancel` on the first signal and quits the process at once
    /// (exit 5) on the second.
    pub(crate) fn cancel_on_signal(mut self, cancel: CancellationToken) {
        tokio::spawn(async move {
            let name = self.next().await;
            eprintln!(
                "\n{name}: cancelling: no new calls; waiting for calls in flight (Ctrl-C or SIGTERM again to quit at once; `runbook resume` continues)"
            );
            cancel.cancel();
            let name = self.next().await;
            eprintln!("{name}: quitting at once; `runbook resume` re-checks what was in flight");
            std::process::exit(ExitCode::Cancelled.code());
        });
    }
}
