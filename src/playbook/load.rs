//! YAML in, located values out. The only module that knows serde-saphyr.
//!
//! Loading is two passes:
//!
//! 1. serde-saphyr's parser (granit-parser) turns the text into events, from
//!    which [`parse`] builds a [`Node`] tree in which every value carries its
//!    [`Loc`] (syntax errors and duplicate keys stop here, with their position).
//! 2. The strict serde model types (`model.rs`, `deny_unknown_fields`
//!    everywhere) are deserialized *from that tree* through [`NodeDe`], a
//!    serde `Deserializer` over a node. Because the tree is already in memory,
//!    the loader deserializes each step, param and the defaults on its own:
//!    a typo in step 2 does not hide a wrong type in step 5, and every error
//!    carries the position of the innermost node it arose in.
//!
//! Why not deserialize the whole file straight from serde-saphyr: serde
//! stops at the first error, and the design asks for all errors at once.
//! Swapping the YAML crate means rewriting only [`parse`].

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_saphyr::granit_parser;

use super::diagnostic::Diagnostic;
use super::source::Loc;

/// A YAML value with its position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    /// Where the value starts.
    pub(crate) loc: Loc,
    /// The value.
    pub(crate) kind: Kind,
}

/// The shapes a YAML value can take after the core schema resolved it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value of key `key` when this is a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, when this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// How the value reads in an error message ("a list", "the string `x`").
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "null".to_owned(),
            Kind::Bool(b) => format!("the boolean `{b}`"),
            Kind::Int(i) => format!("the integer `{i}`"),
            Kind::UInt(u) => format!("the integer `{u}`"),
            Kind::Float(f) => format!("the number `{f}`"),
            Kind::Str(s) => format!("the string `{s}`"),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a mapping".to_owned(),
        }
    }
}

/// Most nodes a document may expand to (aliases copy their anchor's node):
/// a guard against "billion laughs" documents. A 10,000-step playbook has
/// about 150,000 nodes.
const MAX_NODES: usize = 2_000_000;

/// Deepest nesting accepted (the tree is built recursively).
const MAX_DEPTH: usize = 128;

/// Parses YAML text into a located tree.
///
/// The tree is built from the events of granit-parser (serde-saphyr's own
/// parser, re-exported by it) rather than through serde-saphyr's
/// `Spanned<T>`: that wraps every value in a synthesized mapping and was
/// three times slower on a 10,000-step playbook. Scalars are resolved by
/// the YAML 1.2 core schema, the way serde-saphyr does with the options a
/// playbook wants: only `true`/`false` are booleans (`NO` and `yes` stay
/// strings) and integers with leading zeros stay strings (`0755`). Duplicate
/// keys are errors; anchors, aliases and `<<` merge keys work.
pub(crate) fn parse(text: &str) -> Result<Node, Diagnostic> {
    let (root, mut errors) = parse_all(text)?;
    if errors.is_empty() {
        Ok(root)
    } else {
        Err(errors.swap_remove(0))
    }
}

/// Like [`parse`], but errors that leave the rest of the tree meaningful (a
/// duplicate key: the first one is kept; an alias to no anchor: null) are
/// returned beside the tree, so the checks of the rest still run. Syntax
/// errors and the size guards still stop the parse.
pub(crate) fn parse_all(text: &str) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let mut b = TreeBuilder {
        parser: granit_parser::Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        errors: Vec::new(),
    };
    let root = b.document()?;
    Ok((root, b.errors))
}

/// Parses YAML (or JSON, which is YAML) into a plain JSON value, for params files.
pub(crate) fn parse_value(text: &str) -> Result<serde_json::Value, Diagnostic> {
    let node = parse(text)?;
    serde_json::Value::deserialize(NodeDe(&node, &[])).map_err(DeError::into_diagnostic)
}

type Parser<'a> = granit_parser::Parser<'a, granit_parser::StrInput<'a>>;
type Event<'a> = granit_parser::Event<'a>;

struct TreeBuilder<'a> {
    parser: Parser<'a>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    /// Errors after which parsing went on.
    errors: Vec<Diagnostic>,
}

fn loc_of(span: &granit_parser::Span) -> Loc {
    let start = span.start;
    Loc {
        line: u32::try_from(start.line()).unwrap_or(u32::MAX),
        col: u32::try_from(start.col() + 1).unwrap_or(u32::MAX),
        len: u32::try_from(span.len()).unwrap_or(u32::MAX),
    }
}

