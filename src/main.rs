//! The `keygate` command line: parses arguments and calls into the library.
// The CLI's output is what it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::{Args, Parser, Subcommand, ValueEnum};
use keygate::app::commands::{self, CommandError, CreateKey};
use keygate::app::compile::{self, Compiled};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the request path allocates many small, short-lived objects (header
/// maps, values, futures); glibc malloc spent ~27% of instructions on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A reverse-proxy auth sidecar: API keys, JWTs, tiered rate limits, scopes, credits.
#[derive(Parser)]
#[command(name = "keygate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy and the admin listener until SIGTERM/SIGINT.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Zero-downtime upgrade: take over the listening sockets of the keygate
        /// serving this same config file once it gets SIGQUIT.
        #[arg(long, short = 'u')]
        upgrade: bool,
    },
    /// Validate a config file: exit 0, or exit 2 listing every problem.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage API keys in the configured store.
    Keys {
        #[command(subcommand)]
        command: Box<KeysCommand>,
    },
    /// Manage accounts: the customers that hold keys, their plans and credits.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Read the audit log: every change to keys, newest first.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage logins for the token endpoint.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Run a tiny echo server to stand in for an API (quickstart and tests).
    DemoUpstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: String,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// Config file.
    #[arg(short, long = "config", default_value = "conf/keygate.yaml")]
    config: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user; the password is read from stdin (one line).
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Email (the login).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// May manage every key.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// A page of the log, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Entries older than this entry id (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// Most entries shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Every account, one JSON object per line, in id order.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// One account with its keys' ids.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The account id.
        id: String,
    },
    /// Put an account on another plan (a configured tier); its keys on the old
    /// plan move with it, everywhere within a second.
    SetPlan {
        #[command(flatten)]
        config: ConfigArg,
        /// The account id.
        id: String,
        /// The plan.
        plan: String,
    },
    /// Refuse every key of an account (403 account_suspended) until resumed.
    Suspend {
        #[command(flatten)]
        config: ConfigArg,
        /// The account id.
        id: String,
    },
    /// Let a suspended account's keys work again.
    Resume {
        #[command(flatten)]
        config: ConfigArg,
        /// The account id.
        id: String,
    },
    /// Add credits to an account's pooled balance (negative takes away).
    AddCredits {
        #[command(flatten)]
        config: ConfigArg,
        /// The account id.
        id: String,
        /// Credits to add.
        #[arg(allow_negative_numbers = true)]
        credits: i64,
    },
    /// Every key and account as import lines (JSON Lines: `keygate keys import`
    /// reads them back), to FILE or stdout.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write (default: standard output).
        file: Option<PathBuf>,
    },
}

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints it once, with its id.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// Human name.
        #[arg(long)]
        name: String,
        /// Tier (one of the config's tiers).
        #[arg(long)]
        tier: String,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Environment: live or test.
        #[arg(long, default_value = "live")]
        env: String,
        /// Organisation.
        #[arg(long)]
        org: Option<String>,
        /// Owning user.
        #[arg(long)]
        owner: Option<String>,
        /// The account the key joins: an id (made on first use) or a user's email.
        #[arg(long)]
        account: Option<String>,
        /// Credits; the key is unmetered without this (or its tier's refill amount
        /// when its tier refills).
        #[arg(long, allow_negative_numbers = true)]
        credits: Option<i64>,
        /// The key's own credit refill, overriding its tier's: AMOUNT/EVERY, EVERY
        /// being day, month or a duration (e.g. 1000/month, 50/7d).
        #[arg(long)]
        refill: Option<String>,
        /// Lifetime, e.g. 30d.
        #[arg(long)]
        expires_in: Option<String>,
        /// Allowed client network (CIDR or IP); repeatable or comma-separated.
        #[arg(long = "allow-ip", value_delimiter = ',')]
        allow_ip: Vec<String>,
        /// Print JSON (the key object plus `key`).
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one key.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Key id.
        id: String,
    },
    /// Revoke a key.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        /// Key id.
        id: String,
    },
    /// Give a key a new secret (same id and settings); the old secret stops working
    /// at once, or after --grace.
    Regenerate {
        #[command(flatten)]
        config: ConfigArg,
        /// Key id.
        id: String,
        /// Keep the old secret working this long (e.g. 1h; at most 30d).
        #[arg(long)]
        grace: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a key: the rules of the API's PUT /v1/keys/{id}; what is not given
    /// stays as it is.
    Update {
        #[command(flatten)]
        config: ConfigArg,
        /// Key id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New tier (one of the config's tiers).
        #[arg(long)]
        tier: Option<String>,
        /// New scopes, comma-separated (they replace the key's).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// New credits, or `none` (unmetered).
        #[arg(long, allow_hyphen_values = true)]
        credits: Option<String>,
        /// The key's own refill AMOUNT/EVERY (e.g. 1000/month), or `tier` for its
        /// tier's again.
        #[arg(long)]
        refill: Option<String>,
        /// A new lifetime from now (e.g. 30d), or `never`.
        #[arg(long)]
        expires_in: Option<String>,
        /// Allowed client networks, comma-separated (they replace the key's), or `any`.
        #[arg(long = "allow-ip", value_delimiter = ',')]
        allow_ip: Option<Vec<String>>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import existing keys from JSON Lines (one object per line with `key` or
    /// `hash`, see the README): all or nothing, in one transaction.
    Import {
        #[command(flatten)]
        config: ConfigArg,
        /// The file, or - for standard input.
        file: String,
    },
    /// Print the `sha256:<hex>` line used by the file store.
    Hash {
        /// The key.
        key: String,
    },
}

fn init_logging(format: LogFormat) {
    keygate::obs::log_writer::start();
    keygate::obs::access_log::set_json(matches!(format, LogFormat::Json));
    let filter = keygate::obs::logging::filter(std::env::var("RUST_LOG").ok().as_deref());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(keygate::obs::log_writer::LogSink)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn with_key(record: &keygate::domain::KeyRecord, key: &str) -> String {
    let mut v = serde_json::to_value(record).unwrap_or_default();
    v["key"] = serde_json::Value::String(key.to_string());
    to_json(&v)
}

/// The compiled config at `path` (every problem listed, exit 2).
fn accounts(command: AccountsCommand) -> Result<String, CommandError> {
    use commands::AccountAction as A;
    let (config, action, file) = match command {
        AccountsCommand::List { config } => (config, A::List, None),
        AccountsCommand::Show { config, id } => (config, A::Show(id), None),
        AccountsCommand::SetPlan { config, id, plan } => (config, A::SetPlan(id, plan), None),
        AccountsCommand::Suspend { config, id } => (config, A::Suspend(id), None),
        AccountsCommand::Resume { config, id } => (config, A::Resume(id), None),
        AccountsCommand::AddCredits {
            config,
            id,
            credits,
        } => (config, A::AddCredits(id, credits), None),
        AccountsCommand::Export { config, file } => (config, A::Export, file),
    };
    let c = load(&config.config)?;
    let out = commands::accounts(&c, action)?;
    match file {
        Some(path) => {
            std::fs::write(&path, format!("{out}\n"))
                .map_err(|e| CommandError::Runtime(format!("{}: {e}", path.display())))?;
            Ok(String::new())
        }
        None => Ok(out),
    }
}

fn load(path: &std::path::Path) -> Result<Compiled, CommandError> {
    Ok(compile::load(
        path,
        std::sync::Arc::new(keygate::clock::SystemClock),
    )?)
}

fn run(cli: Cli) -> Result<String, CommandError> {
    match cli.command {
        Command::Serve {
            config,
            log_format,
            upgrade,
        } => {
            init_logging(log_format);
            let c = load(&config.config)?;
            keygate::app::server::serve(c, &config.config, upgrade)?;
            Ok(String::new())
        }
        Command::Check { config } => commands::check(&config.config),
        Command::DemoUpstream { listen } => keygate::app::demo::run_echo(&listen)
            .map(|_| String::new())
            .map_err(|e| CommandError::Runtime(format!("demo upstream on {listen}: {e}"))),
        Command::Keys { command } => keys(*command),
        Command::Accounts { command } => accounts(command),
        Command::Audit {
            command:
                AuditCommand::List {
                    config,
                    before,
                    limit,
                    json,
                },
        } => commands::audit_list(&load(&config.config)?, before, limit, json),
        Command::Users {
            command:
                UsersCommand::Create {
                    config,
                    email,
                    name,
                    admin,
                },
        } => {
            let c = load(&config.config)?;
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).map_err(|e| {
                CommandError::Runtime(format!("reading the password from stdin: {e}"))
            })?;
            let user = commands::users_create(&c, &email, name, admin, &password)?;
            Ok(format!(
                "id:    {}\nemail: {}\nadmin: {}",
                user.id, user.email, user.is_admin
            ))
        }
    }
}

fn keys(command: KeysCommand) -> Result<String, CommandError> {
    match command {
        KeysCommand::Create {
            config,
            name,
            tier,
            scopes,
            env,
            org,
            owner,
            account,
            credits,
            refill,
            expires_in,
            allow_ip,
            json,
        } => {
            let c = load(&config.config)?;
            let opts = CreateKey {
                name,
                tier,
                scopes,
                env,
                org,
                owner,
                account,
                credits,
                refill,
                expires_in,
                allow_ips: allow_ip,
            };
            let (record, key) = commands::keys_create(&c, &opts)?;
            Ok(if json {
                with_key(&record, &key)
            } else {
                format!(
                    "id:  {}\nkey: {key}\nStore the key now: it is not shown again.",
                    record.id
                )
            })
        }
        KeysCommand::List { config, json } => {
            let c = load(&config.config)?;
            let keys = commands::keys_list(&c)?;
            Ok(if json {
                to_json(&serde_json::json!({ "api_keys": keys, "total": keys.len() }))
            } else if keys.is_empty() {
                "no keys".into()
            } else {
                commands::list_table(&keys)
            })
        }
        KeysCommand::Show { config, id } => {
            Ok(to_json(&commands::keys_show(&load(&config.config)?, &id)?))
        }
        KeysCommand::Revoke { config, id } => {
            let r = commands::keys_revoke(&load(&config.config)?, &id)?;
            Ok(format!("revoked {}", r.id))
        }
        KeysCommand::Regenerate {
            config,
            id,
            grace,
            json,
        } => {
            let issued = commands::keys_regenerate(&load(&config.config)?, &id, grace.as_deref())?;
            let (record, until) = (&issued.record, issued.previous_valid_until);
            let key = issued.secret.plaintext.clone();
            Ok(if json {
                let mut v = serde_json::to_value(record).unwrap_or_default();
                v["key"] = key.into();
                if let Some(t) = until {
                    v["previous_key_valid_until"] = serde_json::json!(t);
                }
                to_json(&v)
            } else {
                let previous = match until {
                    Some(t) => format!("The previous secret works until {}.", t.to_rfc3339()),
                    None => "The previous secret no longer works.".into(),
                };
                format!("id:  {}\nkey: {key}\n{previous}", record.id)
            })
        }
        KeysCommand::Update {
            config,
            id,
            name,
            tier,
            scopes,
            credits,
            refill,
            expires_in,
            allow_ip,
            json,
        } => {
            let opts = commands::UpdateKey {
                name,
                tier,
                scopes,
                credits,
                refill,
                expires_in,
                allow_ips: allow_ip,
            };
            let r = commands::keys_update(&load(&config.config)?, &id, &opts)?;
            Ok(if json {
                to_json(&r)
            } else {
                format!(
                    "updated {}\n{}",
                    r.id,
                    commands::list_table(std::slice::from_ref(&r))
                )
            })
        }
        KeysCommand::Import { config, file } => {
            let n = commands::keys_import(&load(&config.config)?, &file)?;
            Ok(format!("imported {n} keys"))
        }
        KeysCommand::Hash { key } => Ok(commands::keys_hash(&key)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    // Whatever was logged is written before the process says anything else.
    keygate::obs::log_writer::finish();
    match result {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
