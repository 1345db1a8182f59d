//! The `latchkey` command line: serve, migrate, manage users and tokens, hash
//! a password, import the breached-password list, print shell completions.
//!
//! Passwords come from a hidden prompt, or one line of stdin with
//! `--password-stdin`; never from argv. Errors are one line. For scripts:
//! the exit code is 0 done, 1 failure, 2 usage (clap's), 3 "already exists" or
//! "not found" ([`CliError`]); listings take `--json` (one JSON document on
//! stdout); commands that only read never create or migrate the database.

use std::io::{BufRead, IsTerminal as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use chrono::NaiveDateTime;
use clap::{CommandFactory as _, Parser, Subcommand};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::{json, Value};

use crate::account::ops::{self, Sessions};
use crate::audit::{self, Entry, Event};
use crate::config::{Settings, BREACHED_PASSWORDS_VAR};
use crate::db::{self, AnyConnection};
use crate::factors::queries as factor_queries;
use crate::links::{self, LinkPurpose};
use crate::sessions::queries as session_queries;
use crate::startup::Application;
use crate::tokens;
use crate::users::{breached, hasher, queries, NewPassword, NewUser, User, Username};

/// What the audit trail says of every change made from the command line.
const BY_ADMIN: &str = "by admin (cli)";

/// How a command failed, as its exit code tells a script.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A user or token named on the command line does not exist (exit 3).
    #[error("{0}")]
    NotFound(String),
    /// What was to be created exists already (exit 3).
    #[error("{0}")]
    Exists(String),
    /// Anything else (exit 1).
    #[error(transparent)]
    Other(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotFound(_) | Self::Exists(_) => 3,
            Self::Other(_) => 1,
        }
    }
}

impl From<anyhow::Error> for CliError {
    /// Commands fail with `anyhow`; a `CliError` raised inside keeps its kind.
    fn from(err: anyhow::Error) -> Self {
        err.downcast::<Self>().unwrap_or_else(Self::Other)
    }
}

fn no_user(name: &str) -> CliError {
    CliError::NotFound(format!("no user named {name:?}"))
}

