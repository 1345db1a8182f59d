//! New-password rules (common passwords, the username) and the offline
//! breached-password list: `latchkey breached import`, refusals when a password
//! is set, and the flag on a login with one.

use std::path::{Path, PathBuf};

use latchkey::config::BREACHED_PASSWORDS_VAR;
use latchkey::startup::Application;
use reqwest::StatusCode;
use serde_json::json;
use sha1::{Digest as _, Sha1};

use crate::helpers::*;

/// In the test breached list; acceptable by every other rule.
pub(crate) const BREACHED: &str = "quartz-lantern-fjord";
pub(crate) const NOTICE: &str =
    "Your password appears in a list of passwords exposed in data breaches";

/// A Have I Been Pwned download in miniature: `SHA1:COUNT`, uppercase, CRLF.
fn hibp_file(dir: &Path, passwords: &[&str]) -> PathBuf {
    let text: String = passwords
        .iter()
        .map(|p| {
            format!(
                "{}:{}\r\n",
                hex::encode_upper(Sha1::digest(p.as_bytes())),
                p.len()
            )
        })
        .collect();
    let path = dir.join("pwned-passwords-sha1.txt");
    std::fs::write(&path, text).expect("write the hash list");
    path
}

/// A filter file holding `BREACHED`, built in-process.
pub(crate) fn breached_filter(dir: &Path) -> PathBuf {
    let list = hibp_file(dir, &[BREACHED, "hunter2"]);
    let out = dir.join("breached.filter");
    let input = std::io::BufReader::new(std::fs::File::open(list).expect("open list"));
    latchkey::users::breached::build(input, &out).expect("build the filter");
    out
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

both_backends! {
    async fn user_add_and_passwd_refuse_dressed_up_common_passwords_and_the_name(backend: Backend) {
        let app = spawn_app(backend).await;
        let add = |name: &str, password: &str| {
            app.cli(&["user", "add", name, "--password-stdin"], &format!("{password}\n"))
        };

        assert_fails_with(&add("bob", "Password123!"), "too common");
        assert_fails_with(&add("bob", "Welcome123!"), "too common");
        assert_fails_with(&add("carol", "Carol-likes-plinths"), "must not contain the username");
        let passwd = app.cli(&["user", "passwd", TEST_USER, "--password-stdin"], "Summer2024!\n");
        assert_fails_with(&passwd, "too common");

        assert!(!stdout(&app.cli(&["user", "list"], "")).contains("bob"));
        assert!(!stdout(&app.cli(&["user", "list"], "")).contains("carol"));
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
    }

    async fn a_password_change_may_not_contain_the_username(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;

        let change = app
            .post_json(
                "/account/password",
                &json!({"current_password": TEST_PASSWORD, "new_password": "TEST_USER and more"}),
            )
            .await;

        assert_eq!(change.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json_body(change).await["message"], "Password must not contain the username.");
    }

    async fn with_the_breached_list_set_a_listed_password_cannot_be_set(backend: Backend) {
        let app = spawn_app(backend).await;
        let list = hibp_file(app.db.dir.path(), &[BREACHED, "hunter2"]);
        let filter = app.db.dir.path().join("breached.filter");

        let imported = app.cli(
            &["breached", "import", path_str(&list), "--output", path_str(&filter)],
            "",
        );
        assert!(imported.status.success(), "{}", output_text(&imported));
        assert!(stdout(&imported).contains("imported 2 password hash(es)"), "{}", stdout(&imported));

        let with_list = [(BREACHED_PASSWORDS_VAR, path_str(&filter))];
        let passwd = |env: &[(&str, &str)]| {
            app.db.cli_with(&["user", "passwd", TEST_USER, "--password-stdin"], &format!("{BREACHED}\n"), env)
        };
        assert_fails_with(&passwd(&with_list), "breached");
        let add = app.db.cli_with(&["user", "add", "dave", "--password-stdin"], &format!("{BREACHED}\n"), &with_list);
        assert_fails_with(&add, "breached");
        let hash = app.db.cli_with(&["hash-password", "--password-stdin"], &format!("{BREACHED}\n"), &with_list);
        assert_fails_with(&hash, "breached");
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);

        // Without the variable, the same password is only checked by the other rules.
        let unlisted = passwd(&[]);
        assert!(unlisted.status.success(), "{}", output_text(&unlisted));
        assert_eq!(app.login(TEST_USER, BREACHED).await.status(), StatusCode::OK);
    }

    async fn a_password_change_to_a_breached_password_is_refused(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let filter = breached_filter(dir.path());
        let app = spawn_app_with(backend, |s| s.breached_passwords = Some(filter)).await;
        app.login_test_user().await;

        let change = app
            .post_json(
                "/account/password",
                &json!({"current_password": TEST_PASSWORD, "new_password": BREACHED}),
            )
            .await;

        assert_eq!(change.status(), StatusCode::BAD_REQUEST);
        assert!(json_body(change).await["message"].as_str().unwrap().contains("breached"));
    }

    async fn a_login_with_a_breached_password_succeeds_but_is_flagged(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let filter = breached_filter(dir.path());
        let app = spawn_app_with(backend, |s| s.breached_passwords = Some(filter)).await;
        let dave = add_user(&app.db, "dave", BREACHED, TEST_BCRYPT_COST);

        let login = app.login("dave", BREACHED).await;

        assert_json(
            login,
            StatusCode::OK,
            json!({"message": "Login successful!", "user_id": dave.0, "password_breached": true}),
        )
        .await;
        let audit = stdout(&app.cli(&["audit", "--user", "dave"], ""));
        assert!(audit.contains("password_breached"), "{audit}");
        // A password not in the list: the seed's body, exactly.
        let seed = post_login(&new_client(), &app.address, TEST_USER, TEST_PASSWORD).await;
        assert_json(seed, StatusCode::OK, json!({"message": "Login successful!", "user_id": app.test_user_id.0})).await;
        let audit = stdout(&app.cli(&["audit", "--user", TEST_USER], ""));
        assert!(!audit.contains("password_breached"), "{audit}");
    }

    async fn a_browser_login_with_a_breached_password_shows_a_notice(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let filter = breached_filter(dir.path());
        let app = spawn_app_with(backend, |s| s.breached_passwords = Some(filter)).await;
        add_user(&app.db, "dave", BREACHED, TEST_BCRYPT_COST);
        let token = app.csrf_token().await;

        let login = app
            .post_form("/login", &[("csrf_token", &token), ("username", "dave"), ("password", BREACHED)])
            .await;

        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&login), "/protected");
        let page = app.get_page("/protected").await.text().await.unwrap();
        assert!(page.contains(NOTICE), "{page}");
        let again = app.get_page("/protected").await.text().await.unwrap();
        assert!(!again.contains(NOTICE), "shown once");
    }

    async fn without_the_breached_list_a_listed_password_changes_nothing(backend: Backend) {
        let app = spawn_app(backend).await;
        let dave = add_user(&app.db, "dave", BREACHED, TEST_BCRYPT_COST);

        let login = app.login("dave", BREACHED).await;

        assert_json(login, StatusCode::OK, json!({"message": "Login successful!", "user_id": dave.0})).await;
        let audit = stdout(&app.cli(&["audit"], ""));
        assert!(!audit.contains("password_breached"), "{audit}");
    }
}

