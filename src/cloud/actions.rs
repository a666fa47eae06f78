//! The action catalogue: every typed action runbook knows, with its product,
//! API version, parameters, risk class and, for each mutating action, the
//! status call and the states that show it took effect.
//!
//! The validator checks playbooks against it, the planner renders requests
//! from it, the executor reconciles unknown outcomes through it and the
//! simulator parses requests with it, so none of them can drift apart.
//! Facts come from Alibaba's API reference and SDK models; where the docs are
//! silent the choice is marked *inferred* in the README.

use serde::Serialize;

/// How dangerous a call is. Orders from harmless to point-of-no-return.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Reads state only; safe to repeat at any time.
    Read,
    /// Changes state but can be undone (stop, suspend).
    Mutating,
    /// Cannot be undone (terminate = undeploy).
    Irreversible,
}

impl Risk {
    /// Whether the call changes anything in the cloud.
    pub fn mutates(self) -> bool {
        self != Risk::Read
    }

    /// The lower-case name used in plans and schemas.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Mutating => "mutating",
            Risk::Irreversible => "irreversible",
        }
    }
}

/// The type of one API parameter, as it must look before it goes on the wire
/// (integers travel as decimal strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Any string.
    String,
    /// A 64-bit integer.
    Integer,
    /// `true` or `false`.
    Boolean,
}

/// Where a parameter travels: the query string or the form body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamLocation {
    /// URL query string (most RPC parameters).
    Query,
    /// `application/x-www-form-urlencoded` body (e.g. `StopDIJob.DIJobId`).
    Body,
}

/// One parameter of a typed action.
#[derive(Debug, Serialize)]
pub struct ParamSpec {
    /// Wire name, e.g. `DtsJobId`.
    pub name: &'static str,
    /// Type the value must have.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Whether the API rejects a request without it.
    pub required: bool,
    /// Where it goes on the wire.
    pub location: ParamLocation,
    /// Allowed values, if the API restricts them (empty: any).
    pub allowed: &'static [&'static str],
    /// One line for `--help`, the schema and the README.
    pub description: &'static str,
}

/// How to tell that a mutating call took effect: call `action` with the
/// parameters of the original call listed in `carry` (renamed where the status
/// API spells them differently), read `select` (a dotted path) and compare it
/// with `done` (case-insensitively).
///
/// A status in `settling` decides nothing yet (a terminate passes through
/// `KILLING`, which a stop passes through too): the check polls on until it
/// leaves it. A status that is neither done nor settling proves the call did
/// not take effect only after it has held for `settle_secs`, for APIs whose
/// effect shows late (a stopped DTS task keeps reporting `Synchronizing` for
/// a while).
#[derive(Debug, Serialize)]
pub struct Effect {
    /// Qualified name of the read-only status action.
    pub status_action: &'static str,
    /// `(from, to)`: copy parameter `from` of the mutating call to `to` of the status call.
    pub carry: &'static [(&'static str, &'static str)],
    /// Dotted path of the status value in the status call's response.
    pub select: &'static str,
    /// Values of `select` that mean the mutating call has taken effect.
    pub done: &'static [&'static str],
    /// Values that mean "in transition, look again".
    pub settling: &'static [&'static str],
    /// How long a not-done status must hold before it proves the call was
    /// not applied (0: at once).
    pub settle_secs: u64,
}

impl Effect {
    /// The status value in an answer of the status call (null when missing).
    pub fn observed(&self, body: &serde_json::Value) -> serde_json::Value {
        super::select(body, self.select)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// Whether `observed` shows that the call has taken effect.
    pub fn is_done(&self, observed: &serde_json::Value) -> bool {
        one_of(self.done, observed)
    }

    /// Whether `observed` is a transitional status (look again later).
    pub fn is_settling(&self, observed: &serde_json::Value) -> bool {
        one_of(self.settling, observed)
    }
}

fn one_of(set: &[&str], observed: &serde_json::Value) -> bool {
    observed
        .as_str()
        .is_some_and(|s| set.iter().any(|d| d.eq_ignore_ascii_case(s)))
}

/// What a call mutates, for the resource locks of runs (`run/resources.rs`):
/// two runs that would mutate the same resource must not overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locks {
    /// The resource of `kind` named by the values of the parameters `ids`
    /// (all required), in the call's region and account.
    Resource {
        /// Kind of resource, e.g. `job` (a DTS task), `di-node`.
        kind: &'static str,
        /// The parameters whose values identify it, in this order.
        ids: &'static [&'static str],
    },
    /// Nothing: why (a read changes nothing).
    Nothing(&'static str),
}

