//! Secret keys and the files latchkey keeps: where a key may be generated,
//! key files, the modes of the files latchkey creates, and key rotation.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use latchkey::config::SecretKey;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::*;

/// `latchkey serve` with only `env` (and what a shell needs), not waited for.
fn serve(env: &[(&str, &str)], cwd: &Path) -> Child {
    latchkey(&["serve"], env, cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run latchkey")
}

/// Asserts that `latchkey serve` refuses to start, with one line naming `var`;
/// returns that line. A server that starts after all is killed.
fn assert_refused(env: &[(&str, &str)], cwd: &Path, var: &str) -> String {
    let mut child = serve(env, cwd);
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("latchkey serve started instead of refusing ({var})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out: Output = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(var), "{var} not in {err:?}");
    err
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Nothing created beside the database, and a Postgres database not migrated.
fn assert_untouched(db: &TestDb) {
    assert_eq!(files_in(db.dir.path()), Vec::<String>::new());
    if db.url.is_postgres() {
        let migrated = db
            .connect()
            .batch_execute("SELECT 1 FROM __diesel_schema_migrations");
        assert!(migrated.is_err(), "the database was migrated");
    }
}

both_backends! {
    async fn without_a_key_only_sqlite_on_loopback_may_start(backend: Backend) {
        let db = TestDb::new(backend);
        // Postgres anywhere, SQLite off loopback: instances must share a key.
        let addr = match backend {
            Backend::Postgres => "127.0.0.1:0",
            Backend::Sqlite => "0.0.0.0:0",
        };

        let line = assert_refused(
            &[("DATABASE_URL", &db.url_string()), ("LATCHKEY_ADDR", addr)],
            db.dir.path(),
            "LATCHKEY_SECRET_KEY",
        );

        assert!(line.contains("LATCHKEY_SECRET_KEY:"), "{line}");
        assert_untouched(&db);
        // Commands that sign nothing need no key.
        assert!(db.cli(&["migrate"], "").status.success());
        assert!(db.cli(&["user", "list"], "").status.success());
        assert!(db.cli(&["audit"], "").status.success());
    }

    async fn a_key_file_is_used_only_when_private(backend: Backend) {
        let db = TestDb::new(backend);
        let keys = tempfile::tempdir().unwrap();
        let key_file = keys.path().join("secret");
        std::fs::write(&key_file, "cd".repeat(64)).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let key_path = key_file.display().to_string();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let env = [
            ("DATABASE_URL", db.url_string()),
            ("LATCHKEY_ADDR", addr),
            ("LATCHKEY_COOKIE_SECURE", "false".to_owned()),
            ("LATCHKEY_SECRET_KEY_FILE", key_path),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

        let loose = assert_refused(&env, db.dir.path(), "LATCHKEY_SECRET_KEY_FILE");
        let mut both = env.clone();
        let key = "cd".repeat(64);
        both.push(("LATCHKEY_SECRET_KEY", &key));
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let twice = assert_refused(&both, db.dir.path(), "LATCHKEY_SECRET_KEY_FILE");

        assert!(loose.contains("by group or others"), "{loose}");
        assert!(twice.contains("not both"), "{twice}");
        assert_untouched(&db);

        // Private, it is the key (on Postgres none would be generated).
        let mut server = serve(&env, db.dir.path());
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{base}/readyz")).await.map(|r| r.status()).ok() != Some(StatusCode::OK) {
            if started.elapsed() > Duration::from_secs(20) || server.try_wait().unwrap().is_some() {
                let _ = server.kill();
                panic!("did not start: {}", output_text(&server.wait_with_output().unwrap()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        add_user(&db, TEST_USER, TEST_PASSWORD, TEST_BCRYPT_COST);
        let login = new_client()
            .post(format!("{base}/login"))
            .json(&serde_json::json!({"username": TEST_USER, "password": TEST_PASSWORD}))
            .send()
            .await
            .unwrap();
        let _ = server.kill();
        let _ = server.wait();

        assert_eq!(login.status(), StatusCode::OK);
        assert!(!db.dir.path().join("latchkey.key").exists(), "no key was generated");
    }
}

const SESSION: &str = "latchkey_session";
const DEVICE: &str = "latchkey_device";

/// The `Set-Cookie` line of the cookie `name` in `response`.
fn set_cookie(response: &Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.starts_with(&prefix))
        .map(str::to_owned)
}

/// `name=value` of a `Set-Cookie` line.
fn pair(line: &str) -> &str {
    line.split_once(';').map_or(line, |(pair, _)| pair)
}

/// The attributes of a `Set-Cookie` line (all but `name=value`).
fn attributes(line: &str) -> &str {
    line.split_once(';').map_or("", |(_, rest)| rest)
}

/// `GET address/path` from a client that sends only `cookies`.
async fn get_with(address: &str, path: &str, cookies: &[&str]) -> Response {
    reqwest::Client::new()
        .get(format!("{address}{path}"))
        .header(COOKIE, cookies.join("; "))
        .send()
        .await
        .expect("request")
}

/// A JSON login at `address` from the client at `ip` (behind the trusted
/// proxy), with only `cookies`.
async fn login_with(address: &str, cookies: &[&str], password: &str, ip: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{address}/login"))
        .header(COOKIE, cookies.join("; "))
        .header("x-forwarded-for", ip)
        .json(&json!({"username": TEST_USER, "password": password}))
        .send()
        .await
        .expect("request")
        .status()
}

/// Another instance over `app`'s database: key `key`, and `previous` before it.
async fn instance(app: &TestApp, key: &SecretKey, previous: Option<&SecretKey>) -> String {
    app.start_peer_with(|s| {
        s.secret_key = Some(key.clone());
        s.secret_key_previous = previous.cloned();
    })
    .await
    .address
}

both_backends! {
    async fn a_session_of_the_previous_key_is_admitted_and_re_signed_under_the_new_one(backend: Backend) {
        let app = spawn_app(backend).await;
        let key_a = app.settings.secret_key.clone().unwrap();
        let (key_b, key_c) = (SecretKey::generate(), SecretKey::generate());
        let login = app.login_test_user().await;
        let old = set_cookie(&login, SESSION).expect("a session cookie");
        // The rotation: B signs, A only verifies. Then B alone.
        let rotating = instance(&app, &key_b, Some(&key_a)).await;
        let b_only = instance(&app, &key_b, None).await;
        // A live session, but signed by a key neither of them knows.
        let elsewhere = instance(&app, &key_c, None).await;
        let foreign = post_login(&new_client(), &elsewhere, TEST_USER, TEST_PASSWORD).await;
        let foreign_cookies = [SESSION, DEVICE].map(|name| set_cookie(&foreign, name).unwrap());

        let admitted = get_with(&rotating, "/protected", &[pair(&old)]).await;

        assert_eq!(admitted.status(), StatusCode::OK);
        let renewed = set_cookie(&admitted, SESSION).expect("the cookie re-issued");
        assert_ne!(pair(&renewed), pair(&old), "signed under the new key");
        assert_eq!(attributes(&renewed), attributes(&old), "as the session middleware sets it");
        assert!(!renewed.contains("Max-Age"), "a plain session keeps a session cookie: {renewed}");
        assert_json(
            admitted,
            StatusCode::OK,
            json!({"message": format!("Hello, {TEST_USER}! This is a protected route.")}),
        )
        .await;
        // Once re-issued, the cookie needs no previous key; the old one does.
        assert_eq!(get_with(&b_only, "/protected", &[pair(&renewed)]).await.status(), StatusCode::OK);
        assert_eq!(get_with(&b_only, "/protected", &[pair(&old)]).await.status(), StatusCode::UNAUTHORIZED);
        // Neither key: ignored as before, and nothing re-issued.
        let refused = get_with(&rotating, "/protected", &foreign_cookies.each_ref().map(|l| pair(l))).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(set_cookie(&refused, SESSION), None);
        assert_eq!(set_cookie(&refused, DEVICE), None);
    }

    async fn a_browser_keeps_its_remembered_session_device_and_notice_across_a_rotation(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.login_max_failures_per_account = 3;
        })
        .await;
        let key_a = app.settings.secret_key.clone().unwrap();
        let key_b = SecretKey::generate();
        // Under A: a remembered login from the form, and a notice for another browser.
        let form = app.get_page("/login").await;
        let csrf = set_cookie(&form, "latchkey_csrf").expect("a CSRF cookie");
        let token = hidden_field(&form.text().await.unwrap(), "csrf_token").unwrap();
        let login = app
            .post_form("/login", &[
                ("csrf_token", &token),
                ("username", TEST_USER),
                ("password", TEST_PASSWORD),
                ("remember", "on"),
            ])
            .await;
        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        let session = set_cookie(&login, SESSION).expect("a session cookie");
        let device = set_cookie(&login, DEVICE).expect("a device cookie");
        let lifetime = app.settings.remember_me_lifetime.as_secs();
        assert!(session.contains(&format!("Max-Age={lifetime}")), "{session}");
        let notice = notice_for_another_browser(&app).await;
        let rotating = instance(&app, &key_b, Some(&key_a)).await;
        let b_only = instance(&app, &key_b, None).await;

        let admitted = get_with(&rotating, "/protected", &[pair(&session), pair(&device)]).await;

        assert_eq!(admitted.status(), StatusCode::OK);
        let renewed = set_cookie(&admitted, SESSION).expect("the session cookie re-issued");
        let new_device = set_cookie(&admitted, DEVICE).expect("the device cookie re-issued");
        assert_ne!(pair(&renewed), pair(&session));
        assert_eq!(attributes(&renewed), attributes(&session), "still remembered");
        assert_ne!(pair(&new_device), pair(&device));
        assert_eq!(attributes(&new_device), attributes(&device));
        assert_eq!(get_with(&b_only, "/protected", &[pair(&renewed)]).await.status(), StatusCode::OK);

        // The device cookie still lifts the account ceiling for its holder.
        for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
            assert_eq!(login_with(&rotating, &[], "guess", ip).await, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(login_with(&rotating, &[], TEST_PASSWORD, "203.0.113.4").await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            login_with(&b_only, &[pair(&device)], TEST_PASSWORD, "192.0.2.1").await,
            StatusCode::TOO_MANY_REQUESTS,
            "without the previous key, the old device cookie is nobody's"
        );
        assert_eq!(login_with(&b_only, &[pair(&new_device)], TEST_PASSWORD, "192.0.2.1").await, StatusCode::OK);
        assert_eq!(login_with(&rotating, &[pair(&device)], TEST_PASSWORD, "192.0.2.1").await, StatusCode::OK);

        // The other browser's notice is shown.
        let page = reqwest::Client::new()
            .get(format!("{rotating}/login"))
            .header(COOKIE, pair(&notice))
            .header("accept", HTML_ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("You have been logged out."));

        // A form rendered under A logs out under B: the cookie is cleared, not re-issued.
        let logout = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{rotating}/logout"))
            .header(COOKIE, [pair(&session), pair(&csrf)].join("; "))
            .header("accept", HTML_ACCEPT)
            .form(&[("csrf_token", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), StatusCode::SEE_OTHER);
        let cleared: Vec<_> = logout
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|line| line.starts_with(&format!("{SESSION}=")))
            .collect();
        assert_eq!(cleared.len(), 1, "{cleared:?}");
        assert!(cleared[0].starts_with(&format!("{SESSION}=;")), "{cleared:?}");
        assert_eq!(get_with(&b_only, "/protected", &[pair(&renewed)]).await.status(), StatusCode::UNAUTHORIZED);
    }
}

/// Another browser logs in and out by form on `app`: the flash cookie it is
/// left with (`Set-Cookie` line).
async fn notice_for_another_browser(app: &TestApp) -> String {
    let browser = new_client();
    post_login(&browser, &app.address, TEST_USER, TEST_PASSWORD).await;
    let page = browser
        .get(app.url("/protected"))
        .header("accept", HTML_ACCEPT)
        .send()
        .await
        .unwrap();
    let token = hidden_field(&page.text().await.unwrap(), "csrf_token").unwrap();
    let logout = browser
        .post(app.url("/logout"))
        .header("accept", HTML_ACCEPT)
        .form(&[("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    set_cookie(&logout, "latchkey_flash").expect("a flash cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_files_and_the_key_latchkey_creates_are_private() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.secret_key = None).await;
    app.login_test_user().await;

    for name in ["test.db", "test.db-wal", "test.db-shm", "latchkey.key"] {
        assert_eq!(mode(&app.db.dir.path().join(name)), 0o600, "{name}");
    }
}

#[test]
fn an_existing_looser_database_file_is_kept_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shared.db");
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = run_cli(
        &["migrate"],
        "",
        &[("DATABASE_URL", "shared.db")],
        dir.path(),
    );

    assert!(out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shared.db") && err.contains("by group or others"),
        "{err}"
    );
    assert_eq!(mode(&file), 0o644, "the operator's file is left as it is");
}