#[test]
fn breached_import_refuses_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let list = hibp_file(dir.path(), &[BREACHED]);
    let bad = dir.path().join("ntlm.txt");
    std::fs::write(
        &bad,
        format!("{}:1\n8846F7EAEE8FB117AD06BDD830B7586C:3\n", "A".repeat(40)),
    )
    .unwrap();
    let out = dir.path().join("breached.filter");
    let import = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["breached", "import"];
        all.extend_from_slice(args);
        run_cli(&all, "", env, dir.path())
    };

    assert_fails_with(&import(&[path_str(&list)], &[]), "--output");
    assert_fails_with(
        &import(&[path_str(&bad), "--output", path_str(&out)], &[]),
        "line 2",
    );
    assert_fails_with(
        &import(&["no-such-file.txt", "--output", path_str(&out)], &[]),
        "no-such-file.txt",
    );
    assert!(!out.exists(), "a failed import writes nothing");

    // The variable names the default output.
    let done = import(
        &[path_str(&list)],
        &[(BREACHED_PASSWORDS_VAR, path_str(&out))],
    );
    assert!(done.status.success(), "{}", output_text(&done));
    assert!(out.exists());
}

#[test]
fn a_bad_breached_file_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.filter");
    std::fs::write(&garbage, "not a filter").unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("test.db").display());

    let bad_files = [garbage, dir.path().join("missing.filter")];

    for path in &bad_files {
        let mut settings = test_settings(&latchkey::config::DatabaseUrl::parse(&db_url).unwrap());
        settings.breached_passwords = Some(path.clone());
        let built = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(Application::build(settings));
        let err = format!("{:#}", built.err().expect("start-up refused"));
        assert!(err.starts_with(BREACHED_PASSWORDS_VAR), "{err}");
    }
    assert!(
        !dir.path().join("test.db").exists(),
        "refused before the database is touched"
    );

    for path in &bad_files {
        let env = [
            ("DATABASE_URL", db_url.as_str()),
            (BREACHED_PASSWORDS_VAR, path_str(path)),
        ];
        let add = run_cli(
            &["user", "add", "erin", "--password-stdin"],
            "plinth-oboe-marsupial\n",
            &env,
            dir.path(),
        );
        assert_fails_with(&add, BREACHED_PASSWORDS_VAR);
    }
}