#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about = "A login/logout server")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Print the audit trail of authentication events, newest first.
    Audit {
        /// Only the events of this username.
        #[arg(long = "user")]
        user: Option<String>,
        /// How many events at most.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a bcrypt hash, for an admin's own seed migration.
    HashPassword {
        /// Read the password from one line of stdin instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Personal access tokens (for scripts and API clients).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The offline breached-password list.
    #[command(subcommand)]
    Breached(BreachedCommand),
    /// Print a completion script: `latchkey completions bash > /etc/bash_completion.d/latchkey`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token for a user and print it (shown this once).
    Create {
        /// The user.
        name: String,
        /// What the token is for.
        #[arg(long = "name", value_name = "LABEL")]
        label: String,
        /// How long it lasts (`90d`, `12h`, ...; whole days, at least one).
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// List a user's tokens (never their secrets).
    List {
        name: String,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one of a user's tokens (in force on every running server when this exits).
    Revoke { name: String, id: i32 },
}

#[derive(Debug, Subcommand)]
enum BreachedCommand {
    /// Build the filter file from a Have I Been Pwned SHA-1 download
    /// (`HASH:COUNT` lines; `-` reads stdin).
    Import {
        file: PathBuf,
        /// Where to write the filter (default: $LATCHKEY_BREACHED_PASSWORDS).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        /// When the user exists: change nothing and succeed (exit 0, not 3).
        #[arg(long)]
        if_missing: bool,
    },
    /// List users.
    List {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password; ends all of that user's sessions.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user; ends all of that user's sessions.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Remove a user and all of that user's sessions (asks first on a terminal).
    Remove {
        name: String,
        /// Do not ask: needed without a terminal.
        #[arg(long, short)]
        yes: bool,
    },
    /// List a user's active sessions.
    Sessions {
        name: String,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// End all of a user's sessions.
    Logout { name: String },
    /// Create a user without a usable password (if missing) and print a
    /// one-time link where they choose one.
    Invite { name: String },
    /// Print a one-time link where the user sets a new password (using it
    /// ends their other sessions).
    Reset { name: String },
    /// List a user's second factors (never their secrets).
    Factors { name: String },
    /// Remove every second factor and recovery code of a user, and end their
    /// sessions (for a user who lost every factor).
    ResetFactors { name: String },
}

/// Runs a parsed command line (the server when it names no command).
pub fn run(cli: Cli) -> Result<(), CliError> {
    dispatch(cli).map_err(CliError::from)
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(Settings::from_env()?),
        Command::Migrate => {
            let settings = Settings::from_env()?;
            let mut conn =
                db::connect(&settings.database_url).context("cannot connect to the database")?;
            let applied = db::run_migrations(&mut conn)?;
            queries::fill_folded_names(&mut conn)?;
            println!("applied {applied} migration(s)");
            Ok(())
        }
        Command::User(command) => user(&Settings::from_env()?, command),
        Command::Audit { user, limit, json } => {
            let conn = &mut open_to_read(&Settings::from_env()?)?;
            print_audit(conn, user.as_deref(), limit, json)
        }
        Command::HashPassword { password_stdin } => {
            let settings = Settings::from_env()?;
            let password = read_new_password(&settings, password_stdin, None)?;
            println!("{}", hasher::hash(&password, settings.bcrypt_cost)?);
            Ok(())
        }
        Command::Token(command) => token(&Settings::from_env()?, command),
        Command::Breached(BreachedCommand::Import { file, output }) => {
            let settings = Settings::from_env()?;
            import_breached(&file, output.or(settings.breached_passwords))
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "latchkey", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings.clone()).await?;
        tracing::info!(
            addr = %settings.addr.ip(),
            port = app.port(),
            database = if settings.database_url.is_postgres() { "postgres" } else { "sqlite" },
            secure_cookies = settings.cookie_secure,
            "latchkey is listening"
        );
        if let (Some(addr), Some(port)) = (settings.metrics_addr, app.metrics_port()) {
            tracing::info!(addr = %addr.ip(), port, "metrics served on their own listener");
        }
        app.run_until_stopped().await?;
        Ok(())
    })
}

fn token(settings: &Settings, command: TokenCommand) -> anyhow::Result<()> {
    let conn = &mut match command {
        TokenCommand::List { .. } => open_to_read(settings)?,
        _ => open(settings)?,
    };
    match command {
        TokenCommand::Create {
            name,
            label,
            expires,
        } => {
            let user = find(conn, &name)?;
            let label = tokens::valid_name(&label).map_err(anyhow::Error::msg)?;
            let lifetime = crate::config::parse_duration_text(&expires)
                .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
            let days = u32::try_from(lifetime.as_secs() / 86_400)
                .ok()
                .filter(|d| (1..=tokens::MAX_DAYS).contains(d))
                .with_context(|| format!("--expires: from 1 to {} days", tokens::MAX_DAYS))?;
            let entry = Entry::new(Event::TokenCreated).detail(BY_ADMIN);
            let (row, secret) = ops::create_token(conn, user.id, label, days, entry)?
                .with_context(|| {
                    format!("{name:?} holds {} tokens already", tokens::MAX_PER_USER)
                })?;
            eprintln!(
                "created token {} ({:?}) for {name:?}, expires {} UTC",
                row.id,
                row.name,
                row.expires_at.format("%Y-%m-%d %H:%M")
            );
            println!("{}", secret.expose());
        }
        TokenCommand::List { name, json } => {
            let user = find(conn, &name)?;
            let rows = tokens::queries::list(conn, user.id)?;
            if json {
                return print_json(rows.iter().map(|row| {
                    json!({
                        "id": row.id,
                        "name": row.name,
                        "created_at": utc(row.created_at),
                        "last_used_at": row.last_used_at.map(utc),
                        "expires_at": utc(row.expires_at),
                    })
                }));
            }
            let time = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
            println!(
                "{:>6}  {:<30} {:<17} {:<17} EXPIRES",
                "ID", "NAME", "CREATED", "LAST USED"
            );
            for row in &rows {
                println!(
                    "{:>6}  {:<30} {:<17} {:<17} {}",
                    row.id,
                    row.name,
                    time(row.created_at),
                    row.last_used_at.map_or_else(|| "never".to_owned(), time),
                    time(row.expires_at),
                );
            }
            println!("{} token(s)", rows.len());
        }
        TokenCommand::Revoke { name, id } => {
            let user = find(conn, &name)?;
            let entry = Entry::new(Event::TokenRevoked).detail(BY_ADMIN);
            if !ops::revoke_token(conn, user.id, id, entry)? {
                return Err(CliError::NotFound(format!("{name:?} has no token {id}")).into());
            }
            println!("revoked token {id} of {name:?}");
        }
    }
    Ok(())
}

/// One connection, migrated (and seeded users' names folded), for the admin commands.
fn open(settings: &Settings) -> anyhow::Result<AnyConnection> {
    let mut conn = db::connect(&settings.database_url).context("cannot connect to the database")?;
    db::run_migrations(&mut conn)?;
    queries::fill_folded_names(&mut conn)?;
    Ok(conn)
}

/// One connection for a command that only reads: it neither creates nor
/// migrates the database (a listing must not change the schema under a
/// running server), and refuses one that this binary's migrations are not
/// all applied to.
fn open_to_read(settings: &Settings) -> anyhow::Result<AnyConnection> {
    if let Some(file) = settings.database_url.sqlite_file() {
        if !file.exists() {
            bail!(
                "no database at {}: `latchkey migrate` creates it",
                file.display()
            );
        }
    }
    let mut conn = db::connect(&settings.database_url).context("cannot connect to the database")?;
    if db::has_pending_migrations(&mut conn)? {
        bail!("the database is not migrated: run `latchkey migrate` first");
    }
    Ok(conn)
}

fn user(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    let conn = &mut match command {
        UserCommand::List { .. } | UserCommand::Sessions { .. } => open_to_read(settings)?,
        _ => open(settings)?,
    };
    let admin = |event| Entry::new(event).detail(BY_ADMIN);
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            if_missing,
        } => add_user(conn, settings, &name, password_stdin, if_missing),
        UserCommand::List { json } => list_users(conn, json),
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let user = find(conn, &name)?;
            let password = read_new_password(settings, password_stdin, Some(&user.name()))?;
            let hash = hasher::hash(&password, settings.bcrypt_cost)?;
            let entry = admin(Event::PasswordChanged).of(&user);
            let ended = ops::set_password(conn, user.id, &hash, Sessions::All, entry)?;
            println!("password changed for {name:?}; {ended} session(s) ended");
            Ok(())
        }
        UserCommand::Disable { name } => {
            let user = find(conn, &name)?;
            let ended = ops::disable(conn, user.id, admin(Event::UserDisabled).of(&user))?;
            println!("disabled {name:?}; {ended} session(s) ended");
            Ok(())
        }
        UserCommand::Enable { name } => {
            let user = find(conn, &name)?;
            ops::enable(conn, user.id, admin(Event::UserEnabled).of(&user))?;
            println!("enabled {name:?}");
            Ok(())
        }
        UserCommand::Remove { name, yes } => {
            let user = find(conn, &name)?;
            if !yes {
                confirm_removal(&user.username)?;
            }
            let ended = ops::remove(conn, user.id, admin(Event::UserRemoved).of(&user))?;
            println!("removed {name:?}; {ended} session(s) ended");
            Ok(())
        }
        UserCommand::Sessions { name, json } => list_sessions(conn, &name, json),
        UserCommand::Invite { name } => {
            let user = match queries::find_by_username(conn, &name)? {
                Some(user) => user,
                None => {
                    let username = Username::parse(&name)?;
                    let new_user = NewUser {
                        username: username.as_str(),
                        password_hash: links::NO_PASSWORD,
                    };
                    let user = ops::create(conn, &new_user, admin(Event::UserCreated))?;
                    eprintln!(
                        "created user {:?} (id {}) without a password",
                        user.username, user.id
                    );
                    user
                }
            };
            print_link(conn, settings, &user, LinkPurpose::Invite)
        }
        UserCommand::Reset { name } => {
            let user = find(conn, &name)?;
            print_link(conn, settings, &user, LinkPurpose::Reset)
        }
        UserCommand::Factors { name } => list_factors(conn, &name),
        UserCommand::ResetFactors { name } => {
            let user = find(conn, &name)?;
            let entry = admin(Event::FactorsReset).of(&user);
            let (removed, ended) = ops::reset_factors(conn, user.id, entry)?;
            println!("removed {removed} factor(s) of {name:?}; {ended} session(s) ended");
            Ok(())
        }
        UserCommand::Logout { name } => {
            let user = find(conn, &name)?;
            let entry = admin(Event::SessionsEnded).of(&user);
            let ended = ops::end_sessions(conn, user.id, Sessions::All, entry)?;
            println!("ended {ended} session(s) of {name:?}");
            Ok(())
        }
    }
}

