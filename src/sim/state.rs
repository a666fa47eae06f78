//! The simulator's in-memory world: DTS tasks, DI real-time nodes, DI jobs and
//! DI solutions, each with a small state machine, plus the replay cache of
//! signature nonces and the fault dice.
//!
//! Status is computed from elapsed time: a transition records the status to
//! show now and the status it settles into at a deadline, and every read
//! settles lazily. No background task ticks, so a paused simulator costs
//! nothing and a status call always reports the live state.
//!
//! All of it sits behind one `std::sync::Mutex` in [`super::Simulator`],
//! taken for microseconds per call and never held across an `.await`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::faults::{FaultSpec, Faults};
use super::fixtures::{
    Delays, DiJobFixture, DiNodeFixture, DiSolutionFixture, DtsJobFixture, Fixtures,
};

/// DTS task statuses a fixture may use (DescribeDtsJobs reference: sync and migration tasks).
pub(crate) const DTS_STATUSES: &[&str] = &[
    "NotStarted",
    "Prechecking",
    "PrecheckFailed",
    "PreCheckPass",
    "NotConfigured",
    "Initializing",
    "InitializeFailed",
    "Synchronizing",
    "Migrating",
    "Failed",
    "MigrationFailed",
    "Suspending",
    "Modifying",
    "ModifyFailed",
    "Finished",
    "Retrying",
    "Upgrade",
    "Locked",
    "Downgrade",
];
/// DTS statuses in which a task is moving data (and so can be suspended).
pub(crate) const DTS_RUNNING: &[&str] = &["Synchronizing", "Migrating", "Initializing", "Retrying"];
/// `GetDISyncInstanceInfo` statuses of a `DI_REALTIME` node (GetDISyncInstanceInfo reference).
pub(crate) const DI_NODE_STATUSES: &[&str] = &["RUN", "WAIT", "KILLING", "PAUSE", "NORUN"];
/// `GetDIJob` `JobStatus` values (inferred: not documented for 2020-05-18).
pub(crate) const DI_JOB_STATUSES: &[&str] = &["Running", "Stopped", "Finished", "Failed"];
/// `SolutionInfo.Status` values of a DI solution (examples from the docs).
pub(crate) const DI_SOLUTION_STATUSES: &[&str] = &["run", "success", "fail"];

/// The kinds of resource the simulator keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A DTS task, Forward direction; id = `DtsJobId`.
    DtsJob,
    /// The Reverse direction of a two-way DTS sync; id = `DtsJobId`.
    DtsReverseJob,
    /// A DI real-time node; id = `FileId`.
    DiNode,
    /// A new-style DI job; id = `DIJobId`.
    DiJob,
    /// A DI solution; id = `FileId`.
    DiSolution,
}

impl ResourceKind {
    /// The statuses a resource of this kind can be in.
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            ResourceKind::DtsJob | ResourceKind::DtsReverseJob => DTS_STATUSES,
            ResourceKind::DiNode => DI_NODE_STATUSES,
            ResourceKind::DiJob => DI_JOB_STATUSES,
            ResourceKind::DiSolution => DI_SOLUTION_STATUSES,
        }
    }
}

/// A status that cannot be set from outside ([`super::Simulator::set_status`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatusError {
    /// The status is not one this kind of resource has.
    #[error("unknown status `{status}` for {kind:?} (expected one of: {})", .kind.statuses().join(", "))]
    UnknownStatus {
        /// The kind of resource.
        kind: ResourceKind,
        /// What was asked for.
        status: String,
    },
    /// The id is not a valid id for this kind (e.g. a non-integer `FileId`).
    #[error("invalid id `{id}` for {kind:?}")]
    InvalidId {
        /// The kind of resource.
        kind: ResourceKind,
        /// What was given.
        id: String,
    },
}

/// One moment, on both clocks: monotonic for transitions, wall for reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub(crate) mono: Instant,
    pub(crate) wall: jiff::Timestamp,
}

