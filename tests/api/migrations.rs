//! Migrations, admin seed migrations, and start-up failures.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use reqwest::StatusCode;

use crate::helpers::*;

both_backends! {
    async fn migrations_apply_to_an_empty_database_and_twice_without_harm(backend: Backend) {
        let db = TestDb::new(backend);

        let first = db.cli(&["migrate"], "");
        let second = db.cli(&["migrate"], "");

        assert!(first.status.success(), "{}", output_text(&first));
        assert!(String::from_utf8_lossy(&first.stdout).contains("applied 1 migration(s)"));
        assert!(second.status.success(), "{}", output_text(&second));
        assert!(String::from_utf8_lossy(&second.stdout).contains("applied 0 migration(s)"));
    }

    async fn an_admin_seed_migration_creates_a_user_who_can_log_in(backend: Backend) {
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        let hash_out = db.cli(&["hash-password", "--password-stdin"], "alice's seeded password\n");
        let hash = String::from_utf8_lossy(&hash_out.stdout).trim().to_owned();

        // Exactly what an admin's up.sql holds; every other column takes its default.
        db.connect()
            .batch_execute(&format!(
                "INSERT INTO users (username, password_hash) VALUES ('alice', '{hash}')"
            ))
            .expect("seed insert");

        let address = start_server(test_settings(&db.url)).await.address;
        let response = new_client()
            .post(format!("{address}/login"))
            .json(&serde_json::json!({"username": "alice", "password": "alice's seeded password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[test]
fn a_mistyped_database_url_fails_loudly_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgress://postgres@127.0.0.1/x",
        "mysql://root@localhost/x",
        "mysql:latchkey.db",
        ":memory:",
        "sqlite://:memory:",
        "file::memory:",
    ] {
        let out = run_cli(&["migrate"], "", &[("DATABASE_URL", url)], dir.path());

        assert!(!out.status.success(), "{url}: {}", output_text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("DATABASE_URL"), "{url}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file was created"
    );
}

#[test]
fn a_bare_path_or_file_uri_is_a_sqlite_database_as_for_the_diesel_cli() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["latchkey.db", "file:other.db?mode=rwc"] {
        let out = run_cli(&["migrate"], "", &[("DATABASE_URL", url)], dir.path());

        assert!(out.status.success(), "{url}: {}", output_text(&out));
        let listed = run_cli(&["user", "list"], "", &[("DATABASE_URL", url)], dir.path());
        assert!(listed.status.success(), "{url}: {}", output_text(&listed));
    }
    assert!(dir.path().join("latchkey.db").is_file());
    assert!(dir.path().join("other.db").is_file());
}

#[test]
fn an_unreachable_postgres_fails_fast_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();

    let out = run_cli(
        &["migrate"],
        "",
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")],
        dir.path(),
    );

    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no SQLite file appeared"
    );
}

#[test]
fn a_bad_setting_names_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("LATCHKEY_BCRYPT_COST", "lots"),
        ("LATCHKEY_SESSION_IDLE_TIMEOUT", "a while"),
        ("LATCHKEY_SECRET_KEY", "too-short"),
        ("LATCHKEY_ADDR", "nowhere"),
    ];
    for (var, value) in cases {
        let out = run_cli(&["migrate"], "", &[(var, value)], dir.path());

        assert!(!out.status.success(), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
}
