//! What operators rely on: metrics, readiness, graceful shutdown.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use reqwest::StatusCode;

use crate::helpers::*;

/// The value of one sample in a Prometheus text page (0 when absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

both_backends! {
    async fn metrics_count_requests_logins_and_state(backend: Backend) {
        let app = spawn_app(backend).await;
        let before = app.metrics().await;

        app.login(TEST_USER, "not it").await;
        app.login("nobody", "not it").await;
        app.login_test_user().await;
        app.get("/protected").await;
        app.logout().await;
        let response = reqwest::get(format!("{}/metrics", app.metrics_address.as_deref().unwrap()))
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        let after = response.text().await.unwrap();
        let moved = |series: &str| sample(&after, series) - sample(&before, series);
        assert_eq!(moved("latchkey_logins_total{outcome=\"success\"}"), 1.0, "{after}");
        assert_eq!(moved("latchkey_logins_total{outcome=\"bad_password\"}"), 1.0);
        assert_eq!(moved("latchkey_logins_total{outcome=\"unknown_user\"}"), 1.0);
        assert_eq!(
            moved("latchkey_http_requests_total{method=\"GET\",route=\"/protected\",status=\"200\"}"),
            1.0
        );
        assert_eq!(moved("latchkey_http_requests_total{method=\"POST\",route=\"/login\",status=\"401\"}"), 2.0);
        assert!(moved("latchkey_hash_computed_total") >= 3.0);
        assert_eq!(moved("latchkey_auth_events_total{event=\"login_failure\"}"), 2.0);
        assert_eq!(moved("latchkey_auth_events_total{event=\"login_success\"}"), 1.0);
        assert_eq!(moved("latchkey_auth_events_total{event=\"logout\"}"), 1.0);
        assert_eq!(sample(&after, "latchkey_sessions_active"), 0.0, "logged out");
        for series in [
            "latchkey_http_request_duration_seconds_bucket",
            "latchkey_db_pool_wait_seconds_count",
            "latchkey_db_pool_connections{state=\"idle\"}",
            "latchkey_hash_queue_depth",
            "latchkey_hash_rejected_total",
            "latchkey_logins_total{outcome=\"throttled\"}",
        ] {
            assert!(after.contains(series), "{series} missing");
        }
        // A scanner's random paths do not create series of their own.
        app.get("/wp-admin/setup.php").await;
        let scanned = app.metrics().await;
        assert!(!scanned.contains("wp-admin"));
        assert!(scanned.contains("route=\"unmatched\""));
    }

    async fn metrics_follow_the_prometheus_conventions(backend: Backend) {
        let app = spawn_app(backend).await;
        let first = app.metrics().await;
        app.login_test_user().await;
        let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
        app.client.request(brew, app.url("/login")).send().await.unwrap();

        let page = app.metrics().await;

        let types: Vec<(&str, &str)> = page
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
            .collect();
        let totals: Vec<_> = types.iter().filter(|(name, _)| name.ends_with("_total")).collect();
        assert!(totals.len() >= 8, "{page}");
        for (name, kind) in totals {
            assert_eq!(*kind, "counter", "{name}");
        }
        for name in [
            "latchkey_hash_computed_total",
            "latchkey_hash_rejected_total",
            "latchkey_session_cache_lookups_total",
        ] {
            assert!(types.contains(&(name, "counter")), "{name} is not a counter");
        }
        let build = page.lines().find(|l| l.starts_with("latchkey_build_info{")).expect("build info");
        assert!(build.ends_with("} 1"), "{build}");
        assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{build}");
        let commit = build.split("commit=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
        assert!(commit == "unknown" || (!commit.is_empty() && commit.chars().all(|c| c.is_ascii_hexdigit())), "{build}");
        if cfg!(target_os = "linux") {
            assert!(sample(&page, "process_resident_memory_bytes") > 0.0, "{page}");
            assert!(page.contains("# TYPE process_cpu_seconds_total counter"));
        }
        // The client chooses the method: one it makes up is not a series of its own.
        assert!(page.contains("latchkey_http_requests_total{method=\"OTHER\",route=\"/login\""), "{page}");
        assert!(!page.contains("BREW"));
        // The sessions table is counted at most every 30 seconds, not at every scrape.
        assert_eq!(sample(&first, "latchkey_sessions_active"), 0.0);
        assert_eq!(sample(&page, "latchkey_sessions_active"), 0.0, "counted again already");
        assert_eq!(app.session_rows(), 1);
    }

    async fn metrics_are_served_only_on_their_own_listener(backend: Backend) {
        let app = spawn_app(backend).await;
        let without = spawn_app_with(backend, |s| s.metrics_addr = None).await;
        app.login(TEST_USER, "not it").await;

        let public = app.get("/metrics").await;
        let public_page = app.get_page("/metrics").await;
        let private = app.metrics().await;
        let elsewhere = reqwest::get(format!("{}/login", app.metrics_address.as_deref().unwrap()))
            .await
            .unwrap();

        // Its outcome labels would tell an outsider which usernames exist.
        assert_json(public, StatusCode::NOT_FOUND, serde_json::json!({"message": "Not found."})).await;
        assert_eq!(public_page.status(), StatusCode::NOT_FOUND);
        assert!(!public_page.text().await.unwrap().contains("latchkey_"));
        assert!(private.contains("latchkey_logins_total{outcome=\"bad_password\"} 1"), "{private}");
        assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND, "the metrics listener serves nothing else");
        // Unset: no metrics anywhere.
        assert_eq!(without.metrics_address, None);
        assert_eq!(without.get("/metrics").await.status(), StatusCode::NOT_FOUND);
    }

    async fn readiness_needs_every_migration(backend: Backend) {
        let app = spawn_app(backend).await;
        assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);

        app.db
            .connect()
            .batch_execute("DELETE FROM __diesel_schema_migrations")
            .unwrap();

        assert_eq!(app.get("/readyz").await.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    }

    async fn sigterm_lets_a_request_in_flight_finish(backend: Backend) {
        let db = TestDb::new(backend);
        assert!(db.cli(&["migrate"], "").status.success());
        // A slow login: bcrypt at cost 13 takes a good fraction of a second.
        add_user(&db, "slow", "a slow enough password", 13);
        let port = free_port();
        let mut server = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .env_clear()
            .env("DATABASE_URL", db.url_string())
            .env("LATCHKEY_ADDR", format!("127.0.0.1:{port}"))
            .env("LATCHKEY_SECRET_KEY", "ab".repeat(64))
            .env("LATCHKEY_BCRYPT_COST", "13")
            .env("RUST_LOG", "warn")
            .current_dir(db.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{base}/healthz")).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let login = tokio::spawn(
            reqwest::Client::new()
                .post(format!("{base}/login"))
                .json(&serde_json::json!({"username": "slow", "password": "a slow enough password"}))
                .send(),
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!login.is_finished(), "the login must still be in flight");
        sigterm(&server);

        let response = login.await.unwrap().expect("the in-flight request is answered");
        assert_eq!(response.status(), StatusCode::OK);
        let exit = tokio::task::spawn_blocking(move || server.wait()).await.unwrap().unwrap();
        assert!(exit.success(), "{exit:?}");
        assert!(reqwest::get(format!("{base}/healthz")).await.is_err(), "no longer listening");
    }
}
