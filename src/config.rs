//! Settings, read once from the environment (and `.env`) and validated.
//!
//! Every variable is parsed here; a bad value stops start-up with one line
//! that names the variable. Nothing else in the crate reads the environment.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

/// The SQLite file used when `DATABASE_URL` is not set.
pub const DEFAULT_SQLITE_FILE: &str = "latchkey.db";
/// The file that keeps a generated secret key, beside the SQLite file.
pub const KEY_FILE: &str = "latchkey.key";
/// Smallest secret key accepted (the cookie `Key` needs 64 bytes).
pub const MIN_SECRET_KEY_BYTES: usize = 64;
/// Names the breached-password filter file.
pub const BREACHED_PASSWORDS_VAR: &str = "LATCHKEY_BREACHED_PASSWORDS";

/// A configuration error: always names the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// Where the data lives. The backend is chosen by the URL's scheme, never by trial.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    /// A path (or `file:` URI) for SQLite.
    Sqlite(String),
}

impl DatabaseUrl {
    /// What the diesel CLI takes, so one `.env` serves both: `postgres://` or
    /// `postgresql://`; `sqlite://PATH`, a `file:` URI or a bare file path for
    /// SQLite. Any other scheme (a typo such as `postgress://` included) and
    /// in-memory databases are refused.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        let var = "DATABASE_URL";
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(Self::Postgres(raw.to_owned()));
        }
        let target = match raw
            .strip_prefix("sqlite://")
            .or(raw.strip_prefix("sqlite:"))
        {
            Some(path) => path,
            // SQLite opens `file:` URIs as such.
            None if raw.starts_with("file:") => raw,
            None => {
                if let Some(scheme) = uri_scheme(raw) {
                    return Err(ConfigError::new(
                        var,
                        format!(
                            "unsupported scheme {scheme:?}: expected postgres://, postgresql://, \
                             sqlite://PATH, a file: URI or a file path"
                        ),
                    ));
                }
                raw
            }
        };
        let url = Self::Sqlite(target.to_owned());
        if url.sqlite_file().is_none() {
            return Err(ConfigError::new(
                var,
                "a SQLite database needs a file (sqlite://latchkey.db or latchkey.db); \
                 in-memory databases are not shared by the pool",
            ));
        }
        Ok(url)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// The file a SQLite URL names: `None` for Postgres or an in-memory database.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let Self::Sqlite(target) = self else {
            return None;
        };
        let path = match target.strip_prefix("file:") {
            Some(uri) => {
                let uri = uri.split('#').next().unwrap_or(uri);
                let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
                if query.split('&').any(|pair| pair == "mode=memory") {
                    return None;
                }
                // `file://HOST/PATH`: the path starts at the first slash after the host.
                match path.strip_prefix("//") {
                    Some(rest) => &rest[rest.find('/')?..],
                    None => path,
                }
            }
            None => target.as_str(),
        };
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The directory beside the database file (SQLite), where a generated key is kept.
    fn key_dir(&self) -> Option<PathBuf> {
        let file = self.sqlite_file()?;
        Some(
            file.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        )
    }
}

/// The scheme of `text` if it starts like a URL (`mysql:`, `postgress://`, ...).
/// One letter is a Windows drive, not a scheme; `:memory:` has none.
fn uri_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (well_formed && scheme.len() > 1).then_some(scheme)
}

/// Postgres URLs may carry a password: never print them whole.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres(_) => f.write_str("Postgres(..)"),
            Self::Sqlite(path) => write!(f, "Sqlite({path:?})"),
        }
    }
}

