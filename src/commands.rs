//! What the CLI's subcommands do, callable without a process (`main.rs` only parses
//! arguments). Each returns the text to print or a [`CommandError`] with its exit code.

use crate::auth::api_key::generate;
use crate::checks;
use crate::config::{self, duration::parse_duration, Config, ConfigError};
use crate::domain::id::{new_id, new_key_id};
use crate::domain::{Environment, KeyHash, KeyRecord, KeyStatus, UserRecord};
use crate::server::{self, StartError};
use crate::store::{KeyStore, StoreError};
use chrono::Utc;
use ipnet::IpNet;
use std::path::Path;
use std::sync::Arc;

/// A failed command: its message and exit code (1 runtime failure, 2 bad usage/config).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad arguments or config: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed while running: exit 1.
    #[error("{0}")]
    Runtime(String),
}

impl CommandError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => 2,
            CommandError::Runtime(_) => 1,
        }
    }
}

impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Invalid(_) => CommandError::Usage(e.to_string()),
            ConfigError::Read { .. } => CommandError::Usage(e.to_string()),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ReadOnly(_) => CommandError::Usage(e.to_string()),
            _ => CommandError::Runtime(e.to_string()),
        }
    }
}

impl From<StartError> for CommandError {
    fn from(e: StartError) -> Self {
        match e {
            // A bad key file is a bad config: exit 2, every problem listed.
            StartError::KeyFile(_) => CommandError::Usage(e.to_string()),
            _ => CommandError::Runtime(e.to_string()),
        }
    }
}

/// `keygate check -c FILE`.
pub fn check(path: &Path) -> Result<String, CommandError> {
    let c = checks::load(path)?;
    if c.store.kind == config::StoreKind::File {
        // The key file is validated like the config.
        let file = c.store.file.clone().unwrap_or_default();
        crate::store::file::FileStore::open(&file, c.tiers.keys().cloned().collect())
            .map_err(|e| CommandError::Usage(e.to_string()))?;
    }
    Ok(format!(
        "{}: ok ({} tier(s), {} route(s), store {:?})",
        path.display(),
        c.tiers.len(),
        c.routes.len(),
        c.store.kind
    ))
}

/// Options of `keygate keys create`.
#[derive(Debug, Default, Clone)]
pub struct CreateKey {
    /// Human name.
    pub name: String,
    /// Tier (must be configured).
    pub tier: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// `live` or `test`.
    pub env: String,
    /// Organisation.
    pub org: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Credits (unmetered when absent).
    pub credits: Option<i64>,
    /// Lifetime, e.g. `30d`.
    pub expires_in: Option<String>,
    /// Allowed client networks (CIDR or bare IP).
    pub allow_ips: Vec<String>,
}

fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Runtime(e.to_string()))
}

fn open(config: &Config) -> Result<Arc<dyn KeyStore>, CommandError> {
    Ok(server::open_store(config)?.keys)
}

fn parse_ip(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("--allow-ip: `{text}` is not an IP address or CIDR"))
}

/// A validated `keys create` request: environment, expiry, allowed networks.
type ValidCreate = (Environment, Option<chrono::DateTime<Utc>>, Vec<IpNet>);

/// Validates `opts` against `config`, returning every problem.
fn validate_create(config: &Config, opts: &CreateKey) -> Result<ValidCreate, CommandError> {
    let mut problems = Vec::new();
    if opts.name.trim().is_empty() || opts.name.len() > 200 {
        problems.push("--name: must be 1-200 characters".to_string());
    }
    if !config.tiers.contains_key(&opts.tier) {
        let known: Vec<&str> = config.tiers.keys().map(String::as_str).collect();
        problems.push(format!(
            "--tier: `{}` is not a configured tier ({})",
            opts.tier,
            known.join(", ")
        ));
    }
    let env = Environment::parse(&opts.env);
    if env.is_none() {
        problems.push(format!("--env: `{}` must be live or test", opts.env));
    }
    for s in &opts.scopes {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) || s.contains(',') {
            problems.push(format!("--scopes: `{s}` is not a valid scope"));
        }
    }
    if opts.credits.is_some_and(|c| c < 0) {
        problems.push("--credits: must not be negative".into());
    }
    let expires = match opts.expires_in.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d)),
        Some(Ok(_)) => {
            problems.push("--expires-in: must be greater than 0".into());
            None
        }
        Some(Err(e)) => {
            problems.push(format!("--expires-in: {e}"));
            None
        }
    };
    let mut ips = Vec::new();
    for text in &opts.allow_ips {
        match parse_ip(text) {
            Ok(net) => ips.push(net),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok((env.unwrap_or(Environment::Live), expires, ips))
    } else {
        Err(CommandError::Usage(problems.join("\n")))
    }
}

