//! One integration binary: every module links once.

/// Declares each test once and runs it on both backends:
/// `name::postgres` and `name::sqlite`.
macro_rules! both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)+) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn run($backend: Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(Backend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(Backend::Sqlite).await
                }
            }
        )+
    };
}

mod abuse;
mod account;
mod authenticator;
mod browser;
mod browser_passkeys;
mod cli;
mod cluster;
mod factors;
mod forward_deploy;
mod helpers;
mod keys;
mod logs;
mod migrations;
mod names;
mod ops;
mod pages;
mod passkeys;
mod passwords;
mod pg;
mod revocation;
mod seed;
mod sessions;
mod throttle;
mod tokens;
mod welcome;
