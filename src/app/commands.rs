//! What the CLI's subcommands do, callable without a process (`main.rs` only parses
//! arguments). Each returns the text to print or a [`CommandError`] with its exit code.

use crate::app::compile::{self, Compiled};
use crate::app::root::{self, StartError};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, ConfigError};
use crate::domain::duration::parse_duration;
use crate::domain::id::new_id;
use crate::domain::{KeyHash, KeyRecord, UserRecord};
use crate::keys::accounts::AccountService;
use crate::keys::input::{
    validate_change, validate_new, FieldErrors, KeyChange, KeyInput, RefillInput,
};
use crate::keys::policy::Actor;
use crate::keys::rules::KeyRules;
use crate::keys::service::{KeyService, KeyServiceError};
use crate::store::StoreError;
use chrono::Utc;
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

/// `keygate check -c FILE`: the compile `serve` runs, and the file store's key
/// file read as `serve` reads it, without serving.
pub fn check(path: &Path) -> Result<String, CommandError> {
    let compiled = compile::load(path, Arc::new(SystemClock))?;
    let c = &compiled.config;
    if c.store.kind == config::StoreKind::File {
        // The key file is validated like the config.
        root::open_key_file(c).map_err(|e| CommandError::Usage(e.to_string()))?;
    }
    let count = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let store = match c.store.kind {
        config::StoreKind::Sqlite => "SQLite store",
        config::StoreKind::Postgres => "PostgreSQL store",
        config::StoreKind::File => "file store",
    };
    let mut out = format!(
        "{}: ok: {}, {}, {store}",
        path.display(),
        count(c.tiers.len(), "tier"),
        count(c.routes.len(), "route"),
    );
    for note in compile::notes(c) {
        out.push_str("\nnote: ");
        out.push_str(&note);
    }
    Ok(out)
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
    /// The account it joins: an id or a user's email.
    pub account: Option<String>,
    /// Credits (unmetered when absent, unless a refill applies).
    pub credits: Option<i64>,
    /// The key's own refill, `AMOUNT/EVERY` (e.g. `1000/month`).
    pub refill: Option<String>,
    /// Lifetime, e.g. `30d`.
    pub expires_in: Option<String>,
    /// Allowed client networks (CIDR or bare IP).
    pub allow_ips: Vec<String>,
}

/// Options of `keygate keys update`: what is absent stays as it is.
#[derive(Debug, Default, Clone)]
pub struct UpdateKey {
    /// New name.
    pub name: Option<String>,
    /// New tier.
    pub tier: Option<String>,
    /// New scopes (replacing the key's).
    pub scopes: Option<Vec<String>>,
    /// New credits, or `none` (unmetered).
    pub credits: Option<String>,
    /// The key's own refill `AMOUNT/EVERY`, or `tier` (its tier's again).
    pub refill: Option<String>,
    /// A new lifetime from now (`30d`), or `never`.
    pub expires_in: Option<String>,
    /// New allowed networks (replacing the key's), or `any`.
    pub allow_ips: Option<Vec<String>>,
}

impl UpdateKey {
    /// What the flags ask for, and the flags that do not parse.
    fn change(&self, now: chrono::DateTime<Utc>) -> (KeyChange, FieldErrors) {
        let mut problems = FieldErrors::new();
        let credits = match self.credits.as_deref().map(str::trim) {
            None => None,
            Some("none") => Some(None),
            Some(n) => match n.parse::<i64>() {
                Ok(n) => Some(Some(n)),
                Err(_) => {
                    problems.insert(
                        "credits".into(),
                        format!("`{n}` is not a whole number (or `none`: unmetered)"),
                    );
                    None
                }
            },
        };
        let expires_at = match self.expires_in.as_deref().map(str::trim) {
            None => None,
            Some("never") => Some(None),
            Some(text) => match parse_duration(text) {
                Ok(d) => Some(
                    chrono::Duration::from_std(d)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d)),
                ),
                Err(e) => {
                    problems.insert("expires_at".into(), format!("{e} (or `never`)"));
                    None
                }
            },
        };
        let refill = match self.refill.as_deref().map(str::trim) {
            None => None,
            Some("tier") => Some(None),
            Some(text) => refill_flag(text, &mut problems).map(Some),
        };
        let allowed_ips = self.allow_ips.as_ref().map(|ips| {
            if ips.iter().any(|ip| ip == "any") {
                Vec::new()
            } else {
                ips.clone()
            }
        });
        let change = KeyChange {
            name: self.name.clone(),
            tier: self.tier.clone(),
            scopes: self.scopes.clone(),
            credits,
            refill,
            allowed_ips,
            expires_at,
            cap: None,
        };
        (change, problems)
    }
}

