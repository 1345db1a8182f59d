//! Secret keys and the files latchkey keeps: where a key may be generated,
//! key files, and the modes of the files latchkey creates.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use reqwest::StatusCode;

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