impl Now {
    pub(crate) fn current() -> Now {
        Now {
            mono: Instant::now(),
            wall: jiff::Timestamp::now(),
        }
    }
}

#[derive(Clone)]
struct Pending {
    at: Instant,
    at_wall: jiff::Timestamp,
    then: String,
}

/// A status that may be on its way to another one. Saved (in a world, see
/// `world.rs`) with wall-clock times only: a transition under way when it
/// was saved completes at the same wall-clock time once restored.
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "SavedMachine", from = "SavedMachine")]
pub(crate) struct Machine {
    status: String,
    pending: Option<Pending>,
    /// When `status` was entered.
    pub(crate) since: jiff::Timestamp,
}

/// A [`Machine`] as saved.
#[derive(Serialize, Deserialize)]
struct SavedMachine {
    status: String,
    since: jiff::Timestamp,
    /// The status it settles into, and when.
    pending: Option<(String, jiff::Timestamp)>,
}

impl From<Machine> for SavedMachine {
    fn from(m: Machine) -> SavedMachine {
        SavedMachine {
            status: m.status,
            since: m.since,
            pending: m.pending.map(|p| (p.then, p.at_wall)),
        }
    }
}

impl From<SavedMachine> for Machine {
    /// Due now or in the past: settles at the next read.
    fn from(saved: SavedMachine) -> Machine {
        let now = Now::current();
        Machine {
            status: saved.status,
            since: saved.since,
            pending: saved.pending.map(|(then, at_wall)| {
                let ahead = now
                    .wall
                    .duration_until(at_wall)
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                Pending {
                    at: now.mono.checked_add(ahead).unwrap_or(now.mono),
                    at_wall,
                    then,
                }
            }),
        }
    }
}

impl Machine {
    pub(crate) fn new(status: &str, now: Now) -> Machine {
        Machine {
            status: status.to_owned(),
            pending: None,
            since: now.wall,
        }
    }

    /// Applies a due transition.
    fn settle(&mut self, now: Now) {
        if let Some(p) = &self.pending
            && now.mono >= p.at
        {
            self.status = p.then.clone();
            self.since = p.at_wall;
            self.pending = None;
        }
    }

    /// The status a status call reports now.
    pub(crate) fn status(&mut self, now: Now) -> &str {
        self.settle(now);
        &self.status
    }

    /// Where the resource is heading: the pending status, or the current one.
    pub(crate) fn target(&mut self, now: Now) -> &str {
        self.settle(now);
        self.pending.as_ref().map_or(&self.status, |p| &p.then)
    }

    /// Shows `shown` now and settles into `then` after `delay` (at once when
    /// the delay is zero).
    pub(crate) fn go(&mut self, now: Now, shown: &str, then: &str, delay: Duration) {
        self.settle(now);
        if delay.is_zero() {
            self.set(then, now);
            return;
        }
        if self.status != shown {
            self.status = shown.to_owned();
            self.since = now.wall;
        }
        // Huge delays (a fixture's `99999999h`) saturate instead of overflowing.
        let at_wall = jiff::SignedDuration::try_from(delay)
            .ok()
            .and_then(|d| now.wall.checked_add(d).ok())
            .unwrap_or(jiff::Timestamp::MAX);
        let at = now
            .mono
            .checked_add(delay)
            .unwrap_or_else(|| now.mono + Duration::from_secs(100 * 365 * 86_400));
        self.pending = Some(Pending {
            at,
            at_wall,
            then: then.to_owned(),
        });
    }

    /// Moves to `status` at once, dropping any pending transition.
    pub(crate) fn set(&mut self, status: &str, now: Now) {
        self.pending = None;
        if self.status != status {
            self.status = status.to_owned();
            self.since = now.wall;
        }
    }
}

/// A DTS task.
#[derive(Serialize, Deserialize)]
pub(crate) struct DtsJob {
    pub(crate) id: String,
    pub(crate) instance_id: String,
    pub(crate) name: String,
    pub(crate) forward: Machine,
    pub(crate) reverse: Option<Machine>,
    pub(crate) error_message: String,
    pub(crate) created: jiff::Timestamp,
}

