//! The Flask tutorial's contract, exactly, over real HTTP.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn the_seed_flow_gives_the_seed_answers(backend: Backend) {
        let app = spawn_app(backend).await;

        let login = app.login(TEST_USER, TEST_PASSWORD).await;
        assert!(session_cookie(login.headers()).is_some());
        assert_json(
            login,
            StatusCode::OK,
            json!({"message": "Login successful!", "user_id": app.test_user_id.0}),
        )
        .await;

        assert_json(
            app.get("/protected").await,
            StatusCode::OK,
            json!({"message": "Hello, test_user! This is a protected route."}),
        )
        .await;

        assert_json(app.logout().await, StatusCode::OK, json!({"message": "Logout successful!"}))
            .await;

        let after = app.get("/protected").await;
        assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
        assert!(json_body(after).await["message"].is_string());
    }

    async fn wrong_password_and_unknown_user_get_the_same_answer(backend: Backend) {
        let app = spawn_app(backend).await;

        let wrong_password = app.login(TEST_USER, "not_the_password").await;
        let unknown_user = app.login("nobody_here", "not_the_password").await;

        assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(unknown_user.status(), StatusCode::UNAUTHORIZED);
        assert!(session_cookie(wrong_password.headers()).is_none());
        let expected = json!({"message": "Invalid username or password."});
        assert_eq!(json_body(wrong_password).await, expected);
        assert_eq!(json_body(unknown_user).await, expected);
        assert_eq!(app.session_rows(), 0);
    }

    async fn protected_without_a_cookie_is_401_json(backend: Backend) {
        let app = spawn_app(backend).await;

        let response = app.get("/protected").await;

        assert_json(
            response,
            StatusCode::UNAUTHORIZED,
            json!({"message": "Please log in to access this page."}),
        )
        .await;
    }

    async fn a_forged_cookie_is_refused(backend: Backend) {
        let app = spawn_app(backend).await;
        let login = app.login_test_user().await;
        let cookie = session_cookie(login.headers()).unwrap();

        // Same key, signature broken; and a made-up key.
        let tampered = format!("{}x", cookie);
        let invented = "latchkey_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

        for cookie in [tampered.as_str(), invented] {
            let response = app.get_with_cookie("/protected", cookie).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cookie}");
        }
    }

    async fn logout_makes_a_copied_cookie_worthless(backend: Backend) {
        let app = spawn_app(backend).await;
        let login = app.login_test_user().await;
        let copied = session_cookie(login.headers()).unwrap();
        assert_eq!(app.get_with_cookie("/protected", &copied).await.status(), StatusCode::OK);

        let logout = app.logout().await;

        assert_eq!(logout.status(), StatusCode::OK);
        assert_eq!(logout.headers()["clear-site-data"], "\"cache\"");
        assert_eq!(app.session_rows(), 0, "the row is deleted");
        let replayed = app.get_with_cookie("/protected", &copied).await;
        assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    }

    async fn login_replaces_the_session_key(backend: Backend) {
        let app = spawn_app(backend).await;
        let first = session_cookie(app.login_test_user().await.headers()).unwrap();

        // Log in again while presenting the first session.
        let second = session_cookie(app.login_test_user().await.headers()).unwrap();

        assert_ne!(first, second);
        assert_eq!(app.get_with_cookie("/protected", &first).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_with_cookie("/protected", &second).await.status(), StatusCode::OK);
        assert_eq!(app.session_rows(), 1);
    }

    async fn the_cookie_is_signed_httponly_lax_and_holds_only_a_key(backend: Backend) {
        let app = spawn_app(backend).await;

        let login = app.login_test_user().await;

        let line = set_cookie_line(login.headers()).unwrap();
        assert!(line.starts_with("latchkey_session="), "{line}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(line.contains(attribute), "{attribute} missing: {line}");
        }
        assert!(!line.contains("Domain"), "{line}");
        assert!(!line.contains("Max-Age"), "a browser-session cookie: {line}");
        assert!(!line.to_lowercase().contains("test_user"), "{line}");

        // The table holds a hash of the key, not the key.
        use diesel::prelude::*;
        use latchkey::db::schema::sessions;
        let hashes: Vec<String> = sessions::table
            .select(sessions::key_hash)
            .load(&mut app.db.connect())
            .unwrap();
        assert_eq!(hashes.len(), 1);
        let value = line.split(';').next().unwrap().trim_start_matches("latchkey_session=");
        assert!(!value.contains(&hashes[0]));
    }

    async fn secure_cookies_take_the_host_prefix(backend: Backend) {
        let app = spawn_app_with(backend, |s| s.cookie_secure = true).await;

        let login = app.login_test_user().await;

        let line = set_cookie_line(login.headers()).unwrap();
        assert!(line.starts_with("__Host-latchkey_session="), "{line}");
        assert!(line.contains("Secure"), "{line}");
        assert!(line.contains("Path=/"), "{line}");
        assert!(!line.contains("Domain"), "{line}");
    }

    async fn bad_login_bodies_get_a_clear_400(backend: Backend) {
        let app = spawn_app(backend).await;
        let bodies: [&[u8]; 9] = [
            b"{",
            b"[]",
            b"null",
            b"{\"username\": 1, \"password\": \"x\"}",
            b"{\"username\": \"test_user\"}",
            b"{\"password\": \"test_password\"}",
            b"\xff\xfe",
            b"{\"username\": \"\", \"password\": \"x\"}",
            b"{\"username\": \"a\\u0000b\", \"password\": \"x\"}",
        ];

        for body in bodies {
            let response = app
                .client
                .post(app.url("/login"))
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let label = String::from_utf8_lossy(body).to_string();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{label}");
            assert!(json_body(response).await["message"].is_string(), "{label}");
        }
        let too_long = app.login(&"a".repeat(51), "x").await;
        assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    }

    async fn bodies_must_say_what_they_are_and_stay_small(backend: Backend) {
        let app = spawn_app(backend).await;
        let post = |content_type: Option<&'static str>, body: Vec<u8>| {
            let mut request = app.client.post(app.url("/login")).body(body);
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            request.send()
        };

        let plain = post(Some("text/plain"), b"{}".to_vec()).await.unwrap();
        let untyped = post(None, b"{\"username\":\"a\"}".to_vec()).await.unwrap();
        let huge = post(Some("application/json"), vec![b' '; 17 * 1024]).await.unwrap();

        assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(untyped.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(json_body(huge).await["message"].is_string());
    }

    async fn a_password_beyond_72_bytes_never_matches(backend: Backend) {
        let app = spawn_app(backend).await;
        let password = "Zq8#vL2!".repeat(9); // exactly 72 bytes
        add_user(&app.db, "long_pw", &password, TEST_BCRYPT_COST);

        let longer = app.login("long_pw", &format!("{password}and more")).await;
        let exact = app.login("long_pw", &password).await;

        assert_eq!(longer.status(), StatusCode::UNAUTHORIZED, "bcrypt would truncate and match");
        assert_eq!(exact.status(), StatusCode::OK);
    }

    async fn a_hash_of_another_cost_is_replaced_at_login(backend: Backend) {
        let app = spawn_app(backend).await;
        add_user(&app.db, "old_hash", TEST_PASSWORD, TEST_BCRYPT_COST + 1);

        let login = app.login("old_hash", TEST_PASSWORD).await;

        assert_eq!(login.status(), StatusCode::OK);
        let user = latchkey::users::queries::find_by_username(&mut app.db.connect(), "old_hash")
            .unwrap()
            .unwrap();
        assert!(user.password_hash.starts_with("$2b$04$"), "rehashed at the configured cost");
        assert!(user.last_login_at.is_some());
        app.logout().await;
        assert_eq!(app.login("old_hash", TEST_PASSWORD).await.status(), StatusCode::OK);
    }

    async fn get_logout_logs_nobody_out(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;

        let response = app.get("/logout").await;

        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(app.get("/protected").await.status(), StatusCode::OK);
    }

    async fn logout_without_a_session_still_succeeds(backend: Backend) {
        let app = spawn_app(backend).await;

        let response = app.logout().await;

        assert_json(response, StatusCode::OK, json!({"message": "Logout successful!"})).await;
    }

    async fn health_and_readiness_answer(backend: Backend) {
        let app = spawn_app(backend).await;

        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
        assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
        let missing = app.get("/no/such/page").await;
        assert_json(missing, StatusCode::NOT_FOUND, json!({"message": "Not found."})).await;
    }

    async fn responses_are_never_cached(backend: Backend) {
        let app = spawn_app(backend).await;

        let login = app.login_test_user().await;
        let protected = app.get("/protected").await;

        assert_eq!(login.headers()["cache-control"], "no-store");
        assert_eq!(protected.headers()["cache-control"], "no-store");
    }
}