/// A typed action in the catalogue.
#[derive(Debug, Serialize)]
pub struct ActionSpec {
    /// What playbooks write after `call:`, e.g. `dts.StopDtsJob`.
    pub name: &'static str,
    /// Product code used for endpoints, rate limits and `--endpoint`.
    pub product: &'static str,
    /// API version, e.g. `2020-01-01`.
    pub version: &'static str,
    /// The RPC `Action`, e.g. `StopDtsJob`.
    pub action: &'static str,
    /// Risk class.
    pub risk: Risk,
    /// Whether the API takes a `RegionId` parameter (added from the step's region).
    pub region_param: bool,
    /// Parameters, in documentation order.
    pub params: &'static [ParamSpec],
    /// For mutating actions: how to check that the call took effect.
    pub effect: Option<Effect>,
    /// What it mutates (resource locks).
    #[serde(skip)]
    pub locks: Locks,
    /// One line for the plan and the README.
    pub description: &'static str,
}

impl ActionSpec {
    /// The parameter called `name`, if the action has one.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

const fn p(
    name: &'static str,
    ty: ParamType,
    required: bool,
    location: ParamLocation,
    allowed: &'static [&'static str],
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required,
        location,
        allowed,
        description,
    }
}

use ParamLocation::{Body, Query};
use ParamType::{Boolean, Integer, String as Str};

/// Product code of DataWorks (`dataworks-public`).
pub const DATAWORKS: &str = "dataworks";
/// Product code of Data Transmission Service.
pub const DTS: &str = "dts";
/// DataWorks API version used by every DataWorks action here.
pub const DATAWORKS_VERSION: &str = "2020-05-18";
/// DTS API version used by every DTS action here.
pub const DTS_VERSION: &str = "2020-01-01";

const DI_NODE_PARAMS: &[ParamSpec] = &[
    p(
        "ProjectId",
        Integer,
        true,
        Query,
        &[],
        "DataWorks workspace id",
    ),
    p(
        "FileId",
        Integer,
        true,
        Query,
        &[],
        "id of the real-time sync node (file)",
    ),
    p(
        "TaskType",
        Str,
        true,
        Query,
        &["DI_REALTIME"],
        "task type; DI_REALTIME for real-time nodes",
    ),
];

const DTS_JOB_PARAMS: &[ParamSpec] = &[
    p("DtsJobId", Str, true, Query, &[], "DTS task id"),
    p("DtsInstanceId", Str, false, Query, &[], "DTS instance id"),
    p(
        "SynchronizationDirection",
        Str,
        false,
        Query,
        &["Forward", "Reverse"],
        "direction of a two-way sync; Forward by default",
    ),
    p(
        "ResourceGroupId",
        Str,
        false,
        Query,
        &[],
        "resource group id",
    ),
    p(
        "ZeroEtlJob",
        Boolean,
        false,
        Query,
        &[],
        "whether the task is a zero-ETL task",
    ),
];

/// What the status call of a DI node action takes from the call it checks.
pub const DI_NODE_CARRY: &[(&str, &str)] = &[
    ("ProjectId", "ProjectId"),
    ("FileId", "FileId"),
    ("TaskType", "TaskType"),
];

