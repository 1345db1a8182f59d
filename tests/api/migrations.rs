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
        let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .count();
        let applied = format!("applied {shipped} migration(s)");
        assert!(String::from_utf8_lossy(&first.stdout).contains(&applied), "{}", output_text(&first));
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

    async fn a_user_seeded_before_start_is_folded_at_start_and_logs_in_under_any_spelling(backend: Backend) {
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        seed(&db, "Alice", SEEDED_PASSWORD);

        let Running { address, handle: server, .. } = start_server(test_settings(&db.url)).await;

        // Folded at start-up, before anyone logs in.
        assert_eq!(folded_names(&db), vec![Some("alice".to_owned())]);
        let client = new_client();
        let login = post_login(&client, &address, "alice", SEEDED_PASSWORD).await;
        assert_eq!(login.status(), StatusCode::OK);
        let greeting = client.get(format!("{address}/protected")).send().await.unwrap();
        assert_eq!(
            json_body(greeting).await["message"],
            "Hello, Alice! This is a protected route."
        );
        server.stop(false).await;
    }

    async fn a_user_seeded_while_the_server_runs_logs_in_at_once(backend: Backend) {
        // As when an admin runs `diesel migration run` against a live database.
        let app = spawn_app(backend).await;
        seed(&app.db, "Bob", SEEDED_PASSWORD);

        let login = app.login("BOB", SEEDED_PASSWORD).await;

        assert_eq!(login.status(), StatusCode::OK);
        assert_json(
            app.get("/protected").await,
            StatusCode::OK,
            serde_json::json!({"message": "Hello, Bob! This is a protected route."}),
        )
        .await;
    }

    async fn a_seeded_user_not_yet_folded_still_holds_its_name(backend: Backend) {
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        seed(&db, "Carol", SEEDED_PASSWORD);

        let carol = latchkey::users::NewUser { username: "CAROL", password_hash: "not a hash" };
        let inserted = latchkey::users::queries::insert(&mut db.connect(), &carol);

        assert!(
            matches!(
                inserted,
                Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
            ),
            "{inserted:?}"
        );
        assert_eq!(folded_names(&db), vec![None], "nothing inserted");
    }

    async fn a_seeded_name_that_folds_like_a_taken_one_is_skipped_never_a_500(backend: Backend) {
        let app = spawn_app(backend).await;
        seed(&app.db, "TEST_USER", SEEDED_PASSWORD);

        let miss = app.login("nobody_here", "not a password").await;
        let impostor = app.login("TEST_USER", SEEDED_PASSWORD).await;
        let original = app.login("TEST_USER", TEST_PASSWORD).await;
        let restarted = start_server(app.settings.clone()).await.handle;
        let listed = app.cli(&["user", "list"], "");

        assert_eq!(miss.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(impostor.status(), StatusCode::UNAUTHORIZED);
        assert_json(
            original,
            StatusCode::OK,
            serde_json::json!({"message": "Login successful!", "user_id": app.test_user_id.0}),
        )
        .await;
        assert!(listed.status.success(), "{}", output_text(&listed));
        assert_eq!(folded_names(&app.db), vec![Some("test_user".to_owned()), None]);
        restarted.stop(false).await;
    }
}

const SEEDED_PASSWORD: &str = "a seeded pass phrase";

/// What an admin's seed migration does: only the name and the hash.
fn seed(db: &TestDb, username: &str, password: &str) {
    let hash = bcrypt::hash(password, TEST_BCRYPT_COST).expect("hash");
    db.connect()
        .batch_execute(&format!(
            "INSERT INTO users (username, password_hash) VALUES ('{username}', '{hash}')"
        ))
        .expect("seed insert");
}

fn folded_names(db: &TestDb) -> Vec<Option<String>> {
    use diesel::prelude::*;
    use latchkey::db::schema::users;
    users::table
        .order(users::id)
        .select(users::username_folded)
        .load(&mut db.connect())
        .expect("folded names")
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
