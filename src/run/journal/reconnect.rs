//! The PostgreSQL writer's connection, which rides out an outage of the
//! database (a restart, a failover, a network cut) within the run's
//! patience (see [`super::link`] for the rules).
//!
//! When a commit fails for a connection reason, the writer:
//! 1. tells the link it is down (the engine's tasks then wait: no call is
//!    sent while the journal cannot record it);
//! 2. reconnects with bounded exponential back-off and jitter, each attempt
//!    bounded by the time left;
//! 3. settles the interrupted transaction: ends the server process that
//!    served the cut connection if it is still there (it may hold the
//!    transaction, and the run's row locked), then learns whether that
//!    transaction committed (a cut while `COMMIT` was on its way leaves it
//!    unknown to this side): by the key of the intent a durable batch
//!    inserts, else by its id (`txid_status`). A committed batch is
//!    done, an aborted one is committed again, so every write lands once:
//!    an intent is never lost nor doubled, and a call waits until its
//!    intent is known committed;
//! 4. re-checks that this process still holds its run and renews the
//!    lease (a fenced update): taken over by another process, it stops as
//!    `lost the lease`; its lease ran out meanwhile, it gives up;
//! 5. commits the batch again on the new connection.
//!
//! Past the deadline (the patience, or the lease) it gives up: the link
//! says so, the batch and everything after it fail, and the run stops as it
//! is journaled, resumable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;

use super::link::{Backoff, Link, Unreachable};
use super::pg::{Failure, PgTarget, Session, is_connection};
use super::{FENCED, Val, now_ms};

/// How long the attempt at the deadline may take to connect.
const LAST_ATTEMPT: Duration = Duration::from_secs(1);

/// See the module doc.
pub(crate) struct Writer {
    target: PgTarget,
    session: Option<Session>,
    link: Arc<Link>,
}

/// An outage under way.
struct Outage {
    since: Instant,
    backoff: Backoff,
    /// The server process of the cut connection, to end if it lingers.
    backend: Option<(i32, String)>,
    /// The interrupted transaction, whose outcome is to be learned: by its
    /// id, or by the key of an intent it inserts.
    xid: Option<i64>,
    witness: Option<String>,
    cause: String,
}

/// How a reconnect ended.
enum Settled {
    /// The interrupted transaction had committed: the batch is done.
    Committed,
    /// It had not: commit the batch again.
    Retry,
}

/// A step of the reconnect failed.
enum Step {
    /// For a connection reason: try again.
    Lost(String),
    /// For good (the lease was lost, or the database refused).
    Stop(String),
}

impl From<postgres::Error> for Step {
    fn from(e: postgres::Error) -> Step {
        if is_connection(&e) {
            Step::Lost(e.to_string())
        } else {
            Step::Stop(e.to_string())
        }
    }
}

impl Writer {
    pub(crate) fn new(target: PgTarget, session: Session, link: Arc<Link>) -> Writer {
        Writer {
            target,
            session: Some(session),
            link,
        }
    }

