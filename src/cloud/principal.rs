//! Who someone is to RAM: a [`Principal`] (an account's root, a RAM user,
//! or a RAM role, whatever the session a role is used through) read from the
//! ARN STS `GetCallerIdentity` returns, and the [`ApproverSpec`]s a playbook
//! lists as `approvers` (a name, or an ARN), with the one rule that matches
//! the two. Pure: the approval policy (`run::approval_policy`) and the
//! playbook's validator both use it.
//!
//! Names are compared ignoring ASCII case: RAM treats user and role names
//! case-insensitively (no two users of one account differ only in case),
//! and some ARNs show a role's name in lower case.

use std::fmt;

/// The longest RAM user or role name (RAM's own limit is 64).
pub const MAX_NAME: usize = 64;

/// What kind of principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrincipalKind {
    /// The account itself (`acs:ram::ACCOUNT:root`).
    Account,
    /// A RAM user (`acs:ram::ACCOUNT:user/NAME`).
    User,
    /// A RAM role (`acs:ram::ACCOUNT:role/NAME`); every session of it
    /// (`assumed-role/NAME/SESSION`) is this one principal.
    Role,
}

/// One principal: who approves, counted once however many sessions or
/// approvals it has. Equality ignores the case of the name.
#[derive(Clone, Debug, Eq)]
pub struct Principal {
    /// The account id (digits).
    pub account_id: String,
    /// Root, user or role.
    pub kind: PrincipalKind,
    /// The user's or role's name, as the ARN spells it (empty for root).
    pub name: String,
}

impl PartialEq for Principal {
    fn eq(&self, other: &Principal) -> bool {
        self.account_id == other.account_id
            && self.kind == other.kind
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl std::hash::Hash for Principal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.account_id.hash(state);
        self.kind.hash(state);
        self.name.to_ascii_lowercase().hash(state);
    }
}

impl fmt::Display for Principal {
    /// The principal's own ARN: `acs:ram::1:user/alice`, `acs:ram::1:role/ops`
    /// (for any session of it) or `acs:ram::1:root`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PrincipalKind::Account => write!(f, "acs:ram::{}:root", self.account_id),
            PrincipalKind::User => write!(f, "acs:ram::{}:user/{}", self.account_id, self.name),
            PrincipalKind::Role => write!(f, "acs:ram::{}:role/{}", self.account_id, self.name),
        }
    }
}

/// Why an ARN or an approver could not be read; the text reads after
/// "invalid approver `X`: ".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PrincipalError(String);

impl Principal {
    /// The principal an ARN from STS `GetCallerIdentity` (or written in a
    /// playbook) stands for: `acs:ram::ACCOUNT:root`, `...:user/NAME`,
    /// `...:role/NAME`, or `...:assumed-role/ROLE/SESSION` (role `ROLE`,
    /// whatever the session).
    ///
    /// # Errors
    ///
    /// Not one of those shapes, an account id that is not digits, or a name
    /// RAM would not accept.
    pub fn of_arn(arn: &str) -> Result<Principal, PrincipalError> {
        let rest = arn.strip_prefix("acs:ram::").ok_or_else(|| {
            PrincipalError(
                "a RAM ARN starts with `acs:ram::` (e.g. acs:ram::123456789012:user/alice)"
                    .to_owned(),
            )
        })?;
        let (account, resource) = rest.split_once(':').ok_or_else(|| {
            PrincipalError(
                "expected `acs:ram::ACCOUNT:user/NAME`, `:role/NAME` or `:root`".to_owned(),
            )
        })?;
        check_account(account)?;
        let at = |kind, name: &str| {
            check_name(name)?;
            Ok(Principal {
                account_id: account.to_owned(),
                kind,
                name: name.to_owned(),
            })
        };
        if resource == "root" {
            return Ok(Principal {
                account_id: account.to_owned(),
                kind: PrincipalKind::Account,
                name: String::new(),
            });
        }
        if let Some(name) = resource.strip_prefix("user/") {
            return at(PrincipalKind::User, name);
        }
        if let Some(name) = resource.strip_prefix("role/") {
            return at(PrincipalKind::Role, name);
        }
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            let (role, session) = rest.split_once('/').ok_or_else(|| {
                PrincipalError(
                    "an assumed-role ARN is `acs:ram::ACCOUNT:assumed-role/ROLE/SESSION`"
                        .to_owned(),
                )
            })?;
            if session.is_empty() || session.len() > 128 || session.chars().any(char::is_control) {
                return Err(PrincipalError(
                    "the session name of an assumed-role ARN must be 1 to 128 printable characters"
                        .to_owned(),
                ));
            }
            return at(PrincipalKind::Role, role);
        }
        Err(PrincipalError(format!(
            "`{}` is not a RAM principal: expected `user/NAME`, `role/NAME`, `assumed-role/ROLE/SESSION` or `root` after the account",
            shorten(resource)
        )))
    }
}

