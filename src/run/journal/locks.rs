//! Resource locks and abandoned runs in the journal (schema version 4).
//!
//! A lock row names a resource (account, region, product, kind, id) and the
//! run that holds it. Whether the lock still holds is decided by the run's
//! row, in the statement that takes it, never by the lock row alone: a lock
//! holds while its run has not ended (`succeeded`, `failed`, `cancelled`,
//! `rejected`) and is either parked on purpose (any other status but
//! `running`: `window_closed`, `waiting_approval`) or `running` under a
//! valid lease (last heartbeat + lease length not past). So a run whose
//! process died loses its locks when its lease runs out, with no one to
//! clean up, and the lease that fences every intent of a mutating call
//! (see [`Journal::claim_run`]) fences the locks too: a process past its
//! lease can neither send a call nor keep a lock.
//!
//! Several locks are taken in one transaction, all or none, in a sorted
//! order (two runs taking overlapping sets cannot deadlock). The
//! transactions run on a connection of their own: SQLite's is opened per
//! transaction (`BEGIN IMMEDIATE`, like every SQLite writer here, waits for
//! the others); PostgreSQL's belongs to a thread made on first use, as the
//! reader's does (a `postgres::Client` never runs on the engine's threads).

use std::sync::mpsc;

use rusqlite::TransactionBehavior;

use super::{Journal, JournalError, Location, Sv, Val, now};
use crate::run::resources::{LockHolder, ResourceKey};

/// Version 4 (SQLite): resource locks, and who abandoned which run.
pub(super) const V4: &str = "
CREATE TABLE resource_locks (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    step_id TEXT,
    taken_at TEXT NOT NULL,
    PRIMARY KEY (account, region, product, kind, resource_id)
);
CREATE INDEX resource_locks_run ON resource_locks (run_id);
CREATE TABLE abandoned_runs (
    run_id TEXT PRIMARY KEY,
    abandoned_by TEXT NOT NULL,
    host TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
";

/// Version 4 (PostgreSQL): the same tables.
pub(super) const PG_V4: &str = V4;

/// Takes one lock for run `?6`, unless a live run other than it holds it.
const TAKE: &str = "INSERT INTO resource_locks (account, region, product, kind, resource_id, run_id, step_id, taken_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (account, region, product, kind, resource_id) DO UPDATE
         SET run_id = excluded.run_id, step_id = excluded.step_id, taken_at = excluded.taken_at
         WHERE resource_locks.run_id = excluded.run_id
            OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = resource_locks.run_id
                           AND r.status NOT IN ('succeeded', 'failed', 'cancelled', 'rejected')
                           AND (r.status <> 'running' OR r.heartbeat_ms + r.lease_ms >= ?9))
     RETURNING run_id";

/// Who holds the lock of one resource (its run, operator and host).
const HOLDER: &str = "SELECT l.run_id, r.operator, r.host, r.name, l.step_id
     FROM resource_locks l LEFT JOIN runs r ON r.id = l.run_id
     WHERE l.account = ?1 AND l.region = ?2 AND l.product = ?3 AND l.kind = ?4 AND l.resource_id = ?5";

/// One statement of a transaction, and whether it must return a row (else
/// the transaction is rolled back).
struct Stmt {
    sql: &'static str,
    args: Vec<Val>,
    must_return: bool,
}

/// A transaction for the PostgreSQL lock thread, and where to answer.
pub(super) struct TxReq {
    stmts: Vec<Stmt>,
    reply: mpsc::Sender<Result<Option<usize>, postgres::Error>>,
}

/// Who abandoned a run, when and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Abandoned {
    /// Who (`user@host`).
    pub by: String,
    /// The host it was abandoned from.
    pub host: String,
    /// Why, as given.
    pub reason: String,
    /// When.
    pub at: String,
}

/// What [`Journal::abandon_run`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum AbandonOutcome {
    /// The run ended `cancelled`; its locks are released.
    Abandoned,
    /// Nothing: the run had ended already, or a live process holds it
    /// (its lease has not run out).
    Refused,
}

fn key_args(key: &ResourceKey) -> Vec<Val> {
    vec![
        key.account.as_str().sv(),
        key.region.as_str().sv(),
        key.product.as_str().sv(),
        key.kind.as_str().sv(),
        key.id.as_str().sv(),
    ]
}