fn syntax_error(e: &granit_parser::ScanError) -> Diagnostic {
    let m = e.marker();
    let loc = Loc {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
        len: 1,
    };
    Diagnostic::new(format!("invalid YAML: {}", e.info()), loc)
}

impl<'a> TreeBuilder<'a> {
    /// The next event that matters (comments and anchor metadata are skipped).
    fn next(&mut self) -> Result<Option<(Event<'a>, granit_parser::Span)>, Diagnostic> {
        loop {
            match self.parser.next_event() {
                None => return Ok(None),
                Some(Err(e)) => return Err(syntax_error(&e)),
                Some(Ok((ev, span))) => match ev {
                    Event::StreamStart
                    | Event::StreamEnd
                    | Event::DocumentStart(..)
                    | Event::DocumentEnd
                    | Event::Alias(_)
                    | Event::UnresolvedAlias(_)
                    | Event::Scalar(..)
                    | Event::SequenceStart(..)
                    | Event::SequenceEnd
                    | Event::MappingStart(..)
                    | Event::MappingEnd => return Ok(Some((ev, span))),
                    _ => {}
                },
            }
        }
    }

    fn document(&mut self) -> Result<Node, Diagnostic> {
        let mut root: Option<Node> = None;
        while let Some((ev, span)) = self.next()? {
            match ev {
                Event::StreamStart | Event::DocumentEnd => {}
                Event::StreamEnd => break,
                Event::DocumentStart(..) if root.is_some() => {
                    return Err(Diagnostic::new(
                        "expected one YAML document, found a second `---`",
                        loc_of(&span),
                    ));
                }
                Event::DocumentStart(..) => {}
                ev if root.is_none() => root = Some(self.node(ev, span, 0)?),
                _ => {
                    return Err(Diagnostic::new(
                        "invalid YAML: unexpected content",
                        loc_of(&span),
                    ));
                }
            }
        }
        Ok(root.unwrap_or(Node {
            loc: Loc::at(1, 1),
            kind: Kind::Null,
        }))
    }

    fn count(&mut self, n: usize, loc: Loc) -> Result<(), Diagnostic> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Diagnostic::new(
                format!(
                    "the document expands to more than {MAX_NODES} values (aliases of aliases?)"
                ),
                loc,
            ));
        }
        Ok(())
    }

    fn node(
        &mut self,
        ev: Event<'a>,
        span: granit_parser::Span,
        depth: usize,
    ) -> Result<Node, Diagnostic> {
        let loc = loc_of(&span);
        if depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                format!("values are nested more than {MAX_DEPTH} levels deep"),
                loc,
            ));
        }
        self.count(1, loc)?;
        let (node, anchor) = match ev {
            Event::Scalar(value, style, anchor, tag) => {
                let forced_string = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema_tag("str"));
                let kind = if style == granit_parser::ScalarStyle::Plain && !forced_string {
                    resolve_plain(&value)
                } else {
                    Kind::Str(value.into_owned())
                };
                (Node { loc, kind }, anchor)
            }
            Event::SequenceStart(_, anchor, _) => {
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        Some((Event::SequenceEnd, _)) => break,
                        Some((ev, span)) => items.push(self.node(ev, span, depth + 1)?),
                        None => {
                            return Err(Diagnostic::new("invalid YAML: unterminated list", loc));
                        }
                    }
                }
                (
                    Node {
                        loc,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(_, anchor, _) => (
                Node {
                    loc,
                    kind: Kind::Map(self.mapping(loc, depth)?),
                },
                anchor,
            ),
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(target) => {
                    // Count before copying, so a bomb is refused before it is built.
                    let n = size(target);
                    self.count(n, loc)?;
                    let mut copy = self.anchors[&id].clone();
                    copy.loc = loc;
                    (copy, 0)
                }
                None => {
                    self.errors
                        .push(Diagnostic::new("alias to an unknown anchor", loc));
                    (
                        Node {
                            loc,
                            kind: Kind::Null,
                        },
                        0,
                    )
                }
            },
            Event::UnresolvedAlias(name) => {
                self.errors.push(Diagnostic::new(
                    format!("alias `*{name}` has no anchor `&{name}` before it"),
                    loc,
                ));
                (
                    Node {
                        loc,
                        kind: Kind::Null,
                    },
                    0,
                )
            }
            _ => return Err(Diagnostic::new("invalid YAML: expected a value", loc)),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, loc: Loc, depth: usize) -> Result<Vec<(Node, Node)>, Diagnostic> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        loop {
            let (ev, span) = match self.next()? {
                Some((Event::MappingEnd, _)) => break,
                Some(x) => x,
                None => return Err(Diagnostic::new("invalid YAML: unterminated mapping", loc)),
            };
            let is_merge = matches!(&ev, Event::Scalar(v, granit_parser::ScalarStyle::Plain, _, None) if v == "<<");
            let key = self.node(ev, span, depth + 1)?;
            let (vev, vspan) = self
                .next()?
                .ok_or_else(|| Diagnostic::new("invalid YAML: a key without a value", key.loc))?;
            let value = self.node(vev, vspan, depth + 1)?;
            if is_merge {
                // `<<: *defaults` or `<<: [*a, *b]`: earlier sources win, and
                // keys written in the mapping itself win over all of them.
                let sources = match value.kind {
                    Kind::Map(m) => vec![m],
                    Kind::Seq(items) => items
                        .into_iter()
                        .map(|n| match n.kind {
                            Kind::Map(m) => Ok(m),
                            _ => Err(Diagnostic::new("`<<` merges mappings only", n.loc)),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(Diagnostic::new("`<<` merges mappings only", value.loc)),
                };
                for (k, v) in sources.into_iter().flatten() {
                    if !merged.iter().any(|(mk, _)| mk.kind == k.kind) {
                        merged.push((k, v));
                    }
                }
                continue;
            }
            if let Some((first, _)) = entries.iter().find(|(k, _)| k.kind == key.kind) {
                let shown = match &key.kind {
                    Kind::Str(s) => format!("`{s}`"),
                    _ => key.describe(),
                };
                let line = first.loc.line;
                self.errors.push(
                    Diagnostic::new(format!("duplicate key {shown}"), key.loc)
                        .hint(format!("it is already set on line {line}")),
                );
                continue;
            }
            entries.push((key, value));
        }
        for (k, v) in merged {
            if !entries.iter().any(|(ek, _)| ek.kind == k.kind) {
                entries.push((k, v));
            }
        }
        Ok(entries)
    }
}

