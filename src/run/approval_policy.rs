//! Who may approve, and whether enough have: the plan's (or an `approve`
//! step's) [`ApprovalPolicy`] evaluated against verified identities
//! ([`Principal`]s from STS `GetCallerIdentity`). Pure: no clock, no
//! journal, no network; the callers (the run's plan gate, `runbook
//! approve`, pre-approvals) bring the principals.
//!
//! The rules:
//! - without a policy (no key written), anyone approves and one approval
//!   is enough (today's behaviour: terminal, `--yes`, `--approve`);
//! - `approvers` (names or ARNs, see [`ApproverSpec`]) says who may;
//!   without it anyone may;
//! - `min_approvals` (default [`DEFAULT_MIN_APPROVALS`]) counts distinct
//!   principals: every session of one role is that role, so one role (or
//!   one person approving twice) counts once;
//! - once `approvers` is set, the person who started the run may not
//!   approve (whatever approver entry they match) unless
//!   `allow_self_approval`. Without `approvers`, the self rule does not
//!   apply.
//!
//! [`DEFAULT_MIN_APPROVALS`]: crate::plan::DEFAULT_MIN_APPROVALS

use std::fmt;

use crate::cloud::principal::{ApproverSpec, Principal};
use crate::plan::{ApprovalPolicy, DEFAULT_MIN_APPROVALS};

/// Why an approval does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The approver is not among `approvers`.
    NotAnApprover {
        /// The approver's principal.
        who: Principal,
        /// The `approvers` list, as written.
        approvers: Vec<String>,
    },
    /// The approver started the run, `approvers` is set and
    /// `allow_self_approval` is not.
    SelfApproval {
        /// The approver (and starter).
        who: Principal,
    },
    /// This principal has approved already (it counts once).
    AlreadyApproved {
        /// The approver.
        who: Principal,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAnApprover { who, approvers } => write!(
                f,
                "{who} is not one of the approvers ({})",
                approvers.join(", ")
            ),
            Refusal::SelfApproval { who } => write!(
                f,
                "{who} started the run and may not approve it: the playbook lists `approvers` and does not set `allow_self_approval`"
            ),
            Refusal::AlreadyApproved { who } => write!(
                f,
                "{who} has approved already; approvals count distinct principals (every session of a role is that role)"
            ),
        }
    }
}

/// The approvals that count toward a policy, and what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Distinct principals whose approval counts, in the order given.
    pub counted: Vec<Principal>,
    /// How many are needed.
    pub needed: usize,
    /// Approvals that do not count, and why.
    pub ignored: Vec<(Principal, Refusal)>,
}

impl Tally {
    /// Whether enough approvals count.
    pub fn is_met(&self) -> bool {
        self.counted.len() >= self.needed
    }

    /// How many more are needed.
    pub fn missing(&self) -> usize {
        self.needed.saturating_sub(self.counted.len())
    }
}

