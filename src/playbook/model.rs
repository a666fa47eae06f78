//! The playbook language as written: strict serde types, one per construct.
//!
//! Every struct denies unknown fields. Shorthands (`retry: 3`, `needs: a`,
//! `when: "{{...}}"`, `on_failure: abort`) have hand-written visitors whose
//! error names both forms, and impossible combinations (`max_delay < delay`,
//! two matchers in one condition, `attempts: 0`) are rejected while parsing,
//! so the error points at the value. The same types generate the JSON
//! Schema (`schemas/playbook.schema.json`, see [`super::schema`]); their doc
//! comments are the schema's descriptions, so document every field here.
//!
//! Values that later checks point at are wrapped in [`Located`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::load::{HINT_SEPARATOR, LOCATED_MARKER};
use super::source::{Loc, Source};

/// A value and the place in the playbook it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where it was written (unknown when built in code).
    pub loc: Loc,
}

impl<T> Located<T> {
    /// A value with no known position (built in code, not loaded).
    pub fn unlocated(value: T) -> Located<T> {
        Located {
            value,
            loc: Loc::default(),
        }
    }
}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Located<T>, D::Error> {
        struct LocatedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for LocatedVisitor<T> {
            type Value = Located<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }

            // The playbook loader answers the marker with (position, value).
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located<T>, A::Error> {
                let (line, col, len): (u32, u32, u32) = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing position"))?;
                let value = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("missing value"))?;
                Ok(Located {
                    value,
                    loc: Loc { line, col, len },
                })
            }

            // Any other deserializer treats the marker as a plain newtype.
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Located<T>, D::Error> {
                Ok(Located::unlocated(T::deserialize(d)?))
            }
        }

        deserializer.deserialize_newtype_struct(LOCATED_MARKER, LocatedVisitor(PhantomData))
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A loaded, validated playbook: what `Plan::build` takes.
#[derive(Clone, Debug)]
pub struct Playbook {
    /// The file it was loaded from.
    pub source: Arc<Source>,
    /// `name`.
    pub name: Located<String>,
    /// `description`.
    pub description: Option<String>,
    /// `params`, in file order.
    pub params: Vec<Param>,
    /// `defaults`.
    pub defaults: Defaults,
    /// `concurrency`.
    pub concurrency: Option<Located<u32>>,
    /// `window`: when the playbook may change things.
    pub window: Option<Located<WindowSpec>>,
    /// `steps`, in file order.
    pub steps: Vec<Step>,
    /// `notify`: where the run's notifications go.
    pub notify: Vec<super::notify::NotifySpec>,
    /// Top-level `approvers`, `min_approvals`, `allow_self_approval`: who
    /// must approve the plan.
    pub approval: ApprovalKeys,
}

impl Playbook {
    /// The declared param called `name`.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name.value == name)
    }

    /// The step called `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.value == id)
    }
}

/// One declared param.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its name (the key under `params`).
    pub name: Located<String>,
    /// Its declaration.
    pub decl: ParamDecl,
}

// The schema is generated from this type; the loader reads the same keys one
// section at a time (see `document.rs`), and a test keeps the two in step.
/// A runbook playbook: params, defaults and a DAG of steps that call
/// Alibaba Cloud RPC APIs, wait, sleep or ask for approval.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runbook playbook")]
pub struct PlaybookDoc {
    /// Name of the playbook (shown in plans, runs and the journal).
    pub name: String,
    /// What the playbook does, for the reviewer.
    pub description: Option<String>,
    /// Inputs, given with `-p KEY=VALUE` or `--params FILE`; templates read
    /// them as `{{params.NAME}}`.
    #[serde(default)]
    pub params: BTreeMap<String, ParamDecl>,
    /// Settings every step inherits unless it overrides them.
    pub defaults: Option<Defaults>,
    /// Steps in flight at once (at least 1; default 8).
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// The change window: `run` and `resume` refuse outside it (exit 6,
    /// nothing sent), and a run it closes on starts no new mutating call
    /// and stops as `window_closed` (exit 5), resumable in the next opening.
    pub window: Option<WindowSpec>,
    /// The steps. They run as a DAG: a step starts when every step it
    /// `needs` has finished; file order only breaks ties.
    pub steps: Vec<StepDoc>,
    /// Where the run's notifications go: approval needed, failed,
    /// succeeded, cancelled, window closed.
    pub notify: Option<Vec<super::notify::NotifySpec>>,
    /// Who may approve the plan: RAM user or role names, or ARNs
    /// (`acs:ram::ACCOUNT:user/NAME`, `acs:ram::ACCOUNT:role/NAME`,
    /// `acs:ram::ACCOUNT:root`), checked against the approver's identity from
    /// STS `GetCallerIdentity`. A role is one approver whatever its session.
    /// Once set, the person who started the run may not approve it (see
    /// `allow_self_approval`). Without it, anyone may approve.
    #[schemars(length(max = 100))]
    pub approvers: Option<Vec<String>>,
    /// How many distinct approvers must approve the plan (default 1; at
    /// most the number of `approvers` when they are listed).
    #[schemars(range(min = 1, max = 100))]
    pub min_approvals: Option<i64>,
    /// Let the person who started the run approve it although `approvers`
    /// is set (default false).
    pub allow_self_approval: Option<bool>,
}

