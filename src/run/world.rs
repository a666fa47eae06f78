//! A rehearsal's world: what the in-process simulator's state means to a
//! run (see the module doc of `cli/run.rs` for why it is saved rather than
//! rebuilt from the journal).
//!
//! - A run in the simulator keeps its world with every journal commit
//!   ([`keep`]), so the world holds every effect of every journaled answer.
//! - A resume in the simulator puts that world back ([`restore`]); with no
//!   world saved it goes on against a fresh simulator, and says so.
//! - A resume anywhere else drops the saved world, which is then out of date.
//!
//! The simulator is reached through [`World`], so the engine does not depend
//! on it.

use std::sync::{Arc, Mutex, PoisonError};

use super::Journal;
use super::exit::journal_error;
use crate::error::{Error, ExitCode};

/// A world that can be saved with a run and put back.
pub trait World: Send + Sync + 'static {
    /// Marks a saved state, so an unchanged world is not saved again.
    type Mark: Copy + Send + 'static;
    /// The world as JSON, unless unchanged since `since`, with its new mark.
    fn save(&self, since: Option<Self::Mark>) -> Option<(String, Self::Mark)>;
    /// Why a saved world cannot be put back.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Puts back a world [`World::save`] returned.
    fn restore(&self, json: &str) -> Result<(), Self::Error>;
}

/// Keeps `world` with run `run_id`: saved with every journal commit, when it
/// changed.
pub fn keep<W: World>(journal: &Journal, run_id: &str, world: W) {
    let mark = Mutex::new(None);
    journal.keep_world(
        run_id,
        Arc::new(move || {
            let mut mark = mark.lock().unwrap_or_else(PoisonError::into_inner);
            let (json, at) = world.save(*mark)?;
            *mark = Some(at);
            Some(json)
        }),
    );
}

/// What [`restore`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    /// The saved world is back.
    Saved,
    /// None was saved: the rehearsal goes on in a fresh world.
    Fresh,
    /// Not in the simulator: the saved world was dropped.
    Dropped,
}

/// Before a resume of run `run_id`: in the simulator (`world`), puts back
/// the world saved with the run, if one was; elsewhere drops it.
pub fn restore<W: World>(
    journal: &Journal,
    run_id: &str,
    world: Option<&W>,
) -> Result<Restored, Error> {
    let Some(world) = world else {
        journal.forget_world(run_id);
        return Ok(Restored::Dropped);
    };
    let Some(saved) = journal.world(run_id).map_err(journal_error)? else {
        return Ok(Restored::Fresh);
    };
    world.restore(&saved).map_err(|e| {
        Error::new(
            ExitCode::Internal,
            format!("cannot restore the simulated world of run {run_id}"),
        )
        .with_source(e)
    })?;
    Ok(Restored::Saved)
}
