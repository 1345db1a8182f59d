//! Protecting another app: the configurations in `deploy/forward-auth/` run
//! for real (nginx, Caddy) in front of latchkey and a small app, walked
//! through as a browser and as a script would; `/auth/forward` asked as
//! Traefik asks it; and the settings the sibling apps need
//! (`LATCHKEY_ALLOWED_HOSTS`, `LATCHKEY_COOKIE_DOMAIN`).
//! The proxy tests are not run (one line says so) where the proxy is missing.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use latchkey::config::{AllowedHost, Settings};
use reqwest::header::{ACCEPT, AUTHORIZATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::*;

const USER_HEADERS: [&str; 3] = [
    "x-latchkey-user",
    "x-latchkey-user-id",
    "x-latchkey-second-factor",
];

// ---------------------------------------------------------------------------
// The app behind the proxy.

/// The request line (path and query) of every request the app received.
type Seen = Mutex<Vec<String>>;

/// A tiny app: answers every request with the identity headers it received,
/// in one line, and records that it was reached. Stopped when dropped.
struct Upstream {
    address: String,
    seen: Arc<Seen>,
    handle: ServerHandle,
}

async fn echo(req: HttpRequest, seen: web::Data<Seen>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let uri = req.uri().to_string();
    seen.lock().unwrap().push(uri.clone());
    HttpResponse::Ok().content_type("text/plain").body(format!(
        "user={} id={} second_factor={} uri={uri}",
        header("x-latchkey-user"),
        header("x-latchkey-user-id"),
        header("x-latchkey-second-factor"),
    ))
}

impl Upstream {
    fn start() -> Self {
        let seen: Arc<Seen> = Arc::default();
        let data = web::Data::from(seen.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(echo))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("bind the app");
        let address = format!("127.0.0.1:{}", server.addrs()[0].port());
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            address,
            seen,
            handle,
        }
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(handle.stop(false));
        });
    }
}

// ---------------------------------------------------------------------------
// The proxies, from the files in deploy/forward-auth/.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nginx,
    Caddy,
}

/// A proxy running one of the configurations; stopped when dropped.
struct Proxy {
    kind: Kind,
    child: Child,
    /// Its config, logs and state; removed when dropped.
    dir: tempfile::TempDir,
    /// The origin a browser uses: `http://127.0.0.1:PORT`.
    origin: String,
}

fn template(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/forward-auth")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `template` with its `@NAME@` placeholders replaced; every one must be.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        let placeholder = format!("@{name}@");
        assert!(text.contains(&placeholder), "{placeholder} is not used");
        text = text.replace(&placeholder, value);
    }
    // `@NAME@` is a part between two `@` of capitals alone (a Caddy
    // matcher, `@latchkey`, is not).
    let parts: Vec<&str> = text.split('@').collect();
    let inner = parts.len().saturating_sub(2);
    let left =
        parts.iter().skip(1).take(inner).find(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        });
    assert_eq!(left, None, "a placeholder is left unreplaced");
    text
}

/// Runs `command` to the end; it must succeed (config checks).
fn check(command: &mut Command) {
    let out = command.output().expect("run the config check");
    assert!(out.status.success(), "{command:?}: {}", output_text(&out));
}