/// Key material for signing cookies and tokens. Its `Debug` hides it.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Decodes hex or base64 (standard or URL-safe, padded or not); at least 64 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
        };
        match bytes {
            Some(bytes) if bytes.len() >= MIN_SECRET_KEY_BYTES => Ok(Self(bytes)),
            Some(bytes) => Err(format!(
                "must be at least {MIN_SECRET_KEY_BYTES} bytes, got {}",
                bytes.len()
            )),
            None => Err("must be hex or base64".to_owned()),
        }
    }

    pub fn generate() -> Self {
        let mut bytes = vec![0u8; MIN_SECRET_KEY_BYTES];
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Everything the server and the CLI need, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub addr: SocketAddr,
    /// The metrics listener (`LATCHKEY_METRICS_ADDR`); `None`: no metrics served.
    pub metrics_addr: Option<SocketAddr>,
    /// `LATCHKEY_SECRET_KEY` or the content of `LATCHKEY_SECRET_KEY_FILE`.
    /// `None`: see [`Settings::secret_key`].
    pub secret_key: Option<SecretKey>,
    /// The key before a rotation: still verifies, never signs.
    pub secret_key_previous: Option<SecretKey>,
    pub cookie_secure: bool,
    pub bcrypt_cost: u32,
    pub db_pool_size: u32,
    pub db_pool_timeout: Duration,
    pub session_idle_timeout: Duration,
    pub session_max_lifetime: Duration,
    pub remember_me_lifetime: Duration,
    pub login_max_failures: u32,
    /// Failures from one client across all usernames before it is throttled.
    pub login_max_failures_per_client: u32,
    pub login_window: Duration,
    /// Failures per account (whatever the client) in an hour before password
    /// tries without that account's device cookie are refused.
    pub login_max_failures_per_account: u32,
    /// How long audit events are kept.
    pub audit_retention: Duration,
    /// Live sessions per user; a new login past it ends the least recently seen.
    pub max_sessions_per_user: u32,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Concurrent bcrypt computations (default: the number of cores).
    pub hash_workers: usize,
    /// Hash requests allowed to wait for a worker before new ones are shed with 503.
    pub hash_queue: usize,
    /// HTTP worker threads (default: actix's choice, one per core).
    pub http_workers: Option<usize>,
    /// The in-process session cache (revocations reach every instance within
    /// a second); off, every request reads the database.
    pub session_cache: bool,
    /// The breached-password filter file (`latchkey breached import`), opened
    /// where passwords are set or checked: see `users::breached::load`.
    pub breached_passwords: Option<PathBuf>,
    /// `LATCHKEY_PUBLIC_URL`: the origin people use (WebAuthn, printed links,
    /// forward auth's redirects). Unset: `http://localhost:PORT` on a loopback
    /// address (see [`Settings::public_url`]), required elsewhere.
    pub public_url: Option<url::Url>,
    /// Hosts an absolute `next` may lead to after login (`LATCHKEY_ALLOWED_HOSTS`).
    pub allowed_hosts: Vec<AllowedHost>,
    /// `LATCHKEY_COOKIE_DOMAIN`: the session cookie is then seen by that
    /// domain's hosts (and named `__Secure-` instead of `__Host-`).
    pub cookie_domain: Option<String>,
    /// How recent a login or confirmation must be for sensitive changes.
    pub reauth_window: Duration,
    /// `LATCHKEY_REQUIRE_SECOND_FACTOR`: a user without a second factor must
    /// enrol one right after the password, and reaches nothing else until then.
    pub require_second_factor: bool,
    /// `LATCHKEY_LINK_LIFETIME`: how long an invitation or reset link works.
    pub link_lifetime: Duration,
}

/// One entry of `LATCHKEY_ALLOWED_HOSTS`: `app.example.com`, `*.example.com`,
/// either with an explicit `:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lowercase; for a wildcard, the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl AllowedHost {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port.parse::<u16>().ok()?)),
            None => (text, None),
        };
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(suffix) => (suffix.to_owned(), true),
            None => (host, false),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        (host.split('.').all(label_ok)).then_some(Self {
            host,
            wildcard,
            port,
        })
    }

    /// Whether `host` (lowercase, as a URL parser gives it) and `port` (the
    /// explicit one, if any) are allowed: a wildcard covers subdomains only,
    /// and an entry without a port only the scheme's default port.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host_ok = if self.wildcard {
            host.strip_suffix(&self.host)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        host_ok && port == self.port
    }
}

