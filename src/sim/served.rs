//! Which actions the simulator answers: every entry of the one action
//! catalogue ([`crate::cloud::actions::CATALOGUE`]), which the client and the
//! validator use too, so what runbook sends and what the simulator accepts
//! cannot drift apart.
//!
//! Requests are matched by `(Version, Action)`, as the cloud's gateway routes
//! them, so one port serves both products.

use crate::cloud::actions::{
    ActionSpec, CATALOGUE, DATAWORKS, DATAWORKS_VERSION, DTS, DTS_VERSION,
};

/// Every action the simulator answers.
pub(crate) fn served() -> impl Iterator<Item = &'static ActionSpec> {
    CATALOGUE.iter()
}

/// The served action for an RPC `Version` and `Action`, if any.
pub(crate) fn lookup(version: &str, action: &str) -> Option<&'static ActionSpec> {
    served().find(|spec| spec.version == version && spec.action == action)
}

/// The product a known API version belongs to.
pub(crate) fn product_of_version(version: &str) -> Option<&'static str> {
    match version {
        DATAWORKS_VERSION => Some(DATAWORKS),
        DTS_VERSION => Some(DTS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_needs_the_right_version() {
        assert!(lookup(DTS_VERSION, "StopDtsJob").is_some());
        assert!(lookup(DATAWORKS_VERSION, "StopDtsJob").is_none());
        assert!(lookup(DTS_VERSION, "SuspendDtsJob").is_some());
        assert!(lookup(DATAWORKS_VERSION, "StartDIJob").is_some());
        assert_eq!(product_of_version("2020-05-18"), Some("dataworks"));
        assert_eq!(product_of_version("2014-05-26"), None);
    }
}
