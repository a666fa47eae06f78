//! Templates: the `{{...}}` in parameter values, `for_each`, `when` and `region`.
//!
//! The syntax is Handlebars' (the executor renders text with a strict,
//! non-escaping Handlebars registry), restricted to value paths:
//!
//! - `{{params.NAME}}` (and `{{params.file_ids.[0]}}` or `.0` for an item),
//! - `{{steps.ID.output.PATH}}`: the response of an earlier step,
//! - `{{item}}` / `{{item.Field}}`: the current item of a `for_each`,
//! - `{{failed.changed_items}}`, in a compensation step: the items the step
//!   whose failure runs it actually changed (see [`Root::ChangedItems`]).
//!
//! Helpers and blocks (`{{#if}}`, `{{#each}}`) are refused: every reference
//! must be checkable before a run, and a runbook is no place for logic. A
//! string that is exactly one `{{path}}` keeps the JSON type of the value it
//! names (so `"{{params.project_id}}"` is an integer and `"{{params.ids}}"` a
//! list); text around an expression makes the result a string.

use std::fmt;

/// One segment of a path: a key, or a bracketed/numeric index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    /// `name` or `[name]`.
    Key(String),
    /// `0` or `[0]`: an index when applied to a list, a key otherwise.
    Index(usize),
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Key(k) => f.write_str(k),
            Seg::Index(i) => write!(f, "{i}"),
        }
    }
}

/// A `{{path}}` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    /// The path, split into segments.
    pub path: Vec<Seg>,
    /// The text between the braces, trimmed (`params.file_ids.[0]`).
    pub text: String,
    /// Byte offset of the `{{` in the template.
    pub offset: usize,
    /// Byte length of the whole `{{...}}`.
    pub len: usize,
}

/// What an expression reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root<'a> {
    /// `params.NAME...`.
    Param(&'a str),
    /// `steps.ID.output...`.
    StepOutput(&'a str),
    /// `item...`.
    Item,
    /// `failed.changed_items`: in a compensation step, the items (their
    /// values, in input order) that the failed step changed in this run: its
    /// call took effect, and the status read just before it did not already
    /// show the call's effect.
    ChangedItems,
}

/// The root and field of [`Root::ChangedItems`], as written.
pub const CHANGED_ITEMS: &str = "failed.changed_items";

impl Expr {
    /// The root the path reads, or why it is not a valid reference.
    pub fn root(&self) -> Result<Root<'_>, RootError> {
        let key = |i: usize| match self.path.get(i) {
            Some(Seg::Key(k)) => Some(k.as_str()),
            _ => None,
        };
        match key(0) {
            Some("params") => key(1).map(Root::Param).ok_or(RootError::ParamName),
            Some("steps") => {
                let id = key(1).ok_or(RootError::StepId)?;
                if key(2) != Some("output") {
                    return Err(RootError::StepOutput(id.to_owned()));
                }
                Ok(Root::StepOutput(id))
            }
            Some("item") => Ok(Root::Item),
            Some("failed") => match key(1) {
                Some("changed_items") => Ok(Root::ChangedItems),
                _ => Err(RootError::Failed),
            },
            Some(other) => Err(RootError::Unknown(other.to_owned())),
            None => Err(RootError::Unknown(self.text.clone())),
        }
    }

    /// The path after the root (`Status` in `steps.x.output.Status`).
    pub fn rest(&self) -> &[Seg] {
        let skip = match self.path.first() {
            Some(Seg::Key(k)) if k == "params" => 2,
            Some(Seg::Key(k)) if k == "steps" => 3,
            Some(Seg::Key(k)) if k == "failed" => 2,
            _ => 1,
        };
        self.path.get(skip..).unwrap_or(&[])
    }
}

