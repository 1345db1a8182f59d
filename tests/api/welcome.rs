//! Invitations and password resets: `latchkey user invite|reset` print a
//! one-time `/welcome/TOKEN` link that sets a password and signs the user in.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// Runs `latchkey user COMMAND NAME` and returns the printed link's path.
pub fn link(app: &TestApp, command: &str, name: &str, env: &[(&str, &str)]) -> String {
    let out = app.db.cli_with(&["user", command, name], "", env);
    assert!(out.status.success(), "{}", output_text(&out));
    let printed = stdout(&out).trim().to_owned();
    assert!(
        printed.starts_with("http://localhost:8080/welcome/"),
        "{printed}"
    );
    printed
        .trim_start_matches("http://localhost:8080")
        .to_owned()
}

pub const NEW_PASSWORD: &str = "a-brand-new-passphrase-7";

both_backends! {
    async fn an_invitation_link_sets_a_password_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let path = link(&app, "invite", "newbie", &[]);
        assert_eq!(app.login("newbie", "").await.status(), StatusCode::UNAUTHORIZED);

        let page = app.get_page(&path).await;
        assert_eq!(page.status(), StatusCode::OK);
        // The link stays out of Referer, and the form's `Origin` is still sent.
        assert_eq!(page.headers()["referrer-policy"], "strict-origin");
        assert!(page.text().await.unwrap().contains("newbie"));
        let short = app.post_json(&path, &json!({"password": "short"})).await;
        assert_eq!(short.status(), StatusCode::BAD_REQUEST);
        let set = app.post_json(&path, &json!({"password": NEW_PASSWORD})).await;
        assert_eq!(set.status(), StatusCode::OK);
        assert_eq!(json_body(set).await["message"], "Login successful!");
        assert_eq!(json_body(app.get("/protected").await).await["message"], "Hello, newbie! This is a protected route.");

        let again = app.post_json(&path, &json!({"password": NEW_PASSWORD})).await;
        assert_eq!(again.status(), StatusCode::GONE);
        assert_eq!(app.get_page(&path).await.status(), StatusCode::GONE);
        assert_eq!(app.get("/welcome/nonsense").await.status(), StatusCode::GONE);
        let unknown = format!("/welcome/{}", "A".repeat(43));
        assert_eq!(app.get(&unknown).await.status(), StatusCode::GONE);
        app.logout().await;
        assert_eq!(app.login("newbie", NEW_PASSWORD).await.status(), StatusCode::OK);
    }

    async fn a_reset_link_ends_every_other_session(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let path = link(&app, "reset", TEST_USER, &[]);
        let other = new_client();

        let set = other.post(app.url(&path)).json(&json!({"password": NEW_PASSWORD})).send().await.unwrap();

        assert_eq!(set.status(), StatusCode::OK);
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(other.get(app.url("/protected")).send().await.unwrap().status(), StatusCode::OK);
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.login(TEST_USER, NEW_PASSWORD).await.status(), StatusCode::OK);
        let missing = app.db.cli(&["user", "reset", "nobody"], "");
        assert_fails_with(&missing, "no user named");
    }

    async fn under_required_factors_a_link_signs_in_only_to_enrol(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.require_second_factor = true).await;
        let path = link(&app, "invite", "newbie", &[]);
        let enrol = json!({"message": "Please set up a second factor.", "enrol": true});

        let set = app.post_json(&path, &json!({"password": NEW_PASSWORD})).await;

        assert_json(set, StatusCode::FORBIDDEN, enrol.clone()).await;
        assert_json(app.get("/protected").await, StatusCode::FORBIDDEN, enrol).await;
        assert_eq!(app.post_json("/account/totp", &json!({})).await.status(), StatusCode::OK);
    }

    async fn a_json_client_reading_a_link_gets_json(backend: Backend) {
        // Found while documenting the route: a JSON client got the HTML form.
        let app = spawn_app(backend).await;
        let path = link(&app, "invite", "newbie", &[]);

        let read = app.get(&path).await;

        assert_eq!(read.status(), StatusCode::OK);
        assert!(read.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let message = json_body(read).await["message"].as_str().unwrap().to_owned();
        assert!(message.contains("password"), "{message}");
        // Reading spends nothing: the link still sets the password once.
        let set = app.post_json(&path, &json!({"password": NEW_PASSWORD})).await;
        assert_eq!(set.status(), StatusCode::OK);
        assert_eq!(app.get(&path).await.status(), StatusCode::GONE);
    }

    async fn an_expired_link_is_gone(backend: Backend) {
        let app = spawn_app(backend).await;
        let path = link(&app, "reset", TEST_USER, &[("LATCHKEY_LINK_LIFETIME", "1s")]);
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

        let late = app.post_json(&path, &json!({"password": NEW_PASSWORD})).await;

        assert_eq!(late.status(), StatusCode::GONE);
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
    }
}
