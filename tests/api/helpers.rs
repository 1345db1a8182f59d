//! `spawn_app(backend)`: the real server on a free port over a fresh database of
//! its own, migrated, with the seed's user; and a client with a cookie store.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use actix_web::dev::ServerHandle;
use diesel::connection::SimpleConnection as _;
use diesel::{Connection as _, PgConnection};
use latchkey::config::{DatabaseUrl, SecretKey, Settings};
use latchkey::db::{self, AnyConnection};
use latchkey::startup::Application;
use latchkey::users::{queries, NewUser, UserId};
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::pg;

pub const TEST_USER: &str = "test_user";
pub const TEST_PASSWORD: &str = "test_password";
/// Tests hash at bcrypt's lowest cost; the cost is a setting like any other.
pub const TEST_BCRYPT_COST: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database of this test's own, dropped (or deleted) when the test ends.
pub struct TestDb {
    pub url: DatabaseUrl,
    /// The Postgres database's name, and the URL that created it (to drop it).
    pg: Option<(String, String)>,
    /// Holds the SQLite file, and serves as the working directory of CLI runs.
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Postgres => Self::postgres_on(pg::admin_url()),
            Backend::Sqlite => Self {
                url: DatabaseUrl::Sqlite(dir.path().join("test.db").display().to_string()),
                pg: None,
                dir,
            },
        }
    }

    /// A new database on the Postgres server of `admin_url`.
    pub fn postgres_on(admin_url: &str) -> Self {
        let name = format!("latchkey_test_{}", hex::encode(rand::random::<[u8; 8]>()));
        let mut admin = PgConnection::establish(admin_url).expect("test Postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        Self {
            url: DatabaseUrl::Postgres(pg::with_database(admin_url, &name)),
            pg: Some((name, admin_url.to_owned())),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn url_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Postgres(url) => url.clone(),
            DatabaseUrl::Sqlite(path) => format!("sqlite://{path}"),
        }
    }

    pub fn connect(&self) -> AnyConnection {
        db::connect(&self.url).expect("connect to the test database")
    }

    /// Runs `latchkey ARGS` against this database, with `stdin` as its input.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        self.cli_with(args, stdin, &[])
    }

    /// Like [`TestDb::cli`], with more environment variables.
    pub fn cli_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let url = self.url_string();
        let mut all = vec![("DATABASE_URL", url.as_str())];
        all.extend_from_slice(env);
        run_cli(args, stdin, &all, self.dir.path())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((name, admin_url)) = &self.pg {
            if let Ok(mut admin) = PgConnection::establish(admin_url) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Whether `program` is installed, for a test that needs more than Rust,
/// PostgreSQL and Node. When it is not, the test is not run: see [`skip_unless`].
pub fn require(program: &str, apt: &str) -> bool {
    let found = find_program(program).is_some();
    skip_unless(found, program, &format!("apt-get install {apt}"))
}

/// Like [`require`], for a file that `how` makes (`npm ci`).
pub fn require_file(path: &Path, what: &str, how: &str) -> bool {
    skip_unless(path.is_file(), what, how)
}

/// `program` on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// `true` when `what` is there. When it is not, one line on stderr names the
/// test and how to enable it, and the caller returns early (the test passes,
/// so `cargo test` works on a newcomer's machine); with `LATCHKEY_TEST_ALL=1`
/// (CI) the line is a failure instead. `LATCHKEY_TEST_HIDE=nginx,chromedriver`
/// pretends those are missing, to try this out.
fn skip_unless(present: bool, what: &str, how: &str) -> bool {
    let hidden = std::env::var("LATCHKEY_TEST_HIDE")
        .is_ok_and(|names| names.split(',').any(|name| name.trim() == what));
    if present && !hidden {
        return true;
    }
    // libtest names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!("not run: {test} needs {what} ({how})");
    assert!(
        std::env::var("LATCHKEY_TEST_ALL").as_deref() != Ok("1"),
        "{line}"
    );
    // Straight to stderr: libtest swallows a passing test's eprintln!, and
    // this line is for the person who ran the tests. One write, one line.
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    false
}

/// Runs `start` (shell), then `cleanup` once this test process has exited,
/// however it exits, from a detached shell: how the throwaway Postgres
/// cluster and chromedriver never outlive a test run.
// The watchdog is meant to outlive this process: it is never waited for.
#[allow(clippy::zombie_processes)]
pub fn until_this_process_exits(start: &str, cleanup: &str) {
    let script = format!(
        "{start} while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}",
        pid = std::process::id(),
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a watchdog");
}

/// Sends SIGTERM to `child`, through the shell's own `kill` (procps may be absent).
pub fn sigterm(child: &std::process::Child) {
    Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .expect("sh");
}

/// The real binary with a clean environment: only `env` and what a shell needs.
pub fn latchkey(args: &[&str], env: &[(&str, &str)], cwd: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LATCHKEY_BCRYPT_COST", TEST_BCRYPT_COST.to_string())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(cwd);
    command
}

/// Runs the real binary (see [`latchkey`]) to the end, `stdin` as its input.
pub fn run_cli(args: &[&str], stdin: &str, env: &[(&str, &str)], cwd: &std::path::Path) -> Output {
    use std::io::Write as _;
    let mut child = latchkey(args, env, cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run latchkey");
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    // A command may well be done before reading its input (`user add` of a
    // name that is taken does not ask for the password).
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("latchkey output")
}

/// Settings for a test server: any free port (and one for metrics), plain-http
/// cookies, cheap hashing, a key of its own.
pub fn test_settings(url: &DatabaseUrl) -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("default settings");
    settings.database_url = url.clone();
    settings.addr = "127.0.0.1:0".parse().expect("address");
    settings.metrics_addr = Some("127.0.0.1:0".parse().expect("address"));
    settings.secret_key = Some(SecretKey::generate());
    settings.cookie_secure = false;
    settings.bcrypt_cost = TEST_BCRYPT_COST;
    settings.db_pool_size = 4;
    settings.http_workers = Some(1);
    settings
}

pub struct TestApp {
    pub address: String,
    /// The metrics listener's base URL (`None` when the test turned it off).
    pub metrics_address: Option<String>,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub server: ServerHandle,
    pub test_user_id: UserId,
    pub db: TestDb,
    /// Other instances started by [`TestApp::start_peer`], stopped with this one
    /// (a forgotten instance would poll its dropped database until the end).
    peers: std::sync::Mutex<Vec<ServerHandle>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with the settings adjusted first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(TestDb::new(backend), adjust).await
}

/// The app over a given database.
pub async fn spawn_app_on(db: TestDb, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(&db.url);
    adjust(&mut settings);
    let running = start_server(settings.clone()).await;
    let test_user_id = add_user(&db, TEST_USER, TEST_PASSWORD, TEST_BCRYPT_COST);
    TestApp {
        address: running.address,
        metrics_address: running.metrics_address,
        client: new_client(),
        settings,
        server: running.handle,
        test_user_id,
        db,
        peers: Default::default(),
    }
}

impl Drop for TestApp {
    /// Stops the server, so its background thread and pool go with it.
    fn drop(&mut self) {
        let mut servers =
            std::mem::take(&mut *self.peers.lock().unwrap_or_else(|e| e.into_inner()));
        servers.push(self.server.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                for server in servers {
                    server.stop(false).await;
                }
            });
        });
    }
}

