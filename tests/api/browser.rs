//! A person in a real browser: headless Chromium driven over WebDriver.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and
//! axe-core from npm (installed into `node_modules/` on first use). One
//! chromedriver serves the whole test process and stops when it exits.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::helpers::*;

static DRIVER_URL: OnceLock<String> = OnceLock::new();
static AXE_SOURCE: OnceLock<String> = OnceLock::new();

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
}

fn driver_url() -> &'static str {
    DRIVER_URL.get_or_init(|| {
        let driver = find_program(&["chromedriver"]).expect(
            "chromedriver not found: install Debian's chromium and chromium-driver (see README)",
        );
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

fn axe_source() -> &'static str {
    AXE_SOURCE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let axe = root.join("node_modules/axe-core/axe.min.js");
        if !axe.is_file() {
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent"])
                .current_dir(root)
                .status()
                .expect("npm (Node.js) is needed to install axe-core");
            assert!(status.success(), "npm install failed");
        }
        std::fs::read_to_string(&axe).expect("axe-core")
    })
}

async fn browser() -> Client {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
        .expect("chromium not found: install Debian's chromium and chromium-driver (see README)");
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync", "--disable-quic", "--window-size=1024,768",
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver_url())
        .await
        .expect("a Chromium session")
}

/// Waits until the browser shows `path` (after a redirect, a form post).
async fn wait_for_path(c: &Client, path: &str) -> url::Url {
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

async fn log_in(c: &Client, username: &str, password: &str) {
    c.find(Locator::Css("#username"))
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn page_text(c: &Client) -> String {
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

both_backends! {
    async fn a_person_logs_in_and_lands_on_the_greeting(backend: Backend) {
        let app = spawn_app(backend).await;
        let c = browser().await;
        c.goto(&app.url("/")).await.unwrap();
        wait_for_path(&c, "/login").await;
        assert_eq!(c.title().await.unwrap(), "Log in · latchkey");
        assert_accessible(&c, "login page").await;
        screenshot(&c, &format!("login-{}", label(backend))).await;

        log_in(&c, TEST_USER, TEST_PASSWORD).await;

        wait_for_path(&c, "/protected").await;
        let heading = c.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
        assert_eq!(heading, "Hello, test_user!");
        assert_accessible(&c, "protected page").await;
        screenshot(&c, &format!("protected-{}", label(backend))).await;

        c.find(Locator::LinkText("Your account and sessions")).await.unwrap().click().await.unwrap();
        wait_for_path(&c, "/account").await;
        assert!(page_text(&c).await.contains("This session"));
        assert_accessible(&c, "account page").await;
        screenshot(&c, &format!("account-{}", label(backend))).await;
        c.close().await.unwrap();
    }

    async fn a_wrong_password_shows_the_error_and_keeps_the_username(backend: Backend) {
        let app = spawn_app(backend).await;
        let c = browser().await;
        c.goto(&app.url("/login")).await.unwrap();

        log_in(&c, TEST_USER, "not my password").await;

        let error = c.wait().for_element(Locator::Css("#login-error")).await.unwrap();
        assert_eq!(error.text().await.unwrap(), "Invalid username or password.");
        let username = c.find(Locator::Css("#username")).await.unwrap();
        assert_eq!(username.prop("value").await.unwrap().as_deref(), Some(TEST_USER));
        let password = c.find(Locator::Css("#password")).await.unwrap();
        assert_eq!(password.prop("value").await.unwrap().as_deref(), Some(""));
        assert_accessible(&c, "login page with an error").await;
        screenshot(&c, &format!("login-error-{}", label(backend))).await;

        c.goto(&app.url("/no/such/page")).await.unwrap();
        assert!(page_text(&c).await.contains("Page not found"));
        assert_accessible(&c, "error page").await;
        screenshot(&c, &format!("error-{}", label(backend))).await;
        c.close().await.unwrap();
    }

    async fn a_deep_link_comes_back_after_login(backend: Backend) {
        let app = spawn_app(backend).await;
        let c = browser().await;

        c.goto(&app.url("/protected?tab=2")).await.unwrap();
        wait_for_path(&c, "/login").await;
        log_in(&c, TEST_USER, TEST_PASSWORD).await;

        let url = wait_for_path(&c, "/protected").await;
        assert_eq!(url.query(), Some("tab=2"));
        assert!(page_text(&c).await.contains("Hello, test_user!"));
        c.close().await.unwrap();
    }

    async fn logout_shows_the_notice_once_and_back_shows_nothing_private(backend: Backend) {
        let app = spawn_app(backend).await;
        let c = browser().await;
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
