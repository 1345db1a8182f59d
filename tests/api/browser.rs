//! A person in a real browser: headless Chromium driven over WebDriver.
//!
//! Needs Debian's `chromium` and `chromium-driver`, and axe-core from
//! `npm ci` (`.ci/run` installs them all); where one is missing, the tests
//! that need it are not run (see `helpers::require`). One chromedriver serves
//! the whole test process and stops when it exits.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::factors::code_at;
use crate::helpers::*;
use crate::welcome::{link, NEW_PASSWORD};

static DRIVER_URL: OnceLock<String> = OnceLock::new();
static AXE_SOURCE: OnceLock<String> = OnceLock::new();

const CHROMIUM_APT: &str = "chromium chromium-driver";

fn driver_url(driver: &Path) -> &'static str {
    DRIVER_URL.get_or_init(|| {
        let port = free_port();
        // chromedriver, stopped once this test process is gone.
        until_this_process_exits(
            &format!(
                "'{}' --port={port} >/dev/null 2>&1 & child=$!;",
                driver.display()
            ),
            "kill $child",
        );
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("http://127.0.0.1:{port}")
    })
}

pub(crate) fn axe_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/axe-core/axe.min.js")
}

fn axe_source() -> &'static str {
    AXE_SOURCE.get_or_init(|| std::fs::read_to_string(axe_path()).expect("axe-core"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Theme {
    Light,
    Dark,
}

/// How a browser is set up: the system's theme, and whether pages may run
/// scripts at all.
#[derive(Debug, Clone, Copy)]
struct Setup {
    theme: Theme,
    javascript: bool,
}

/// The walks through the pages: light and dark (screenshots of both), then
/// light without JavaScript (every page is a plain form, and works so).
const WALKS: [Setup; 3] = [
    Setup {
        theme: Theme::Light,
        javascript: true,
    },
    Setup {
        theme: Theme::Dark,
        javascript: true,
    },
    Setup {
        theme: Theme::Light,
        javascript: false,
    },
];

/// A headless Chromium session whose system theme is `theme`, or `None` (the
/// test is not run) when Chromium or chromedriver is not installed.
pub(crate) async fn browser(theme: Theme) -> Option<Client> {
    browser_with(Setup {
        theme,
        javascript: true,
    })
    .await
}

/// Like [`browser`], set up as `setup` says.
async fn browser_with(setup: Setup) -> Option<Client> {
    let theme = setup.theme;
    if !(require("chromium", CHROMIUM_APT) && require("chromedriver", CHROMIUM_APT)) {
        return None;
    }
    let chromium = find_program("chromium")?;
    let driver = find_program("chromedriver")?;
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1024,768",
    ];
    if theme == Theme::Dark {
        // As a system set to dark: pages see `prefers-color-scheme: dark`.
        args.push("--force-dark-mode");
    }
    let mut options = json!({ "binary": chromium, "args": args });
    if !setup.javascript {
        // The pages' scripts are blocked; WebDriver's own (axe-core too) still run.
        options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let serde_json::Value::Object(capabilities) = json!({ "goog:chromeOptions": options }) else {
        unreachable!()
    };
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url(&driver))
        .await
        .expect("a Chromium session");
    // Where scripting is off, `<noscript>` holds elements rather than text.
    let scripting = client
        .execute(
            "const probe = document.createElement('div');
             probe.innerHTML = '<noscript><i></i></noscript>';
             return probe.querySelector('i') === null;",
            vec![],
        )
        .await
        .expect("probe scripting");
    assert_eq!(scripting, json!(setup.javascript), "scripting in {setup:?}");
    Some(client)
}

/// Waits until the browser shows `path` (after a redirect, a form post).
pub(crate) async fn wait_for_path(c: &Client, path: &str) -> url::Url {
    let started = Instant::now();
    loop {
        let url = c.current_url().await.expect("current url");
        if url.path() == path {
            return url;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still at {url}, wanted {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fills in the login form (over what it holds: the page keeps the username
/// after a failure) and sends it.
pub(crate) async fn log_in(c: &Client, username: &str, password: &str) {
    for (field, value) in [("#username", username), ("#password", password)] {
        let input = c.find(Locator::Css(field)).await.unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub(crate) async fn page_text(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// axe-core finds no violation on the current page.
async fn assert_accessible(c: &Client, what: &str) {
    c.execute(axe_source(), vec![])
        .await
        .expect("inject axe-core");
    let violations = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document)
               .then(r => done(r.violations.map(v => `${v.id}: ${v.help} (${v.nodes.length})`)))
               .catch(e => done([`axe failed: ${e}`]));",
            vec![],
        )
        .await
        .expect("run axe-core");
    let violations: Vec<String> = serde_json::from_value(violations).unwrap();
    assert!(violations.is_empty(), "{what}: {violations:#?}");
}

async fn screenshot(c: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

fn label(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    }
}

/// Tab goes through the page's controls in document order (no positive
/// `tabindex`, nothing invisible in the way), each drawn with a focus outline.
async fn assert_keyboard_follows_the_page(c: &Client, what: &str) {
    const CONTROLS: &str = "const controls = [...document.querySelectorAll(
           'a[href], button, input, select, textarea, [tabindex]')]
         .filter(e => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0);";
    let count = c
        .execute(
            &format!("{CONTROLS} controls[0]?.focus(); return controls.length;"),
            vec![],
        )
        .await
        .expect("the page's controls");
    let count = count.as_u64().expect("a count");
    let tab = KeyActions::new("keyboard".into())
        .then(KeyAction::Down {
            value: Key::Tab.into(),
        })
        .then(KeyAction::Up {
            value: Key::Tab.into(),
        });
    for expected in 1..count {
        c.perform_actions(tab.clone()).await.expect("press Tab");
        let focused = c
            .execute(
                &format!(
                    "{CONTROLS} const e = document.activeElement;
                     return [controls.indexOf(e), e.outerHTML.slice(0, 120),
                             getComputedStyle(e).outlineStyle];"
                ),
                vec![],
            )
            .await
            .expect("the focused control");
        assert_eq!(
            focused[0], expected,
            "{what}: Tab number {expected} reached {}",
            focused[1]
        );
        assert_ne!(
            focused[2], "none",
            "{what}: no focus outline on {}",
            focused[1]
        );
    }
}

/// The page passes axe-core and the keyboard test, and its screenshot lands
/// in `target/screenshots/` (`login-postgres.png`, `login-dark-postgres.png`, ...).
pub(crate) async fn check_page(c: &Client, page: &str, theme: Theme, backend: Backend) {
    let what = format!("{page} page, {theme:?} theme");
    assert_accessible(c, &what).await;
    let suffix = if theme == Theme::Dark { "-dark" } else { "" };
    screenshot(c, &format!("{page}{suffix}-{}", label(backend))).await;
    assert_keyboard_follows_the_page(c, &what).await;
}

/// [`check_page`] on a walk. Without JavaScript, the keyboard test only:
/// axe-core cannot finish where the page's timers never fire.
async fn check_walk_page(c: &Client, page: &str, setup: Setup, backend: Backend) {
    if setup.javascript {
        return check_page(c, page, setup.theme, backend).await;
    }
    let what = format!("{page} page without JavaScript");
    assert_keyboard_follows_the_page(c, &what).await;
}

/// Clicks the button that reads `text`.
async fn click_button(c: &Client, text: &str) {
    c.find(Locator::XPath(&format!(
        "//button[normalize-space()='{text}']"
    )))
    .await
    .unwrap_or_else(|e| panic!("a button {text:?}: {e}"))
    .click()
    .await
    .unwrap();
}

/// Types `value` into the field `css`, over what it holds.
async fn fill(c: &Client, css: &str, value: &str) {
    let input = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("a field {css}: {e}"));
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    let element = c.find(Locator::Css(css)).await.unwrap();
    element.attr(name).await.unwrap()
}

/// The id of the element that has the focus.
async fn focused_id(c: &Client) -> String {
    let element = c.active_element().await.unwrap();
    element.attr("id").await.unwrap().unwrap_or_default()
}

/// Waits until the image `src` has loaded and is drawn (not broken).
async fn wait_for_image(c: &Client, src: &str) {
    let started = Instant::now();
    loop {
        let loaded = c
            .execute(
                "const img = document.querySelector(`img[src='${arguments[0]}']`);
                 return !!img && img.complete && img.naturalWidth > 0;",
                vec![json!(src)],
            )
            .await
            .expect("image state");
        if loaded == json!(true) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{src} is not drawn"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A code of the right shape that is not `code`.
fn other_code(code: &str) -> &'static str {
    if code == "123456" {
        "654321"
    } else {
        "123456"
    }
}

/// The theme the page is drawn in: the stylesheet's `color-scheme`.
async fn drawn_theme(c: &Client) -> Theme {
    let scheme = c
        .execute(
            "return getComputedStyle(document.documentElement).colorScheme;",
            vec![],
        )
        .await
        .expect("color-scheme");
    if scheme == "dark" {
        Theme::Dark
    } else {
        Theme::Light
    }
}

/// Requests the app answered with `404`, from its metrics.
async fn not_found_count(app: &TestApp) -> f64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .filter(|l| l.starts_with("latchkey_http_requests_total") && l.contains("status=\"404\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

both_backends! {
    async fn a_person_logs_in_and_lands_on_the_greeting(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;
        c.goto(&app.url("/")).await.unwrap();
        wait_for_path(&c, "/login").await;
        assert_eq!(c.title().await.unwrap(), "Log in · latchkey");

        log_in(&c, TEST_USER, TEST_PASSWORD).await;

        wait_for_path(&c, "/protected").await;
        let heading = c.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
        assert_eq!(heading, "Hello, test_user!");
        c.find(Locator::LinkText("Your account and sessions")).await.unwrap().click().await.unwrap();
        wait_for_path(&c, "/account").await;
        let device = c.find(Locator::Css(".sessions .device")).await.unwrap();
        assert_eq!(device.text().await.unwrap(), "Chrome on Linux This session");
        let agent = c.execute("return navigator.userAgent;", vec![]).await.unwrap();
        assert_eq!(device.attr("title").await.unwrap().as_deref(), agent.as_str());
        c.close().await.unwrap();
    }

    async fn a_wrong_password_shows_the_error_and_keeps_the_username(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;
        c.goto(&app.url("/login")).await.unwrap();

        log_in(&c, TEST_USER, "not my password").await;

        let error = c.wait().for_element(Locator::Css("#login-error")).await.unwrap();
        assert_eq!(error.text().await.unwrap(), "Invalid username or password.");
        let username = c.find(Locator::Css("#username")).await.unwrap();
        assert_eq!(username.prop("value").await.unwrap().as_deref(), Some(TEST_USER));
        let password = c.find(Locator::Css("#password")).await.unwrap();
        assert_eq!(password.prop("value").await.unwrap().as_deref(), Some(""));

        c.goto(&app.url("/no/such/page")).await.unwrap();
        assert!(page_text(&c).await.contains("Page not found"));
        c.close().await.unwrap();
    }

    async fn every_page_passes_axe_core_in_the_light_and_dark_themes(backend: Backend) {
        if !require_file(&axe_path(), "axe-core", "npm ci") {
            return;
        }
        let app = spawn_app(backend).await;
        for theme in [Theme::Light, Theme::Dark] {
            let Some(c) = browser(theme).await else { return };
            c.goto(&app.url("/login")).await.unwrap();
            assert_eq!(drawn_theme(&c).await, theme);
            check_page(&c, "login", theme, backend).await;

            log_in(&c, TEST_USER, "not my password").await;
            c.wait().for_element(Locator::Css("#login-error")).await.unwrap();
            check_page(&c, "login-error", theme, backend).await;

            log_in(&c, TEST_USER, TEST_PASSWORD).await;
            wait_for_path(&c, "/protected").await;
            check_page(&c, "protected", theme, backend).await;

            c.goto(&app.url("/account")).await.unwrap();
            check_page(&c, "account", theme, backend).await;

            c.goto(&app.url("/no/such/page")).await.unwrap();
            check_page(&c, "error", theme, backend).await;
            c.close().await.unwrap();
        }
        // The icon is linked and served: the only 404s are the two visits above.
        assert_eq!(not_found_count(&app).await, 2.0);
    }

    async fn a_deep_link_comes_back_after_login(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;

        c.goto(&app.url("/protected?tab=2")).await.unwrap();
        wait_for_path(&c, "/login").await;
        log_in(&c, TEST_USER, TEST_PASSWORD).await;

        let url = wait_for_path(&c, "/protected").await;
        assert_eq!(url.query(), Some("tab=2"));
        assert!(page_text(&c).await.contains("Hello, test_user!"));
        c.close().await.unwrap();
    }

    async fn logout_shows_the_notice_once_and_back_shows_nothing_private(backend: Backend) {
        let Some(c) = browser(Theme::Light).await else { return };
        let app = spawn_app(backend).await;
        c.goto(&app.url("/login")).await.unwrap();
        log_in(&c, TEST_USER, TEST_PASSWORD).await;
        wait_for_path(&c, "/protected").await;

        c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();

        wait_for_path(&c, "/login").await;
        let notice = c.wait().for_element(Locator::Css(".notice")).await.unwrap();
        assert_eq!(notice.text().await.unwrap(), "You have been logged out.");
        c.refresh().await.unwrap();
        assert!(!page_text(&c).await.contains("You have been logged out."), "shown once");

        c.back().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = page_text(&c).await;
        assert!(!text.contains("Hello, test_user"), "back showed: {text}");
        wait_for_path(&c, "/login").await;
        assert_eq!(app.session_rows(), 0);
        c.close().await.unwrap();
    }

    async fn a_person_sets_up_an_authenticator_app_and_logs_in_with_it(backend: Backend) {
        if !require_file(&axe_path(), "axe-core", "npm ci") {
            return;
        }
        for setup in WALKS {
            let Some(c) = browser_with(setup).await else { return };
            let check = |page: &'static str| check_walk_page(&c, page, setup, backend);
            let app = spawn_app(backend).await;
            c.goto(&app.url("/login")).await.unwrap();
            log_in(&c, TEST_USER, TEST_PASSWORD).await;
            wait_for_path(&c, "/protected").await;
            c.find(Locator::LinkText("Your account and sessions")).await.unwrap().click().await.unwrap();
            wait_for_path(&c, "/account").await;

            // Enrolling: the QR code and the key, a wrong code, the right one;
            // each answer opens at its own section of the page.
            click_button(&c, "Set up an authenticator app").await;
            let url = wait_for_path(&c, "/account/totp").await;
            assert_eq!(url.fragment(), Some("factors"));
            wait_for_image(&c, "/account/totp/qr.svg").await;
            let secret = text_of(&c, ".card .card code.secret").await;
            assert_eq!(attr(&c, "#totp_code", "autocomplete").await.as_deref(), Some("one-time-code"));
            check("account-factors").await;
            let code = code_at(&secret, 0);
            fill(&c, "#totp_code", other_code(&code)).await;
            click_button(&c, "Confirm").await;
            assert_eq!(text_of(&c, "#totp-error").await, "That code is not right: enter the one your app shows now.");
            assert_eq!(attr(&c, "#totp_code", "aria-invalid").await.as_deref(), Some("true"));
            assert_eq!(attr(&c, "#current_password", "aria-invalid").await, None);
            check("account-factors-error").await;
            fill(&c, "#totp_code", &code).await;
            click_button(&c, "Confirm").await;

            // The recovery codes, shown this once, and the factor in the list.
            c.wait().for_element(Locator::Css(".notice code.secret")).await.unwrap();
            let mut codes = Vec::new();
            for code in c.find_all(Locator::Css(".notice code.secret")).await.unwrap() {
                codes.push(code.text().await.unwrap());
            }
            assert_eq!(codes.len(), 10);
            assert!(page_text(&c).await.contains("Authenticator app totp"));
            check("account-recovery-codes").await;

            // An access token: a name of blanks is refused there, then one is shown once.
            fill(&c, "#token_name", "   ").await;
            click_button(&c, "Create token").await;
            assert_eq!(text_of(&c, "#token-error").await, "Give the token a name.");
            assert_eq!(attr(&c, "#token_name", "aria-invalid").await.as_deref(), Some("true"));
            fill(&c, "#token_name", "Deploy script").await;
            click_button(&c, "Create token").await;
            assert!(text_of(&c, ".notice code.secret").await.starts_with("lk_"));
            assert_eq!(c.current_url().await.unwrap().fragment(), Some("tokens"));
            check("account-tokens").await;

            // Out, and in again: the password, then the second-factor page.
            c.find(Locator::LinkText("Back to the protected page")).await.unwrap().click().await.unwrap();
            wait_for_path(&c, "/protected").await;
            c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();
            wait_for_path(&c, "/login").await;
            log_in(&c, TEST_USER, TEST_PASSWORD).await;
            wait_for_path(&c, "/login/second-factor").await;
            assert_eq!(c.title().await.unwrap(), "Second factor · latchkey");
            assert_eq!(focused_id(&c).await, "code");
            assert_eq!(attr(&c, "#code", "autocomplete").await.as_deref(), Some("one-time-code"));
            check("second-factor").await;
            let code = code_at(&secret, 1);
            fill(&c, "#code", other_code(&code)).await;
            click_button(&c, "Sign in").await;
            assert_eq!(text_of(&c, "#code-error").await, "Invalid code.");
            assert_eq!(attr(&c, "#code", "aria-invalid").await.as_deref(), Some("true"));
            check("second-factor-error").await;
            fill(&c, "#code", &code).await;
            click_button(&c, "Sign in").await;
            wait_for_path(&c, "/protected").await;

            // Past the confirmation window, as an instance whose window is zero
            // sees this session (it counts whole seconds): new recovery codes
            // ask for the password and a code first.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let later = app.start_peer_with(|s| s.reauth_window = Duration::ZERO).await;
            c.goto(&format!("{}/account", later.address)).await.unwrap();
            click_button(&c, "New recovery codes").await;
            wait_for_path(&c, "/account/confirm").await;
            assert_eq!(c.title().await.unwrap(), "Confirm it's you · latchkey");
            assert_eq!(focused_id(&c).await, "password");
            assert_eq!(attr(&c, "#password", "autocomplete").await.as_deref(), Some("current-password"));
            assert_eq!(attr(&c, "#code", "autocomplete").await.as_deref(), Some("one-time-code"));
            check("confirm").await;
            fill(&c, "#password", TEST_PASSWORD).await;
            click_button(&c, "Confirm").await;
            assert!(text_of(&c, "#confirm-error").await.starts_with("Enter a code"));
            check("confirm-error").await;
            fill(&c, "#password", TEST_PASSWORD).await;
            fill(&c, "#code", &codes[0]).await;
            click_button(&c, "Confirm").await;
            wait_for_path(&c, "/account").await;
            assert_eq!(text_of(&c, ".notice").await, "Thank you: you can go on.");
            c.close().await.unwrap();
        }
    }

    async fn an_invitation_link_sets_a_password_in_the_browser(backend: Backend) {
        if !require_file(&axe_path(), "axe-core", "npm ci") {
            return;
        }
        let app = spawn_app(backend).await;
        for (setup, name) in WALKS.into_iter().zip(["ada", "grace", "hedy"]) {
            let Some(c) = browser_with(setup).await else { return };
            let check = |page: &'static str| check_walk_page(&c, page, setup, backend);
            let path = link(&app, "invite", name, &[]);

            c.goto(&app.url(&path)).await.unwrap();
            assert_eq!(c.title().await.unwrap(), "Choose your password · latchkey");
            assert_eq!(focused_id(&c).await, "password");
            assert_eq!(attr(&c, "#password", "autocomplete").await.as_deref(), Some("new-password"));
            check("welcome").await;
            fill(&c, "#password", "Password123!").await;
            click_button(&c, "Set password and sign in").await;
            assert!(!text_of(&c, "#welcome-error").await.is_empty());
            check("welcome-error").await;
            fill(&c, "#password", NEW_PASSWORD).await;
            click_button(&c, "Set password and sign in").await;
            wait_for_path(&c, "/protected").await;
            assert_eq!(text_of(&c, "h1").await, format!("Hello, {name}!"));

            // The link works once; then it gets the page of every dead link.
            c.goto(&app.url(&path)).await.unwrap();
            assert_eq!(text_of(&c, "h1").await, "Link no longer valid");
            check("link-gone").await;
            c.close().await.unwrap();
        }
    }
}
