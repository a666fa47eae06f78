//! Who must approve: the top-level `approvers`, `min_approvals` and
//! `allow_self_approval` (the plan) and the same keys in an `approve`
//! step's mapping. Each approver is a RAM user or role name or an ARN
//! ([`crate::cloud::principal`]), written once; `min_approvals` is at least
//! 1 and, when approvers are listed, at most their number.

use std::collections::HashMap;

use super::*;
use crate::cloud::principal::ApproverSpec;
use crate::playbook::model::ApprovalKeys;

/// The most approvers one list may name.
pub(crate) const MAX_APPROVERS: usize = 100;

impl Checker<'_> {
    /// The top-level keys (the plan's approval).
    pub(super) fn plan_approval(&mut self) {
        let keys = &self.pb.approval;
        self.approval_keys(keys, "the plan");
    }

    /// One set of approval keys; `whose` names what they apply to
    /// (`the plan`, ``step `x` ``).
    pub(super) fn approval_keys(&mut self, keys: &ApprovalKeys, whose: &str) {
        let mut distinct = 0usize;
        if let Some(list) = &keys.approvers {
            if list.value.is_empty() {
                self.push(
                    Diagnostic::new(format!("`approvers` of {whose} is empty"), list.loc)
                        .hint("name at least one RAM user or role (or its ARN), or leave `approvers` out so that anyone may approve"),
                );
            }
            if list.value.len() > MAX_APPROVERS {
                self.push(
                    Diagnostic::new(
                        format!(
                            "`approvers` of {whose} names {} approvers; at most {MAX_APPROVERS} are allowed",
                            list.value.len()
                        ),
                        list.loc,
                    )
                    .hint("name a RAM role that the approvers assume instead: a role counts as one approver"),
                );
            }
            let mut seen: HashMap<ApproverSpec, u32> = HashMap::new();
            for a in list.value.iter().take(MAX_APPROVERS) {
                match ApproverSpec::parse(&a.value) {
                    Ok(spec) => {
                        let spec = match spec {
                            ApproverSpec::Name(n) => ApproverSpec::Name(n.to_ascii_lowercase()),
                            p => p,
                        };
                        if let Some(line) = seen.get(&spec) {
                            self.push(
                                Diagnostic::new(
                                    format!("approver `{}` of {whose} is listed twice", a.value),
                                    a.loc,
                                )
                                .hint(format!("it is already listed at line {line}; names compare ignoring case")),
                            );
                        } else {
                            seen.insert(spec, a.loc.line);
                        }
                    }
                    Err(e) => self.push(
                        Diagnostic::new(
                            format!(
                                "invalid approver `{}` of {whose}: {e}",
                                crate::safe_text::escape(&shorten(&a.value))
                            ),
                            a.loc,
                        )
                        .hint("an approver is a RAM user or role name (`alice`, `ops-approver`) or an ARN (`acs:ram::123456789012:user/alice`, `acs:ram::123456789012:role/approvers`)"),
                    ),
                }
            }
            distinct = seen.len();
        }
        if let Some(min) = &keys.min_approvals {
            if min.value < 1 {
                self.push(
                    Diagnostic::new(
                        format!(
                            "`min_approvals` of {whose} is {}; it must be at least 1",
                            min.value
                        ),
                        min.loc,
                    )
                    .hint("leave it out for one approval"),
                );
            } else if keys.approvers.is_some()
                && distinct > 0
                && usize::try_from(min.value).unwrap_or(usize::MAX) > distinct
            {
                self.push(
                    Diagnostic::new(
                        format!(
                            "`min_approvals` of {whose} is {} but only {distinct} distinct approver{} listed",
                            min.value,
                            if distinct == 1 { " is" } else { "s are" }
                        ),
                        min.loc,
                    )
                    .hint("the approval could never be given: list more approvers or lower `min_approvals`"),
                );
            } else if usize::try_from(min.value).unwrap_or(usize::MAX) > MAX_APPROVERS {
                self.push(Diagnostic::new(
                    format!(
                        "`min_approvals` of {whose} is {}; at most {MAX_APPROVERS}",
                        min.value
                    ),
                    min.loc,
                ));
            }
        }
        if let Some(allow) = &keys.allow_self_approval
            && keys.approvers.is_none()
        {
            self.push(
                Diagnostic::new(
                    format!("`allow_self_approval` of {whose} has no effect without `approvers`"),
                    allow.loc,
                )
                .hint(if allow.value {
                    "without `approvers` anyone may approve, the person who started the run too: remove it"
                } else {
                    "the person who started the run may not approve only once `approvers` is set: add `approvers`, or remove this"
                }),
            );
        }
    }
}

/// At most 80 characters of `s`, for messages about hostile input.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 80 {
        return s.to_owned();
    }
    let head: String = s.chars().take(77).collect();
    format!("{head}...")
}
