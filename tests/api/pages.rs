//! The browser side over plain HTTP: pages, forms, CSRF, Origin, headers, negotiation.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn the_login_page_is_a_complete_form_and_stores_no_session(backend: Backend) {
        let app = spawn_app(backend).await;

        let response = app.get_page("/login?next=%2Fprotected").await;

        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let csrf_cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("latchkey_csrf="));
        assert!(csrf_cookie, "a CSRF cookie is issued");
        assert!(session_cookie(response.headers()).is_none());
        let page = response.text().await.unwrap();
        for needle in [
            "<form method=\"post\" action=\"/login\">",
            "<label for=\"username\">",
            "<label for=\"password\">",
            "<label for=\"remember\">",
            "autocomplete=\"username\"",
            "autocomplete=\"current-password\"",
            "name=\"next\" value=\"/protected\"",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
        assert!(hidden_field(&page, "csrf_token").is_some_and(|t| t.len() > 20));
        // One script, a static file (the CSP allows no inline script).
        let scripts: Vec<&str> = page.split("<script").skip(1).collect();
        assert_eq!(scripts.len(), 1, "{page}");
        assert!(
            scripts[0].starts_with(" src=\"/static/passkeys.") && scripts[0].contains("defer></script>"),
            "{}",
            scripts[0]
        );
        assert_eq!(app.session_rows(), 0, "anonymous visitors cost no row");
    }

    async fn a_form_login_goes_to_a_safe_next(backend: Backend) {
        let app = spawn_app(backend).await;
        let token = app.csrf_token().await;

        let response = app
            .post_form("/login", &[
                ("csrf_token", &token),
                ("username", TEST_USER),
                ("password", TEST_PASSWORD),
                ("next", "/protected?tab=2"),
            ])
            .await;

        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/protected?tab=2");
        let page = app.get_page("/protected?tab=2").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("Hello, test_user!"));
    }

    async fn hostile_next_values_land_on_the_protected_page(backend: Backend) {
        let app = spawn_app(backend).await;
        let hostile = [
            "//evil.example", "/\\evil.example", "https://evil.example", "javascript:alert(1)",
            "/%2F%2Fevil.example", "/%5Cevil.example", "/\t/evil.example", "evil.example",
        ];

        // The token belongs to the CSRF cookie, so it outlives each login.
        let token = app.csrf_token().await;
        for next in hostile {
            let response = app
                .post_form("/login", &[
                    ("csrf_token", &token),
                    ("username", TEST_USER),
                    ("password", TEST_PASSWORD),
                    ("next", next),
                ])
                .await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next:?}");
            assert_eq!(location(&response), "/protected", "{next:?}");
        }
        // Nor does the page carry a hostile next into its form.
        let anon = new_client()
            .get(app.url("/login?next=%2F%2Fevil.example"))
            .header("accept", HTML_ACCEPT)
            .send()
            .await
            .unwrap();
        let page = anon.text().await.unwrap();
        assert_eq!(hidden_field(&page, "next").as_deref(), Some(""));
        assert!(!page.contains("evil.example"));
    }

    async fn a_failed_form_login_shows_the_form_again_with_the_username(backend: Backend) {
        let app = spawn_app(backend).await;
        let token = app.csrf_token().await;

        let response = app
            .post_form("/login", &[
                ("csrf_token", &token),
                ("username", TEST_USER),
                ("password", "the wrong one"),
                ("next", "/protected"),
            ])
            .await;

        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let page = response.text().await.unwrap();
        assert_eq!(page.matches("Invalid username or password.").count(), 1);
        assert!(page.contains("value=\"test_user\""));
        assert!(!page.contains("the wrong one"), "the password is not echoed");
        assert_eq!(hidden_field(&page, "next").as_deref(), Some("/protected"));
        assert!(page.contains("aria-describedby=\"login-error\""));
    }

    async fn forms_without_a_valid_csrf_token_are_refused(backend: Backend) {
        let app = spawn_app(backend).await;
        let token = app.csrf_token().await;
        let other_visitors_token = {
            let other = TestAppClient::new(&app);
            other.csrf_token().await
        };
        let creds = [("username", TEST_USER), ("password", TEST_PASSWORD)];

        let missing = app.post_form("/login", &creds).await;
        let forged = app.post_form("/login", &[creds[0], creds[1], ("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]).await;
        let someone_elses = app.post_form("/login", &[creds[0], creds[1], ("csrf_token", &other_visitors_token)]).await;
        let without_cookie = new_client()
            .post(app.url("/login"))
            .header("accept", HTML_ACCEPT)
            .form(&[creds[0], creds[1], ("csrf_token", &token)])
            .send()
            .await
            .unwrap();
        let logout_without_token = app.post_form("/logout", &[]).await;

        for response in [missing, forged, someone_elses, without_cookie, logout_without_token] {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(response.text().await.unwrap().contains("<h1 id=\"title\">Forbidden</h1>"));
        }
        assert_eq!(app.session_rows(), 0);
    }

    async fn posts_from_other_sites_are_refused_json_included(backend: Backend) {
        let app = spawn_app(backend).await;
        let body = json!({"username": TEST_USER, "password": TEST_PASSWORD});
        let post = |header: (&'static str, &'static str)| {
            app.client.post(app.url("/login")).header(header.0, header.1).json(&body).send()
        };

        let foreign = post(("origin", "https://evil.example")).await.unwrap();
        let other_port = post(("origin", "http://127.0.0.1:1")).await.unwrap();
        let null = post(("origin", "null")).await.unwrap();
        let cross_site = post(("sec-fetch-site", "cross-site")).await.unwrap();
        let same_origin = app
            .client
            .post(app.url("/login"))
            .header("origin", app.address.as_str())
            .header("sec-fetch-site", "same-origin")
            .json(&body)
            .send()
            .await
            .unwrap();

        for response in [foreign, other_port, null, cross_site] {
            assert_json(response, StatusCode::FORBIDDEN, json!({"message": "Requests from other sites are not accepted."})).await;
        }
        assert_eq!(same_origin.status(), StatusCode::OK);
    }

    async fn an_origin_of_another_scheme_is_another_site(backend: Backend) {
        let body = json!({"username": TEST_USER, "password": TEST_PASSWORD});
        let login_from = |app: &TestApp, scheme: &str| {
            let host = app.address.trim_start_matches("http://");
            reqwest::Client::new()
                .post(app.url("/login"))
                .header("origin", format!("{scheme}://{host}"))
                .json(&body)
                .send()
        };
        let plain = spawn_app(backend).await;
        // Secure cookies: the site is served over https (behind a TLS proxy).
        let secure = spawn_app_with(backend, |s| s.cookie_secure = true).await;

        let https_on_plain = login_from(&plain, "https").await.unwrap();
        let http_on_secure = login_from(&secure, "http").await.unwrap();
        let http_on_plain = login_from(&plain, "http").await.unwrap();
        let https_on_secure = login_from(&secure, "https").await.unwrap();

        for refused in [https_on_plain, http_on_secure] {
            assert_json(refused, StatusCode::FORBIDDEN, json!({"message": "Requests from other sites are not accepted."})).await;
        }
        assert_eq!(http_on_plain.status(), StatusCode::OK);
        assert_eq!(https_on_secure.status(), StatusCode::OK);
    }

    async fn a_browser_that_must_log_in_is_sent_to_the_login_page(backend: Backend) {
        let app = spawn_app(backend).await;

        let protected = app.get_page("/protected?tab=2").await;
        let root = app.get_page("/").await;

        assert_eq!(protected.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&protected), "/login?next=%2Fprotected%3Ftab%3D2");
        assert_eq!(root.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&root), "/login");
        app.login_test_user().await;
        assert_eq!(location(&app.get_page("/").await), "/protected");
        let login_again = app.get_page("/login").await;
        assert_eq!(login_again.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&login_again), "/protected");
    }

    async fn logging_out_by_form_shows_the_notice_once(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;
        let page = app.get_page("/protected").await.text().await.unwrap();
        let token = hidden_field(&page, "csrf_token").unwrap();

        let response = app.post_form("/logout", &[("csrf_token", &token)]).await;

        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/login");
        assert_eq!(response.headers()["clear-site-data"], "\"cache\"");
        assert_eq!(app.session_rows(), 0);
        let first = app.get_page("/login").await.text().await.unwrap();
        let second = app.get_page("/login").await.text().await.unwrap();
        assert_eq!(first.matches("You have been logged out.").count(), 1);
        assert!(!second.contains("You have been logged out."));
    }

    async fn every_error_is_a_page_for_browsers_and_json_for_programs(backend: Backend) {
        let app = spawn_app(backend).await;
        let cases: Vec<(StatusCode, reqwest::RequestBuilder, reqwest::RequestBuilder)> = vec![
            (StatusCode::NOT_FOUND, app.client.get(app.url("/nope")), app.client.get(app.url("/nope"))),
            (StatusCode::UNAUTHORIZED, app.client.post(app.url("/login")).json(&json!({"username": "x", "password": "y"})), app.client.post(app.url("/login")).json(&json!({"username": "x", "password": "y"}))),
            (StatusCode::FORBIDDEN, app.client.post(app.url("/logout")).header("origin", "https://evil.example"), app.client.post(app.url("/logout")).header("origin", "https://evil.example")),
            (StatusCode::METHOD_NOT_ALLOWED, app.client.delete(app.url("/login")), app.client.delete(app.url("/login"))),
            (StatusCode::PAYLOAD_TOO_LARGE, app.client.post(app.url("/login")).header("content-type", "application/json").body(vec![b' '; 20_000]), app.client.post(app.url("/login")).header("content-type", "application/json").body(vec![b' '; 20_000])),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, app.client.post(app.url("/logout")).header("content-type", "text/plain").body("x"), app.client.post(app.url("/logout")).header("content-type", "text/plain").body("x")),
            (StatusCode::BAD_REQUEST, app.client.post(app.url("/login")).header("content-type", "application/json").body("{"), app.client.post(app.url("/login")).header("content-type", "application/json").body("{")),
        ];

        for (status, as_browser, as_program) in cases {
            let page = as_browser.header("accept", HTML_ACCEPT).send().await.unwrap();
            let json = as_program.header("accept", "application/json").send().await.unwrap();

            assert_eq!(page.status(), status);
            assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{status}");
            assert!(page.headers().contains_key("content-security-policy"));
            let html = page.text().await.unwrap();
            assert!(html.contains("<h1 id=\"title\">"), "{status}: {html}");
            assert_eq!(json.status(), status);
            assert_eq!(json.headers()["content-type"], "application/json", "{status}");
            assert!(json_body(json).await["message"].is_string(), "{status}");
        }
    }

    async fn security_headers_are_on_every_response(backend: Backend) {
        let app = spawn_app(backend).await;

        let page = app.get_page("/login").await;

        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(page.headers()["x-content-type-options"], "nosniff");
        assert_eq!(page.headers()["referrer-policy"], "same-origin");
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert!(!page.headers().contains_key("strict-transport-security"), "plain http");

        let secure = spawn_app_with(backend, |s| s.cookie_secure = true).await;
        let page = secure.get_page("/login").await;
        assert!(page.headers()["strict-transport-security"].to_str().unwrap().contains("max-age="));
        let csrf = page.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).find(|c| c.contains("csrf")).unwrap();
        assert!(csrf.starts_with("__Host-latchkey_csrf=") && csrf.contains("Secure"), "{csrf}");
    }

    async fn the_stylesheet_is_served_by_the_app_and_cached_for_long(backend: Backend) {
        let app = spawn_app(backend).await;
        let page = app.get_page("/login").await.text().await.unwrap();
        let start = page.find("href=\"/static/").unwrap() + "href=\"".len();
        let href = &page[start..start + page[start..].find('"').unwrap()];

        let css = app.get(href).await;

        assert_eq!(css.status(), StatusCode::OK);
        assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
        assert!(css.headers()["cache-control"].to_str().unwrap().contains("max-age=31536000"));
        assert!(css.text().await.unwrap().contains(":focus-visible"));
        assert_eq!(app.get("/static/style.css").await.status(), StatusCode::NOT_FOUND);
    }

    async fn every_page_links_an_icon_that_is_served_and_cached_for_long(backend: Backend) {
        let app = spawn_app(backend).await;
        let page = app.get_page("/login").await.text().await.unwrap();
        let link = "<link rel=\"icon\" type=\"image/svg+xml\" href=\"";
        let start = page.find(link).expect("an icon link") + link.len();
        let href = &page[start..start + page[start..].find('"').unwrap()];

        let icon = app.get(href).await;
        let favicon_ico = app.get("/favicon.ico").await;

        assert!(href.starts_with("/static/favicon.") && href.ends_with(".svg"), "{href}");
        assert_eq!(icon.status(), StatusCode::OK);
        assert_eq!(icon.headers()["content-type"], "image/svg+xml");
        assert!(icon.headers()["cache-control"].to_str().unwrap().contains("max-age=31536000"));
        let svg = icon.text().await.unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(favicon_ico.status(), StatusCode::OK, "browsers ask for it by themselves");
        assert_eq!(favicon_ico.headers()["content-type"], "image/svg+xml");
        assert_eq!(favicon_ico.text().await.unwrap(), svg);
        assert_eq!(app.get("/static/favicon.svg").await.status(), StatusCode::NOT_FOUND);
    }

    async fn json_clients_get_json_from_the_page_routes(backend: Backend) {
        let app = spawn_app(backend).await;

        let login = app.get("/login").await;
        let curl_like = app.client.get(app.url("/protected")).header("accept", "*/*").send().await.unwrap();

        assert_eq!(login.status(), StatusCode::OK);
        assert!(json_body(login).await["message"].is_string());
        assert_eq!(curl_like.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(curl_like.headers()["content-type"], "application/json");
    }
}

/// Another browser against the same server (its own cookies).
struct TestAppClient<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> TestAppClient<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: new_client(),
        }
    }

    async fn csrf_token(&self) -> String {
        let page = self
            .client
            .get(self.app.url("/login"))
            .header("accept", HTML_ACCEPT)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        hidden_field(&page, "csrf_token").unwrap()
    }
}
