//! Approvals with verified identities (schema version 5): who approved (the
//! ARN, account and RequestId of their STS `GetCallerIdentity`), how
//! ([`ApprovalChannel`]), whether it was an approval or a rejection; who
//! started and resumed each run, verified the same way; and pre-approvals
//! of a plan digest, given ahead of an unattended run, with their expiry.
//!
//! Every table here is append-only in the database itself (triggers on
//! both backends): a rejection, a second approval or an expired
//! pre-approval is a new row, never an update.

use serde::{Deserialize, Serialize};

use super::{Journal, JournalError, Row, Sv, now, opt};
use crate::run::identity::VerifiedIdentity;

/// Version 5 in SQLite's dialect.
pub(super) const V5: &str = "
ALTER TABLE approvals ADD COLUMN channel TEXT;
ALTER TABLE approvals ADD COLUMN arn TEXT;
ALTER TABLE approvals ADD COLUMN account_id TEXT;
ALTER TABLE approvals ADD COLUMN identity_request_id TEXT;
ALTER TABLE approvals ADD COLUMN verdict TEXT;
ALTER TABLE approvals ADD COLUMN reason TEXT;
CREATE TABLE run_identities (
    run_id TEXT NOT NULL,
    role TEXT NOT NULL,
    arn TEXT NOT NULL,
    account_id TEXT NOT NULL,
    request_id TEXT,
    operator TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX run_identities_run ON run_identities (run_id);
CREATE TABLE pre_approvals (
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    arn TEXT NOT NULL,
    account_id TEXT NOT NULL,
    identity_request_id TEXT,
    at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX pre_approvals_digest ON pre_approvals (digest);
CREATE TRIGGER run_identities_no_update BEFORE UPDATE ON run_identities
BEGIN SELECT RAISE(ABORT, 'journal table run_identities is append-only'); END;
CREATE TRIGGER run_identities_no_delete BEFORE DELETE ON run_identities
BEGIN SELECT RAISE(ABORT, 'journal table run_identities is append-only'); END;
CREATE TRIGGER pre_approvals_no_update BEFORE UPDATE ON pre_approvals
BEGIN SELECT RAISE(ABORT, 'journal table pre_approvals is append-only'); END;
CREATE TRIGGER pre_approvals_no_delete BEFORE DELETE ON pre_approvals
BEGIN SELECT RAISE(ABORT, 'journal table pre_approvals is append-only'); END;
";

/// Version 5 in PostgreSQL's dialect (`rowid` columns keep the order).
pub(super) const PG_V5: &str = "
ALTER TABLE approvals ADD COLUMN channel TEXT;
ALTER TABLE approvals ADD COLUMN arn TEXT;
ALTER TABLE approvals ADD COLUMN account_id TEXT;
ALTER TABLE approvals ADD COLUMN identity_request_id TEXT;
ALTER TABLE approvals ADD COLUMN verdict TEXT;
ALTER TABLE approvals ADD COLUMN reason TEXT;
CREATE TABLE run_identities (
    rowid BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    role TEXT NOT NULL,
    arn TEXT NOT NULL,
    account_id TEXT NOT NULL,
    request_id TEXT,
    operator TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX run_identities_run ON run_identities (run_id);
CREATE TABLE pre_approvals (
    rowid BIGSERIAL PRIMARY KEY,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    arn TEXT NOT NULL,
    account_id TEXT NOT NULL,
    identity_request_id TEXT,
    at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX pre_approvals_digest ON pre_approvals (digest);
CREATE TRIGGER run_identities_append_only BEFORE UPDATE OR DELETE ON run_identities
    FOR EACH ROW EXECUTE FUNCTION runbook_append_only();
CREATE TRIGGER pre_approvals_append_only BEFORE UPDATE OR DELETE ON pre_approvals
    FOR EACH ROW EXECUTE FUNCTION runbook_append_only();
";

/// How an approval was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalChannel {
    /// `yes` typed on the run's terminal.
    Terminal,
    /// `--yes` or `--approve STEP` on the command line.
    Flag,
    /// `runbook approve RUN_ID [STEP]` (or `reject`), from any host.
    Command,
    /// `runbook approve --plan PLAN.json`, ahead of the run.
    PreApproval,
}

impl ApprovalChannel {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalChannel::Terminal => "terminal",
            ApprovalChannel::Flag => "flag",
            ApprovalChannel::Command => "command",
            ApprovalChannel::PreApproval => "pre-approval",
        }
    }

    /// The channel of a row from before version 5, from its method
    /// (`terminal`, `--yes`, `--approve`).
    fn of_method(method: &str) -> ApprovalChannel {
        match method {
            "terminal" => ApprovalChannel::Terminal,
            _ => ApprovalChannel::Flag,
        }
    }

    fn parse(text: &str) -> Option<ApprovalChannel> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

impl std::fmt::Display for ApprovalChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a row approves or rejects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (every row from before version 5).
    #[default]
    Approved,
    /// Stop (`runbook reject`).
    Rejected,
}

impl Verdict {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
        }
    }
}