/// Who must approve (the plan at the top level, or an `approve` step in
/// its mapping form), as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApprovalKeys {
    /// `approvers`: names or ARNs.
    pub approvers: Option<Located<Vec<Located<String>>>>,
    /// `min_approvals`.
    pub min_approvals: Option<Located<i64>>,
    /// `allow_self_approval`.
    pub allow_self_approval: Option<Located<bool>>,
}

impl ApprovalKeys {
    /// Whether none of the keys is written.
    pub fn is_empty(&self) -> bool {
        self.approvers.is_none()
            && self.min_approvals.is_none()
            && self.allow_self_approval.is_none()
    }
}

/// `approve:` of a step: the question (`approve: "Go?"`), or a mapping
/// that also says who must approve and how long to wait.
#[derive(Clone, Debug, PartialEq)]
pub struct ApproveSpec {
    /// The question asked.
    pub message: Located<String>,
    /// Who must approve.
    pub keys: ApprovalKeys,
    /// How long the run waits for the approval (the step's timeout).
    pub timeout: Option<Located<DurationExpr>>,
}

/// The mapping form of `approve`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ApproveObject")]
pub struct ApproveObject {
    /// The question the approver answers.
    pub message: Located<String>,
    /// Who may approve this step: RAM user or role names, or ARNs (as the
    /// top-level `approvers`).
    #[schemars(length(max = 100))]
    pub approvers: Option<Located<Vec<Located<String>>>>,
    /// How many distinct approvers must approve (default 1).
    #[schemars(range(min = 1, max = 100))]
    pub min_approvals: Option<Located<i64>>,
    /// Let the person who started the run approve this step although
    /// `approvers` is set (default false).
    pub allow_self_approval: Option<Located<bool>>,
    /// How long the run waits for the approval (`30m`, `4h`); the step's
    /// timeout (do not also write the step's `timeout`).
    pub timeout: Option<Located<DurationExpr>>,
}

impl<'de> Deserialize<'de> for ApproveSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ApproveSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ApproveSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the question (`approve: \"Go ahead?\"`) or a mapping `{ message, approvers, min_approvals, allow_self_approval, timeout }`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ApproveSpec, E> {
                Ok(ApproveSpec {
                    message: Located::unlocated(v.to_owned()),
                    keys: ApprovalKeys::default(),
                    timeout: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ApproveSpec, A::Error> {
                let o = ApproveObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ApproveSpec {
                    message: o.message,
                    keys: ApprovalKeys {
                        approvers: o.approvers,
                        min_approvals: o.min_approvals,
                        allow_self_approval: o.allow_self_approval,
                    },
                    timeout: o.timeout,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for ApproveSpec {
    fn schema_name() -> Cow<'static, str> {
        "Approve".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let o = generator.subschema_for::<ApproveObject>();
        json_schema!({
            "description": "The question (`approve: \"Go ahead?\"`), or a mapping that also says who must approve.",
            "anyOf": [ { "type": "string" }, o ]
        })
    }
}

/// Type of a param.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any text.
    String,
    /// A 64-bit integer (`-p project_id=10000`).
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A list (`-p ids=1,2,3` or `-p ids=[1,2,3]`) of `items`.
    Array,
}

impl ParamType {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
        }
    }
}

/// Type of the items of an array param.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemType {
    /// Any text.
    String,
    /// A 64-bit integer.
    Integer,
    /// `true` or `false`.
    Boolean,
}

impl ItemType {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::String => "string",
            ItemType::Integer => "integer",
            ItemType::Boolean => "boolean",
        }
    }
}

