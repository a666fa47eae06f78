//! The journal backend the integration tests run on, and throwaway
//! PostgreSQL databases.
//!
//! `RUNBOOK_TEST_JOURNAL=postgres` runs the behavioural tests (those built
//! on [`crate::run::Rig`]) against PostgreSQL, each rig in a database of its
//! own; unset (or `sqlite`) they run on the embedded default. `.ci/run`
//! runs them both ways. The server is `RUNBOOK_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`, trust auth); a test that needs
//! it and cannot reach it fails, saying so.

use std::process::Command;

/// The backend of this test process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

pub(crate) fn backend() -> Backend {
    match std::env::var("RUNBOOK_TEST_JOURNAL").as_deref() {
        Err(_) | Ok("" | "sqlite") => Backend::Sqlite,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("RUNBOOK_TEST_JOURNAL is `{other}`; use sqlite or postgres"),
    }
}

/// The server the PostgreSQL tests use (an admin connection to it).
pub(crate) fn admin_url() -> String {
    std::env::var("RUNBOOK_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database of its own for one test, dropped with it.
pub(crate) struct TestDb {
    name: String,
    /// Its journal URL.
    pub(crate) url: String,
}

fn admin() -> postgres::Client {
    let url = admin_url();
    postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "this test needs PostgreSQL and cannot reach it at {url}: {e}. \
             Start it (`bash .ci/run` does) or point RUNBOOK_TEST_PG at one."
        )
    })
}

impl TestDb {
    pub(crate) fn new() -> TestDb {
        let name = format!("runbook_t_{}", uuid::Uuid::new_v4().simple());
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = admin_url();
        let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
        let url = format!("{server}/{name}?sslmode=disable");
        TestDb { name, url }
    }

    /// A connection to it.
    pub(crate) fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// The journal of one rig.
pub(crate) enum TestJournal {
    /// `journal.db` in the rig's state dir.
    Sqlite,
    /// A database of its own.
    Postgres(TestDb),
}

impl TestJournal {
    pub(crate) fn new() -> TestJournal {
        match backend() {
            Backend::Sqlite => TestJournal::Sqlite,
            Backend::Postgres => TestJournal::Postgres(TestDb::new()),
        }
    }

    /// Points a runbook command at this journal.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        match self {
            TestJournal::Sqlite => {
                cmd.env_remove("RUNBOOK_JOURNAL");
            }
            TestJournal::Postgres(db) => {
                cmd.env("RUNBOOK_JOURNAL", &db.url);
            }
        }
    }

    /// The first column of every row of `sql` (one text parameter, `?1`),
    /// as text.
    pub(crate) fn texts(&self, state: &std::path::Path, sql: &str, arg: &str) -> Vec<String> {
        match self {
            TestJournal::Sqlite => {
                let conn = rusqlite::Connection::open(state.join("journal.db")).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.parameter_count();
                let params: Vec<&str> = std::iter::repeat_n(arg, n).collect();
                stmt.query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .unwrap()
                .map(|v| match v.unwrap() {
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
            }
            TestJournal::Postgres(db) => {
                let sql = sql.replace("?1", "$1");
                let mut client = db.client();
                let params: Vec<&(dyn postgres::types::ToSql + Sync)> = if sql.contains("$1") {
                    vec![&arg]
                } else {
                    vec![]
                };
                client
                    .query(&sql, &params)
                    .unwrap()
                    .iter()
                    .map(|r| {
                        r.try_get::<_, String>(0)
                            .or_else(|_| r.try_get::<_, i64>(0).map(|n| n.to_string()))
                            .unwrap()
                    })
                    .collect()
            }
        }
    }

    /// Runs a statement with no parameters.
    pub(crate) fn execute(&self, state: &std::path::Path, sql: &str) {
        match self {
            TestJournal::Sqlite => {
                let conn = rusqlite::Connection::open(state.join("journal.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            TestJournal::Postgres(db) => db.client().batch_execute(sql).unwrap(),
        }
    }
}
