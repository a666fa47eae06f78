//! The step graph of a plan: its order (file order breaks ties), levels of
//! steps that can run together, the critical path by worst-case duration
//! (the algorithms are [`crate::dag`]'s), and the `dot` / Mermaid drawings.
//!
//! Validation has already refused unknown `needs` and cycles, so the order
//! here always covers every step; compensation steps sit outside the DAG and
//! come last, in file order.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{PlannedStep, StepKind};
use crate::cloud::Risk;
use crate::dag::Dag;
use crate::playbook::action;
use crate::playbook::{Playbook, StepKindSpec};

/// Order, levels and critical path of a set of planned steps (in file order).
pub(crate) struct Shape {
    /// Indexes in run order.
    pub(crate) order: Vec<usize>,
    /// Indexes grouped by level.
    pub(crate) levels: Vec<Vec<usize>>,
    /// Indexes along the critical path, first to last.
    pub(crate) critical: Vec<usize>,
    /// Worst-case duration of the critical path, in milliseconds.
    pub(crate) worst_case_ms: u128,
}

/// Computes the shape of the DAG formed by the non-compensation steps, at
/// the run's `concurrency` (for the worst cases of fan-outs).
pub(crate) fn shape(steps: &[PlannedStep], concurrency: usize) -> Shape {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let needs: Vec<Vec<usize>> = steps
        .iter()
        .map(|s| {
            let mut v: Vec<usize> = s
                .needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let dag = Dag::new(needs);
    let mut order = dag.order(|i| !steps[i].compensation);
    let level = dag.levels(&order);
    let depth = order.iter().map(|&i| level[i] + 1).max().unwrap_or(0);
    let mut levels: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for &i in &order {
        levels[level[i]].push(i);
    }
    for l in &mut levels {
        l.sort_unstable();
    }
    let (critical, worst_case_ms) = dag.longest_path(&order, |i| {
        steps[i].worst_case(concurrency).duration.as_millis()
    });

    order.extend((0..steps.len()).filter(|&i| steps[i].compensation));
    Shape {
        order,
        levels,
        critical,
        worst_case_ms,
    }
}

/// Label of a step in a drawing: its id and what it does.
fn label(pb: &Playbook, i: usize) -> (String, Risk) {
    let s = &pb.steps[i];
    let (what, risk) = match &s.kind {
        StepKindSpec::Call { call, with, .. } => match action::resolve(call, with.as_ref()) {
            Ok(t) => (t.display_name(), t.risk()),
            Err(_) => (call.value.clone(), Risk::Mutating),
        },
        StepKindSpec::Wait(w) => (format!("wait {}", w.value.call.value), Risk::Read),
        StepKindSpec::Sleep(d) => (format!("sleep {}", d.value), Risk::Read),
        StepKindSpec::Approve(_) => ("approve".to_owned(), Risk::Read),
    };
    let fan = if s.for_each.is_some() {
        " (for each)"
    } else {
        ""
    };
    (format!("{}\\n{what}{fan}", s.id.value), risk)
}

/// The step graph as Graphviz `dot`: edges point from a step to the steps
/// that need it; mutating steps are orange, irreversible ones red,
/// compensation steps dashed.
pub fn to_dot(pb: &Playbook) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape_dot(&pb.name.value));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(
        out,
        "  node [shape=box, style=rounded, fontname=\"Helvetica\"];"
    );
    for (i, s) in pb.steps.iter().enumerate() {
        let (text, risk) = label(pb, i);
        let mut attrs = vec![format!(
            "label=\"{}\"",
            escape_dot(&text).replace("\\\\n", "\\n")
        )];
        match risk {
            Risk::Irreversible => attrs.push("color=red, penwidth=2".to_owned()),
            Risk::Mutating => attrs.push("color=orange".to_owned()),
            Risk::Read => {}
        }
        if s.compensation {
            attrs.push("style=\"rounded,dashed\"".to_owned());
        }
        let _ = writeln!(
            out,
            "  \"{}\" [{}];",
            escape_dot(&s.id.value),
            attrs.join(", ")
        );
    }
    for s in &pb.steps {
        for n in s.needs_ids() {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                escape_dot(n),
                escape_dot(&s.id.value)
            );
        }
    }
    for s in &pb.steps {
        if let Some(crate::playbook::Located {
            value: crate::playbook::OnFailureSpec::Run(ids),
            ..
        }) = &s.on_failure
        {
            for c in ids {
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\" [style=dashed, label=\"on failure\"];",
                    escape_dot(&s.id.value),
                    escape_dot(&c.value)
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The step graph as a Mermaid flowchart (renders in GitHub and GitLab markdown).
pub fn to_mermaid(pb: &Playbook) -> String {
    let mut out = String::from("flowchart LR\n");
    // Mermaid ids are positional (`s0`, `s1`): step ids may contain `-`,
    // which Mermaid reads as an arrow.
    let index: HashMap<&str, usize> = pb
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.value.as_str(), i))
        .collect();
    let node = |id: &str| {
        index
            .get(id)
            .map_or_else(|| "unknown".to_owned(), |i| format!("s{i}"))
    };
    for (i, s) in pb.steps.iter().enumerate() {
        let (text, risk) = label(pb, i);
        let text = text.replace("\\n", "<br/>").replace('"', "#quot;");
        let _ = writeln!(out, "  {}[\"{text}\"]", node(&s.id.value));
        let class = match (risk, s.compensation) {
            (_, true) => Some("compensation"),
            (Risk::Irreversible, _) => Some("irreversible"),
            (Risk::Mutating, _) => Some("mutating"),
            (Risk::Read, _) => None,
        };
        if let Some(c) = class {
            let _ = writeln!(out, "  class {} {c}", node(&s.id.value));
        }
    }
    for s in &pb.steps {
        for n in s.needs_ids() {
            let _ = writeln!(out, "  {} --> {}", node(n), node(&s.id.value));
        }
        if let Some(crate::playbook::Located {
            value: crate::playbook::OnFailureSpec::Run(ids),
            ..
        }) = &s.on_failure
        {
            for c in ids {
                let _ = writeln!(
                    out,
                    "  {} -. on failure .-> {}",
                    node(&s.id.value),
                    node(&c.value)
                );
            }
        }
    }
    out.push_str("  classDef mutating stroke:#f90,stroke-width:2px\n");
    out.push_str("  classDef irreversible stroke:#d00,stroke-width:3px\n");
    out.push_str("  classDef compensation stroke-dasharray: 5 5\n");
    out
}

/// Whether a planned step sends calls (for counting).
pub(crate) fn is_call(s: &PlannedStep) -> bool {
    matches!(s.kind, StepKind::Call { .. })
}
