//! Passkeys and security keys (WebAuthn): registration, sign-in without a
//! password, a passkey as the second factor and to confirm identity, and
//! every refusal — with a software authenticator making real signatures over
//! the server's challenges (see `authenticator.rs`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::authenticator::SoftAuthenticator;
use crate::helpers::*;

/// The origin WebAuthn sees: the default `LATCHKEY_PUBLIC_URL` of a loopback
/// server is `http://localhost:PORT`.
fn origin(app: &TestApp) -> String {
    app.address.replace("127.0.0.1", "localhost")
}

fn login_success(app: &TestApp) -> Value {
    json!({"message": "Login successful!", "user_id": app.test_user_id.0})
}

async fn options(app: &TestApp, path: &str) -> Value {
    let response = app.post_json(path, &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    json_body(response).await
}

/// Registers a new passkey of the signed-in user; the answer's body.
async fn register(app: &TestApp, authenticator: &mut SoftAuthenticator, name: &str) -> Value {
    let creation = options(app, "/account/passkeys/options").await;
    let credential = authenticator.register(&creation);
    let response = app
        .post_json(
            "/account/passkeys",
            &json!({"name": name, "credential": credential}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    json_body(response).await
}

/// Signs the test user in, registers a passkey, and signs out.
async fn enrol(app: &TestApp) -> SoftAuthenticator {
    let mut authenticator = SoftAuthenticator::new(&origin(app));
    app.login_test_user().await;
    let first = register(app, &mut authenticator, "Laptop").await;
    assert_eq!(first["recovery_codes"].as_array().unwrap().len(), 10);
    app.logout().await;
    authenticator
}

async fn passkey_login(app: &TestApp, authenticator: &mut SoftAuthenticator) -> reqwest::Response {
    let request = options(app, "/login/passkey/options").await;
    let credential = authenticator.assert(&request);
    app.post_json("/login/passkey", &json!({"credential": credential}))
        .await
}

both_backends! {
    async fn a_passkey_is_registered_and_signs_in_without_a_password(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = SoftAuthenticator::new(&origin(&app));
        app.login_test_user().await;
        let creation = options(&app, "/account/passkeys/options").await;
        let public_key = &creation["publicKey"];
        assert_eq!(public_key["rp"]["id"], "localhost");
        assert_eq!(public_key["user"]["name"], TEST_USER);
        assert_eq!(public_key["authenticatorSelection"]["userVerification"], "required");
        assert_eq!(public_key["authenticatorSelection"]["residentKey"], "preferred");
        let credential = authenticator.register(&creation);
        let added = app
            .post_json("/account/passkeys", &json!({"name": "Laptop", "credential": credential}))
            .await;
        assert_eq!(added.status(), StatusCode::OK);
        assert_eq!(json_body(added).await["recovery_codes"].as_array().unwrap().len(), 10);
        let second = register(&app, &mut authenticator, "Phone").await;
        assert_eq!(second, json!({"message": "Passkey added."}));
        // The second registration excluded the first credential.
        let again = options(&app, "/account/passkeys/options").await;
        assert_eq!(again["publicKey"]["excludeCredentials"].as_array().unwrap().len(), 2);
        let factors = json_body(app.get("/account").await).await["factors"].clone();
        let names: Vec<&str> = factors.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Laptop", "Phone"]);
        assert!(factors.as_array().unwrap().iter().all(|f| f["kind"] == "passkey"));
        app.logout().await;

        let request = options(&app, "/login/passkey/options").await;
        assert_eq!(request["publicKey"]["userVerification"], "required");
        assert!(request["publicKey"]["allowCredentials"].as_array().is_none_or(Vec::is_empty));
        let credential = authenticator.assert(&request);
        let done = app.post_json("/login/passkey", &json!({"credential": credential})).await;
        assert!(session_cookie(done.headers()).is_some(), "the key is renewed");
        assert_json(done, StatusCode::OK, login_success(&app)).await;
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        let verify = app.get("/auth/verify?second_factor=required").await;
        assert_eq!(verify.status(), StatusCode::OK);
        assert_eq!(verify.headers()["x-latchkey-second-factor"], "yes");
        let factors = json_body(app.get("/account").await).await["factors"].clone();
        assert!(factors[0]["last_used_at"].is_string(), "{factors}");

        // The same answer again: its challenge was used.
        app.logout().await;
        let replay = app.post_json("/login/passkey", &json!({"credential": credential})).await;
        assert_json(replay, StatusCode::BAD_REQUEST, json!({"message": "The passkey request has expired or was used: ask for new options."})).await;
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        let audit = stdout(&app.cli(&["audit", "--user", TEST_USER], ""));
        assert!(audit.contains("passkey"), "{audit}");
    }

    async fn a_passkey_finishes_a_password_login(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        assert_json(
            app.login(TEST_USER, TEST_PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            json!({"message": "Second factor required.", "second_factor": ["passkey", "recovery_code"]}),
        ).await;
        let request = options(&app, "/login/second-factor/options").await;
        let allowed = request["publicKey"]["allowCredentials"].as_array().unwrap().clone();
        assert_eq!(allowed.len(), 1);
        let credential = authenticator.assert(&request);
        let done = app.post_json("/login/second-factor", &json!({"credential": credential})).await;
        assert_json(done, StatusCode::OK, login_success(&app)).await;
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);

        // No pending login: no options.
        let other = new_client();
        let refused = other.post(app.url("/login/second-factor/options")).json(&json!({})).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }

    async fn a_passkey_confirms_identity(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        let done = passkey_login(&app, &mut authenticator).await;
        assert_eq!(done.status(), StatusCode::OK);
        let request = options(&app, "/account/confirm/options").await;
        let credential = authenticator.assert(&request);
        assert_json(
            app.post_json("/account/confirm", &json!({"credential": credential})).await,
            StatusCode::OK,
            json!({"message": "Identity confirmed."}),
        ).await;
        // An answer without its options: refused, nothing confirmed.
        let stale = app.post_json("/account/confirm", &json!({"credential": credential})).await;
        assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
    }

    async fn wrong_passkeys_are_refused(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        let refused = json!({"message": "That passkey was not recognised."});
        // One use: the server has seen a signature count.
        assert_eq!(passkey_login(&app, &mut authenticator).await.status(), StatusCode::OK);
        app.logout().await;

        // Another site's page (phishing): the origin in the signed client data differs.
        let mut phished = SoftAuthenticator::new("http://login.example.evil");
        phished.credentials = authenticator.credentials.clone();
        assert_json(passkey_login(&app, &mut phished).await, StatusCode::UNAUTHORIZED, refused.clone()).await;

        // A credential the server never registered, claiming the test user.
        let mut stranger = SoftAuthenticator::new(&origin(&app));
        stranger.credentials = authenticator.credentials.clone();
        let other_options = json!({"publicKey": {"rp": {"id": "localhost"}, "user": {"id": "AAAAAAAAAAAAAAAAAAAAAQ"}, "challenge": "AAAA"}});
        stranger.register(&other_options);
        let request = options(&app, "/login/passkey/options").await;
        let forged = stranger.assert_with(1, &request);
        assert_json(app.post_json("/login/passkey", &json!({"credential": forged})).await, StatusCode::UNAUTHORIZED, refused.clone()).await;
        let audit = stdout(&app.cli(&["audit"], ""));
        assert!(audit.contains("passkey: not a registered credential"), "{audit}");

        // A registered credential naming another (real) user in its handle.
        let other = add_user(&app.db, "other_user", "other password 1", 4);
        let request = options(&app, "/login/passkey/options").await;
        let mut other_handle = authenticator.assert(&request);
        let handle = u128::try_from(other.0).unwrap().to_be_bytes();
        other_handle["response"]["userHandle"] = json!(URL_SAFE_NO_PAD.encode(handle));
        assert_json(app.post_json("/login/passkey", &json!({"credential": other_handle})).await, StatusCode::UNAUTHORIZED, refused.clone()).await;

        // A tampered signature.
        let request = options(&app, "/login/passkey/options").await;
        let mut tampered = authenticator.assert(&request);
        tampered["response"]["signature"] = json!("MEUCIQCAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIgAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_json(app.post_json("/login/passkey", &json!({"credential": tampered})).await, StatusCode::UNAUTHORIZED, refused.clone()).await;

        // A signature counter that went backwards: a cloned authenticator.
        authenticator.credentials[0].rewind_counter();
        assert_json(passkey_login(&app, &mut authenticator).await, StatusCode::UNAUTHORIZED, refused.clone()).await;
        authenticator.credentials[0].fast_forward_counter();

        // No options asked for: nothing to answer.
        let fresh = new_client();
        let request = options(&app, "/login/passkey/options").await;
        let unasked = authenticator.assert(&request);
        let response = fresh.post(app.url("/login/passkey")).json(&json!({"credential": unasked})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // Not a credential at all.
        options(&app, "/login/passkey/options").await;
        let malformed = app.post_json("/login/passkey", &json!({"credential": {"id": 3}})).await;
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);

        // A disabled user's passkey.
        assert!(app.cli(&["user", "disable", TEST_USER], "").status.success());
        assert_json(passkey_login(&app, &mut authenticator).await, StatusCode::UNAUTHORIZED, refused.clone()).await;
        assert!(app.cli(&["user", "enable", TEST_USER], "").status.success());

        // After all that, the right passkey still works.
        assert_json(passkey_login(&app, &mut authenticator).await, StatusCode::OK, login_success(&app)).await;
    }

    async fn a_credential_is_registered_once_across_accounts(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        passkey_login(&app, &mut authenticator).await;
        let creation = options(&app, "/account/passkeys/options").await;
        let duplicate = authenticator.register_again(0, &creation);
        assert_json(
            app.post_json("/account/passkeys", &json!({"credential": duplicate})).await,
            StatusCode::CONFLICT,
            json!({"message": "This passkey is registered already."}),
        ).await;
        let audit = stdout(&app.cli(&["audit", "--user", TEST_USER], ""));
        assert!(audit.contains("factor_enrolment_failed"), "{audit}");
        assert!(audit.contains("passkey: This passkey is registered already."), "{audit}");

        add_user(&app.db, "other_user", "other password 1", 4);
        let other = TestClient::new(&app);
        assert_eq!(other.login("other_user", "other password 1").await.status(), StatusCode::OK);
        let creation = other.options("/account/passkeys/options").await;
        let duplicate = authenticator.register_again(0, &creation);
        let response = other.post_json("/account/passkeys", &json!({"credential": duplicate})).await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        // An answer made for the other account's challenge does not fit this one.
        options(&app, "/account/passkeys/options").await;
        let wrong_challenge = authenticator.register(&other.options("/account/passkeys/options").await);
        let response = app.post_json("/account/passkeys", &json!({"credential": wrong_challenge})).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    async fn removing_a_passkey_stops_it_signing_in(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        passkey_login(&app, &mut authenticator).await;
        let factors = json_body(app.get("/account").await).await["factors"].clone();
        let id = factors[0]["id"].as_i64().unwrap();
        let removed = app.post_json(&format!("/account/factors/{id}/remove"), &json!({})).await;
        assert_eq!(removed.status(), StatusCode::OK);
        app.logout().await;
        let refused = passkey_login(&app, &mut authenticator).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        // The last factor gone: password only again, the recovery codes void.
        app.login_test_user().await;
    }

    async fn an_admin_lists_and_resets_passkeys(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        let listed = app.cli(&["user", "factors", TEST_USER], "");
        assert!(listed.status.success());
        let listed = stdout(&listed);
        assert!(listed.contains("passkey") && listed.contains("Laptop"), "{listed}");
        assert_eq!(passkey_login(&app, &mut authenticator).await.status(), StatusCode::OK);
        // A lost device: the admin removes every factor and ends the sessions.
        assert!(app.cli(&["user", "reset-factors", TEST_USER], "").status.success());
        assert_eq!(app.get("/protected").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(passkey_login(&app, &mut authenticator).await.status(), StatusCode::UNAUTHORIZED);
        app.login_test_user().await;
    }

    async fn a_passkey_sign_in_is_not_locked_out_by_password_guessing(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.login_max_failures = 3).await;
        let mut authenticator = enrol(&app).await;
        // A login waiting for its passkey when the guessing starts.
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        let request = options(&app, "/login/second-factor/options").await;
        let guesser = new_client();
        for _ in 0..4 {
            post_login(&guesser, &app.address, TEST_USER, "a wrong password").await;
        }
        // The passkey still finishes the waiting login...
        let credential = authenticator.assert(&request);
        let done = app.post_json("/login/second-factor", &json!({"credential": credential})).await;
        assert_json(done, StatusCode::OK, login_success(&app)).await;
        app.logout().await;
        // (Its success forgave this address's failures: every test client
        // is 127.0.0.1.) Guessing again locks passwords out...
        for _ in 0..4 {
            post_login(&guesser, &app.address, TEST_USER, "a wrong password").await;
        }
        // ...while a passkey alone signs in.
        let locked = app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_json(passkey_login(&app, &mut authenticator).await, StatusCode::OK, login_success(&app)).await;
    }

    async fn registering_a_passkey_completes_a_required_enrolment(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.require_second_factor = true).await;
        let mut authenticator = SoftAuthenticator::new(&origin(&app));
        let login = app.login(TEST_USER, TEST_PASSWORD).await;
        assert_eq!(login.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.get("/protected").await.status(), StatusCode::FORBIDDEN);
        let first = register(&app, &mut authenticator, "Laptop").await;
        assert_eq!(first["recovery_codes"].as_array().unwrap().len(), 10);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
        app.logout().await;
        // A passkey sign-in satisfies the requirement by itself.
        assert_json(passkey_login(&app, &mut authenticator).await, StatusCode::OK, login_success(&app)).await;
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
    }

    async fn registration_needs_a_recent_confirmation(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.reauth_window = std::time::Duration::from_secs(1)).await;
        app.login_test_user().await;
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let refused = app.post_json("/account/passkeys/options", &json!({})).await;
        assert_json(refused, StatusCode::FORBIDDEN, json!({"message": "Please confirm your identity.", "reauth": true})).await;
        let refused = app.post_json("/account/passkeys", &json!({"credential": {}})).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    async fn one_answer_signs_in_once_even_sent_twice_at_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        let request = options(&app, "/login/passkey/options").await;
        let credential = json!({"credential": authenticator.assert(&request)});
        // Both requests carry the session that holds the challenge.
        let (a, b) = tokio::join!(
            app.post_json("/login/passkey", &credential),
            app.post_json("/login/passkey", &credential),
        );
        // The other is refused: judged and found used (401), or it read the
        // session after the first took the challenge out (400).
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(statuses[0], StatusCode::OK);
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED].contains(&statuses[1]),
            "{statuses:?}"
        );

        // The same as a second factor.
        app.logout().await;
        app.login(TEST_USER, TEST_PASSWORD).await;
        let request = options(&app, "/login/second-factor/options").await;
        let credential = json!({"credential": authenticator.assert(&request)});
        let (a, b) = tokio::join!(
            app.post_json("/login/second-factor", &credential),
            app.post_json("/login/second-factor", &credential),
        );
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(statuses[0], StatusCode::OK);
        assert_ne!(statuses[1], StatusCode::OK);
    }

    async fn a_cloned_authenticator_is_refused_even_within_one_challenge(backend: Backend) {
        let app = spawn_app(backend).await;
        let mut authenticator = enrol(&app).await;
        // A copy of the authenticator, made now, and a second-factor challenge
        // asked for now (it carries the credential as stored now: count 0).
        let mut clone = SoftAuthenticator::new(&origin(&app));
        clone.credentials = authenticator.credentials.clone();
        let other = TestClient::new(&app);
        assert_eq!(other.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
        let request = other.options("/login/second-factor/options").await;
        // The owner signs in meanwhile: the stored count moves to 1.
        assert_eq!(passkey_login(&app, &mut authenticator).await.status(), StatusCode::OK);
        // The clone answers the earlier challenge with a count of 1: refused,
        // though the challenge's own copy of the credential had seen 0.
        let cloned = clone.assert(&request);
        let response = other.post_json("/login/second-factor", &json!({"credential": cloned})).await;
        assert_json(response, StatusCode::UNAUTHORIZED, json!({"message": "That passkey was not recognised."})).await;
    }

    async fn used_challenges_are_swept_once_their_ceremony_is_over(backend: Backend) {
        use diesel::connection::SimpleConnection as _;
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        db.connect()
            .batch_execute(
                "INSERT INTO used_challenges (challenge_hash, used_at) VALUES \
                 ('old', '2000-01-01 00:00:00'), ('recent', '2999-01-01 00:00:00')",
            )
            .unwrap();
        let app = spawn_app_on(db, |_| {}).await;
        let left = |hash: &'static str| {
            use diesel::prelude::*;
            use latchkey::db::schema::used_challenges;
            used_challenges::table
                .filter(used_challenges::challenge_hash.eq(hash))
                .count()
                .get_result::<i64>(&mut app.db.connect())
                .unwrap()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while left("old") > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(left("old"), 0, "swept at start");
        assert_eq!(left("recent"), 1);
    }

    async fn anonymous_passkey_challenges_are_limited_per_client(backend: Backend) {
        let app = spawn_app(backend).await;
        // Each challenge is a session row for a client that proved nothing: 30 a minute.
        for _ in 0..30 {
            let fresh = new_client();
            let response = fresh.post(app.url("/login/passkey/options")).json(&json!({})).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let refused = app.post_json("/login/passkey/options", &json!({})).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        assert_eq!(app.session_rows(), 30);
        // Rows no one is signed in to are kept 10 minutes, not the idle timeout.
        use diesel::prelude::*;
        use latchkey::db::schema::sessions;
        let latest = sessions::table
            .select(diesel::dsl::max(sessions::absolute_expires_at))
            .first::<Option<chrono::NaiveDateTime>>(&mut app.db.connect())
            .unwrap()
            .unwrap();
        assert!(latest <= chrono::Utc::now().naive_utc() + chrono::Duration::seconds(601), "{latest}");
    }

    async fn passkeys_are_off_on_an_ip_address(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.public_url = Some("http://127.0.0.1:8080".parse().unwrap())).await;
        assert_eq!(app.post_json("/login/passkey/options", &json!({})).await.status(), StatusCode::NOT_FOUND);
        let page = app.get_page("/login").await.text().await.unwrap();
        assert!(!page.contains("data-passkey-options"), "{page}");
        app.login_test_user().await;
        assert_eq!(app.post_json("/account/passkeys/options", &json!({})).await.status(), StatusCode::NOT_FOUND);
    }
}

/// A second signed-in client of the same server.
struct TestClient<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> TestClient<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: new_client(),
        }
    }

    async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        post_login(&self.client, &self.app.address, username, password).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.app.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn options(&self, path: &str) -> Value {
        let response = self.post_json(path, &json!({})).await;
        assert_eq!(response.status(), StatusCode::OK);
        json_body(response).await
    }
}
