//! Revocation is in force everywhere before it is acknowledged: after the
//! answer to a logout, a revoke, "sign out everywhere" or a password change,
//! or after `latchkey user ...` exits, the very next request on *every*
//! instance is refused — warm caches, dead feeds and reordered commits
//! included.

use std::time::Duration;

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use latchkey::db::AnyConnection;
use latchkey::sessions::{events, fence, store};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// How many times each revocation is tried.
const ROUNDS: usize = 20;

/// The app and two more instances over its database, each with its own cache.
async fn three_instances(app: &TestApp) -> Vec<String> {
    vec![
        app.address.clone(),
        app.start_peer().await.address,
        app.start_peer().await.address,
    ]
}

async fn status_at(base: &str, path: &str, cookie: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
}

/// A fresh session on `base`: the client that holds it, and a copy of its cookie.
/// (After killed connections a request may meet one the pool has not dropped
/// yet: `503`, tried again.)
async fn session_on(base: &str) -> (reqwest::Client, String) {
    let client = new_client();
    let mut response;
    let mut tries = 0;
    loop {
        response = client
            .post(format!("{base}/login"))
            .json(&json!({"username": TEST_USER, "password": TEST_PASSWORD}))
            .send()
            .await
            .unwrap();
        tries += 1;
        if response.status() != StatusCode::SERVICE_UNAVAILABLE || tries == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = session_cookie(response.headers()).expect("a session cookie");
    (client, cookie)
}

/// Serves `cookie` twice on every instance: the second answer comes from the cache.
async fn warm(instances: &[String], cookie: &str) {
    for base in instances {
        for _ in 0..2 {
            assert_eq!(status_at(base, "/protected", cookie).await, StatusCode::OK);
        }
    }
}

/// The very next request with `cookie`, on every instance, is refused.
async fn refused_everywhere(instances: &[String], cookie: &str, round: usize, what: &str) {
    for (i, base) in instances.iter().enumerate() {
        let status = status_at(base, "/protected", cookie).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what}, round {round}: instance {i} still served it"
        );
    }
}

/// A revocation's answer. `503` means "not acknowledged by every instance in
/// time" (a heavily loaded machine): not a success, so it is asked again.
async fn post(client: &reqwest::Client, url: String, body: Value) -> StatusCode {
    eventually_ok(|| client.post(url.clone()).json(&body).send()).await
}

both_backends! {
    async fn a_logout_is_in_force_on_every_instance_when_answered(backend: Backend) {
        let app = spawn_app(backend).await;
        let instances = three_instances(&app).await;
        for round in 0..ROUNDS {
            let (client, cookie) = session_on(&instances[round % 3]).await;
            warm(&instances, &cookie).await;

            let url = format!("{}/logout", instances[round % 3]);
            assert_eq!(post(&client, url, json!({})).await, StatusCode::OK);

            refused_everywhere(&instances, &cookie, round, "logout").await;
        }
    }

    async fn a_revoke_and_signing_out_everywhere_are_in_force_at_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let instances = three_instances(&app).await;
        for round in 0..ROUNDS {
            let (me, _) = session_on(&instances[0]).await;
            let (_, stolen) = session_on(&instances[1]).await;
            warm(&instances, &stolen).await;
            let account: Value = me.get(format!("{}/account", instances[0])).send().await.unwrap().json().await.unwrap();
            let other = account["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["current"] == false)
                .expect("the other session")["id"]
                .as_str()
                .unwrap()
                .to_owned();

            let revoke = format!("{}/account/sessions/{other}/revoke", instances[0]);
            assert_eq!(post(&me, revoke, json!({})).await, StatusCode::OK);
            refused_everywhere(&instances, &stolen, round, "revoke").await;

            let (_, second) = session_on(&instances[2]).await;
            warm(&instances, &second).await;
            let everywhere = format!("{}/account/logout-everywhere", instances[0]);
            assert_eq!(post(&me, everywhere, json!({})).await, StatusCode::OK);
            refused_everywhere(&instances, &second, round, "sign out everywhere").await;
        }
    }

    async fn a_password_change_ends_every_other_session_everywhere_at_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let instances = three_instances(&app).await;
        let passwords = ["a first new password", TEST_PASSWORD];
        for round in 0..ROUNDS {
            let current = passwords[(round + 1) % 2];
            let new = passwords[round % 2];
            let me = new_client();
            let login = json!({"username": TEST_USER, "password": current});
            assert_eq!(post(&me, format!("{}/login", instances[0]), login.clone()).await, StatusCode::OK);
            let other = reqwest::Client::new()
                .post(format!("{}/login", instances[1]))
                .json(&login)
                .send()
                .await
                .unwrap();
            let stolen = session_cookie(other.headers()).unwrap();
            warm(&instances, &stolen).await;

            let change = json!({"current_password": current, "new_password": new});
            assert_eq!(post(&me, format!("{}/account/password", instances[0]), change).await, StatusCode::OK);

            refused_everywhere(&instances, &stolen, round, "password change").await;
            let mine = me.get(format!("{}/protected", instances[2])).send().await.unwrap();
            assert_eq!(mine.status(), StatusCode::OK, "this session keeps going, with a new key");
        }
    }

    async fn admin_commands_are_in_force_on_running_servers_when_they_exit(backend: Backend) {
        let app = spawn_app(backend).await;
        let instances = three_instances(&app).await;
        let commands: [&[&str]; 4] = [
            &["user", "logout", TEST_USER],
            &["user", "passwd", TEST_USER, "--password-stdin"],
            &["user", "disable", TEST_USER],
            &["user", "remove", TEST_USER, "--yes"],
        ];
        for command in commands {
            // Every command ends with the user logging in again (re-created if removed).
            let (_, cookie) = session_on(&instances[1]).await;
            warm(&instances, &cookie).await;

            let out = app.cli(command, "a brand new password\n");

            assert!(out.status.success(), "{command:?}: {}", output_text(&out));
            refused_everywhere(&instances, &cookie, 0, &command.join(" ")).await;
            match command[1] {
                "passwd" => {
                    let back = app.cli(&["user", "passwd", TEST_USER, "--password-stdin"], &format!("{TEST_PASSWORD}\n"));
                    assert!(back.status.success(), "{}", output_text(&back));
                }
                "disable" => assert!(app.cli(&["user", "enable", TEST_USER], "").status.success()),
                _ => {}
            }
        }
    }
}