/// Why an expression does not name something a template may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootError {
    /// `{{params}}` without a name.
    ParamName,
    /// `{{steps}}` without an id.
    StepId,
    /// `{{steps.x}}` or `{{steps.x.foo}}` instead of `steps.x.output...`.
    StepOutput(String),
    /// `{{failed}}` or `{{failed.x}}` instead of `failed.changed_items`.
    Failed,
    /// A root other than `params`, `steps`, `item` or `failed`.
    Unknown(String),
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootError::ParamName => f.write_str("`params` needs a name: `params.NAME`"),
            RootError::StepId => f.write_str("`steps` needs an id: `steps.ID.output`"),
            RootError::StepOutput(id) => {
                write!(f, "a step's response is read as `steps.{id}.output...`")
            }
            RootError::Failed => write!(f, "`failed` has one field: `{CHANGED_ITEMS}`"),
            RootError::Unknown(root) => write!(f, "unknown template variable `{root}`"),
        }
    }
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The expressions, in order.
    pub exprs: Vec<Expr>,
    /// Whether the whole string is one expression (keeps the value's type).
    pub single: bool,
}

impl Template {
    /// Whether the string contains no expression.
    pub fn is_literal(&self) -> bool {
        self.exprs.is_empty()
    }
}

/// A syntax error in a template, with the byte offset it starts at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// Byte offset in the template.
    pub offset: usize,
    /// Byte length of the offending part.
    pub len: usize,
}

/// Whether `s` contains template syntax at all (cheap pre-check).
pub fn has_template(s: &str) -> bool {
    s.contains("{{")
}

/// Parses `s`. Text outside `{{...}}` is literal; `\{{` is a literal `{{`.
pub fn parse(s: &str) -> Result<Template, TemplateError> {
    let mut exprs = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut literal_text = false;
    while i < bytes.len() {
        if bytes[i] == b'\\' && s[i + 1..].starts_with("{{") {
            literal_text = true;
            i += 3;
            continue;
        }
        if s[i..].starts_with("{{") {
            let close = s[i + 2..].find("}}").ok_or_else(|| TemplateError {
                message: "unclosed `{{`: add `}}`".to_owned(),
                offset: i,
                len: 2,
            })?;
            let inner_start = i + 2;
            let inner_end = inner_start + close;
            let mut end = inner_end + 2;
            let mut inner = &s[inner_start..inner_end];
            // `{{{x}}}` is Handlebars' unescaped form; without HTML escaping
            // it means the same as `{{x}}`.
            if let Some(stripped) = inner.strip_prefix('{') {
                if !s[end..].starts_with('}') {
                    return Err(TemplateError {
                        message: "`{{{` must be closed by `}}}`".to_owned(),
                        offset: i,
                        len: end - i,
                    });
                }
                inner = stripped;
                end += 1;
            }
            let text = inner
                .trim()
                .trim_start_matches('~')
                .trim_end_matches('~')
                .trim();
            let path = parse_path(text).map_err(|message| TemplateError {
                message,
                offset: i,
                len: end - i,
            })?;
            exprs.push(Expr {
                path,
                text: text.to_owned(),
                offset: i,
                len: end - i,
            });
            i = end;
            continue;
        }
        literal_text = true;
        i += s[i..].chars().next().map_or(1, char::len_utf8);
    }
    let single =
        exprs.len() == 1 && !literal_text && exprs[0].offset == 0 && exprs[0].len == s.len();
    Ok(Template { exprs, single })
}

