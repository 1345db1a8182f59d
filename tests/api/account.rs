//! The account: sessions listed, one revoked, all ended, password changed; JSON and forms.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// Logs the test user in from a new client with its own user agent.
async fn second_device(app: &TestApp) -> reqwest::Client {
    let client = new_client();
    let response = client
        .post(app.url("/login"))
        .header("user-agent", "second-device/2.0")
        .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    client
}

async fn status_of(client: &reqwest::Client, app: &TestApp, path: &str) -> StatusCode {
    client.get(app.url(path)).send().await.unwrap().status()
}

async fn sessions(app: &TestApp) -> Vec<Value> {
    let account = json_body(app.get("/account").await).await;
    account["sessions"].as_array().unwrap().clone()
}

both_backends! {
    async fn the_account_lists_sessions_and_marks_the_current_one(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        second_device(&app).await;

        let list = sessions(&app).await;

        assert_eq!(list.len(), 2);
        assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
        let other = list.iter().find(|s| s["current"] == false).unwrap();
        assert_eq!(other["user_agent"], "second-device/2.0");
        assert_eq!(other["device"], "Unknown device");
        assert_eq!(other["client_ip"], "127.0.0.1");
        for field in ["id", "created_at", "last_seen_at", "expires_at"] {
            assert!(other[field].is_string(), "{field}");
        }
        let unauthenticated = new_client().get(app.url("/account")).send().await.unwrap();
        assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    }

    async fn devices_are_named_in_words_beside_the_raw_user_agent(backend: Backend) {
        let app = spawn_app(backend).await;
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        let login = app.client.post(app.url("/login")).header("user-agent", firefox)
            .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
            .send().await.unwrap();
        assert_eq!(login.status(), StatusCode::OK);

        let list = sessions(&app).await;
        let page = app.get_page("/account").await.text().await.unwrap();

        assert_eq!(list[0]["user_agent"], firefox);
        assert_eq!(list[0]["device"], "Firefox on Linux");
        assert!(page.contains(&format!("title=\"{firefox}\">Firefox on Linux")), "{page}");
    }

    async fn revoking_a_session_signs_that_device_out(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let device = second_device(&app).await;
        let other_id = sessions(&app).await.into_iter().find(|s| s["current"] == false).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();

        let response = app.client.post(app.url(&format!("/account/sessions/{other_id}/revoke"))).send().await.unwrap();

        assert_json(response, StatusCode::OK, json!({"message": "Session revoked."})).await;
        assert_eq!(status_of(&device, &app, "/protected").await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        let again = app.client.post(app.url(&format!("/account/sessions/{other_id}/revoke"))).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
    }

    async fn nobody_can_revoke_another_users_session(backend: Backend) {
        let app = spawn_app(backend).await;
        add_user(&app.db, "mallory", "mallory's own password", TEST_BCRYPT_COST);
        app.login_test_user().await;
        let victim_id = sessions(&app).await[0]["id"].as_str().unwrap().to_owned();
        let mallory = new_client();
        mallory.post(app.url("/login")).json(&json!({"username": "mallory", "password": "mallory's own password"})).send().await.unwrap();

        let response = mallory.post(app.url(&format!("/account/sessions/{victim_id}/revoke"))).send().await.unwrap();

        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
    }

    async fn signing_out_everywhere_ends_every_session(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let device = second_device(&app).await;

        let response = app.client.post(app.url("/account/logout-everywhere")).send().await.unwrap();

        assert_json(response, StatusCode::OK, json!({"message": "Signed out everywhere."})).await;
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(&device, &app, "/protected").await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.session_rows(), 0);
    }

    async fn changing_the_password_ends_other_sessions_and_renews_this_one(backend: Backend) {
        let app = spawn_app(backend).await;
        let old_cookie = session_cookie(app.login_test_user().await.headers()).unwrap();
        let device = second_device(&app).await;
        let change = |current: &str, new: &str| {
            app.client
                .post(app.url("/account/password"))
                .json(&json!({"current_password": current, "new_password": new}))
                .send()
        };

        let wrong = change("not it", "a much better password").await.unwrap();
        let weak = change(TEST_PASSWORD, "password1").await.unwrap();
        let ok = change(TEST_PASSWORD, "a much better password").await.unwrap();

        assert_json(wrong, StatusCode::BAD_REQUEST, json!({"message": "Current password is incorrect."})).await;
        assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ok.status(), StatusCode::OK);
        let new_cookie = session_cookie(ok.headers()).expect("a fresh key");
        assert_ne!(new_cookie, old_cookie);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK, "this session goes on");
        assert_eq!(app.get_with_cookie("/protected", &old_cookie).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(&device, &app, "/protected").await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.login(TEST_USER, "a much better password").await.status(), StatusCode::OK);
    }

    async fn the_account_page_works_through_its_forms(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let device = second_device(&app).await;
        let page = app.get_page("/account").await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("This session") && html.contains("second-device/2.0"));
        let token = hidden_field(&html, "csrf_token").unwrap();
        // The revoke form that follows the device's entry.
        let device_entry = html.find("second-device/2.0").unwrap();
        let start = device_entry + html[device_entry..].find("/account/sessions/").unwrap();
        let revoke_path = html[start..start + html[start..].find('"').unwrap()].to_owned();

        let bad = app
            .post_form("/account/password", &[("csrf_token", &token), ("current_password", "nope"), ("new_password", "a much better password")])
            .await;
        let revoked = app.post_form(&revoke_path, &[("csrf_token", &token)]).await;
        let changed = app
            .post_form("/account/password", &[("csrf_token", &token), ("current_password", TEST_PASSWORD), ("new_password", "a much better password")])
            .await;
        let forged = app.post_form("/account/logout-everywhere", &[("csrf_token", "forged")]).await;

        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let bad = bad.text().await.unwrap();
        assert!(bad.contains("Current password is incorrect.") && bad.contains("aria-describedby=\"password-error\""));
        assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&revoked), "/account");
        assert_eq!(status_of(&device, &app, "/protected").await, StatusCode::UNAUTHORIZED);
        assert_eq!(changed.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&changed), "/account");
        let after = app.get_page("/account").await.text().await.unwrap();
        assert!(after.contains("Your password has been changed."));
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let everywhere = app.post_form("/account/logout-everywhere", &[("csrf_token", &token)]).await;
        assert_eq!(location(&everywhere), "/login");
        assert_eq!(app.session_rows(), 0);
    }

    async fn a_browser_must_log_in_to_see_the_account(backend: Backend) {
        let app = spawn_app(backend).await;

        let response = app.get_page("/account").await;

        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/login?next=%2Faccount");
    }
}
