//! The PostgreSQL backend of the journal: the journal URL, the connection
//! (TLS through rustls), the schema and its migrations, the writer's
//! transactions and the reader.
//!
//! The driver is the synchronous `postgres` crate (rust-postgres, the
//! client `tokio-postgres` wraps): the journal writes from one dedicated
//! thread that commits whatever is queued in one transaction (group commit),
//! and reads from another, so a blocking client fits with no async plumbing
//! and keeps the engine's journal calls the same on both backends. Each
//! thread owns its connection (a `postgres::Client` runs its own small
//! runtime, so it is never used, nor dropped, on a thread of the engine's).
//!
//! # The password
//!
//! It is taken from the URL, else `PGPASSWORD`, else `~/.pgpass` (or
//! `PGPASSFILE`), and kept only in the connection settings: every text this
//! module shows (errors, the journal's location) is built from the other
//! parts of the URL ([`PgTarget::shown`]).
//!
//! # TLS
//!
//! `sslmode` is honoured as libpq does: `disable` never uses TLS; `prefer`
//! (the default) uses it when the server offers it; `require` refuses a
//! server without it; neither checks the server's certificate (they
//! protect against eavesdropping, not against someone posing as the
//! server). `verify-ca` also checks that the certificate was issued by a
//! trusted authority, and `verify-full` that it names the host too: the
//! authorities are the system's, or those of the PEM file `sslrootcert`.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres::config::SslMode;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls, Statement};

use super::Val;

/// A parsed `postgres://` journal URL.
#[derive(Clone)]
pub(crate) struct PgTarget {
    config: Config,
    shown: String,
    verify: Verify,
    root_cert: Option<PathBuf>,
}

/// What is checked of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    /// Nothing (`prefer`, `require`).
    Nothing,
    /// Its issuer (`verify-ca`).
    Issuer,
    /// Its issuer and the host name (`verify-full`).
    Full,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Query parameters a journal URL may carry, besides `sslmode`.
const KNOWN_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
];

impl PgTarget {
    /// Parses `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...]`.
    /// Errors never repeat the URL (it may hold a password).
    pub(crate) fn parse(text: &str) -> Result<PgTarget, String> {
        let url = url::Url::parse(text)
            .map_err(|e| format!("the journal URL is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "the journal URL's scheme is `{}`; use `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`",
                url.scheme()
            ));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "the journal URL has an invalid percent-encoding".to_owned())
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the journal URL names no host (postgres://USER@HOST:PORT/DB)")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(5432);
        let user = decode(url.username())?;
        if user.is_empty() {
            return Err("the journal URL names no user (postgres://USER@HOST:PORT/DB)".to_owned());
        }
        let db = decode(url.path().trim_start_matches('/'))?;
        if db.is_empty() || db.contains('/') {
            return Err(
                "the journal URL names no database (postgres://USER@HOST:PORT/DB)".to_owned(),
            );
        }
        let mut config = Config::new();
        config
            .host(&host)
            .port(port)
            .user(&user)
            .dbname(&db)
            .application_name("runbook")
            .connect_timeout(Duration::from_secs(10))
            // A server (or a network path) that vanished without closing
            // the connection is noticed, as a connection error, rather
            // than waited for: data unacknowledged for 15 s, or an idle
            // connection unanswered for 10 s + 3 x 2 s.
            .tcp_user_timeout(Duration::from_secs(15))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .ssl_mode(SslMode::Prefer);
        let mut mode = None;
        let mut verify = Verify::Nothing;
        let mut root_cert = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => {
                    let m = match value.as_ref() {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => {
                            verify = Verify::Issuer;
                            SslMode::Require
                        }
                        "verify-full" => {
                            verify = Verify::Full;
                            SslMode::Require
                        }
                        other => {
                            return Err(format!(
                                "the journal URL's sslmode is `{other}`; use disable, prefer, require, verify-ca or verify-full"
                            ));
                        }
                    };
                    config.ssl_mode(m);
                    mode = Some(value.into_owned());
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                "connect_timeout" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        format!("the journal URL's connect_timeout is `{value}`, not a number of seconds")
                    })?;
                    config.connect_timeout(Duration::from_secs(secs.max(1)));
                }
                "application_name" => {
                    config.application_name(&value);
                }
                other => {
                    return Err(format!(
                        "the journal URL has an unknown parameter `{other}` (known: {})",
                        KNOWN_PARAMS.join(", ")
                    ));
                }
            }
        }
        let host_shown = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let mut shown = format!("postgres://{user}@{host_shown}:{port}/{db}");
        if let Some(mode) = mode {
            shown.push_str(&format!("?sslmode={mode}"));
        }
        match decode(url.password().unwrap_or_default())? {
            p if !p.is_empty() => {
                config.password(p);
            }
            _ => {
                if let Some(p) = password_from_env(&host, port, &db, &user) {
                    config.password(p);
                }
            }
        }
        Ok(PgTarget {
            config,
            shown,
            verify,
            root_cert,
        })
    }

    /// The URL without its password, for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Connects, giving up after `limit` at most (or the URL's
    /// `connect_timeout`, when shorter).
    pub(crate) fn connect_within(&self, limit: Duration) -> Result<Client, postgres::Error> {
        let mut target = self.clone();
        let configured = target
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(limit);
        target
            .config
            .connect_timeout(configured.min(limit).max(Duration::from_millis(100)));
        target.connect()
    }

    /// Connects (blocking; never on a thread of an async runtime).
    pub(crate) fn connect(&self) -> Result<Client, postgres::Error> {
        if self.config.get_ssl_mode() == SslMode::Disable {
            return self.config.connect(NoTls);
        }
        match self.tls() {
            Ok(tls) => self
                .config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)),
            // No way to verify (no trust roots): only a server without TLS
            // can be reached, and only when TLS is not required.
            Err(e) => {
                tracing::warn!("TLS to the journal is not available: {e}");
                self.config.connect(NoTls)
            }
        }
    }

    /// The TLS settings of this `sslmode`.
    fn tls(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (self.verify, &self.root_cert) {
            (Verify::Nothing, _) => Arc::new(AnyCertificate(Arc::clone(&provider))),
            (verify, Some(file)) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject as _;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(file)
                    .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?
                {
                    let cert = cert
                        .map_err(|e| format!("cannot read sslrootcert {}: {e}", file.display()))?;
                    roots.add(cert).map_err(|e| e.to_string())?;
                }
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| e.to_string())?;
                issuer_only(verify, webpki)
            }
            (verify, None) => issuer_only(
                verify,
                Arc::new(
                    rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
                        .map_err(|e| e.to_string())?,
                ),
            ),
        };
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }
}

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// `verify-ca` checks the issuer, not the name: the verifier's answer
/// without its name check.
fn issuer_only(verify: Verify, full: Arc<dyn ServerCertVerifier>) -> Arc<dyn ServerCertVerifier> {
    if verify == Verify::Issuer {
        Arc::new(IssuerOnly(full))
    } else {
        full
    }
}

