//! Which actions the simulator answers: every entry of the shared catalogue
//! ([`crate::cloud::actions::CATALOGUE`]) plus a few real APIs that runbook
//! does not call yet but that make the simulator useful by hand (suspend and
//! restart a DTS task, restart a DI node).
//!
//! Requests are matched by `(Version, Action)`, as the cloud's gateway routes
//! them, so one port serves both products.

use crate::cloud::actions::{
    ActionSpec, CATALOGUE, DATAWORKS, DATAWORKS_VERSION, DI_NODE_CARRY, DTS, DTS_JOB_CARRY,
    DTS_VERSION, Effect, ParamLocation, ParamSpec, ParamType, Risk,
};

const fn param(
    name: &'static str,
    ty: ParamType,
    required: bool,
    allowed: &'static [&'static str],
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required,
        location: ParamLocation::Query,
        allowed,
        description,
    }
}

const DTS_JOB_PARAMS: &[ParamSpec] = &[
    param("DtsJobId", ParamType::String, true, &[], "DTS task id"),
    param(
        "DtsInstanceId",
        ParamType::String,
        false,
        &[],
        "DTS instance id",
    ),
    param(
        "SynchronizationDirection",
        ParamType::String,
        false,
        &["Forward", "Reverse"],
        "direction of a two-way sync; Forward by default",
    ),
    param(
        "ResourceGroupId",
        ParamType::String,
        false,
        &[],
        "resource group id",
    ),
    param(
        "ZeroEtlJob",
        ParamType::Boolean,
        false,
        &[],
        "whether the task is a zero-ETL task",
    ),
];

/// Real APIs served by the simulator that are not (yet) in the catalogue.
pub(crate) static EXTRAS: &[ActionSpec] = &[
    ActionSpec {
        name: "dataworks.StartDISyncInstance",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "StartDISyncInstance",
        risk: Risk::Mutating,
        region_param: false,
        params: &[
            param(
                "ProjectId",
                ParamType::Integer,
                true,
                &[],
                "DataWorks workspace id",
            ),
            param(
                "FileId",
                ParamType::Integer,
                true,
                &[],
                "id of the sync node (file)",
            ),
            param(
                "TaskType",
                ParamType::String,
                true,
                &["DI_REALTIME", "DI_SOLUTION"],
                "DI_REALTIME for a node, DI_SOLUTION for a solution",
            ),
            param(
                "StartParam",
                ParamType::String,
                false,
                &[],
                "start parameters (ignored)",
            ),
        ],
        effect: Some(Effect {
            status_action: "dataworks.GetDISyncInstanceInfo",
            carry: DI_NODE_CARRY,
            select: "Data.Status",
            done: &["WAIT", "RUN"],
            settling: &[],
            settle_secs: 0,
        }),
        description: "start a paused DI real-time node: PAUSE -> WAIT -> RUN",
    },
    ActionSpec {
        name: "dts.StartDtsJob",
        product: DTS,
        version: DTS_VERSION,
        action: "StartDtsJob",
        risk: Risk::Mutating,
        region_param: true,
        params: DTS_JOB_PARAMS,
        effect: Some(Effect {
            status_action: "dts.DescribeDtsJobDetail",
            carry: DTS_JOB_CARRY,
            select: "Status",
            done: &["Synchronizing"],
            settling: &[],
            settle_secs: 0,
        }),
        description: "start (resume) a DTS task (Suspending -> Synchronizing)",
    },
    ActionSpec {
        name: "dts.SuspendDtsJob",
        product: DTS,
        version: DTS_VERSION,
        action: "SuspendDtsJob",
        risk: Risk::Mutating,
        region_param: true,
        params: DTS_JOB_PARAMS,
        effect: Some(Effect {
            status_action: "dts.DescribeDtsJobDetail",
            carry: DTS_JOB_CARRY,
            select: "Status",
            done: &["Suspending"],
            settling: &[],
            settle_secs: 0,
        }),
        description: "pause a DTS task (Synchronizing -> Suspending)",
    },
];

/// Every action the simulator answers: the catalogue, then the extras.
pub(crate) fn served() -> impl Iterator<Item = &'static ActionSpec> {
    CATALOGUE.iter().chain(EXTRAS)
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
    fn every_catalogue_action_is_served_and_names_are_unique() {
        for spec in CATALOGUE {
            assert!(lookup(spec.version, spec.action).is_some(), "{}", spec.name);
        }
        let mut names: Vec<_> = served().map(|s| s.name).collect();
        let before = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), before);
    }

    #[test]
    fn lookup_needs_the_right_version() {
        assert!(lookup(DTS_VERSION, "StopDtsJob").is_some());
        assert!(lookup(DATAWORKS_VERSION, "StopDtsJob").is_none());
        assert!(lookup(DTS_VERSION, "SuspendDtsJob").is_some());
        assert_eq!(product_of_version("2020-05-18"), Some("dataworks"));
        assert_eq!(product_of_version("2014-05-26"), None);
    }
}