impl DtsJob {
    pub(crate) fn new(f: &DtsJobFixture, now: Now) -> DtsJob {
        DtsJob {
            id: f.id.clone(),
            instance_id: f
                .instance_id
                .clone()
                .unwrap_or_else(|| format!("dts{}", f.id)),
            name: f.name.clone().unwrap_or_else(|| f.id.clone()),
            forward: Machine::new(&f.status, now),
            reverse: f.reverse_status.as_deref().map(|s| Machine::new(s, now)),
            error_message: f.error_message.clone().unwrap_or_else(|| {
                "The task failed: the source database is unreachable (simulated).".to_owned()
            }),
            created: now.wall,
        }
    }

    /// The machine of one direction, if the task has it.
    pub(crate) fn direction(&mut self, reverse: bool) -> Option<&mut Machine> {
        if reverse {
            self.reverse.as_mut()
        } else {
            Some(&mut self.forward)
        }
    }
}

/// A DI real-time node.
#[derive(Serialize, Deserialize)]
pub(crate) struct DiNode {
    pub(crate) project_id: i64,
    pub(crate) file_id: i64,
    pub(crate) name: String,
    pub(crate) machine: Machine,
}

impl DiNode {
    pub(crate) fn new(f: &DiNodeFixture, delays: &Delays, now: Now) -> DiNode {
        let mut node = DiNode {
            project_id: f.project_id,
            file_id: f.file_id,
            name: f
                .name
                .clone()
                .unwrap_or_else(|| format!("node_{}", f.file_id)),
            machine: Machine::new("RUN", now),
        };
        node.place(&f.status, delays, now);
        node
    }

    /// Puts the node in `status`; the transient ones move on as they would
    /// after a stop (`KILLING` -> `PAUSE`) or a start (`WAIT` -> `RUN`).
    pub(crate) fn place(&mut self, status: &str, delays: &Delays, now: Now) {
        match status {
            "KILLING" => self.machine.go(
                now,
                "KILLING",
                "PAUSE",
                delays.di_stop.max(Duration::from_millis(1)),
            ),
            "WAIT" => self.machine.go(
                now,
                "WAIT",
                "RUN",
                delays.di_start.max(Duration::from_millis(1)),
            ),
            other => self.machine.set(other, now),
        }
    }
}

/// A new-style DI job.
#[derive(Serialize, Deserialize)]
pub(crate) struct DiJob {
    pub(crate) id: i64,
    pub(crate) project_id: Option<i64>,
    pub(crate) name: String,
    pub(crate) machine: Machine,
}

impl DiJob {
    pub(crate) fn new(f: &DiJobFixture, now: Now) -> DiJob {
        DiJob {
            id: f.id,
            project_id: f.project_id,
            name: f.name.clone().unwrap_or_else(|| format!("di_job_{}", f.id)),
            machine: Machine::new(&f.status, now),
        }
    }
}

/// A DI solution.
#[derive(Serialize, Deserialize)]
pub(crate) struct DiSolution {
    pub(crate) project_id: i64,
    pub(crate) file_id: i64,
    pub(crate) machine: Machine,
}

impl DiSolution {
    pub(crate) fn new(f: &DiSolutionFixture, now: Now) -> DiSolution {
        DiSolution {
            project_id: f.project_id,
            file_id: f.file_id,
            machine: Machine::new(&f.status, now),
        }
    }
}

/// Nonces seen recently. A nonce is remembered for twice the timestamp
/// window: any replay later than that carries a timestamp the gateway
/// already refuses as expired.
pub(crate) struct NonceCache {
    seen: HashSet<String>,
    order: VecDeque<(Instant, String)>,
    ttl: Duration,
}

impl NonceCache {
    pub(crate) fn new(ttl: Duration) -> NonceCache {
        NonceCache {
            seen: HashSet::new(),
            order: VecDeque::new(),
            ttl,
        }
    }

