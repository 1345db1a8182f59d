#![forbid(unsafe_code)]

use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,actix_session=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match latchkey::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One line, whatever the cause chain holds.
            let message = format!("{err:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("latchkey: error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
