//! Markdown that renders as what it says, in GitHub, GitLab and the ticket
//! systems that speak CommonMark with GFM tables.
//!
//! Values from params, playbooks and API answers are not trusted: a `|`
//! would split a table cell, a newline end a row, `<b>` or `[x](y)` turn
//! into markup, and a control character rewrite a terminal that shows the
//! file. [`code`] writes a value as a code span (nothing inside one is
//! markup; the fence is longer than any run of backticks in the value),
//! [`text`] escapes the punctuation that means something in running text,
//! and both write a newline as `\n`, a `|` as `\|` (which GFM reads as a
//! pipe inside a table cell, code spans included) and other control and
//! invisible formatting characters as `\u{XX}`.

use std::fmt::Write as _;

/// A control character, or an invisible one that reorders or hides text.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Writes `c`, which [`hidden`] holds for, visibly.
fn visible(out: &mut String, c: char, backslash: &str) {
    match c {
        '\n' => {
            let _ = write!(out, "{backslash}n");
        }
        '\r' => {
            let _ = write!(out, "{backslash}r");
        }
        '\t' => out.push(' '),
        c => {
            let _ = write!(out, "{backslash}u{{{:x}}}", u32::from(c));
        }
    }
}

/// `s` as running text: markup characters escaped, so it reads as written.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            // `\\` renders as one backslash.
            visible(&mut out, c, "\\\\");
        } else if "\\`*_[]<>|~&$!#{}".contains(c) {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// `s`, Markdown already (with its own code spans), made safe as one table
/// cell or list line: a `|` becomes `\|` (after a backslash of its own,
/// `\\\|`, since GFM splits the row before it reads code spans), a line
/// break a space and other control and invisible characters `\u{XX}`; the
/// markup it carries stays.
pub fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '|' => {
                let backslashes = out.bytes().rev().take_while(|b| *b == b'\\').count();
                if backslashes % 2 == 1 {
                    out.push('\\');
                }
                out.push_str("\\|");
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if hidden(c) => visible(&mut out, c, "\\"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as a code span (`*(empty)*` for an empty string).
pub fn code(s: &str) -> String {
    if s.is_empty() {
        return "*(empty)*".to_owned();
    }
    let mut inner = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if hidden(c) {
            // A backslash is itself inside a code span.
            visible(&mut inner, c, "\\");
        } else if c == '|' {
            inner.push_str("\\|");
        } else {
            inner.push(c);
        }
    }
    let mut longest = 0;
    let mut run = 0;
    for c in inner.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // A space keeps a leading or trailing backtick off the fence; CommonMark
    // strips one space on each side when both are there.
    let pad = if inner.starts_with('`')
        || inner.ends_with('`')
        || (inner.starts_with(' ') && inner.ends_with(' '))
    {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{inner}{pad}{fence}")
}

/// A GFM table; cells are Markdown already (made with [`text`] or [`code`]).
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings (plain words, escaped here).
    pub fn new<S: AsRef<str>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(|h| text(h.as_ref())).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are left empty, extra ones dropped).
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes it, followed by a blank line.
    pub fn write(&self, out: &mut String) {
        let line = |out: &mut String, cells: &[String]| {
            out.push('|');
            for c in cells {
                let c = if c.is_empty() { " " } else { c.as_str() };
                let _ = write!(out, " {c} |");
            }
            out.push('\n');
        };
        line(out, &self.header);
        let rule: Vec<String> = self.header.iter().map(|_| "---".to_owned()).collect();
        line(out, &rule);
        for r in &self.rows {
            line(out, r);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_code_spans_that_cannot_break_out() {
        assert_eq!(code("RUNNING"), "`RUNNING`");
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("x\ny"), "`x\\ny`");
        assert_eq!(code("\u{1b}[2J"), "`\\u{1b}[2J`");
        assert_eq!(code(""), "*(empty)*");
    }

    #[test]
    fn text_escapes_markup() {
        assert_eq!(text("a_b *c* <b>"), "a\\_b \\*c\\* \\<b\\>");
        assert_eq!(text("[x](y) | z"), "\\[x\\](y) \\| z");
        assert_eq!(text("line\nbreak"), "line\\\\nbreak");
        assert_eq!(text("ok: 1.5 - fine"), "ok: 1.5 - fine");
    }

    #[test]
    fn cells_keep_their_markup_but_not_a_row_break() {
        assert_eq!(cell("call `a|b`"), "call `a\\|b`");
        assert_eq!(cell("one\ntwo\r\tthree"), "one two  three");
        assert_eq!(cell("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(cell("**bold** [x](y)"), "**bold** [x](y)");
        assert_eq!(cell("a\\|b"), "a\\\\\\|b");
    }

    proptest::proptest! {
        /// Whatever the input, a cell is one line with no unescaped pipe.
        #[test]
        fn a_cell_never_splits_a_row(s in "\\PC*|[|\n\r`\\\\]{0,8}") {
            let c = cell(&s);
            proptest::prop_assert!(!c.contains('\n') && !c.contains('\r'));
            // GFM reads `\x` as one escaped character when it splits a row:
            // every `|` must be escaped, i.e. after an odd run of backslashes.
            let bytes = c.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'|' {
                    let run = bytes[..i].iter().rev().take_while(|b| **b == b'\\').count();
                    proptest::prop_assert!(run % 2 == 1, "{c:?}");
                }
            }
            proptest::prop_assert!(!c.chars().any(hidden), "{c:?}");
        }
    }

    #[test]
    fn tables_pad_rows_to_the_header() {
        let mut t = Table::new(["A", "B_c"]);
        t.row(vec![code("1")]);
        let mut out = String::new();
        t.write(&mut out);
        assert_eq!(out, "| A | B\\_c |\n| --- | --- |\n| `1` |   |\n\n");
    }
}