/// Asks on the terminal before a user is removed; without a terminal there
/// is no one to ask, and a script says `--yes`.
fn confirm_removal(name: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("not removed: no terminal to confirm on; pass --yes to remove {name:?}");
    }
    eprint!("Remove user {name:?} and end all of their sessions? [y/N] ");
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
        bail!("not removed");
    }
    Ok(())
}

fn add_user(
    conn: &mut AnyConnection,
    settings: &Settings,
    name: &str,
    password_stdin: bool,
    if_missing: bool,
) -> anyhow::Result<()> {
    let username = Username::parse(name)?;
    // Before asking for a password that would not be used.
    if let Some(user) = queries::find_by_username(conn, username.as_str())? {
        return taken(&user.username, if_missing);
    }
    let password = read_new_password(settings, password_stdin, Some(&username))?;
    let hash = hasher::hash(&password, settings.bcrypt_cost)?;
    let new_user = NewUser {
        username: username.as_str(),
        password_hash: &hash,
    };
    let entry = Entry::new(Event::UserCreated).detail(BY_ADMIN);
    let user = match ops::create(conn, &new_user, entry) {
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            // Created meanwhile. Say which spelling holds the name: it may be
            // another than the one typed.
            let holder = queries::find_by_username(conn, username.as_str())?
                .map_or_else(|| username.to_string(), |u| u.username);
            return taken(&holder, if_missing);
        }
        created => created?,
    };
    println!("created user {:?} (id {})", user.username, user.id);
    Ok(())
}