impl Settings {
    /// Reads `.env` (if present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::new(".env", e.to_string())),
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds settings from any variable source (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let database_url = match get("DATABASE_URL") {
            Some(url) => DatabaseUrl::parse(&url)?,
            None => DatabaseUrl::Sqlite(DEFAULT_SQLITE_FILE.to_owned()),
        };
        let addr = parse_addr(
            "LATCHKEY_ADDR",
            get("LATCHKEY_ADDR").as_deref().unwrap_or("127.0.0.1:8080"),
        )?;
        let metrics_addr = get("LATCHKEY_METRICS_ADDR")
            .map(|text| parse_addr("LATCHKEY_METRICS_ADDR", &text))
            .transpose()?;
        if metrics_addr.is_some_and(|metrics| metrics == addr && addr.port() != 0) {
            return Err(ConfigError::new(
                "LATCHKEY_METRICS_ADDR",
                "is LATCHKEY_ADDR: metrics need a listener of their own, never the public one",
            ));
        }
        let secret_key =
            secret_key_setting(&get, "LATCHKEY_SECRET_KEY", "LATCHKEY_SECRET_KEY_FILE")?;
        let secret_key_previous = secret_key_setting(
            &get,
            "LATCHKEY_SECRET_KEY_PREVIOUS",
            "LATCHKEY_SECRET_KEY_PREVIOUS_FILE",
        )?;
        let cookie_secure = match get("LATCHKEY_COOKIE_SECURE") {
            Some(v) => parse_bool("LATCHKEY_COOKIE_SECURE", &v)?,
            // Plain-http development on loopback only; anything reachable gets Secure.
            None => !addr.ip().is_loopback(),
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

        Ok(Self {
            database_url,
            addr,
            metrics_addr,
            secret_key,
            secret_key_previous,
            cookie_secure,
            bcrypt_cost: parse_num(&get, "LATCHKEY_BCRYPT_COST", 12, 4..=31)?,
            db_pool_size: parse_num(&get, "LATCHKEY_DB_POOL_SIZE", 10, 1..=1000)?,
            db_pool_timeout: parse_duration(&get, "LATCHKEY_DB_POOL_TIMEOUT", "2s")?,
            session_idle_timeout: parse_duration(&get, "LATCHKEY_SESSION_IDLE_TIMEOUT", "30m")?,
            session_max_lifetime: parse_duration(&get, "LATCHKEY_SESSION_MAX_LIFETIME", "12h")?,
            remember_me_lifetime: parse_duration(&get, "LATCHKEY_REMEMBER_ME_LIFETIME", "30d")?,
            login_max_failures: parse_num(&get, "LATCHKEY_LOGIN_MAX_FAILURES", 5, 1..=1_000_000)?,
            login_max_failures_per_client: parse_num(
                &get,
                "LATCHKEY_LOGIN_MAX_FAILURES_PER_CLIENT",
                100,
                1..=1_000_000,
            )?,
            login_window: parse_duration(&get, "LATCHKEY_LOGIN_WINDOW", "15m")?,
            login_max_failures_per_account: parse_num(
                &get,
                "LATCHKEY_LOGIN_MAX_FAILURES_PER_ACCOUNT",
                100,
                1..=1_000_000,
            )?,
            audit_retention: parse_duration(&get, "LATCHKEY_AUDIT_RETENTION", "90d")?,
            max_sessions_per_user: parse_num(
                &get,
                "LATCHKEY_MAX_SESSIONS_PER_USER",
                50,
                1..=100_000,
            )?,
            trusted_proxies: parse_proxies(
                get("LATCHKEY_TRUSTED_PROXIES").as_deref().unwrap_or(""),
            )?,
            hash_workers: parse_num(&get, "LATCHKEY_HASH_WORKERS", cores, 1..=1024)?,
            hash_queue: parse_num(&get, "LATCHKEY_HASH_QUEUE", 64, 0..=1_000_000)?,
            session_cache: match get("LATCHKEY_SESSION_CACHE") {
                Some(v) => parse_bool("LATCHKEY_SESSION_CACHE", &v)?,
                None => true,
            },
            http_workers: get("LATCHKEY_HTTP_WORKERS")
                .map(|_| parse_num(&get, "LATCHKEY_HTTP_WORKERS", 1, 1..=1024))
                .transpose()?,
            breached_passwords: get(BREACHED_PASSWORDS_VAR).map(PathBuf::from),
            public_url: get("LATCHKEY_PUBLIC_URL")
                .map(|v| parse_public_url(&v))
                .transpose()?,
            allowed_hosts: parse_allowed_hosts(
                get("LATCHKEY_ALLOWED_HOSTS").as_deref().unwrap_or(""),
            )?,
            cookie_domain: get("LATCHKEY_COOKIE_DOMAIN")
                .map(|v| parse_cookie_domain(&v))
                .transpose()?,
            reauth_window: parse_duration(&get, "LATCHKEY_REAUTH_WINDOW", "10m")?,
            require_second_factor: match get("LATCHKEY_REQUIRE_SECOND_FACTOR") {
                Some(v) => parse_bool("LATCHKEY_REQUIRE_SECOND_FACTOR", &v)?,
                None => false,
            },
            link_lifetime: parse_duration(&get, "LATCHKEY_LINK_LIFETIME", "72h")?,
        })
    }

    /// The origin people use: `LATCHKEY_PUBLIC_URL`, or `http://localhost:PORT`
    /// when listening on a loopback address (`port`: the one actually bound).
    pub fn public_url(&self, port: u16) -> Result<url::Url, ConfigError> {
        if let Some(url) = &self.public_url {
            return Ok(url.clone());
        }
        if !self.addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "LATCHKEY_PUBLIC_URL",
                "required when listening on a non-loopback address (e.g. https://login.example.com)",
            ));
        }
        url::Url::parse(&format!("http://localhost:{port}"))
            .map_err(|e| ConfigError::new("LATCHKEY_PUBLIC_URL", e.to_string()))
    }

    /// The session cookie's name: `__Host-` when Secure and host-only;
    /// `__Secure-` when Secure and shared with `LATCHKEY_COOKIE_DOMAIN`'s hosts
    /// (a `Domain` attribute rules `__Host-` out).
    pub fn session_cookie_name(&self) -> String {
        const SESSION: &str = "latchkey_session";
        match (&self.cookie_domain, self.cookie_secure) {
            (Some(_), true) => format!("__Secure-{SESSION}"),
            _ => self.cookie_name(SESSION),
        }
    }

    /// The name of one of latchkey's cookies (`latchkey_session`, `latchkey_csrf`,
    /// ...): with `Secure`, the `__Host-` prefix pins it to this host, `Path=/`
    /// and HTTPS, so a sibling subdomain cannot set or shadow it.
    pub fn cookie_name(&self, base: &str) -> String {
        if self.cookie_secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// The key that signs cookies: the configured one or, only for SQLite on
    /// a loopback address (a developer's machine), the one kept in
    /// `latchkey.key` beside the database (created, mode 0600, on first use).
    /// Anywhere else a missing key is refused: every instance must share one,
    /// and a key made up by a server would differ from its peers'.
    /// Only the server calls this: commands that sign nothing never need a key.
    pub fn secret_key(&self) -> anyhow::Result<SecretKey> {
        if let Some(key) = &self.secret_key {
            return Ok(key.clone());
        }
        match self.database_url.key_dir() {
            Some(dir) if self.addr.ip().to_canonical().is_loopback() => {
                load_or_create_key(&dir.join(KEY_FILE))
            }
            _ => Err(ConfigError::new(
                "LATCHKEY_SECRET_KEY",
                "not set; a key is generated only for SQLite on a loopback address. \
                 Set LATCHKEY_SECRET_KEY (e.g. `openssl rand -hex 64`, the same on every instance) \
                 or LATCHKEY_SECRET_KEY_FILE",
            )
            .into()),
        }
    }
}

