//! Personal access tokens, confirming identity, and the forward-auth endpoints.

use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// The CSRF token of the account page's forms (the client is signed in).
async fn account_csrf(app: &TestApp) -> String {
    let page = app.get_page("/account").await.text().await.unwrap();
    hidden_field(&page, "csrf_token").expect("a csrf_token field")
}

async fn create_token(app: &TestApp, name: &str) -> reqwest::Response {
    app.post_json(
        "/account/tokens",
        &json!({"name": name, "expires_in_days": 30}),
    )
    .await
}

async fn new_token(app: &TestApp) -> (i64, String) {
    let response = create_token(app, "ci job").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = json_body(response).await;
    (
        body["id"].as_i64().unwrap(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

async fn with_bearer(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

both_backends! {
    async fn a_token_works_like_a_session_for_reading_and_never_for_changing_credentials(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;

        let created = create_token(&app, "ci job").await;

        assert_eq!(created.status(), StatusCode::CREATED);
        let body = json_body(created).await;
        let token = body["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("lk_") && token.len() >= 40, "{token}");
        assert_eq!(body["name"], "ci job");
        assert!(body["id"].is_number() && body["expires_at"].is_string());
        let base = app.address.clone();
        let get = reqwest::Method::GET;
        let protected = with_bearer(&base, get.clone(), "/protected", &token).await;
        assert_json(protected, StatusCode::OK, json!({"message": "Hello, test_user! This is a protected route."})).await;
        assert_eq!(with_bearer(&base, get.clone(), "/account", &token).await.status(), StatusCode::OK);
        let listed = json_body(with_bearer(&base, get, "/account/tokens", &token).await).await;
        assert_eq!(listed["tokens"].as_array().unwrap().len(), 1);
        assert!(!listed.to_string().contains(&token), "the secret is shown once only");
        for path in ["/account/password", "/account/tokens", "/account/logout-everywhere", "/account/tokens/1/revoke"] {
            let refused = with_bearer(&base, reqwest::Method::POST, path, &token).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let stored: i64 = diesel::RunQueryDsl::get_result(
            diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                "SELECT COUNT(*) FROM access_tokens WHERE token_hash = '{}'",
                latchkey::tokens::hash(&token)
            )),
            &mut app.db.connect(),
        )
        .unwrap();
        assert_eq!(stored, 1, "stored as its SHA-256");
    }

    async fn a_revoked_token_is_refused_at_once_on_every_instance(backend: Backend) {
        let app = spawn_app(backend).await;
        let instances = vec![app.address.clone(), app.start_peer().await.address, app.start_peer().await.address];
        app.login_test_user().await;
        for round in 0..5 {
            let (id, token) = new_token(&app).await;
            for base in &instances {
                for _ in 0..2 {
                    let warm = with_bearer(base, reqwest::Method::GET, "/protected", &token).await;
                    assert_eq!(warm.status(), StatusCode::OK);
                }
            }

            let revoked = app.post_json(&format!("/account/tokens/{id}/revoke"), &json!({})).await;

            assert_eq!(revoked.status(), StatusCode::OK);
            for (i, base) in instances.iter().enumerate() {
                let status = with_bearer(base, reqwest::Method::GET, "/protected", &token).await.status();
                // Refused; past a few refusals the client is throttled (429).
                assert!(
                    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS),
                    "round {round}, instance {i}: {status}"
                );
            }
        }
        let again = app.post_json("/account/tokens/999999/revoke", &json!({})).await;
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
    }

    async fn bad_and_expired_tokens_are_refused_and_throttled(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let (_, token) = new_token(&app).await;
        app.db
            .connect()
            .batch_execute("UPDATE access_tokens SET expires_at = '2001-01-01 00:00:00'")
            .unwrap();

        let expired = with_bearer(&app.address, reqwest::Method::GET, "/protected", &token).await;

        assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
        let mut statuses = Vec::new();
        for i in 0..6 {
            let guess = format!("lk_{}", "A".repeat(42) + &i.to_string());
            statuses.push(with_bearer(&app.address, reqwest::Method::GET, "/protected", &guess).await.status());
        }
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 2, "{statuses:?}");
        let audit = output_text(&app.cli(&["audit"], ""));
        assert!(audit.contains("token_refused") && audit.contains("token_created"), "{audit}");
    }

    async fn creating_a_token_needs_a_recent_login_or_a_confirmation(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.reauth_window = Duration::from_secs(1)).await;
        app.login_test_user().await;
        tokio::time::sleep(Duration::from_millis(2100)).await;

        let stale = create_token(&app, "later").await;

        assert_eq!(stale.status(), StatusCode::FORBIDDEN);
        assert_eq!(json_body(stale).await, json!({"message": "Please confirm your identity.", "reauth": true}));
        let wrong = app.post_json("/account/confirm", &json!({"password": "not it"})).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let confirmed = app.post_json("/account/confirm", &json!({"password": TEST_PASSWORD})).await;
        assert_eq!(confirmed.status(), StatusCode::OK);
        assert_eq!(create_token(&app, "later").await.status(), StatusCode::CREATED);
        // A browser is sent to the confirmation page instead.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let page = app.get_page("/account").await;
        assert_eq!(page.status(), StatusCode::OK);
        let token = account_csrf(&app).await;
        let form = app
            .client
            .post(app.url("/account/tokens"))
            .header("accept", HTML_ACCEPT)
            .form(&[("csrf_token", token.as_str()), ("name", "x"), ("expires_in_days", "5")])
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::SEE_OTHER);
        assert!(location(&form).starts_with("/account/confirm"), "{}", location(&form));
        let audit = output_text(&app.cli(&["audit"], ""));
        assert!(audit.contains("identity_confirmed") && audit.contains("identity_confirmation_failed"), "{audit}");
    }

    async fn a_token_page_shows_the_secret_once(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let token = account_csrf(&app).await;

        let created = app
            .client
            .post(app.url("/account/tokens"))
            .header("accept", HTML_ACCEPT)
            .form(&[("csrf_token", token.as_str()), ("name", "deploy script"), ("expires_in_days", "7")])
            .send()
            .await
            .unwrap();

        assert_eq!(created.status(), StatusCode::CREATED);
        let page = created.text().await.unwrap();
        let secret = page
            .split_once("class=\"secret\">")
            .and_then(|(_, rest)| rest.split_once('<'))
            .map(|(secret, _)| secret.to_owned())
            .expect("the new token on the page");
        assert!(secret.starts_with("lk_") && page.contains("deploy script"), "{secret}");
        assert_eq!(with_bearer(&app.address, reqwest::Method::GET, "/protected", &secret).await.status(), StatusCode::OK);
        let later = app.get_page("/account").await.text().await.unwrap();
        assert!(later.contains("deploy script") && !later.contains(&secret), "shown once");
    }

    async fn at_most_fifty_tokens_and_names_are_checked(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        for bad in [json!({"name": ""}), json!({"name": "x", "expires_in_days": 0}), json!({"name": "x", "expires_in_days": "soon"}), json!({"name": "a\u{7}b"})] {
            let refused = app.post_json("/account/tokens", &bad).await;
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        for i in 0..50 {
            assert_eq!(create_token(&app, &format!("t{i}")).await.status(), StatusCode::CREATED);
        }
        assert_eq!(create_token(&app, "one too many").await.status(), StatusCode::BAD_REQUEST);
    }

    async fn the_command_line_creates_lists_and_revokes_tokens(backend: Backend) {
        let app = spawn_app(backend).await;

        let created = app.cli(&["token", "create", TEST_USER, "--name", "backup", "--expires", "7d"], "");

        assert!(created.status.success(), "{}", output_text(&created));
        let token = String::from_utf8_lossy(&created.stdout).trim().to_owned();
        assert!(token.starts_with("lk_"));
        assert_eq!(with_bearer(&app.address, reqwest::Method::GET, "/protected", &token).await.status(), StatusCode::OK);
        let listed = app.cli(&["token", "list", TEST_USER], "");
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(listed.contains("backup") && !listed.contains(&token), "{listed}");
        let id = listed.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
        let revoked = app.cli(&["token", "revoke", TEST_USER, &id], "");
        assert!(revoked.status.success(), "{}", output_text(&revoked));
        assert_eq!(with_bearer(&app.address, reqwest::Method::GET, "/protected", &token).await.status(), StatusCode::UNAUTHORIZED);
        assert!(!app.cli(&["token", "revoke", TEST_USER, &id], "").status.success());
    }

    async fn forward_auth_answers_the_proxys_question(backend: Backend) {
        let app = spawn_app(backend).await;
        let verify = app.url("/auth/verify");
        let anonymous = reqwest::Client::new().get(&verify).header("accept", HTML_ACCEPT).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "never a redirect for nginx");
        let cookie = session_cookie(app.login_test_user().await.headers()).unwrap();

        for method in [reqwest::Method::GET, reqwest::Method::HEAD, reqwest::Method::POST] {
            let ok = reqwest::Client::new().request(method.clone(), &verify).header("cookie", &cookie).send().await.unwrap();
            assert_eq!(ok.status(), StatusCode::OK, "{method}");
            assert_eq!(ok.headers()["x-latchkey-user"], TEST_USER);
            assert_eq!(ok.headers()["x-latchkey-user-id"], app.test_user_id.to_string().as_str());
            assert_eq!(ok.headers()["x-latchkey-second-factor"], "no");
        }
        let stricter = reqwest::Client::new()
            .get(format!("{verify}?a=1&second_factor=required"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(stricter.status(), StatusCode::FORBIDDEN);
        let (_, token) = new_token(&app).await;
        let bearer = with_bearer(&app.address, reqwest::Method::GET, "/auth/verify", &token).await;
        assert_eq!(bearer.status(), StatusCode::OK);
        // Caddy and Traefik: a browser is sent to the login page.
        let browser = new_client().get(app.url("/auth/forward")).header("accept", HTML_ACCEPT).send().await.unwrap();
        assert_eq!(browser.status(), StatusCode::FOUND);
        let port = app.address.rsplit(':').next().unwrap();
        assert_eq!(location(&browser), format!("http://localhost:{port}/login"), "an untrusted peer's headers give no next");
        let program = reqwest::Client::new().get(app.url("/auth/forward")).send().await.unwrap();
        assert_eq!(program.status(), StatusCode::UNAUTHORIZED);
        let _: Value = json_body(program).await;
    }
}
