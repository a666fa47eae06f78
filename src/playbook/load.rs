//! YAML in, located values out. The only module that knows serde-saphyr.
//!
//! Loading is two passes:
//!
//! 1. serde-saphyr parses the text into a [`Node`] tree in which every value
//!    carries its [`Loc`] (syntax errors and duplicate keys stop here, with
//!    their position).
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

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};

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

fn loc_of(l: &serde_saphyr::Location) -> Loc {
    let len = u32::try_from(l.span().len()).unwrap_or(u32::MAX);
    Loc {
        line: u32::try_from(l.line()).unwrap_or(u32::MAX),
        col: u32::try_from(l.column()).unwrap_or(u32::MAX),
        len,
    }
}

/// The serde-saphyr options for playbooks, params files and fixtures:
/// YAML 1.2 booleans only (`NO` stays a string) and leading-zero numbers
/// stay strings (`0755`), so values mean what they look like.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
    }
}

/// Parses YAML text into a located tree.
pub(crate) fn parse(text: &str) -> Result<Node, Diagnostic> {
    match serde_saphyr::from_str_with_options::<serde_saphyr::Spanned<Raw>>(text, options()) {
        Ok(spanned) => Ok(Node {
            loc: loc_of(&spanned.referenced),
            kind: spanned.value.0,
        }),
        Err(e) => {
            let loc = e.location().map(|l| loc_of(&l)).unwrap_or_default();
            let message = syntax_message(&e.without_snippet().to_string());
            Err(Diagnostic::new(
                format!("invalid YAML: {message}"),
                loc.with_len(1),
            ))
        }
    }
}

/// Parses YAML (or JSON, which is YAML) into a plain JSON value, for params files.
pub(crate) fn parse_value(text: &str) -> Result<serde_json::Value, Diagnostic> {
    let node = parse(text)?;
    serde_json::Value::deserialize(NodeDe(&node)).map_err(DeError::into_diagnostic)
}

/// serde-saphyr's messages end with " at line L column C"; the snippet says
/// that already.
fn syntax_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let trimmed = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let trimmed = trimmed.trim_start_matches("error: ").trim_end_matches(':');
    trimmed.to_owned()
}

/// A node's kind as parsed; children are already located.
struct Raw(Kind);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw(Kind::Null))
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw(Kind::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(Kind::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(Kind::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw(match i64::try_from(v) {
            Ok(i) => Kind::Int(i),
            Err(_) => Kind::UInt(v),
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(Kind::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(Kind::Str(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(Kind::Str(v)))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(s) = seq.next_element::<serde_saphyr::Spanned<Raw>>()? {
            items.push(Node {
                loc: loc_of(&s.referenced),
                kind: s.value.0,
            });
        }
        Ok(Raw(Kind::Seq(items)))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<serde_saphyr::Spanned<Raw>>()? {
            let v = map.next_value::<serde_saphyr::Spanned<Raw>>()?;
            entries.push((
                Node {
                    loc: loc_of(&k.referenced),
                    kind: k.value.0,
                },
                Node {
                    loc: loc_of(&v.referenced),
                    kind: v.value.0,
                },
            ));
        }
        Ok(Raw(Kind::Map(entries)))
    }
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
}

impl DeError {
    fn new(message: String, hint: Option<String>) -> DeError {
        DeError {
            message,
            hint,
            loc: None,
        }
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

    /// Adds context to the message (`... in step `x``).
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
        DeError::new(format!("missing field `{field}`"), None)
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

/// A serde `Deserializer` over one located node.
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a>(pub(crate) &'a Node);

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
            }),
            Kind::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
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
                visitor.visit_enum(EnumDe { key: k, value: v })
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e| e.at(loc))
    }

    forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'a> de::SeqAccess<'a> for SeqDe<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDe(node)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'a> de::MapAccess<'a> for MapDe<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(NodeDe(v)),
            None => Err(de::Error::custom("value requested before key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumDe<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'a> de::EnumAccess<'a> for EnumDe<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let v = seed.deserialize(NodeDe(self.key))?;
        Ok((v, NodeDe(self.value)))
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
            2 => seed.deserialize(NodeDe(self.node)).map(Some),
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
    fn syntax_errors_have_a_position() {
        let d = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
        assert!(d.loc.is_some());
        let d = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(d.loc.map(|l| l.line), Some(2), "{d:?}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields are read through Debug only")]
    struct Probe {
        attempts: u32,
        name: Option<String>,
    }

    #[test]
    fn errors_point_at_the_innermost_node() {
        let node = parse("attempts: three\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node)).unwrap_err();
        assert_eq!(
            e.message,
            "expected a non-negative integer, found the string `three`"
        );
        assert_eq!(e.loc.map(|l| (l.line, l.col)), Some((1, 11)));

        let node = parse("attempts: 3\nnmae: x\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node)).unwrap_err();
        assert_eq!(e.message, "unknown field `nmae`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `name`?"));
        assert_eq!(e.loc.map(|l| (l.line, l.col)), Some((2, 1)));

        let node = parse("name: x\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node)).unwrap_err();
        assert_eq!(e.message, "missing field `attempts`");

        let node = parse("[3, x]\n").unwrap();
        let e = Probe::deserialize(NodeDe(&node)).unwrap_err();
        assert_eq!(e.message, "expected a mapping, found a list");
    }
}
