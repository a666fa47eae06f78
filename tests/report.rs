//! `runbook report`: the run report for a change ticket, in Markdown (parsed
//! here with a CommonMark/GFM parser, not only looked at), JSON and HTML;
//! and the values a step asks to `report`, shown by `run`, `show` and the
//! report.

use std::time::Duration;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use serde_json::Value;

use crate::run::{Rig, repo, text};

/// One GFM table of a Markdown document: its header and rows of cells, each
/// cell as the text it renders to (code spans included).
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Parses `md` and returns its tables; fails on any raw HTML (nothing in a
/// report may render as markup of its own).
fn tables(md: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut cell: Option<String> = None;
    let mut row: Vec<String> = Vec::new();
    let mut in_head = false;
    for event in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match event {
            Event::Html(h) | Event::InlineHtml(h) => panic!("raw HTML in the report: {h:?}\n{md}"),
            Event::Start(Tag::Table(_)) => out.push(Table {
                header: vec![],
                rows: vec![],
            }),
            Event::Start(Tag::TableHead) => in_head = true,
            Event::End(TagEnd::TableHead) => {
                in_head = false;
                out.last_mut().unwrap().header = std::mem::take(&mut row);
            }
            Event::End(TagEnd::TableRow) => {
                out.last_mut().unwrap().rows.push(std::mem::take(&mut row))
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => row.push(cell.take().unwrap()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(c) = cell.as_mut() {
                    c.push_str(&t);
                }
            }
            _ => {}
        }
        let _ = in_head;
    }
    out
}

/// The table whose header starts with `first`.
fn table<'t>(all: &'t [Table], first: &[&str]) -> &'t Table {
    all.iter()
        .find(|t| {
            t.header
                .iter()
                .map(String::as_str)
                .take(first.len())
                .eq(first.iter().copied())
        })
        .unwrap_or_else(|| panic!("no table starting {first:?} in {all:#?}"))
}

/// Every row of every table has as many cells as its header.
fn assert_well_formed(all: &[Table], md: &str) {
    for t in all {
        for r in &t.rows {
            assert_eq!(r.len(), t.header.len(), "row {r:?} of {:?}\n{md}", t.header);
        }
    }
}

