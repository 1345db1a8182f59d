//! Passkeys in a real browser: headless Chromium with its virtual
//! authenticator (the WebDriver WebAuthn extension), so `static/passkeys.js`
//! runs real ceremonies against the server — registration on the account
//! page, sign-in without a password, the second factor, confirming identity,
//! and a ceremony the person cancels.
//!
//! WebAuthn refuses an IP address as the relying party: the browser opens
//! the site as `http://localhost:PORT`, the default `LATCHKEY_PUBLIC_URL` of a
//! loopback test server.

use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::{json, Value};

use crate::browser::{browser, check_page, log_in, page_text, wait_for_path, Theme};
use crate::helpers::*;

/// A command of the WebDriver WebAuthn extension:
/// `{METHOD} /session/{id}/webauthn/{path}`.
#[derive(Debug)]
struct WebAuthnCommand {
    method: Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthnCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.expect("a WebDriver session");
        base_url.join(&format!("session/{session}/webauthn/{}", self.path))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

async fn webauthn(c: &Client, method: Method, path: String, body: Option<Value>) -> Value {
    let command = WebAuthnCommand { method, path, body };
    let what = format!("{command:?}");
    c.issue_cmd(command).await.expect(&what)
}

/// Adds a virtual platform authenticator (resident keys, user verification)
/// to the browser; its id. `verifying: false`: the person fails or cancels
/// the authenticator's own check (fingerprint, PIN), and the browser refuses
/// every ceremony at once with `NotAllowedError`. (`isUserConsenting: false`
/// would not do: Chromium then waits for the ceremony's timeout.)
async fn add_authenticator(c: &Client, verifying: bool) -> String {
    let added = webauthn(
        c,
        Method::POST,
        "authenticator".to_owned(),
        Some(json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": verifying,
            "isUserConsenting": true,
        })),
    )
    .await;
    match added {
        Value::String(id) => id,
        other => other["authenticatorId"]
            .as_str()
            .unwrap_or_else(|| panic!("authenticator id in {other}"))
            .to_owned(),
    }
}

async fn remove_authenticator(c: &Client, id: &str) {
    webauthn(c, Method::DELETE, format!("authenticator/{id}"), None).await;
}

/// Gives the authenticator a credential, as `credentials` lists them.
async fn add_credential(c: &Client, id: &str, credential: &Value) {
    webauthn(
        c,
        Method::POST,
        format!("authenticator/{id}/credential"),
        Some(credential.clone()),
    )
    .await;
}

/// The credentials the virtual authenticator holds.
async fn credentials(c: &Client, id: &str) -> Vec<Value> {
    let held = webauthn(
        c,
        Method::GET,
        format!("authenticator/{id}/credentials"),
        None,
    )
    .await;
    serde_json::from_value(held).expect("a list of credentials")
}

/// `path` on the test server as the browser must see it: on `localhost`.
fn local(app: &TestApp, path: &str) -> String {
    app.url(path).replace("127.0.0.1", "localhost")
}

/// The passkey button of the form `form`, once the page's script has shown it.
async fn passkey_button(c: &Client, form: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&format!(
            "#{form} button[data-passkey-options]:not([hidden])"
        )))
        .await
        .unwrap_or_else(|e| panic!("the passkey button of #{form}: {e}"))
}

async fn click_passkey_button(c: &Client, form: &str) {
    passkey_button(c, form).await.click().await.unwrap();
}