/// A server started by [`start_server`].
pub struct Running {
    pub address: String,
    /// The metrics listener's base URL, when the settings asked for one.
    pub metrics_address: Option<String>,
    pub handle: ServerHandle,
}

impl Running {
    /// What its metrics listener answers now.
    pub async fn metrics(&self) -> String {
        scrape(self.metrics_address.as_deref()).await
    }
}

/// Builds and starts a server (and its metrics listener, if any).
pub async fn start_server(settings: Settings) -> Running {
    let app = Application::build(settings).await.expect("build the app");
    let running = Running {
        address: format!("http://127.0.0.1:{}", app.port()),
        metrics_address: app
            .metrics_port()
            .map(|port| format!("http://127.0.0.1:{port}")),
        handle: app.handle(),
    };
    tokio::spawn(app.run_until_stopped());
    running
}

/// `GET /metrics` of a metrics listener, as text.
async fn scrape(metrics_address: Option<&str>) -> String {
    let address = metrics_address.expect("a metrics listener");
    let response = reqwest::get(format!("{address}/metrics"))
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics text")
}

pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Inserts a user directly, with a hash of the given cost.
pub fn add_user(db: &TestDb, username: &str, password: &str, cost: u32) -> UserId {
    let hash = bcrypt::hash(password, cost).expect("hash");
    let new_user = NewUser {
        username,
        password_hash: &hash,
    };
    queries::insert(&mut db.connect(), &new_user)
        .expect("insert user")
        .id
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Another instance of the server over the same database, with the same key.
    pub async fn start_peer(&self) -> Running {
        self.start_peer_with(|_| {}).await
    }

    /// Like [`TestApp::start_peer`], with the peer's settings adjusted first.
    pub async fn start_peer_with(&self, adjust: impl FnOnce(&mut Settings)) -> Running {
        let mut settings = self.settings.clone();
        adjust(&mut settings);
        let peer = start_server(settings).await;
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(peer.handle.clone());
        peer
    }

    /// What this instance's metrics listener answers now.
    pub async fn metrics(&self) -> String {
        scrape(self.metrics_address.as_deref()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/login",
            &json!({ "username": username, "password": password }),
        )
        .await
    }

    pub async fn login_test_user(&self) -> Response {
        let response = self.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        response
    }

    pub async fn logout(&self) -> Response {
        self.client
            .post(self.url("/logout"))
            .send()
            .await
            .expect("request")
    }

    /// A page, as a browser asks for it.
    pub async fn get_page(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("accept", HTML_ACCEPT)
            .send()
            .await
            .expect("request")
    }

    /// The CSRF token of the login form (and its cookie, kept by the client).
    pub async fn csrf_token(&self) -> String {
        let page = self.get_page("/login").await.text().await.expect("page");
        hidden_field(&page, "csrf_token").expect("a csrf_token field")
    }

    /// Posts a form, as a browser does.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(path))
            .header("accept", HTML_ACCEPT)
            .form(fields)
            .send()
            .await
            .expect("request")
    }

    /// A request from another client that carries only the given cookie.
    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> Response {
        reqwest::Client::new()
            .get(self.url(path))
            .header(COOKIE, cookie)
            .send()
            .await
            .expect("request")
    }

    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        self.db.cli(args, stdin)
    }

    pub fn session_rows(&self) -> i64 {
        use diesel::prelude::*;
        use latchkey::db::schema::sessions;
        sessions::table
            .count()
            .get_result(&mut self.db.connect())
            .expect("count sessions")
    }
}

