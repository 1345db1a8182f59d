//! The `latchkey` command line: serve, migrate, manage users, hash a password.
//!
//! Passwords come from a hidden prompt, or one line of stdin with
//! `--password-stdin`; never from argv. Errors are one line and exit 1.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::Connection as _;

use crate::audit::{self, Client, Event};
use crate::config::Settings;
use crate::db::{self, AnyConnection};
use crate::sessions::queries as session_queries;
use crate::startup::Application;
use crate::users::{queries, NewPassword, NewUser, User, Username};

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
    },
    /// Print a bcrypt hash, for an admin's own seed migration.
    HashPassword {
        /// Read the password from one line of stdin instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
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
    /// Remove a user and all of that user's sessions.
    Remove { name: String },
    /// List a user's active sessions.
    Sessions { name: String },
    /// End all of a user's sessions.
    Logout { name: String },
}

/// Parses the command line and runs it.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(Settings::from_env()?),
        Command::Migrate => {
            let settings = Settings::from_env()?;
            let mut conn =
                db::connect(&settings.database_url).context("cannot connect to the database")?;
            let applied = db::run_migrations(&mut conn)?;
            println!("applied {applied} migration(s)");
            Ok(())
        }
        Command::User(command) => user(&Settings::from_env()?, command),
        Command::Audit { user, limit } => {
            let conn = &mut open(&Settings::from_env()?)?;
            print_audit(conn, user.as_deref(), limit)
        }
        Command::HashPassword { password_stdin } => {
            let settings = Settings::from_env()?;
            let password = read_new_password(password_stdin)?;
            println!("{}", bcrypt::hash(password.expose(), settings.bcrypt_cost)?);
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
        app.run_until_stopped().await?;
        Ok(())
    })
}

/// One connection, migrated, for the admin commands.
fn open(settings: &Settings) -> anyhow::Result<AnyConnection> {
    let mut conn = db::connect(&settings.database_url).context("cannot connect to the database")?;
    db::run_migrations(&mut conn)?;
    Ok(conn)
}

fn user(settings: &Settings, command: UserCommand) -> anyhow::Result<()> {
    let conn = &mut open(settings)?;
    match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            let username = Username::parse(&name).map_err(anyhow::Error::msg)?;
            let password = read_new_password(password_stdin)?;
            let hash = bcrypt::hash(password.expose(), settings.bcrypt_cost)?;
            let new_user = NewUser {
                username: username.as_str(),
                password_hash: &hash,
            };
            let user = queries::insert(conn, &new_user).map_err(|e| match e {
                DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    anyhow::anyhow!("user {username:?} already exists")
                }
                other => other.into(),
            })?;
            audit_admin(conn, Event::UserCreated, &user, Some("by admin (cli)"))?;
            println!("created user {:?} (id {})", user.username, user.id);
        }
        UserCommand::List => {
            println!(
                "{:>6}  {:<24} {:<8} {:<20} LAST LOGIN",
                "ID", "USERNAME", "ACTIVE", "CREATED"
            );
            for user in queries::list(conn)? {
                println!(
                    "{:>6}  {:<24} {:<8} {:<20} {}",
                    user.id,
                    user.username,
                    if user.is_active { "yes" } else { "no" },
                    user.created_at.format("%Y-%m-%d %H:%M:%S"),
                    user.last_login_at.map_or_else(
                        || "never".to_owned(),
                        |t| t.format("%Y-%m-%d %H:%M:%S").to_string()
                    ),
                );
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let user = find(conn, &name)?;
            let password = read_new_password(password_stdin)?;
            let hash = bcrypt::hash(password.expose(), settings.bcrypt_cost)?;
            let ended = conn.transaction(|conn| {
                queries::set_password_hash(conn, user.id, &hash)?;
                let ended = session_queries::delete_for_user(conn, user.id)?;
                audit_admin(conn, Event::PasswordChanged, &user, Some("by admin (cli)"))?;
                Ok::<_, DieselError>(ended)
            })?;
            println!("password changed for {name:?}; {ended} session(s) ended");
        }
        UserCommand::Disable { name } => {
            let user = find(conn, &name)?;
            let ended = conn.transaction(|conn| {
                queries::set_active(conn, user.id, false)?;
                let ended = session_queries::delete_for_user(conn, user.id)?;
                audit_admin(conn, Event::UserDisabled, &user, Some("by admin (cli)"))?;
                Ok::<_, DieselError>(ended)
            })?;
            println!("disabled {name:?}; {ended} session(s) ended");
        }
        UserCommand::Enable { name } => {
            let user = find(conn, &name)?;
            queries::set_active(conn, user.id, true)?;
            audit_admin(conn, Event::UserEnabled, &user, Some("by admin (cli)"))?;
            println!("enabled {name:?}");
        }
        UserCommand::Remove { name } => {
            let user = find(conn, &name)?;
            let ended = conn.transaction(|conn| {
                let ended = session_queries::delete_for_user(conn, user.id)?;
                audit_admin(conn, Event::UserRemoved, &user, Some("by admin (cli)"))?;
                queries::delete(conn, user.id)?;
                Ok::<_, DieselError>(ended)
            })?;
            println!("removed {name:?}; {ended} session(s) ended");
        }
        UserCommand::Sessions { name } => {
            let user = find(conn, &name)?;
            let sessions = session_queries::list_for_user(conn, user.id, db::now())?;
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
        }
        UserCommand::Logout { name } => {
            let user = find(conn, &name)?;
            let ended = session_queries::delete_for_user(conn, user.id)?;
            let detail = format!("{ended} session(s), by admin (cli)");
            audit_admin(conn, Event::SessionsEnded, &user, Some(&detail))?;
            println!("ended {ended} session(s) of {name:?}");
        }
    }
    Ok(())
}

fn print_audit(conn: &mut AnyConnection, user: Option<&str>, limit: u32) -> anyhow::Result<()> {
    let user = match user {
        Some(name) => Some((name, queries::find_by_username(conn, name)?.map(|u| u.id))),
        None => None,
    };
    let rows = audit::list(conn, user, i64::from(limit))?;
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

/// Records what an admin did from the command line.
fn audit_admin(
    conn: &mut AnyConnection,
    event: Event,
    user: &User,
    detail: Option<&str>,
) -> diesel::QueryResult<()> {
    audit::record(
        conn,
        event,
        Some(user.id),
        Some(&user.username),
        &Client::default(),
        detail,
    )
}

fn find(conn: &mut AnyConnection, name: &str) -> anyhow::Result<User> {
    queries::find_by_username(conn, name)?.with_context(|| format!("no user named {name:?}"))
}

/// Reads a new password (hidden prompt, asked twice; or one line of stdin) and checks the rules.
fn read_new_password(from_stdin: bool) -> anyhow::Result<NewPassword> {
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
    NewPassword::parse(password).map_err(anyhow::Error::msg)
}