/// `--refill AMOUNT/EVERY` as the key rules read it; a problem when it does not parse.
fn refill_flag(text: &str, problems: &mut FieldErrors) -> Option<RefillInput> {
    match text.split_once('/') {
        Some((amount, every)) => Some(RefillInput {
            amount: amount.trim().parse().ok().or_else(|| {
                problems.insert(
                    "refill".into(),
                    format!("`{amount}` is not a whole number of credits"),
                );
                None
            }),
            every: Some(every.to_string()),
        }),
        None => {
            problems.insert(
                "refill".into(),
                "expected AMOUNT/EVERY, e.g. 1000/month or 50/7d".into(),
            );
            None
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Runtime(e.to_string()))
}

/// What the config allows the operator's doors, from the compiled key format.
fn rules(compiled: &Compiled) -> KeyRules<'_> {
    KeyRules::new(&compiled.config, &compiled.key_format)
}

/// `keygate audit list`: a page of the audit log, newest first — one JSON object
/// per line with `json`, else a table.
pub fn audit_list(
    compiled: &Compiled,
    before: Option<i64>,
    limit: usize,
    json: bool,
) -> Result<String, CommandError> {
    let stores = root::open_store(compiled, Arc::new(SystemClock))?;
    let entries = runtime()?
        .block_on(crate::keys::audit::audit_page(
            &*stores.keys,
            &Actor::operator(),
            before,
            limit,
        ))
        .map_err(|e| match e {
            crate::keys::audit::AuditError::Store(e) => CommandError::from(e),
            e => CommandError::Runtime(e.to_string()),
        })?;
    if json {
        return Ok(entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"));
    }
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.id.to_string(),
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.origin.actor.clone(),
                e.action.clone(),
                e.target.clone(),
                e.origin.client_ip.clone().unwrap_or_else(|| "-".into()),
                e.fields.join(","),
            ]
        })
        .collect();
    Ok(table(
        [
            "ID", "AT (UTC)", "ACTOR", "ACTION", "TARGET", "CLIENT", "FIELDS",
        ],
        &rows,
    ))
}

/// The key service over the configured store, for the operator at the CLI. (The
/// serving processes learn of its changes through the store's change feed.)
fn key_service(compiled: &Compiled) -> Result<KeyService, CommandError> {
    let stores = root::open_store(compiled, Arc::new(SystemClock))?;
    let accounts = stores.accounts.map(|a| {
        Arc::new(AccountService::new(
            a,
            stores.users.clone(),
            None,
            Arc::new(SystemClock),
        ))
    });
    Ok(KeyService::new(stores.keys, None, Arc::new(SystemClock)).with_accounts(accounts))
}