/// How many nodes a tree holds.
fn size(n: &Node) -> usize {
    1 + match &n.kind {
        Kind::Seq(items) => items.iter().map(size).sum(),
        Kind::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
        _ => 0,
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema (booleans only as
/// `true`/`false` in their three spellings; leading-zero integers stay strings).
fn resolve_plain(v: &str) -> Kind {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() > 1 && digits.starts_with('0') {
            return Kind::Str(v.to_owned());
        }
        if let Ok(i) = v.parse::<i64>() {
            return Kind::Int(i);
        }
        if !v.starts_with('-')
            && let Ok(u) = digits.parse::<u64>()
        {
            return Kind::UInt(u);
        }
        return Kind::Str(v.to_owned());
    }
    if let Some(hex) = v.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Kind::Int(i);
    }
    if let Some(oct) = v.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Kind::Int(i);
    }
    if is_core_float(v)
        && let Ok(f) = v.parse::<f64>()
    {
        return Kind::Float(f);
    }
    Kind::Str(v.to_owned())
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(v: &str) -> bool {
    let s = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (!int.is_empty() || !frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exp_ok
}

/// The newtype-struct name by which [`super::model::Located`] asks
/// [`NodeDe`] for the position of the value it wraps.
pub(crate) const LOCATED_MARKER: &str = "$runbook::private::Located";

/// Separates a message from its hint in `de::Error::custom` text, so the
/// model's visitors can give hints.
pub(crate) const HINT_SEPARATOR: &str = "\n= hint: ";

/// An error while deserializing a model type from a [`Node`]: a message, a
/// hint, and the position of the innermost node it arose in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    message: String,
    hint: Option<String>,
    loc: Option<Loc>,
    /// The innermost mapping entry it arose in.
    entry: Option<EntryId>,
    /// For "missing field": the field.
    missing: Option<&'static str>,
}

impl DeError {
    fn new(message: String, hint: Option<String>) -> DeError {
        DeError {
            message,
            hint,
            loc: None,
            entry: None,
            missing: None,
        }
    }

    /// Marks the entry it arose in, unless a deeper one is marked.
    fn in_entry(mut self, entry: EntryId) -> DeError {
        if self.entry.is_none() {
            self.entry = Some(entry);
        }
        self
    }

    /// Attaches `loc` unless a deeper node already did.
    fn at(mut self, loc: Loc) -> DeError {
        if self.loc.is_none() {
            self.loc = Some(loc);
        }
        self
    }

    /// The error as a diagnostic.
    pub(crate) fn into_diagnostic(self) -> Diagnostic {
        Diagnostic::new(self.message, self.loc.unwrap_or_default()).maybe_hint(self.hint)
    }

    /// Adds where it happened after the message, e.g. "in step `check`".
    pub(crate) fn in_context(mut self, context: &str) -> DeError {
        if !context.is_empty() {
            self.message = format!("{} {context}", self.message);
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    /// A message may carry its hint after [`HINT_SEPARATOR`].
    fn custom<T: fmt::Display>(msg: T) -> DeError {
        let text = msg.to_string();
        match text.split_once(HINT_SEPARATOR) {
            Some((m, h)) => DeError::new(m.to_owned(), Some(h.to_owned())),
            None => DeError::new(text, None),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> DeError {
        DeError::new(
            format!(
                "expected {}, found {}",
                expected_words(exp),
                unexpected_words(&unexp)
            ),
            None,
        )
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> DeError {
        DeError::new(
            format!(
                "invalid value {}: expected {}",
                unexpected_words(&unexp),
                expected_words(exp)
            ),
            None,
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> DeError {
        let hint = super::diagnostic::did_you_mean(field, expected.iter().copied())
            .or_else(|| Some(format!("expected one of {}", backticked(expected))));
        DeError::new(format!("unknown field `{field}`"), hint)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> DeError {
        let hint = super::diagnostic::did_you_mean(variant, expected.iter().copied())
            .or_else(|| Some(format!("expected one of {}", backticked(expected))));
        DeError::new(format!("unknown value `{variant}`"), hint)
    }

    fn missing_field(field: &'static str) -> DeError {
        let mut e = DeError::new(format!("missing field `{field}`"), None);
        e.missing = Some(field);
        e
    }

    fn duplicate_field(field: &'static str) -> DeError {
        DeError::new(format!("duplicate field `{field}`"), None)
    }
}

/// `a`, `b` or `c`.
pub(crate) fn backticked(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// serde's words for Rust types, in the playbook's terms.
fn expected_words(exp: &dyn de::Expected) -> String {
    let raw = exp.to_string();
    match raw.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a borrowed string" | "a string" => "a string".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a mapping".to_owned(),
        s if s.starts_with("struct ") => "a mapping".to_owned(),
        s if s.starts_with("a sequence") => "a list".to_owned(),
        _ => raw,
    }
}

fn unexpected_words(unexp: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match unexp {
        U::Bool(b) => format!("the boolean `{b}`"),
        U::Unsigned(u) => format!("the integer `{u}`"),
        U::Signed(i) => format!("the integer `{i}`"),
        U::Float(f) => format!("the number `{f}`"),
        U::Str(s) => format!("the string `{s}`"),
        U::Unit | U::Option => "null".to_owned(),
        U::Seq => "a list".to_owned(),
        U::Map => "a mapping".to_owned(),
        other => other.to_string(),
    }
}

/// One entry of a mapping in the tree: the address of the mapping's
/// entries and the entry's index. It names the entry across attempts,
/// because the tree does not move while it is deserialized.
pub(crate) type EntryId = (usize, usize);

fn entries_id(entries: &[(Node, Node)]) -> usize {
    entries.as_ptr() as usize
}

/// What [`deserialize_all`] made of a node.
pub(crate) struct Lenient<T> {
    /// The value, with the entries that failed left out; `None` when an
    /// error could not be set aside (the node has the wrong shape, or a
    /// required field is missing).
    pub(crate) value: Option<T>,
    /// Every error, in the order found.
    pub(crate) errors: Vec<DeError>,
    /// Key paths (from `node`) of the entries left out.
    pub(crate) left_out: Vec<Vec<String>>,
}

/// Deserializes `node` as a `T`, setting aside each mapping entry that fails
/// and trying again, so one pass reports every error of the node: a typo in
/// `retry` does not hide a bad duration in `wait.every`. serde stops at the
/// first error of a value, so each attempt finds one more; a node with k
/// errors takes k + 1 attempts.
pub(crate) fn deserialize_all<T: for<'a> Deserialize<'a>>(node: &Node) -> Lenient<T> {
    let mut skip: Vec<EntryId> = Vec::new();
    let mut errors = Vec::new();
    let value = loop {
        match T::deserialize(NodeDe(node, &skip)) {
            Ok(v) => break Some(v),
            Err(e) => {
                let entry = e.entry.filter(|id| !skip.contains(id));
                if !follows_from_skip(node, &e, &skip) {
                    errors.push(e);
                }
                match entry {
                    Some(id) => skip.push(id),
                    None => break None,
                }
            }
        }
    };
    let left_out = skip.iter().filter_map(|&id| path_of(node, id)).collect();
    Lenient {
        value,
        errors,
        left_out,
    }
}

/// Whether `e` is "missing field `f`" for a field that was written but set
/// aside (its own error is already reported).
fn follows_from_skip(root: &Node, e: &DeError, skip: &[EntryId]) -> bool {
    let Some(field) = e.missing else {
        return false;
    };
    let map = match e.entry {
        Some(id) => match entry_of(root, id) {
            Some((_, v)) => v,
            None => return false,
        },
        None => root,
    };
    let Kind::Map(entries) = &map.kind else {
        return false;
    };
    let id = entries_id(entries);
    entries
        .iter()
        .enumerate()
        .any(|(i, (k, _))| k.as_str() == Some(field) && skip.contains(&(id, i)))
}

/// The key and value of entry `id` under `root`.
fn entry_of(root: &Node, id: EntryId) -> Option<(&Node, &Node)> {
    match &root.kind {
        Kind::Map(entries) if entries_id(entries) == id.0 => entries.get(id.1).map(|(k, v)| (k, v)),
        Kind::Map(entries) => entries.iter().find_map(|(_, v)| entry_of(v, id)),
        Kind::Seq(items) => items.iter().find_map(|n| entry_of(n, id)),
        _ => None,
    }
}

/// The key path from `root` to entry `id` (list items by index).
fn path_of(root: &Node, id: EntryId) -> Option<Vec<String>> {
    let key = |k: &Node| k.as_str().map_or_else(|| k.describe(), str::to_owned);
    match &root.kind {
        Kind::Map(entries) if entries_id(entries) == id.0 => {
            entries.get(id.1).map(|(k, _)| vec![key(k)])
        }
        Kind::Map(entries) => entries.iter().find_map(|(k, v)| {
            path_of(v, id).map(|mut p| {
                p.insert(0, key(k));
                p
            })
        }),
        Kind::Seq(items) => items.iter().enumerate().find_map(|(i, n)| {
            path_of(n, id).map(|mut p| {
                p.insert(0, i.to_string());
                p
            })
        }),
        _ => None,
    }
}

/// A serde `Deserializer` over one located node; mapping entries listed in
/// the second field are left out, as if not written.
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a>(pub(crate) &'a Node, pub(crate) &'a [EntryId]);

impl<'a> NodeDe<'a> {
    fn unexpected(&self) -> de::Unexpected<'a> {
        use de::Unexpected as U;
        match &self.0.kind {
            Kind::Null => U::Unit,
            Kind::Bool(b) => U::Bool(*b),
            Kind::Int(i) => U::Signed(*i),
            Kind::UInt(u) => U::Unsigned(*u),
            Kind::Float(f) => U::Float(*f),
            Kind::Str(s) => U::Str(s),
            Kind::Seq(_) => U::Seq,
            Kind::Map(_) => U::Map,
        }
    }

    fn any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::UInt(u) => visitor.visit_u64(*u),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_borrowed_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                skip: self.1,
            }),
            Kind::Map(entries) => visitor.visit_map(MapDe {
                entries,
                next: 0,
                value: None,
                skip: self.1,
            }),
        }
    }
}

impl<'a> Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let loc = self.0.loc;
        self.any(visitor).map_err(|e| e.at(loc))
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let loc = self.0.loc;
        match self.0.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(loc))
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let loc = self.0.loc;
        if name == LOCATED_MARKER {
            return visitor
                .visit_seq(LocatedDe {
                    node: self.0,
                    state: 0,
                    skip: self.1,
                })
                .map_err(|e| e.at(loc));
        }
        visitor.visit_newtype_struct(self).map_err(|e| e.at(loc))
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let loc = self.0.loc;
        // Derived structs also accept a list (positional fields); a playbook
        // never means that, so only a mapping is a struct.
        match &self.0.kind {
            Kind::Map(_) => self.any(visitor),
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e| e.at(loc))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let loc = self.0.loc;
        match &self.0.kind {
            Kind::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Kind::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                visitor.visit_enum(EnumDe {
                    key: k,
                    value: v,
                    skip: self.1,
                })
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e| e.at(loc))
    }

    forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map ignored_any
    }

    /// Field names must be strings: serde's derived identifiers would
    /// otherwise take `0:` as "the first field".
    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let loc = self.0.loc;
        match &self.0.kind {
            Kind::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(<DeError as de::Error>::invalid_type(
                self.unexpected(),
                &"a field name",
            )),
        }
        .map_err(|e| e.at(loc))
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    skip: &'a [EntryId],
}

