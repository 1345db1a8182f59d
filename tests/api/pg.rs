//! A throwaway PostgreSQL cluster for the test run, unless `TEST_DATABASE_URL` names one.
//!
//! Started once per test process from the system's PostgreSQL binaries (as the
//! `postgres` user when running as root: initdb refuses root), with its data in a
//! temporary directory. A detached watchdog stops it and removes the directory
//! when the test process exits, however it exits.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::helpers::{free_port, until_this_process_exits};

static ADMIN_URL: OnceLock<String> = OnceLock::new();
static SHARED: OnceLock<Cluster> = OnceLock::new();

/// A URL of a database on the test server that may create and drop others.
pub fn admin_url() -> &'static str {
    ADMIN_URL.get_or_init(|| match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => SHARED.get_or_init(Cluster::start_new).admin_url(),
    })
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..host_part_end], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn find_bin_dir() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versioned.sort();
    versioned.reverse();
    in_path
        .into_iter()
        .chain(versioned)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .expect("PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql or set TEST_DATABASE_URL")
}

/// A command run as `postgres` when we are root.
fn pg_command(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of our own: data in a temporary directory, on a free port.
pub struct Cluster {
    bin: PathBuf,
    as_root: bool,
    root: PathBuf,
    port: u16,
}

impl Cluster {
    pub fn start_new() -> Self {
        let bin = find_bin_dir();
        let as_root = is_root();
        let root = tempfile::Builder::new()
            .prefix("latchkey-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        if as_root {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&root);
            run(chown, "chown");
        }
        let port = free_port();
        let cluster = Self {
            bin,
            as_root,
            root,
            port,
        };

        let mut initdb = pg_command(as_root, &cluster.bin.join("initdb"));
        initdb.arg("-D").arg(cluster.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(initdb, "initdb");
        cluster.start();

        // Stop the cluster and remove its files once this process is gone.
        until_this_process_exits(
            "",
            &format!(
                "{pg_ctl} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{root}'",
                pg_ctl = cluster.pg_ctl_line(),
                data = cluster.data().display(),
                root = cluster.root.display(),
            ),
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn pg_ctl_line(&self) -> String {
        format!(
            "{}{}",
            if self.as_root {
                "runuser -u postgres -- "
            } else {
                ""
            },
            self.bin.join("pg_ctl").display()
        )
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), on the same port, and waits until it accepts.
    pub fn start(&self) {
        let mut start = pg_command(self.as_root, &self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=500",
                self.port,
                self.root.display()
            ))
            .arg("start");
        run(start, "pg_ctl start");
    }

    /// Stops the server (an outage: every open connection is cut). A fast, clean
    /// shutdown: with `synchronous_commit=off` an immediate one loses recent commits.
    pub fn stop(&self) {
        let mut stop = pg_command(self.as_root, &self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = pg_command(self.as_root, &self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
        "postgres://u:p@h:5432/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
}
