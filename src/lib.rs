//! runbook: runs YAML playbooks of Alibaba Cloud control-plane steps as a DAG.
//!
//! ```text
//! playbook (YAML) --load+validate--> Playbook --build--> Plan --run--> Run (journal, report)
//!                                                          |            |
//!                                                       display      cloud::CloudApi --HTTP--> Alibaba Cloud RPC API
//!                                                    (dry-run review)                  (or: sim, the local simulator)
//! ```
//!
//! Modules and the one direction their imports point:
//!
//! - [`duration`]: a leaf. The one parser and printer of durations.
//! - [`limits`]: a leaf. The size caps on input files and HTTP answers, and
//!   the one reader of input files (regular files only, capped).
//! - [`markdown`]: a leaf. Markdown that renders as it says (code spans,
//!   escaped text, GFM tables) for reports.
//! - [`dag`]: a leaf. The step graph's algorithms (cycles, topological order,
//!   levels, longest path, reachability), all iterative.
//! - [`cloud`]: signing, credentials, endpoints, the HTTP client, the
//!   action catalogue and [`cloud::ApiError`]. Imports only [`limits`] from here.
//! - [`playbook`]: the language as written: load YAML with positions, validate,
//!   render diagnostics with `file:line:col`. Uses `cloud::actions`.
//! - [`plan`]: a validated playbook plus params becomes a [`plan::Plan`]: steps in
//!   topological order, rendered parameters, requests, risk; display formats.
//! - [`run`]: executes a `Plan` against a `CloudApi`: scheduler, retries, waits,
//!   the SQLite journal, resume, events, the terminal view and the run report
//!   for the change ticket. Never sees a `Playbook`.
//! - [`notify`]: notifications of a run (webhook, DingTalk, Slack), retried
//!   and never fatal. Uses `plan` and `run`.
//! - [`sim`]: the local simulator of the DataWorks and DTS APIs. Uses only `cloud`.
//! - [`window`]: change windows (slots in a time zone, blackout dates,
//!   `--not-before`/`--not-after`) as a pure function of the time.
//! - [`cli`]: argument parsing and the subcommands; uses everything.

pub mod cli;
pub mod cloud;
pub mod dag;
pub mod duration;
pub mod error;
pub mod limits;
pub mod markdown;
pub mod notify;
pub mod plan;
pub mod playbook;
pub mod run;
pub mod safe_text;
pub mod sim;
pub mod window;

pub use error::{Error, ExitCode};