impl<'a> de::SeqAccess<'a> for SeqDe<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDe(node, self.skip)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: &'a [(Node, Node)],
    /// Index of the next entry.
    next: usize,
    value: Option<&'a Node>,
    skip: &'a [EntryId],
}

impl MapDe<'_> {
    /// Marks an error with the entry it arose in, unless a deeper mapping did.
    fn tag(&self, e: DeError) -> DeError {
        let index = self.next.saturating_sub(1);
        e.in_entry((entries_id(self.entries), index))
    }
}

impl<'a> de::MapAccess<'a> for MapDe<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let id = entries_id(self.entries);
        while self.next < self.entries.len() && self.skip.contains(&(id, self.next)) {
            self.next += 1;
        }
        let Some((k, v)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        self.value = Some(v);
        seed.deserialize(NodeDe(k, self.skip))
            .map(Some)
            .map_err(|e| self.tag(e))
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed
                .deserialize(NodeDe(v, self.skip))
                .map_err(|e| self.tag(e)),
            None => Err(de::Error::custom("value requested before key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

struct EnumDe<'a> {
    key: &'a Node,
    value: &'a Node,
    skip: &'a [EntryId],
}

impl<'a> de::EnumAccess<'a> for EnumDe<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let v = seed.deserialize(NodeDe(self.key, self.skip))?;
        Ok((v, NodeDe(self.value, self.skip)))
    }
}

