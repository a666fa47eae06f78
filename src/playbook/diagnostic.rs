//! Diagnostics: what is wrong, where (`file:line:col` and the source line
//! with a caret), and what to do about it.
//!
//! The format follows just and rustc:
//!
//! ```text
//! error: step `attach-disk` needs unknown step `create-dsk`
//!   --> playbooks/ecs.yaml:14:12
//!    |
//! 14 |     needs: [create-dsk]
//!    |            ^^^^^^^^^^
//!    = hint: did you mean `create-disk`?
//! ```
//!
//! Loading and planning collect every error they find into [`Diagnostics`]
//! instead of stopping at the first, so one `runbook validate` shows them all.

use std::fmt::Write as _;
use std::sync::Arc;

use super::source::{Loc, Source};

/// One problem in a playbook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong: a lower-case fragment that reads well after `error: `.
    pub message: String,
    /// Where, when known.
    pub loc: Option<Loc>,
    /// What to do about it.
    pub hint: Option<String>,
    /// Whether it is a warning: the playbook is valid, but may not do what
    /// its author means.
    pub warning: bool,
}

impl Diagnostic {
    /// A diagnostic at `loc` (an unknown `loc` renders without a snippet).
    pub fn new(message: impl Into<String>, loc: Loc) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            loc: loc.is_known().then_some(loc),
            hint: None,
            warning: false,
        }
    }

    /// A diagnostic about the file as a whole.
    pub fn whole_file(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            loc: None,
            hint: None,
            warning: false,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// The same, as a warning.
    #[must_use]
    pub fn as_warning(mut self) -> Diagnostic {
        self.warning = true;
        self
    }

    /// Adds a hint when there is one.
    #[must_use]
    pub fn maybe_hint(mut self, hint: Option<String>) -> Diagnostic {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
}

/// Every problem found in one playbook, with its source for rendering.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    source: Arc<Source>,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty set for `source`.
    pub fn new(source: Arc<Source>) -> Diagnostics {
        Diagnostics {
            source,
            items: Vec::new(),
        }
    }

    /// Adds one.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many were found.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The diagnostics in file order (position, then the order found).
    pub fn items(&self) -> Vec<&Diagnostic> {
        let mut items: Vec<&Diagnostic> = self.items.iter().collect();
        items.sort_by_key(|d| d.loc.map_or((0, 0), |l| (l.line, l.col)));
        items
    }

    /// The source they refer to.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Diagnostics> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// Renders every diagnostic in file order, separated by blank lines,
    /// followed by a count when there is more than one.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, d) in self.items().into_iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            render_one(&mut out, &self.source, d);
        }
        let errors = self.items.iter().filter(|d| !d.warning).count();
        if errors > 1 {
            let _ = writeln!(out, "\nerror: `{}` has {errors} errors", self.source.name(),);
        }
        out
    }

    /// A one-line summary for `crate::Error::message`.
    pub fn summary(&self) -> String {
        match self.items().first() {
            Some(d) if self.items.len() == 1 => format!("{}: {}", self.source.name(), d.message),
            _ => format!("`{}` has {} errors", self.source.name(), self.items.len()),
        }
    }
}

fn render_one(out: &mut String, source: &Source, d: &Diagnostic) {
    let severity = if d.warning { "warning" } else { "error" };
    let _ = writeln!(out, "{severity}: {}", d.message);
    let Some(loc) = d.loc else {
        let _ = writeln!(out, "  --> {}", source.name());
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "  = hint: {hint}");
        }
        return;
    };
    let number = loc.line.to_string();
    let pad = " ".repeat(number.len());
    let _ = writeln!(out, "{pad}--> {}:{}:{}", source.name(), loc.line, loc.col);
    if let Some(line) = source.line(loc.line) {
        let col = usize::try_from(loc.col.max(1) - 1).unwrap_or(0);
        let (shown, col) = window(line, col);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{number} | {shown}");
        let width = shown.chars().count();
        // Underline the value, but never past the end of its first line.
        let len = usize::try_from(loc.len).unwrap_or(1).max(1);
        let len = len.min(width.saturating_sub(col).max(1));
        let _ = writeln!(out, "{pad} | {}{}", " ".repeat(col), "^".repeat(len));
    }
    if let Some(hint) = &d.hint {
        let _ = writeln!(out, "{pad} = hint: {hint}");
    }
}

/// Longest source line shown in full; longer ones are cut around the column.
const MAX_SHOWN: usize = 120;