/// The text of the page's `role=alert` passkey error, once it is shown.
async fn passkey_error(c: &Client) -> String {
    let started = Instant::now();
    loop {
        let place = c.find(Locator::Css("#passkey-error")).await.unwrap();
        let hidden = place.attr("hidden").await.unwrap().is_some();
        let text = place.text().await.unwrap();
        if !hidden && !text.is_empty() {
            assert_eq!(place.attr("role").await.unwrap().as_deref(), Some("alert"));
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no passkey error shown at {}: {}",
            c.current_url().await.unwrap(),
            c.source().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Signs the test user in with the password (no second factor yet).
async fn log_in_with_password(c: &Client, app: &TestApp) {
    c.goto(&local(app, "/login")).await.unwrap();
    log_in(c, TEST_USER, TEST_PASSWORD).await;
    wait_for_path(c, "/protected").await;
}

/// On the account page (identity fresh after the login), names a passkey
/// and adds it: the page that answers shows the recovery codes.
async fn add_passkey(c: &Client, app: &TestApp, name: &str) {
    c.goto(&local(app, "/account")).await.unwrap();
    passkey_button(c, "passkey-register").await;
    let field = c.find(Locator::Css("#passkey_name")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(name).await.unwrap();
    click_passkey_button(c, "passkey-register").await;
    wait_for_path(c, "/account/passkeys").await;
    let codes = c
        .wait()
        .for_element(Locator::Css(".notice code.secret"))
        .await
        .map(|_| ());
    assert!(codes.is_ok(), "no recovery codes: {}", page_text(c).await);
}

async fn factor_names(c: &Client) -> Vec<String> {
    let mut names = Vec::new();
    for device in c
        .find_all(Locator::Css("ul[aria-labelledby=factors] .device"))
        .await
        .unwrap()
    {
        names.push(device.text().await.unwrap());
    }
    names
}

async fn log_out(c: &Client, app: &TestApp) {
    c.goto(&local(app, "/protected")).await.unwrap();
    c.find(Locator::Css("form[action='/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(c, "/login").await;
}

/// A browser with a consenting virtual authenticator, signed in with the
/// password, that has added the passkey "Laptop" and signed out again.
async fn enrolled(c: &Client, app: &TestApp) -> String {
    let authenticator = add_authenticator(c, true).await;
    log_in_with_password(c, app).await;
    add_passkey(c, app, "Laptop").await;
    log_out(c, app).await;
    authenticator
}

both_backends! {
    async fn a_passkey_added_in_the_browser_signs_in_without_a_password(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;
        let authenticator = add_authenticator(&c, true).await;
        log_in_with_password(&c, &app).await;

        add_passkey(&c, &app, "Work laptop").await;

        let codes = c.find_all(Locator::Css(".notice code.secret")).await.unwrap();
        assert_eq!(codes.len(), 10);
        let names = factor_names(&c).await;
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("Work laptop"), "{names:?}");
        assert!(names[0].contains("passkey"), "{names:?}");
        let held = credentials(&c, &authenticator).await;
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0]["isResidentCredential"], true, "{held:?}");
        assert_eq!(held[0]["rpId"], "localhost", "{held:?}");
        // The account page lists it too, the codes not again.
        c.goto(&local(&app, "/account")).await.unwrap();
        assert!(factor_names(&c).await[0].starts_with("Work laptop"));
        assert!(c.find(Locator::Css(".notice code.secret")).await.is_err());

        log_out(&c, &app).await;
        click_passkey_button(&c, "passkey-login").await;

        wait_for_path(&c, "/protected").await;
        assert!(page_text(&c).await.contains("Hello, test_user!"));
        c.close().await.unwrap();
    }

    async fn a_passkey_finishes_a_password_login_as_the_second_factor(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;
        enrolled(&c, &app).await;

        log_in(&c, TEST_USER, TEST_PASSWORD).await;
        wait_for_path(&c, "/login/second-factor").await;
        click_passkey_button(&c, "passkey-second-factor").await;

        wait_for_path(&c, "/protected").await;
        assert!(page_text(&c).await.contains("Hello, test_user!"));
        c.close().await.unwrap();
    }

    async fn a_passkey_confirms_identity_and_lands_on_the_next_page(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;
        enrolled(&c, &app).await;
        click_passkey_button(&c, "passkey-login").await;
        wait_for_path(&c, "/protected").await;

        c.goto(&local(&app, "/account/confirm?next=%2Faccount")).await.unwrap();
        assert_eq!(c.title().await.unwrap(), "Confirm it's you · latchkey");
        click_passkey_button(&c, "passkey-confirm").await;

        wait_for_path(&c, "/account").await;
        assert!(factor_names(&c).await[0].starts_with("Laptop"));
        c.close().await.unwrap();
    }

    async fn passkey_pages_pass_axe_core_in_the_light_and_dark_themes(backend: Backend) {
        if !require_file(&crate::browser::axe_path(), "axe-core", "npm ci") {
            return;
        }
        for theme in [Theme::Light, Theme::Dark] {
            let Some(c) = browser(theme).await else { return };
            let app = spawn_app(backend).await;
            add_authenticator(&c, true).await;
            c.goto(&local(&app, "/login")).await.unwrap();
            passkey_button(&c, "passkey-login").await;
            check_page(&c, "login-passkey", theme, backend).await;

            log_in(&c, TEST_USER, TEST_PASSWORD).await;
            wait_for_path(&c, "/protected").await;
            add_passkey(&c, &app, "Laptop").await;
            check_page(&c, "account-recovery-codes", theme, backend).await;

            c.goto(&local(&app, "/account")).await.unwrap();
            passkey_button(&c, "passkey-register").await;
            c.execute("document.getElementById('factors').scrollIntoView();", vec![])
                .await
                .unwrap();
            check_page(&c, "account-passkeys", theme, backend).await;

            c.goto(&local(&app, "/account/confirm?next=%2Faccount")).await.unwrap();
            passkey_button(&c, "passkey-confirm").await;
            check_page(&c, "confirm-passkey", theme, backend).await;

            log_out(&c, &app).await;
            log_in(&c, TEST_USER, TEST_PASSWORD).await;
            wait_for_path(&c, "/login/second-factor").await;
            passkey_button(&c, "passkey-second-factor").await;
            check_page(&c, "second-factor-passkey", theme, backend).await;
            c.close().await.unwrap();
        }
    }

    async fn a_cancelled_passkey_ceremony_shows_the_error_and_the_page_stays_usable(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;
        const CANCELLED: &str = "The passkey request was cancelled or timed out.";
        let refusing = add_authenticator(&c, false).await;
        log_in_with_password(&c, &app).await;

        // Adding one: the error, the button back; once the authenticator
        // agrees, the same page adds it.
        c.goto(&local(&app, "/account")).await.unwrap();
        click_passkey_button(&c, "passkey-register").await;
        assert_eq!(passkey_error(&c).await, CANCELLED);
        assert_eq!(c.current_url().await.unwrap().path(), "/account");
        assert!(factor_names(&c).await.is_empty());
        assert!(passkey_button(&c, "passkey-register").await.is_enabled().await.unwrap());
        remove_authenticator(&c, &refusing).await;
        let agreeing = add_authenticator(&c, true).await;
        click_passkey_button(&c, "passkey-register").await;
        wait_for_path(&c, "/account/passkeys").await;
        assert_eq!(c.find_all(Locator::Css(".notice code.secret")).await.unwrap().len(), 10);
        log_out(&c, &app).await;

        // Signing in: the passkey is there but the person cancels; the error,
        // the button back, and the password still leads on.
        let held = credentials(&c, &agreeing).await;
        assert_eq!(held.len(), 1, "{held:?}");
        remove_authenticator(&c, &agreeing).await;
        let refusing = add_authenticator(&c, false).await;
        add_credential(&c, &refusing, &held[0]).await;
        click_passkey_button(&c, "passkey-login").await;
        assert_eq!(passkey_error(&c).await, CANCELLED);
        assert_eq!(c.current_url().await.unwrap().path(), "/login");
        assert!(passkey_button(&c, "passkey-login").await.is_enabled().await.unwrap());
        log_in(&c, TEST_USER, TEST_PASSWORD).await;
        wait_for_path(&c, "/login/second-factor").await;

        // The second factor: refused, then given.
        click_passkey_button(&c, "passkey-second-factor").await;
        assert_eq!(passkey_error(&c).await, CANCELLED);
        assert_eq!(c.current_url().await.unwrap().path(), "/login/second-factor");
        remove_authenticator(&c, &refusing).await;
        let agreeing = add_authenticator(&c, true).await;
        add_credential(&c, &agreeing, &held[0]).await;
        click_passkey_button(&c, "passkey-second-factor").await;
        wait_for_path(&c, "/protected").await;
        c.close().await.unwrap();
    }
}