    /// Commits `writes` in one transaction (see [`Session::commit`]),
    /// riding out an outage within the link's patience.
    pub(crate) fn commit<'a>(
        &mut self,
        writes: impl Iterator<Item = (&'a str, &'a [Val], bool)>,
        durable: bool,
        fence: impl Fn(bool, u64) -> Result<(), String>,
    ) -> Result<(), String> {
        let writes: Vec<(&str, &[Val], bool)> = writes.collect();
        // A durable batch holds the intent of a mutating call: whether it
        // committed is known by that intent's key (re-checked by key on
        // reconnect), which saves the round trip that learns its id.
        let witness = if durable { witness(&writes) } else { None };
        if let Some(u) = self.link.gave_up() {
            return Err(u.to_string());
        }
        let mut outage: Option<Outage> = None;
        loop {
            if self.session.is_none() && outage.is_none() {
                // Lost earlier with no patience to ride it out: one try.
                match Session::open(&self.target, Duration::from_secs(10)) {
                    Ok(s) => self.session = Some(s),
                    Err(e) => return Err(e.to_string()),
                }
            }
            let Some(session) = self.session.as_mut() else {
                return Err("the journal is not connected".to_owned());
            };
            match session.commit(&writes, durable, witness.is_none(), &fence) {
                Ok(()) => {
                    self.link.up();
                    return Ok(());
                }
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Lost { xid, cause }) => {
                    let backend = self.session.take().and_then(|s| s.backend());
                    if self.link.patience().is_zero() {
                        return Err(cause);
                    }
                    let since = self.link.down("cannot be reached; reconnecting");
                    let o = outage.get_or_insert_with(|| Outage {
                        since,
                        backoff: Backoff::new(rand::random()),
                        backend: None,
                        xid: None,
                        witness: None,
                        cause: String::new(),
                    });
                    o.backend = backend.or(o.backend.take());
                    o.xid = xid;
                    o.witness.clone_from(&witness);
                    o.cause = cause;
                    match self.reconnect(o)? {
                        Settled::Committed => {
                            self.link.up();
                            return Ok(());
                        }
                        Settled::Retry => {}
                    }
                }
            }
        }
    }

    /// Reconnects and settles the interrupted transaction (steps 2 to 4 of
    /// the module doc), or gives up at the deadline.
    fn reconnect(&mut self, outage: &mut Outage) -> Result<Settled, String> {
        loop {
            let (deadline, by_lease) = self.link.deadline(outage.since);
            let left = deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(outage.backoff.next().unwrap_or_default().min(left));
            // The last attempt is made at the deadline: a journal back by
            // then is not given up on.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(LAST_ATTEMPT);
            let mut session = match Session::open(&self.target, left) {
                Ok(s) => s,
                Err(e) => {
                    outage.cause = e.to_string();
                    if Instant::now() >= deadline {
                        return Err(self.give_up(outage, by_lease));
                    }
                    continue;
                }
            };
            match self.settle(session.client(), outage, deadline) {
                Ok(settled) => {
                    self.session = Some(session);
                    return Ok(settled);
                }
                Err(Step::Lost(cause)) => {
                    outage.cause = cause;
                    if Instant::now() >= deadline {
                        return Err(self.give_up(outage, by_lease));
                    }
                }
                Err(Step::Stop(e)) => {
                    self.session = Some(session);
                    // Tasks waiting on the link go on and find the lease
                    // lost (or the journal stopped): nothing is sent.
                    self.link.up();
                    return Err(e);
                }
            }
        }
    }

    /// Gives the outage up: the link tells every waiting task.
    fn give_up(&self, outage: &Outage, lease_ran_out: bool) -> String {
        let why = Unreachable {
            at: self.target.shown().to_owned(),
            waited: outage.since.elapsed(),
            lease_ran_out,
            cause: outage.cause.clone(),
        };
        let text = why.to_string();
        self.link.give_up(why);
        text
    }

    /// Steps 3 and 4 of the module doc, on a new connection.
    fn settle(
        &self,
        client: &mut Client,
        outage: &mut Outage,
        deadline: Instant,
    ) -> Result<Settled, Step> {
        if let Some((pid, started)) = outage.backend.clone() {
            let _ = client.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2",
                &[&pid, &started],
            );
            while client
                .query_opt(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2",
                    &[&pid, &started],
                )?
                .is_some()
            {
                if Instant::now() >= deadline {
                    return Err(Step::Lost(format!(
                        "the server process {pid} of the cut connection is still there"
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            outage.backend = None;
        }
        let settled = match (outage.xid, &outage.witness) {
            (None, None) => Settled::Retry,
            // The old transaction's process is gone: what it committed is
            // all it will ever commit.
            (None, Some(key)) => {
                let found = client.query_opt("SELECT 1 FROM attempts WHERE key = $1", &[key])?;
                if found.is_some() {
                    Settled::Committed
                } else {
                    Settled::Retry
                }
            }
            (Some(xid), _) => {
                let status: Option<String> = client
                    .query_one("SELECT txid_status($1)::text", &[&xid])?
                    .try_get(0)?;
                match status.as_deref() {
                    Some("committed") => Settled::Committed,
                    Some("aborted") => Settled::Retry,
                    // Its process lingers unseen: wait for the server to
                    // end it (or the deadline).
                    Some("in progress") => {
                        return Err(Step::Lost(
                            "the interrupted transaction is still in progress on the server"
                                .to_owned(),
                        ));
                    }
                    // Unknown: not known committed, so not acknowledged.
                    other => {
                        return Err(Step::Stop(format!(
                            "whether the journal's last transaction committed is unknown (txid_status: {})",
                            other.unwrap_or("NULL")
                        )));
                    }
                }
            }
        };
        self.renew(client)?;
        Ok(settled)
    }

    /// Re-checks this process's hold on its run and renews the lease.
    fn renew(&self, client: &mut Client) -> Result<(), Step> {
        let Some(hold) = self.link.held() else {
            return Ok(());
        };
        let beat = now_ms();
        if beat > self.link.lease_until() {
            // Too late to renew: another process may hold the run now.
            return Err(Step::Lost("this run's lease ran out".to_owned()));
        }
        let changed = client.execute(
            "UPDATE runs SET heartbeat_ms = CASE WHEN heartbeat_ms > $2 THEN heartbeat_ms ELSE $2 END
             WHERE id = $1 AND holder = $3",
            &[&hold.run, &beat, &hold.holder],
        )?;
        if changed == 0 {
            self.link.lease_lost();
            return Err(Step::Stop(format!(
                "{FENCED}: another process took the run over while the journal was unreachable"
            )));
        }
        self.link.renewed(beat);
        Ok(())
    }
}

/// Runs `op` on the connection in `session` (made, or made again after it
/// broke, on the way): the reader's and the lock thread's queries. One
/// that fails for a connection reason is tried again, with back-off,
/// within the link's patience, unless the writer gave up: each of them may
/// run twice (they are conditional and idempotent).
pub(crate) fn retrying<T>(
    target: &PgTarget,
    session: &mut Option<Session>,
    link: &Link,
    mut op: impl FnMut(&mut Session) -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    let started = Instant::now();
    let mut backoff = Backoff::new(rand::random());
    loop {
        let result = match session.as_mut() {
            Some(s) => Ok(s),
            None => Session::open(target, Duration::from_secs(10)).map(|s| session.insert(s)),
        }
        .and_then(&mut op);
        let lost = result.as_ref().is_err_and(is_connection);
        if lost {
            *session = None;
        }
        let left = link.patience().saturating_sub(started.elapsed());
        if !lost || left.is_zero() || link.gave_up().is_some() {
            return result;
        }
        std::thread::sleep(backoff.next().unwrap_or_default().min(left));
    }
}

/// The key of the first intent `writes` insert (see `Journal::attempt_intent`).
fn witness(writes: &[(&str, &[Val], bool)]) -> Option<String> {
    writes.iter().find_map(|(sql, args, _)| {
        let intent = sql.trim_start().starts_with("INSERT INTO attempts");
        match args.first() {
            Some(Val::Text(key)) if intent => Some(key.clone()),
            _ => None,
        }
    })
}