/// One entry of a playbook's `approvers`: a RAM user or role name, or an
/// ARN (user, role or root).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ApproverSpec {
    /// A name: any RAM user or role of that name, in the approver's own
    /// account.
    Name(String),
    /// Exactly this principal.
    Principal(Principal),
}

impl ApproverSpec {
    /// Reads one `approvers` entry.
    ///
    /// # Errors
    ///
    /// Neither a valid name nor a user, role or root ARN. An assumed-role
    /// ARN is refused with the hint to write its role: a role is one
    /// principal whatever its session.
    pub fn parse(text: &str) -> Result<ApproverSpec, PrincipalError> {
        if text.starts_with("acs:") {
            if text.contains(":assumed-role/") {
                let role = Principal::of_arn(text)?;
                return Err(PrincipalError(format!(
                    "an approver is a role, not one session of it: write `{role}` (any of its sessions may approve)"
                )));
            }
            return Principal::of_arn(text).map(ApproverSpec::Principal);
        }
        check_name(text)?;
        Ok(ApproverSpec::Name(text.to_owned()))
    }

    /// Whether `who` is this approver. A name matches a user or a role of
    /// that name (in whichever account `who` is); an ARN matches exactly
    /// that principal (the account's root ARN only the root).
    pub fn matches(&self, who: &Principal) -> bool {
        match self {
            ApproverSpec::Name(name) => {
                who.kind != PrincipalKind::Account && who.name.eq_ignore_ascii_case(name)
            }
            ApproverSpec::Principal(p) => p == who,
        }
    }
}

impl fmt::Display for ApproverSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproverSpec::Name(n) => f.write_str(n),
            ApproverSpec::Principal(p) => p.fmt(f),
        }
    }
}

fn check_account(account: &str) -> Result<(), PrincipalError> {
    if account.is_empty() || account.len() > 32 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(PrincipalError(format!(
            "the account id `{}` is not 1 to 32 digits",
            shorten(account)
        )));
    }
    Ok(())
}

