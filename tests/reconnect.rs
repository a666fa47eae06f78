//! A journal that cannot be reached mid-run: a real TCP proxy ([`Proxy`])
//! between runbook and a real PostgreSQL cuts every connection (RST) and
//! refuses new ones for a while, then lets them through again. The calls
//! go to the rig's simulator over real HTTP; its call log is the judge.
//! These tests always need PostgreSQL (see [`crate::journal_backend`]); the
//! shared server itself is never restarted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use runbook::sim::CallRecord;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::journal_backend::TestDb;
use crate::run::{FAN_OUT, FILE_IDS, Rig, text, wait_until};

/// A TCP proxy to PostgreSQL that a test can cut: [`Proxy::cut`] resets
/// every connection through it and refuses (resets) new ones until
/// [`Proxy::restore`]; [`Proxy::cut_after_next_commit`] does so right after
/// the next `COMMIT` reached the server, before its answer reaches the
/// client (which cannot know whether it committed).
pub(crate) struct Proxy {
    rt: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    shared: Arc<Switch>,
}

/// What the test sets and the connections obey.
struct Switch {
    down: AtomicBool,
    /// Bumped by every cut: each connection ends when it changes.
    cuts: watch::Sender<u64>,
    /// Cut after the next `COMMIT`, for that long.
    after_commit: std::sync::Mutex<Option<Duration>>,
}

impl Switch {
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Proxy {
    /// A proxy on a free loopback port to `upstream` (`host:port`).
    pub(crate) fn start(upstream: &str) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Switch {
            down: AtomicBool::new(false),
            cuts: watch::channel(0u64).0,
            after_commit: std::sync::Mutex::new(None),
        });
        let upstream = upstream.to_owned();
        let switch = Arc::clone(&shared);
        rt.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if switch.down.load(Ordering::SeqCst) {
                    reset(client);
                    continue;
                }
                let (upstream, switch) = (upstream.clone(), Arc::clone(&switch));
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        reset(client);
                        return;
                    };
                    pump(client, server, &switch).await;
                });
            }
        });
        Proxy {
            rt: Some(rt),
            addr,
            shared,
        }
    }

    /// `url` (a PostgreSQL URL on 127.0.0.1:5432) through this proxy.
    pub(crate) fn url(&self, url: &str) -> String {
        let (head, tail) = url.split_once("@").unwrap();
        let (_, db) = tail.split_once('/').unwrap();
        format!("{head}@{}/{db}", self.addr)
    }

    /// Resets every connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.shared.cut();
    }

    /// Lets connections through again.
    pub(crate) fn restore(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// Cuts every connection once the next `COMMIT` has reached the server
    /// (and it had time to commit), for `outage`.
    pub(crate) fn cut_after_next_commit(&self, outage: Duration) {
        *self.shared.after_commit.lock().unwrap() = Some(outage);
    }

    /// Whether a cut after a commit is still to come.
    pub(crate) fn commit_cut_pending(&self) -> bool {
        self.shared.after_commit.lock().unwrap().is_some()
    }
}

/// Carries one connection both ways until either side closes it or a cut.
async fn pump(mut c: TcpStream, mut s: TcpStream, switch: &Arc<Switch>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cut = switch.cuts.subscribe();
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            r = c.read(&mut up) => {
                let n = match r { Ok(n) if n > 0 => n, _ => break };
                let commit = up[..n].windows(6).any(|w| w == b"COMMIT");
                if s.write_all(&up[..n]).await.is_err() {
                    break;
                }
                let outage = if commit { switch.after_commit.lock().unwrap().take() } else { None };
                if let Some(outage) = outage {
                    // The server has it; its answer never reaches the client.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    switch.cut();
                    let switch = Arc::clone(switch);
                    tokio::spawn(async move {
                        tokio::time::sleep(outage).await;
                        switch.down.store(false, Ordering::SeqCst);
                    });
                    break;
                }
            }
            r = s.read(&mut down) => {
                let n = match r { Ok(n) if n > 0 => n, _ => break };
                if c.write_all(&down[..n]).await.is_err() {
                    break;
                }
            }
            _ = cut.changed() => break,
        }
    }
    reset(c);
    reset(s);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Closes `s` with a reset (RST), as a dying server or a middlebox does.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

/// The upstream of the test server (`host:port` of `RUNBOOK_TEST_PG`).
fn upstream(url: &str) -> String {
    let tail = url.split_once('@').unwrap().1;
    tail.split_once('/').unwrap().0.to_owned()
}

