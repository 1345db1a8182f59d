//! Several instances behind nginx (deploy/local-cluster.sh), sharing one Postgres.
//! Not run (one line says so) where nginx is not installed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// The running cluster; stopped (and its files removed) when dropped.
struct LocalCluster {
    dir: PathBuf,
    env: HashMap<String, String>,
    _parent: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local-cluster.sh")
}

impl LocalCluster {
    fn start() -> Self {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("cluster");
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .env("LATCHKEY_BIN", env!("CARGO_BIN_EXE_latchkey"))
            .env("LATCHKEY_CLUSTER_DIR", &dir)
            .env("LATCHKEY_BCRYPT_COST", TEST_BCRYPT_COST.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        Self {
            dir,
            env,
            _parent: parent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.env["LATCHKEY_URL"])
    }

    fn instances(&self) -> Vec<String> {
        self.list("LATCHKEY_INSTANCES")
    }

    /// The instances' metrics listeners, in the same order.
    fn metrics(&self) -> Vec<String> {
        self.list("LATCHKEY_METRICS")
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.env[name]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        run_cli(
            args,
            stdin,
            &[("DATABASE_URL", &self.env["DATABASE_URL"])],
            self.dir.parent().unwrap(),
        )
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("LATCHKEY_CLUSTER_DIR", &self.dir)
            .output();
    }
}

/// Requests to `/protected` each instance has answered, from its own metrics.
async fn protected_hits(cluster: &LocalCluster) -> Vec<f64> {
    let mut hits = Vec::new();
    for metrics in cluster.metrics() {
        let page = reqwest::get(format!("{metrics}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = page
            .lines()
            .filter(|l| {
                l.starts_with("latchkey_http_requests_total") && l.contains("route=\"/protected\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        hits.push(count);
    }
    hits
}

/// What deploy/local-cluster.sh runs besides PostgreSQL's server.
fn cluster_tools_installed() -> bool {
    [
        ("nginx", "nginx"),
        ("curl", "curl"),
        ("python3", "python3"),
        ("psql", "postgresql-client"),
    ]
    .into_iter()
    .all(|(program, apt)| require(program, apt))
}

#[tokio::test]
async fn the_seed_flow_works_across_instances_behind_nginx() {
    if !cluster_tools_installed() {
        return;
    }
    let cluster = LocalCluster::start();
    let added = cluster.cli(
        &["user", "add", TEST_USER, "--password-stdin"],
        "test_password\n",
    );
    assert!(added.status.success(), "{}", output_text(&added));
    let client = new_client();
    assert_eq!(cluster.instances().len(), 3);
    assert_eq!(cluster.metrics().len(), 3);
    let public = client.get(cluster.url("/metrics")).send().await.unwrap();
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "no metrics behind nginx"
    );

    // The seed flow, every request through nginx.
    let login = client
        .post(cluster.url("/login"))
        .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = session_cookie(login.headers()).unwrap();
    for _ in 0..6 {
        let protected = client.get(cluster.url("/protected")).send().await.unwrap();
        assert_eq!(
            json_body(protected).await,
            json!({"message": "Hello, test_user! This is a protected route."})
        );
    }
    let hits = protected_hits(&cluster).await;
    assert!(
        hits.iter().all(|&n| n >= 1.0),
        "round-robin reached every instance: {hits:?}"
    );

    // Logout on one instance: the copied cookie is dead on all of them within a second.
    let logout = client.post(cluster.url("/logout")).send().await.unwrap();
    assert_eq!(logout.status(), StatusCode::OK);
    for instance in cluster.instances() {
        let url = format!("{instance}/protected");
        eventually_status(
            &url,
            &cookie,
            StatusCode::UNAUTHORIZED,
            Duration::from_secs(1),
        )
        .await;
    }

    // Throttling counts across instances; a forged X-Forwarded-For changes nothing.
    for i in 0..5 {
        let failed = reqwest::Client::new()
            .post(cluster.url("/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"username": TEST_USER, "password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled = client
        .post(cluster.url("/login"))
        .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let audit =
        String::from_utf8_lossy(&cluster.cli(&["audit", "--limit", "3"], "").stdout).into_owned();
    assert!(
        audit.contains("127.0.0.1") && !audit.contains("198.51.100."),
        "{audit}"
    );

    // The account page sees the sessions made on every instance.
    let other = cluster.cli(
        &["user", "add", "alice", "--password-stdin"],
        "her long password\n",
    );
    assert!(other.status.success());
    let alice = new_client();
    for _ in 0..3 {
        let login = alice
            .post(cluster.url("/login"))
            .json(&json!({"username": "alice", "password": "her long password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::OK);
    }
    let account = json_body(alice.get(cluster.url("/account")).send().await.unwrap()).await;
    let sessions = account["sessions"].as_array().unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "each login replaced the previous session: {account}"
    );
    let everywhere = alice
        .post(cluster.url("/account/logout-everywhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), StatusCode::OK);
    assert_eq!(
        alice
            .get(cluster.url("/account"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