/// Declaration of one param.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    /// The param's type; values from the command line are converted to it.
    #[serde(rename = "type")]
    pub ty: Located<ParamType>,
    /// For `type: array`: the type of each item (default `string`).
    pub items: Option<Located<ItemType>>,
    /// Value used when none is given; makes the param optional.
    pub default: Option<Located<Value>>,
    /// The only values accepted (for arrays: for each item).
    pub allowed: Option<Located<Vec<Value>>>,
    /// What the param means, shown in plans and errors.
    pub description: Option<String>,
    /// Whether a value must be given (default: true when there is no `default`).
    pub required: Option<Located<bool>>,
}

/// Settings every step inherits unless it sets its own.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Region of every call (a template over params, e.g. `"{{params.region}}"`).
    pub region: Option<Located<String>>,
    /// RAM role every call is made as (`acs:ram::ACCOUNT:role/NAME`, a
    /// template over params): assumed through STS `AssumeRole` with the
    /// run's credentials.
    pub role_arn: Option<Located<String>>,
    /// Retry policy of every call (merged field by field with a step's own).
    pub retry: Option<Located<RetrySpec>>,
    /// Whole-step timeout of every `call` step (waits use their own `wait.timeout`).
    pub timeout: Option<Located<DurationExpr>>,
    /// What a failed step does to the run.
    pub on_failure: Option<Located<OnFailureSpec>>,
    /// Items in flight at once in a `for_each` step (default: the run's `concurrency`).
    #[schemars(range(min = 1))]
    pub for_each_concurrency: Option<Located<u32>>,
    /// How every call is signed: `v1` (HMAC-SHA1, the default) or `v3`
    /// (ACS3-HMAC-SHA256, as Alibaba's current SDKs sign). `--signature`
    /// (or `RUNBOOK_SIGNATURE`) overrides it; the choice is part of the plan.
    pub signature: Option<Located<crate::cloud::signer::SignatureVersion>>,
}

/// A change window: weekly slots in a time zone, minus blackout dates.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// IANA time zone of the slots and dates (`Asia/Shanghai`, `UTC`).
    pub tz: Located<String>,
    /// When changes may be made: `DAYS HH:MM-HH:MM` (`Sat 02:00-05:00`,
    /// `Mon-Fri 22:00-02:00`, `Sat,Sun 01:00-05:00`, `daily 01:00-03:00`).
    /// A slot whose end is before its start ends the next day.
    pub slots: Vec<Located<String>>,
    /// Local dates (`YYYY-MM-DD`) on which nothing is changed, whatever the slots say.
    #[serde(default)]
    pub blackout: Vec<Located<String>>,
}

// As written; the loader turns it into a [`Step`] with one kind.
/// One step. Exactly one of `call`, `wait`, `sleep` or `approve` says what it does.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
pub struct StepDoc {
    /// Unique id: lower-case letters, digits, `-` and `_`, starting with a
    /// letter or digit. Later templates read its output as `steps.<id>.output`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"))]
    pub id: Located<String>,
    /// What the step does, for the reviewer.
    pub description: Option<String>,
    /// Steps that must finish first: an id or a list of ids.
    #[serde(default)]
    pub needs: Needs,
    /// An action to call: a typed one (`dts.StopDtsJob`) or `api` for any other RPC API.
    pub call: Option<Located<String>>,
    /// Parameters of the `call` (values may be templates). For `call: api`:
    /// `product`, `version`, `action`, `risk` and `params`.
    pub with: Option<Params>,
    /// Fails the step unless this holds on the call's response.
    pub assert: Option<Located<ConditionSpec>>,
    /// Poll a read-only call until a condition holds.
    pub wait: Option<Located<WaitSpec>>,
    /// Sleep this long (`30s`, `2m`).
    pub sleep: Option<Located<DurationExpr>>,
    /// Stop for a human's yes: the question asked, or a mapping `{message,
    /// approvers, min_approvals, allow_self_approval, timeout}`.
    /// Non-interactive runs need `--approve <id>`.
    pub approve: Option<Located<ApproveSpec>>,
    /// Run the step only when this holds; skipped otherwise (its dependents still run).
    pub when: Option<Located<WhenSpec>>,
    /// Fan-out: a template that renders to a list (`"{{params.file_ids}}"`)
    /// or a literal list; the step runs once per item, with `{{item}}` bound.
    /// A compensation step may fan out over `"{{failed.changed_items}}"`:
    /// the items the failed step actually changed in this run.
    pub for_each: Option<Located<Value>>,
    /// Items of a `for_each` in flight at once.
    #[schemars(range(min = 1))]
    pub for_each_concurrency: Option<Located<u32>>,
    /// Retry policy of the step's calls: attempts, or the full policy.
    pub retry: Option<Located<RetrySpec>>,
    /// Whole-step timeout: all attempts and all items.
    pub timeout: Option<Located<DurationExpr>>,
    /// What a failure of this step does to the run.
    pub on_failure: Option<Located<OnFailureSpec>>,
    /// Region of the step's calls (overrides `defaults.region`).
    pub region: Option<Located<String>>,
    /// RAM role the step's calls are made as (overrides `defaults.role_arn`;
    /// a template over params), e.g. a role in another account.
    pub role_arn: Option<Located<String>>,
    /// A compensation step: runs only when named by an `on_failure: { run: [...] }`;
    /// it may read `{{failed.changed_items}}`, what the failed step changed.
    #[serde(default)]
    pub compensation: bool,
    /// Values of the step's response to report (dotted paths, e.g.
    /// `[Data.Status, Data.Message]`): shown in a table at the end of
    /// `run`, in `show` and in `runbook report`, one row per item.
    pub report: Option<Located<Vec<Located<String>>>>,
}