/// What `DescribeDtsJobDetail` takes from the DTS call it checks (note the
/// capital `ID` of `DtsInstanceID`).
pub const DTS_JOB_CARRY: &[(&str, &str)] = &[
    ("DtsJobId", "DtsJobId"),
    ("DtsInstanceId", "DtsInstanceID"),
    ("SynchronizationDirection", "SynchronizationDirection"),
];

/// What a read locks: nothing.
const READS: Locks = Locks::Nothing("it only reads");
/// A DTS task, by its id (whatever the direction: both directions of a
/// two-way sync are one task).
const DTS_JOB: Locks = Locks::Resource {
    kind: "job",
    ids: &["DtsJobId"],
};
/// A DI real-time node (or solution), by workspace and file.
const DI_NODE: Locks = Locks::Resource {
    kind: "di-node",
    ids: &["ProjectId", "FileId"],
};
/// A new-style DI job, by its id.
const DI_JOB: Locks = Locks::Resource {
    kind: "di-job",
    ids: &["DIJobId"],
};

/// Every typed action, sorted by name.
pub static CATALOGUE: &[ActionSpec] = &[
    ActionSpec {
        name: "dataworks.GetDIJob",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "GetDIJob",
        risk: Risk::Read,
        region_param: false,
        params: &[p(
            "DIJobId",
            Integer,
            true,
            Query,
            &[],
            "id of the new-style DI job",
        )],
        effect: None,
        locks: READS,
        description: "read a DI job and its status (Data.JobStatus)",
    },
    ActionSpec {
        name: "dataworks.GetDISyncInstanceInfo",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "GetDISyncInstanceInfo",
        risk: Risk::Read,
        region_param: false,
        params: &[
            p(
                "ProjectId",
                Integer,
                true,
                Query,
                &[],
                "DataWorks workspace id",
            ),
            p(
                "FileId",
                Integer,
                true,
                Query,
                &[],
                "id of the sync node (file)",
            ),
            p(
                "TaskType",
                Str,
                true,
                Query,
                &["DI_REALTIME", "DI_SOLUTION"],
                "DI_REALTIME for a node, DI_SOLUTION for a solution",
            ),
        ],
        effect: None,
        locks: READS,
        description: "read the status of a DI real-time node (Data.Status: RUN, KILLING, PAUSE, NORUN, WAIT)",
    },
    ActionSpec {
        name: "dataworks.StartDIJob",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "StartDIJob",
        risk: Risk::Mutating,
        region_param: false,
        params: &[
            p(
                "DIJobId",
                Integer,
                true,
                Query,
                &[],
                "id of the new-style DI job",
            ),
            p(
                "ForceToRerun",
                Boolean,
                false,
                Query,
                &[],
                "rerun every step of the job, not only those that have not run",
            ),
            p(
                "RealtimeStartSettings",
                Str,
                false,
                Query,
                &[],
                "real-time start settings as JSON, e.g. {\"StartTime\":1671516776}",
            ),
        ],
        effect: Some(Effect {
            status_action: "dataworks.GetDIJob",
            carry: &[("DIJobId", "DIJobId")],
            select: "Data.JobStatus",
            done: &["Running"],
            settling: &[],
            settle_secs: 20,
        }),
        locks: DI_JOB,
        description: "start a stopped new-style Data Integration job",
    },
    ActionSpec {
        name: "dataworks.StartDISyncInstance",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "StartDISyncInstance",
        risk: Risk::Mutating,
        region_param: false,
        params: &[
            p(
                "ProjectId",
                Integer,
                true,
                Query,
                &[],
                "DataWorks workspace id",
            ),
            p(
                "FileId",
                Integer,
                true,
                Query,
                &[],
                "id of the real-time sync node (file)",
            ),
            p(
                "TaskType",
                Str,
                true,
                Query,
                &["DI_REALTIME", "DI_SOLUTION"],
                "DI_REALTIME for a node, DI_SOLUTION for a solution",
            ),
            p(
                "StartParam",
                Str,
                false,
                Query,
                &[],
                "start parameters of the node as JSON (failover, dirty-data limit, DDL handling)",
            ),
        ],
        effect: Some(Effect {
            status_action: "dataworks.GetDISyncInstanceInfo",
            carry: DI_NODE_CARRY,
            select: "Data.Status",
            done: &["WAIT", "RUN"],
            // A node still being stopped refuses a start: wait until it is PAUSE.
            settling: &["KILLING"],
            settle_secs: 0,
        }),
        locks: DI_NODE,
        description: "start (resume) a paused DI real-time node: PAUSE -> WAIT -> RUN",
    },
    ActionSpec {
        name: "dataworks.StopDIJob",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "StopDIJob",
        risk: Risk::Mutating,
        region_param: false,
        params: &[p(
            "DIJobId",
            Integer,
            true,
            Body,
            &[],
            "id of the new-style DI job (sent in the form body)",
        )],
        effect: Some(Effect {
            status_action: "dataworks.GetDIJob",
            carry: &[("DIJobId", "DIJobId")],
            select: "Data.JobStatus",
            done: &["Stopped", "Finished", "Failed"],
            settling: &[],
            settle_secs: 20,
        }),
        locks: DI_JOB,
        description: "stop a new-style Data Integration job",
    },
    ActionSpec {
        name: "dataworks.StopDISyncInstance",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "StopDISyncInstance",
        risk: Risk::Mutating,
        region_param: false,
        params: DI_NODE_PARAMS,
        effect: Some(Effect {
            status_action: "dataworks.GetDISyncInstanceInfo",
            carry: DI_NODE_CARRY,
            select: "Data.Status",
            done: &["KILLING", "PAUSE", "NORUN"],
            settling: &[],
            settle_secs: 0,
        }),
        locks: DI_NODE,
        description: "stop (pause) a DI real-time node: RUN -> KILLING -> PAUSE",
    },
    ActionSpec {
        name: "dataworks.TerminateDISyncInstance",
        product: DATAWORKS,
        version: DATAWORKS_VERSION,
        action: "TerminateDISyncInstance",
        risk: Risk::Irreversible,
        region_param: false,
        params: DI_NODE_PARAMS,
        effect: Some(Effect {
            status_action: "dataworks.GetDISyncInstanceInfo",
            carry: DI_NODE_CARRY,
            select: "Data.Status",
            done: &["NORUN"],
            settling: &["KILLING"],
            settle_secs: 0,
        }),
        locks: DI_NODE,
        description: "terminate (undeploy) a DI real-time node: -> NORUN; cannot be undone",
    },
    ActionSpec {
        name: "dts.DescribeDtsJobDetail",
        product: DTS,
        version: DTS_VERSION,
        action: "DescribeDtsJobDetail",
        risk: Risk::Read,
        region_param: true,
        params: &[
            p("DtsJobId", Str, true, Query, &[], "DTS task id"),
            p(
                "DtsInstanceID",
                Str,
                false,
                Query,
                &[],
                "DTS instance id (note the capital ID)",
            ),
            p(
                "SynchronizationDirection",
                Str,
                false,
                Query,
                &["Forward", "Reverse"],
                "direction of a two-way sync",
            ),
            p(
                "ResourceGroupId",
                Str,
                false,
                Query,
                &[],
                "resource group id",
            ),
            p(
                "SyncSubJobHistory",
                Boolean,
                false,
                Query,
                &[],
                "include sub-job history",
            ),
            p(
                "ZeroEtlJob",
                Boolean,
                false,
                Query,
                &[],
                "whether the task is a zero-ETL task",
            ),
        ],
        effect: None,
        locks: READS,
        description: "read a DTS task and its Status (Synchronizing, Suspending, Finished, Failed, ...)",
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
            done: &["Synchronizing", "Migrating"],
            settling: &[],
            settle_secs: 20,
        }),
        locks: DTS_JOB,
        description: "start (resume) a DTS task (Suspending -> Synchronizing)",
    },
    ActionSpec {
        name: "dts.StopDtsJob",
        product: DTS,
        version: DTS_VERSION,
        action: "StopDtsJob",
        risk: Risk::Mutating,
        region_param: true,
        params: DTS_JOB_PARAMS,
        effect: Some(Effect {
            status_action: "dts.DescribeDtsJobDetail",
            carry: DTS_JOB_CARRY,
            select: "Status",
            done: &["Finished"],
            settling: &[],
            settle_secs: 20,
        }),
        locks: DTS_JOB,
        description: "end a DTS task (Synchronizing -> Finished)",
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
            settle_secs: 20,
        }),
        locks: DTS_JOB,
        description: "pause a DTS task (Synchronizing -> Suspending); start it again with dts.StartDtsJob",
    },
];

