//! Plan displays: human text for the terminal, markdown for a change ticket,
//! and the stable JSON (`serde_json::to_string_pretty(&plan)`).
//!
//! All three are pure functions of the plan (sorted maps, the plan's own
//! step order), so the same playbook and params always print the same
//! bytes: a reviewer can diff two plans, and tests snapshot them. The one
//! exception is asked for by name: [`render_at`] adds to the text and
//! markdown (never to the JSON) whether the change window is open at the
//! time given and whether the worst case fits in what is left of it.

use crate::cloud::signer::SignatureVersion;
use crate::markdown;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::{
    Backoff, Condition, Matcher, OnFailure, Plan, PlannedStep, RetryPolicy, StepKind, When,
};
use crate::cloud::Risk;
use crate::duration::format as format_duration;

/// Output formats of `runbook plan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal and a reviewer.
    Text,
    /// For a change ticket: tables and a checklist.
    Markdown,
    /// Stable, machine-readable: the plan file's format.
    Json,
}

/// Renders the plan in `format`.
pub fn render(plan: &Plan, format: Format) -> String {
    render_at(plan, format, None)
}

/// Renders the plan in `format`; with `now`, the text and markdown also
/// say whether the change window is open then and whether the worst case
/// fits in what is left of it (the JSON stays a pure function of the plan).
pub fn render_at(plan: &Plan, format: Format, now: Option<jiff::Timestamp>) -> String {
    match format {
        Format::Text => text_at(plan, now),
        Format::Markdown => markdown_at(plan, now),
        Format::Json => json(plan),
    }
}

/// The window as written: `Sat 02:00-05:00 (Asia/Shanghai); blackout 2026-12-31`.
/// The region of the steps the playbook gives none, and where it came
/// from (only when a step uses it).
fn region_line(plan: &Plan) -> Option<String> {
    plan.default_region.as_ref().map(|d| {
        format!(
            "{} for the steps that name none (from {} when planned)",
            d.region,
            d.origin()
        )
    })
}

fn window_line(plan: &Plan) -> Option<String> {
    plan.window.as_ref().map(crate::window::Window::describe)
}

/// Whether the window is open at `now` and whether the worst case fits in
/// what is left (or in the next opening).
pub fn window_now(plan: &Plan, now: jiff::Timestamp) -> Option<String> {
    use crate::window::{Bounds, State, state};
    let w = plan.window.as_ref()?;
    let worst = Duration::from_secs(plan.worst_case_secs);
    let at_least = if plan.worst_case_open.is_empty() {
        ""
    } else {
        "at least "
    };
    let fits = |room: Option<Duration>, what: &str| match room {
        None => format!("the worst case ({at_least}{}) fits", format_duration(worst)),
        Some(room) if worst <= room => format!(
            "the worst case ({at_least}{}) fits in the {} {what}",
            format_duration(worst),
            format_duration(room)
        ),
        Some(room) => format!(
            "the worst case ({at_least}{}) does NOT fit in the {} {what}: a run still going when the window closes starts no new change and stops as window_closed, to resume in the next opening",
            format_duration(worst),
            format_duration(room)
        ),
    };
    let span = |a: jiff::Timestamp, b: jiff::Timestamp| {
        Duration::from_secs(u64::try_from(b.as_second() - a.as_second()).unwrap_or(0))
    };
    let at = |t: jiff::Timestamp| format!("{} ({t})", w.local(t));
    Some(match state(Some(w), &Bounds::default(), now) {
        State::Open { closes: Some(c) } => format!(
            "open now, until {}; {}",
            at(c),
            fits(Some(span(now, c)), "left")
        ),
        State::Open { closes: None } => format!("open now; {}", fits(None, "")),
        State::Closed {
            next: Some((o, c)), ..
        } => format!(
            "closed now; opens {}; {}",
            at(o),
            fits(c.map(|c| span(o, c)), "it is open then")
        ),
        State::Closed { next: None, .. } => {
            "closed now, and it does not open again within a year".to_owned()
        }
    })
}

/// The plan as pretty JSON (what `-o PLAN.json` writes), with a final newline.
pub fn json(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).unwrap_or_default();
    s.push('\n');
    s
}

fn ms(m: u64) -> String {
    format_duration(Duration::from_millis(m))
}