/// A RAM user or role name: 1 to 64 letters, digits, `.`, `-`, `_` or `@`.
fn check_name(name: &str) -> Result<(), PrincipalError> {
    if name.is_empty() {
        return Err(PrincipalError("the name is empty".to_owned()));
    }
    if name.chars().count() > MAX_NAME {
        return Err(PrincipalError(format!(
            "a RAM user or role name is at most {MAX_NAME} characters, this one has {}",
            name.chars().count()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@')))
    {
        return Err(PrincipalError(format!(
            "`{}` is not a RAM user or role name: {c:?} is not allowed (letters, digits, `.`, `-`, `_`, `@`); an ARN starts with `acs:ram::`",
            shorten(name)
        )));
    }
    Ok(())
}

/// At most 80 characters of `s`, for messages about hostile input.
fn shorten(s: &str) -> String {
    let escaped: String = s.chars().flat_map(char::escape_default).collect();
    if escaped.chars().count() <= 80 {
        return escaped;
    }
    let head: String = escaped.chars().take(77).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn p(arn: &str) -> Principal {
        Principal::of_arn(arn).unwrap()
    }

    #[test]
    fn arns_read_as_principals_and_sessions_fold_into_their_role() {
        assert_eq!(
            p("acs:ram::1:user/alice").to_string(),
            "acs:ram::1:user/alice"
        );
        assert_eq!(p("acs:ram::1:root").kind, PrincipalKind::Account);
        let s1 = p("acs:ram::1:assumed-role/ops/alice");
        let s2 = p("acs:ram::1:assumed-role/OPS/bob-laptop");
        assert_eq!(s1, s2);
        assert_eq!(s1, p("acs:ram::1:role/ops"));
        assert_eq!(s1.to_string(), "acs:ram::1:role/ops");
        assert_ne!(p("acs:ram::1:role/ops"), p("acs:ram::2:role/ops"));
        assert_ne!(p("acs:ram::1:role/ops"), p("acs:ram::1:user/ops"));
        for bad in [
            "",
            "arn:aws:iam::1:user/a",
            "acs:ram::abc:user/a",
            "acs:ram:::user/a",
            "acs:ram::1:user/",
            "acs:ram::1:group/a",
            "acs:ram::1:assumed-role/ops",
            "acs:ram::1:assumed-role/ops/",
            "acs:ram::1:user/a b",
            "acs:ram::1",
        ] {
            assert!(Principal::of_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn approvers_are_names_or_arns_and_never_one_session() {
        assert_eq!(
            ApproverSpec::parse("alice").unwrap(),
            ApproverSpec::Name("alice".into())
        );
        let e = ApproverSpec::parse("acs:ram::1:assumed-role/ops/alice").unwrap_err();
        assert!(e.to_string().contains("write `acs:ram::1:role/ops`"), "{e}");
        let e = ApproverSpec::parse("alice smith").unwrap_err();
        assert!(e.to_string().contains("not a RAM user or role name"), "{e}");
        let e = ApproverSpec::parse(&"a".repeat(65)).unwrap_err();
        assert!(e.to_string().contains("at most 64"), "{e}");
        let e =
            ApproverSpec::parse(&format!("acs:ram::1:user/{}", "\u{7}".repeat(500))).unwrap_err();
        assert!(e.to_string().len() < 300, "{e}");
        // A name matches users and roles of that name in any account, never a root.
        let alice = ApproverSpec::parse("Alice").unwrap();
        assert!(alice.matches(&p("acs:ram::1:user/alice")));
        assert!(alice.matches(&p("acs:ram::2:assumed-role/alice/s")));
        assert!(!alice.matches(&p("acs:ram::1:user/alice2")));
        assert!(!alice.matches(&p("acs:ram::1:root")));
        let root = ApproverSpec::parse("acs:ram::1:root").unwrap();
        assert!(root.matches(&p("acs:ram::1:root")));
        assert!(!root.matches(&p("acs:ram::1:user/root")));
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9._@-]{0,20}"
    }

    proptest! {
        #[test]
        fn every_session_of_a_role_is_the_role(
            account in "[0-9]{1,16}",
            role in name(),
            session in "[A-Za-z0-9._@-]{1,32}",
        ) {
            let session_arn = format!("acs:ram::{account}:assumed-role/{role}/{session}");
            let s = Principal::of_arn(&session_arn).unwrap();
            let r = Principal::of_arn(&format!("acs:ram::{account}:role/{}", role.to_uppercase())).unwrap();
            prop_assert_eq!(&s, &r);
            prop_assert!(ApproverSpec::parse(&r.to_string()).unwrap().matches(&s));
            prop_assert!(ApproverSpec::parse(&role).unwrap().matches(&s));
            // The principal's ARN reads back as itself.
            prop_assert_eq!(Principal::of_arn(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn any_text_is_read_or_refused_without_panicking(text in ".{0,200}") {
            let _ = ApproverSpec::parse(&text);
            let _ = Principal::of_arn(&text);
        }
    }
}
