//! What the running binary writes to its log: a line per request, and no secret.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// The real `latchkey serve`, its stderr collected line by line.
struct Served {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    address: String,
}

impl Served {
    fn start(db: &TestDb, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", db.url_string())
            .env("LATCHKEY_ADDR", "127.0.0.1:0")
            .env("LATCHKEY_COOKIE_SECURE", "false")
            .env("LATCHKEY_BCRYPT_COST", TEST_BCRYPT_COST.to_string())
            .envs(env.iter().copied())
            .current_dir(db.dir.path())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start latchkey");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let started = Instant::now();
        let port = loop {
            let port = log.lock().unwrap().iter().find_map(|line| {
                let at = line.find("port")? + "port".len();
                let digits: String = line[at..]
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                line.contains("listening")
                    .then_some(digits)
                    .filter(|d| !d.is_empty())
            });
            if let Some(port) = port {
                break port;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "did not start: {:?}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            log,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Stops it with SIGTERM and returns everything it logged.
    fn stop(mut self) -> String {
        sigterm(&self.child);
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Served {
    /// A test that fails half-way must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

both_backends! {
    async fn the_log_has_a_line_per_request_and_no_secret(backend: Backend) {
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        add_user(&db, TEST_USER, TEST_PASSWORD, TEST_BCRYPT_COST);
        let secret_key = "ab".repeat(64);
        let served = Served::start(&db, &[("RUST_LOG", "trace"), ("LATCHKEY_SECRET_KEY", &secret_key)]);
        let client = new_client();
        let url = |path: &str| format!("{}{path}", served.address);

        let failed = client
            .post(url("/login"))
            .json(&json!({"username": TEST_USER, "password": "my-wrong-guess-0001"}))
            .send()
            .await
            .unwrap();
        let login = client
            .post(url("/login"))
            .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
            .send()
            .await
            .unwrap();
        let cookie = session_cookie(login.headers()).unwrap();
        let protected = client.get(url("/protected")).header("x-request-id", "trace-me-42").send().await.unwrap();
        let page = client.get(url("/protected")).header("accept", HTML_ACCEPT).send().await.unwrap();
        let token = hidden_field(&page.text().await.unwrap(), "csrf_token").unwrap();
        let logout = client
            .post(url("/logout"))
            .header("accept", HTML_ACCEPT)
            .form(&[("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap();
        let log = served.stop();

        assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(protected.status(), StatusCode::OK);
        assert_eq!(protected.headers()["x-request-id"], "trace-me-42");
        assert_eq!(logout.status(), StatusCode::SEE_OTHER);
        let requests: Vec<&str> = log.lines().filter(|l| l.contains("latchkey::request")).collect();
        assert_eq!(requests.len(), 5, "{log}");
        assert!(requests[2].contains("trace-me-42") && requests[2].contains("status=200"), "{}", requests[2]);
        assert!(requests[2].contains("user_id="), "{}", requests[2]);

        let cookie_value = cookie.split_once('=').unwrap().1;
        let stored_hash = latchkey::users::queries::find_by_username(&mut db.connect(), TEST_USER)
            .unwrap()
            .unwrap()
            .password_hash;
        for (what, secret) in [
            ("wrong password", "my-wrong-guess-0001"),
            ("password", TEST_PASSWORD),
            ("password hash", stored_hash.as_str()),
            ("bcrypt prefix", "$2b$"),
            ("session cookie", cookie_value),
            ("signature or key part of the cookie", &cookie_value[..20]),
            ("csrf token", token.as_str()),
            ("secret key", &secret_key[..32]),
        ] {
            assert!(!log.contains(secret), "the {what} is in the log:\n{log}");
        }
    }
}

both_backends! {
    async fn lines_logged_while_serving_a_request_carry_its_id(backend: Backend) {
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        let user_id = add_user(&db, TEST_USER, TEST_PASSWORD, TEST_BCRYPT_COST);
        let secret_key = "ab".repeat(64);
        let served = Served::start(
            &db,
            &[("LATCHKEY_LOG_FORMAT", "json"), ("RUST_LOG", "info"), ("LATCHKEY_SECRET_KEY", &secret_key)],
        );
        let client = new_client();
        let request = |method: reqwest::Method, path: &str, id: &str| {
            client.request(method, format!("{}{path}", served.address)).header("x-request-id", id)
        };
        // Two spellings of one name seeded after start-up: the login's look-up
        // folds them, and the second one collides (a warning, logged on a
        // blocking thread).
        db.connect()
            .batch_execute("INSERT INTO users (username, password_hash) VALUES ('ZOE', 'x'), ('Zoe', 'x')")
            .unwrap();
        let collision = request(reqwest::Method::POST, "/login", "fold-1")
            .json(&json!({"username": "zoe", "password": "whatever it is"}))
            .send()
            .await
            .unwrap();
        // A signed-in user's request that fails (an error, once the user is known).
        let login = request(reqwest::Method::POST, "/login", "login-2")
            .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
            .send()
            .await
            .unwrap();
        db.connect().batch_execute("DROP TABLE access_tokens").unwrap();
        let broken = request(reqwest::Method::GET, "/account", "broken-3").send().await.unwrap();
        // The database behind on its migrations: not ready (a warning).
        db.connect().batch_execute("DELETE FROM __diesel_schema_migrations").unwrap();
        let outage = request(reqwest::Method::GET, "/readyz", "outage-4").send().await.unwrap();
        let log = served.stop();

        assert_eq!(collision.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(login.status(), StatusCode::OK);
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        let lines: Vec<Value> = log
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        let user = json!(user_id.0);
        for (id, level, message, user) in [
            ("fold-1", "WARN", "a seeded user's name folds", None),
            ("broken-3", "ERROR", "request failed", Some(&user)),
            ("outage-4", "WARN", "service unavailable", None),
        ] {
            let line = lines
                .iter()
                .find(|l| l["message"].as_str().is_some_and(|m| m.starts_with(message)))
                .unwrap_or_else(|| panic!("no {message:?} in {log}"));
            assert_eq!(line["level"], level, "{line}");
            assert_eq!(line["span"]["request_id"], id, "{line}");
            assert_eq!(line["span"].get("user_id"), user, "{line}");
            let requests: Vec<_> = lines.iter().filter(|l| l["request_id"] == id).collect();
            assert_eq!(requests.len(), 1, "one request line for {id}: {log}");
            assert_eq!(requests[0]["target"], "latchkey::request");
            assert_eq!(requests[0].get("user_id"), user, "{}", requests[0]);
        }
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let db = TestDb::new(Backend::Sqlite);
    let served = Served::start(
        &db,
        &[("LATCHKEY_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    );
    let health = reqwest::get(format!("{}/healthz", served.address))
        .await
        .unwrap();
    let log = served.stop();

    assert_eq!(health.status(), StatusCode::OK);
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    assert!(log.contains("\"path\":\"/healthz\""), "{log}");
}