/// An approval (or rejection) to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApproval {
    /// The `approve` step (`None`: the plan).
    pub step_id: Option<String>,
    /// `user@host` of whoever gave it (a label; the identity is below).
    pub by: String,
    /// `terminal`, `--yes`, `--approve`, `approve` or `pre-approval`: what
    /// exactly was used.
    pub method: String,
    /// How it was given.
    pub channel: ApprovalChannel,
    /// The plan digest it is bound to.
    pub digest: String,
    /// Who gave it, verified through STS (`None` only where no identity
    /// could be had and none was needed).
    pub identity: Option<VerifiedIdentity>,
    /// Approved or rejected.
    pub verdict: Verdict,
    /// Why (a rejection's `--reason`).
    pub reason: Option<String>,
}

/// A verified identity as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    /// The ARN STS returned.
    pub arn: String,
    /// Its account.
    pub account_id: String,
    /// The RequestId of the `GetCallerIdentity` call.
    pub request_id: Option<String>,
}

impl IdentityRecord {
    fn of(v: &VerifiedIdentity) -> IdentityRecord {
        IdentityRecord {
            arn: v.arn.clone(),
            account_id: v.account_id.clone(),
            request_id: v.request_id.clone(),
        }
    }

    /// The principal it stands for (`None` for an ARN that does not read).
    pub fn principal(&self) -> Option<crate::cloud::principal::Principal> {
        crate::cloud::principal::Principal::of_arn(&self.arn).ok()
    }
}

/// Who started or resumed a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityRole {
    /// Started it (`runbook run`).
    Started,
    /// Resumed it (`runbook resume`).
    Resumed,
}

impl IdentityRole {
    fn as_str(self) -> &'static str {
        match self {
            IdentityRole::Started => "started",
            IdentityRole::Resumed => "resumed",
        }
    }
}

/// A verified identity that started or resumed a run, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIdentityRow {
    /// Started or resumed.
    pub role: IdentityRole,
    /// Who, as STS said.
    pub identity: IdentityRecord,
    /// `user@host`.
    pub operator: String,
    /// When.
    pub at: String,
}

/// A pre-approval of a plan digest, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreApprovalRow {
    /// The plan digest approved.
    pub digest: String,
    /// The playbook's name.
    pub name: String,
    /// `user@host` of the approver.
    pub approved_by: String,
    /// Who approved, as STS said.
    pub identity: IdentityRecord,
    /// When.
    pub at: String,
    /// Until when it may be used.
    pub expires_at: String,
}

impl PreApprovalRow {
    /// Whether it may still be used at `now` (an expiry that does not read
    /// never may).
    pub fn valid_at(&self, now: jiff::Timestamp) -> bool {
        self.expires_at
            .parse::<jiff::Timestamp>()
            .is_ok_and(|e| now < e)
    }
}

/// The columns of an approval row, in [`approval_row`]'s order.
pub(super) const APPROVAL_COLUMNS: &str = "step_id, approved_by, method, digest, at, channel, arn, account_id, identity_request_id, verdict, reason";

