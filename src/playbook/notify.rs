//! `notify:`, where a run's notifications go, as written: a kind
//! (`webhook`, `dingtalk`, `slack`), a URL, an optional signing secret and
//! the events wanted. A URL or secret may be `{env: NAME}`, read when the
//! run starts, so that tokens stay out of the playbook, the plan and the
//! journal (`validate` refuses a written secret and a written URL that
//! carries a token).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::model::Located;

/// One place notifications go.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// `webhook` (JSON POST), `dingtalk` (custom robot) or `slack`
    /// (Slack-compatible incoming webhook).
    pub kind: Located<NotifyKind>,
    /// Where to POST: written out (no query string or credentials: those
    /// carry tokens), or `{env: NAME}`.
    pub url: Located<PlaybookValue>,
    /// Signing secret, always `{env: NAME}`: an HMAC-SHA256 signature header
    /// for `webhook`, the `sign` parameter for `dingtalk`.
    pub secret: Option<Located<PlaybookValue>>,
    /// The events to send (default: all of them).
    pub events: Option<Located<Vec<Located<NotifyEvent>>>>,
}

/// How a notification is sent.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A JSON POST, signed with `X-Runbook-Signature-256` when a secret is set.
    Webhook,
    /// A DingTalk custom robot (text message; `timestamp` and `sign` when a secret is set).
    Dingtalk,
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack,
}

impl NotifyKind {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Dingtalk => "dingtalk",
            NotifyKind::Slack => "slack",
        }
    }

    /// Every kind.
    pub const ALL: [NotifyKind; 3] = [NotifyKind::Webhook, NotifyKind::Dingtalk, NotifyKind::Slack];
}

impl fmt::Display for NotifyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a notification is about.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// The run waits for an approval (with the `runbook approve` command).
    ApprovalNeeded,
    /// The run failed (step, error, RequestId, the resume command).
    Failed,
    /// The run succeeded.
    Succeeded,
    /// The run was cancelled or interrupted.
    Cancelled,
    /// The run's window closed before it finished.
    WindowClosed,
}

impl NotifyEvent {
    /// Every event.
    pub const ALL: [NotifyEvent; 5] = [
        NotifyEvent::ApprovalNeeded,
        NotifyEvent::Failed,
        NotifyEvent::Succeeded,
        NotifyEvent::Cancelled,
        NotifyEvent::WindowClosed,
    ];

    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::ApprovalNeeded => "approval_needed",
            NotifyEvent::Failed => "failed",
            NotifyEvent::Succeeded => "succeeded",
            NotifyEvent::Cancelled => "cancelled",
            NotifyEvent::WindowClosed => "window_closed",
        }
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value written in the playbook, or the environment variable it is read
/// from when the run starts (`{env: NAME}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    /// As written.
    Literal(String),
    /// From this environment variable.
    Env(String),
}

impl ValueSource {
    /// Parses the playbook's form: a string, or `{env: NAME}`.
    pub fn from_playbook<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<ValueSource, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ValueSource;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or `{env: NAME}` to read it from an environment variable")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ValueSource, E> {
                Ok(ValueSource::Literal(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueSource, A::Error> {
                let mut env = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "env" || env.is_some() {
                        return Err(de::Error::custom(format!(
                            "unexpected `{key}`: write `{{env: NAME}}` and nothing else"
                        )));
                    }
                    env = Some(map.next_value::<String>()?);
                }
                env.map(ValueSource::Env)
                    .ok_or_else(|| de::Error::custom("missing `env`: write `{env: NAME}`"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The playbook's form (a string or `{env: NAME}`), distinct from the
/// plan's JSON form (`{"literal": ...}` / `{"env": ...}`).
impl<'de> Deserialize<'de> for PlaybookValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PlaybookValue, D::Error> {
        ValueSource::from_playbook(deserializer).map(PlaybookValue)
    }
}

/// A [`ValueSource`] as the playbook writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaybookValue(pub ValueSource);

impl JsonSchema for PlaybookValue {
    fn schema_name() -> Cow<'static, str> {
        "ValueOrEnv".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string, or `{env: NAME}` to read it from an environment variable when the run starts.",
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": { "env": { "type": "string" } },
                    "required": ["env"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
