//! The report as Markdown (CommonMark with GFM tables): a header table,
//! then a section per concern. Every value goes through
//! [`crate::markdown`], so nothing from params or the service turns into
//! markup or breaks a table.

use std::fmt::Write as _;

use super::{RunReport, StepReport, value_text};
use crate::markdown::{Table, code, text};

fn opt_code(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_owned(), code)
}

/// A value read from a response: `-` when missing, else a code span.
fn value_cell(v: &serde_json::Value) -> String {
    if v.is_null() {
        "-".to_owned()
    } else {
        code(&value_text(v))
    }
}

/// A verified identity: its ARN, account and the RequestId of the
/// `GetCallerIdentity` call that established it.
fn identity(i: &super::IdentityReport) -> String {
    let mut out = format!("{} (account {}", code(&i.arn), code(&i.account_id));
    if let Some(id) = &i.request_id {
        let _ = write!(out, ", RequestId {}", code(id));
    }
    out.push(')');
    if let Some(who) = &i.host_user {
        let _ = write!(out, " as {}", code(who));
    }
    out
}

fn secs(s: f64) -> String {
    format!("{s:.1}s")
}

/// The report as Markdown.
pub fn markdown(r: &RunReport) -> String {
    let mut o = String::new();
    let h = &r.run;
    let _ = writeln!(o, "# Run report: {}", text(&h.playbook));
    let _ = writeln!(o);
    let mut t = Table::new(["Field", "Value"]);
    let t_ = &r.target;
    let mut rows: Vec<(&str, String)> = vec![
        ("Run", code(&h.id)),
        (
            "Playbook",
            format!("{} ({})", code(&h.playbook), code(&h.source)),
        ),
        ("Playbook SHA-256", code(&h.playbook_sha256)),
        ("Plan digest", code(&h.plan_digest)),
        ("Outcome", format!("**{}**", h.status)),
        ("Started", code(&h.started_at)),
        ("Finished", opt_code(h.finished_at.as_deref())),
        (
            "Duration",
            h.duration_secs.map_or_else(|| "-".to_owned(), secs),
        ),
        (
            "Target",
            if t_.rehearsal {
                format!("{} (rehearsal)", t_.kind)
            } else {
                t_.kind.to_owned()
            },
        ),
        (
            "Endpoints",
            if t_.endpoints.is_empty() {
                "public endpoints".to_owned()
            } else {
                t_.endpoints
                    .iter()
                    .map(|e| code(e))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        (
            "Regions",
            t_.regions
                .iter()
                .map(|e| code(e))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Account (fingerprint)", opt_code(t_.account.as_deref())),
        (
            "Started by (verified)",
            t_.operator
                .as_ref()
                .map_or_else(|| "not verified".to_owned(), identity),
        ),
    ];
    if let Some(a) = &h.abandoned {
        rows.insert(
            5,
            (
                "Abandoned",
                format!(
                    "by {} on {} at {}: {}",
                    code(&a.by),
                    code(&a.host),
                    code(&a.at),
                    text(&a.reason)
                ),
            ),
        );
    }
    for (k, v) in rows {
        t.row(vec![k.to_owned(), v]);
    }
    for i in &t_.resumed_by {
        t.row(vec!["Resumed by (verified)".to_owned(), identity(i)]);
    }
    t.write(&mut o);

    section(&mut o, "Params");
    let mut t = Table::new(["Param", "Value"]);
    for (k, v) in &r.params {
        t.row(vec![code(k), code(&v.to_string())]);
    }
    write_or_none(&mut o, &t, "No params.");

    section(&mut o, "Approvals");
    let mut t = Table::new([
        "Gate",
        "Decision",
        "By (verified)",
        "How",
        "When",
        "Plan digest",
    ]);
    for a in &r.approvals {
        let decision = match &a.reason {
            Some(reason) => format!("{}: {}", a.verdict, text(reason)),
            None => a.verdict.to_owned(),
        };
        t.row(vec![
            a.step
                .as_deref()
                .map_or_else(|| "the plan".to_owned(), |s| format!("step {}", code(s))),
            decision,
            match &a.identity {
                Some(i) => format!("{} from {}", identity(i), code(&a.by)),
                None => format!("{} (not verified)", code(&a.by)),
            },
            format!("{} ({})", a.channel, code(&a.method)),
            code(&a.at),
            code(&a.digest),
        ]);
    }
    write_or_none(&mut o, &t, "No approvals (the plan changes nothing).");

    if !r.reported.is_empty() {
        section(&mut o, "Reported values");
        for rt in &r.reported {
            let _ = writeln!(o, "### {}", text(&rt.step));
            let _ = writeln!(o);
            let fan_out = rt.rows.iter().any(|row| row.item.is_some());
            let mut header: Vec<String> = Vec::new();
            if fan_out {
                header.push("Item".to_owned());
            }
            header.extend(rt.paths.iter().cloned());
            header.push("Outcome".to_owned());
            let mut t = Table::new(header);
            for row in &rt.rows {
                let mut cells = Vec::new();
                if fan_out {
                    cells.push(opt_code(row.item.as_deref()));
                }
                cells.extend(row.values.iter().map(value_cell));
                cells.push(match &row.error {
                    Some(e) => format!("{}: {}", row.status, code(e)),
                    None => row.status.to_string(),
                });
                t.row(cells);
            }
            t.write(&mut o);
        }
    }

    section(&mut o, "Steps");
    let mut t = Table::new([
        "Step",
        "Item",
        "Kind",
        "Action",
        "Risk",
        "Outcome",
        "Observed",
        "Calls",
        "Retries",
        "Polls",
        "Reconciled",
    ]);
    for s in &r.steps {
        step_rows(&mut t, s);
    }
    t.write(&mut o);

    section(&mut o, "Mutating calls");
    let mut t = Table::new([
        "Step",
        "Item",
        "Action",
        "Risk",
        "Attempt",
        "Outcome",
        "RequestId",
        "Sent",
    ]);
    for s in &r.steps {
        for i in &s.items {
            for c in &i.mutating_calls {
                t.row(vec![
                    code(&s.id),
                    opt_code(i.item.as_deref()),
                    code(&c.action),
                    c.risk.as_str().to_owned(),
                    c.attempt.to_string(),
                    c.outcome.to_string(),
                    opt_code(c.request_id.as_deref()),
                    code(&c.sent_at),
                ]);
            }
        }
    }
    write_or_none(&mut o, &t, "No mutating call was sent.");

    section(&mut o, "Blast radius");
    let b = &r.blast_radius;
    let mut t = Table::new(["", "Read", "Mutating", "Irreversible"]);
    for (name, c) in [
        ("Planned", &b.planned),
        ("Done (actual)", &b.actual),
        ("Calls sent", &b.sent),
    ] {
        t.row(vec![
            name.to_owned(),
            c.read.to_string(),
            c.mutating.to_string(),
            c.irreversible.to_string(),
        ]);
    }
    t.write(&mut o);
    if !b.unknown_fan_out.is_empty() {
        let _ = writeln!(
            o,
            "Fan-out size unknown when planned (counted once): {}",
            b.unknown_fan_out
                .iter()
                .map(|s| code(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(o);
    }

    section(&mut o, "Compensations");
    let mut t = Table::new(["Step", "Compensates", "Outcome", "Items"]);
    for c in &r.compensations {
        t.row(vec![
            code(&c.step),
            c.compensates
                .iter()
                .map(|s| code(s))
                .collect::<Vec<_>>()
                .join(", "),
            c.status.to_string(),
            c.items
                .iter()
                .map(|s| code(s))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    write_or_none(&mut o, &t, "No compensation ran.");

    section(&mut o, "Errors");
    let mut t = Table::new(["Step", "Item", "What", "Action", "Error", "RequestId", "At"]);
    for e in &r.errors {
        let what = match e.attempt {
            Some(n) => format!("{} attempt {n}", e.kind),
            None => e.kind.clone(),
        };
        let error = match &e.code {
            Some(c) => format!("{}: {}", code(c), opt_code(e.message.as_deref())),
            None => opt_code(e.message.as_deref()),
        };
        t.row(vec![
            code(&e.step),
            opt_code(e.item.as_deref()),
            what,
            opt_code(e.action.as_deref()),
            error,
            opt_code(e.request_id.as_deref()),
            opt_code(e.at.as_deref()),
        ]);
    }
    write_or_none(&mut o, &t, "No errors.");

    section(&mut o, "Notifications");
    let mut t = Table::new([
        "Event",
        "Via",
        "Target",
        "Delivered",
        "Attempts",
        "Error",
        "At",
    ]);
    for n in &r.notifications {
        t.row(vec![
            n.about.to_string(),
            n.kind.to_string(),
            code(&n.target),
            if n.delivered { "yes" } else { "**no**" }.to_owned(),
            n.attempts.to_string(),
            opt_code(n.error.as_deref()),
            code(&n.at),
        ]);
    }
    write_or_none(&mut o, &t, "No notifications.");
    o
}

fn section(o: &mut String, title: &str) {
    let _ = writeln!(o, "## {title}");
    let _ = writeln!(o);
}

fn write_or_none(o: &mut String, t: &Table, none: &str) {
    if t.is_empty() {
        let _ = writeln!(o, "{none}");
        let _ = writeln!(o);
    } else {
        t.write(o);
    }
}

/// A row per unit (or one for a step that never ran a unit).
fn step_rows(t: &mut Table, s: &StepReport) {
    let status = |st: Option<super::StepStatus>| {
        st.map_or_else(|| "not started".to_owned(), |s| s.to_string())
    };
    let action = opt_code(s.action.as_deref());
    let kind = if s.compensation {
        format!("{} (compensation)", s.kind)
    } else {
        s.kind.to_owned()
    };
    if s.items.is_empty() {
        let outcome = match &s.detail {
            Some(d) => format!("{}: {}", status(s.status), code(d)),
            None => status(s.status),
        };
        t.row(vec![
            code(&s.id),
            "-".to_owned(),
            kind,
            action,
            s.risk.as_str().to_owned(),
            outcome,
            "-".to_owned(),
            "0".to_owned(),
            "0".to_owned(),
            "0".to_owned(),
            "-".to_owned(),
        ]);
        return;
    }
    for i in &s.items {
        let observed = i.observed.as_ref().map_or_else(
            || "-".to_owned(),
            |o| format!("{} = {}", code(&o.path), value_cell(&o.value)),
        );
        let reconciled = if i.reconciles.is_empty() {
            "-".to_owned()
        } else {
            i.reconciles
                .iter()
                .map(|r| {
                    format!(
                        "{} {} ({})",
                        code(&r.action),
                        code(&value_text(&r.observed)),
                        if r.took_effect {
                            "had taken effect"
                        } else {
                            "sent again"
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let outcome = match &i.error {
            Some(e) => format!("{}: {}", i.status, code(e)),
            None => i.status.to_string(),
        };
        t.row(vec![
            code(&s.id),
            opt_code(i.item.as_deref()),
            kind.clone(),
            action.clone(),
            s.risk.as_str().to_owned(),
            outcome,
            observed,
            i.calls.to_string(),
            i.retries.to_string(),
            i.polls.to_string(),
            reconciled,
        ]);
    }
}