fn secs(s: u64) -> String {
    format_duration(Duration::from_secs(s))
}

fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn values(vs: &[Value]) -> String {
    vs.iter().map(value).collect::<Vec<_>>().join(", ")
}

fn matcher(m: &Matcher) -> String {
    match m {
        Matcher::In(v) => format!("in [{}]", values(v)),
        Matcher::NotIn(v) => format!("not in [{}]", values(v)),
        Matcher::Equals(v) => format!("= {}", value(v)),
        Matcher::Exists(true) => "exists".to_owned(),
        Matcher::Exists(false) => "does not exist".to_owned(),
    }
}

fn condition(c: &Condition) -> String {
    let path = if c.select.is_empty() {
        "(response)"
    } else {
        c.select.as_str()
    };
    format!("{path} {}", matcher(&c.matcher))
}

fn when(w: &When) -> String {
    match w {
        When::Truthy(t) => format!("{t} is true"),
        When::Match { value, matcher: m } => format!("{value} {}", matcher(m)),
    }
}

fn retry(r: &RetryPolicy) -> String {
    if r.attempts <= 1 {
        return "no retry (1 attempt)".to_owned();
    }
    let growth = match r.backoff {
        Backoff::Fixed => format!("fixed {}", ms(r.delay_millis)),
        Backoff::Exponential => format!(
            "exponential {}..{}",
            ms(r.delay_millis),
            ms(r.max_delay_millis)
        ),
    };
    let jitter = if r.jitter { ", jitter" } else { "" };
    format!("{} attempts, {growth}{jitter}", r.attempts)
}