/// One step of a loaded playbook.
#[derive(Clone, Debug)]
pub struct Step {
    /// Its id (`steps.<id>.output` in later templates).
    pub id: Located<String>,
    /// What the step does, for the reviewer.
    pub description: Option<String>,
    /// Steps that must finish first.
    pub needs: Needs,
    /// What the step does: call, wait, sleep or approve.
    pub kind: StepKindSpec,
    /// Run the step only when this holds.
    pub when: Option<Located<WhenSpec>>,
    /// Fan-out: a template that renders to a list, or a literal list.
    pub for_each: Option<Located<Value>>,
    /// Items of a `for_each` in flight at once.
    pub for_each_concurrency: Option<Located<u32>>,
    /// Retry policy of the step's calls.
    pub retry: Option<Located<RetrySpec>>,
    /// Whole-step timeout: all attempts and all items.
    pub timeout: Option<Located<DurationExpr>>,
    /// What a failure of this step does to the run.
    pub on_failure: Option<Located<OnFailureSpec>>,
    /// Region of the step's calls (overrides `defaults.region`).
    pub region: Option<Located<String>>,
    /// RAM role the step's calls are made as (overrides `defaults.role_arn`).
    pub role_arn: Option<Located<String>>,
    /// A compensation step: runs only when named by an `on_failure: { run: [...] }`.
    pub compensation: bool,
    /// Dotted paths of the response to report (`report:`).
    pub report: Option<Located<Vec<Located<String>>>>,
    /// Where the step starts in the file.
    pub loc: Loc,
}

impl Step {
    /// The step ids it needs.
    pub fn needs_ids(&self) -> impl Iterator<Item = &str> {
        self.needs.0.iter().map(|n| n.value.as_str())
    }
}

/// What a step does: exactly one kind.
#[derive(Clone, Debug)]
pub enum StepKindSpec {
    /// `call: ACTION` with its `with` and `assert`.
    Call {
        /// The action (`dts.StopDtsJob`, `api`).
        call: Located<String>,
        /// Its parameters.
        with: Option<Params>,
        /// Fails the step unless this holds on the response.
        assert: Option<Located<ConditionSpec>>,
    },
    /// `wait: {...}`.
    Wait(Box<Located<WaitSpec>>),
    /// `sleep: 30s`.
    Sleep(Located<DurationExpr>),
    /// `approve: "question"` or `approve: {message, approvers, ...}`.
    Approve(Located<ApproveSpec>),
}

impl StepKindSpec {
    /// The key that names the kind (`call`, `wait`, `sleep`, `approve`).
    pub fn name(&self) -> &'static str {
        match self {
            StepKindSpec::Call { .. } => "call",
            StepKindSpec::Wait(_) => "wait",
            StepKindSpec::Sleep(_) => "sleep",
            StepKindSpec::Approve(_) => "approve",
        }
    }

    /// Whether the step produces an output other steps can read.
    pub fn has_output(&self) -> bool {
        matches!(self, StepKindSpec::Call { .. } | StepKindSpec::Wait(_))
    }

    /// The action the step calls or polls, with its parameters.
    pub fn call(&self) -> Option<(&Located<String>, Option<&Params>)> {
        match self {
            StepKindSpec::Call { call, with, .. } => Some((call, with.as_ref())),
            StepKindSpec::Wait(w) => Some((&w.value.call, w.value.with.as_ref())),
            StepKindSpec::Sleep(_) | StepKindSpec::Approve(_) => None,
        }
    }
}

/// `needs`: one step id or a list of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Needs(pub Vec<Located<String>>);

