//! One connection type over Postgres and SQLite, one r2d2 pool, embedded migrations.

pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use diesel::connection::SimpleConnection as _;
use diesel::migration::{Migration as _, MigrationSource};
use diesel::r2d2::R2D2Connection as _;
use diesel::{Connection as _, ConnectionError, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness as _};

use crate::config::{warn_if_loose, DatabaseUrl};

/// A connection to either backend; every query in the crate is written once against it.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub type Pool = r2d2::Pool<ConnectionManager>;

/// A pooled connection, and whether it has been seen to break.
///
/// The pool does not ping a connection at every checkout (a round trip per
/// request); instead a job that fails checks its connection once, and a
/// broken one is dropped by the pool rather than handed out again.
pub struct Tracked {
    conn: AnyConnection,
    broken: bool,
}

impl Tracked {
    /// After a failed job: is the connection still usable?
    fn check(&mut self) {
        if !self.broken && self.conn.ping().is_err() {
            self.broken = true;
        }
    }
}

impl std::ops::Deref for Tracked {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Tracked {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

/// Why a database job did not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection within the pool's timeout: the database is away or saturated.
    #[error("no database connection: {0}")]
    Checkout(#[from] r2d2::Error),
    /// The blocking thread pool is shutting down.
    #[error("the blocking thread pool is gone")]
    Blocking,
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// A revocation was committed, but not every instance acknowledged it in
    /// time (see `sessions::fence`): it must not be answered as done.
    #[error("the revocation was not acknowledged by every instance in time")]
    Unacknowledged,
}

/// Runs `job` with a pooled connection on actix's blocking threads: the one way
/// async code reaches the database. `E` is the caller's error type.
pub async fn run<T, E>(
    pool: &Pool,
    job: impl FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    blocking(move || run_here(&pool, job)).await
}

/// Runs `job` with a pooled connection on this thread (background threads and
/// [`run`]); a connection whose job failed is checked, and dropped if broken.
pub fn run_here<T, E>(
    pool: &Pool,
    job: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DbError>,
{
    run_once(pool, job).0
}

/// Like [`run`], for a job that may run again (reads, and writes that are
/// idempotent): when it fails on a connection that turns out broken (the
/// database restarted, the connections were killed), it runs again on another
/// one, as many times as the pool may hold connections, so a request does not
/// pay for the pool's stale connections.
pub async fn run_idempotent<T, E>(
    pool: &Pool,
    job: impl Fn(&mut AnyConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    blocking(move || {
        let mut tries = pool.max_size();
        loop {
            match run_once(&pool, &job) {
                (Err(_), true) if tries > 0 => tries -= 1,
                (result, _) => return result,
            }
        }
    })
    .await
}

/// `work` on actix's blocking threads, inside the request's span (what a job
/// logs belongs to the request that asked for it).
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let span = tracing::Span::current();
    actix_web::web::block(move || span.in_scope(work))
        .await
        .map_err(|_| E::from(DbError::Blocking))?
}

/// The job's result, and whether its connection was found broken.
fn run_once<T, E>(
    pool: &Pool,
    job: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> (Result<T, E>, bool)
where
    E: From<DbError>,
{
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(err) => return (Err(DbError::from(err).into()), false),
    };
    let result = job(&mut conn);
    if result.is_err() {
        conn.check();
    }
    let broken = conn.broken;
    (result, broken)
}

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Opens connections for the backend named by the URL's scheme.
///
/// Diesel's derived `establish` tries each backend in turn and drops the errors, so a
/// mistyped Postgres URL could silently become a SQLite file: this manager never guesses.
#[derive(Debug)]
pub struct ConnectionManager {
    url: DatabaseUrl,
    busy_timeout: Duration,
    /// Whether the first SQLite connection (which sees to the files) was made.
    opened: Mutex<bool>,
}

impl ConnectionManager {
    pub fn new(url: DatabaseUrl, busy_timeout: Duration) -> Self {
        Self {
            url,
            busy_timeout,
            opened: Mutex::new(false),
        }
    }
}

/// How long a SQLite statement waits for a lock held by another connection.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens one connection (SQLite: WAL, foreign keys, and `busy_timeout`; the
/// files made private, see [`open_first`]).
pub fn connect(url: &DatabaseUrl) -> Result<AnyConnection, ConnectionError> {
    open_first(url, DEFAULT_BUSY_TIMEOUT)
}

/// A process's first connection to a database. On SQLite, the files latchkey
/// creates are private (0600) whatever the umask: the database file is made
/// before SQLite opens it, and the `-wal` and `-shm` files that this first
/// connection creates are tightened after it. Existing looser files are the
/// operator's: they are left as they are, with a warning.
fn open_first(url: &DatabaseUrl, busy_timeout: Duration) -> Result<AnyConnection, ConnectionError> {
    let Some(file) = url.sqlite_file() else {
        return connect_with(url, busy_timeout);
    };
    let sidecars = ["-wal", "-shm"].map(|suffix| {
        let mut path = file.clone().into_os_string();
        path.push(suffix);
        PathBuf::from(path)
    });
    let existed = sidecars.each_ref().map(|path| path.exists());
    create_private(&file)
        .map_err(|e| ConnectionError::BadConnection(format!("{}: {e}", file.display())))?;
    let conn = connect_with(url, busy_timeout)?;
    for (path, existed) in sidecars.iter().zip(existed) {
        if existed || !path.exists() {
            warn_if_loose(path);
        } else if let Err(e) = make_private(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the file private");
        }
    }
    Ok(conn)
}

/// Creates `file` with mode 0600 unless it exists (then warns if it is looser).
fn create_private(file: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_loose(file);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

fn connect_with(
    url: &DatabaseUrl,
    busy_timeout: Duration,
) -> Result<AnyConnection, ConnectionError> {
    match url {
        DatabaseUrl::Postgres(url) => {
            let mut conn = PgConnection::establish(url)?;
            // Timestamps are bound as UTC values; keep server-side defaults in UTC too.
            conn.batch_execute("SET TIME ZONE 'UTC'")
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(AnyConnection::Postgresql(conn))
        }
        DatabaseUrl::Sqlite(path) => {
            let mut conn = SqliteConnection::establish(path)?;
            // busy_timeout first: switching to WAL itself may meet a lock.
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                busy_timeout.as_millis()
            ))
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(AnyConnection::Sqlite(conn))
        }
    }
}

impl ConnectionManager {
    fn open(&self) -> Result<AnyConnection, ConnectionError> {
        if self.url.is_postgres() {
            return connect_with(&self.url, self.busy_timeout);
        }
        // The pool opens connections from several threads: the first one
        // sees to the SQLite files while the others wait for it.
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        if *opened {
            drop(opened);
            return connect_with(&self.url, self.busy_timeout);
        }
        let conn = open_first(&self.url, self.busy_timeout)?;
        *opened = true;
        Ok(conn)
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = Tracked;
    type Error = ConnectionError;

    fn connect(&self) -> Result<Tracked, ConnectionError> {
        let conn = self.open()?;
        Ok(Tracked {
            conn,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Tracked) -> Result<(), ConnectionError> {
        conn.ping()
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, conn: &mut Tracked) -> bool {
        conn.broken || conn.is_broken()
    }
}

/// A pool whose checkout waits at most `timeout`, so an outage answers fast; a
/// locked SQLite file makes a statement wait no longer either.
///
/// Built without connecting: the server starts serving (and `/readyz` reports)
/// even if the database is briefly away, and recovers by itself when it returns.
/// `events` sees every checkout (how long it waited, whether it timed out).
pub fn build_pool(
    url: &DatabaseUrl,
    size: u32,
    timeout: Duration,
    events: Box<dyn r2d2::HandleEvent>,
) -> Pool {
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(size.min(2)))
        .connection_timeout(timeout)
        // No ping per checkout: a failed job checks its connection instead (see `Tracked`).
        .test_on_check_out(false)
        .error_handler(Box::new(LogErrors))
        .event_handler(events)
        .build_unchecked(ConnectionManager::new(url.clone(), timeout))
}

/// r2d2 logs through `log` by default; route connection errors to `tracing`.
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<ConnectionError> for LogErrors {
    fn handle_error(&self, error: ConnectionError) {
        tracing::warn!(%error, "database connection failed");
    }
}

/// Applies pending migrations; returns how many ran.
///
/// On Postgres an advisory lock serialises instances that start together.
pub fn run_migrations(conn: &mut AnyConnection) -> anyhow::Result<usize> {
    let applied = match conn {
        AnyConnection::Postgresql(pg) => {
            pg.batch_execute("SELECT pg_advisory_lock(7433920061)")?;
            let result = pg
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len());
            pg.batch_execute("SELECT pg_advisory_unlock(7433920061)")?;
            result
        }
        AnyConnection::Sqlite(lite) => lite
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.len()),
    };
    applied.map_err(|e| anyhow::anyhow!("migration failed: {e}"))
}

/// Whether migrations embedded in this binary have not been applied yet (all
/// of them, on a database never migrated). Only reads: diesel's own check
/// creates its bookkeeping table, and readiness probes and listings must not
/// write.
pub fn has_pending_migrations(conn: &mut AnyConnection) -> anyhow::Result<bool> {
    let (known, applied) = match conn {
        AnyConnection::Postgresql(pg) => (
            versions::<diesel::pg::Pg>(&POSTGRES_MIGRATIONS)?,
            applied_versions(
                pg,
                "SELECT count(*) AS n FROM pg_tables \
                 WHERE schemaname = current_schema() AND tablename = '__diesel_schema_migrations'",
            ),
        ),
        AnyConnection::Sqlite(lite) => (
            versions::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS)?,
            applied_versions(
                lite,
                "SELECT count(*) AS n FROM sqlite_master \
                 WHERE type = 'table' AND name = '__diesel_schema_migrations'",
            ),
        ),
    };
    let applied = applied.context("cannot read the applied migrations")?;
    Ok(known.iter().any(|version| !applied.contains(version)))
}

/// The versions of the migrations embedded for one backend.
fn versions<DB: diesel::backend::Backend>(
    migrations: &EmbeddedMigrations,
) -> anyhow::Result<Vec<String>>
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    let migrations = MigrationSource::<DB>::migrations(migrations)
        .map_err(|e| anyhow::anyhow!("cannot read the embedded migrations: {e}"))?;
    Ok(migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .collect())
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Applied {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// The versions recorded as applied; none when the bookkeeping table (found
/// by `table_exists`, a count) is missing.
fn applied_versions<C>(conn: &mut C, table_exists: &str) -> diesel::QueryResult<Vec<String>>
where
    C: diesel::connection::LoadConnection,
    for<'a> diesel::query_builder::SqlQuery:
        diesel::query_dsl::LoadQuery<'a, C, Count> + diesel::query_dsl::LoadQuery<'a, C, Applied>,
{
    use diesel::RunQueryDsl as _;
    if diesel::sql_query(table_exists).get_result::<Count>(conn)?.n == 0 {
        return Ok(Vec::new());
    }
    let applied = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load::<Applied>(conn)?;
    Ok(applied.into_iter().map(|row| row.version).collect())
}

/// Call first in a transaction that reads and then writes. On SQLite it takes
/// the database's write lock now: a transaction that reads first fails at
/// once ("database is locked") instead of waiting its turn when another
/// connection writes meanwhile. On Postgres, row locks do this: nothing to do.
pub fn write_first(conn: &mut AnyConnection) -> diesel::QueryResult<()> {
    use diesel::RunQueryDsl as _;
    if let AnyConnection::Sqlite(lite) = conn {
        diesel::sql_query("DELETE FROM session_events WHERE 0").execute(lite)?;
    }
    Ok(())
}

/// The database's clock, for times every instance compares (leases): on
/// Postgres the server's, so hosts with skewed clocks agree; on SQLite, whose
/// processes share one host, the host's.
pub fn clock(conn: &mut AnyConnection) -> diesel::QueryResult<chrono::NaiveDateTime> {
    use chrono::SubsecRound as _;
    use diesel::RunQueryDsl as _;
    match conn {
        AnyConnection::Postgresql(pg) => diesel::select(diesel::dsl::now)
            .get_result::<chrono::NaiveDateTime>(pg)
            .map(|t| t.trunc_subsecs(6)),
        AnyConnection::Sqlite(_) => Ok(now()),
    }
}

/// The current UTC time as the database stores it (microseconds, on both backends).
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{SubsecRound as _, Utc};
    Utc::now().naive_utc().trunc_subsecs(6)
}