    /// Remembers `nonce`; false when it was already used.
    pub(crate) fn insert(&mut self, nonce: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_owned());
        self.order.push_back((now, nonce.to_owned()));
        true
    }
}

/// Everything that changes while the simulator runs.
pub(crate) struct State {
    pub(crate) dts: BTreeMap<String, DtsJob>,
    pub(crate) nodes: BTreeMap<i64, DiNode>,
    pub(crate) di_jobs: BTreeMap<i64, DiJob>,
    pub(crate) solutions: BTreeMap<i64, DiSolution>,
    pub(crate) delays: Delays,
    pub(crate) auto_create: bool,
    pub(crate) nonces: NonceCache,
    pub(crate) faults: Faults,
    /// How many times a call (or [`State::set_status`], or a restore)
    /// changed a resource: a world saved at one count is the same world at
    /// that count.
    pub(crate) changes: u64,
}

impl State {
    pub(crate) fn new(
        fixtures: &Fixtures,
        faults: &FaultSpec,
        seed: u64,
        auto_create: bool,
        nonce_ttl: Duration,
        now: Now,
    ) -> State {
        State {
            dts: fixtures
                .dts_jobs
                .iter()
                .map(|f| (f.id.clone(), DtsJob::new(f, now)))
                .collect(),
            nodes: fixtures
                .di_nodes
                .iter()
                .map(|f| (f.file_id, DiNode::new(f, &fixtures.delays, now)))
                .collect(),
            di_jobs: fixtures
                .di_jobs
                .iter()
                .map(|f| (f.id, DiJob::new(f, now)))
                .collect(),
            solutions: fixtures
                .di_solutions
                .iter()
                .map(|f| (f.file_id, DiSolution::new(f, now)))
                .collect(),
            delays: fixtures.delays.clone(),
            auto_create,
            nonces: NonceCache::new(nonce_ttl),
            faults: Faults::new(faults, seed, now.mono),
            changes: 0,
        }
    }

    /// The status a status call would report for a resource now.
    pub(crate) fn status(&mut self, kind: ResourceKind, id: &str, now: Now) -> Option<String> {
        let machine = match kind {
            ResourceKind::DtsJob => &mut self.dts.get_mut(id)?.forward,
            ResourceKind::DtsReverseJob => self.dts.get_mut(id)?.reverse.as_mut()?,
            ResourceKind::DiNode => &mut self.nodes.get_mut(&id.parse().ok()?)?.machine,
            ResourceKind::DiJob => &mut self.di_jobs.get_mut(&id.parse().ok()?)?.machine,
            ResourceKind::DiSolution => &mut self.solutions.get_mut(&id.parse().ok()?)?.machine,
        };
        Some(machine.status(now).to_owned())
    }