/// A key given as `var` or read from the file `file_var` names (never both).
fn secret_key_setting(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<SecretKey>, ConfigError> {
    match (get(var), get(file_var)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            file_var,
            format!("set either {var} or {file_var}, not both"),
        )),
        (Some(text), None) => SecretKey::parse(&text)
            .map(Some)
            .map_err(|e| ConfigError::new(var, e)),
        (None, Some(path)) => read_key_file(Path::new(path.trim()))
            .map(Some)
            .map_err(|e| ConfigError::new(file_var, e)),
        (None, None) => Ok(None),
    }
}

/// A key file of the operator's: refused unless only its owner may read it.
fn read_key_file(path: &Path) -> Result<SecretKey, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = file_mode(&meta);
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} is readable or writable by group or others (mode {mode:04o}): chmod 600 it"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    SecretKey::parse(&text).map_err(|e| format!("{shown}: {e}"))
}

/// The permission bits of a file (0 where there are none to read).
pub fn file_mode(meta: &std::fs::Metadata) -> u32 {
    #[cfg(unix)]
    {
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0
    }
}

fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    use anyhow::Context as _;
    use std::io::Write as _;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key =
                SecretKey::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            warn_if_loose(path);
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let key = SecretKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new secret key");
    Ok(key)
}

/// Warns when a file latchkey keeps private (key, SQLite files) is open to group or others.
pub fn warn_if_loose(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = file_mode(&meta);
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:04o}"),
                "readable or writable by group or others: chmod 600 it"
            );
        }
    }
}

