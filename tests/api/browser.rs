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

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::helpers::*;

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

/// A headless Chromium session whose system theme is `theme`, or `None` (the
/// test is not run) when Chromium or chromedriver is not installed.
pub(crate) async fn browser(theme: Theme) -> Option<Client> {
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
    let capabilities = json!({
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url(&driver))
        .await
        .expect("a Chromium session");
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

/// The page passes axe-core, and its screenshot lands in `target/screenshots/`
/// (`login-postgres.png`, `login-dark-postgres.png`, ...).
pub(crate) async fn check_page(c: &Client, page: &str, theme: Theme, backend: Backend) {
    assert_accessible(c, &format!("{page} page, {theme:?} theme")).await;
    let theme = if theme == Theme::Dark { "-dark" } else { "" };
    screenshot(c, &format!("{page}{theme}-{}", label(backend))).await;
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
}