/// Looks a typed action up by its playbook name (`dts.StopDtsJob`).
pub fn lookup(name: &str) -> Option<&'static ActionSpec> {
    CATALOGUE.iter().find(|a| a.name == name)
}

/// Looks a typed action up by product and RPC action, as the simulator sees it.
pub fn lookup_rpc(product: &str, action: &str) -> Option<&'static ActionSpec> {
    CATALOGUE
        .iter()
        .find(|a| a.product == product && a.action == action)
}

/// The name of the generic action for any other RPC API.
pub const GENERIC_API: &str = "api";

/// All names a playbook may write after `call:` (for "did you mean").
pub fn names() -> impl Iterator<Item = &'static str> {
    CATALOGUE
        .iter()
        .map(|a| a.name)
        .chain(std::iter::once(GENERIC_API))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutating_action_names_a_read_status_call_with_its_params() {
        for spec in CATALOGUE {
            match (&spec.effect, spec.risk.mutates()) {
                (Some(effect), true) => {
                    let status = lookup(effect.status_action).expect("status action exists");
                    assert_eq!(status.risk, Risk::Read, "{}", spec.name);
                    for (from, to) in effect.carry {
                        assert!(spec.param(from).is_some(), "{}: {from}", spec.name);
                        assert!(status.param(to).is_some(), "{}: {to}", spec.name);
                    }
                    assert!(!effect.done.is_empty());
                }
                (None, false) => {}
                _ => panic!(
                    "{}: a mutating action needs an effect, a read none",
                    spec.name
                ),
            }
        }
    }

    #[test]
    fn every_mutating_action_names_the_resource_it_locks_by_required_params() {
        for spec in CATALOGUE {
            match (spec.locks, spec.risk.mutates()) {
                (Locks::Resource { kind, ids }, true) => {
                    assert!(!kind.is_empty() && !ids.is_empty(), "{}", spec.name);
                    for id in ids {
                        let param = spec
                            .param(id)
                            .unwrap_or_else(|| panic!("{}: {id}", spec.name));
                        assert!(param.required, "{}: {id} must be required", spec.name);
                    }
                    // The status call reads the same resource: it is given
                    // every identifying parameter.
                    let effect = spec
                        .effect
                        .as_ref()
                        .expect("a mutating action has an effect");
                    for id in ids {
                        assert!(
                            effect.carry.iter().any(|(from, _)| from == id),
                            "{}: {id} is not carried to the status call",
                            spec.name
                        );
                    }
                }
                (Locks::Nothing(why), _) => assert!(!why.trim().is_empty(), "{}", spec.name),
                (Locks::Resource { .. }, false) => {
                    panic!("{}: a read locks nothing", spec.name)
                }
            }
        }
        // Actions that act on the same resource name it alike.
        for a in CATALOGUE {
            for b in CATALOGUE {
                if let (
                    Locks::Resource { kind: ka, ids: ia },
                    Locks::Resource { kind: kb, ids: ib },
                ) = (a.locks, b.locks)
                    && a.product == b.product
                    && ka == kb
                {
                    assert_eq!(ia, ib, "{} and {}", a.name, b.name);
                }
            }
        }
    }

    #[test]
    fn catalogue_is_sorted_and_unique() {
        let names: Vec<_> = CATALOGUE.iter().map(|a| a.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