/// The `name=value` of the session cookie this response sets, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    set_cookie_line(headers).map(|line| line.split(';').next().unwrap_or_default().to_owned())
}

/// The whole `Set-Cookie` line of the session cookie.
pub fn set_cookie_line(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("latchkey_session=") || v.starts_with("__Host-latchkey_session="))
        .map(str::to_owned)
}

/// What Chromium sends as `Accept` for a page.
pub const HTML_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

/// The value of `<input type="hidden" name="NAME" value="...">` in a page.
pub fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

pub fn location(response: &Response) -> &str {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Polls `url` (with `cookie`) until it answers `expected`, for at most `within`;
/// returns how long that took. For changes other instances learn of within a second.
pub async fn eventually_status(
    url: &str,
    cookie: &str,
    expected: StatusCode,
    within: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let status = reqwest::Client::new()
            .get(url)
            .header(COOKIE, cookie)
            .send()
            .await
            .expect("request")
            .status();
        if status == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{url} still answers {status} after {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn json_body(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

pub async fn assert_json(response: Response, status: StatusCode, body: Value) {
    assert_eq!(response.status(), status);
    assert_eq!(json_body(response).await, body);
}

/// A CLI run's stdout, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CLI run's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure is one line on stderr and a non-zero exit.
pub fn assert_fails_with(out: &Output, needle: &str) {
    assert!(!out.status.success(), "{}", output_text(out));
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

/// `POST /login` (JSON) to the server at `address`, from `client`.
pub async fn post_login(
    client: &reqwest::Client,
    address: &str,
    username: &str,
    password: &str,
) -> Response {
    client
        .post(format!("{address}/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("request")
}

/// A stdout/stderr pair, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