impl Journal {
    /// Takes the locks of `keys` for run `run_id` (for `step`, when one
    /// step needs them), all or none, in one transaction; a lock the run
    /// holds already is kept. `Ok(None)`: taken. `Ok(Some(holder))`: a live
    /// run holds one of them, and nothing was taken.
    pub fn take_locks(
        &self,
        run_id: &str,
        step: Option<&str>,
        keys: &[ResourceKey],
        now_ms: i64,
    ) -> Result<Option<LockHolder>, JournalError> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let at = now();
        let stmts = keys
            .iter()
            .map(|key| {
                let mut args = key_args(key);
                args.extend([
                    run_id.sv(),
                    step.map_or(Val::Null, Sv::sv),
                    at.as_str().sv(),
                    now_ms.sv(),
                ]);
                Stmt {
                    sql: TAKE,
                    args,
                    must_return: true,
                }
            })
            .collect();
        let Some(refused) = self.transact(stmts)? else {
            return Ok(None);
        };
        let key = keys[refused].clone();
        let rows = self.query(HOLDER, key_args(&key))?;
        let row = rows.first();
        let text = |i: usize| row.and_then(|r| r.opt_text(i).ok().flatten());
        Ok(Some(LockHolder {
            run_id: text(0).unwrap_or_else(|| "?".to_owned()),
            operator: text(1),
            host: text(2),
            playbook: text(3),
            step: text(4),
            key,
        }))
    }

    /// Lets go of run `run_id`, claimed by this process a moment ago, that
    /// will not go on after all (its locks were refused): its lease ends
    /// now, so it is not taken for alive, and keeps no lock, a moment longer.
    pub fn let_go(&self, run_id: &str) -> Result<(), JournalError> {
        let holder = self
            .link
            .held()
            .filter(|h| h.run == run_id)
            .map(|h| h.holder);
        let Some(holder) = holder else {
            return Ok(());
        };
        self.query(
            "UPDATE runs SET heartbeat_ms = 0 WHERE id = ?1 AND holder = ?2 RETURNING id",
            vec![run_id.sv(), holder.sv()],
        )
        .map(drop)
    }

    /// Releases every lock of run `run_id` (it has ended).
    pub fn release_locks(&self, run_id: &str) -> Result<(), JournalError> {
        self.query(
            "DELETE FROM resource_locks WHERE run_id = ?1 RETURNING run_id",
            vec![run_id.sv()],
        )
        .map(drop)
    }

    /// The resources whose lock rows name run `run_id` (whether they still
    /// hold depends on the run: see the module doc), sorted.
    pub fn locks_of(&self, run_id: &str) -> Result<Vec<ResourceKey>, JournalError> {
        self.query(
            "SELECT account, region, product, kind, resource_id FROM resource_locks WHERE run_id = ?1
             ORDER BY account, region, product, kind, resource_id",
            vec![run_id.sv()],
        )?
        .iter()
        .map(|r| {
            Ok(ResourceKey {
                account: r.text(0)?,
                region: r.text(1)?,
                product: r.text(2)?,
                kind: r.text(3)?,
                id: r.text(4)?,
            })
        })
        .collect()
    }

    /// Ends run `run_id` as abandoned (`runbook abandon`): only when no
    /// live process holds it (it is parked, or `running` past its lease, or
    /// `running` with its holder on `host` known to be gone: `host_gone`,
    /// from the plan's lock there). In one transaction: the run ends
    /// `cancelled` with no holder (a process that was only stopped can
    /// neither heartbeat nor commit an intent any more), who abandoned it,
    /// when and why are recorded, with `event`, and its locks are released.
    #[allow(clippy::too_many_arguments)]
    pub fn abandon_run(
        &self,
        run_id: &str,
        by: &str,
        host: &str,
        reason: &str,
        host_gone: bool,
        event: &crate::run::RunEvent,
        now_ms: i64,
    ) -> Result<AbandonOutcome, JournalError> {
        let at = now();
        let event_json = serde_json::to_string(event).unwrap_or_default();
        let stmts = vec![
            Stmt {
                sql: "UPDATE runs SET status = 'cancelled', finished_at = ?2, updated_at = ?2, holder = NULL, cancel_requested = NULL
                      WHERE id = ?1 AND status NOT IN ('succeeded', 'failed', 'cancelled', 'rejected')
                        AND (status <> 'running' OR heartbeat_ms IS NULL OR lease_ms IS NULL
                             OR heartbeat_ms + lease_ms < ?3 OR (host = ?4 AND ?5 = 1))
                      RETURNING id",
                args: vec![
                    run_id.sv(),
                    at.as_str().sv(),
                    now_ms.sv(),
                    host.sv(),
                    i64::from(host_gone).sv(),
                ],
                must_return: true,
            },
            Stmt {
                sql: "INSERT INTO abandoned_runs (run_id, abandoned_by, host, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)
                      ON CONFLICT (run_id) DO UPDATE SET abandoned_by = ?2, host = ?3, reason = ?4, at = ?5
                      RETURNING run_id",
                args: vec![run_id.sv(), by.sv(), host.sv(), reason.sv(), at.as_str().sv()],
                must_return: true,
            },
            Stmt {
                sql: "INSERT INTO events (run_id, at, event_json) VALUES (?1, ?2, ?3) RETURNING run_id",
                args: vec![run_id.sv(), at.as_str().sv(), event_json.sv()],
                must_return: true,
            },
            Stmt {
                sql: "DELETE FROM resource_locks WHERE run_id = ?1 RETURNING run_id",
                args: vec![run_id.sv()],
                must_return: false,
            },
        ];
        Ok(match self.transact(stmts)? {
            None => AbandonOutcome::Abandoned,
            Some(_) => AbandonOutcome::Refused,
        })
    }

    /// Who abandoned each abandoned run, by run id.
    pub fn abandoned_runs(
        &self,
    ) -> Result<std::collections::HashMap<String, Abandoned>, JournalError> {
        self.query(
            "SELECT run_id, abandoned_by, host, reason, at FROM abandoned_runs",
            vec![],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.text(0)?,
                Abandoned {
                    by: r.text(1)?,
                    host: r.text(2)?,
                    reason: r.text(3)?,
                    at: r.text(4)?,
                },
            ))
        })
        .collect()
    }

    /// Runs `stmts` in one transaction. `Ok(None)`: committed.
    /// `Ok(Some(i))`: statement `i` returned no row though it must, and
    /// the transaction was rolled back.
    fn transact(&self, stmts: Vec<Stmt>) -> Result<Option<usize>, JournalError> {
        match &self.url.0 {
            Location::Sqlite(path) => {
                let sql_err = |source| JournalError::Sqlite {
                    path: path.clone(),
                    source,
                };
                let mut conn = super::open_conn(path)?;
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql_err)?;
                for (i, s) in stmts.iter().enumerate() {
                    let mut stmt = tx.prepare(s.sql).map_err(sql_err)?;
                    let mut rows = stmt
                        .query(rusqlite::params_from_iter(s.args.iter()))
                        .map_err(sql_err)?;
                    let returned = rows.next().map_err(sql_err)?.is_some();
                    drop(rows);
                    if s.must_return && !returned {
                        return Ok(Some(i));
                    }
                }
                tx.commit().map_err(sql_err)?;
                Ok(None)
            }
            Location::Postgres(target) => {
                let sender = self.locks_conn.get_or_init(|| {
                    let (tx, rx) = mpsc::channel::<TxReq>();
                    let (target, link) = (target.clone(), std::sync::Arc::clone(&self.link));
                    let _ = std::thread::Builder::new()
                        .name("journal-locks".to_owned())
                        .spawn(move || pg_transactions(&target, &rx, &link));
                    tx
                });
                let (reply, answer) = mpsc::channel();
                sender
                    .send(TxReq { stmts, reply })
                    .map_err(|_| JournalError::WriterGone)?;
                answer
                    .recv()
                    .map_err(|_| JournalError::WriterGone)?
                    .map_err(|source| JournalError::Postgres {
                        url: self.url.to_string(),
                        source,
                    })
            }
        }
    }
}

