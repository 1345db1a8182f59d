//! The `latchkey` binary's admin commands, run for real against each backend.

use reqwest::StatusCode;

use crate::helpers::*;

both_backends! {
    async fn user_add_creates_a_user_who_can_log_in(backend: Backend) {
        let app = spawn_app(backend).await;

        let out = app.cli(&["user", "add", "alice", "--password-stdin"], "her secret pass\n");

        assert!(out.status.success(), "{}", output_text(&out));
        assert!(stdout(&out).contains("created user \"alice\""));
        assert_eq!(app.login("alice", "her secret pass").await.status(), StatusCode::OK);
        let list = app.cli(&["user", "list"], "");
        assert!(stdout(&list).contains("alice") && stdout(&list).contains(TEST_USER));
    }

    async fn user_add_refuses_bad_names_and_passwords(backend: Backend) {
        let app = spawn_app(backend).await;
        let add = |name: &str, password: &str| {
            app.cli(&["user", "add", name, "--password-stdin"], &format!("{password}\n"))
        };

        assert_fails_with(&add("bob", "password"), "too common");
        assert_fails_with(&add("bob", "P@ssw0rd"), "too common");
        assert_fails_with(&add("bob", "short"), "at least 8 characters");
        assert_fails_with(&add("bob", &"x7#".repeat(25)), "at most 72 bytes");
        assert_fails_with(&add(&"b".repeat(51), "bob's fine password"), "at most 50 characters");
        assert_fails_with(&add(TEST_USER, "another fine password"), "already exists");
        assert_fails_with(&app.cli(&["user", "add", "bob", "--password-stdin"], ""), "no password on stdin");
        // Without --password-stdin and without a terminal there is nothing to prompt on.
        assert_fails_with(&app.cli(&["user", "add", "bob"], "bob's fine password\n"), "--password-stdin");
        assert!(!stdout(&app.cli(&["user", "list"], "")).contains("bob"));
    }

    async fn passwords_are_never_taken_from_argv(backend: Backend) {
        let app = spawn_app(backend).await;

        let out = app.cli(&["user", "add", "bob", "hunter2hunter2"], "");

        assert!(!out.status.success());
        assert!(!stdout(&app.cli(&["user", "list"], "")).contains("bob"));
    }

    async fn passwd_changes_the_password_and_ends_sessions(backend: Backend) {
        let app = spawn_app(backend).await;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();

        let out = app.cli(&["user", "passwd", TEST_USER, "--password-stdin"], "a brand new password\n");

        assert!(out.status.success(), "{}", output_text(&out));
        assert!(stdout(&out).contains("1 session(s) ended"), "{}", stdout(&out));
        assert_eq!(app.get_with_cookie("/protected", &cookie).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.login(TEST_USER, "a brand new password").await.status(), StatusCode::OK);
    }

    async fn disable_ends_sessions_and_refuses_login_until_enabled(backend: Backend) {
        let app = spawn_app(backend).await;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();

        let out = app.cli(&["user", "disable", TEST_USER], "");

        assert!(out.status.success(), "{}", output_text(&out));
        assert_eq!(app.get_with_cookie("/protected", &cookie).await.status(), StatusCode::UNAUTHORIZED);
        let refused = app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_body(refused).await["message"], "Invalid username or password.");

        assert!(app.cli(&["user", "enable", TEST_USER], "").status.success());
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
    }

    async fn remove_deletes_the_user_and_their_sessions(backend: Backend) {
        let app = spawn_app(backend).await;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();

        let out = app.cli(&["user", "remove", TEST_USER, "--yes"], "");

        assert!(out.status.success(), "{}", output_text(&out));
        assert_eq!(app.session_rows(), 0);
        assert_eq!(app.get_with_cookie("/protected", &cookie).await.status(), StatusCode::UNAUTHORIZED);
        assert_fails_with(&app.cli(&["user", "remove", TEST_USER, "--yes"], ""), "no user named");
    }

    async fn remove_without_a_terminal_needs_yes(backend: Backend) {
        let app = spawn_app(backend).await;

        let out = app.cli(&["user", "remove", TEST_USER], "y\n");

        assert_fails_with(&out, "pass --yes");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
    }

    async fn exit_codes_tell_taken_and_missing_from_failures(backend: Backend) {
        let app = spawn_app(backend).await;
        let code = |args: &[&str], stdin: &str| {
            let out = app.cli(args, stdin);
            assert_eq!(stderr(&out).trim_end().lines().count(), usize::from(!out.status.success()), "{}", output_text(&out));
            out.status.code()
        };

        let taken = code(&["user", "add", TEST_USER, "--password-stdin"], "another fine password\n");
        let again = app.cli(&["user", "add", TEST_USER, "--if-missing"], "");
        let created = code(&["user", "add", "newcomer", "--if-missing", "--password-stdin"], "a fine password of her own\n");

        assert_eq!(taken, Some(3), "already exists");
        assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
        assert!(stdout(&again).contains("nothing changed"));
        assert_eq!(created, Some(0));
        assert_eq!(app.login("newcomer", "a fine password of her own").await.status(), StatusCode::OK);
        for args in [
            &["user", "passwd", "ghost", "--password-stdin"][..],
            &["user", "disable", "ghost"],
            &["user", "remove", "ghost", "--yes"],
            &["user", "sessions", "ghost"],
            &["token", "list", "ghost"],
            &["token", "revoke", TEST_USER, "999"],
            &["audit", "--user", "ghost"],
        ] {
            assert_eq!(code(args, "a fine password for a ghost\n"), Some(3), "not found: {args:?}");
        }
        assert_eq!(code(&["user", "add", "bob", "--password-stdin"], "password\n"), Some(1), "a failure");
        assert_eq!(app.cli(&["user", "frobnicate"], "").status.code(), Some(2), "usage");
    }

    async fn listings_print_one_json_document(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let created = app.cli(&["token", "create", TEST_USER, "--name", "deploy script"], "");
        assert!(created.status.success(), "{}", output_text(&created));
        let json = |args: &[&str]| -> serde_json::Value {
            let out = app.cli(args, "");
            assert!(out.status.success(), "{}", output_text(&out));
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
        };

        let users = json(&["user", "list", "--json"]);
        let sessions = json(&["user", "sessions", TEST_USER, "--json"]);
        let tokens = json(&["token", "list", TEST_USER, "--json"]);
        let audit = json(&["audit", "--user", TEST_USER, "--json"]);

        assert_eq!(users[0]["username"], TEST_USER, "{users}");
        assert_eq!(users[0]["id"], app.test_user_id.0);
        assert_eq!(users[0]["active"], true);
        assert!(users[0]["last_login_at"].as_str().unwrap().ends_with('Z'), "{users}");
        assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
        assert_eq!(sessions[0]["client_ip"], "127.0.0.1");
        assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
        assert_eq!(tokens[0]["name"], "deploy script");
        assert_eq!(tokens[0]["last_used_at"], serde_json::Value::Null);
        assert!(!tokens.to_string().contains("lk_"), "never the secret");
        let events: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert!(events.contains(&"login_success") && events.contains(&"token_created"), "{audit}");
    }

    async fn commands_that_only_read_leave_an_unmigrated_database_alone(backend: Backend) {
        let db = TestDb::new(backend);
        let readers: [&[&str]; 4] = [
            &["user", "list"],
            &["user", "sessions", TEST_USER, "--json"],
            &["token", "list", TEST_USER],
            &["audit"],
        ];
        // No SQLite file yet: none is created.
        if let Some(file) = db.url.sqlite_file() {
            for args in readers {
                assert_fails_with(&db.cli(args, ""), "latchkey migrate");
            }
            assert!(!file.exists(), "a listing created the database");
            drop(db.connect());
        }

        for args in readers {
            let out = db.cli(args, "");
            assert_fails_with(&out, "not migrated");
            assert_eq!(out.status.code(), Some(1));
        }

        let migrate = db.cli(&["migrate"], "");
        assert!(migrate.status.success(), "{}", output_text(&migrate));
        assert!(!stdout(&migrate).contains("applied 0 "), "a listing migrated: {}", stdout(&migrate));
        assert!(db.cli(&["user", "list"], "").status.success());
    }
    async fn sessions_lists_and_logout_ends_a_users_sessions(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let other = new_client();
        other
            .post(app.url("/login"))
            .header("user-agent", "second-device/1.0")
            .json(&serde_json::json!({"username": TEST_USER, "password": TEST_PASSWORD}))
            .send()
            .await
            .unwrap();

        let listed = app.cli(&["user", "sessions", TEST_USER], "");
        let ended = app.cli(&["user", "logout", TEST_USER], "");

        assert!(stdout(&listed).contains("2 active session(s)"), "{}", output_text(&listed));
        assert!(stdout(&listed).contains("second-device/1.0"));
        assert!(stdout(&listed).contains("127.0.0.1"));
        assert!(stdout(&ended).contains("ended 2 session(s)"), "{}", output_text(&ended));
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        assert_fails_with(&app.cli(&["user", "sessions", "ghost"], ""), "no user named \"ghost\"");
    }

    async fn hash_password_prints_a_hash_that_verifies(backend: Backend) {
        let db = TestDb::new(backend);

        let out = db.cli(&["hash-password", "--password-stdin"], "seeded password\n");

        assert!(out.status.success(), "{}", output_text(&out));
        let hash = stdout(&out).trim().to_owned();
        assert!(hash.starts_with("$2b$04$"), "{hash}");
        assert!(bcrypt::verify("seeded password", &hash).unwrap());
        assert_fails_with(&db.cli(&["hash-password", "--password-stdin"], "password\n"), "too common");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run_cli(&["completions", shell], "", &[], dir.path());

        assert!(out.status.success(), "{}", output_text(&out));
        assert!(stdout(&out).contains("latchkey"), "{shell}");
        assert!(stdout(&out).contains("if-missing"), "{shell}");
    }
    let unknown = run_cli(&["completions", "cmd.exe"], "", &[], dir.path());
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn help_works_whatever_the_environment_holds() {
    let dir = tempfile::tempdir().unwrap();

    let out = run_cli(
        &["--help"],
        "",
        &[("LATCHKEY_LOG_FORMAT", "yaml")],
        dir.path(),
    );

    assert!(out.status.success(), "{}", output_text(&out));
    assert!(stdout(&out).contains("Usage"), "{}", stdout(&out));
}