/// `keygate keys create`: stores a new key and returns `(record, plaintext)`.
pub fn keys_create(config: &Config, opts: &CreateKey) -> Result<(KeyRecord, String), CommandError> {
    let (env, expires_at, allowed_ips) = validate_create(config, opts)?;
    let store = open(config)?;
    let key = generate(&config.api_keys.prefix, env);
    let record = KeyRecord {
        id: new_key_id(),
        name: opts.name.trim().to_string(),
        prefix: key.prefix.clone(),
        last4: key.last4.clone(),
        tier: opts.tier.clone(),
        scopes: opts.scopes.clone(),
        environment: env,
        org: opts.org.clone(),
        owner: opts.owner.clone(),
        status: KeyStatus::Active,
        credits: opts.credits,
        allowed_ips,
        expires_at,
        created_at: Utc::now(),
        last_used_at: None,
        secret_valid_until: None,
    };
    runtime()?.block_on(store.insert(&record, &key.hash))?;
    Ok((record, key.into_plaintext()))
}

/// `keygate keys list`.
pub fn keys_list(config: &Config) -> Result<Vec<KeyRecord>, CommandError> {
    let store = open(config)?;
    Ok(runtime()?.block_on(store.list())?)
}

/// `keygate keys show ID`.
pub fn keys_show(config: &Config, id: &str) -> Result<KeyRecord, CommandError> {
    let store = open(config)?;
    runtime()?
        .block_on(store.get(id))?
        .ok_or_else(|| CommandError::Runtime(format!("no key with id {id}")))
}

/// `keygate keys revoke ID`.
pub fn keys_revoke(config: &Config, id: &str) -> Result<KeyRecord, CommandError> {
    let store = open(config)?;
    let rt = runtime()?;
    match rt.block_on(store.revoke(id)) {
        Err(StoreError::NotFound(_)) => {
            return Err(CommandError::Runtime(format!("no key with id {id}")))
        }
        other => other?,
    }
    rt.block_on(store.get(id))?
        .ok_or_else(|| CommandError::Runtime(format!("no key with id {id}")))
}

/// `keygate keys regenerate ID`: a new secret for the same key; the old one stops
/// working at once. Returns `(record, plaintext)`.
pub fn keys_regenerate(config: &Config, id: &str) -> Result<(KeyRecord, String), CommandError> {
    let store = open(config)?;
    let rt = runtime()?;
    let record = rt
        .block_on(store.get(id))?
        .ok_or_else(|| CommandError::Runtime(format!("no key with id {id}")))?;
    let key = generate(&config.api_keys.prefix, record.environment);
    rt.block_on(store.replace_secret(id, &key.hash, &key.prefix, &key.last4, None))?;
    let record = rt.block_on(store.get(id))?.unwrap_or(record);
    Ok((record, key.into_plaintext()))
}

/// `keygate keys hash KEY`: the `sha256:<hex>` line for the file store.
pub fn keys_hash(key: &str) -> String {
    KeyHash::of(key).to_string()
}

/// One line of `keys list`.
pub fn list_line(r: &KeyRecord) -> String {
    format!(
        "{:<26} {:<20} {}…{:<5} {:<10} {:<5} {:<8} credits={:<8} expires={}",
        r.id,
        truncate(&r.name, 20),
        r.prefix,
        r.last4,
        r.tier,
        r.environment.as_str(),
        r.status.as_str(),
        r.credits.map_or("-".to_string(), |c| c.to_string()),
        r.expires_at.map_or("never".to_string(), |t| t.to_rfc3339()),
    )
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `keygate users create`: stores a login; the password comes from stdin.
pub fn users_create(
    config: &Config,
    email: &str,
    name: Option<String>,
    admin: bool,
    password: &str,
) -> Result<UserRecord, CommandError> {
    let mut problems = Vec::new();
    let email = email.trim();
    if !(email.contains('@') && email.len() <= 254 && !email.contains(char::is_whitespace)) {
        problems.push(format!("--email: `{email}` is not an email address"));
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 8 || password.chars().count() > 200 {
        problems.push("password (stdin): must be 8 to 200 characters".to_string());
    }
    if !problems.is_empty() {
        return Err(CommandError::Usage(problems.join("\n")));
    }
    let users = server::open_store(config)?.users.ok_or_else(|| {
        CommandError::Usage("users need a writable store (sqlite or postgres)".into())
    })?;
    let password_hash =
        crate::management::password::hash(password).map_err(CommandError::Runtime)?;
    let user = UserRecord {
        id: new_id("usr"),
        email: email.to_string(),
        name,
        password_hash,
        is_admin: admin,
        created_at: Utc::now(),
    };
    match runtime()?.block_on(users.create_user(&user)) {
        Err(StoreError::Conflict(why)) => Err(CommandError::Runtime(why)),
        other => other.map_err(CommandError::from),
    }?;
    Ok(user)
}
