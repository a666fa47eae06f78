//! The call log: one [`CallRecord`] per request the simulator received, kept
//! in memory (for [`super::SimHandle::calls`]) and, with `--log FILE`, written
//! as JSON lines as it happens, so tests and people can see exactly what was
//! sent and what came of it. Secrets are redacted before a record exists.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{LineWriter, Write as _};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::faults::FaultKind;
use crate::cloud::signer::{SignatureVersion, v3};
use crate::cloud::{REDACTED, REDACTED_PARAMS};

/// How a call ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered 200: the call was processed and succeeded (possibly as a no-op).
    Ok,
    /// Answered 200 with a business failure: DataWorks `Success: false` and
    /// `Data.Status: fail`, or DTS `Success: false` with an `ErrCode`.
    Failed,
    /// Answered with an HTTP error: gateway refusals, throttling, an injected 500.
    Error,
    /// The connection was closed without an answer; the call was not applied.
    Dropped,
    /// The call was processed, then the connection was closed without an answer.
    AppliedThenDropped,
}

impl Outcome {
    /// The snake_case name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
            Outcome::Dropped => "dropped",
            Outcome::AppliedThenDropped => "applied_then_dropped",
        }
    }
}

/// One request the simulator received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Position in arrival order, from 1.
    pub seq: u64,
    /// When it arrived (UTC).
    pub time: jiff::Timestamp,
    /// HTTP method.
    pub method: String,
    /// `dataworks` or `dts`, when the `Version` is known.
    pub product: Option<String>,
    /// `Version` as sent.
    pub version: Option<String>,
    /// `Action` as sent (the `x-acs-action` header with signature V3).
    pub action: Option<String>,
    /// Which signature the request carried: V3 when it has an
    /// `Authorization` header (or an `x-acs-action` header and no
    /// `Signature` parameter), else V1. (Absent from logs
    /// written before V3 was served: they are V1.)
    #[serde(default)]
    pub signature: SignatureVersion,
    /// Every parameter as received (query and form body merged), with the
    /// values of [`crate::cloud::REDACTED_PARAMS`] replaced by `<redacted>`.
    /// With V3 these are the API's own parameters only: the common ones
    /// travel in headers.
    pub params: BTreeMap<String, String>,
    /// With V3, the `x-acs-*` headers received (names lower-case), the
    /// security token replaced by `<redacted>`. Empty with V1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The error code of an `error` or `failed` outcome.
    pub code: Option<String>,
    /// The error message of an `error` or `failed` outcome.
    pub message: Option<String>,
    /// HTTP status of the answer; `None` when the connection was dropped.
    pub http_status: Option<u16>,
    /// The `RequestId` of the answer (also generated for dropped calls).
    pub request_id: String,
    /// Whether the call changed a resource's state.
    pub changed: bool,
    /// Faults injected into this call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultKind>,
    /// Who signed it (the principal's ARN, e.g.
    /// `acs:ram::1:assumed-role/maint/s`), when the key was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
}

impl CallRecord {
    /// A parameter's value as received (`<redacted>` for secrets).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Whether the call reached the service and was processed (answered 200,
    /// or applied and then dropped): what "sent exactly once" is about.
    pub fn processed(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Ok | Outcome::Failed | Outcome::AppliedThenDropped
        )
    }

    /// One line for `runbook sim -v`.
    pub fn summary(&self) -> String {
        let mut ids: Vec<String> = ["DtsJobId", "FileId", "DIJobId", "SynchronizationDirection"]
            .iter()
            .filter_map(|k| self.params.get(*k).map(|v| format!("{k}={v}")))
            .collect();
        ids.sort();
        let status = self
            .http_status
            .map_or_else(|| "---".to_owned(), |s| s.to_string());
        let mut line = format!(
            "{} {} {} {} {} -> {status} {}",
            self.time.strftime("%H:%M:%S%.3f"),
            self.signature,
            self.method,
            self.action.as_deref().unwrap_or("?"),
            ids.join(" "),
            self.outcome.as_str(),
        );
        if let Some(code) = &self.code {
            line.push(' ');
            line.push_str(code);
        }
        if self.changed {
            line.push_str(" (changed)");
        }
        for fault in &self.faults {
            line.push_str(" [");
            line.push_str(fault.as_str());
            line.push(']');
        }
        line
    }
}