impl<'de> Deserialize<'de> for Needs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Needs, D::Error> {
        let located = Located::<NeedsForm>::deserialize(deserializer)?;
        Ok(match located.value {
            NeedsForm::One(id) => Needs(vec![Located {
                value: id,
                loc: located.loc,
            }]),
            NeedsForm::Many(ids) => Needs(ids),
        })
    }
}

enum NeedsForm {
    One(String),
    Many(Vec<Located<String>>),
}

impl<'de> Deserialize<'de> for NeedsForm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<NeedsForm, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NeedsForm;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a step id or a list of step ids")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<NeedsForm, E> {
                Ok(NeedsForm::One(v.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NeedsForm, A::Error> {
                let mut ids = Vec::new();
                while let Some(id) = seq.next_element()? {
                    ids.push(id);
                }
                Ok(NeedsForm::Many(ids))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for Needs {
    fn schema_name() -> Cow<'static, str> {
        "Needs".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A step id, or a list of step ids.",
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

/// Parameters of a call, in file order; values may be templates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params(pub Vec<(Located<String>, Located<Value>)>);

impl Params {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Located<Value>> {
        self.0.iter().find(|(k, _)| k.value == name).map(|(_, v)| v)
    }

    /// The parameters as a sorted map (what the plan shows).
    pub fn to_map(&self) -> BTreeMap<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.clone()))
            .collect()
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Params, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of parameter names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Params(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl JsonSchema for Params {
    fn schema_name() -> Cow<'static, str> {
        "CallParams".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Parameters of the call by wire name; values may be templates.",
            "type": "object",
            "additionalProperties": true
        })
    }
}

/// A duration: `500ms`, `30s`, `2m`, `1h 30m` (jiff's friendly format; ISO 8601 `PT2M` works too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// Parses the friendly or ISO 8601 form; negative durations are refused.
    pub fn parse(s: &str) -> Result<DurationSpec, crate::duration::DurationError> {
        crate::duration::parse(s).map(DurationSpec)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DurationSpec, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like `30s`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                DurationSpec::parse(v)
                    .map_err(|e| E::custom(format!("{}{HINT_SEPARATOR}{}", e.message, e.hint())))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: `{v}`{HINT_SEPARATOR}{}",
                    crate::duration::HINT
                )))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: `{v}`{HINT_SEPARATOR}{}",
                    crate::duration::HINT
                )))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationSpec, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: `{v}`{HINT_SEPARATOR}{}",
                    crate::duration::HINT
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A duration written out (`30s`) or read from params
/// (`"{{params.hold}}"`, `"{{params.minutes}}m"`): the plan renders the
/// template and checks the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationExpr {
    /// Written out.
    Fixed(DurationSpec),
    /// A template over params, rendered when the plan is built.
    Template(String),
}

impl DurationExpr {
    /// The duration, when written out.
    pub fn fixed(&self) -> Option<Duration> {
        match self {
            DurationExpr::Fixed(d) => Some(d.0),
            DurationExpr::Template(_) => None,
        }
    }
}

impl fmt::Display for DurationExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationExpr::Fixed(d) => f.write_str(&crate::duration::format(d.0)),
            DurationExpr::Template(t) => f.write_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for DurationExpr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DurationExpr, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationExpr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like `30s` or a template like `\"{{params.hold}}\"`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationExpr, E> {
                if super::template::has_template(v) {
                    return Ok(DurationExpr::Template(v.to_owned()));
                }
                DurationSpec::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(DurationExpr::Fixed)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationExpr, E> {
                DurationSpec::deserialize(de::value::U64Deserializer::<E>::new(v))
                    .map(DurationExpr::Fixed)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationExpr, E> {
                DurationSpec::deserialize(de::value::I64Deserializer::<E>::new(v))
                    .map(DurationExpr::Fixed)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationExpr, E> {
                DurationSpec::deserialize(de::value::F64Deserializer::<E>::new(v))
                    .map(DurationExpr::Fixed)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for DurationExpr {
    fn schema_name() -> Cow<'static, str> {
        "DurationOrTemplate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration with a unit (`500ms`, `30s`, `2m`, `1h 30m`), or a template over params that renders to one (`\"{{params.hold}}\"`, `\"{{params.minutes}}m\"`), checked when the plan is built.",
            "type": "string",
            "examples": ["30s", "2m", "{{params.hold}}"]
        })
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration with a unit: `500ms`, `30s`, `2m`, `1h 30m`.",
            "type": "string",
            "examples": ["30s", "2m", "1h 30m"]
        })
    }
}

