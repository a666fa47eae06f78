//! A simulator's world as data: every resource with its status, and the
//! transitions under way with the wall-clock time they complete at. `run
//! --sim` keeps it with the run in the journal, and `resume --sim` restores
//! it, so a rehearsal goes on in the world it left: a DTS task it stopped is
//! still stopping (or stopped), a node it terminated is still gone.
//!
//! Not saved: the fault dice and QPS buckets (a resumed rehearsal draws
//! faults afresh from its seed), the nonce cache (a new simulator signs with
//! new keys), and the transition delays (the resumed simulator's own).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::{DiJob, DiNode, DiSolution, DtsJob, State};

/// The saved world; a kind missing from it has no resources.
#[derive(Serialize, Deserialize)]
struct World {
    #[serde(default)]
    dts: BTreeMap<String, DtsJob>,
    #[serde(default)]
    nodes: BTreeMap<i64, DiNode>,
    #[serde(default)]
    di_jobs: BTreeMap<i64, DiJob>,
    #[serde(default)]
    solutions: BTreeMap<i64, DiSolution>,
}

/// Where a world was saved: a later save returns nothing until a call
/// changes the world again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorldMark(pub(crate) u64);

/// A saved world that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("the saved simulator world cannot be read: {0}")]
pub struct WorldError(#[from] serde_json::Error);

/// The world of `state`, as JSON, unless it is the same as when
/// `state.changes` was `unchanged_since`. Returns the count it was saved at.
pub(crate) fn save_if_changed(
    state: &State,
    unchanged_since: Option<u64>,
) -> Option<(String, u64)> {
    (unchanged_since != Some(state.changes)).then(|| (save(state), state.changes))
}

/// The world of `state`, as JSON.
pub(crate) fn save(state: &State) -> String {
    serde_json::json!({
        "dts": &state.dts,
        "nodes": &state.nodes,
        "di_jobs": &state.di_jobs,
        "solutions": &state.solutions,
    })
    .to_string()
}

/// Replaces the resources of `state` with a saved world.
pub(crate) fn restore(state: &mut State, json: &str) -> Result<(), WorldError> {
    let world: World = serde_json::from_str(json)?;
    state.dts = world.dts;
    state.nodes = world.nodes;
    state.di_jobs = world.di_jobs;
    state.solutions = world.solutions;
    state.changes += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sim::faults::FaultSpec;
    use crate::sim::fixtures::{Delays, Fixtures};
    use crate::sim::state::{Now, ResourceKind};

    fn empty(delays: Delays) -> State {
        let fixtures = Fixtures {
            delays,
            ..Fixtures::default()
        };
        State::new(
            &fixtures,
            &FaultSpec::default(),
            0,
            true,
            Duration::from_secs(1),
            Now::current(),
        )
    }

    #[test]
    fn a_restored_world_has_every_resource_and_its_transitions_under_way() {
        let hour = Duration::from_secs(3600);
        let mut old = empty(Delays::uniform(hour));
        let now = Now::current();
        old.set_status(ResourceKind::DtsJob, "j1", "Synchronizing", now)
            .unwrap();
        old.set_status(ResourceKind::DtsReverseJob, "j1", "Suspending", now)
            .unwrap();
        old.set_status(ResourceKind::DiNode, "11", "KILLING", now)
            .unwrap();
        old.set_status(ResourceKind::DiJob, "5", "Stopped", now)
            .unwrap();
        old.set_status(ResourceKind::DiSolution, "7", "success", now)
            .unwrap();
        let saved = save(&old);

        // Restored into a simulator whose own delays are short: the node
        // still stops an hour after it was stopped, not at once.
        let mut new = empty(Delays::uniform(Duration::ZERO));
        restore(&mut new, &saved).unwrap();
        assert_eq!(save(&new), saved, "nothing lost or changed");
        let now = Now::current();
        let status = |s: &mut State, kind, id| s.status(kind, id, now);
        for (kind, id, expected) in [
            (ResourceKind::DtsJob, "j1", "Synchronizing"),
            (ResourceKind::DtsReverseJob, "j1", "Suspending"),
            (ResourceKind::DiNode, "11", "KILLING"),
            (ResourceKind::DiJob, "5", "Stopped"),
            (ResourceKind::DiSolution, "7", "success"),
        ] {
            assert_eq!(
                status(&mut new, kind, id).as_deref(),
                Some(expected),
                "{id}"
            );
        }
        let later = Now {
            mono: now.mono + hour,
            wall: now.wall + jiff::SignedDuration::from_secs(3600),
        };
        assert_eq!(
            new.status(ResourceKind::DiNode, "11", later).as_deref(),
            Some("PAUSE")
        );
    }

    #[test]
    fn a_transition_due_while_the_world_was_saved_has_happened_once_restored() {
        let mut old = empty(Delays::uniform(Duration::from_secs(3600)));
        let now = Now::current();
        old.set_status(ResourceKind::DiNode, "11", "KILLING", now)
            .unwrap();
        // Saved an hour and a minute ago, as far as the world knows.
        let saved = save(&old);
        let mut world: serde_json::Value = serde_json::from_str(&saved).unwrap();
        let node = &mut world["nodes"]["11"]["machine"];
        let shift = |v: &mut serde_json::Value| {
            let t: jiff::Timestamp = v.as_str().unwrap().parse().unwrap();
            *v = (t - jiff::SignedDuration::from_secs(3660))
                .to_string()
                .into();
        };
        shift(&mut node["since"]);
        shift(&mut node["pending"][1]);
        let mut new = empty(Delays::default());
        restore(&mut new, &world.to_string()).unwrap();
        assert_eq!(
            new.status(ResourceKind::DiNode, "11", Now::current())
                .as_deref(),
            Some("PAUSE")
        );
        assert!(restore(&mut new, "{\"nodes\": 3}").is_err());
    }
}