/// The CLI's spelling of each field the key rules name.
fn flag(field: &str) -> String {
    match field {
        "environment" => "--env".into(),
        "expires_at" => "--expires-in".into(),
        "allowed_ips" => "--allow-ip".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// Every problem, one line each, in the CLI's spelling: exit 2.
fn usage_error(problems: FieldErrors) -> CommandError {
    CommandError::Usage(
        problems
            .iter()
            .map(|(field, why)| format!("{}: {why}", flag(field)))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// A refusal of the key service, as the CLI reports it.
fn key_error(e: KeyServiceError, id: &str) -> CommandError {
    match e {
        KeyServiceError::Invalid(problems) => usage_error(problems),
        KeyServiceError::NotFound => CommandError::Runtime(format!("no key with id {id}")),
        KeyServiceError::Store(e) => e.into(),
        other => CommandError::Runtime(other.to_string()),
    }
}

impl CreateKey {
    /// What the flags ask for (`--expires-in` becomes a time from `now`), and the
    /// flags that do not parse.
    fn input(&self, now: chrono::DateTime<Utc>) -> (KeyInput, FieldErrors) {
        let mut problems = FieldErrors::new();
        let expires_at = match self.expires_in.as_deref().map(parse_duration) {
            None => None,
            Some(Ok(d)) => Some(
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d)),
            ),
            Some(Err(e)) => {
                problems.insert("expires_at".into(), e.to_string());
                None
            }
        };
        let refill = self
            .refill
            .as_deref()
            .map(|text| refill_flag(text, &mut problems));
        let input = KeyInput {
            name: Some(self.name.clone()),
            tier: Some(self.tier.clone()),
            scopes: Some(self.scopes.clone()),
            environment: Some(self.env.clone()),
            credits: self.credits.map(Some),
            refill,
            expires_at,
            allowed_ips: Some(self.allow_ips.clone()),
            org: self.org.clone(),
            owner: self.owner.clone(),
            account: self.account.clone(),
            cap: None,
        };
        (input, problems)
    }
}

/// `keygate keys create`: stores a new key and returns `(record, plaintext)`.
pub fn keys_create(
    compiled: &Compiled,
    opts: &CreateKey,
) -> Result<(KeyRecord, String), CommandError> {
    let now = SystemClock.now_utc();
    let (input, mut problems) = opts.input(now);
    if !problems.is_empty() {
        // The flags that do not parse, with what the key rules say of the others.
        for (field, why) in validate_new(&input, &compiled.config.tier_names(), now)
            .err()
            .unwrap_or_default()
        {
            problems.entry(field).or_insert(why);
        }
        return Err(usage_error(problems));
    }
    let keys = key_service(compiled)?;
    let issued = runtime()?
        .block_on(keys.create(&rules(compiled), &Actor::operator(), input))
        .map_err(|e| key_error(e, ""))?;
    Ok((issued.record, issued.secret.into_plaintext()))
}

/// `keygate keys list`.
pub fn keys_list(compiled: &Compiled) -> Result<Vec<KeyRecord>, CommandError> {
    let keys = key_service(compiled)?;
    runtime()?
        .block_on(keys.list(&rules(compiled), &Actor::operator()))
        .map_err(|e| key_error(e, ""))
}

/// `keygate keys show ID`.
pub fn keys_show(compiled: &Compiled, id: &str) -> Result<KeyRecord, CommandError> {
    let keys = key_service(compiled)?;
    runtime()?
        .block_on(keys.get(&rules(compiled), &Actor::operator(), id))
        .map_err(|e| key_error(e, id))
}

/// `keygate keys revoke ID`.
pub fn keys_revoke(compiled: &Compiled, id: &str) -> Result<KeyRecord, CommandError> {
    let keys = key_service(compiled)?;
    runtime()?
        .block_on(keys.revoke(&rules(compiled), &Actor::operator(), id))
        .map_err(|e| key_error(e, id))
}

/// `keygate keys update ID …`: the change the API's `PUT /v1/keys/{id}` makes,
/// through the same service and rules (an operator may set anything).
pub fn keys_update(
    compiled: &Compiled,
    id: &str,
    opts: &UpdateKey,
) -> Result<KeyRecord, CommandError> {
    let now = SystemClock.now_utc();
    let (change, mut problems) = opts.change(now);
    if !problems.is_empty() {
        for (field, why) in validate_change(&change, &compiled.config.tier_names(), now)
            .err()
            .unwrap_or_default()
        {
            problems.entry(field).or_insert(why);
        }
        return Err(usage_error(problems));
    }
    if change == KeyChange::default() {
        return Err(CommandError::Usage(
            "nothing to change: give --name, --tier, --scopes, --credits, --refill, \
             --expires-in or --allow-ip"
                .into(),
        ));
    }
    let keys = key_service(compiled)?;
    runtime()?
        .block_on(keys.update(&rules(compiled), &Actor::operator(), id, change))
        .map_err(|e| key_error(e, id))
}

/// `keygate keys regenerate ID [--grace 1h]`: a new secret for the same key; the
/// old one stops working at once, or after `grace` (at most 30 days). A revoked
/// key is refused. Returns the issued key.
pub fn keys_regenerate(
    compiled: &Compiled,
    id: &str,
    grace: Option<&str>,
) -> Result<crate::keys::service::Issued, CommandError> {
    let grace = match grace.map(parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return Err(CommandError::Usage(format!("--grace: {e}"))),
    };
    let keys = key_service(compiled)?;
    runtime()?
        .block_on(keys.regenerate(&rules(compiled), &Actor::operator(), id, grace))
        .map_err(|e| key_error(e, id))
}

/// `keygate keys import FILE` (`-`: standard input): every line checked, then all
/// of them written in one transaction, or none. Returns how many were written.
pub fn keys_import(compiled: &Compiled, file: &str) -> Result<u64, CommandError> {
    use std::io::BufRead;
    let reader: Box<dyn BufRead + Send> = if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f =
            std::fs::File::open(file).map_err(|e| CommandError::Usage(format!("{file}: {e}")))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, f))
    };
    let stores = root::open_store(compiled, Arc::new(SystemClock))?;
    let keys = KeyService::new(stores.keys, None, Arc::new(SystemClock));
    let users = stores.users.as_deref();
    runtime()?
        .block_on(keys.import(&rules(compiled), &Actor::operator(), users, reader.lines()))
        .map_err(|e| match e {
            KeyServiceError::ImportInvalid {
                problems,
                bad_lines,
            } => {
                let mut out: Vec<String> = problems.iter().map(ToString::to_string).collect();
                let listed = problems
                    .iter()
                    .map(|p| p.line)
                    .collect::<std::collections::BTreeSet<_>>();
                if bad_lines > listed.len() as u64 {
                    out.push(format!(
                        "… and {} more bad lines",
                        bad_lines - listed.len() as u64
                    ));
                }
                out.push(format!("{bad_lines} bad line(s): nothing was imported"));
                CommandError::Usage(out.join("\n"))
            }
            e => key_error(e, ""),
        })
}