fn parse_addr(var: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError::new(var, format!("{text:?} is not a host:port address")))
}

/// A comma-separated list of addresses or CIDR ranges.
fn parse_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        "LATCHKEY_TRUSTED_PROXIES",
                        format!("{item:?} is not an IP address or CIDR range"),
                    )
                })
        })
        .collect()
}

fn parse_public_url(text: &str) -> Result<url::Url, ConfigError> {
    let var = "LATCHKEY_PUBLIC_URL";
    let url = url::Url::parse(text.trim())
        .map_err(|e| ConfigError::new(var, format!("{text:?} is not a URL: {e}")))?;
    let origin_only = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if !origin_only {
        return Err(ConfigError::new(
            var,
            format!("{text:?} must be an origin: http(s)://host[:port], nothing more"),
        ));
    }
    Ok(url)
}

/// A comma-separated list of hosts (`app.example.com`, `*.example.com`, `:port`).
fn parse_allowed_hosts(text: &str) -> Result<Vec<AllowedHost>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            AllowedHost::parse(item).ok_or_else(|| {
                ConfigError::new(
                    "LATCHKEY_ALLOWED_HOSTS",
                    format!("{item:?} is not a host name (app.example.com or *.example.com)"),
                )
            })
        })
        .collect()
}

fn parse_cookie_domain(text: &str) -> Result<String, ConfigError> {
    let domain = text.trim().trim_start_matches('.').to_ascii_lowercase();
    match AllowedHost::parse(&domain) {
        Some(host) if !host.wildcard && host.port.is_none() && domain.contains('.') => Ok(domain),
        _ => Err(ConfigError::new(
            "LATCHKEY_COOKIE_DOMAIN",
            format!("{text:?} is not a domain name (example.com)"),
        )),
    }
}

fn parse_bool(var: &'static str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            var,
            format!("{text:?} is not a boolean (true or false)"),
        )),
    }
}

fn parse_num<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(text) = get(var) else {
        return Ok(default);
    };
    match text.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!(
                "{text:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// `30m`, `12h`, `30d`, `1h 30m` or a number of seconds; never zero.
pub fn parse_duration_text(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|_| format!("{text:?} is not a duration (e.g. 30m, 12h, 30d or seconds)"))?,
    };
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    // Far beyond any sensible value, and keeps later arithmetic from overflowing.
    if duration > Duration::from_secs(10 * 366 * 24 * 3600) {
        return Err(format!("{text:?} is longer than ten years"));
    }
    Ok(duration)
}

