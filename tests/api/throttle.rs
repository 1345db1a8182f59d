//! Hardening of the throttle and of everything a password check touches: racing
//! tries, the per-account ceiling and the device cookie, password changes,
//! throttled floods in the audit trail, retention, sessions per user.

use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use latchkey::db::schema::{audit_events, login_failures};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn failures(app: &TestApp) -> i64 {
    login_failures::table
        .count()
        .get_result(&mut app.db.connect())
        .unwrap()
}

fn audit_rows(app: &TestApp, event: &str) -> i64 {
    audit_events::table
        .filter(audit_events::event.eq(event))
        .count()
        .get_result(&mut app.db.connect())
        .unwrap()
}

/// A login from a client of its own (a fresh cookie jar: no device cookie).
async fn login_as(
    app: &TestApp,
    client: &reqwest::Client,
    password: &str,
    via: &str,
) -> StatusCode {
    client
        .post(app.url("/login"))
        .header("x-forwarded-for", via)
        .json(&json!({"username": TEST_USER, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn change_password(app: &TestApp, current: &str, new: &str) -> reqwest::Response {
    app.post_json(
        "/account/password",
        &json!({"current_password": current, "new_password": new}),
    )
    .await
}

both_backends! {
    async fn racing_wrong_passwords_never_pass_the_limit(backend: Backend) {
        let app = spawn_app(backend).await;
        let peer = app.start_peer().await.address;
        let client = reqwest::Client::new();
        let tries = (0..20).map(|i| {
            let url = if i % 2 == 0 { app.url("/login") } else { format!("{peer}/login") };
            client.post(url).json(&json!({"username": TEST_USER, "password": "wrong"})).send()
        });

        let results = futures_util::future::join_all(tries).await;

        let statuses: Vec<StatusCode> = results.into_iter().map(|r| r.unwrap().status()).collect();
        let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
        assert_eq!(checked, 5, "only the limit reach a password check: {statuses:?}");
        assert_eq!(statuses.len() - checked, 15);
        assert!(statuses.iter().all(|s| matches!(*s, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS)));
        assert_eq!(failures(&app), 5, "refused tries are not counted");
    }

    async fn the_account_ceiling_stops_distributed_guessing_but_not_the_owners_device(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.login_max_failures_per_account = 3;
        })
        .await;
        // The real user logged in once on this browser: it holds a device cookie.
        let owner = new_client();
        assert_eq!(login_as(&app, &owner, TEST_PASSWORD, "192.0.2.1").await, StatusCode::OK);
        // Guesses from three addresses, none over the per-client limit.
        for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
            assert_eq!(login_as(&app, &new_client(), "guess", ip).await, StatusCode::UNAUTHORIZED);
        }

        let fourth_address = login_as(&app, &new_client(), TEST_PASSWORD, "203.0.113.4").await;
        let owner_again = login_as(&app, &owner, TEST_PASSWORD, "192.0.2.1").await;

        assert_eq!(fourth_address, StatusCode::TOO_MANY_REQUESTS, "even the right password: no check");
        assert_eq!(owner_again, StatusCode::OK, "the device cookie's holder is not locked out");
    }

    async fn a_device_cookie_has_a_failure_limit_of_its_own(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.login_max_failures_per_account = 1000;
            s.login_max_failures_per_client = 1000;
        })
        .await;
        let stolen = new_client();
        assert_eq!(login_as(&app, &stolen, TEST_PASSWORD, "192.0.2.1").await, StatusCode::OK);
        // Five failures with the device cookie, each from another address.
        for i in 1..=5 {
            let ip = format!("198.51.100.{i}");
            assert_eq!(login_as(&app, &stolen, "guess", &ip).await, StatusCode::UNAUTHORIZED);
        }

        let sixth = login_as(&app, &stolen, TEST_PASSWORD, "198.51.100.6").await;

        assert_eq!(sixth, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(login_as(&app, &new_client(), TEST_PASSWORD, "198.51.100.7").await, StatusCode::OK);
    }

    async fn a_device_cookie_is_signed_httponly_and_outlives_logout(backend: Backend) {
        let app = spawn_app(backend).await;
        let response = app.login_test_user().await;
        let device = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("latchkey_device="))
            .expect("a device cookie")
            .to_owned();
        assert!(device.contains("HttpOnly") && device.contains("Max-Age=31536000"), "{device}");

        let logout = app.logout().await;

        let cleared = logout
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.starts_with("latchkey_device="));
        assert!(!cleared, "kept at logout");
    }

    async fn a_password_change_checks_the_new_password_before_the_current_one(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;

        let right_current = change_password(&app, TEST_PASSWORD, "short").await;
        let wrong_current = change_password(&app, "not my password", "short").await;

        assert_eq!(right_current.status(), StatusCode::BAD_REQUEST);
        assert_eq!(wrong_current.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json_body(right_current).await, json_body(wrong_current).await, "no oracle");
        assert_eq!(audit_rows(&app, "password_change_failed"), 0, "nothing was checked");
    }

    async fn current_password_checks_are_throttled_and_audited_like_logins(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        for _ in 0..5 {
            let wrong = change_password(&app, "a wrong guess", "a new long password").await;
            assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
        }

        let sixth = change_password(&app, TEST_PASSWORD, "a new long password").await;

        assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(sixth.headers().contains_key("retry-after"));
        assert_eq!(audit_rows(&app, "password_change_failed"), 5);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK, "still signed in");
    }

    async fn a_throttled_flood_writes_one_audit_row_and_counts_every_try(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.login_max_failures = 2).await;
        app.login(TEST_USER, "wrong").await;
        app.login(TEST_USER, "wrong").await;

        for _ in 0..30 {
            assert_eq!(app.login(TEST_USER, "wrong").await.status(), StatusCode::TOO_MANY_REQUESTS);
        }

        assert_eq!(audit_rows(&app, "login_throttled"), 1, "sampled: one row a minute");
        assert_eq!(failures(&app), 2);
    }

    async fn audit_events_past_their_retention_are_swept(backend: Backend) {
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        db.connect()
            .batch_execute(
                "INSERT INTO audit_events (at, event, detail) VALUES \
                 ('2000-01-01 00:00:00', 'logout', 'ancient'), \
                 ('2999-01-01 00:00:00', 'logout', 'future')",
            )
            .unwrap();

        let app = spawn_app_on(db, |_| {}).await;

        let ancient = || {
            audit_events::table
                .filter(audit_events::detail.eq("ancient"))
                .count()
                .get_result::<i64>(&mut app.db.connect())
                .unwrap()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ancient() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ancient(), 0, "swept at start");
        assert_eq!(audit_rows(&app, "logout"), 1, "recent events are kept");
    }

    async fn a_login_past_the_session_limit_ends_the_least_recently_seen(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.max_sessions_per_user = 2).await;
        let first = new_client();
        let second = new_client();
        let third = new_client();
        for client in [&first, &second] {
            assert_eq!(login_as(&app, client, TEST_PASSWORD, "-").await, StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The second becomes the least recently seen (sliding writes are
        // rate-limited, so it is aged in the database).
        app.db
            .connect()
            .batch_execute("UPDATE sessions SET last_seen_at = '2001-01-01 00:00:00' WHERE last_seen_at = (SELECT MAX(last_seen_at) FROM sessions)")
            .unwrap();

        assert_eq!(login_as(&app, &third, TEST_PASSWORD, "-").await, StatusCode::OK);

        let status = |client: reqwest::Client| {
            let url = app.url("/protected");
            async move { client.get(url).send().await.unwrap().status() }
        };
        assert_eq!(status(first).await, StatusCode::OK);
        assert_eq!(status(second).await, StatusCode::UNAUTHORIZED, "ended: least recently seen");
        assert_eq!(status(third).await, StatusCode::OK);
        assert_eq!(app.session_rows(), 2);
    }
}
