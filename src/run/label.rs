//! Names for fan-out items, made from their values: `terminate-nodes[101]`
//! for a scalar item, `terminate-nodes[FileId=101]` for a mapping (its id-like
//! keys, else all of them). Logs, events, `show` and the approval prompt use
//! them; JSON keeps the item's index alongside.
//!
//! A label is compact (at most [`MAX_CHARS`] characters, cut with `…`) and
//! unambiguous: a string that is not a plain word (letters, digits and
//! `-_.:/@+`) is quoted JSON-style, and control and invisible formatting
//! characters are escaped, so a label never breaks a line, reorders text on
//! a terminal, or reads as two items.

use serde_json::Value;

/// The longest label, in characters.
pub const MAX_CHARS: usize = 60;

/// The label of a fan-out item.
pub fn item_label(item: &Value) -> String {
    let full = match item {
        Value::Object(map) => {
            let ids: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| is_id_key(k)).collect();
            let keys = if ids.is_empty() {
                map.iter().collect()
            } else {
                ids
            };
            if keys.is_empty() {
                "{}".to_owned()
            } else {
                keys.iter()
                    .map(|(k, v)| format!("{}={}", word(k), scalar(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(scalar).collect();
            format!("({})", parts.join(","))
        }
        other => scalar(other),
    };
    truncate(full)
}

/// `step[label]`, the name of one item of a step.
pub fn named(step: &str, item: &Value) -> String {
    format!("{step}[{}]", item_label(item))
}

/// Whether a mapping key names an identity (`FileId`, `dts_job_id`, `id`, `Name`).
pub fn is_id_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("id") || k.ends_with("ids") || k == "name"
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => word(s),
        Value::Array(_) | Value::Object(_) => quote(&v.to_string()),
        other => other.to_string(),
    }
}

/// A plain word as it is; anything else quoted and escaped.
fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@+".contains(c));
    if plain { s.to_owned() } else { quote(s) }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if invisible(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Control characters and the formatting characters that change how a
/// terminal shows the text around them (bidi overrides, zero-width marks).
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn truncate(s: String) -> String {
    if s.chars().count() <= MAX_CHARS {
        return s;
    }
    let mut cut: String = s.chars().take(MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn labels_name_items_by_value() {
        assert_eq!(item_label(&json!(101)), "101");
        assert_eq!(item_label(&json!("l3m1213ye7l")), "l3m1213ye7l");
        assert_eq!(item_label(&json!(true)), "true");
        assert_eq!(item_label(&json!(null)), "null");
        assert_eq!(
            item_label(&json!({"FileId": 101, "Owner": "ops"})),
            "FileId=101"
        );
        assert_eq!(
            item_label(&json!({"ProjectId": 1, "FileId": 101})),
            "ProjectId=1,FileId=101"
        );
        assert_eq!(
            item_label(&json!({"Owner": "ops", "Note": "a b"})),
            "Owner=ops,Note=\"a b\""
        );
        assert_eq!(item_label(&json!({})), "{}");
        assert_eq!(item_label(&json!([1, "x"])), "(1,x)");
        assert_eq!(named("terminate", &json!(7)), "terminate[7]");
    }

    #[test]
    fn odd_characters_are_quoted_and_escaped() {
        assert_eq!(item_label(&json!("a]b")), "\"a]b\"");
        assert_eq!(item_label(&json!("a,b=c")), "\"a,b=c\"");
        assert_eq!(item_label(&json!("")), "\"\"");
        assert_eq!(item_label(&json!("x\ny")), "\"x\\ny\"");
        assert_eq!(item_label(&json!("\u{1b}[31m")), "\"\\u{1b}[31m\"");
        assert_eq!(item_label(&json!("ab\u{202e}cd")), "\"ab\\u{202e}cd\"");
        assert_eq!(item_label(&json!("say \"hi\"")), "\"say \\\"hi\\\"\"");
        assert_eq!(item_label(&json!("节点")), "\"节点\"");
    }

    #[test]
    fn long_labels_are_cut() {
        let long = "x".repeat(200);
        let l = item_label(&json!(long));
        assert_eq!(l.chars().count(), MAX_CHARS);
        assert!(l.ends_with('…'));
    }

    proptest! {
        /// Whatever the value, a label is short and has no control or
        /// invisible character; two different short strings never share a
        /// label (quoting and escaping are one-to-one).
        #[test]
        fn labels_are_short_printable_and_distinct(
            s in "\\PC*|[\\x00-\\x1f\\u{202a}-\\u{202e}a-z,=\\[\\]\"]{0,80}",
            n in any::<i64>(),
            words in proptest::collection::btree_set("[a-z0-9,=\\]\"\\\\ \x00-\x1f\u{202a}-\u{202e}]{0,5}", 2..8),
        ) {
            for v in [json!(s), json!({"Id": s, "n": n}), json!([s, n])] {
                let l = item_label(&v);
                prop_assert!(l.chars().count() <= MAX_CHARS, "{l}");
                prop_assert!(!l.chars().any(invisible), "{l:?}");
            }
            prop_assert_eq!(item_label(&json!(n)), n.to_string());
            let labels: std::collections::BTreeSet<String> =
                words.iter().map(|w| item_label(&json!({"FileId": w}))).collect();
            prop_assert_eq!(labels.len(), words.len());
        }
    }
}