/// Copies request parameters, replacing secret values.
pub(crate) fn redact(params: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    params
        .iter()
        .map(|(k, v)| {
            let v = if REDACTED_PARAMS.contains(&k.as_str()) {
                REDACTED.to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// The `x-acs-*` headers of a V3 request, the security token redacted.
pub(crate) fn redact_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    headers
        .into_iter()
        .filter(|(name, _)| name.starts_with("x-acs-"))
        .map(|(name, value)| {
            let value = if name == v3::SECURITY_TOKEN {
                REDACTED
            } else {
                value
            };
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// How many records the in-memory log keeps (the oldest go first); the file
/// log keeps everything.
pub(crate) const MEMORY_LIMIT: usize = 200_000;

/// Where records go: memory, an optional JSON-lines file, optional stderr echo.
/// Under concurrent calls, file lines can be a few places out of `seq` order
/// (records are written after the state lock is released); `seq` is the order
/// in which calls were applied.
pub(crate) struct CallLog {
    records: Mutex<VecDeque<CallRecord>>,
    file: Option<Mutex<LineWriter<File>>>,
    echo: bool,
}

impl CallLog {
    /// Opens (appends to) `path` when given.
    pub(crate) fn new(path: Option<&Path>, echo: bool) -> std::io::Result<CallLog> {
        let file = match path {
            Some(path) => Some(Mutex::new(LineWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ))),
            None => None,
        };
        Ok(CallLog {
            records: Mutex::new(VecDeque::new()),
            file,
            echo,
        })
    }

    /// Records one call. A failing log file is reported once per failure on
    /// stderr and never fails the call: the simulator keeps serving.
    pub(crate) fn push(&self, record: CallRecord) {
        if let Some(file) = &self.file {
            match serde_json::to_string(&record) {
                Ok(line) => {
                    let mut file = file
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Err(e) = writeln!(file, "{line}") {
                        tracing::error!("cannot write the call log: {e}");
                    }
                }
                Err(e) => tracing::error!("cannot encode a call record: {e}"),
            }
        }
        if self.echo {
            eprintln!("{}", crate::safe_text::escape(&record.summary()));
        }
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.len() == MEMORY_LIMIT {
            records.pop_front();
        }
        records.push_back(record);
    }

    /// A copy of the records kept in memory, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<CallRecord> {
        let records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<CallRecord> = records.iter().cloned().collect();
        // Records are pushed after the state lock is released, so two
        // concurrent calls can land out of order; `seq` is the arrival order.
        out.sort_by_key(|r| r.seq);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CallRecord {
        CallRecord {
            seq: 1,
            time: jiff::Timestamp::UNIX_EPOCH,
            method: "POST".to_owned(),
            product: Some("dts".to_owned()),
            version: Some("2020-01-01".to_owned()),
            action: Some("StopDtsJob".to_owned()),
            signature: SignatureVersion::V1,
            headers: BTreeMap::new(),
            params: redact(
                &[
                    ("DtsJobId", "j1"),
                    ("Signature", "c2lnbg=="),
                    ("SecurityToken", "tok"),
                    ("AccessKeyId", "ak"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            outcome: Outcome::AppliedThenDropped,
            code: None,
            message: None,
            http_status: None,
            request_id: "R".to_owned(),
            changed: true,
            faults: vec![FaultKind::AppliedDrop],
            caller: None,
        }
    }

    #[test]
    fn redacts_secrets_and_round_trips() {
        let r = record();
        let line = serde_json::to_string(&r).unwrap();
        for secret in ["c2lnbg==", "tok", "\"ak\""] {
            assert!(!line.contains(secret), "{line}");
        }
        assert!(
            line.contains(r#""outcome":"applied_then_dropped""#),
            "{line}"
        );
        assert!(line.contains(r#""faults":["applied_drop"]"#), "{line}");
        assert_eq!(serde_json::from_str::<CallRecord>(&line).unwrap(), r);
        assert!(r.processed());
        assert_eq!(r.param("DtsJobId"), Some("j1"));
        assert_eq!(
            r.summary(),
            "00:00:00.000 v1 POST StopDtsJob DtsJobId=j1 -> --- applied_then_dropped (changed) [applied_drop]"
        );
    }

    #[test]
    fn v3_records_keep_headers_without_the_token_and_old_lines_read_as_v1() {
        let r = CallRecord {
            signature: SignatureVersion::V3,
            headers: redact_headers([
                ("x-acs-security-token", "CAIS-token-value"),
                ("x-acs-action", "StopDtsJob"),
                ("accept", "application/json"),
            ]),
            ..record()
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains("CAIS-token-value"), "{line}");
        assert!(line.contains(r#""signature":"v3""#), "{line}");
        assert_eq!(r.headers.len(), 2, "only x-acs-* headers: {:?}", r.headers);
        assert!(
            r.summary().contains(" v3 POST StopDtsJob"),
            "{}",
            r.summary()
        );
        let mut old: serde_json::Value = serde_json::to_value(record()).unwrap();
        old.as_object_mut().unwrap().remove("signature");
        let old: CallRecord = serde_json::from_value(old).unwrap();
        assert_eq!(old.signature, SignatureVersion::V1);
    }

    #[test]
    fn file_log_gets_one_json_line_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls.jsonl");
        let log = CallLog::new(Some(&path), false).unwrap();
        log.push(record());
        log.push(CallRecord { seq: 2, ..record() });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(
            log.snapshot().iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2]
        );
    }
}