fn parse_path(text: &str) -> Result<Vec<Seg>, String> {
    if text.is_empty() {
        return Err("empty expression `{{}}`".to_owned());
    }
    if let Some(c) = text
        .chars()
        .next()
        .filter(|c| matches!(c, '#' | '/' | '^' | '!' | '>' | '&' | '@' | '('))
    {
        return Err(format!(
            "unsupported template expression `{{{{{text}}}}}` (`{c}`): templates only read values, like `{{{{params.name}}}}`"
        ));
    }
    if text.contains(char::is_whitespace) {
        return Err(format!(
            "unsupported template expression `{{{{{text}}}}}`: helpers are not supported; templates only read values, like `{{{{params.name}}}}`"
        ));
    }
    let mut segs = Vec::new();
    let mut rest = text;
    loop {
        let (seg, after) = if let Some(r) = rest.strip_prefix('[') {
            let close = r
                .find(']')
                .ok_or_else(|| format!("unclosed `[` in `{{{{{text}}}}}`"))?;
            let raw = &r[..close];
            let seg = raw
                .parse::<usize>()
                .map_or_else(|_| Seg::Key(raw.to_owned()), Seg::Index);
            (seg, &r[close + 1..])
        } else {
            let end = rest.find(['.', '/']).unwrap_or(rest.len());
            let raw = &rest[..end];
            if raw.is_empty() || raw.chars().any(|c| !is_symbol_char(c)) {
                return Err(format!("invalid path `{text}` in `{{{{{text}}}}}`"));
            }
            if raw == "this" || raw == ".." {
                return Err(format!(
                    "`{raw}` is not supported in templates: name the value from `params`, `steps` or `item`"
                ));
            }
            let seg = raw
                .parse::<usize>()
                .map_or_else(|_| Seg::Key(raw.to_owned()), Seg::Index);
            (seg, &rest[end..])
        };
        segs.push(seg);
        if after.is_empty() {
            return Ok(segs);
        }
        rest = after
            .strip_prefix(['.', '/'])
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("invalid path `{text}` in `{{{{{text}}}}}`"))?;
    }
}

/// Characters Handlebars allows in a path segment.
fn is_symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | ':') || !c.is_ascii()
}

/// How an expression is shown in a plan when its value is known only at run
/// time: `<steps.x.output.Status>`, `<item>`.
pub fn placeholder(expr: &Expr) -> String {
    format!("<{}>", expr.text.replace(".[", ".").replace(']', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(t: &Template, i: usize) -> Vec<String> {
        t.exprs[i].path.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn single_expression_keeps_type() {
        let t = parse("{{params.project_id}}").unwrap();
        assert!(t.single);
        assert_eq!(t.exprs[0].root(), Ok(Root::Param("project_id")));
        let t = parse("{{ params.ids.[0] }}").unwrap();
        assert!(t.single);
        assert_eq!(t.exprs[0].path[2], Seg::Index(0));
        let t = parse("job-{{params.id}}").unwrap();
        assert!(!t.single);
        assert_eq!(t.exprs[0].offset, 4);
    }

    #[test]
    fn roots() {
        let t = parse("{{steps.dts-stopped.output.Data.Status}} {{item.FileId}} {{item}}").unwrap();
        assert_eq!(t.exprs[0].root(), Ok(Root::StepOutput("dts-stopped")));
        assert_eq!(
            keys(&t, 0),
            ["steps", "dts-stopped", "output", "Data", "Status"]
        );
        assert_eq!(
            t.exprs[0].rest(),
            &[Seg::Key("Data".into()), Seg::Key("Status".into())]
        );
        assert_eq!(t.exprs[1].root(), Ok(Root::Item));
        assert_eq!(
            placeholder(&t.exprs[0]),
            "<steps.dts-stopped.output.Data.Status>"
        );
        let t = parse("{{steps.x.Status}}").unwrap();
        assert_eq!(t.exprs[0].root(), Err(RootError::StepOutput("x".into())));
        let t = parse("{{failed.changed_items}}").unwrap();
        assert_eq!(t.exprs[0].root(), Ok(Root::ChangedItems));
        assert!(t.exprs[0].rest().is_empty());
        let t = parse("{{failed.items}}").unwrap();
        assert_eq!(t.exprs[0].root(), Err(RootError::Failed));
        let t = parse("{{parms.x}}").unwrap();
        assert_eq!(t.exprs[0].root(), Err(RootError::Unknown("parms".into())));
    }

    #[test]
    fn syntax_errors() {
        assert!(
            parse("{{params.x")
                .unwrap_err()
                .message
                .contains("unclosed")
        );
        assert!(
            parse("{{#if params.x}}y{{/if}}")
                .unwrap_err()
                .message
                .contains("unsupported")
        );
        assert!(
            parse("{{lookup params 'x'}}")
                .unwrap_err()
                .message
                .contains("helpers")
        );
        assert!(parse("{{}}").is_err());
        assert!(parse("{{params..x}}").is_err());
        let t = parse(r"literal \{{not}} here").unwrap();
        assert!(t.is_literal());
        assert!(parse("plain").unwrap().is_literal());
    }
}