/// `sslmode=prefer|require`: the handshake is checked, the certificate is not.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: a full verifier's answer, but for the host name.
#[derive(Debug)]
struct IssuerOnly(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for IssuerOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `PGPASSWORD`, else the first matching line of `PGPASSFILE` or
/// `~/.pgpass` (`host:port:db:user:password`, `*` matches anything, `\`
/// escapes `:` and `\`).
fn password_from_env(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    if let Some(p) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
        return Some(p);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let port = port.to_string();
    let wanted = [host, port.as_str(), db, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = pgpass_fields(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields
                .iter()
                .zip(wanted)
                .all(|(f, w)| f == "*" || f == w || (w == "127.0.0.1" && f == "localhost"));
            matches.then(|| fields[4].clone())
        })
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

/// Version 1, in PostgreSQL's dialect: the same tables and columns as the
/// SQLite journal's; `rowid` columns keep insertion order as SQLite's
/// implicit ones do. Approval rows are append-only in the database itself.
const V1: &str = "
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    digest TEXT NOT NULL,
    plan_json TEXT NOT NULL,
    options_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE approvals (
    rowid BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_id TEXT,
    approved_by TEXT NOT NULL,
    method TEXT NOT NULL,
    digest TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX approvals_run ON approvals (run_id);
CREATE FUNCTION runbook_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal table % is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER approvals_append_only BEFORE UPDATE OR DELETE ON approvals
    FOR EACH ROW EXECUTE FUNCTION runbook_append_only();
CREATE TABLE steps (
    rowid BIGSERIAL,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    items BIGINT,
    detail TEXT,
    started_at TEXT,
    finished_at TEXT,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE units (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    item BIGINT NOT NULL,
    item_json TEXT,
    status TEXT NOT NULL,
    output_json TEXT,
    error TEXT,
    started_at TEXT,
    finished_at TEXT,
    PRIMARY KEY (run_id, step_id, item)
);
CREATE TABLE attempts (
    rowid BIGSERIAL,
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    item BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    risk TEXT NOT NULL,
    request_json TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    error_class TEXT,
    error_code TEXT,
    error_message TEXT,
    request_id TEXT,
    http_status BIGINT,
    response_json TEXT
);
CREATE INDEX attempts_unit ON attempts (run_id, step_id, item);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    event_json TEXT NOT NULL
);
CREATE INDEX events_run ON events (run_id);
CREATE TABLE worlds (
    run_id TEXT PRIMARY KEY,
    world_json TEXT NOT NULL,
    at TEXT NOT NULL
);
";

/// `MIGRATIONS[i]` takes a PostgreSQL journal from version `i` to `i + 1`;
/// versions count alike on both backends (see the journal's module doc).
pub(crate) const MIGRATIONS: &[&str] =
    &[V1, V2, V3, super::locks::PG_V4, super::approvals::PG_V5, V6];

/// Version 6 (see the SQLite one): where a run waits for an approval.
const V6: &str = "
ALTER TABLE runs ADD COLUMN waiting_gate TEXT;
ALTER TABLE runs ADD COLUMN waiting_since TEXT;
ALTER TABLE runs ADD COLUMN waiting_until TEXT;
";

/// Version 3 (see the SQLite one): cancel requests.
const V3: &str = "ALTER TABLE runs ADD COLUMN cancel_requested TEXT;";

/// Version 2 (see the SQLite one): holder, target and liveness of runs.
/// Approvals are append-only since version 1 here.
const V2: &str = "
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN operator TEXT;
ALTER TABLE runs ADD COLUMN target TEXT;
ALTER TABLE runs ADD COLUMN holder TEXT;
ALTER TABLE runs ADD COLUMN heartbeat_ms BIGINT;
ALTER TABLE runs ADD COLUMN lease_ms BIGINT;
CREATE INDEX runs_created ON runs (created_at);
";

/// Key of the advisory lock that serializes migrations across processes.
const MIGRATION_LOCK: i64 = 0x7275_6e62_6f6f_6b01;

/// Why the schema could not be brought up to date.
pub(crate) enum MigrateError {
    /// The database failed.
    Db(postgres::Error),
    /// Written by a newer binary.
    TooNew(i64),
}

/// Brings the schema to `MIGRATIONS.len()` in one transaction (two
/// processes opening a new journal at once migrate it once), or refuses a
/// newer one untouched.
pub(crate) fn migrate(client: &mut Client) -> Result<(), MigrateError> {
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let mut tx = client.transaction().map_err(MigrateError::Db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(MigrateError::Db)?;
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_version')",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .map_err(MigrateError::Db)?;
    let found: i64 = if exists {
        tx.query_one("SELECT MAX(version) FROM schema_version", &[])
            .and_then(|r| r.try_get::<_, Option<i64>>(0))
            .map_err(MigrateError::Db)?
            .unwrap_or_default()
    } else {
        tx.batch_execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
            .map_err(MigrateError::Db)?;
        0
    };
    if found > supported {
        return Err(MigrateError::TooNew(found));
    }
    if found == supported {
        return tx.commit().map_err(MigrateError::Db);
    }
    for step in &MIGRATIONS[usize::try_from(found).unwrap_or_default()..] {
        tx.batch_execute(step).map_err(MigrateError::Db)?;
    }
    tx.execute("DELETE FROM schema_version", &[])
        .map_err(MigrateError::Db)?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&supported],
    )
    .map_err(MigrateError::Db)?;
    tx.commit().map_err(MigrateError::Db)
}

/// Rewrites the journal's SQLite-style `?N` placeholders as `$N`.
pub(super) fn dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A connection with its prepared statements.
pub(crate) struct Session {
    client: Client,
    statements: HashMap<String, Statement>,
    /// The server process serving it (pid, start): after a cut, that
    /// process may still hold the transaction the cut interrupted.
    backend: Option<(i32, String)>,
}

/// Why a commit failed.
pub(crate) enum Failure {
    /// Refused (a fenced write changed no row, or the database refused a
    /// statement): not retried.
    Refused(String),
    /// The connection failed ([`is_connection`]). `xid` is the
    /// transaction's id, when it had one: whether it committed (the cut may
    /// have come while `COMMIT` was on its way) is asked on reconnect.
    Lost { xid: Option<i64>, cause: String },
}

/// Whether `e` is the connection failing (the server closed it or went
/// away, the network failed, the server is shutting down or starting up,
/// it has no connection slot free, a failover left it read-only) rather
/// than the database refusing a statement: the former is worth a
/// reconnect.
pub(crate) fn is_connection(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(code);
    }
    let text = e.to_string();
    [
        "error communicating with the server",
        "error connecting to server",
        "timeout waiting for server",
        "connection closed",
    ]
    .iter()
    .any(|p| text.starts_with(p))
}

impl Session {
    /// Connects (within `within`) and learns which server process serves
    /// the connection.
    pub(crate) fn open(target: &PgTarget, within: Duration) -> Result<Session, postgres::Error> {
        let mut client = target.connect_within(within)?;
        let backend = client
            .query_opt(
                "SELECT pg_backend_pid(), backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                &[],
            )?
            .map(|r| r.try_get(0).and_then(|pid| Ok((pid, r.try_get(1)?))))
            .transpose()?;
        Ok(Session {
            client,
            statements: HashMap::new(),
            backend,
        })
    }

    pub(crate) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The server process serving it (pid, start).
    pub(crate) fn backend(self) -> Option<(i32, String)> {
        self.backend
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(&dialect(sql))?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    /// Runs `writes` in one transaction. Without `durable`, the commit
    /// does not wait for the server's WAL flush (`synchronous_commit =
    /// off`): it survives a crash of this process, not of the server, as
    /// SQLite's `synchronous = NORMAL` does.
    /// `fence(fenced, rows changed)` refuses a write (and so the commit).
    /// With `xid`, the transaction's id is learned (see [`Failure::Lost`]):
    /// a round trip of its own for a durable commit, none for the others.
    pub(crate) fn commit(
        &mut self,
        writes: &[(&str, &[Val], bool)],
        durable: bool,
        xid: bool,
        fence: &dyn Fn(bool, u64) -> Result<(), String>,
    ) -> Result<(), Failure> {
        let fail = |xid: Option<i64>| {
            move |e: postgres::Error| {
                if is_connection(&e) {
                    Failure::Lost {
                        xid,
                        cause: e.to_string(),
                    }
                } else {
                    Failure::Refused(e.to_string())
                }
            }
        };
        let mut prepared = Vec::with_capacity(writes.len());
        for (sql, args, fenced) in writes {
            prepared.push((self.statement(sql).map_err(fail(None))?, *args, *fenced));
        }
        let mut tx = self.client.transaction().map_err(fail(None))?;
        // The transaction's id, to learn after a cut whether it committed;
        // in the same round trip, a commit that need not wait for the WAL
        // flush says so.
        let xid = match (durable, xid) {
            (true, false) => None,
            (true, true) => Some(tx.query_one("SELECT txid_current()", &[])),
            (false, _) => Some(tx.query_one(
                "SELECT txid_current(), set_config('synchronous_commit', 'off', true)",
                &[],
            )),
        }
        .map(|r| r.and_then(|r| r.try_get::<_, i64>(0)))
        .transpose()
        .map_err(fail(None))?;
        for (stmt, args, fenced) in prepared {
            let params: Vec<&(dyn ToSql + Sync)> =
                args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let changed = tx.execute(&stmt, &params).map_err(fail(xid))?;
            fence(fenced, changed).map_err(Failure::Refused)?;
        }
        tx.commit().map_err(fail(xid))
    }

    /// Runs a query and returns every row as values.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        args: &[Val],
    ) -> Result<Vec<Vec<Val>>, postgres::Error> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(&stmt, &params)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut vals = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let v = match *col.type_() {
                    Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Val::Int),
                    Type::INT4 => row
                        .try_get::<_, Option<i32>>(i)?
                        .map(|n| Val::Int(i64::from(n))),
                    Type::INT2 => row
                        .try_get::<_, Option<i16>>(i)?
                        .map(|n| Val::Int(i64::from(n))),
                    Type::BOOL => row
                        .try_get::<_, Option<bool>>(i)?
                        .map(|b| Val::Int(i64::from(b))),
                    _ => row.try_get::<_, Option<String>>(i)?.map(Val::Text),
                };
                vals.push(v.unwrap_or(Val::Null));
            }
            out.push(vals);
        }
        Ok(out)
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(n) => match *ty {
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT8 => n.to_sql(ty, out),
                _ => n.to_string().to_sql(&Type::TEXT, out),
            },
            Val::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_and_nothing_else() {
        assert_eq!(
            dialect("UPDATE t SET a = ?2 WHERE k = ?1 AND b = '?x'"),
            "UPDATE t SET a = $2 WHERE k = $1 AND b = '?x'"
        );
    }

    #[test]
    fn the_password_is_kept_out_of_every_shown_text() {
        let t = PgTarget::parse("postgres://me:s3cr%3At@db.example:6543/journal?sslmode=require")
            .unwrap();
        assert_eq!(
            t.shown(),
            "postgres://me@db.example:6543/journal?sslmode=require"
        );
        assert_eq!(format!("{t:?}"), t.shown());
        assert_eq!(t.config.get_password(), Some(&b"s3cr:t"[..]));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        for bad in [
            "postgres://me:pw@h/db?sslmode=sometimes",
            "postgres://me:pw@h/db?foo=1",
            "postgres://:pw@h/db",
            "postgres://me:pw@h/",
            "mysql://me:pw@h/db",
        ] {
            let e = PgTarget::parse(bad).unwrap_err();
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        assert_eq!(
            pgpass_fields(r"h:5432:*:u:a\:b\\c"),
            ["h", "5432", "*", "u", r"a:b\c"]
        );
    }
}