/// How a selected value must look: exactly one of `in`, `not_in`, `equals`, `exists`.
#[derive(Clone, Debug, PartialEq)]
pub enum MatcherSpec {
    /// One of these values.
    In(Vec<Value>),
    /// None of these values (a missing value matches).
    NotIn(Vec<Value>),
    /// Exactly this value.
    Equals(Value),
    /// Whether the path exists.
    Exists(bool),
}

impl MatcherSpec {
    fn from_parts(
        in_: Option<Vec<Value>>,
        not_in: Option<Vec<Value>>,
        equals: Option<Value>,
        exists: Option<bool>,
    ) -> Result<MatcherSpec, String> {
        let given = [
            in_.is_some(),
            not_in.is_some(),
            equals.is_some(),
            exists.is_some(),
        ]
        .iter()
        .filter(|&&b| b)
        .count();
        if given != 1 {
            return Err(format!(
                "a condition needs exactly one of `in`, `not_in`, `equals` or `exists`, found {given}"
            ));
        }
        Ok(match (in_, not_in, equals, exists) {
            (Some(v), ..) => MatcherSpec::In(v),
            (_, Some(v), ..) => MatcherSpec::NotIn(v),
            (_, _, Some(v), _) => MatcherSpec::Equals(v),
            (.., Some(b)) => MatcherSpec::Exists(b),
            _ => unreachable!("exactly one matcher was counted above"),
        })
    }
}

/// A test on a call's response: `select` a dotted path, then match it.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(try_from = "ConditionRaw")]
pub struct ConditionSpec {
    /// Dotted path into the response (`Data.Status`); empty: the whole response.
    pub select: String,
    /// How the selected value must look.
    #[schemars(skip)]
    pub matcher: MatcherSpec,
}

/// The written form of a condition.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionRaw {
    /// Dotted path into the response (`Data.Status`, `Items.0.Id`). Strings
    /// compare case-insensitively (status casing varies between APIs).
    pub select: String,
    /// The value must be one of these.
    #[serde(rename = "in")]
    pub in_: Option<Vec<Value>>,
    /// The value must be none of these (a missing value matches).
    pub not_in: Option<Vec<Value>>,
    /// The value must equal this.
    pub equals: Option<Value>,
    /// The path must exist (`true`) or not (`false`).
    pub exists: Option<bool>,
}

impl TryFrom<ConditionRaw> for ConditionSpec {
    type Error = String;

    fn try_from(raw: ConditionRaw) -> Result<ConditionSpec, String> {
        Ok(ConditionSpec {
            select: raw.select,
            matcher: MatcherSpec::from_parts(raw.in_, raw.not_in, raw.equals, raw.exists)?,
        })
    }
}

/// `when`: a template that must render truthy, or a template and a matcher.
#[derive(Clone, Debug, PartialEq)]
pub enum WhenSpec {
    /// Truthy: not empty, `false`, `0` or `null`.
    Truthy(String),
    /// The rendered `value` must match.
    Match {
        /// The template.
        value: String,
        /// How it must look.
        matcher: MatcherSpec,
    },
}

impl WhenSpec {
    /// The template it renders.
    pub fn template(&self) -> &str {
        match self {
            WhenSpec::Truthy(t) | WhenSpec::Match { value: t, .. } => t,
        }
    }
}

/// The mapping form of `when`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhenMatch {
    /// A template (`"{{steps.check.output.Data.Status}}"`).
    pub value: String,
    /// The rendered value must be one of these.
    #[serde(rename = "in")]
    pub in_: Option<Vec<Value>>,
    /// The rendered value must be none of these.
    pub not_in: Option<Vec<Value>>,
    /// The rendered value must equal this.
    pub equals: Option<Value>,
    /// The value must be present (`true`) or absent (`false`).
    pub exists: Option<bool>,
}