/// An approval row read back.
pub(super) fn approval_row(r: &Row) -> Result<super::ApprovalRow, JournalError> {
    let method = r.text(2)?;
    let channel = match r.opt_text(5)? {
        None => ApprovalChannel::of_method(&method),
        Some(c) => ApprovalChannel::parse(&c)
            .ok_or_else(|| JournalError::Corrupt(format!("unknown approval channel `{c}`")))?,
    };
    let identity = match (r.opt_text(6)?, r.opt_text(7)?) {
        (Some(arn), Some(account_id)) => Some(IdentityRecord {
            arn,
            account_id,
            request_id: r.opt_text(8)?,
        }),
        _ => None,
    };
    let verdict = match r.opt_text(9)?.as_deref() {
        None | Some("approved") => Verdict::Approved,
        Some("rejected") => Verdict::Rejected,
        Some(other) => {
            return Err(JournalError::Corrupt(format!(
                "unknown approval verdict `{other}`"
            )));
        }
    };
    Ok(super::ApprovalRow {
        step_id: r.opt_text(0)?,
        approved_by: r.text(1)?,
        method,
        digest: r.text(3)?,
        at: r.text(4)?,
        channel,
        identity,
        verdict,
        reason: r.opt_text(10)?,
    })
}

impl Journal {
    /// Records an approval (or a rejection) of run `run_id`, bound to its
    /// digest, with who gave it and how. Append-only.
    pub async fn record_approval(&self, run_id: &str, a: &NewApproval) -> Result<(), JournalError> {
        let id = a.identity.as_ref();
        self.send_acked(
            "INSERT INTO approvals (run_id, step_id, approved_by, method, digest, at, channel, arn, account_id, identity_request_id, verdict, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            vec![
                run_id.sv(),
                opt(a.step_id.as_deref()),
                a.by.as_str().sv(),
                a.method.as_str().sv(),
                a.digest.as_str().sv(),
                now().sv(),
                a.channel.as_str().sv(),
                opt(id.map(|i| i.arn.as_str())),
                opt(id.map(|i| i.account_id.as_str())),
                opt(id.and_then(|i| i.request_id.as_deref())),
                a.verdict.as_str().sv(),
                opt(a.reason.as_deref()),
            ],
        )
        .await
    }

    /// The approval rows of run `id` (its full id), in the order given.
    pub fn approvals(&self, id: &str) -> Result<Vec<super::ApprovalRow>, JournalError> {
        self.query(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE run_id = ?1 ORDER BY rowid"),
            vec![id.sv()],
        )?
        .iter()
        .map(approval_row)
        .collect()
    }

    /// Records that `identity` (`operator`, `user@host`) started or resumed
    /// run `run_id`. Append-only.
    pub async fn record_identity(
        &self,
        run_id: &str,
        role: IdentityRole,
        identity: &VerifiedIdentity,
        operator: &str,
    ) -> Result<(), JournalError> {
        self.send_acked(
            "INSERT INTO run_identities (run_id, role, arn, account_id, request_id, operator, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            vec![
                run_id.sv(),
                role.as_str().sv(),
                identity.arn.as_str().sv(),
                identity.account_id.as_str().sv(),
                opt(identity.request_id.as_deref()),
                operator.sv(),
                now().sv(),
            ],
        )
        .await
    }

    /// Who started and resumed run `id` (its full id), in order.
    pub fn run_identities(&self, id: &str) -> Result<Vec<RunIdentityRow>, JournalError> {
        self.query(
            "SELECT role, arn, account_id, request_id, operator, at FROM run_identities WHERE run_id = ?1 ORDER BY rowid",
            vec![id.sv()],
        )?
        .iter()
        .map(|r| {
            let role = match r.text(0)?.as_str() {
                "started" => IdentityRole::Started,
                "resumed" => IdentityRole::Resumed,
                other => {
                    return Err(JournalError::Corrupt(format!(
                        "unknown identity role `{other}`"
                    )));
                }
            };
            Ok(RunIdentityRow {
                role,
                identity: IdentityRecord {
                    arn: r.text(1)?,
                    account_id: r.text(2)?,
                    request_id: r.opt_text(3)?,
                },
                operator: r.text(4)?,
                at: r.text(5)?,
            })
        })
        .collect()
    }

    /// Records a pre-approval of plan `digest` (playbook `name`) by
    /// `identity` (`by`, `user@host`), usable until `expires_at`.
    /// Append-only; returns the row as stored.
    pub async fn record_pre_approval(
        &self,
        digest: &str,
        name: &str,
        by: &str,
        identity: &VerifiedIdentity,
        expires_at: jiff::Timestamp,
    ) -> Result<PreApprovalRow, JournalError> {
        let row = PreApprovalRow {
            digest: digest.to_owned(),
            name: name.to_owned(),
            approved_by: by.to_owned(),
            identity: IdentityRecord::of(identity),
            at: now(),
            expires_at: expires_at.to_string(),
        };
        self.send_acked(
            "INSERT INTO pre_approvals (digest, name, approved_by, arn, account_id, identity_request_id, at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            vec![
                row.digest.as_str().sv(),
                row.name.as_str().sv(),
                row.approved_by.as_str().sv(),
                row.identity.arn.as_str().sv(),
                row.identity.account_id.as_str().sv(),
                opt(row.identity.request_id.as_deref()),
                row.at.as_str().sv(),
                row.expires_at.as_str().sv(),
            ],
        )
        .await?;
        Ok(row)
    }

    /// The pre-approvals of plan `digest`, oldest first (expired ones too:
    /// the caller decides with [`PreApprovalRow::valid_at`]).
    pub fn pre_approvals(&self, digest: &str) -> Result<Vec<PreApprovalRow>, JournalError> {
        self.query(
            "SELECT digest, name, approved_by, arn, account_id, identity_request_id, at, expires_at FROM pre_approvals WHERE digest = ?1 ORDER BY rowid",
            vec![digest.sv()],
        )?
        .iter()
        .map(|r| {
            Ok(PreApprovalRow {
                digest: r.text(0)?,
                name: r.text(1)?,
                approved_by: r.text(2)?,
                identity: IdentityRecord {
                    arn: r.text(3)?,
                    account_id: r.text(4)?,
                    request_id: r.opt_text(5)?,
                },
                at: r.text(6)?,
                expires_at: r.text(7)?,
            })
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{TestDb, yes};
    use super::*;
    use crate::run::journal::{JournalUrl, SCHEMA_VERSION};

    fn alice() -> VerifiedIdentity {
        VerifiedIdentity::recorded("acs:ram::1:user/alice", "1", Some("REQ-A".into())).unwrap()
    }

    /// Every row kept as written, on `j`: an approval and a rejection with
    /// their identities, the run's starter, pre-approvals with expiries.
    async fn rows_round_trip(j: &Journal) {
        j.create_run("r1", "demo", "p.yaml", "abc", "{}".into(), "{}".into())
            .await
            .unwrap();
        j.record_approval("r1", &yes("abc")).await.unwrap();
        let rejected = NewApproval {
            step_id: Some("gate".into()),
            by: "alice@laptop".into(),
            method: "reject".into(),
            channel: ApprovalChannel::Command,
            identity: Some(alice()),
            verdict: Verdict::Rejected,
            reason: Some("not tonight".into()),
            ..yes("abc")
        };
        j.record_approval("r1", &rejected).await.unwrap();
        j.record_identity("r1", IdentityRole::Started, &alice(), "alice@laptop")
            .await
            .unwrap();
        let rec = j.load_run("r1").unwrap();
        assert_eq!(rec.approvals.len(), 2);
        assert_eq!(rec.approvals[0].channel, ApprovalChannel::Flag);
        assert_eq!(rec.approvals[0].identity, None);
        assert_eq!(rec.approvals[0].verdict, Verdict::Approved);
        let r = &rec.approvals[1];
        assert_eq!(
            (
                r.step_id.as_deref(),
                r.channel,
                r.verdict,
                r.reason.as_deref()
            ),
            (
                Some("gate"),
                ApprovalChannel::Command,
                Verdict::Rejected,
                Some("not tonight")
            )
        );
        let id = r.identity.as_ref().unwrap();
        assert_eq!(
            (
                id.arn.as_str(),
                id.account_id.as_str(),
                id.request_id.as_deref()
            ),
            ("acs:ram::1:user/alice", "1", Some("REQ-A"))
        );
        assert_eq!(rec.identities.len(), 1);
        assert_eq!(rec.identities[0].role, IdentityRole::Started);
        assert_eq!(rec.identities[0].operator, "alice@laptop");
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        j.record_pre_approval(
            "d1",
            "demo",
            "alice@laptop",
            &alice(),
            at("2026-12-01T00:00:00Z"),
        )
        .await
        .unwrap();
        j.record_pre_approval(
            "d2",
            "demo",
            "alice@laptop",
            &alice(),
            at("2026-12-01T00:00:00Z"),
        )
        .await
        .unwrap();
        let pre = j.pre_approvals("d1").unwrap();
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0].identity.request_id.as_deref(), Some("REQ-A"));
        assert!(pre[0].valid_at(at("2026-11-30T23:59:59Z")));
        assert!(!pre[0].valid_at(at("2026-12-01T00:00:00Z")));
        assert!(j.pre_approvals("d3").unwrap().is_empty());
    }

    #[tokio::test]
    async fn approvals_identities_and_pre_approvals_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        rows_round_trip(&j).await;
        // Append-only in the database itself.
        let conn = rusqlite::Connection::open(dir.path().join("journal.db")).unwrap();
        for sql in [
            "UPDATE approvals SET verdict = 'approved'",
            "DELETE FROM approvals",
            "UPDATE run_identities SET arn = 'acs:ram::1:user/mallory'",
            "DELETE FROM run_identities",
            "UPDATE pre_approvals SET expires_at = '2099-01-01T00:00:00Z'",
            "DELETE FROM pre_approvals",
        ] {
            let e = conn.execute_batch(sql).unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn approvals_identities_and_pre_approvals_round_trip_on_postgres() {
        let db = TestDb::new();
        let j = Journal::open_url(&db.url).unwrap();
        rows_round_trip(&j).await;
        for sql in [
            "UPDATE run_identities SET arn = 'acs:ram::1:user/mallory'",
            "DELETE FROM run_identities",
            "UPDATE pre_approvals SET expires_at = '2099-01-01T00:00:00Z'",
            "DELETE FROM pre_approvals",
            "UPDATE approvals SET verdict = 'approved'",
        ] {
            let url = db.url.clone();
            let err = std::thread::spawn(move || {
                let super::super::Location::Postgres(t) = url.0 else {
                    unreachable!()
                };
                t.connect().unwrap().batch_execute(sql).unwrap_err()
            })
            .join()
            .unwrap();
            assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
        }
    }

    #[tokio::test]
    async fn a_version_4_journal_is_migrated_and_its_approvals_read_as_flag_or_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        {
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for step in &super::super::MIGRATIONS[..4] {
                tx.execute_batch(step).unwrap();
            }
            tx.execute_batch(
                "INSERT INTO schema_version (version) VALUES (4);
                 INSERT INTO runs (id, name, source, digest, plan_json, options_json, status, created_at, updated_at) VALUES ('r1', 'n', 'p.yaml', 'd', '{}', '{}', 'succeeded', 't', 't');
                 INSERT INTO approvals (run_id, step_id, approved_by, method, digest, at) VALUES ('r1', NULL, 'me@host', 'terminal', 'd', 't');
                 INSERT INTO approvals (run_id, step_id, approved_by, method, digest, at) VALUES ('r1', 'gate', 'me@host', '--approve', 'd', 't');",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let j = Journal::open_url(&JournalUrl::in_state_dir(dir.path())).unwrap();
        let rec = j.load_run("r1").unwrap();
        let channels: Vec<ApprovalChannel> = rec.approvals.iter().map(|a| a.channel).collect();
        assert_eq!(channels, [ApprovalChannel::Terminal, ApprovalChannel::Flag]);
        assert!(
            rec.approvals
                .iter()
                .all(|a| a.identity.is_none() && a.verdict == Verdict::Approved)
        );
        assert!(rec.identities.is_empty());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
