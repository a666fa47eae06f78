//! `notify:`: URLs that parse and carry no token in the playbook, secrets
//! only from the environment, events listed once.

use super::*;
use crate::playbook::notify::{NotifyKind, NotifySpec, PlaybookValue, ValueSource};

impl Checker<'_> {
    pub(super) fn notify(&mut self) {
        let pb = self.pb;
        for n in &pb.notify {
            self.notify_target(n);
        }
    }

    fn notify_target(&mut self, n: &NotifySpec) {
        let kind = n.kind.value;
        match &n.url.value {
            PlaybookValue(ValueSource::Env(name)) => self.env_name(name, n.url.loc),
            PlaybookValue(ValueSource::Literal(url)) => match url::Url::parse(url) {
                Ok(u) if !matches!(u.scheme(), "http" | "https") => self.push(
                    Diagnostic::new(format!("the {kind} URL `{url}` is not http(s)"), n.url.loc)
                        .hint("notifications are POSTed over HTTP(S)"),
                ),
                Ok(u)
                    if u.query().is_some()
                        || !u.username().is_empty()
                        || u.password().is_some() =>
                {
                    self.push(
                        Diagnostic::new(
                            format!("the {kind} URL carries a token (a query string or credentials), which would be in every plan and journal"),
                            n.url.loc,
                        )
                        .hint("read it from the environment when the run starts: `url: {env: NOTIFY_URL}`"),
                    );
                }
                Ok(_) => {}
                Err(e) => self.push(
                    Diagnostic::new(format!("invalid {kind} URL `{url}`: {e}"), n.url.loc)
                        .hint("write `http(s)://HOST[:PORT]/PATH`, or `{env: NAME}`"),
                ),
            },
        }
        if let Some(secret) = &n.secret {
            match &secret.value {
                PlaybookValue(ValueSource::Env(name)) => self.env_name(name, secret.loc),
                PlaybookValue(ValueSource::Literal(_)) => self.push(
                    Diagnostic::new(
                        "a notification `secret` is written in the playbook; it would be in every plan and journal",
                        secret.loc,
                    )
                    .hint("read it from the environment when the run starts: `secret: {env: NOTIFY_SECRET}`"),
                ),
            }
            if kind == NotifyKind::Slack {
                self.push(
                    Diagnostic::new(
                        "a `slack` notification has no `secret`: incoming webhooks are not signed",
                        secret.loc,
                    )
                    .hint("remove `secret`, or use `kind: webhook` for a signed JSON POST"),
                );
            }
        }
        if let Some(events) = &n.events {
            if events.value.is_empty() {
                self.push(
                    Diagnostic::new("`events` of a notification is empty", events.loc).hint(
                        "list what to send (`approval_needed`, `failed`, `succeeded`, `cancelled`, `window_closed`), or leave `events` out for all of them",
                    ),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for e in &events.value {
                if !seen.insert(e.value) {
                    self.push(Diagnostic::new(
                        format!("`events` lists `{}` twice", e.value),
                        e.loc,
                    ));
                }
            }
        }
    }

    /// An environment variable's name.
    fn env_name(&mut self, name: &str, loc: Loc) {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.push(
                Diagnostic::new(format!("`{name}` is not an environment variable name"), loc)
                    .hint("letters, digits and `_`, not starting with a digit, e.g. `{env: RUNBOOK_WEBHOOK_URL}`"),
            );
        }
    }
}
