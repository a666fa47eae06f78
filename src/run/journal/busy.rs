//! SQLite's side of a journal that cannot be written for a while: another
//! process (`runbook cancel`, `runs prune`, a `sqlite3` shell) holds its
//! write lock. The writer waits for it with a busy handler bounded like a
//! PostgreSQL outage: by the run's patience and its lease (see
//! [`super::link`]); commands that set no patience wait [`DEFAULT_WAIT`].
//! While it waits the link is down, so no call is sent; past the bound the
//! commit fails with `database is locked` and the link gives up: the run
//! stops as journaled, resumable (exit 8). Any other failure (I/O, a full
//! disk, permissions) fails the commit at once (exit 10).
//!
//! SQLite calls the handler on the thread that runs the statement, with no
//! context but a count; the writer thread keeps its context here.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::link::{Backoff, Link, Unreachable};

/// How long commands without a patience wait for the lock.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// A wait this short (two processes committing at once) is not an outage:
/// the link stays up and nothing is logged.
const QUIET: Duration = Duration::from_millis(100);

/// The writer thread's wait.
struct Wait {
    link: Arc<Link>,
    at: String,
    /// When the current wait began.
    since: Option<Instant>,
    /// Whether the link was told it is down (past [`QUIET`]).
    told: bool,
    backoff: Backoff,
    /// The handler gave up during the current commit.
    gave_up: Option<Unreachable>,
}

thread_local! {
    static WAIT: RefCell<Option<Wait>> = const { RefCell::new(None) };
}

/// Makes `conn` wait through [`handler`]; `at` names the journal in
/// messages. Call on the thread that will write through `conn`.
pub(crate) fn install(conn: &mut Connection, link: Arc<Link>, at: String) -> rusqlite::Result<()> {
    WAIT.with_borrow_mut(|w| {
        *w = Some(Wait {
            link,
            at,
            since: None,
            told: false,
            backoff: Backoff::new(rand::random()),
            gave_up: None,
        });
    });
    conn.busy_handler(Some(handler))
}

/// SQLite's busy handler: `true` to try again (after a back-off sleep).
fn handler(_count: i32) -> bool {
    WAIT.with_borrow_mut(|w| {
        let Some(w) = w.as_mut() else {
            return false;
        };
        let since = *w.since.get_or_insert_with(Instant::now);
        if !w.told && since.elapsed() >= QUIET {
            w.told = true;
            w.link.down("is locked by another process; waiting");
        }
        let (deadline, by_lease) = if w.link.patience().is_zero() {
            (since + DEFAULT_WAIT, false)
        } else {
            w.link.deadline(since)
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            w.gave_up = Some(Unreachable {
                at: w.at.clone(),
                waited: since.elapsed(),
                lease_ran_out: by_lease,
                cause: "database is locked (another process holds its write lock)".to_owned(),
            });
            return false;
        }
        // Short sleeps: the lock is usually held for a moment.
        let delay = w.backoff.next().unwrap_or_default().min(left);
        std::thread::sleep(delay.min(Duration::from_millis(200)));
        true
    })
}

/// After a commit: the link is up again, or, when the handler gave up
/// during it, given up.
pub(crate) fn settled() {
    WAIT.with_borrow_mut(|w| {
        let Some(w) = w.as_mut() else {
            return;
        };
        if w.since.take().is_some() {
            w.backoff = Backoff::new(rand::random());
            w.told = false;
        }
        match w.gave_up.take() {
            Some(why) => w.link.give_up(why),
            None => w.link.up(),
        }
    });
}