/// The PostgreSQL lock thread: runs each transaction on its own
/// connection, made on first use and made again after it broke, riding out
/// an outage within the run's patience (a take is idempotent for its run).
fn pg_transactions(
    target: &super::pg::PgTarget,
    rx: &mpsc::Receiver<TxReq>,
    link: &super::link::Link,
) {
    let mut session: Option<super::pg::Session> = None;
    while let Ok(req) = rx.recv() {
        let result = super::reconnect::retrying(target, &mut session, link, |s| {
            pg_transact(s.client(), &req.stmts)
        });
        let _ = req.reply.send(result);
    }
}

fn pg_transact(
    client: &mut postgres::Client,
    stmts: &[Stmt],
) -> Result<Option<usize>, postgres::Error> {
    use postgres::types::ToSql;
    let mut tx = client.transaction()?;
    for (i, s) in stmts.iter().enumerate() {
        let params: Vec<&(dyn ToSql + Sync)> =
            s.args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let rows = tx.query(&super::pg::dialect(s.sql), &params)?;
        if s.must_return && rows.is_empty() {
            tx.rollback()?;
            return Ok(Some(i));
        }
    }
    tx.commit()?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::run::journal::tests::TestDb;

    /// How a run that holds a lock stands.
    #[derive(Clone, Copy, Debug)]
    enum Holder {
        Alive,
        LeaseRunOut,
        Parked(&'static str),
        Ended(&'static str),
    }

    impl Holder {
        fn holds(self) -> bool {
            matches!(self, Holder::Alive | Holder::Parked(_))
        }
    }

    fn holder() -> impl Strategy<Value = Holder> {
        prop_oneof![
            Just(Holder::Alive),
            Just(Holder::LeaseRunOut),
            Just(Holder::Parked("window_closed")),
            Just(Holder::Parked("waiting_approval")),
            Just(Holder::Ended("succeeded")),
            Just(Holder::Ended("failed")),
            Just(Holder::Ended("cancelled")),
            Just(Holder::Ended("rejected")),
        ]
    }

    fn key(i: usize) -> ResourceKey {
        ResourceKey {
            account: "acc".to_owned(),
            region: "cn-hangzhou".to_owned(),
            product: "dts".to_owned(),
            kind: "job".to_owned(),
            id: format!("DtsJobId=dts{i}"),
        }
    }

    const NOW: i64 = 1_000_000;

    fn add_run(j: &Journal, id: &str, h: Holder) {
        let (status, beat) = match h {
            Holder::Alive => ("running", NOW - 1_000),
            Holder::LeaseRunOut => ("running", NOW - 60_000),
            Holder::Parked(s) | Holder::Ended(s) => (s, NOW - 60_000),
        };
        j.query(
            "INSERT INTO runs (id, name, source, digest, plan_json, options_json, status, created_at, updated_at, host, operator, holder, heartbeat_ms, lease_ms)
             VALUES (?1, 'pb', 'pb.yaml', 'd', '{}', '{}', ?2, 't', 't', 'host-a', 'ops@host-a', 'h', ?3, 30000) RETURNING id",
            vec![id.sv(), status.sv(), beat.sv()],
        )
        .unwrap();
    }

    fn owners(j: &Journal, n: usize) -> Vec<Option<String>> {
        (0..n)
            .map(|i| {
                let k = key(i);
                j.query(
                    "SELECT run_id FROM resource_locks WHERE account = ?1 AND region = ?2 AND product = ?3 AND kind = ?4 AND resource_id = ?5",
                    key_args(&k),
                )
                .unwrap()
                .first()
                .map(|r| r.text(0).unwrap())
            })
            .collect()
    }

    /// Keys 0..n owned by the runs `held` names (by index into `holders`);
    /// run `me` (alive) takes `wanted`: refused exactly when a run that
    /// holds (alive, or parked) owns one of them, and then nothing changes;
    /// else it owns them all.
    fn check(j: &Journal, tag: &str, holders: &[Holder], held: &[Option<usize>], wanted: &[usize]) {
        j.query("DELETE FROM resource_locks RETURNING run_id", vec![])
            .unwrap();
        for (i, h) in holders.iter().enumerate() {
            add_run(j, &format!("{tag}-r{i}"), *h);
        }
        let me = format!("{tag}-me");
        add_run(j, &me, Holder::Alive);
        for (k, owner) in held.iter().enumerate() {
            if let Some(o) = owner {
                assert_eq!(
                    j.take_locks(&format!("{tag}-r{o}"), None, &[key(k)], 0)
                        .unwrap(),
                    None
                );
            }
        }
        let before = owners(j, held.len());
        let keys: Vec<ResourceKey> = wanted.iter().map(|&i| key(i)).collect();
        let blocker = wanted
            .iter()
            .filter_map(|&k| held[k])
            .find(|&o| holders[o].holds());
        let got = j.take_locks(&me, Some("stop"), &keys, NOW).unwrap();
        match blocker {
            Some(_) => {
                let h = got.expect("refused");
                assert!(
                    wanted.contains(&h.key.id["DtsJobId=dts".len()..].parse::<usize>().unwrap())
                );
                let o: usize = h.run_id.rsplit('r').next().unwrap().parse().unwrap();
                assert!(holders[o].holds(), "{h:?}");
                assert_eq!(h.operator.as_deref(), Some("ops@host-a"));
                assert_eq!(h.host.as_deref(), Some("host-a"));
                assert_eq!(owners(j, held.len()), before, "nothing taken");
            }
            None => {
                assert_eq!(got, None);
                let after = owners(j, held.len());
                for &k in wanted {
                    assert_eq!(after[k].as_deref(), Some(me.as_str()));
                }
                assert_eq!(j.locks_of(&me).unwrap().len(), {
                    let mut w = wanted.to_vec();
                    w.sort_unstable();
                    w.dedup();
                    w.len()
                });
            }
        }
    }

    fn case() -> impl Strategy<Value = (Vec<Holder>, Vec<Option<usize>>, Vec<usize>)> {
        (1usize..4, 1usize..6).prop_flat_map(|(runs, keys)| {
            (
                proptest::collection::vec(holder(), runs),
                proptest::collection::vec(proptest::option::of(0..runs), keys),
                proptest::collection::vec(0..keys, 1..=keys),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn a_lock_is_taken_unless_a_live_or_parked_run_holds_it_all_or_none_on_sqlite(
            (holders, held, wanted) in case()
        ) {
            let dir = tempfile::tempdir().unwrap();
            let j = Journal::open(dir.path()).unwrap();
            check(&j, "s", &holders, &held, &wanted);
        }
    }

    #[test]
    fn a_lock_is_taken_unless_a_live_or_parked_run_holds_it_all_or_none_on_postgres() {
        let db = TestDb::new();
        let j = Journal::open_url(&db.url).unwrap();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
        let n = std::sync::atomic::AtomicUsize::new(0);
        runner
            .run(&case(), |(holders, held, wanted)| {
                let tag = format!("p{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
                check(&j, &tag, &holders, &held, &wanted);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn abandoning_ends_a_parked_or_dead_run_and_frees_its_locks_never_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new();
        for j in [
            Journal::open(dir.path()).unwrap(),
            Journal::open_url(&db.url).unwrap(),
        ] {
            let event = crate::run::RunEvent::Abandoned {
                by: "me@b".to_owned(),
                host: "b".to_owned(),
                reason: "gone".to_owned(),
            };
            let cases = [
                (Holder::Alive, false, AbandonOutcome::Refused),
                (Holder::Alive, true, AbandonOutcome::Abandoned),
                (Holder::LeaseRunOut, false, AbandonOutcome::Abandoned),
                (
                    Holder::Parked("window_closed"),
                    false,
                    AbandonOutcome::Abandoned,
                ),
                (Holder::Ended("succeeded"), false, AbandonOutcome::Refused),
            ];
            for (i, (h, gone, want)) in cases.into_iter().enumerate() {
                let id = format!("a{i}");
                add_run(&j, &id, h);
                assert_eq!(j.take_locks(&id, None, &[key(i)], 0).unwrap(), None);
                let got = j
                    .abandon_run(&id, "me@b", "host-a", "gone", gone, &event, NOW)
                    .unwrap();
                assert_eq!(got, want, "{h:?}");
                let left = j.locks_of(&id).unwrap();
                let abandoned = j.abandoned_runs().unwrap();
                if want == AbandonOutcome::Abandoned {
                    assert!(left.is_empty());
                    assert_eq!(abandoned[&id].reason, "gone");
                    let run = j.load_run(&id).unwrap().run;
                    assert_eq!(run.status, crate::run::RunStatus::Cancelled);
                    assert!(run.finished_at.is_some());
                    assert!(j.events(&id).unwrap().iter().any(|(_, e)| *e == event));
                } else {
                    assert_eq!(left, vec![key(i)]);
                    assert!(!abandoned.contains_key(&id));
                    assert!(j.events(&id).unwrap().is_empty());
                }
            }
        }
    }
}