/// Postgres: the instances' connections (their feeds included) are killed
/// while sessions are warm; whatever the feeds are doing, nothing stale is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_feed_connection_never_leaves_a_revoked_session_served() {
    let app = spawn_app(Backend::Postgres).await;
    let instances = three_instances(&app).await;
    let mut admin = app.db.connect();
    for round in 0..ROUNDS {
        let (client, cookie) = session_on(&instances[0]).await;
        warm(&instances, &cookie).await;

        admin
            .batch_execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .unwrap();
        // The revoking instance's own connections died too: it may answer
        // 503 until its pool has new ones, never a false success.
        let logout = format!("{}/logout", instances[0]);
        let status = eventually_ok(|| client.post(logout.clone()).send()).await;
        assert_eq!(status, StatusCode::OK);

        refused_everywhere(&instances, &cookie, round, "logout after a killed feed").await;
    }
}

async fn eventually_ok<F, Fut>(send: F) -> StatusCode
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let mut last = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        last = send().await.unwrap().status();
        if last != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Postgres allocates event ids in one order and may commit them in another:
/// a revocation whose event commits after a newer one is still applied by
/// every instance before its revoker is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_out_of_order_are_all_applied_before_the_answer() {
    let app = spawn_app(Backend::Postgres).await;
    let instances = three_instances(&app).await;
    for round in 0..5 {
        let (_, early) = session_on(&instances[1]).await;
        let (later_client, later) = session_on(&instances[2]).await;
        warm(&instances, &early).await;
        warm(&instances, &later).await;
        let key_hash = key_hash_of(&early);

        // A revoker whose event id is allocated first but committed last.
        let (allocated_tx, allocated) = std::sync::mpsc::channel();
        let (commit_tx, commit) = std::sync::mpsc::channel::<()>();
        let url = app.db.url.clone();
        let slow = std::thread::spawn(move || {
            let mut conn = latchkey::db::connect(&url).unwrap();
            let ((), fence) = fence::guarded(&mut conn, |conn: &mut AnyConnection| {
                diesel::delete(latchkey::db::schema::sessions::table.find(&key_hash))
                    .execute(conn)?;
                events::session_ended(conn, &key_hash)?;
                allocated_tx.send(()).unwrap();
                commit.recv().unwrap();
                Ok::<_, diesel::result::Error>(())
            })
            .unwrap();
            fence.wait(&mut conn).unwrap();
        });
        allocated.recv().unwrap();
        // A newer event commits first, and is acknowledged.
        let logout = format!("{}/logout", instances[2]);
        assert_eq!(
            later_client.post(logout).send().await.unwrap().status(),
            StatusCode::OK
        );
        refused_everywhere(&instances, &later, round, "the newer revocation").await;

        commit_tx.send(()).unwrap();
        tokio::task::spawn_blocking(move || slow.join().unwrap())
            .await
            .unwrap();

        refused_everywhere(
            &instances,
            &early,
            round,
            "the older revocation, committed last",
        )
        .await;
    }
}

/// The stored form of a session cookie's key: a signed cookie's value is its
/// signature followed by the 64-character key, stored under its SHA-256.
fn key_hash_of(cookie: &str) -> String {
    let value = cookie.split_once('=').map_or("", |(_, v)| v);
    store::hash_key(&value[value.len() - 64..])
}

fn leases(app: &TestApp) -> i64 {
    use latchkey::db::schema::instances;
    instances::table
        .count()
        .get_result(&mut app.db.connect())
        .unwrap()
}

async fn leases_become(app: &TestApp, want: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while leases(app) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "leases never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_backends! {
    async fn a_stopped_instance_gives_its_lease_up(backend: Backend) {
        let app = spawn_app(backend).await;
        leases_become(&app, 1).await;
        let port = free_port();
        let key = "ab".repeat(64);
        let addr = format!("127.0.0.1:{port}");
        let mut server = latchkey(
            &[],
            &[
                ("DATABASE_URL", &app.db.url_string()),
                ("LATCHKEY_ADDR", &addr),
                ("LATCHKEY_SECRET_KEY", &key),
            ],
            app.db.dir.path(),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        leases_become(&app, 2).await;

        sigterm(&server);
        let exit = tokio::task::spawn_blocking(move || server.wait()).await.unwrap().unwrap();

        assert!(exit.success(), "{exit:?}");
        assert_eq!(leases(&app), 1, "the stopped instance's lease is gone: no revoker waits for it");
    }
}