/// A run of [`FAN_OUT`] on `rig` whose journal is `journal` (through a
/// proxy), with `extra` flags.
fn spawn_run(rig: &Rig, journal: &str, extra: &[&str]) -> Child {
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    let mut args = vec!["run", pb.as_str(), "--yes", "--output", "json"];
    args.extend_from_slice(extra);
    rig.cmd(&args)
        .env("RUNBOOK_JOURNAL", journal)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The mutating calls the simulator received (processed or not), by
/// action and FileId.
fn mutating(calls: &[CallRecord]) -> BTreeMap<(String, String), usize> {
    let mut by = BTreeMap::new();
    for c in calls {
        let action = c.action.clone().unwrap_or_default();
        if matches!(
            action.as_str(),
            "StopDISyncInstance" | "TerminateDISyncInstance"
        ) {
            *by.entry((action, c.param("FileId").unwrap_or("").to_owned()))
                .or_default() += 1;
        }
    }
    by
}

/// Every node was stopped and terminated, each call received exactly once.
fn assert_each_mutating_call_once(rig: &Rig) {
    let by = mutating(&rig.calls());
    assert_eq!(by.len(), 2 * FILE_IDS.len(), "{by:?}");
    assert!(
        by.values().all(|&n| n == 1),
        "a mutating call reached the simulator twice: {by:?}"
    );
    rig.assert_all_undeployed();
}

/// Calls the simulator received after `from` (and before `to`).
fn received_between(rig: &Rig, from: jiff::Timestamp, to: jiff::Timestamp) -> Vec<CallRecord> {
    rig.calls()
        .into_iter()
        .filter(|c| c.time > from && c.time < to)
        .collect()
}

/// Time for what was on the wire at a cut to arrive, and for the journal
/// to notice the cut (its next write: the run writes every few ms).
const GRACE: Duration = Duration::from_millis(700);

fn later(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    t + jiff::SignedDuration::try_from(d).unwrap()
}

/// A journal a test can make unavailable: PostgreSQL behind a [`Proxy`]
/// (cut), or a SQLite file whose write lock another connection holds.
enum Cuttable {
    Postgres {
        db: TestDb,
        proxy: Proxy,
    },
    Sqlite {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        holder: std::sync::Mutex<Option<rusqlite::Connection>>,
    },
}

impl Cuttable {
    fn postgres() -> Cuttable {
        let db = TestDb::new();
        let proxy = Proxy::start(&upstream(&db.url));
        Cuttable::Postgres { db, proxy }
    }

    fn sqlite() -> Cuttable {
        let dir = tempfile::tempdir().unwrap();
        Cuttable::Sqlite {
            path: dir.path().join("journal.db"),
            _dir: dir,
            holder: std::sync::Mutex::new(None),
        }
    }

    /// The journal URL runbook is given.
    fn url(&self) -> String {
        match self {
            Cuttable::Postgres { db, proxy } => proxy.url(&db.url),
            Cuttable::Sqlite { path, .. } => format!("sqlite:{}", path.display()),
        }
    }

    /// How runbook's messages name it.
    fn named(&self) -> String {
        match self {
            Cuttable::Postgres { proxy, .. } => proxy.addr.to_string(),
            Cuttable::Sqlite { path, .. } => path.display().to_string(),
        }
    }

    fn cut(&self) {
        match self {
            Cuttable::Postgres { proxy, .. } => proxy.cut(),
            Cuttable::Sqlite { path, holder, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                *holder.lock().unwrap() = Some(conn);
            }
        }
    }

    fn restore(&self) {
        match self {
            Cuttable::Postgres { proxy, .. } => proxy.restore(),
            Cuttable::Sqlite { holder, .. } => drop(holder.lock().unwrap().take()),
        }
    }

    /// The first column of every row of `sql`, as text.
    fn texts(&self, sql: &str) -> Vec<String> {
        match self {
            Cuttable::Postgres { db, .. } => db
                .client()
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Cuttable::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                stmt.query_map([], |r| r.get::<_, String>(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
        }
    }
}

/// One cut of `journal` during a run, `offset` after its `after`th
/// mutating call, for `outage`; the run may wait `patience` and holds a
/// lease of `lease`. Returns what the run wrote on stderr, and when the
/// journal was back.
fn cut_during_a_run(
    journal: &Cuttable,
    (after, offset): (usize, Duration),
    outage: Duration,
    (patience, lease): (Duration, Duration),
) -> (String, jiff::Timestamp) {
    let through = journal.url();
    let rig = Rig::new("", Duration::from_millis(60));
    let (patience_flag, lease_flag) = (
        format!("{}ms", patience.as_millis()),
        format!("{}ms", lease.as_millis()),
    );
    let mut child = spawn_run(
        &rig,
        &through,
        &["--journal-patience", &patience_flag, "--lease", &lease_flag],
    );
    // `after` mutating calls in (of 12: 6 stops, then 6 terminates), and
    // then `offset` more.
    wait_until(&mut child, "the cut point", || {
        mutating(&rig.calls()).values().sum::<usize>() >= after
    });
    std::thread::sleep(offset);
    let cut_at = jiff::Timestamp::now();
    journal.cut();
    let started = Instant::now();
    let mut ended = None;
    while started.elapsed() < outage {
        if let Some(status) = child.try_wait().unwrap() {
            ended = Some((status, jiff::Timestamp::now()));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let restored_at = jiff::Timestamp::now();
    journal.restore();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stopped = out.status.code() == Some(8);
    // Nothing was sent while the journal was unreachable (and, once the run
    // had stopped, nothing at all).
    let sent = received_between(&rig, later(cut_at, GRACE), restored_at);
    assert!(
        sent.is_empty(),
        "sent while the journal was unreachable: {sent:?}\n{}",
        text(&out)
    );
    if stopped {
        assert!(
            outage + Duration::from_millis(50) > patience,
            "a {outage:?} outage stopped a run with {patience:?} of patience\n{}",
            text(&out)
        );
        let Some((_, ended_at)) = ended else {
            panic!("the run ended only once the journal was back")
        };
        // Before its lease ran out: no other process could have taken the
        // run (or its resources) over while it still went on.
        let lease_end: i64 = journal
            .texts("SELECT CAST(heartbeat_ms + lease_ms AS TEXT) FROM runs")[0]
            .parse()
            .unwrap();
        assert!(
            ended_at.as_millisecond() < lease_end,
            "the run ended at {ended_at}, after its lease ran out ({lease_end} ms)"
        );
        assert!(
            stderr.contains("its journal could not be reached")
                && stderr.contains("runbook resume")
                && stderr.contains(&journal.named()),
            "{}",
            text(&out)
        );
        let id = journal.texts("SELECT id FROM runs")[0].clone();
        let out = rig
            .cmd(&["resume", &id])
            .env("RUNBOOK_JOURNAL", &through)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    } else {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // The patience counts from when the run noticed the cut.
        assert!(
            outage < patience + Duration::from_secs(1),
            "a {outage:?} outage did not stop a run with {patience:?} of patience"
        );
    }
    assert_each_mutating_call_once(&rig);
    assert_eq!(journal.texts("SELECT status FROM runs"), ["succeeded"]);
    (stderr, restored_at)
}

/// A blip shorter than the run's patience: the run waits it out, sends
/// nothing meanwhile, renews its lease on reconnecting, and succeeds with
/// every mutating call sent once.
#[test]
fn a_blip_shorter_than_the_patience_is_ridden_out() {
    let journal = Cuttable::postgres();
    let (stderr, restored_at) = cut_during_a_run(
        &journal,
        (3, Duration::ZERO),
        Duration::from_millis(1_500),
        (Duration::from_secs(4), Duration::from_secs(12)),
    );
    assert!(
        stderr.contains("the journal cannot be reached; reconnecting")
            && stderr.contains("the journal answers again after "),
        "{stderr}"
    );
    let beat: i64 = journal.texts("SELECT CAST(heartbeat_ms AS TEXT) FROM runs")[0]
        .parse()
        .unwrap();
    assert!(
        beat >= restored_at.as_millisecond(),
        "no heartbeat after the journal was back (last {beat} ms, back at {restored_at})"
    );
}

/// An outage that the run's lease would not outlast (the lease runs out
/// before the patience): the run stops before its lease runs out, saying
/// so, and resumes to the end.
#[test]
fn an_outage_the_lease_does_not_outlast_stops_the_run_before_it_runs_out() {
    let (stderr, _) = cut_during_a_run(
        &Cuttable::postgres(),
        (5, Duration::ZERO),
        Duration::from_secs(5),
        (Duration::from_millis(2_900), Duration::from_secs(3)),
    );
    assert!(
        stderr.contains("until this run's lease ran out"),
        "{stderr}"
    );
}

/// An outage longer than the patience: the run stops (exit 8) with a
/// clear message, sending nothing more; `runbook resume` once the journal
/// is back finishes it with no mutating call sent twice.
#[test]
fn an_outage_longer_than_the_patience_stops_the_run_resumably() {
    let (stderr, _) = cut_during_a_run(
        &Cuttable::postgres(),
        (8, Duration::ZERO),
        Duration::from_secs(4),
        (Duration::from_millis(1_500), Duration::from_millis(4_500)),
    );
    assert!(
        stderr.contains("longer than --journal-patience"),
        "{stderr}"
    );
}

/// SQLite: another process holding the journal's write lock for less
/// than the patience is waited for (nothing sent meanwhile); the run
/// succeeds with every mutating call sent once.
#[test]
fn a_sqlite_journal_locked_shorter_than_the_patience_is_waited_for() {
    let (stderr, _) = cut_during_a_run(
        &Cuttable::sqlite(),
        (3, Duration::ZERO),
        Duration::from_millis(1_500),
        (Duration::from_secs(4), Duration::from_secs(12)),
    );
    assert!(
        stderr.contains("the journal is locked by another process; waiting")
            && stderr.contains("the journal answers again after "),
        "{stderr}"
    );
}

/// SQLite: locked for longer than the patience, the run stops (exit 8)
/// saying so, and resumes to the end once the lock is gone.
#[test]
fn a_sqlite_journal_locked_longer_than_the_patience_stops_the_run_resumably() {
    let (stderr, _) = cut_during_a_run(
        &Cuttable::sqlite(),
        (8, Duration::ZERO),
        Duration::from_secs(4),
        (Duration::from_millis(1_500), Duration::from_millis(4_500)),
    );
    assert!(
        stderr.contains("longer than --journal-patience") && stderr.contains("database is locked"),
        "{stderr}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("RUNBOOK_RECONNECT_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(6),
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Cuts anywhere in the run, short or long: the same guarantees.
    #[test]
    fn cuts_at_any_point_keep_every_mutating_call_to_once(
        after in 1usize..=12,
        offset_ms in 0u64..60,
        outage_ms in 200u64..3_000,
    ) {
        let _ = cut_during_a_run(
            &Cuttable::postgres(),
            (after, Duration::from_millis(offset_ms)),
            Duration::from_millis(outage_ms),
            (Duration::from_millis(1_500), Duration::from_millis(4_500)),
        );
    }
}

/// `--journal-patience` must be shorter than the lease, and is checked
/// before anything is journaled or sent (also from the environment).
#[test]
fn a_patience_not_shorter_than_the_lease_is_a_usage_error() {
    let rig = Rig::new("", Duration::from_millis(1));
    let pb = rig.playbook("fan.yaml", FAN_OUT);
    for (flags, env) in [
        (vec!["--journal-patience", "30s"], None),
        (vec!["--lease", "10s", "--journal-patience", "1m"], None),
        (vec!["--lease", "5s"], Some("5s")),
        (vec!["--journal-patience", "0s"], None),
        (vec!["--journal-patience", "soon"], None),
    ] {
        let mut args = vec!["run", pb.as_str(), "--yes"];
        args.extend_from_slice(&flags);
        let mut cmd = rig.cmd(&args);
        if let Some(v) = env {
            cmd.env("RUNBOOK_JOURNAL_PATIENCE", v);
        }
        let out: Output = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--journal-patience"),
            "{}",
            text(&out)
        );
    }
    assert!(rig.calls().is_empty(), "a refused run sent a call");
    let runs: Value = serde_json::from_slice(&rig.run(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs, serde_json::json!([]), "a refused run was journaled");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("RUNBOOK_RECONNECT_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(6),
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A cut right after a `COMMIT` reached the server, before its answer
    /// came back: the run cannot know whether its last writes (an intent,
    /// often) committed. It learns it on reconnect, writes nothing twice
    /// (an intent committed again would be refused as a duplicate and fail
    /// the run), loses nothing, and sends every mutating call once.
    #[test]
    fn a_cut_while_a_commit_is_answered_writes_nothing_twice(
        after in 1usize..=12,
        offset_ms in 0u64..60,
        outage_ms in 50u64..800,
    ) {
        let db = TestDb::new();
        let proxy = Proxy::start(&upstream(&db.url));
        let rig = Rig::new("", Duration::from_millis(60));
        let mut child = spawn_run(&rig, &proxy.url(&db.url), &["--journal-patience", "10s"]);
        wait_until(&mut child, "the cut point", || {
            mutating(&rig.calls()).values().sum::<usize>() >= after
        });
        std::thread::sleep(Duration::from_millis(offset_ms));
        proxy.cut_after_next_commit(Duration::from_millis(outage_ms));
        let out = child.wait_with_output().unwrap();
        prop_assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        prop_assert!(!proxy.commit_cut_pending(), "no commit after the cut point");
        prop_assert!(
            String::from_utf8_lossy(&out.stderr).contains("reconnecting"),
            "{}",
            text(&out)
        );
        assert_each_mutating_call_once(&rig);
        // Every mutating call's intent is journaled once, with its answer.
        let rows = db
            .client()
            .query(
                "SELECT action, outcome FROM attempts WHERE kind = 'call' AND risk <> 'read'",
                &[],
            )
            .unwrap();
        prop_assert_eq!(rows.len(), 2 * FILE_IDS.len());
        for r in rows {
            prop_assert_eq!(r.get::<_, String>(1), "ok");
        }
    }
}