fn report(rig: &Rig, run_id: &str, format: &str) -> String {
    let out = rig.run(&["report", run_id, "--format", format]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Snapshot settings: those of `show`, plus the simulator's port.
fn stable(rig: &Rig) -> insta::Settings {
    let mut s = crate::status::stable(rig);
    s.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
    s.add_filter(r"`[^`@ ]+@[^`@ ]+`", "`[who]`");
    s.add_filter(r"<code>[^<@ ]+@[^<@ ]+</code>", "<code>[who]</code>");
    s.add_filter(r#""host_user": "[^"]*""#, r#""host_user": "[who]""#);
    s.add_filter(
        r#""duration_secs": [0-9.e-]+"#,
        r#""duration_secs": [secs]"#,
    );
    s.add_filter(r"/[^ `)\x22]*/playbooks/", "[repo]/playbooks/");
    s
}

/// The read-only status playbook: its `report` values are a table at the
/// end of `run`, in `show` (text and JSON) and in the report.
#[test]
fn a_status_playbook_reports_the_values_it_read() {
    let rig = Rig::with("", Duration::ZERO, |c| {
        let mut node = runbook::sim::DiNodeFixture::running(10000, 100102);
        node.status = "PAUSE".to_owned();
        c.fixtures.di_nodes.push(node);
    });
    let pb = repo("playbooks/di-status-report.yaml");
    let run = rig.run(&[
        "run",
        &pb,
        "-p",
        "project_id=10000",
        "-p",
        "file_ids=100101,100102",
        "-p",
        "dts_job_id=job-r",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("reported values:"), "{stdout}");
    let row = |s: &str, item: &str| {
        s.lines()
            .find(|l| l.split_whitespace().next() == Some(item))
            .unwrap_or_else(|| panic!("no row {item} in {s}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row(&stdout, "100101"),
        ["100101", "node_100101", "RUN", "-"]
    );
    assert_eq!(
        row(&stdout, "100102"),
        ["100102", "node_100102", "PAUSE", "-"]
    );
    let run_id = rig.last_run_id();
    let shown = rig.run(&["show", &run_id]);
    assert_eq!(
        row(&String::from_utf8_lossy(&shown.stdout), "100102"),
        ["100102", "node_100102", "PAUSE", "-"]
    );
    let json = rig.show(&run_id);
    assert_eq!(json["reported"][0]["step"], "node-status");
    assert_eq!(
        json["reported"][0]["paths"],
        serde_json::json!(["Data.Name", "Data.Status", "Data.Message"])
    );
    assert_eq!(
        json["reported"][0]["rows"][1]["values"],
        serde_json::json!(["node_100102", "PAUSE", null])
    );
    assert_eq!(json["reported"][1]["rows"][0]["values"][1], "job-r");

    let md = report(&rig, &run_id, "markdown");
    let all = tables(&md);
    assert_well_formed(&all, &md);
    let nodes = table(
        &all,
        &[
            "Item",
            "Data.Name",
            "Data.Status",
            "Data.Message",
            "Outcome",
        ],
    );
    assert_eq!(
        nodes.rows,
        [
            ["100101", "node_100101", "RUN", "-", "succeeded"],
            ["100102", "node_100102", "PAUSE", "-", "succeeded"]
        ]
    );
    let dts = table(&all, &["Status", "DtsJobName", "Delay", "ErrorMessage"]);
    assert_eq!(dts.rows[0][1], "job-r");
    let json: Value = serde_json::from_str(&report(&rig, &run_id, "json")).unwrap();
    assert_eq!(json["reported"][0]["rows"][1]["values"][1], "PAUSE");
    assert_eq!(json["target"]["kind"], "simulator");
    assert_eq!(json["blast_radius"]["planned"]["read"], 3);
    assert_eq!(json["blast_radius"]["sent"]["read"], 3);
    stable(&rig).bind(|| {
        insta::assert_snapshot!("report-status-markdown", md);
        insta::assert_snapshot!("report-status-json", report(&rig, &run_id, "json"));
        insta::assert_snapshot!("report-status-html", report(&rig, &run_id, "html"));
    });
}

/// Stop two nodes (one of them retried after a throttle), wait until they
/// are stopped, terminate them (irreversible), and check one with an assert.
const CUTOVER: &str = r#"
name: report-cutover
defaults:
  region: cn-shanghai
  retry: { attempts: 3, delay: 10ms }
params:
  file_ids: { type: array, items: integer, default: [61, 62] }
concurrency: 1
steps:
  - id: stop
    for_each: "{{params.file_ids}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
  - id: stopped
    needs: [stop]
    for_each: "{{params.file_ids}}"
    wait:
      call: dataworks.GetDISyncInstanceInfo
      with: { ProjectId: 10000, FileId: "{{item}}", TaskType: DI_REALTIME }
      until: { select: Data.Status, in: [PAUSE] }
      every: 20ms
      timeout: 5s
  - id: check
    needs: [stopped]
    call: dataworks.GetDISyncInstanceInfo
    with: { ProjectId: 10000, FileId: 61, TaskType: DI_REALTIME }
    assert: { select: Data.Status, in: [PAUSE] }
"#;

/// A run that changed things: every mutating call's RequestId (as the
/// simulator logged it) is in the report, the wait's final status and the
/// assert's value are the observed values, and the failed attempts are
/// errors with their RequestIds.
#[test]
fn the_report_names_every_mutating_call_and_what_each_step_observed() {
    let rig = Rig::new("", Duration::ZERO);
    let pb = rig.playbook("cutover.yaml", CUTOVER);
    let run = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let run_id = rig.last_run_id();
    let md = report(&rig, &run_id, "markdown");
    let all = tables(&md);
    assert_well_formed(&all, &md);
    let calls = table(
        &all,
        &[
            "Step",
            "Item",
            "Action",
            "Risk",
            "Attempt",
            "Outcome",
            "RequestId",
        ],
    );
    let logged: Vec<String> = rig
        .calls()
        .iter()
        .filter(|c| c.action.as_deref() == Some("StopDISyncInstance"))
        .map(|c| c.request_id.clone())
        .collect();
    assert_eq!(logged.len(), 2);
    let listed: Vec<String> = calls.rows.iter().map(|r| r[6].clone()).collect();
    assert_eq!(listed, logged, "{md}");
    assert_eq!(calls.rows[0][1], "61");
    let steps = table(
        &all,
        &[
            "Step", "Item", "Kind", "Action", "Risk", "Outcome", "Observed",
        ],
    );
    let observed: Vec<(&str, &str, &str)> = steps
        .rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[6].as_str()))
        .collect();
    assert_eq!(
        observed,
        [
            ("stop", "61", "-"),
            ("stop", "62", "-"),
            ("stopped", "61", "Data.Status = PAUSE"),
            ("stopped", "62", "Data.Status = PAUSE"),
            ("check", "-", "Data.Status = PAUSE"),
        ]
    );
    let radius = table(&all, &["", "Read", "Mutating", "Irreversible"]);
    assert_eq!(radius.rows[0], ["Planned", "1", "2", "0"]);
    assert_eq!(radius.rows[1], ["Done (actual)", "1", "2", "0"]);
    stable(&rig).bind(|| {
        insta::assert_snapshot!("report-cutover-markdown", md);
        insta::assert_snapshot!("report-cutover-json", report(&rig, &run_id, "json"));
    });
}

/// A failed assert: the run fails, the report lists the error, the value
/// the assert checked and the failed step's RequestId.
#[test]
fn a_failed_run_reports_its_errors_with_request_ids() {
    let rig = Rig::with("", Duration::ZERO, |c| {
        let mut node = runbook::sim::DiNodeFixture::running(10000, 61);
        node.status = "NORUN".to_owned();
        c.fixtures.di_nodes.push(node);
    });
    let pb = rig.playbook("cutover.yaml", CUTOVER);
    let run = rig.run(&["run", &pb, "--yes", "-p", "file_ids=62"]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let run_id = rig.last_run_id();
    let json: Value = serde_json::from_str(&report(&rig, &run_id, "json")).unwrap();
    assert_eq!(json["run"]["status"], "failed");
    let check = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "check")
        .unwrap();
    assert_eq!(check["status"], "failed");
    assert_eq!(check["items"][0]["observed"]["value"], "NORUN", "{check}");
    let md = report(&rig, &run_id, "markdown");
    assert_well_formed(&tables(&md), &md);
    let last_read = rig
        .calls()
        .iter()
        .rev()
        .find(|c| c.action.as_deref() == Some("GetDISyncInstanceInfo"))
        .unwrap()
        .request_id
        .clone();
    let all = tables(&md);
    let errors = table(
        &all,
        &["Step", "Item", "What", "Action", "Error", "RequestId"],
    );
    assert_eq!(errors.rows.len(), 1, "{md}");
    assert_eq!(
        (
            errors.rows[0][0].as_str(),
            errors.rows[0][2].as_str(),
            errors.rows[0][5].as_str()
        ),
        ("check", "step", last_read.as_str())
    );
    assert!(errors.rows[0][4].starts_with("assert failed"), "{md}");
    stable(&rig).bind(|| insta::assert_snapshot!("report-failed-markdown", md));
}

/// Values from the service and from params that try to break out of a
/// table or turn into markup stay text, in every format.
#[test]
fn hostile_values_stay_text_in_every_format() {
    let hostile =
        "a|b\n<script>alert(1)</script> `x` **bold** [l](http://e.x) \u{1b}[31m&amp; \u{202e}";
    let rig = Rig::with("", Duration::ZERO, |c| {
        let mut node = runbook::sim::DiNodeFixture::running(10000, 71);
        node.name = Some(hostile.to_owned());
        c.fixtures.di_nodes.push(node);
    });
    let pb = repo("playbooks/di-status-report.yaml");
    let run = rig.run(&[
        "run",
        &pb,
        "-p",
        "project_id=10000",
        "-p",
        "file_ids=71",
        "-p",
        &format!("dts_job_id=|x|<b>{}", "`"),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    let run_id = rig.last_run_id();
    let md = report(&rig, &run_id, "markdown");
    assert!(!md.contains('\u{1b}') && !md.contains('\u{202e}'), "{md}");
    let all = tables(&md);
    assert_well_formed(&all, &md);
    let nodes = table(&all, &["Item", "Data.Name", "Data.Status"]);
    // The name renders as written, its line break and escape characters made visible.
    assert_eq!(
        nodes.rows[0][1],
        "a|b\\n<script>alert(1)</script> `x` **bold** [l](http://e.x) \\u{1b}[31m&amp; \\u{202e}"
    );
    let params = table(&all, &["Param", "Value"]);
    assert_eq!(params.rows[0], ["dts_job_id", "\"|x|<b>`\""]);
    let html = report(&rig, &run_id, "html");
    assert!(
        !html.contains("<script>") && !html.contains("<b>"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    let json: Value = serde_json::from_str(&report(&rig, &run_id, "json")).unwrap();
    assert_eq!(json["reported"][0]["rows"][0]["values"][0], hostile);
}

/// Under throttling and dropped answers of applied calls: the report's
/// retries, reconciles and errors are the journal's, item by item, and
/// every failed attempt's RequestId is the simulator's.
#[test]
fn retries_and_reconciles_are_counted_per_item() {
    let rig = Rig::new("throttle=0.4,applied_drop=0.4", Duration::ZERO);
    let text_pb = CUTOVER.replace("attempts: 3", "attempts: 20");
    let pb = rig.playbook("cutover.yaml", &text_pb);
    let run = rig.run(&["run", &pb, "--yes", "-p", "file_ids=[61,62,63,64]"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let run_id = rig.last_run_id();
    let json: Value = serde_json::from_str(&report(&rig, &run_id, "json")).unwrap();
    let shown = rig.show(&run_id);
    let attempts = shown["attempts"].as_array().unwrap();
    let (mut retries, mut reconciles) = (0, 0);
    for step in json["steps"].as_array().unwrap() {
        for (index, item) in step["items"].as_array().unwrap().iter().enumerate() {
            let calls = attempts
                .iter()
                .filter(|a| a["step"] == step["id"] && a["item"] == index && a["kind"] == "call")
                .count();
            assert_eq!(item["calls"], calls, "{item}");
            assert_eq!(item["retries"], calls.saturating_sub(1), "{item}");
            retries += calls.saturating_sub(1);
            reconciles += item["reconciles"].as_array().unwrap().len();
        }
    }
    let failed: Vec<&Value> = attempts
        .iter()
        .filter(|a| a["outcome"] == "error")
        .collect();
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(
        errors.len(),
        failed.len(),
        "every failed attempt is an error"
    );
    let logged: std::collections::BTreeSet<String> =
        rig.calls().into_iter().map(|c| c.request_id).collect();
    for e in errors {
        if let Some(rid) = e["request_id"].as_str() {
            assert!(logged.contains(rid), "{e}");
        }
    }
    assert!(
        retries > 0 && !errors.is_empty(),
        "the faults caused retries: {json}"
    );
    let sent = rig
        .calls()
        .iter()
        .filter(|c| c.action.as_deref() == Some("StopDISyncInstance"))
        .count();
    assert_eq!(json["blast_radius"]["sent"]["mutating"], sent);
    assert_eq!(
        json["blast_radius"]["actual"]["mutating"], 4,
        "one change per node"
    );
    assert!(reconciles > 0, "a dropped answer was reconciled: {json}");
}
