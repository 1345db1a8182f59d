//! Session lifetimes, remember-me, revocation across instances, restart, sweep, audit.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

fn max_age(line: &str) -> Option<u64> {
    line.split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
}

both_backends! {
    async fn an_unused_session_ends_after_the_idle_timeout(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.session_idle_timeout = Duration::from_secs(2)).await;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();

        tokio::time::sleep(Duration::from_millis(2500)).await;

        let response = app.get_with_cookie("/protected", &cookie).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    async fn a_used_session_outlives_the_idle_timeout(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.session_idle_timeout = Duration::from_secs(2)).await;
        app.login_test_user().await;

        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        }
    }

    async fn the_absolute_limit_ends_a_session_despite_activity(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.session_idle_timeout = Duration::from_secs(2);
            s.session_max_lifetime = Duration::from_secs(3);
        })
        .await;
        app.login_test_user().await;

        let mut statuses = Vec::new();
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            statuses.push(app.get("/protected").await.status());
        }

        assert_eq!(statuses[0], StatusCode::OK);
        assert_eq!(*statuses.last().unwrap(), StatusCode::UNAUTHORIZED, "{statuses:?}");
    }

    async fn remember_me_gives_a_persistent_cookie_and_row(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.session_idle_timeout = Duration::from_secs(1);
            s.session_max_lifetime = Duration::from_secs(2);
        })
        .await;
        let lifetime = app.settings.remember_me_lifetime.as_secs();

        let remembered = app
            .post_json("/login", &json!({"username": TEST_USER, "password": TEST_PASSWORD, "remember": true}))
            .await;
        let plain = new_client()
            .post(app.url("/login"))
            .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
            .send()
            .await
            .unwrap();

        let line = set_cookie_line(remembered.headers()).unwrap();
        assert_eq!(max_age(&line), Some(lifetime), "{line}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(line.contains(attribute), "{line}");
        }
        assert_eq!(max_age(&set_cookie_line(plain.headers()).unwrap()), None);
        // Outlives both the idle timeout and the normal absolute limit.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        let account = json_body(app.get("/account").await).await;
        let sessions = account["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 1, "the plain session has expired: {account}");
        assert_eq!(sessions[0]["remembered"], true);
    }

    async fn the_remember_me_checkbox_works_from_the_form(backend: Backend) {
        let app = spawn_app(backend).await;
        let token = app.csrf_token().await;

        let response = app
            .post_form("/login", &[
                ("csrf_token", &token),
                ("username", TEST_USER),
                ("password", TEST_PASSWORD),
                ("remember", "on"),
            ])
            .await;

        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let line = set_cookie_line(response.headers()).unwrap();
        assert_eq!(max_age(&line), Some(app.settings.remember_me_lifetime.as_secs()));
    }

    async fn a_remembered_session_keeps_its_persistent_cookie_when_its_state_changes(backend: Backend) {
        let app = spawn_app(backend).await;
        let lifetime = app.settings.remember_me_lifetime.as_secs();
        let login = app
            .post_json("/login", &json!({"username": TEST_USER, "password": TEST_PASSWORD, "remember": true}))
            .await;
        assert_eq!(login.status(), StatusCode::OK);

        // Confirming the password changes the session's state: its cookie is set again.
        let confirm = app.post_json("/account/confirm", &json!({"password": TEST_PASSWORD})).await;

        assert_eq!(confirm.status(), StatusCode::OK);
        let line = set_cookie_line(confirm.headers()).expect("the changed session's cookie is set again");
        assert_eq!(max_age(&line), Some(lifetime), "{line}");
        let account = json_body(app.get("/account").await).await;
        let sessions = account["sessions"].as_array().unwrap();
        let current = sessions.iter().find(|s| s["current"] == true).expect("the current session is listed");
        assert_eq!(current["remembered"], true, "{account}");
    }

    async fn a_plain_login_over_a_remembered_session_is_not_remembered(backend: Backend) {
        let app = spawn_app(backend).await;
        let remembered = app
            .post_json("/login", &json!({"username": TEST_USER, "password": TEST_PASSWORD, "remember": true}))
            .await;
        assert_eq!(max_age(&set_cookie_line(remembered.headers()).unwrap()), Some(app.settings.remember_me_lifetime.as_secs()));

        // The same browser logs in again, "remember me" unticked.
        let plain = app.login_test_user().await;

        let line = set_cookie_line(plain.headers()).expect("a new session cookie");
        assert_eq!(max_age(&line), None, "{line}");
        let account = json_body(app.get("/account").await).await;
        let sessions = account["sessions"].as_array().unwrap();
        let current = sessions.iter().find(|s| s["current"] == true).expect("the current session is listed");
        assert_eq!(current["remembered"], false, "{account}");
        // Its state changing later does not make it persistent either.
        let confirm = app.post_json("/account/confirm", &json!({"password": TEST_PASSWORD})).await;
        assert_eq!(confirm.status(), StatusCode::OK);
        if let Some(line) = set_cookie_line(confirm.headers()) {
            assert_eq!(max_age(&line), None, "{line}");
        }
    }

    async fn logout_on_one_instance_ends_the_session_on_another(backend: Backend) {
        let app = spawn_app(backend).await;
        let peer = app.start_peer().await.address;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();
        let on_peer = |path: &'static str| {
            reqwest::Client::new().get(format!("{peer}{path}")).header("cookie", cookie.clone()).send()
        };
        assert_eq!(on_peer("/protected").await.unwrap().status(), StatusCode::OK);

        let logout = reqwest::Client::new()
            .post(format!("{peer}/logout"))
            .header("cookie", cookie.clone())
            .send()
            .await
            .unwrap();

        assert_eq!(logout.status(), StatusCode::OK);
        assert_eq!(app.get_with_cookie("/protected", &cookie).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(on_peer("/protected").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }

    async fn a_cached_session_is_dropped_by_every_instance_within_a_second(backend: Backend) {
        let app = spawn_app(backend).await;
        let peer = app.start_peer().await;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();
        let on_peer = format!("{}/protected", peer.address);
        // Both instances have the session cached now.
        for _ in 0..3 {
            assert_eq!(app.get_with_cookie("/protected", &cookie).await.status(), StatusCode::OK);
            eventually_status(&on_peer, &cookie, StatusCode::OK, Duration::from_secs(1)).await;
        }

        // A loaded machine may delay the peer's lease: ask until it serves from its cache.
        let (mut metrics, mut hits) = (String::new(), 0.0);
        for _ in 0..20 {
            eventually_status(&on_peer, &cookie, StatusCode::OK, Duration::from_secs(1)).await;
            metrics = peer.metrics().await;
            hits = metrics
                .lines()
                .find_map(|l| l.strip_prefix("latchkey_session_cache_lookups_total{result=\"hit\"} "))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if hits >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(hits >= 1.0, "the peer answered from its cache:\n{metrics}");

        app.logout().await;
        let logout_seen_after = eventually_status(&on_peer, &cookie, StatusCode::UNAUTHORIZED, Duration::from_secs(1)).await;

        // The same for a user disabled from the command line (another process).
        let again = session_cookie(app.login_test_user().await.headers()).unwrap();
        eventually_status(&on_peer, &again, StatusCode::OK, Duration::from_secs(1)).await;
        assert!(app.cli(&["user", "disable", TEST_USER], "").status.success());
        let disable_seen_after = eventually_status(&on_peer, &again, StatusCode::UNAUTHORIZED, Duration::from_secs(1)).await;
        eventually_status(&app.url("/protected"), &again, StatusCode::UNAUTHORIZED, Duration::from_secs(1)).await;
        assert!(logout_seen_after < Duration::from_secs(1) && disable_seen_after < Duration::from_secs(1));
    }

    async fn with_the_cache_off_revocation_is_immediate_everywhere(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.session_cache = false).await;
        let peer = app.start_peer().await;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();
        let on_peer = || reqwest::Client::new().get(format!("{}/protected", peer.address)).header("cookie", cookie.clone()).send();
        for _ in 0..3 {
            assert_eq!(on_peer().await.unwrap().status(), StatusCode::OK);
        }

        app.logout().await;

        assert_eq!(on_peer().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        let metrics = peer.metrics().await;
        assert!(metrics.contains("latchkey_session_cache_lookups_total{result=\"hit\"} 0"), "{metrics}");
    }

    async fn sessions_survive_a_restart_with_the_kept_key(backend: Backend) {
        let app = spawn_app(backend).await;
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();

        app.server.stop(true).await;
        let restarted = app.start_peer().await.address;

        let response = reqwest::Client::new()
            .get(format!("{restarted}/protected"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn the_sweep_removes_only_expired_sessions(backend: Backend) {
        use diesel::prelude::*;
        use latchkey::db::schema::sessions;
        let app = spawn_app_with(backend, |s| s.session_idle_timeout = Duration::from_secs(1)).await;
        for _ in 0..5 {
            new_client()
                .post(app.url("/login"))
                .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
                .send()
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        app.login_test_user().await; // one live session

        let removed = latchkey::sessions::store::sweep(&mut app.db.connect(), 2).unwrap();

        assert_eq!(removed, 5);
        let left: i64 = sessions::table.count().get_result(&mut app.db.connect()).unwrap();
        assert_eq!(left, 1);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
    }

    async fn the_audit_trail_records_events_without_secrets(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login(TEST_USER, "a wrong password").await;
        app.login("nobody_at_all", "another wrong one").await;
        app.login_test_user().await;
        app.logout().await;
        app.cli(&["user", "disable", TEST_USER], "");

        let all = app.cli(&["audit"], "");
        let mine = app.cli(&["audit", "--user", TEST_USER, "--limit", "2"], "");

        let all = String::from_utf8_lossy(&all.stdout).into_owned();
        for needle in ["login_failure", "bad_password", "unknown_user", "nobody_at_all", "login_success", "logout", "user_disabled", "127.0.0.1"] {
            assert!(all.contains(needle), "{needle} missing:\n{all}");
        }
        for secret in ["a wrong password", "another wrong one", TEST_PASSWORD, "$2b$"] {
            assert!(!all.contains(secret), "{secret} leaked:\n{all}");
        }
        let mine = String::from_utf8_lossy(&mine.stdout).into_owned();
        assert!(mine.contains("2 event(s)"), "{mine}");
        assert!(mine.contains("user_disabled") && !mine.contains("nobody_at_all"), "{mine}");
    }

    async fn concurrent_logins_and_logouts_wait_their_turn(backend: Backend) {
        // A logout reads the last session event before it deletes: on SQLite
        // a transaction that reads first fails at once ("database is locked",
        // 503) instead of waiting when another connection wrote meanwhile.
        let app = spawn_app(backend).await;
        let clients = (0..4).map(|_| {
            let url = app.address.clone();
            async move {
                let client = new_client();
                let mut refused = Vec::new();
                for _ in 0..50 {
                    let login = client
                        .post(format!("{url}/login"))
                        .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
                        .send()
                        .await
                        .unwrap();
                    let logout = client.post(format!("{url}/logout")).send().await.unwrap();
                    for (what, status) in [("login", login.status()), ("logout", logout.status())] {
                        if status != StatusCode::OK {
                            refused.push(format!("{what}: {status}"));
                        }
                    }
                }
                refused
            }
        });

        let refused: Vec<String> = futures_util::future::join_all(clients).await.concat();

        assert!(refused.is_empty(), "{} of 400 refused: {refused:?}", refused.len());
    }
}
