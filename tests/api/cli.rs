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

        let out = app.cli(&["user", "remove", TEST_USER], "");

        assert!(out.status.success(), "{}", output_text(&out));
        assert_eq!(app.session_rows(), 0);
        assert_eq!(app.get_with_cookie("/protected", &cookie).await.status(), StatusCode::UNAUTHORIZED);
        assert_fails_with(&app.cli(&["user", "remove", TEST_USER], ""), "no user named");
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