/// How many distinct approvals `policy` needs (1 without one).
pub fn needed(policy: Option<&ApprovalPolicy>) -> usize {
    let n = policy
        .map_or(DEFAULT_MIN_APPROVALS, |p| p.min_approvals)
        .max(1);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Whether `approver` may approve now under `policy`, for a run started
/// by `starter` (`None`: not known, as for a pre-approval of a plan no run
/// has started yet; the self rule is then applied when the run starts),
/// given the principals whose approvals count already (`given`).
///
/// # Errors
///
/// The [`Refusal`]: not an approver, the starter approving their own run,
/// or a second approval of one principal.
pub fn may_approve(
    policy: Option<&ApprovalPolicy>,
    starter: Option<&Principal>,
    approver: &Principal,
    given: &[Principal],
) -> Result<(), Refusal> {
    if let Some(p) = policy
        && !p.approvers.is_empty()
    {
        let listed = p
            .approvers
            .iter()
            .filter_map(|a| ApproverSpec::parse(a).ok())
            .any(|a| a.matches(approver));
        if !listed {
            return Err(Refusal::NotAnApprover {
                who: approver.clone(),
                approvers: p.approvers.clone(),
            });
        }
        if !p.allow_self_approval && starter == Some(approver) {
            return Err(Refusal::SelfApproval {
                who: approver.clone(),
            });
        }
    }
    if given.contains(approver) {
        return Err(Refusal::AlreadyApproved {
            who: approver.clone(),
        });
    }
    Ok(())
}

/// Which of `approvals` (in the order they were given) count under
/// `policy` for a run started by `starter`, and how many are needed.
pub fn tally(
    policy: Option<&ApprovalPolicy>,
    starter: Option<&Principal>,
    approvals: &[Principal],
) -> Tally {
    let mut counted: Vec<Principal> = Vec::new();
    let mut ignored = Vec::new();
    for a in approvals {
        match may_approve(policy, starter, a, &counted) {
            Ok(()) => counted.push(a.clone()),
            Err(r) => ignored.push((a.clone(), r)),
        }
    }
    Tally {
        counted,
        needed: needed(policy),
        ignored,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::cloud::principal::PrincipalKind;

    fn p(arn: &str) -> Principal {
        Principal::of_arn(arn).unwrap()
    }

    fn policy(approvers: &[&str], min: u32, allow_self: bool) -> ApprovalPolicy {
        ApprovalPolicy {
            approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
            min_approvals: min,
            allow_self_approval: allow_self,
        }
    }

    #[test]
    fn without_a_policy_anyone_approves_once() {
        let alice = p("acs:ram::1:user/alice");
        assert!(may_approve(None, Some(&alice), &alice, &[]).is_ok());
        let t = tally(None, Some(&alice), &[alice.clone(), alice.clone()]);
        assert!(t.is_met());
        assert_eq!(t.counted, [alice]);
    }

    #[test]
    fn the_starter_may_not_approve_once_approvers_are_set() {
        let pol = policy(&["alice", "acs:ram::1:role/ops"], 1, false);
        let alice = p("acs:ram::1:user/alice");
        let e = may_approve(Some(&pol), Some(&alice), &alice, &[]).unwrap_err();
        assert!(matches!(e, Refusal::SelfApproval { .. }));
        assert!(e.to_string().contains("allow_self_approval"), "{e}");
        // A session of the starter's role is the starter too.
        let ops_a = p("acs:ram::1:assumed-role/ops/a");
        let ops_b = p("acs:ram::1:assumed-role/ops/b");
        assert!(matches!(
            may_approve(Some(&pol), Some(&ops_a), &ops_b, &[]),
            Err(Refusal::SelfApproval { .. })
        ));
        let allowed = policy(&["alice"], 1, true);
        assert!(may_approve(Some(&allowed), Some(&alice), &alice, &[]).is_ok());
        // Without approvers, min_approvals alone lets the starter count.
        let two = policy(&[], 2, false);
        let bob = p("acs:ram::1:user/bob");
        let t = tally(Some(&two), Some(&alice), &[alice.clone(), bob.clone()]);
        assert!(t.is_met(), "{t:?}");
    }

    #[test]
    fn strangers_and_repeats_do_not_count() {
        let pol = policy(&["alice", "bob"], 2, false);
        let carol = p("acs:ram::1:user/carol");
        let e = may_approve(Some(&pol), None, &carol, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "acs:ram::1:user/carol is not one of the approvers (alice, bob)"
        );
        let alice = p("acs:ram::1:user/alice");
        let t = tally(Some(&pol), None, &[alice.clone(), alice.clone(), carol]);
        assert_eq!(t.counted, [alice]);
        assert_eq!(t.missing(), 1);
        assert_eq!(t.ignored.len(), 2);
    }

    /// One generated identity: (account, kind, name index, session).
    fn identity() -> impl Strategy<Value = (u8, u8, u8, u8)> {
        (0u8..2, 0u8..3, 0u8..4, 0u8..3)
    }

    const NAMES: [&str; 4] = ["alice", "bob", "ops", "Alice"];

    fn arn_of((account, kind, name, session): (u8, u8, u8, u8)) -> String {
        let name = NAMES[usize::from(name)];
        match kind {
            0 => format!("acs:ram::{account}:user/{name}"),
            1 => format!("acs:ram::{account}:assumed-role/{name}/s{session}"),
            _ => format!("acs:ram::{account}:root"),
        }
    }

    fn approver_entry() -> impl Strategy<Value = String> {
        prop_oneof![
            (0usize..4).prop_map(|n| NAMES[n].to_owned()),
            (0u8..2, 0usize..4).prop_map(|(a, n)| format!("acs:ram::{a}:user/{}", NAMES[n])),
            (0u8..2, 0usize..4).prop_map(|(a, n)| format!("acs:ram::{a}:role/{}", NAMES[n])),
            (0u8..2).prop_map(|a| format!("acs:ram::{a}:root")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The tally against an independent statement of the rules: every
        /// counted approval is listed (when approvers are), distinct, not the
        /// starter's unless allowed; every listed, allowed principal that
        /// approved is counted exactly once; the tally is met exactly when
        /// enough distinct principals count.
        #[test]
        fn the_tally_counts_distinct_allowed_principals(
            approvers in proptest::collection::vec(approver_entry(), 0..5),
            min in 1u32..5,
            allow_self in any::<bool>(),
            starter in proptest::option::of(identity()),
            approvals in proptest::collection::vec(identity(), 0..12),
        ) {
            let pol = policy(&approvers.iter().map(String::as_str).collect::<Vec<_>>(), min, allow_self);
            let starter = starter.map(|s| p(&arn_of(s)));
            let given: Vec<Principal> = approvals.iter().map(|a| p(&arn_of(*a))).collect();
            let t = tally(Some(&pol), starter.as_ref(), &given);

            let specs: Vec<ApproverSpec> = approvers.iter().map(|a| ApproverSpec::parse(a).unwrap()).collect();
            let allowed = |who: &Principal| {
                let listed = specs.is_empty() || specs.iter().any(|s| s.matches(who));
                let selfish = !specs.is_empty() && !allow_self && starter.as_ref() == Some(who);
                listed && !selfish
            };
            // What should count: each allowed principal once, in first-seen order.
            let mut expected: Vec<Principal> = Vec::new();
            for g in &given {
                if allowed(g) && !expected.contains(g) {
                    expected.push(g.clone());
                }
            }
            prop_assert_eq!(&t.counted, &expected);
            prop_assert_eq!(t.counted.len() + t.ignored.len(), given.len());
            prop_assert_eq!(t.is_met(), expected.len() >= min as usize);
            // Sessions never count twice: distinct by principal.
            let keys: BTreeSet<String> = t.counted.iter().map(|c| c.to_string().to_ascii_lowercase()).collect();
            prop_assert_eq!(keys.len(), t.counted.len());
            // A root is only ever counted when listed as a root or when anyone may approve.
            for c in &t.counted {
                if c.kind == PrincipalKind::Account && !specs.is_empty() {
                    prop_assert!(specs.iter().any(|s| matches!(s, ApproverSpec::Principal(x) if x == c)));
                }
            }
        }

        /// Order does not change whether a policy is met.
        #[test]
        fn the_order_of_approvals_does_not_matter(
            approvers in proptest::collection::vec(approver_entry(), 1..4),
            min in 1u32..4,
            starter in identity(),
            mut approvals in proptest::collection::vec(identity(), 0..10),
        ) {
            let pol = policy(&approvers.iter().map(String::as_str).collect::<Vec<_>>(), min, false);
            let starter = p(&arn_of(starter));
            let given: Vec<Principal> = approvals.iter().map(|a| p(&arn_of(*a))).collect();
            let met = tally(Some(&pol), Some(&starter), &given).is_met();
            approvals.reverse();
            let reversed: Vec<Principal> = approvals.iter().map(|a| p(&arn_of(*a))).collect();
            prop_assert_eq!(tally(Some(&pol), Some(&starter), &reversed).is_met(), met);
        }
    }
}