fn on_failure(o: &OnFailure) -> String {
    match o {
        OnFailure::Abort => "abort the run".to_owned(),
        OnFailure::Continue => "continue (dependents are skipped)".to_owned(),
        OnFailure::Compensate(ids) => {
            format!(
                "run {} then abort",
                ids.iter()
                    .map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// The risk badge of a step that calls an API (`  [irreversible]`).
fn badge(s: &PlannedStep) -> &'static str {
    match (&s.kind, s.risk) {
        (StepKind::Sleep { .. } | StepKind::Approve { .. }, _) => "",
        (_, Risk::Read) => "  [read]",
        (_, Risk::Mutating) => "  [mutating]",
        (_, Risk::Irreversible) => "  [irreversible]",
    }
}

/// Why the worst case may be longer than shown.
fn worst_case_note(plan: &Plan) -> String {
    let mut notes = Vec::new();
    if plan
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::Approve { .. }))
    {
        notes.push("plus time waiting for approval".to_owned());
    }
    if !plan.worst_case_open.is_empty() {
        let ids: Vec<&str> = plan.worst_case_open.iter().map(|i| i.as_str()).collect();
        notes.push(format!(
            "one round of items counted for {}: their number is known only at run time",
            ids.join(", ")
        ));
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

/// How a fan-out wait or sleep adds up: "20m: 5 items, 4 at once, up to 10m each".
fn rounds_text(s: &PlannedStep, concurrency: usize) -> Option<String> {
    let w = s.worst_case(concurrency);
    let r = w.rounds?;
    let each = format_duration(r.per_item);
    let at_once = r.concurrency;
    let items = |n: usize| match n {
        1 => "1 item".to_owned(),
        n if n <= at_once => format!("{n} items, all at once"),
        n => format!("{n} items, {at_once} at once"),
    };
    Some(match (r.items, r.capped) {
        (Some(n), false) => format!(
            "{}: {}, up to {each} each",
            format_duration(w.duration),
            items(n)
        ),
        (Some(n), true) => format!(
            "{}, the step timeout ({}, up to {each} each)",
            format_duration(w.duration),
            items(n)
        ),
        (None, true) => format!(
            "{}, the step timeout (items known at run time, {at_once} at once, up to {each} each)",
            format_duration(w.duration)
        ),
        (None, false) => format!(
            "{each} per round of {at_once} items; the number of items is known only at run time"
        ),
    })
}

fn kind_line(s: &PlannedStep) -> String {
    match &s.kind {
        StepKind::Call { call, .. } => {
            let name = if call.action == "api" {
                format!("api {}.{}", call.product, call.rpc_action)
            } else {
                call.action.clone()
            };
            format!("call {name}")
        }
        StepKind::Wait(w) => format!("wait {}", w.call.action),
        StepKind::Sleep { millis } => format!("sleep {}", ms(*millis)),
        StepKind::Approve { .. } => "approve".to_owned(),
    }
}

/// How many calls, by class: "1 mutating call, 3 irreversible calls (point
/// of no return), 1 read".
pub fn blast_radius_line(plan: &Plan) -> String {
    let b = &plan.blast_radius;
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut parts = Vec::new();
    if b.mutating > 0 {
        parts.push(plural(b.mutating, "mutating call", "mutating calls"));
    }
    if b.irreversible > 0 {
        parts.push(format!(
            "{} (point of no return)",
            plural(b.irreversible, "irreversible call", "irreversible calls")
        ));
    }
    if b.read > 0 || parts.is_empty() {
        parts.push(plural(b.read, "read", "reads"));
    }
    let mut line = parts.join(", ");
    if !b.unknown_fan_out.is_empty() {
        let ids: Vec<&str> = b.unknown_fan_out.iter().map(|i| i.as_str()).collect();
        let _ = write!(
            line,
            "; fan-out known only at run time: {} (counted once)",
            ids.join(", ")
        );
    }
    line
}

fn params_line(plan: &Plan) -> String {
    if plan.params.is_empty() {
        return "(none)".to_owned();
    }
    plan.params
        .iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect::<Vec<_>>()
        .join("  ")
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn critical_line(plan: &Plan) -> String {
    plan.critical_path
        .iter()
        .map(|i| i.as_str())
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// The plan for a terminal: header, blast radius, levels, then each step
/// with everything it would do, then the critical path.
pub fn text(plan: &Plan) -> String {
    text_at(plan, None)
}

fn text_at(plan: &Plan, now: Option<jiff::Timestamp>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "plan: {}", plan.name);
    if let Some(d) = &plan.description {
        let _ = writeln!(o, "  {d}");
    }
    let _ = writeln!(
        o,
        "playbook:     {} (sha256 {})",
        plan.source,
        short(&plan.playbook_sha256)
    );
    let _ = writeln!(
        o,
        "digest:       {}  (for the change ticket; `run --expect-digest` checks it)",
        plan.digest
    );
    let _ = writeln!(o, "params:       {}", params_line(plan));
    let _ = writeln!(o, "blast radius: {}", blast_radius_line(plan));
    let _ = writeln!(
        o,
        "worst case:   {} along the critical path{}",
        secs(plan.worst_case_secs),
        worst_case_note(plan)
    );
    let _ = writeln!(o, "concurrency:  {}", plan.concurrency);
    if let Some(a) = &plan.approval {
        let _ = writeln!(o, "approval:     {}", a.describe());
    }
    if let Some(r) = region_line(plan) {
        let _ = writeln!(o, "region:       {r}");
    }
    if let Some(w) = window_line(plan) {
        let _ = writeln!(o, "window:       {w}");
        if let Some(line) = now.and_then(|now| window_now(plan, now)) {
            let _ = writeln!(o, "              {line}");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "levels (steps on one level can run together):");
    for (n, level) in plan.levels.iter().enumerate() {
        let ids: Vec<&str> = level.iter().map(|i| i.as_str()).collect();
        let _ = writeln!(o, "  {}. {}", n + 1, ids.join(", "));
    }
    let (main, comp): (Vec<&PlannedStep>, Vec<&PlannedStep>) =
        plan.steps.iter().partition(|s| !s.compensation);
    let _ = writeln!(o);
    let _ = writeln!(o, "steps:");
    for (n, s) in main.iter().enumerate() {
        let _ = writeln!(o);
        text_step(&mut o, n + 1, s, plan);
    }
    if !comp.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "compensation steps (run only from an on_failure):");
        for (n, s) in comp.iter().enumerate() {
            let _ = writeln!(o);
            text_step(&mut o, n + 1, s, plan);
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "critical path: {} (worst case {})",
        critical_line(plan),
        secs(plan.worst_case_secs)
    );
    if let Some(obs) = &plan.observations {
        o.push_str(&super::refresh::render_text(obs));
    }
    o
}

fn text_step(o: &mut String, n: usize, s: &PlannedStep, plan: &Plan) {
    let concurrency = plan.concurrency;
    let fan = match &s.for_each {
        Some(f) => match &f.items {
            Some(items) => format!(" x{}", items.len()),
            None => " x?".to_owned(),
        },
        None => String::new(),
    };
    let _ = writeln!(o, "[{n}] {}  {}{}{fan}", s.id, kind_line(s), badge(s));
    let field = |o: &mut String, name: &str, text: &str| {
        let _ = writeln!(o, "    {:<11} {text}", format!("{name}:"));
    };
    let more = |o: &mut String, text: &str| {
        let _ = writeln!(o, "    {:<11} {text}", "");
    };
    if let Some(d) = &s.description {
        field(o, "about", d);
    }
    field(o, "line", &s.line.to_string());
    if !s.needs.is_empty() {
        field(
            o,
            "needs",
            &s.needs
                .iter()
                .map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if let Some(w) = &s.when {
        field(o, "when", &when(w));
    }
    if let Some(f) = &s.for_each {
        let items = match &f.items {
            Some(items) => format!("{} items: {}", items.len(), values(items)),
            None => "items known at run time".to_owned(),
        };
        field(o, "for each", &format!("{} -> {items}", f.template));
        if let Some(c) = f.concurrency {
            more(o, &format!("{c} items in flight at once"));
        }
    }
    if let Some(locks) = super::locks::step_locks(plan, s).describe() {
        field(o, "locks", &locks);
    }
    let call = match &s.kind {
        StepKind::Call { call, assert } => {
            if let Some(a) = assert {
                field(o, "assert", &condition(a));
            }
            Some(call)
        }
        StepKind::Wait(w) => {
            field(o, "until", &condition(&w.until));
            if let Some(f) = &w.fail_if {
                field(o, "fail if", &condition(f));
            }
            let growth = if w.backoff > 1.0 {
                format!(
                    "every {} x{} up to {}",
                    ms(w.every_millis),
                    w.backoff,
                    ms(w.max_every_millis)
                )
            } else {
                format!("every {}", ms(w.every_millis))
            };
            field(
                o,
                "poll",
                &format!("{growth}, give up after {}", ms(w.timeout_millis)),
            );
            Some(&w.call)
        }
        StepKind::Sleep { .. } => None,
        StepKind::Approve { message, policy } => {
            field(o, "asks", message);
            if let Some(p) = policy {
                field(o, "approvers", &p.describe());
            }
            more(
                o,
                &format!("(non-interactive runs need --approve {})", s.id),
            );
            None
        }
    };
    if let Some(call) = call {
        let mut first = true;
        for (k, v) in &call.rendered {
            if first {
                field(o, "params", &format!("{k} = {v}"));
                first = false;
            } else {
                more(o, &format!("{k} = {v}"));
            }
        }
        let item_note = if s.for_each.as_ref().is_some_and(|f| f.items.is_some()) {
            " (first item)"
        } else {
            ""
        };
        field(
            o,
            "request",
            &format!(
                "{} {}{}{item_note}",
                call.request.method,
                destination(&call.request),
                signed_note(&call.request)
            ),
        );
        for line in request_lines(&call.request) {
            more(o, &line);
        }
        field(o, "region", &s.region);
        field(o, "retry", &retry(&s.retry));
    }
    if let Some(t) = s.timeout_secs {
        field(o, "timeout", &secs(t));
    }
    if let Some(rounds) = rounds_text(s, concurrency) {
        field(o, "worst case", &rounds);
    }
    field(o, "on failure", &on_failure(&s.on_failure));
}

/// `, signed v3` for a V3 request; nothing for V1 (the default).
fn signed_note(r: &crate::cloud::RequestPreview) -> String {
    match r.signature() {
        SignatureVersion::V1 => String::new(),
        v => format!(", signed {v}"),
    }
}

/// The lines of a request under its first: the query string (when not
/// empty), V3's headers (`name: value`), the body.
fn request_lines(r: &crate::cloud::RequestPreview) -> Vec<String> {
    let mut lines = Vec::new();
    if !r.query.is_empty() {
        lines.push(r.query.clone());
    }
    for (name, value) in &r.headers {
        lines.push(format!("{name}: {value}"));
    }
    if !r.body.is_empty() {
        lines.push(format!("body: {}", r.body));
    }
    lines
}

/// Where a request goes, as the plan records it: product and region (the
/// host is chosen at run time: the public endpoint, `--endpoint` or the
/// simulator).
fn destination(r: &crate::cloud::RequestPreview) -> String {
    if r.region.is_empty() {
        format!("{} (central endpoint)", r.product)
    } else {
        format!("{} in {}", r.product, r.region)
    }
}

/// The plan for a change ticket: summary table, params, a step table, a
/// checklist to tick during the window, and the exact requests.
pub fn markdown(plan: &Plan) -> String {
    markdown_at(plan, None)
}

fn markdown_at(plan: &Plan, now: Option<jiff::Timestamp>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Plan: {}", plan.name);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "**Digest `{}`**: put it in the change ticket; `runbook run PLAN.json --expect-digest DIGEST` runs this plan and nothing else.",
        plan.digest
    );
    let _ = writeln!(o);
    if let Some(d) = &plan.description {
        let _ = writeln!(o, "> {}", markdown::text(d));
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "| | |");
    let _ = writeln!(o, "|---|---|");
    let _ = writeln!(
        o,
        "| Playbook | `{}` (sha256 `{}`) |",
        plan.source,
        short(&plan.playbook_sha256)
    );
    let _ = writeln!(o, "| Digest | `{}` |", plan.digest);
    let _ = writeln!(
        o,
        "| Blast radius | {} |",
        markdown::cell(&blast_radius_line(plan))
    );
    let _ = writeln!(
        o,
        "| Worst case | {}{} |",
        secs(plan.worst_case_secs),
        worst_case_note(plan)
    );
    let _ = writeln!(
        o,
        "| Critical path | {} |",
        plan.critical_path
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    let _ = writeln!(o, "| Concurrency | {} |", plan.concurrency);
    if let Some(a) = &plan.approval {
        let _ = writeln!(o, "| Approval | {} |", markdown::cell(&a.describe()));
    }
    if let Some(r) = region_line(plan) {
        let _ = writeln!(o, "| Region | {} |", markdown::cell(&r));
    }
    if let Some(w) = window_line(plan) {
        let _ = writeln!(o, "| Change window | {} |", markdown::cell(&w));
        if let Some(line) = now.and_then(|now| window_now(plan, now)) {
            let _ = writeln!(o, "| Window now | {} |", markdown::cell(&line));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Params");
    let _ = writeln!(o);
    if plan.params.is_empty() {
        let _ = writeln!(o, "None.");
    } else {
        let _ = writeln!(o, "| Param | Value |");
        let _ = writeln!(o, "|---|---|");
        for (k, v) in &plan.params {
            let _ = writeln!(o, "| `{k}` | {} |", markdown::code(&value(v)));
        }
    }
    if let Some(obs) = &plan.observations {
        let _ = writeln!(o);
        o.push_str(&markdown_observations(obs));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Steps");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "| # | Step | Does | Risk | Calls | Needs | Retry | Timeout |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for (n, s) in plan.steps.iter().enumerate() {
        let calls = match (&s.kind, &s.for_each) {
            (StepKind::Call { .. }, Some(f)) => f
                .items
                .as_ref()
                .map_or("per item (run time)".to_owned(), |i| i.len().to_string()),
            (StepKind::Call { .. }, None) => "1".to_owned(),
            (StepKind::Wait(_), _) => "polls".to_owned(),
            _ => "0".to_owned(),
        };
        let risk = match s.risk {
            Risk::Irreversible => "**irreversible**",
            Risk::Mutating => "mutating",
            Risk::Read => "read",
        };
        let needs = if s.needs.is_empty() {
            "—".to_owned()
        } else {
            s.needs
                .iter()
                .map(|i| format!("`{i}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let comp = if s.compensation {
            " (compensation)"
        } else {
            ""
        };
        let retry_text = if matches!(s.kind, StepKind::Call { .. } | StepKind::Wait(_)) {
            retry(&s.retry)
        } else {
            "—".to_owned()
        };
        let _ = writeln!(
            o,
            "| {} | `{}`{comp} | {} | {risk} | {calls} | {needs} | {} | {} |",
            n + 1,
            s.id,
            markdown::cell(&kind_line(s)),
            retry_text,
            s.timeout_secs.map_or("—".to_owned(), secs)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Checklist");
    let _ = writeln!(o);
    for s in plan.steps.iter().filter(|s| !s.compensation) {
        let _ = writeln!(
            o,
            "- [ ] `{}`: {}{}",
            s.id,
            markdown::cell(&checklist_text(s)),
            risk_note(s.risk)
        );
    }
    let comp: Vec<&PlannedStep> = plan.steps.iter().filter(|s| s.compensation).collect();
    if !comp.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "If a step fails, its `on_failure` runs:");
        let _ = writeln!(o);
        for s in comp {
            let _ = writeln!(
                o,
                "- `{}`: {}{}",
                s.id,
                markdown::cell(&checklist_text(s)),
                risk_note(s.risk)
            );
        }
    }
    let locked: Vec<(&PlannedStep, String)> = plan
        .steps
        .iter()
        .filter_map(|s| Some((s, super::locks::step_locks(plan, s).describe()?)))
        .collect();
    if !locked.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "## Locks");
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "What each mutating step locks, in the run's account and the step's region, from before its first call until the run ends; another run that would change the same resource is refused meanwhile."
        );
        let _ = writeln!(o);
        for (s, what) in locked {
            let _ = writeln!(o, "- `{}`: {}", s.id, markdown::cell(&what));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "## Requests");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{}",
        match plan.signature {
            SignatureVersion::V1 =>
                "Signature, AccessKeyId and SecurityToken are redacted; nonce and timestamp are set per attempt.",
            SignatureVersion::V3 =>
                "Signed with V3 (ACS3-HMAC-SHA256): the Authorization credential and signature are redacted; x-acs-date and x-acs-signature-nonce are set per attempt, host and x-acs-content-sha256 when sent (with STS credentials, x-acs-security-token is sent and signed too).",
        }
    );
    for s in &plan.steps {
        let call = match &s.kind {
            StepKind::Call { call, .. } => call,
            StepKind::Wait(w) => &w.call,
            _ => continue,
        };
        let _ = writeln!(o);
        let _ = writeln!(o, "### `{}`", s.id);
        let _ = writeln!(o);
        let _ = writeln!(o, "```text");
        let _ = writeln!(
            o,
            "{} {}{}",
            call.request.method,
            destination(&call.request),
            signed_note(&call.request)
        );
        for line in request_lines(&call.request) {
            let _ = writeln!(o, "{line}");
        }
        let _ = writeln!(o, "```");
    }
    o
}

/// The `plan --refresh` section: each resource's state as read, and what
/// its step would do to it. `run` re-reads these and stops on drift.
fn markdown_observations(obs: &[super::refresh::Observation]) -> String {
    use super::refresh::Verdict;
    let mut o = String::new();
    let _ = writeln!(o, "## Current state");
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Read through read-only status calls when the plan was made; `run` reads them again before it starts and before each mutating step, and stops if a step would now do something else."
    );
    let _ = writeln!(o);
    if obs.is_empty() {
        let _ = writeln!(o, "No mutating steps.");
        return o;
    }
    let _ = writeln!(o, "| Step | Resource | Status | Verdict | RequestId |");
    let _ = writeln!(o, "|---|---|---|---|---|");
    for ob in obs {
        let step = match &ob.item {
            Some(i) => format!("`{}` [{}]", ob.step, value(i)),
            None => format!("`{}`", ob.step),
        };
        let resource = ob
            .resource
            .as_deref()
            .map_or_else(|| "—".to_owned(), markdown::code);
        let status = match (&ob.select, &ob.observed) {
            (Some(sel), Some(v)) => format!("`{sel}` = {}", markdown::code(&value(v))),
            (Some(sel), None) => format!("`{sel}` missing"),
            _ => "—".to_owned(),
        };
        let verdict = match ob.verdict {
            Verdict::WillChange | Verdict::NoOp => ob.verdict.words().to_owned(),
            Verdict::Unknown => format!(
                "{}{}",
                ob.verdict.words(),
                ob.note
                    .as_deref()
                    .filter(|_| ob.request_id.is_none())
                    .map_or(String::new(), |n| format!(" ({})", markdown::cell(n)))
            ),
        };
        let rid = ob
            .request_id
            .as_deref()
            .map_or_else(|| "—".to_owned(), markdown::code);
        let _ = writeln!(o, "| {step} | {resource} | {status} | {verdict} | {rid} |");
    }
    o
}

fn risk_note(r: Risk) -> &'static str {
    match r {
        Risk::Irreversible => " **(irreversible: point of no return)**",
        Risk::Mutating => " (mutating)",
        Risk::Read => "",
    }
}

fn checklist_text(s: &PlannedStep) -> String {
    let mut t = match &s.kind {
        StepKind::Call { call, assert } => {
            let params: Vec<String> = call
                .rendered
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let mut t = format!("{} `{}`", kind_line(s), params.join(" "));
            if let Some(a) = assert {
                let _ = write!(t, "; check {}", condition(a));
            }
            t
        }
        StepKind::Wait(w) => format!(
            "{} until {} (every {}, up to {})",
            kind_line(s),
            condition(&w.until),
            ms(w.every_millis),
            ms(w.timeout_millis)
        ),
        StepKind::Sleep { .. } => kind_line(s),
        StepKind::Approve { message, policy } => match policy {
            Some(p) => format!("approve: {message} ({})", p.describe()),
            None => format!("approve: {message}"),
        },
    };
    if let Some(f) = &s.for_each {
        match &f.items {
            Some(items) => {
                let _ = write!(t, ", for each of {}", values(items));
            }
            None => {
                let _ = write!(t, ", for each of `{}`", f.template);
            }
        }
    }
    if let Some(w) = &s.when {
        let _ = write!(t, ", only when {}", when(w));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    /// A plan whose worst case is one 2h sleep, in a Saturday window.
    fn plan() -> Plan {
        crate::plan::plan_of_yaml(
            "name: w\nwindow: { tz: Asia/Shanghai, slots: [\"Sat 02:00-05:00\"], blackout: [2026-12-12] }\nsteps:\n  - id: nap\n    sleep: 2h\n",
        )
    }

    #[test]
    fn window_now_says_open_closed_and_whether_the_worst_case_fits() {
        let p = plan();
        // Sat 2026-12-05 02:30 in Shanghai: 2h 30m left, 2h fits.
        assert_eq!(
            window_now(&p, ts("2026-12-04T18:30:00Z")).unwrap(),
            "open now, until Sat 2026-12-05 05:00 CST (2026-12-04T21:00:00Z); the worst case (2h) fits in the 2h 30m left"
        );
        // 03:30: 1h 30m left, 2h does not fit.
        let late = window_now(&p, ts("2026-12-04T19:30:00Z")).unwrap();
        assert!(
            late.starts_with("open now, until Sat 2026-12-05 05:00 CST (2026-12-04T21:00:00Z); the worst case (2h) does NOT fit in the 1h 30m left"),
            "{late}"
        );
        // After the window: the next Saturday is a blackout date, so the one after.
        assert_eq!(
            window_now(&p, ts("2026-12-04T21:00:00Z")).unwrap(),
            "closed now; opens Sat 2026-12-19 02:00 CST (2026-12-18T18:00:00Z); the worst case (2h) fits in the 3h it is open then"
        );
    }

    #[test]
    fn the_window_shows_in_text_and_markdown_and_now_only_when_asked() {
        let p = plan();
        let now = Some(ts("2026-12-04T18:30:00Z"));
        let text = render_at(&p, Format::Text, now);
        assert!(text.contains("window:       Sat 02:00-05:00 (Asia/Shanghai); blackout 2026-12-12\n              open now, until"), "{text}");
        assert!(!render(&p, Format::Text).contains("open now"));
        let md = render_at(&p, Format::Markdown, now);
        assert!(
            md.contains("| Change window | Sat 02:00-05:00 (Asia/Shanghai); blackout 2026-12-12 |"),
            "{md}"
        );
        assert!(md.contains("| Window now | open now, until"), "{md}");
        // The JSON has the window as written and nothing of now.
        let json = render_at(&p, Format::Json, now);
        assert_eq!(json, render(&p, Format::Json));
        assert!(
            json.contains("\"slots\": [\n      \"Sat 02:00-05:00\"\n    ]"),
            "{json}"
        );
    }
}
