use std::path::Path;
use std::process::Command;

fn main() {
    // Embedded migrations: a new migration folder must trigger a rebuild.
    println!("cargo:rerun-if-changed=migrations");
    commit();
}

/// `LATCHKEY_COMMIT` for `latchkey_build_info`: the short hash of HEAD, or
/// `unknown` without git (a source tarball, a container without `.git`).
/// Set at build time, the variable wins: how a build without `.git` still
/// says what it is.
fn commit() {
    println!("cargo:rerun-if-env-changed=LATCHKEY_COMMIT");
    let commit = std::env::var("LATCHKEY_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LATCHKEY_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it
    // names (a commit). `--git-path` finds both in a worktree too. Only
    // existing files: cargo reruns every time for a missing one.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in std::iter::once("HEAD").chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

/// One line of git's output; `None` when git is absent or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.trim();
    (out.status.success() && !line.is_empty()).then(|| line.to_owned())
}
