#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use latchkey::cli::Cli;
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); as JSON lines when
/// `LATCHKEY_LOG_FORMAT=json`.
fn init_logging() -> Result<(), String> {
    let _ = dotenvy::dotenv(); // errors in .env are reported with the settings
    let json = match std::env::var("LATCHKEY_LOG_FORMAT")
        .unwrap_or_default()
        .as_str()
    {
        "" | "text" => false,
        "json" => true,
        other => {
            return Err(format!(
                "LATCHKEY_LOG_FORMAT: {other:?} is not text or json"
            ))
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_session=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    Ok(())
}

fn main() -> ExitCode {
    // Parsed first: `--help`, `--version` and usage errors (exit 2) answer
    // whatever the environment holds.
    let cli = Cli::parse();
    if let Err(message) = init_logging() {
        eprintln!("latchkey: error: {message}");
        return ExitCode::FAILURE;
    }
    match latchkey::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, whatever the cause chain holds.
            let message = format!("{err:#}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("latchkey: error: {message}");
            ExitCode::from(err.exit_code())
        }
    }
}