impl<'a> de::VariantAccess<'a> for NodeDe<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.0.kind {
            Kind::Null => Ok(()),
            _ => Err(
                <DeError as de::Error>::invalid_type(self.unexpected(), &"nothing").at(self.0.loc),
            ),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_struct("", fields, visitor)
    }
}

/// Hands a `Located<T>` first the position (line, column, length), then the value.
struct LocatedDe<'a> {
    node: &'a Node,
    state: u8,
    skip: &'a [EntryId],
}

impl<'a> de::SeqAccess<'a> for LocatedDe<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.state += 1;
        match self.state {
            1 => {
                let l = self.node.loc;
                seed.deserialize((l.line, l.col, l.len).into_deserializer_tuple())
                    .map(Some)
            }
            2 => seed.deserialize(NodeDe(self.node, self.skip)).map(Some),
            _ => Ok(None),
        }
    }
}

/// A `(line, col, len)` triple as a serde sequence.
trait IntoTupleDe {
    fn into_deserializer_tuple(
        self,
    ) -> de::value::SeqDeserializer<std::array::IntoIter<u32, 3>, DeError>;
}

impl IntoTupleDe for (u32, u32, u32) {
    fn into_deserializer_tuple(
        self,
    ) -> de::value::SeqDeserializer<std::array::IntoIter<u32, 3>, DeError> {
        de::value::SeqDeserializer::new([self.0, self.1, self.2].into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_keeps_positions_of_keys_and_values() {
        let node = parse("name: x\nsteps:\n  - id: a\n    needs: [b, c]\n").unwrap();
        assert_eq!(node.loc.line, 1);
        let steps = node.get("steps").unwrap();
        let Kind::Seq(items) = &steps.kind else {
            panic!("steps is a list")
        };
        let step = &items[0];
        assert_eq!((step.loc.line, step.loc.col), (3, 5));
        let needs = step.get("needs").unwrap();
        let Kind::Seq(needs) = &needs.kind else {
            panic!("needs is a list")
        };
        assert_eq!(
            (needs[1].loc.line, needs[1].loc.col, needs[1].loc.len),
            (4, 16, 1)
        );
        let Kind::Map(entries) = &step.kind else {
            panic!("step is a mapping")
        };
        assert_eq!((entries[1].0.loc.line, entries[1].0.loc.col), (4, 5));
    }

    #[test]
    fn yaml_12_booleans_and_leading_zeros_stay_strings() {
        let node = parse("a: NO\nb: 0755\nc: true\nd: 12\n").unwrap();
        assert_eq!(node.get("a").unwrap().kind, Kind::Str("NO".into()));
        assert_eq!(node.get("b").unwrap().kind, Kind::Str("0755".into()));
        assert_eq!(node.get("c").unwrap().kind, Kind::Bool(true));
        assert_eq!(node.get("d").unwrap().kind, Kind::Int(12));
    }

    #[test]
    fn core_schema_scalars() {
        let node = parse("a: 0x1F\nb: 1.5e3\nc: .inf\nd: -7\ne: 1_000\nf: !!str 12\ng: ~\nh: \"12\"\ni: yes\nj: 18446744073709551615\n").unwrap();
        assert_eq!(node.get("a").unwrap().kind, Kind::Int(31));
        assert_eq!(node.get("b").unwrap().kind, Kind::Float(1500.0));
        assert_eq!(node.get("c").unwrap().kind, Kind::Float(f64::INFINITY));
        assert_eq!(node.get("d").unwrap().kind, Kind::Int(-7));
        assert_eq!(node.get("e").unwrap().kind, Kind::Str("1_000".into()));
        assert_eq!(node.get("f").unwrap().kind, Kind::Str("12".into()));
        assert_eq!(node.get("g").unwrap().kind, Kind::Null);
        assert_eq!(node.get("h").unwrap().kind, Kind::Str("12".into()));
        assert_eq!(node.get("i").unwrap().kind, Kind::Str("yes".into()));
        assert_eq!(node.get("j").unwrap().kind, Kind::UInt(u64::MAX));
        assert!(
            is_core_float(".5")
                && is_core_float("1.")
                && !is_core_float("inf")
                && !is_core_float("1e")
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let node = parse("base: &b { x: 1, y: 2 }\nc: *b\nd:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(node.get("c").unwrap().get("x").unwrap().kind, Kind::Int(1));
        // The alias is located where it is used.
        assert_eq!(node.get("c").unwrap().loc.line, 2);
        let d = node.get("d").unwrap();
        assert_eq!(d.get("x").unwrap().kind, Kind::Int(1));
        assert_eq!(d.get("y").unwrap().kind, Kind::Int(3));
        assert!(d.get("<<").is_none());
    }

    #[test]
    fn hostile_documents_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(
            parse(&bomb)
                .unwrap_err()
                .message
                .contains("expands to more than")
        );
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert!(parse(&deep).is_err());
        assert!(
            parse("a: 1\n---\nb: 2\n")
                .unwrap_err()
                .message
                .contains("one YAML document")
        );
        assert!(parse("a: *nope\n").is_err());
        assert_eq!(parse("").unwrap().kind, Kind::Null);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let d = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
        assert!(d.loc.is_some());
        let d = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(d.loc.map(|l| l.line), Some(2), "{d:?}");
        assert_eq!(d.message, "duplicate key `a`");
        assert_eq!(d.hint.as_deref(), Some("it is already set on line 1"));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields are read through Debug only")]
    struct Probe {
        attempts: u32,
        name: Option<String>,
    }

    #[test]
    fn field_names_must_be_strings() {
        let node = parse("0: 3\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node, &[])).unwrap_err();
        assert_eq!(e.message, "expected a field name, found the integer `0`");
    }

    #[test]
    fn errors_point_at_the_innermost_node() {
        let node = parse("attempts: three\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node, &[])).unwrap_err();
        assert_eq!(
            e.message,
            "expected a non-negative integer, found the string `three`"
        );
        assert_eq!(e.loc.map(|l| (l.line, l.col)), Some((1, 11)));

        let node = parse("attempts: 3\nnmae: x\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node, &[])).unwrap_err();
        assert_eq!(e.message, "unknown field `nmae`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `name`?"));
        assert_eq!(e.loc.map(|l| (l.line, l.col)), Some((2, 1)));

        let node = parse("name: x\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node, &[])).unwrap_err();
        assert_eq!(e.message, "missing field `attempts`");

        let node = parse("[3, x]\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node, &[])).unwrap_err();
        assert_eq!(e.message, "expected a mapping, found a list");
    }
}