/// `user add` of a name that is taken: "already exists" (exit 3), or with
/// `--if-missing` done, nothing changed.
fn taken(name: &str, if_missing: bool) -> anyhow::Result<()> {
    if !if_missing {
        return Err(CliError::Exists(format!("user {name:?} already exists")).into());
    }
    println!("user {name:?} already exists; nothing changed");
    Ok(())
}

fn list_users(conn: &mut AnyConnection, json: bool) -> anyhow::Result<()> {
    let users = queries::list(conn)?;
    if json {
        return print_json(users.iter().map(|user| {
            json!({
                "id": user.id,
                "username": user.username,
                "active": user.is_active,
                "created_at": utc(user.created_at),
                "last_login_at": user.last_login_at.map(utc),
            })
        }));
    }
    let time = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    println!(
        "{:>6}  {:<24} {:<8} {:<20} LAST LOGIN",
        "ID", "USERNAME", "ACTIVE", "CREATED"
    );
    for user in users {
        println!(
            "{:>6}  {:<24} {:<8} {:<20} {}",
            user.id,
            user.username,
            if user.is_active { "yes" } else { "no" },
            time(user.created_at),
            user.last_login_at.map_or_else(|| "never".to_owned(), time),
        );
    }
    Ok(())
}

fn list_sessions(conn: &mut AnyConnection, name: &str, json: bool) -> anyhow::Result<()> {
    let user = find(conn, name)?;
    let sessions = session_queries::list_for_user(conn, user.id, db::now())?;
    if json {
        return print_json(sessions.iter().map(|s| {
            json!({
                "id": s.public_id,
                "created_at": utc(s.created_at),
                "last_seen_at": utc(s.last_seen_at),
                "expires_at": utc(s.expires_at),
                "client_ip": s.client_ip,
                "user_agent": s.user_agent,
            })
        }));
    }
    println!(
        "{:<20} {:<20} {:<20} {:<40} USER AGENT",
        "CREATED", "LAST SEEN", "EXPIRES", "CLIENT"
    );
    let time = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    for s in &sessions {
        println!(
            "{:<20} {:<20} {:<20} {:<40} {}",
            time(s.created_at),
            time(s.last_seen_at),
            time(s.expires_at),
            s.client_ip.as_deref().unwrap_or("-"),
            s.user_agent.as_deref().unwrap_or("-"),
        );
    }
    println!("{} active session(s)", sessions.len());
    Ok(())
}

/// Prints `LATCHKEY_PUBLIC_URL/welcome/TOKEN` (the URL resolved as the server
/// does: required unless bound to loopback).
fn print_link(
    conn: &mut AnyConnection,
    settings: &Settings,
    user: &User,
    purpose: LinkPurpose,
) -> anyhow::Result<()> {
    let public = settings.public_url(settings.addr.port())?;
    let entry = Entry::new(Event::LinkCreated).detail(BY_ADMIN).of(user);
    let token = ops::create_link(conn, user.id, purpose, settings.link_lifetime, entry)?;
    let link = public.join(&format!("/welcome/{}", token.expose()))?;
    eprintln!(
        "one-time {} link for {:?}, valid for {}:",
        purpose.as_str(),
        user.username,
        humantime::format_duration(settings.link_lifetime)
    );
    println!("{link}");
    Ok(())
}