/// `keygate keys hash KEY`: the `sha256:<hex>` line for the file store.
pub fn keys_hash(key: &str) -> String {
    KeyHash::of(key).to_string()
}

/// `keys list` as a table: a header, then a row a key, every column as wide as its
/// widest value (names cut at 30 characters), so the columns line up whatever
/// the prefixes, tiers and names.
pub fn list_table(records: &[KeyRecord]) -> String {
    let header = [
        "ID", "NAME", "KEY", "TIER", "ENV", "STATUS", "CREDITS", "EXPIRES",
    ];
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                truncate(&r.name, 30),
                format!("{}…{}", r.prefix, r.last4),
                r.tier.clone(),
                r.environment.as_str().to_string(),
                r.status.as_str().to_string(),
                r.credits.map_or("-".to_string(), |c| c.to_string()),
                r.expires_at.map_or("never".to_string(), |t| t.to_rfc3339()),
            ]
        })
        .collect();
    table(header, &rows)
}

/// `rows` under `header` in columns that line up (two spaces apart, the last
/// column unpadded).
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = w - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// `keygate users create`: stores a login; the password comes from stdin.
pub fn users_create(
    compiled: &Compiled,
    email: &str,
    name: Option<String>,
    admin: bool,
    password: &str,
) -> Result<UserRecord, CommandError> {
    let mut problems = Vec::new();
    let email = crate::domain::canonical_email(email.trim());
    if !(email.contains('@')
        && email.len() <= 254
        && !email.contains(|c: char| c.is_whitespace() || c.is_control()))
    {
        problems.push(format!("--email: `{email}` is not an email address"));
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        problems.push(
            "password: none on standard input; pipe it in, for example: \
             printf '%s\\n' 'a-long-password' | keygate users create -c FILE --email ..."
                .to_string(),
        );
    } else if password.chars().count() < 8 || password.chars().count() > 200 {
        problems.push("password (stdin): must be 8 to 200 characters".to_string());
    }
    if !problems.is_empty() {
        return Err(CommandError::Usage(problems.join("\n")));
    }
    let users = root::open_store(compiled, Arc::new(SystemClock))?
        .users
        .ok_or_else(|| {
            CommandError::Usage("users need a writable store (sqlite or postgres)".into())
        })?;
    let password_hash = crate::accounts::password::hash(password).map_err(CommandError::Runtime)?;
    let user = UserRecord {
        id: new_id("usr"),
        email,
        name,
        password_hash,
        is_admin: admin,
        disabled: false,
        created_at: SystemClock.now_utc(),
    };
    let audit = crate::domain::AuditEntry::new(
        &crate::domain::AuditOrigin::cli(),
        "user.created",
        &user.id,
        vec!["email".into(), "name".into(), "admin".into()],
        user.created_at,
    );
    match runtime()?.block_on(users.create_user(&user, &audit)) {
        Err(StoreError::Conflict(why)) => Err(CommandError::Runtime(why)),
        other => other.map_err(CommandError::from),
    }?;
    Ok(user)
}

/// What `keygate accounts …` does.
#[derive(Debug, Clone)]
pub enum AccountAction {
    /// `list`: every account, in id order.
    List,
    /// `show ID`: one account with its keys.
    Show(String),
    /// `set-plan ID PLAN`.
    SetPlan(String, String),
    /// `suspend ID`.
    Suspend(String),
    /// `resume ID`.
    Resume(String),
    /// `add-credits ID N` (N may be negative).
    AddCredits(String, i64),
    /// `export`: every key and account as import lines (JSON Lines).
    Export,
}