fn parse_duration(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = get(var).unwrap_or_else(|| default.to_owned());
    parse_duration_text(&text).map_err(|e| ConfigError::new(var, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_serve_sqlite_on_loopback_without_secure_cookies() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url, DatabaseUrl::Sqlite("latchkey.db".into()));
        assert_eq!(s.addr, "127.0.0.1:8080".parse().unwrap());
        assert!(!s.cookie_secure);
        assert_eq!(s.bcrypt_cost, 12);
        assert_eq!(s.session_idle_timeout, Duration::from_secs(30 * 60));
        assert_eq!(s.session_max_lifetime, Duration::from_secs(12 * 3600));
        assert_eq!(s.remember_me_lifetime, Duration::from_secs(30 * 86400));
    }

    #[test]
    fn a_public_address_gets_secure_cookies_unless_told_otherwise() {
        assert!(
            settings(&[("LATCHKEY_ADDR", "0.0.0.0:8080")])
                .unwrap()
                .cookie_secure
        );
        let off = settings(&[
            ("LATCHKEY_ADDR", "0.0.0.0:8080"),
            ("LATCHKEY_COOKIE_SECURE", "false"),
        ]);
        assert!(!off.unwrap().cookie_secure);
        let on = settings(&[("LATCHKEY_COOKIE_SECURE", "true")]);
        assert!(on.unwrap().cookie_secure);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("DATABASE_URL", "postgress://u@h/db"),
            ("DATABASE_URL", "mysql://u@h/db"),
            ("DATABASE_URL", "sqlite://:memory:"),
            ("DATABASE_URL", ":memory:"),
            ("DATABASE_URL", "file::memory:"),
            ("DATABASE_URL", "file:data.db?mode=memory"),
            ("DATABASE_URL", "postgres:/h/db"),
            ("DATABASE_URL", "https://h/db"),
            ("LATCHKEY_METRICS_ADDR", "everywhere"),
            ("LATCHKEY_SECRET_KEY_FILE", "/nonexistent/latchkey.key"),
            ("LATCHKEY_SECRET_KEY_PREVIOUS", "abcd"),
            ("LATCHKEY_ADDR", "not an address"),
            ("LATCHKEY_SECRET_KEY", "abcd"),
            ("LATCHKEY_SECRET_KEY", "not base64 at all!"),
            ("LATCHKEY_COOKIE_SECURE", "maybe"),
            ("LATCHKEY_BCRYPT_COST", "3"),
            ("LATCHKEY_BCRYPT_COST", "twelve"),
            ("LATCHKEY_DB_POOL_SIZE", "0"),
            ("LATCHKEY_SESSION_IDLE_TIMEOUT", "0"),
            ("LATCHKEY_SESSION_IDLE_TIMEOUT", "soon"),
            ("LATCHKEY_SESSION_MAX_LIFETIME", "-5"),
            ("LATCHKEY_TRUSTED_PROXIES", "10.0.0.1, nginx"),
            ("LATCHKEY_LOGIN_MAX_FAILURES", "0"),
            ("LATCHKEY_SESSION_CACHE", "sometimes"),
            ("LATCHKEY_LOGIN_MAX_FAILURES_PER_ACCOUNT", "0"),
            ("LATCHKEY_AUDIT_RETENTION", "forever"),
            ("LATCHKEY_MAX_SESSIONS_PER_USER", "0"),
            ("LATCHKEY_PUBLIC_URL", "login.example.com"),
            ("LATCHKEY_PUBLIC_URL", "https://login.example.com/path"),
            ("LATCHKEY_PUBLIC_URL", "https://user@login.example.com"),
            ("LATCHKEY_ALLOWED_HOSTS", "app.example.com, https://x"),
            ("LATCHKEY_ALLOWED_HOSTS", "evil.com:notaport"),
            ("LATCHKEY_COOKIE_DOMAIN", "*.example.com"),
            ("LATCHKEY_COOKIE_DOMAIN", "com"),
            ("LATCHKEY_REAUTH_WINDOW", "later"),
        ];
        for (var, value) in cases {
            let err = settings(&[(var, value)]).expect_err(value);
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().starts_with(&format!("{var}: ")));
        }
    }

    #[test]
    fn allowed_hosts_match_exactly_or_by_subdomain_and_port() {
        let s = settings(&[(
            "LATCHKEY_ALLOWED_HOSTS",
            "App.Example.com, *.apps.example.com, :8443x",
        )]);
        assert!(s.is_err(), "a bad entry is refused");
        let s = settings(&[(
            "LATCHKEY_ALLOWED_HOSTS",
            "App.Example.com, *.apps.example.com, dev.test:8443",
        )])
        .unwrap();
        let allowed = |host: &str, port| s.allowed_hosts.iter().any(|h| h.allows(host, port));
        assert!(allowed("app.example.com", None));
        assert!(allowed("a.apps.example.com", None));
        assert!(allowed("a.b.apps.example.com", None));
        assert!(allowed("dev.test", Some(8443)));
        assert!(
            !allowed("apps.example.com", None),
            "a wildcard covers subdomains only"
        );
        assert!(!allowed("xapps.example.com", None));
        assert!(!allowed("app.example.com.evil.com", None));
        assert!(!allowed("app.example.com", Some(8080)));
        assert!(!allowed("dev.test", None));
    }

    #[test]
    fn the_public_url_is_required_off_loopback() {
        let local = settings(&[]).unwrap();
        assert_eq!(
            local.public_url(8080).unwrap().as_str(),
            "http://localhost:8080/"
        );
        let public = settings(&[("LATCHKEY_ADDR", "0.0.0.0:8080")]).unwrap();
        assert_eq!(
            public.public_url(8080).unwrap_err().var,
            "LATCHKEY_PUBLIC_URL"
        );
        let set = settings(&[("LATCHKEY_PUBLIC_URL", "https://login.example.com")]).unwrap();
        assert_eq!(
            set.public_url(1).unwrap().as_str(),
            "https://login.example.com/"
        );
    }

    #[test]
    fn a_cookie_domain_makes_the_session_cookie_secure_prefixed() {
        let s = settings(&[
            ("LATCHKEY_COOKIE_SECURE", "true"),
            ("LATCHKEY_COOKIE_DOMAIN", ".Example.com"),
        ])
        .unwrap();
        assert_eq!(s.cookie_domain.as_deref(), Some("example.com"));
        assert_eq!(s.session_cookie_name(), "__Secure-latchkey_session");
        assert_eq!(s.cookie_name("latchkey_csrf"), "__Host-latchkey_csrf");
        let host_only = settings(&[("LATCHKEY_COOKIE_SECURE", "true")]).unwrap();
        assert_eq!(host_only.session_cookie_name(), "__Host-latchkey_session");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let s = settings(&[("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1")]).unwrap();
        assert_eq!(s.trusted_proxies.len(), 3);
        assert!(s.trusted_proxies[1].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(settings(&[]).unwrap().trusted_proxies.is_empty());
    }

    #[test]
    fn durations_accept_units_and_seconds() {
        assert_eq!(parse_duration_text("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration_text("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration_text("12h"), Ok(Duration::from_secs(43200)));
        assert_eq!(
            parse_duration_text("30d"),
            Ok(Duration::from_secs(2_592_000))
        );
    }

    #[test]
    fn secret_keys_decode_from_hex_and_base64() {
        let bytes: Vec<u8> = (0..64).collect();
        assert_eq!(SecretKey::parse(&hex::encode(&bytes)).unwrap().0, bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(SecretKey::parse(&b64).unwrap().0, bytes);
        assert!(SecretKey::parse(&hex::encode(&bytes[..63])).is_err());
        assert_eq!(format!("{:?}", SecretKey::generate()), "SecretKey(..)");
    }

    #[test]
    fn sqlite_urls_keep_the_key_beside_the_file() {
        let dir = |url: &str| DatabaseUrl::parse(url).unwrap().key_dir().unwrap();
        assert_eq!(
            dir("sqlite:///var/lib/latchkey/data.db"),
            PathBuf::from("/var/lib/latchkey")
        );
        assert_eq!(dir("sqlite://latchkey.db"), PathBuf::from("."));
        assert_eq!(dir("/srv/data.db"), PathBuf::from("/srv"));
        assert_eq!(
            dir("file:///srv/data.db?cache=shared"),
            PathBuf::from("/srv")
        );
        assert_eq!(
            DatabaseUrl::parse("postgres://h/db").unwrap().key_dir(),
            None
        );
    }

    #[test]
    fn database_urls_take_what_the_diesel_cli_takes() {
        let parse = |url: &str| DatabaseUrl::parse(url).unwrap();
        let file = |url: &str| parse(url).sqlite_file().unwrap();

        assert!(parse("postgres://u@h/db").is_postgres());
        assert!(parse("postgresql://u@h/db").is_postgres());
        assert_eq!(
            parse("sqlite://data/x.db"),
            DatabaseUrl::Sqlite("data/x.db".into())
        );
        // A bare path is SQLite, as for `diesel`.
        assert_eq!(
            parse("latchkey.db"),
            DatabaseUrl::Sqlite("latchkey.db".into())
        );
        assert_eq!(
            file("/var/lib/latchkey/x.db"),
            PathBuf::from("/var/lib/latchkey/x.db")
        );
        assert_eq!(file("./odd:name.db"), PathBuf::from("./odd:name.db"));
        // `file:` URIs are handed to SQLite whole; their file is known.
        assert_eq!(
            parse("file:x.db?mode=rwc"),
            DatabaseUrl::Sqlite("file:x.db?mode=rwc".into())
        );
        assert_eq!(file("file:x.db?mode=rwc"), PathBuf::from("x.db"));
        assert_eq!(
            file("file://localhost/srv/x.db"),
            PathBuf::from("/srv/x.db")
        );
    }

    #[test]
    fn a_key_is_generated_only_for_sqlite_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data.db").display().to_string();
        let refused = |vars: &[(&str, &str)]| {
            let err = settings(vars).unwrap().secret_key().unwrap_err();
            let text = format!("{err:#}");
            assert!(text.starts_with("LATCHKEY_SECRET_KEY: "), "{text}");
            assert!(!text.contains('\n'), "one line: {text}");
        };

        refused(&[("DATABASE_URL", "postgres://u@127.0.0.1/db")]);
        refused(&[("DATABASE_URL", &db), ("LATCHKEY_ADDR", "0.0.0.0:8080")]);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no key made"
        );
        assert!(settings(&[("DATABASE_URL", &db)])
            .unwrap()
            .secret_key()
            .is_ok());
        let given = hex::encode([7u8; 64]);
        let postgres = settings(&[
            ("DATABASE_URL", "postgres://u@127.0.0.1/db"),
            ("LATCHKEY_SECRET_KEY", &given),
        ]);
        assert_eq!(
            postgres.unwrap().secret_key().unwrap().as_bytes(),
            &[7u8; 64]
        );
    }

    /// A file holding `key`, with the given mode.
    fn key_file(dir: &Path, name: &str, key: &[u8], mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, hex::encode(key)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn a_key_file_must_be_private_and_not_set_beside_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let private = key_file(dir.path(), "private.key", &[1; 64], 0o600);
        let shared = key_file(dir.path(), "shared.key", &[1; 64], 0o644);
        let for_group = key_file(dir.path(), "group.key", &[1; 64], 0o640);

        let s = settings(&[("LATCHKEY_SECRET_KEY_FILE", &private)]).unwrap();
        assert_eq!(s.secret_key.unwrap().as_bytes(), &[1; 64]);
        for loose in [&shared, &for_group] {
            let err = settings(&[("LATCHKEY_SECRET_KEY_FILE", loose)]).unwrap_err();
            assert_eq!(err.var, "LATCHKEY_SECRET_KEY_FILE");
            assert!(err.reason.contains("by group or others"), "{err}");
        }
        let both = settings(&[
            ("LATCHKEY_SECRET_KEY", &hex::encode([1u8; 64])),
            ("LATCHKEY_SECRET_KEY_FILE", &private),
        ]);
        assert!(both.unwrap_err().reason.contains("not both"));
    }

    #[test]
    fn the_previous_key_is_read_like_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let previous = key_file(dir.path(), "previous.key", &[2; 64], 0o400);

        let s = settings(&[("LATCHKEY_SECRET_KEY_PREVIOUS_FILE", &previous)]).unwrap();
        assert_eq!(s.secret_key_previous.unwrap().as_bytes(), &[2; 64]);
        let s = settings(&[("LATCHKEY_SECRET_KEY_PREVIOUS", &hex::encode([3u8; 64]))]).unwrap();
        assert_eq!(s.secret_key_previous.unwrap().as_bytes(), &[3; 64]);
        assert!(settings(&[]).unwrap().secret_key_previous.is_none());
    }

    #[test]
    fn metrics_have_a_listener_of_their_own_or_none() {
        assert_eq!(settings(&[]).unwrap().metrics_addr, None);
        let s = settings(&[("LATCHKEY_METRICS_ADDR", "127.0.0.1:9100")]).unwrap();
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        let same = settings(&[
            ("LATCHKEY_ADDR", "127.0.0.1:9100"),
            ("LATCHKEY_METRICS_ADDR", "127.0.0.1:9100"),
        ]);
        assert_eq!(same.unwrap_err().var, "LATCHKEY_METRICS_ADDR");
    }

    #[test]
    fn a_generated_key_is_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data.db");
        let s = settings(&[("DATABASE_URL", &format!("sqlite://{}", db.display()))]).unwrap();

        let first = s.secret_key().unwrap();
        let second = s.secret_key().unwrap();

        assert_eq!(first.as_bytes(), second.as_bytes());
        assert_eq!(first.as_bytes().len(), MIN_SECRET_KEY_BYTES);
        let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn postgres_urls_are_not_printed() {
        let url = DatabaseUrl::parse("postgres://u:hunter2@h/db").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
