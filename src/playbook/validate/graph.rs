//! Step ids and the graph of `needs`: unknown and duplicate ids, cycles,
//! ancestors, and compensation steps wired through `on_failure`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn ids(&mut self) {
        let pb = self.pb;
        for (i, s) in pb.steps.iter().enumerate() {
            let id = &s.id;
            if !is_step_id(&id.value) {
                self.push(
                    Diagnostic::new(format!("invalid step id `{}`", id.value), id.loc)
                        .hint("use lower-case letters, digits, `-` and `_`, starting with a letter or digit (`stop-dts`)"),
                );
            }
            let first = self.index[id.value.as_str()];
            if first != i {
                let line = pb.steps[first].id.loc.line;
                self.push(
                    Diagnostic::new(format!("duplicate step id `{}`", id.value), id.loc).hint(
                        format!(
                            "the first step with this id is on line {line}; ids must be unique"
                        ),
                    ),
                );
            }
        }
    }

    pub(super) fn needs(&mut self) {
        let pb = self.pb;
        for (i, s) in pb.steps.iter().enumerate() {
            let mut seen: Vec<&str> = Vec::new();
            for n in &s.needs.0 {
                let id = n.value.as_str();
                if seen.contains(&id) {
                    self.push(Diagnostic::new(
                        format!("step `{}` needs `{id}` twice", s.id.value),
                        n.loc,
                    ));
                    continue;
                }
                seen.push(id);
                match self.index.get(id) {
                    None if self.is_broken(id) => {}
                    None => {
                        let hint = self.ids_hint(id);
                        self.push(
                            Diagnostic::new(
                                format!("step `{}` needs unknown step `{id}`", s.id.value),
                                n.loc,
                            )
                            .maybe_hint(hint),
                        );
                    }
                    Some(&j) if j == i => {
                        self.push(
                            Diagnostic::new(format!("step `{}` needs itself", s.id.value), n.loc)
                                .hint("remove it from `needs`"),
                        );
                    }
                    Some(&j) if pb.steps[j].compensation && !s.compensation => {
                        self.push(
                            Diagnostic::new(
                                format!("step `{}` needs compensation step `{id}`", s.id.value),
                                n.loc,
                            )
                            .hint("compensation steps run only from `on_failure: { run: [...] }`"),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Reports each dependency cycle once, as the whole loop (its middle
    /// elided when it is long).
    pub(super) fn cycles(&mut self) {
        for cycle in self.dag.cycles() {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| self.pb.steps[i].id.value.as_str())
                .collect();
            let first = &self.pb.steps[cycle[0]];
            let next = names.get(1).copied().unwrap_or_default();
            let loc = first
                .needs
                .0
                .iter()
                .find(|n| n.value == next)
                .map_or(first.id.loc, |n| n.loc);
            self.push(
                Diagnostic::new(format!("dependency cycle: {}", loop_text(&names)), loc).hint(
                    "each step waits for the next one in the loop; remove one of these `needs`",
                ),
            );
        }
    }

    /// Whether `target` is among the steps `step` needs, directly or not.
    pub(super) fn is_ancestor(&mut self, step: usize, target: usize) -> bool {
        self.reach.needs(&self.dag, step, target)
    }

    pub(super) fn on_failure_targets(&mut self, of: &OnFailureSpec) {
        let OnFailureSpec::Run(ids) = of else { return };
        for id in ids {
            match self.index.get(id.value.as_str()) {
                None if self.is_broken(&id.value) => {}
                None => {
                    let hint = self.ids_hint(&id.value);
                    self.push(
                        Diagnostic::new(
                            format!("`on_failure` runs unknown step `{}`", id.value),
                            id.loc,
                        )
                        .maybe_hint(hint),
                    );
                }
                Some(&j)
                    if !self.pb.steps[j].compensation
                        && !self.left_out(&format!("steps.{}.compensation", id.value)) =>
                {
                    self.push(
                        Diagnostic::new(
                            format!(
                                "`on_failure` runs `{}`, which is not a compensation step",
                                id.value
                            ),
                            id.loc,
                        )
                        .hint(format!("add `compensation: true` to step `{}`", id.value)),
                    );
                }
                Some(_) => {}
            }
        }
    }

    pub(super) fn compensations(&mut self) {
        let pb = self.pb;
        let mut named: Vec<&str> = Vec::new();
        let mut collect = |of: Option<&'a Located<OnFailureSpec>>| {
            if let Some(Located {
                value: OnFailureSpec::Run(ids),
                ..
            }) = of
            {
                named.extend(ids.iter().map(|i| i.value.as_str()));
            }
        };
        collect(pb.defaults.on_failure.as_ref());
        for s in &pb.steps {
            collect(s.on_failure.as_ref());
        }
        for s in &pb.steps {
            if !s.compensation {
                continue;
            }
            if let Some(n) = s.needs.0.first() {
                self.push(
                    Diagnostic::new(
                        format!("compensation step `{}` cannot have `needs`", s.id.value),
                        n.loc,
                    )
                    .hint(
                        "it runs right after the step that failed, from that step's `on_failure`",
                    ),
                );
            }
            // A `run` list that failed to load may have named it.
            let lost_run = self
                .left_out
                .iter()
                .any(|p| p.contains(".on_failure") || p == "defaults");
            if !named.contains(&s.id.value.as_str()) && !lost_run {
                self.push(
                    Diagnostic::new(format!("compensation step `{}` is never run", s.id.value), s.id.loc)
                        .hint(format!("name it in an `on_failure: {{ run: [{}] }}`, or remove `compensation: true`", s.id.value)),
                );
            }
        }
    }
}

/// `[a-z0-9][a-z0-9_-]*`.
pub fn is_step_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
