//! Second factors: TOTP enrolment, login with a code or a recovery code,
//! replays, the pending login's limits, throttling, confirming identity,
//! forward auth. Codes are computed here from the secret, as an app would.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn totp(secret: &str) -> totp_rs::Totp {
    let bytes = totp_rs::Secret::try_from_base32(secret).expect("a base32 secret");
    totp_rs::Builder::new()
        .with_secret(bytes.as_ref().to_vec())
        .build()
        .expect("a TOTP")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The code the app shows `steps` steps from now (one step of drift is accepted).
pub fn code_at(secret: &str, steps: i64) -> String {
    let at = now().saturating_add_signed(steps * 30);
    totp(secret).generate(at).to_string()
}

/// Logs in and enrols an authenticator app: its secret and the recovery codes.
async fn enrol(app: &TestApp) -> (String, Vec<String>) {
    enrol_as(app, TEST_USER, TEST_PASSWORD).await
}

/// [`enrol`], as another user.
async fn enrol_as(app: &TestApp, username: &str, password: &str) -> (String, Vec<String>) {
    assert_eq!(app.login(username, password).await.status(), StatusCode::OK);
    let started = json_body(app.post_json("/account/totp", &json!({})).await).await;
    let secret = started["secret"].as_str().expect("a secret").to_owned();
    let url = started["otpauth_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("otpauth://totp/latchkey:{username}?secret=")),
        "{url}"
    );
    let confirmed = app
        .post_json(
            "/account/totp/confirm",
            &json!({"code": code_at(&secret, 0)}),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let codes: Vec<String> = json_body(confirmed).await["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    app.logout().await;
    (secret, codes)
}

async fn second_factor(app: &TestApp, code: &str) -> reqwest::Response {
    app.post_json("/login/second-factor", &json!({"code": code}))
        .await
}

fn required() -> Value {
    json!({"message": "Second factor required.", "second_factor": ["totp", "recovery_code"]})
}

fn enrol_first() -> Value {
    json!({"message": "Please set up a second factor.", "enrol": true})
}

/// Under `LATCHKEY_REQUIRE_SECOND_FACTOR`: starts and confirms an
/// authenticator app in this (enrolling) session; its secret and the
/// recovery codes.
async fn enrol_in_session(app: &TestApp) -> (String, Vec<String>) {
    let started = app.post_json("/account/totp", &json!({})).await;
    assert_eq!(started.status(), StatusCode::OK);
    let secret = json_body(started).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirmed = app
        .post_json(
            "/account/totp/confirm",
            &json!({"code": code_at(&secret, 0)}),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let codes = json_body(confirmed).await["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

/// How many audit rows of `user` name `event`.
fn audited(app: &TestApp, user: &str, event: &str) -> usize {
    let out = app.cli(&["audit", "--user", user, "--limit", "1000"], "");
    assert!(out.status.success(), "{}", output_text(&out));
    stdout(&out)
        .lines()
        .filter(|line| line.contains(event))
        .count()
}

both_backends! {
    async fn an_enrolment_under_way_does_not_outlive_a_login_as_someone_else(backend: Backend) {
        let app = spawn_app(backend).await;
        add_user(&app.db, "other_user", "other password 1", 4);
        app.login_test_user().await;
        let started = json_body(app.post_json("/account/totp", &json!({})).await).await;
        let secret = started["secret"].as_str().unwrap().to_owned();
        // Another user signs in in the same browser: the secret is not theirs.
        assert_eq!(app.login("other_user", "other password 1").await.status(), StatusCode::OK);
        let confirmed = app
            .post_json("/account/totp/confirm", &json!({"code": code_at(&secret, 0)}))
            .await;
        assert_eq!(confirmed.status(), StatusCode::BAD_REQUEST);
        let factors = json_body(app.get("/account").await).await["factors"].clone();
        assert_eq!(factors.as_array().unwrap().len(), 0);
    }

    async fn totp_secrets_are_resealed_at_start_after_a_key_rotation(backend: Backend) {
        let app = spawn_app(backend).await;
        let (secret, _) = enrol(&app).await;
        let old = app.settings.secret_key.clone().unwrap();
        let new = latchkey::config::SecretKey::generate();
        // Started with the new key and the old one as previous: it reseals.
        app.start_peer_with(|s| {
            s.secret_key = Some(new.clone());
            s.secret_key_previous = Some(old.clone());
        })
        .await;
        // The old key dropped, by a user who had not signed in meanwhile.
        let after = app.start_peer_with(|s| {
            s.secret_key = Some(new.clone());
            s.secret_key_previous = None;
        })
        .await;
        let client = new_client();
        let pending = post_login(&client, &after.address, TEST_USER, TEST_PASSWORD).await;
        assert_eq!(pending.status(), StatusCode::UNAUTHORIZED);
        let done = client
            .post(format!("{}/login/second-factor", after.address))
            .json(&json!({"code": code_at(&secret, 1)}))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::OK);
    }

    async fn a_totp_factor_is_enrolled_and_then_asked_for_at_login(backend: Backend) {
        let app = spawn_app(backend).await;
        let (secret, _) = enrol(&app).await;

        assert_json(app.login(TEST_USER, TEST_PASSWORD).await, StatusCode::UNAUTHORIZED, required()).await;
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        let wrong = second_factor(&app, "not a code").await;
        assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
        let code = code_at(&secret, 1);
        let wrong_code = if code == "123456" { "654321" } else { "123456" };
        assert_json(second_factor(&app, wrong_code).await, StatusCode::UNAUTHORIZED, json!({"message": "Invalid code."})).await;
        let done = second_factor(&app, &code).await;
        assert!(session_cookie(done.headers()).is_some(), "the key is renewed");
        assert_json(done, StatusCode::OK, json!({"message": "Login successful!", "user_id": app.test_user_id.0})).await;

        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        let verify = app.get("/auth/verify?second_factor=required").await;
        assert_eq!(verify.status(), StatusCode::OK);
        assert_eq!(verify.headers()["x-latchkey-second-factor"], "yes");
        let factors = json_body(app.get("/account").await).await["factors"].clone();
        assert_eq!(factors.as_array().unwrap().len(), 1);
        assert_eq!(factors[0]["kind"], "totp");
        assert!(factors[0]["last_used_at"].is_string());

        // The same code again, from another client: never accepted twice.
        let other = new_client();
        let pending = post_login(&other, &app.address, TEST_USER, TEST_PASSWORD).await;
        assert_eq!(pending.status(), StatusCode::UNAUTHORIZED);
        let replay = other.post(app.url("/login/second-factor")).json(&json!({"code": code})).send().await.unwrap();
        assert_json(replay, StatusCode::UNAUTHORIZED, json!({"message": "Invalid code."})).await;
    }

    async fn a_recovery_code_finishes_a_login_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let (_, codes) = enrol(&app).await;

        app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(second_factor(&app, &codes[0].to_uppercase()).await.status(), StatusCode::OK);
        let verify = app.get("/auth/verify").await;
        assert_eq!(verify.headers()["x-latchkey-second-factor"], "yes");
        app.logout().await;
        app.login(TEST_USER, TEST_PASSWORD).await;
        assert_json(second_factor(&app, &codes[0]).await, StatusCode::UNAUTHORIZED, json!({"message": "Invalid code."})).await;
        assert_eq!(second_factor(&app, &codes[1]).await.status(), StatusCode::OK);
    }

    async fn five_wrong_codes_end_the_pending_login(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.login_max_failures = 50).await;
        let (secret, _) = enrol(&app).await;
        app.login(TEST_USER, TEST_PASSWORD).await;
        let code = code_at(&secret, 1);
        let wrong_code = if code == "123456" { "654321" } else { "123456" };

        for _ in 0..5 {
            assert_eq!(second_factor(&app, wrong_code).await.status(), StatusCode::UNAUTHORIZED);
        }
        let after = second_factor(&app, &code).await;

        assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
        assert_ne!(json_body(after).await["message"], "Login successful!");
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        let out = app.cli(&["audit", "--user", TEST_USER], "");
        assert!(stdout(&out).contains("second_factor_lockout"), "{}", stdout(&out));
        assert!(stdout(&out).contains("second_factor_failed"));
    }

    async fn wrong_codes_count_as_failed_logins_across_pending_logins(backend: Backend) {
        let app = spawn_app(backend).await;
        let (secret, _) = enrol(&app).await;
        let code = code_at(&secret, 1);
        let wrong_code = if code == "123456" { "654321" } else { "123456" };

        // The password's try (1) and two wrong codes, twice: 6 > 5.
        let mut last = StatusCode::OK;
        for _ in 0..2 {
            let login = app.login(TEST_USER, TEST_PASSWORD).await.status();
            if login == StatusCode::TOO_MANY_REQUESTS { last = login; break; }
            for _ in 0..2 {
                last = second_factor(&app, wrong_code).await.status();
            }
        }

        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    async fn removing_the_last_factor_voids_the_recovery_codes(backend: Backend) {
        let app = spawn_app(backend).await;
        let (_, codes) = enrol(&app).await;
        app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(second_factor(&app, &codes[0]).await.status(), StatusCode::OK);
        let id = json_body(app.get("/account").await).await["factors"][0]["id"].as_i64().unwrap();

        let missing = app.post_json("/account/factors/999999/remove", &json!({})).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let removed = app.post_json(&format!("/account/factors/{id}/remove"), &json!({})).await;
        assert_json(removed, StatusCode::OK, json!({"message": "Second factor removed."})).await;
        let none = app.post_json("/account/recovery-codes", &json!({})).await;
        assert_eq!(none.status(), StatusCode::BAD_REQUEST);
        app.logout().await;

        assert_json(app.login(TEST_USER, TEST_PASSWORD).await, StatusCode::OK,
            json!({"message": "Login successful!", "user_id": app.test_user_id.0})).await;
        let verify = app.get("/auth/verify?second_factor=required").await;
        assert_eq!(verify.status(), StatusCode::FORBIDDEN);
    }

    async fn new_recovery_codes_void_the_old_ones(backend: Backend) {
        let app = spawn_app(backend).await;
        let (_, old) = enrol(&app).await;
        app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(second_factor(&app, &old[0]).await.status(), StatusCode::OK);

        let fresh = json_body(app.post_json("/account/recovery-codes", &json!({})).await).await;
        let fresh = fresh["recovery_codes"].as_array().unwrap().clone();
        app.logout().await;

        assert_eq!(fresh.len(), 10);
        app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(second_factor(&app, &old[1]).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(second_factor(&app, fresh[0].as_str().unwrap()).await.status(), StatusCode::OK);
    }

    async fn confirming_identity_needs_a_code_with_a_factor(backend: Backend) {
        let app = spawn_app(backend).await;
        let (_, codes) = enrol(&app).await;
        app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(second_factor(&app, &codes[0]).await.status(), StatusCode::OK);

        let without = app.post_json("/account/confirm", &json!({"password": TEST_PASSWORD})).await;
        assert_eq!(without.status(), StatusCode::BAD_REQUEST);
        let wrong = app.post_json("/account/confirm", &json!({"password": TEST_PASSWORD, "code": codes[0]})).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let right = app.post_json("/account/confirm", &json!({"password": TEST_PASSWORD, "code": codes[1]})).await;
        assert_eq!(right.status(), StatusCode::OK);
    }

    async fn enrolling_needs_a_confirmed_identity_and_a_right_code(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.reauth_window = std::time::Duration::ZERO).await;
        app.login_test_user().await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let stale = app.post_json("/account/totp", &json!({})).await;
        assert_eq!(stale.status(), StatusCode::FORBIDDEN);
        assert_eq!(json_body(stale).await["reauth"], true);

        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let early = app.post_json("/account/totp/confirm", &json!({"code": "123456"})).await;
        assert_eq!(early.status(), StatusCode::BAD_REQUEST);
        let started = json_body(app.post_json("/account/totp", &json!({})).await).await;
        let secret = started["secret"].as_str().unwrap();
        let code = code_at(secret, 0);
        let wrong_code = if code == "123456" { "654321" } else { "123456" };
        let wrong = app.post_json("/account/totp/confirm", &json!({"code": wrong_code})).await;
        assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
        let qr = app.get("/account/totp/qr.svg").await;
        assert_eq!(qr.status(), StatusCode::OK);
        assert_eq!(qr.headers()["content-type"], "image/svg+xml");
        let account = app.get_page("/account").await.text().await.unwrap();
        let csrf = hidden_field(&account, "csrf_token").unwrap();
        let page = app.post_form("/account/totp", &[("csrf_token", &csrf)]).await;
        let page = page.text().await.unwrap();
        assert!(page.contains("src=\"/account/totp/qr.svg\""), "{page}");
        assert!(json_body(app.get("/account").await).await["factors"].as_array().unwrap().is_empty());
        app.logout().await;
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
    }
}

both_backends! {
    async fn an_admin_lists_and_resets_a_users_factors(backend: Backend) {
        let app = spawn_app(backend).await;
        let (_, codes) = enrol(&app).await;
        app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(second_factor(&app, &codes[0]).await.status(), StatusCode::OK);

        let listed = app.cli(&["user", "factors", TEST_USER], "");
        assert!(listed.status.success(), "{}", output_text(&listed));
        assert!(stdout(&listed).contains("1 factor(s); 9 unused recovery code(s)"), "{}", stdout(&listed));
        let reset = app.cli(&["user", "reset-factors", TEST_USER], "");
        assert!(reset.status.success(), "{}", output_text(&reset));

        assert!(stdout(&reset).contains("removed 1 factor(s)"), "{}", stdout(&reset));
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
        let unknown = app.cli(&["user", "reset-factors", "nobody"], "");
        assert_fails_with(&unknown, "no user named");
    }
}

both_backends! {
    async fn a_required_second_factor_is_enrolled_before_anything_else(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.require_second_factor = true).await;

        let login = app.login(TEST_USER, TEST_PASSWORD).await;
        assert_json(login, StatusCode::FORBIDDEN, json!({"message": "Please set up a second factor.", "enrol": true})).await;
        assert_json(app.get("/protected").await, StatusCode::FORBIDDEN, json!({"message": "Please set up a second factor.", "enrol": true})).await;
        let page = app.get_page("/protected").await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        assert!(location(&page).starts_with("/account"), "{}", location(&page));
        let started = json_body(app.post_json("/account/totp", &json!({})).await).await;
        let secret = started["secret"].as_str().unwrap();
        let confirmed = app.post_json("/account/totp/confirm", &json!({"code": code_at(secret, 0)})).await;
        assert_eq!(confirmed.status(), StatusCode::OK);

        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        let verify = app.get("/auth/verify?second_factor=required").await;
        assert_eq!(verify.status(), StatusCode::OK);
    }

    async fn a_logout_or_a_password_change_ends_a_login_waiting_for_its_code(backend: Backend) {
        let app = spawn_app(backend).await;
        let (secret, _) = enrol(&app).await;
        let waiting = new_client();

        // Logging out on the second-factor page ends the pending login.
        assert_eq!(post_login(&waiting, &app.address, TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(waiting.post(app.url("/logout")).send().await.unwrap().status(), StatusCode::OK);
        let after_logout = waiting.post(app.url("/login/second-factor")).json(&json!({"code": code_at(&secret, 1)})).send().await.unwrap();
        assert_eq!(after_logout.status(), StatusCode::UNAUTHORIZED);

        // A password changed while a login waits (the victim reacting to a
        // phished password) voids it, even with a right code.
        assert_eq!(post_login(&waiting, &app.address, TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        let changed = app.cli(&["user", "passwd", TEST_USER, "--password-stdin"], "a brand new password\n");
        assert!(changed.status.success(), "{}", output_text(&changed));
        let after_change = waiting.post(app.url("/login/second-factor")).json(&json!({"code": code_at(&secret, 1)})).send().await.unwrap();
        assert_eq!(after_change.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(waiting.get(app.url("/protected")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}

both_backends! {
    async fn wrong_codes_sent_at_once_get_five_judgements_per_pending_login(backend: Backend) {
        // Throttles wide open: only the pending login's own limit is tested.
        let app = spawn_app_with(backend, |s| {
            s.login_max_failures = 100;
            s.login_max_failures_per_client = 100;
        })
        .await;
        let (secret, _) = enrol(&app).await;
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        let code = code_at(&secret, 1);
        let wrong_code = if code == "123456" { "654321" } else { "123456" };

        let tries = (0..12).map(|_| second_factor(&app, wrong_code));
        let answers = futures_util::future::join_all(tries).await;

        let mut judged = 0;
        for answer in answers {
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
            if json_body(answer).await["message"] == "Invalid code." {
                judged += 1;
            }
        }
        assert!(judged <= 5, "{judged} wrong codes judged for one pending login");
        assert_eq!(audited(&app, TEST_USER, "second_factor_failed"), judged);
        assert_eq!(audited(&app, TEST_USER, "second_factor_lockout"), 1);
        // The pending login is over: a right code no longer finishes it.
        let after = second_factor(&app, &code).await;
        assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
        assert_ne!(json_body(after).await["message"], "Login successful!");
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        // A new pending login has five of its own.
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        assert_json(second_factor(&app, wrong_code).await, StatusCode::UNAUTHORIZED, json!({"message": "Invalid code."})).await;
        assert_eq!(second_factor(&app, &code).await.status(), StatusCode::OK);
    }

    async fn the_last_factor_stays_while_one_is_required(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.require_second_factor = true).await;
        assert_json(app.login(TEST_USER, TEST_PASSWORD).await, StatusCode::FORBIDDEN, enrol_first()).await;
        let (_, codes) = enrol_in_session(&app).await;
        let id = json_body(app.get("/account").await).await["factors"][0]["id"].as_i64().unwrap();
        let last = "This account must keep a second factor: add another one before removing this one.";

        let refused = app.post_json(&format!("/account/factors/{id}/remove"), &json!({})).await;

        assert_json(refused, StatusCode::CONFLICT, json!({"message": last})).await;
        let account = app.get_page("/account").await.text().await.unwrap();
        let csrf = hidden_field(&account, "csrf_token").unwrap();
        let page = app.post_form(&format!("/account/factors/{id}/remove"), &[("csrf_token", &csrf)]).await;
        assert_eq!(page.status(), StatusCode::CONFLICT);
        let page = page.text().await.unwrap();
        assert!(page.contains("must keep a second factor"), "{page}");
        let missing = app.post_json("/account/factors/999999/remove", &json!({})).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_body(app.get("/account").await).await["factors"].as_array().unwrap().len(), 1);
        app.logout().await;
        assert_json(app.login(TEST_USER, TEST_PASSWORD).await, StatusCode::UNAUTHORIZED, required()).await;
        assert_eq!(second_factor(&app, &codes[0]).await.status(), StatusCode::OK);
    }

    async fn while_enrolling_only_the_enrolment_routes_answer(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.require_second_factor = true).await;
        assert_json(app.login(TEST_USER, TEST_PASSWORD).await, StatusCode::FORBIDDEN, enrol_first()).await;

        for path in ["/account", "/protected", "/account/tokens"] {
            assert_json(app.get(path).await, StatusCode::FORBIDDEN, enrol_first()).await;
        }
        let token = app.post_json("/account/tokens", &json!({"name": "ci", "expires_in_days": 1})).await;
        assert_json(token, StatusCode::FORBIDDEN, enrol_first()).await;
        let verify = app.get("/auth/verify").await;
        assert_eq!(verify.status(), StatusCode::UNAUTHORIZED);
        assert!(verify.headers().get("x-latchkey-user").is_none());
        assert_json(app.get("/auth/forward").await, StatusCode::FORBIDDEN, enrol_first()).await;
        let forward = app.get_page("/auth/forward").await;
        assert_eq!(forward.status(), StatusCode::FOUND);
        assert!(location(&forward).starts_with("http"), "{}", location(&forward));
        assert!(location(&forward).ends_with("/account"), "{}", location(&forward));
        let protected = app.get_page("/protected").await;
        assert_eq!(protected.status(), StatusCode::SEE_OTHER);
        assert!(location(&protected).starts_with("/account?"), "{}", location(&protected));
        // The enrolment page: the factor form, and nothing the rule keeps back.
        let page = app.get_page("/account").await;
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().await.unwrap();
        assert!(page.contains("action=\"/account/totp#factors\""), "{page}");
        assert!(!page.contains("action=\"/account/password\""), "{page}");
        assert!(!page.contains("action=\"/account/tokens\""), "{page}");
        assert!(page.contains("action=\"/logout\""), "{page}");

        enrol_in_session(&app).await;

        assert_eq!(json_body(app.get("/account").await).await["factors"].as_array().unwrap().len(), 1);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        assert_eq!(app.get("/account/tokens").await.status(), StatusCode::OK);
        let verify = app.get("/auth/verify?second_factor=required").await;
        assert_eq!(verify.status(), StatusCode::OK);
        assert_eq!(verify.headers()["x-latchkey-second-factor"], "yes");
        let page = app.get_page("/account").await.text().await.unwrap();
        assert!(page.contains("action=\"/account/password\""), "{page}");
    }

    async fn a_login_finished_with_a_code_says_the_password_is_breached(backend: Backend) {
        use crate::passwords::{breached_filter, BREACHED, NOTICE};
        let dir = tempfile::tempdir().unwrap();
        let filter = breached_filter(dir.path());
        let app = spawn_app_with(backend, |s| s.breached_passwords = Some(filter)).await;
        let dave = add_user(&app.db, "dave", BREACHED, TEST_BCRYPT_COST);
        let (_, codes) = enrol_as(&app, "dave", BREACHED).await;
        let before = audited(&app, "dave", "password_breached");

        assert_eq!(app.login("dave", BREACHED).await.status(), StatusCode::UNAUTHORIZED);
        let done = second_factor(&app, &codes[0]).await;

        assert_json(
            done,
            StatusCode::OK,
            json!({"message": "Login successful!", "user_id": dave.0, "password_breached": true}),
        )
        .await;
        assert_eq!(audited(&app, "dave", "password_breached"), before + 1);
        app.logout().await;
        // A browser: the notice on the page it lands on, once.
        let csrf = app.csrf_token().await;
        let login = app
            .post_form("/login", &[("csrf_token", &csrf), ("username", "dave"), ("password", BREACHED)])
            .await;
        assert_eq!(location(&login), "/login/second-factor");
        let page = app.get_page("/login/second-factor").await.text().await.unwrap();
        assert!(!page.contains(NOTICE), "not before the login is complete");
        let csrf = hidden_field(&page, "csrf_token").unwrap();
        let done = app
            .post_form("/login/second-factor", &[("csrf_token", &csrf), ("code", &codes[1])])
            .await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&done), "/protected");
        let page = app.get_page("/protected").await.text().await.unwrap();
        assert!(page.contains(NOTICE), "{page}");
        let again = app.get_page("/protected").await.text().await.unwrap();
        assert!(!again.contains(NOTICE), "shown once");
        assert_eq!(audited(&app, "dave", "password_breached"), before + 2);
        // The test user's password is not in the list: nothing said.
        let seed = new_client();
        assert_eq!(post_login(&seed, &app.address, TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
        assert_eq!(audited(&app, TEST_USER, "password_breached"), 0);
    }
}
