//! The playbook language as written: load YAML with positions, check it, and
//! report every problem with `file:line:col`, the source line and a hint.
//!
//! ```text
//! text --load.rs--> located YAML tree --document.rs + model.rs--> Playbook --validate/--> Playbook (valid)
//! ```
//!
//! [`Playbook::load`] is the entry: it returns a valid playbook or
//! [`Diagnostics`] holding *all* the errors found. The plan stage takes a
//! `Playbook`; nothing downstream sees YAML.
//!
//! The language reference is `README.md`; the JSON Schema
//! ([`SCHEMA`]) is generated from the model types by [`schema_json`] and
//! committed at `schemas/playbook.schema.json` (a test keeps them equal).

pub mod action;
mod changed_items;
pub mod diagnostic;
mod document;
mod load;
pub mod model;
pub mod notify;
pub mod source;
pub mod template;
pub mod validate;

use std::path::Path;
use std::sync::Arc;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use model::{
    BackoffSpec, ConditionSpec, Defaults, DurationExpr, DurationSpec, ItemType, Located,
    MatcherSpec, Needs, OnFailureSpec, Param, ParamDecl, ParamType, Params, Playbook, PlaybookDoc,
    RetrySpec, Step, StepDoc, StepKindSpec, WaitSpec, WhenSpec, WindowSpec,
};
pub use source::{Loc, Source};

/// The JSON Schema of the playbook language (`runbook schema` prints it).
pub const SCHEMA: &str = include_str!("../../schemas/playbook.schema.json");

/// Generates the JSON Schema from the model types (what `SCHEMA` must equal).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(PlaybookDoc);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

impl Playbook {
    /// Reads, parses and checks the playbook at `path`. The path is shown in
    /// diagnostics as given.
    pub fn load(path: &Path) -> Result<Playbook, Diagnostics> {
        let name = path.display().to_string();
        match crate::limits::read_file(path, crate::limits::PLAYBOOK_BYTES) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Playbook::from_source(Source::new(name, text)),
                Err(_) => Err(file_error(name, "is not UTF-8 text".to_owned())),
            },
            Err(e) => Err(file_error(name, e.to_string())),
        }
    }

    /// What is valid but may not be what the author means (see
    /// [`validate::warnings`]), to show after `validate`'s `ok`.
    pub fn warnings(&self) -> Diagnostics {
        let mut d = Diagnostics::new(Arc::clone(&self.source));
        for w in validate::warnings(self) {
            d.push(w);
        }
        d
    }

    /// Parses and checks playbook text (shown in diagnostics as `name`).
    pub fn from_str(name: &str, text: &str) -> Result<Playbook, Diagnostics> {
        Playbook::from_source(Source::new(name, text))
    }

    /// Parses and checks a source.
    pub fn from_source(source: Source) -> Result<Playbook, Diagnostics> {
        let source = Arc::new(source);
        let mut diags = Diagnostics::new(Arc::clone(&source));
        let root = match load::parse_all(source.text()) {
            Ok((root, errors)) => {
                for d in errors {
                    diags.push(d);
                }
                root
            }
            Err(d) => {
                diags.push(d);
                return Err(diags);
            }
        };
        let assembled = document::assemble(&source, &root, &mut diags);
        // The model owns its values; free the tree before the checks (it is
        // the largest structure of a big playbook).
        drop(root);
        let Some(doc) = assembled else {
            return Err(diags);
        };
        // Semantic checks run on whatever loaded, so one `validate` shows
        // structural and semantic errors together.
        let broken = validate::Broken {
            ids: &doc.broken_ids,
            params: &doc.broken_params,
            defaults: doc.broken_defaults,
            left_out: &doc.left_out,
        };
        validate::validate(&doc.playbook, &broken, &mut diags);
        if doc.complete {
            diags.into_result().map(|()| doc.playbook)
        } else {
            Err(diags)
        }
    }
}

fn file_error(name: String, what: String) -> Diagnostics {
    let mut d = Diagnostics::new(Arc::new(Source::new(name.clone(), String::new())));
    d.push(Diagnostic::whole_file(format!("playbook `{name}` {what}")));
    d
}

/// Parses a params file (YAML or JSON) into a JSON value; errors carry
/// `line:col` in the file.
pub fn parse_params_file(text: &str) -> Result<serde_json::Value, Diagnostic> {
    load::parse_value(text)
}