impl<'de> Deserialize<'de> for WhenSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WhenSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WhenSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a template string or a mapping `{ value, in | not_in | equals | exists }`",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<WhenSpec, E> {
                Ok(WhenSpec::Truthy(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<WhenSpec, A::Error> {
                let m = WhenMatch::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let matcher = MatcherSpec::from_parts(m.in_, m.not_in, m.equals, m.exists)
                    .map_err(de::Error::custom)?;
                Ok(WhenSpec::Match {
                    value: m.value,
                    matcher,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for WhenSpec {
    fn schema_name() -> Cow<'static, str> {
        "When".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let m = generator.subschema_for::<WhenMatch>();
        json_schema!({
            "description": "A template that must render truthy, or `{ value, in | not_in | equals | exists }`.",
            "anyOf": [ { "type": "string" }, m ]
        })
    }
}

/// How retry delays grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackoffSpec {
    /// The same delay every time.
    Fixed,
    /// Doubling from `delay` up to `max_delay`.
    Exponential,
}

/// A retry policy; fields left out come from `defaults.retry`, then from the
/// built-in policy (5 attempts, exponential from 1s to 30s, jitter).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetrySpec {
    /// Total attempts, the first included.
    pub attempts: Option<u32>,
    /// How the delay grows.
    pub backoff: Option<BackoffSpec>,
    /// First delay.
    pub delay: Option<DurationSpec>,
    /// Largest delay.
    pub max_delay: Option<DurationSpec>,
    /// Randomize each delay in `[0, delay]`.
    pub jitter: Option<bool>,
}

impl RetrySpec {
    /// `self` with the fields it leaves out taken from `base`.
    #[must_use]
    pub fn over(&self, base: &RetrySpec) -> RetrySpec {
        RetrySpec {
            attempts: self.attempts.or(base.attempts),
            backoff: self.backoff.or(base.backoff),
            delay: self.delay.or(base.delay),
            max_delay: self.max_delay.or(base.max_delay),
            jitter: self.jitter.or(base.jitter),
        }
    }

    /// Rejects impossible policies.
    pub fn check(&self) -> Result<(), String> {
        if self.attempts == Some(0) {
            return Err("retry `attempts` must be at least 1 (1 means no retry)".to_owned());
        }
        if let (Some(d), Some(m)) = (self.delay, self.max_delay)
            && m.0 < d.0
        {
            return Err(format!(
                "retry `max_delay` ({}) is shorter than `delay` ({})",
                crate::duration::format(m.0),
                crate::duration::format(d.0)
            ));
        }
        Ok(())
    }
}

/// The mapping form of `retry`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryObject {
    /// Total attempts, the first included (1: no retry).
    #[schemars(range(min = 1))]
    pub attempts: Option<u32>,
    /// `fixed` or `exponential` (doubling).
    pub backoff: Option<BackoffSpec>,
    /// First delay (`1s`).
    pub delay: Option<DurationSpec>,
    /// Largest delay (`30s`); not shorter than `delay`.
    pub max_delay: Option<DurationSpec>,
    /// Full jitter: each delay is uniform in `[0, delay]`.
    pub jitter: Option<bool>,
}

impl<'de> Deserialize<'de> for RetrySpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RetrySpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RetrySpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of attempts (`retry: 3`) or a mapping `{ attempts, backoff, delay, max_delay, jitter }`")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetrySpec, E> {
                let attempts = u32::try_from(v)
                    .map_err(|_| E::custom(format!("retry `attempts` is too large: {v}")))?;
                let spec = RetrySpec {
                    attempts: Some(attempts),
                    ..RetrySpec::default()
                };
                spec.check().map_err(E::custom)?;
                Ok(spec)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetrySpec, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!(
                        "retry `attempts` must be at least 1, found {v}"
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RetrySpec, A::Error> {
                let o = RetryObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let spec = RetrySpec {
                    attempts: o.attempts,
                    backoff: o.backoff,
                    delay: o.delay,
                    max_delay: o.max_delay,
                    jitter: o.jitter,
                };
                spec.check().map_err(de::Error::custom)?;
                Ok(spec)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for RetrySpec {
    fn schema_name() -> Cow<'static, str> {
        "Retry".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let o = generator.subschema_for::<RetryObject>();
        json_schema!({
            "description": "Attempts (`retry: 3`) or the full policy.",
            "anyOf": [ { "type": "integer", "minimum": 1 }, o ]
        })
    }
}

/// What a failed step does to the run.
#[derive(Clone, Debug, PartialEq)]
pub enum OnFailureSpec {
    /// Start no new steps, let those in flight finish, fail the run (default).
    Abort,
    /// Go on; dependents of the failed step are skipped; the run ends failed.
    Continue,
    /// Run these compensation steps in order, then abort.
    Run(Vec<Located<String>>),
}

/// The mapping form of `on_failure`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnFailureRun {
    /// Ids of `compensation: true` steps to run, in order.
    pub run: Vec<Located<String>>,
}

impl<'de> Deserialize<'de> for OnFailureSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<OnFailureSpec, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OnFailureSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`abort`, `continue` or `{ run: [step ids] }`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OnFailureSpec, E> {
                match v {
                    "abort" => Ok(OnFailureSpec::Abort),
                    "continue" => Ok(OnFailureSpec::Continue),
                    other => Err(E::unknown_variant(other, &["abort", "continue"])),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OnFailureSpec, A::Error> {
                let r = OnFailureRun::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if r.run.is_empty() {
                    return Err(de::Error::custom("`on_failure.run` names no step"));
                }
                Ok(OnFailureSpec::Run(r.run))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for OnFailureSpec {
    fn schema_name() -> Cow<'static, str> {
        "OnFailure".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let run = generator.subschema_for::<OnFailureRun>();
        json_schema!({
            "description": "`abort` (default), `continue`, or `{ run: [compensation step ids] }`.",
            "anyOf": [ { "type": "string", "enum": ["abort", "continue"] }, run ]
        })
    }
}

/// A polling wait: call a read-only action every `every` until `until` holds.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitSpec {
    /// The read-only action to poll (`dts.DescribeDtsJobDetail`).
    pub call: Located<String>,
    /// Its parameters (values may be templates).
    pub with: Option<Params>,
    /// Done when this holds on the response (required).
    pub until: Option<Located<ConditionSpec>>,
    /// Fail at once when this holds on the response.
    pub fail_if: Option<Located<ConditionSpec>>,
    /// Poll interval (default `10s`).
    pub every: Option<Located<DurationExpr>>,
    /// Multiply the interval by this after each poll (default 1.0: fixed; at least 1.0).
    pub backoff: Option<Located<f64>>,
    /// Upper bound of the interval when backing off (default: 10 x `every`).
    pub max_every: Option<Located<DurationExpr>>,
    /// Give up after this long (default `15m`).
    pub timeout: Option<Located<DurationExpr>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::load::{NodeDe, parse};

    fn de<T: for<'a> Deserialize<'a>>(yaml: &str) -> Result<T, String> {
        let node = parse(yaml).map_err(|d| d.message)?;
        T::deserialize(NodeDe(&node, &[])).map_err(|e| e.to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(
            DurationSpec::parse("30s").unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            DurationSpec::parse("1h 30m").unwrap().0,
            Duration::from_secs(5400)
        );
        assert_eq!(
            DurationSpec::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert!(DurationSpec::parse("5 parsecs").is_err());
        assert!(DurationSpec::parse("-5s").is_err());
    }

    #[test]
    fn retry_shorthand_and_checks() {
        let r: RetrySpec = de("3").unwrap();
        assert_eq!(r.attempts, Some(3));
        assert!(de::<RetrySpec>("0").unwrap_err().contains("at least 1"));
        let e = de::<RetrySpec>("{ delay: 10s, max_delay: 1s }").unwrap_err();
        assert!(e.contains("shorter than"), "{e}");
        let e = de::<RetrySpec>("{ attempts: 2, backof: fixed }").unwrap_err();
        assert_eq!(e, "unknown field `backof`");
        let e = de::<RetrySpec>("{ backoff: linear }").unwrap_err();
        assert_eq!(e, "unknown value `linear`");
        let e = de::<RetrySpec>("[1]").unwrap_err();
        assert!(e.contains("a number of attempts"), "{e}");
    }

    #[test]
    fn conditions_need_exactly_one_matcher() {
        let c: ConditionSpec = de("{ select: Status, in: [Finished] }").unwrap();
        assert_eq!(c.matcher, MatcherSpec::In(vec![Value::from("Finished")]));
        let e = de::<ConditionSpec>("{ select: Status, in: [a], equals: b }").unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = de::<ConditionSpec>("{ select: Status }").unwrap_err();
        assert!(e.contains("found 0"), "{e}");
    }

    #[test]
    fn shorthands() {
        let n: Needs = de("a").unwrap();
        assert_eq!(n.0.len(), 1);
        let n: Needs = de("[a, b]").unwrap();
        assert_eq!(n.0[1].value, "b");
        assert_eq!(
            de::<OnFailureSpec>("continue").unwrap(),
            OnFailureSpec::Continue
        );
        assert!(
            matches!(de::<OnFailureSpec>("{ run: [undo] }").unwrap(), OnFailureSpec::Run(v) if v.len() == 1)
        );
        assert!(
            de::<OnFailureSpec>("retry")
                .unwrap_err()
                .contains("unknown value")
        );
        assert_eq!(
            de::<WhenSpec>("'{{params.x}}'").unwrap(),
            WhenSpec::Truthy("{{params.x}}".into())
        );
        assert!(matches!(
            de::<WhenSpec>("{ value: '{{params.x}}', equals: 1 }").unwrap(),
            WhenSpec::Match {
                matcher: MatcherSpec::Equals(_),
                ..
            }
        ));
    }
}