/// The part of `line` to show and the column within it: a long line (a
/// minified or hostile file) is cut to a window around `col`, marked `...`.
fn window(line: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_SHOWN {
        return (line.to_owned(), col);
    }
    let start = col
        .saturating_sub(MAX_SHOWN / 3)
        .min(chars.len().saturating_sub(MAX_SHOWN));
    let end = (start + MAX_SHOWN).min(chars.len());
    let mut shown = String::new();
    let mut offset = 0;
    if start > 0 {
        shown.push_str("...");
        offset = 3;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push_str("...");
    }
    (shown, col - start + offset)
}

/// The closest of `candidates` to `name`, if any is close enough to be a
/// likely typo ("did you mean ..."): a few edits away (a third of the
/// length, at least one), or an inflection of it (`retries` for `retry`,
/// `need` for `needs`). Candidates equally close are all returned, in
/// their order (`wit` is one edit from both `wait` and `with`).
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let name_lower = name.to_ascii_lowercase();
    let stem = stem(&name_lower);
    let scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_ascii_lowercase();
            let d = levenshtein(&name_lower, &lower);
            if d <= (c.chars().count().max(name.chars().count()) / 3).max(1) {
                return Some((d, c));
            }
            // Inflections rank after every plain typo.
            (stem.len() >= 3 && stem == self::stem(&lower)).then_some((usize::MAX, c))
        })
        .collect();
    let best = scored.iter().map(|&(d, _)| d).min();
    let mut out: Vec<&str> = scored
        .into_iter()
        .filter(|&(d, _)| Some(d) == best)
        .map(|(_, c)| c)
        .collect();
    out.dedup();
    out
}

/// A word without its plural or verb ending: `retries` and `retry` give
/// `retr`, `needs` and `need` give `need`.
fn stem(word: &str) -> &str {
    for suffix in ["ies", "es", "s", "y", "ing", "ed"] {
        if let Some(s) = word.strip_suffix(suffix)
            && s.len() >= 3
        {
            return s;
        }
    }
    word
}

/// A "did you mean" hint for `name`, if a candidate is close.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let close = suggest(name, candidates);
    let (last, rest) = close.split_last()?;
    Some(if rest.is_empty() {
        format!("did you mean `{last}`?")
    } else {
        let rest: Vec<String> = rest.iter().map(|c| format!("`{c}`")).collect();
        format!("did you mean {} or `{last}`?", rest.join(", "))
    })
}

/// Edit distance counting a swap of two neighbours as one edit (typos like
/// `nmae` for `name` are that kind).
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let line = format!("{}X{}", "a".repeat(500), "b".repeat(500));
        let (shown, col) = window(&line, 500);
        assert!(
            shown.starts_with("...") && shown.ends_with("..."),
            "{shown}"
        );
        assert!(shown.chars().count() <= MAX_SHOWN + 6);
        assert_eq!(shown.chars().nth(col), Some('X'));
        assert_eq!(window("short", 2), ("short".to_owned(), 2));
    }

    #[test]
    fn renders_snippet_with_caret_and_hint() {
        let src = Arc::new(Source::new(
            "p.yaml",
            "steps:\n  - id: a\n    needs: [create-dsk]\n",
        ));
        let mut ds = Diagnostics::new(src);
        ds.push(
            Diagnostic::new(
                "step `a` needs unknown step `create-dsk`",
                Loc {
                    line: 3,
                    col: 13,
                    len: 10,
                },
            )
            .hint("did you mean `create-disk`?"),
        );
        assert_eq!(
            ds.render(),
            "error: step `a` needs unknown step `create-dsk`\n \
             --> p.yaml:3:13\n  |\n3 |     needs: [create-dsk]\n  |             ^^^^^^^^^^\n  = hint: did you mean `create-disk`?\n"
        );
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(
            suggest("create-dsk", ["create-disk", "attach"]),
            ["create-disk"]
        );
        assert!(suggest("zzz", ["create-disk", "attach"]).is_empty());
        assert_eq!(suggest("neds", ["needs", "id"]), ["needs"]);
        assert_eq!(suggest("retries", ["retry", "region"]), ["retry"]);
        assert_eq!(suggest("need", ["needs", "id"]), ["needs"]);
        assert_eq!(suggest("timeouts", ["timeout", "every"]), ["timeout"]);
        assert_eq!(suggest("regions", ["retry", "region"]), ["region"]);
        assert_eq!(
            did_you_mean("wit", ["call", "with", "wait"]).as_deref(),
            Some("did you mean `with` or `wait`?")
        );
    }
}