    /// Puts a resource into `status` at once, creating it if needed (DI nodes
    /// and solutions are created in project 0).
    pub(crate) fn set_status(
        &mut self,
        kind: ResourceKind,
        id: &str,
        status: &str,
        now: Now,
    ) -> Result<(), StatusError> {
        if !kind.statuses().contains(&status) {
            return Err(StatusError::UnknownStatus {
                kind,
                status: status.to_owned(),
            });
        }
        self.changes += 1;
        let int_id = || {
            id.parse::<i64>().map_err(|_| StatusError::InvalidId {
                kind,
                id: id.to_owned(),
            })
        };
        match kind {
            ResourceKind::DtsJob | ResourceKind::DtsReverseJob => {
                if id.is_empty() {
                    return Err(StatusError::InvalidId {
                        kind,
                        id: id.to_owned(),
                    });
                }
                let job = self
                    .dts
                    .entry(id.to_owned())
                    .or_insert_with(|| DtsJob::new(&DtsJobFixture::running(id), now));
                if kind == ResourceKind::DtsJob {
                    job.forward.set(status, now);
                } else {
                    job.reverse
                        .get_or_insert_with(|| Machine::new(status, now))
                        .set(status, now);
                }
            }
            ResourceKind::DiNode => {
                let file_id = int_id()?;
                let delays = self.delays.clone();
                self.nodes
                    .entry(file_id)
                    .or_insert_with(|| {
                        DiNode::new(&DiNodeFixture::running(0, file_id), &delays, now)
                    })
                    .place(status, &delays, now);
            }
            ResourceKind::DiJob => {
                let job_id = int_id()?;
                self.di_jobs
                    .entry(job_id)
                    .or_insert_with(|| {
                        DiJob::new(
                            &DiJobFixture {
                                id: job_id,
                                project_id: None,
                                name: None,
                                status: status.to_owned(),
                            },
                            now,
                        )
                    })
                    .machine
                    .set(status, now);
            }
            ResourceKind::DiSolution => {
                let file_id = int_id()?;
                self.solutions
                    .entry(file_id)
                    .or_insert_with(|| {
                        DiSolution::new(
                            &DiSolutionFixture {
                                project_id: 0,
                                file_id,
                                status: status.to_owned(),
                            },
                            now,
                        )
                    })
                    .machine
                    .set(status, now);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Now, ms: u64) -> Now {
        Now {
            mono: start.mono + Duration::from_millis(ms),
            wall: start.wall + jiff::SignedDuration::from_millis(ms as i64),
        }
    }

    #[test]
    fn machine_shows_the_transient_status_until_the_deadline() {
        let t0 = Now::current();
        let mut m = Machine::new("RUN", t0);
        m.go(t0, "KILLING", "PAUSE", Duration::from_millis(100));
        assert_eq!(m.status(at(t0, 99)), "KILLING");
        assert_eq!(m.target(at(t0, 99)), "PAUSE");
        assert_eq!(m.status(at(t0, 100)), "PAUSE");
        assert_eq!(m.since, at(t0, 100).wall);
        m.go(at(t0, 200), "WAIT", "RUN", Duration::ZERO);
        assert_eq!(m.status(at(t0, 200)), "RUN");
    }

    #[test]
    fn nonces_are_refused_once_seen_and_forgotten_after_the_ttl() {
        let t0 = Instant::now();
        let mut n = NonceCache::new(Duration::from_secs(10));
        assert!(n.insert("a", t0));
        assert!(!n.insert("a", t0 + Duration::from_secs(9)));
        assert!(n.insert("b", t0 + Duration::from_secs(9)));
        assert!(n.insert("a", t0 + Duration::from_secs(10)));
        assert!(!n.insert("b", t0 + Duration::from_secs(10)));
    }

    #[test]
    fn set_status_checks_the_value_and_places_transients() {
        let t0 = Now::current();
        let mut s = State::new(
            &Fixtures::default(),
            &FaultSpec::default(),
            0,
            false,
            Duration::from_secs(1),
            t0,
        );
        assert_eq!(
            s.set_status(ResourceKind::DiNode, "7", "KILLING", t0),
            Ok(())
        );
        assert_eq!(
            s.status(ResourceKind::DiNode, "7", t0).as_deref(),
            Some("KILLING")
        );
        assert_eq!(
            s.status(ResourceKind::DiNode, "7", at(t0, 1000)).as_deref(),
            Some("PAUSE")
        );
        assert!(matches!(
            s.set_status(ResourceKind::DiNode, "7", "Running", t0),
            Err(StatusError::UnknownStatus { .. })
        ));
        assert!(matches!(
            s.set_status(ResourceKind::DiJob, "x", "Running", t0),
            Err(StatusError::InvalidId { .. })
        ));
        s.set_status(ResourceKind::DtsReverseJob, "j", "Suspending", t0)
            .unwrap();
        assert_eq!(
            s.status(ResourceKind::DtsJob, "j", t0).as_deref(),
            Some("Synchronizing")
        );
        assert_eq!(
            s.status(ResourceKind::DtsReverseJob, "j", t0).as_deref(),
            Some("Suspending")
        );
        assert_eq!(s.status(ResourceKind::DiSolution, "1", t0), None);
    }
}