fn list_factors(conn: &mut AnyConnection, name: &str) -> anyhow::Result<()> {
    let user = find(conn, name)?;
    let time = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
    println!(
        "{:>6}  {:<8} {:<30} {:<17} LAST USED",
        "ID", "KIND", "NAME", "CREATED"
    );
    let rows = factor_queries::list(conn, user.id)?;
    for row in &rows {
        println!(
            "{:>6}  {:<8} {:<30} {:<17} {}",
            row.id,
            row.kind,
            row.name,
            time(row.created_at),
            row.last_used_at.map_or_else(|| "never".to_owned(), time),
        );
    }
    let left = factor_queries::recovery_codes_left(conn, user.id)?;
    println!("{} factor(s); {left} unused recovery code(s)", rows.len());
    Ok(())
}

fn print_audit(
    conn: &mut AnyConnection,
    user: Option<&str>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let user = match user {
        Some(name) => Some((name, queries::find_by_username(conn, name)?.map(|u| u.id))),
        None => None,
    };
    let rows = audit::list(conn, user, i64::from(limit))?;
    // A removed user's events are still theirs; a name nobody ever had is a mistake.
    if let Some((name, None)) = user {
        if rows.is_empty() {
            return Err(no_user(name).into());
        }
    }
    if json {
        return print_json(rows.iter().map(|row| {
            json!({
                "at": utc(row.at),
                "event": row.event,
                "user_id": row.user_id,
                "username": row.username,
                "client_ip": row.client_ip,
                "user_agent": row.user_agent,
                "detail": row.detail,
            })
        }));
    }
    println!(
        "{:<20} {:<22} {:<20} {:<40} {:<24} USER AGENT",
        "TIME (UTC)", "EVENT", "USER", "CLIENT", "DETAIL"
    );
    for row in &rows {
        let user = match (&row.username, row.user_id) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => format!("#{id}"),
            (None, None) => "-".to_owned(),
        };
        println!(
            "{:<20} {:<22} {:<20} {:<40} {:<24} {}",
            row.at.format("%Y-%m-%d %H:%M:%S"),
            row.event,
            user,
            row.client_ip.as_deref().unwrap_or("-"),
            row.detail.as_deref().unwrap_or("-"),
            row.user_agent.as_deref().unwrap_or("-"),
        );
    }
    println!("{} event(s)", rows.len());
    Ok(())
}

fn find(conn: &mut AnyConnection, name: &str) -> anyhow::Result<User> {
    Ok(queries::find_by_username(conn, name)?.ok_or_else(|| no_user(name))?)
}

/// A listing for scripts: one JSON array on stdout.
fn print_json(rows: impl Iterator<Item = Value>) -> anyhow::Result<()> {
    let document = Value::Array(rows.collect());
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// A stored (UTC) time as JSON gives it: RFC 3339, `2025-01-31T12:00:00Z`.
fn utc(time: NaiveDateTime) -> String {
    time.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Builds the breached-password filter file from a Have I Been Pwned download.
fn import_breached(file: &Path, output: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(output) = output else {
        bail!("no output file: pass --output PATH or set {BREACHED_PASSWORDS_VAR}");
    };
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let opened =
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        Box::new(std::io::BufReader::new(opened))
    };
    let count = breached::build(input, &output)?;
    println!(
        "imported {count} password hash(es) into {}",
        output.display()
    );
    Ok(())
}

/// Reads a new password and checks the rules: for an account (`user`), also
/// its name and the breached-password list; for a seed's hash, the list.
fn read_new_password(
    settings: &Settings,
    from_stdin: bool,
    user: Option<&Username>,
) -> anyhow::Result<NewPassword> {
    // A bad filter file fails before anyone types a password.
    let breached = breached::load(settings)?;
    let password = read_password(from_stdin)?;
    Ok(match user {
        Some(name) => NewPassword::parse_for(password, name, breached.as_ref())?,
        None => NewPassword::parse(password)?.not_breached(breached.as_ref())?,
    })
}

/// A password from a hidden prompt (asked twice) or one line of stdin.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        let read = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        if read == 0 {
            bail!("no password on stdin");
        }
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        line
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to prompt for a password: use --password-stdin");
        }
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Repeat password: ")?;
        if first != again {
            bail!("the passwords do not match");
        }
        first
    };
    Ok(password)
}