fn account_error(e: crate::keys::accounts::AccountError, id: &str) -> CommandError {
    use crate::keys::accounts::AccountError;
    match e {
        AccountError::Invalid(problems) => CommandError::Usage(
            problems
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        AccountError::NotFound => CommandError::Runtime(format!("no account with id {id}")),
        AccountError::Store(e) => e.into(),
        other => CommandError::Runtime(other.to_string()),
    }
}

/// `keygate accounts …` over the configured store, as the operator: the answer
/// as JSON (one object, or JSON Lines for `list` and `export`).
pub fn accounts(compiled: &Compiled, action: AccountAction) -> Result<String, CommandError> {
    use crate::domain::{AccountFilter, AccountPatch, AccountStatus, CreditChange};
    let keys = key_service(compiled)?;
    let Some(accounts) = keys.accounts().cloned() else {
        return Err(CommandError::Usage(
            "this store keeps no accounts: use store.kind sqlite or postgres".into(),
        ));
    };
    let rules = rules(compiled);
    let operator = Actor::operator();
    let rt = runtime()?;
    let render = |v: &crate::keys::accounts::AccountView| -> String {
        let mut o = serde_json::to_value(&v.account).unwrap_or_default();
        if let Some(keys) = &v.keys {
            o["keys"] = serde_json::Value::Array(
                keys.iter()
                    .map(|k| serde_json::Value::String(k.id.clone()))
                    .collect(),
            );
        }
        if !v.warnings.is_empty() {
            o["warnings"] = serde_json::json!(v.warnings);
        }
        o.to_string()
    };
    let suspend = matches!(action, AccountAction::Suspend(_));
    rt.block_on(async {
        let set = |id: &str, patch: AccountPatch| {
            let (accounts, rules, id) = (&accounts, &rules, id.to_string());
            async move {
                accounts
                    .update(rules, &operator, &id, patch)
                    .await
                    .map_err(|e| account_error(e, &id))
            }
        };
        match action {
            AccountAction::Export => {
                let mut lines = Vec::new();
                accounts
                    .export(&operator, &mut |line| {
                        lines.push(line);
                        Ok(())
                    })
                    .await
                    .map_err(|e| account_error(e, ""))?;
                Ok(lines.join("\n"))
            }
            AccountAction::List => {
                let mut out = Vec::new();
                let mut after = None;
                loop {
                    let page = accounts
                        .list(
                            &operator,
                            AccountFilter {
                                after: after.clone(),
                                limit: 500,
                                ..Default::default()
                            },
                        )
                        .await
                        .map_err(|e| account_error(e, ""))?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.id.clone());
                    for a in page {
                        let view = crate::keys::accounts::AccountView {
                            account: a,
                            keys: None,
                            warnings: Vec::new(),
                        };
                        out.push(render(&view));
                    }
                }
                Ok(out.join("\n"))
            }
            AccountAction::Show(id) => accounts
                .get(&operator, &id)
                .await
                .map(|v| render(&v))
                .map_err(|e| account_error(e, &id)),
            AccountAction::SetPlan(id, plan) => set(
                &id,
                AccountPatch {
                    plan: Some(plan),
                    ..Default::default()
                },
            )
            .await
            .map(|v| render(&v)),
            AccountAction::Suspend(id) | AccountAction::Resume(id) => {
                let status = if suspend {
                    AccountStatus::Suspended
                } else {
                    AccountStatus::Active
                };
                set(
                    &id,
                    AccountPatch {
                        status: Some(status),
                        ..Default::default()
                    },
                )
                .await
                .map(|v| render(&v))
            }
            AccountAction::AddCredits(id, n) => accounts
                .change_credits(&operator, &id, CreditChange::Add(n))
                .await
                .map(|v| render(&v))
                .map_err(|e| account_error(e, &id)),
        }
    })
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn the_key_list_columns_line_up_whatever_the_values() {
        let now = chrono::Utc::now();
        let mut a = KeyRecord::active("key_a", "free", now);
        a.name = "ci".into();
        a.prefix = "kg_sk_live_".into();
        a.last4 = "abcd".into();
        let mut b = KeyRecord::active("key_bbbbbbbbbbbbbbbbbbbb", "enterprise-annual", now);
        b.name = "Déploiement de production".into();
        b.prefix = "altus4_sk_live_".into();
        b.last4 = "wxyz".into();
        b.credits = Some(1_000_000);
        let table = list_table(&[a, b]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        let column = |line: &str, text: &str| line.find(text).map(|i| line[..i].chars().count());
        assert_eq!(column(lines[0], "TIER"), column(lines[1], "free"));
        assert_eq!(
            column(lines[0], "TIER"),
            column(lines[2], "enterprise-annual")
        );
        assert_eq!(column(lines[0], "EXPIRES"), column(lines[1], "never"));
        assert_eq!(column(lines[0], "EXPIRES"), column(lines[2], "never"));
    }
}