impl Proxy {
    /// Checks the filled-in config (`nginx -t`, `caddy validate`), starts the
    /// proxy on a free port of 127.0.0.1 and waits until it forwards to latchkey.
    async fn start(kind: Kind, port: u16, latchkey: &str, app: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        let log = fs::File::create(path.join("proxy.log")).expect("log file");
        let mut command = match kind {
            Kind::Nginx => {
                let listen = format!("127.0.0.1:{port}");
                let site = fill(
                    &template("nginx.conf"),
                    &[("LISTEN", &listen), ("LATCHKEY", latchkey), ("APP", app)],
                );
                fs::write(path.join("site.conf"), site).unwrap();
                // What /etc/nginx/nginx.conf would hold: one process in the
                // foreground, everything it writes under `dir`.
                let d = path.display().to_string();
                let main = r"daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log DIR/error.log warn;
events { worker_connections 256; }
http {
    access_log DIR/access.log;
    client_body_temp_path DIR/body;
    proxy_temp_path DIR/proxy;
    fastcgi_temp_path DIR/fastcgi;
    uwsgi_temp_path DIR/uwsgi;
    scgi_temp_path DIR/scgi;
    include DIR/site.conf;
}
"
                .replace("DIR", &d);
                fs::write(path.join("nginx.conf"), main).unwrap();
                let args = |test: bool| {
                    let mut args = vec![
                        "-c".to_owned(),
                        format!("{d}/nginx.conf"),
                        "-p".to_owned(),
                        format!("{d}/"),
                        "-e".to_owned(),
                        format!("{d}/error.log"),
                    ];
                    if test {
                        args.push("-t".to_owned());
                    }
                    args
                };
                check(Command::new("nginx").args(args(true)));
                let mut command = Command::new("nginx");
                command.args(args(false));
                command
            }
            Kind::Caddy => {
                let site_address = format!("http://127.0.0.1:{port}");
                let site = fill(
                    &template("Caddyfile"),
                    &[
                        ("SITE", &site_address),
                        ("LATCHKEY", latchkey),
                        ("APP", app),
                    ],
                );
                fs::write(path.join("site.caddy"), site).unwrap();
                // The global options a test needs: no admin endpoint (a fixed
                // port), loopback only; the site block imported as is.
                let main = format!(
                    "{{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}}\nimport {}/site.caddy\n",
                    path.display()
                );
                fs::write(path.join("Caddyfile"), main).unwrap();
                let caddy = |verb: &str| {
                    let mut command = Command::new("caddy");
                    command
                        .args([verb, "--adapter", "caddyfile", "--config"])
                        .arg(path.join("Caddyfile"))
                        // Its data and autosaved config stay in `dir`.
                        .env("HOME", path)
                        .env("XDG_DATA_HOME", path.join("data"))
                        .env("XDG_CONFIG_HOME", path.join("config"));
                    command
                };
                check(&mut caddy("validate"));
                caddy("run")
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
        // Should this test process die without dropping it: its directory
        // is still there, so the proxy is stopped (and the directory removed).
        until_this_process_exits(
            "",
            &format!(
                "if [ -d '{dir}' ]; then kill {pid} 2>/dev/null; rm -rf '{dir}'; fi",
                dir = path.display(),
                pid = child.id()
            ),
        );
        let mut proxy = Self {
            kind,
            child,
            dir,
            origin: format!("http://127.0.0.1:{port}"),
        };
        proxy.wait_until_ready().await;
        proxy
    }

    /// Polls a page latchkey serves through the proxy until it answers.
    async fn wait_until_ready(&mut self) {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{:?} exited ({status}): {}", self.kind, self.log());
            }
            let answer = client
                .get(self.url("/login"))
                .header(ACCEPT, "application/json")
                .send()
                .await;
            if answer.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{:?} did not answer: {}",
                self.kind,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    fn log(&self) -> String {
        let mut log = fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default();
        if let Ok(errors) = fs::read_to_string(self.dir.path().join("error.log")) {
            log.push_str(&errors);
        }
        log
    }
}

impl Drop for Proxy {
    /// SIGTERM (both stop at once), then SIGKILL if it is still there.
    fn drop(&mut self) {
        sigterm(&self.child);
        let started = Instant::now();
        while matches!(self.child.try_wait(), Ok(None))
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// What a browser and a script see through the proxy.

fn hosts(list: &str) -> Vec<AllowedHost> {
    Settings::from_lookup(|k| (k == "LATCHKEY_ALLOWED_HOSTS").then(|| list.to_owned()))
        .expect("LATCHKEY_ALLOWED_HOSTS")
        .allowed_hosts
}

/// Where latchkey's forward auth sends a browser that asked for `original`.
fn login_url(public: &str, original: &str) -> String {
    url::Url::parse_with_params(&format!("{public}/login"), [("next", original)])
        .unwrap()
        .to_string()
}

/// A hidden field's value, as the browser submits it (HTML entities decoded).
fn field(page: &str, name: &str) -> String {
    let raw = hidden_field(page, name).unwrap_or_else(|| panic!("no {name} field in {page}"));
    let mut value = String::new();
    let mut rest = raw.as_str();
    while let Some(at) = rest.find('&') {
        value.push_str(&rest[..at]);
        let (entity, after) = rest[at + 1..].split_once(';').expect("an entity");
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        value.push(decoded.unwrap_or_else(|| panic!("&{entity};?")));
        rest = after;
    }
    value.push_str(rest);
    value
}

async fn get_html(client: &reqwest::Client, url: &str) -> Response {
    client
        .get(url)
        .header(ACCEPT, HTML_ACCEPT)
        .send()
        .await
        .expect("request")
}

async fn post_form(client: &reqwest::Client, url: &str, fields: &[(&str, &str)]) -> Response {
    client
        .post(url)
        .header(ACCEPT, HTML_ACCEPT)
        .form(fields)
        .send()
        .await
        .expect("request")
}

async fn text(response: Response) -> String {
    response.text().await.expect("body")
}

/// The app's one line for the test user, at `uri`.
fn greeting(app: &TestApp, uri: &str) -> String {
    format!(
        "user={TEST_USER} id={} second_factor=no uri={uri}",
        app.test_user_id
    )
}

/// latchkey, the app and `kind` in front of them, as the deploy file has it;
/// then everything a person and a script do through it.
async fn guards_an_app(kind: Kind) {
    let proxy_port = free_port();
    let origin = format!("http://127.0.0.1:{proxy_port}");
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.public_url = Some(url::Url::parse(&origin).unwrap());
        s.allowed_hosts = hosts(&format!("127.0.0.1:{proxy_port}"));
    })
    .await;
    let upstream = Upstream::start();
    let latchkey = app.address.trim_start_matches("http://");
    let proxy = Proxy::start(kind, proxy_port, latchkey, &upstream.address).await;
    let context = |what: &str| format!("{kind:?}, {what}: {}", proxy.log());

    // A browser asks for a page of the app: on to the login page, with the
    // whole URL (query included) as `next`; the app never sees the request.
    let browser = new_client();
    let uri = "/reports/2026?team=a%20b&sort=-date";
    let page = proxy.url(uri);
    let first = get_html(&browser, &page).await;
    assert_eq!(
        first.status(),
        StatusCode::FOUND,
        "{}",
        context("no session")
    );
    let to_login = location(&first).to_owned();
    assert_eq!(to_login, login_url(&origin, &page));
    assert_eq!(upstream.hits(), 0, "the app was reached without a session");

    // The login form, through the proxy, with `next` pointing back, and its stylesheet.
    let form = get_html(&browser, &to_login).await;
    assert_eq!(form.status(), StatusCode::OK);
    let form = text(form).await;
    assert_eq!(field(&form, "next"), page);
    let csrf = field(&form, "csrf_token");
    let style = form
        .split("href=\"")
        .filter_map(|rest| rest.split('"').next())
        .find(|href| href.starts_with("/static/") && href.ends_with(".css"))
        .expect("a stylesheet");
    let css = browser.get(proxy.url(style)).send().await.unwrap();
    assert_eq!(css.status(), StatusCode::OK, "{}", context(style));

    // Logging in leads back to the page, which the app now answers by name.
    let login = post_form(
        &browser,
        &proxy.url("/login"),
        &[
            ("csrf_token", &csrf),
            ("next", &page),
            ("username", TEST_USER),
            ("password", TEST_PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        login.status(),
        StatusCode::SEE_OTHER,
        "{}",
        context("login")
    );
    assert_eq!(location(&login), page);
    let answer = get_html(&browser, &page).await;
    assert_eq!(answer.status(), StatusCode::OK, "{}", context("signed in"));
    assert_eq!(text(answer).await, greeting(&app, uri));

    // Only latchkey names the user: a client's own X-Latchkey-* never get through.
    let spoofed = browser
        .get(proxy.url("/whoami"))
        .header("x-latchkey-user", "mallory")
        .header("x-latchkey-user-id", "1")
        .header("x-latchkey-second-factor", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(text(spoofed).await, greeting(&app, "/whoami"));

    // A script: no session is a 401 (not a login page), a bad token too;
    // a personal access token passes, as its user.
    let hits = upstream.hits();
    let script = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let api = proxy.url("/api/items?limit=5");
    let anonymous = script
        .get(&api)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let bad = script
        .get(&api)
        .header(AUTHORIZATION, format!("Bearer lk_{}", "0".repeat(43)))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        upstream.hits(),
        hits,
        "the app was reached without a credential"
    );
    let created = app.cli(&["token", "create", TEST_USER, "--name", "deploy test"], "");
    assert!(created.status.success(), "{}", output_text(&created));
    let token = stdout(&created).trim().to_owned();
    let with_token = script
        .get(&api)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK, "{}", context("token"));
    assert_eq!(text(with_token).await, greeting(&app, "/api/items?limit=5"));

    // Logging out (the account page's form, through the proxy): the app's
    // page sends the browser to the login page again.
    let account = get_html(&browser, &proxy.url("/account")).await;
    assert_eq!(account.status(), StatusCode::OK, "{}", context("account"));
    let csrf = field(&text(account).await, "csrf_token");
    let logout = post_form(&browser, &proxy.url("/logout"), &[("csrf_token", &csrf)]).await;
    assert_eq!(
        logout.status(),
        StatusCode::SEE_OTHER,
        "{}",
        context("logout")
    );
    assert_eq!(location(&logout), "/login");
    let hits = upstream.hits();
    let again = get_html(&browser, &page).await;
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(location(&again), to_login);
    assert_eq!(upstream.hits(), hits, "the app was reached after logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_guards_an_app_with_auth_request() {
    if !require("nginx", "nginx") {
        return;
    }
    guards_an_app(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_guards_an_app_with_forward_auth() {
    if !require("caddy", "caddy") {
        return;
    }
    guards_an_app(Kind::Caddy).await;
}

// ---------------------------------------------------------------------------
// Traefik (not packaged): /auth/forward asked as its forwardAuth asks.

const PUBLIC: &str = "https://login.example.com";

/// `GET /auth/forward` with what Traefik adds: the original request's
/// scheme, host and URI.
async fn forward(
    client: &reqwest::Client,
    address: &str,
    query: &str,
    accept: &str,
    uri: &str,
) -> Response {
    client
        .get(format!("{address}/auth/forward{query}"))
        .header(ACCEPT, accept)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .expect("request")
}

fn assert_identity(response: &Response, app: &TestApp) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = app.test_user_id.to_string();
    let expected = [TEST_USER, id.as_str(), "no"];
    for (name, value) in USER_HEADERS.iter().zip(expected) {
        assert_eq!(header(name).as_deref(), Some(value), "{name}");
    }
}

both_backends! {
    async fn auth_forward_answers_traefik(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.public_url = Some(url::Url::parse(PUBLIC).unwrap());
        })
        .await;
        // The same, where this client is not a trusted proxy.
        let untrusted = app.start_peer_with(|s| s.trusted_proxies.clear()).await;
        let anonymous = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let uri = "/reports?year=2026&q=a%20b";

        // A browser without a session: to the login page, `next` the absolute
        // original URL, believed from a trusted proxy only.
        let to_login = forward(&anonymous, &app.address, "", HTML_ACCEPT, uri).await;
        assert_eq!(to_login.status(), StatusCode::FOUND);
        assert_eq!(
            location(&to_login),
            login_url(PUBLIC, &format!("https://app.example.com{uri}"))
        );
        let from_anyone = forward(&anonymous, &untrusted.address, "", HTML_ACCEPT, uri).await;
        assert_eq!(from_anyone.status(), StatusCode::FOUND);
        assert_eq!(location(&from_anyone), format!("{PUBLIC}/login"));
        // A URI that is not a path is no `next` either.
        let odd = forward(&anonymous, &app.address, "", HTML_ACCEPT, "//evil.example/").await;
        assert_eq!(location(&odd), format!("{PUBLIC}/login"));
        // Not a browser: 401. /auth/verify (nginx) never redirects.
        let script = forward(&anonymous, &app.address, "", "application/json", uri).await;
        assert_eq!(script.status(), StatusCode::UNAUTHORIZED);
        let verify = anonymous
            .get(app.url("/auth/verify"))
            .header(ACCEPT, HTML_ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(verify.status(), StatusCode::UNAUTHORIZED);

        // With a session: 200, an empty body and who it is.
        app.login_test_user().await;
        for address in [&app.address, &untrusted.address] {
            let passed = forward(&app.client, address, "", HTML_ACCEPT, uri).await;
            assert_eq!(passed.status(), StatusCode::OK);
            assert_identity(&passed, &app);
            assert_eq!(text(passed).await, "");
        }
        let verified = app.get("/auth/verify").await;
        assert_eq!(verified.status(), StatusCode::OK);
        assert_identity(&verified, &app);

        // A second factor required (alone, or among the app's query that
        // Caddy appends): 403 for a session without one.
        for query in ["?second_factor=required", "?page=2&second_factor=required"] {
            let refused = forward(&app.client, &app.address, query, HTML_ACCEPT, uri).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{query}");
            assert!(refused.headers().get("x-latchkey-user").is_none());
            let refused = app.get(&format!("/auth/verify{query}")).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{query}");
        }
        let other = forward(&app.client, &app.address, "?second_factor=no", HTML_ACCEPT, uri).await;
        assert_eq!(other.status(), StatusCode::OK);

        // A personal access token passes like a session.
        let created = app.cli(&["token", "create", TEST_USER, "--name", "traefik"], "");
        assert!(created.status.success(), "{}", output_text(&created));
        let token = stdout(&created).trim().to_owned();
        let with_token = anonymous
            .get(app.url("/auth/forward"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(with_token.status(), StatusCode::OK);
        assert_identity(&with_token, &app);

        // Logged out: the browser goes to the login page again.
        app.logout().await;
        let after = forward(&app.client, &app.address, "", HTML_ACCEPT, uri).await;
        assert_eq!(after.status(), StatusCode::FOUND);
    }

    async fn absolute_next_only_on_allowed_hosts(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.allowed_hosts = hosts("app.example.com, *.apps.example.com");
        })
        .await;
        let allowed = "https://app.example.com/reports?year=2026&q=a%20b";
        let sibling = "https://wiki.apps.example.com/page";
        let others = [
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://app.example.com:8443/",
            "https://user@app.example.com/",
        ];

        // The form keeps an allowed `next` and follows it after login.
        for target in [allowed, sibling] {
            let browser = new_client();
            let url = url::Url::parse_with_params(&app.url("/login"), [("next", target)]).unwrap();
            let page = text(get_html(&browser, url.as_str()).await).await;
            assert_eq!(field(&page, "next"), target);
            let login = post_form(
                &browser,
                &app.url("/login"),
                &[
                    ("csrf_token", &field(&page, "csrf_token")),
                    ("next", target),
                    ("username", TEST_USER),
                    ("password", TEST_PASSWORD),
                ],
            )
            .await;
            assert_eq!(login.status(), StatusCode::SEE_OTHER);
            assert_eq!(location(&login), target);
            // Signed in already: the login page sends it straight on.
            let again = get_html(&browser, url.as_str()).await;
            assert_eq!(again.status(), StatusCode::SEE_OTHER);
            assert_eq!(location(&again), target);
        }

        // Any other host: dropped from the form, ignored after login.
        for target in others {
            let browser = new_client();
            let url = url::Url::parse_with_params(&app.url("/login"), [("next", target)]).unwrap();
            let page = text(get_html(&browser, url.as_str()).await).await;
            assert_eq!(field(&page, "next"), "", "{target}");
            let login = post_form(
                &browser,
                &app.url("/login"),
                &[
                    ("csrf_token", &field(&page, "csrf_token")),
                    ("next", target),
                    ("username", TEST_USER),
                    ("password", TEST_PASSWORD),
                ],
            )
            .await;
            assert_eq!(login.status(), StatusCode::SEE_OTHER, "{target}");
            assert_eq!(location(&login), "/protected", "{target}");
            let again = get_html(&browser, url.as_str()).await;
            assert_eq!(location(&again), "/protected", "{target}");
        }
    }

    async fn a_cookie_domain_shares_the_session_cookie(backend: Backend) {
        let app = spawn_app_with(backend, |s| {
            s.cookie_secure = true;
            s.cookie_domain = Some("example.com".to_owned());
        })
        .await;
        let one_host = app.start_peer_with(|s| s.cookie_domain = None).await;
        let session_line = |response: &Response| {
            response
                .headers()
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|line| line.contains("latchkey_session="))
                .map(str::to_owned)
                .expect("a session cookie")
        };
        let attributes = |line: &str| -> Vec<String> {
            line.split(';')
                .skip(1)
                .map(|a| a.trim().to_ascii_lowercase())
                .collect()
        };

        let login = app.login_test_user().await;
        let line = session_line(&login);
        assert!(line.starts_with("__Secure-latchkey_session="), "{line}");
        let attrs = attributes(&line);
        for expected in ["domain=example.com", "secure", "httponly", "path=/"] {
            assert!(attrs.iter().any(|a| a == expected), "{expected} not in {line}");
        }
        // It is the session: sent back, it signs the request in.
        let cookie = line.split(';').next().unwrap();
        let protected = app.get_with_cookie("/protected", cookie).await;
        assert_json(
            protected,
            StatusCode::OK,
            json!({"message": "Hello, test_user! This is a protected route."}),
        )
        .await;

        // Without LATCHKEY_COOKIE_DOMAIN: `__Host-`, and no Domain.
        let login = post_login(&new_client(), &one_host.address, TEST_USER, TEST_PASSWORD).await;
        let line = session_line(&login);
        assert!(line.starts_with("__Host-latchkey_session="), "{line}");
        assert!(!attributes(&line).iter().any(|a| a.starts_with("domain=")), "{line}");
    }
}
