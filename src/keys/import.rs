//! Import of existing customers' keys (docs/configuration.md, Importing keys): one JSON
//! object per line, each turned into a key record and the hash it is stored under. The
//! rules on every field are the key rules of [`super::input`]; this module adds what
//! only an import has: the secret given as plaintext or as a hash, a given id, status
//! and creation time, and the line number each problem is reported at.

use super::input::{validate_new, KeyInput};
use super::rules::KeyRules;
use crate::auth::api_key::{KeyShape, MAX_KEY_LEN};
use crate::domain::{
    AccountSetting, AccountStatus, ImportFields, ImportedKey, KeyHash, KeyRecord, KeyStatus,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::fmt;

/// Most problems one import lists; past that it says how many more lines were bad.
pub const MAX_LISTED_PROBLEMS: usize = 1_000;

/// Longest line of an import file.
pub const MAX_LINE: usize = 64 * 1024;

/// Keys handed to the store at a time (an import is still one transaction).
pub const BATCH: usize = 2_000;

/// What is wrong with one field of one line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineProblem {
    /// 1-based line number.
    pub line: u64,
    /// The field (`hash`, `tier`, …), or `line` for the line as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.field, self.message)
    }
}

/// One line of an import file, as written. Unknown fields are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: Option<String>,
    hash: Option<String>,
    id: Option<String>,
    name: Option<String>,
    tier: Option<String>,
    scopes: Option<Vec<String>>,
    environment: Option<String>,
    /// Absent (`None`: kept by an update), `null` (`Some(None)`: none) or a value;
    /// likewise `owner`, `credits` (`null`: unmetered) and `expires_at` (`null`:
    /// never).
    #[serde(default, deserialize_with = "present")]
    org: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    credits: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<DateTime<Utc>>>,
    allowed_ips: Option<Vec<String>>,
    status: Option<String>,
    created_at: Option<DateTime<Utc>>,
    prefix: Option<String>,
    last4: Option<String>,
    /// The account the key joins (made on first use; without one, the owner's
    /// account, or one of the key's own).
    account: Option<String>,
    /// The account's plan.
    plan: Option<String>,
    /// The account's pooled balance (`null`: unmetered).
    #[serde(default, deserialize_with = "present")]
    account_credits: Option<Option<i64>>,
    /// The account's status.
    account_status: Option<String>,
}

/// One line of an import: a key (with, perhaps, what it says of its account), or an
/// account alone (`account` with `plan` or `account_credits`, no secret).
#[derive(Clone, Debug)]
pub enum ImportLine {
    /// A key.
    Key(Box<ImportedKey>),
    /// An account without keys.
    Account(AccountSetting),
}

/// A field that is present, `null` included: absent stays `None` (by `default`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The start of `key` shown with its last 4: the accepted prefix it starts with, or
/// the text up to its last `_` among the first 16 characters.
fn visible_prefix<'k>(key: &'k str, accept_prefixes: &[Box<str>]) -> &'k str {
    if let Some(p) = accept_prefixes
        .iter()
        .filter(|p| key.starts_with(&***p))
        .max_by_key(|p| p.len())
    {
        return &key[..p.len()];
    }
    let head = &key[..key.len().saturating_sub(8).min(16)];
    head.rfind('_').map_or("", |i| &key[..=i])
}

/// The field a decoding error is about: the first step of its path, the name of an
/// unknown field, or `line` for the line as a whole.
fn field_of(path: &str, message: &str) -> String {
    match path {
        "." | "" => message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("line")
            .to_string(),
        p => p.split(['.', '[']).next().unwrap_or(p).to_string(),
    }
}

/// Parses and checks line `line` (1-based) of an import against `rules`, whose
/// [`KeyRules::tier_names`] the caller computes once as `tiers`. `now` stands in for a
/// missing `created_at`; a fresh id is drawn for a line without one.
pub fn parse_line(
    line: u64,
    text: &str,
    rules: &KeyRules<'_>,
    tiers: &[&str],
    now: DateTime<Utc>,
) -> Result<ImportLine, Vec<LineProblem>> {
    let problem = |field: &str, message: String| LineProblem {
        line,
        field: field.to_string(),
        message,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let decode_problem = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        // serde_json says where in the line; the line number is ours.
        let message = e.into_inner().to_string();
        let message = message
            .rfind(" at line ")
            .map_or(message.as_str(), |i| &message[..i]);
        problem(&field_of(&path, message), message.to_string())
    };
    let parsed: Line = match serde_path_to_error::deserialize(&mut de) {
        Ok(l) => l,
        Err(e) => {
            // Every field that does not decode, not just the first: each field of
            // an object line is decoded again on its own.
            let fields = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text);
            let Ok(fields) = fields else {
                return Err(vec![decode_problem(e)]);
            };
            let each: Vec<LineProblem> = fields
                .into_iter()
                .filter_map(|(name, value)| {
                    let one = serde_json::Value::Object([(name, value)].into_iter().collect());
                    serde_path_to_error::deserialize::<_, Line>(one)
                        .err()
                        .map(decode_problem)
                })
                .collect();
            return Err(if each.is_empty() {
                vec![decode_problem(e)]
            } else {
                each
            });
        }
    };
    if de.end().is_err() {
        return Err(vec![problem(
            "line",
            "holds more than one JSON object".into(),
        )]);
    }
    let setting = account_setting(line, &parsed, tiers)?;
    if parsed.key.is_none() && parsed.hash.is_none() {
        if let Some(setting) = setting.as_ref().filter(|_| key_fields_absent(&parsed)) {
            return Ok(ImportLine::Account(setting.clone()));
        }
    }
    if let Some(Some(_)) = parsed.credits {
        let tier = parsed.tier.as_deref().unwrap_or(rules.default_tier);
        if rules.pool(tier) == crate::domain::Pool::Account {
            return Err(vec![problem(
                "credits",
                "on a pool: account tier the balance is the account's: give account_credits".into(),
            )]);
        }
    }
    // What the line carried: a line matching a stored key changes only that.
    let mut given = ImportFields::default();
    given.set(ImportFields::NAME, parsed.name.is_some());
    given.set(
        ImportFields::PREFIX,
        parsed.key.is_some() || parsed.prefix.is_some(),
    );
    given.set(
        ImportFields::LAST4,
        parsed.key.is_some() || parsed.last4.is_some(),
    );
    given.set(ImportFields::TIER, parsed.tier.is_some());
    given.set(ImportFields::SCOPES, parsed.scopes.is_some());
    given.set(ImportFields::ENVIRONMENT, parsed.environment.is_some());
    given.set(ImportFields::ORG, parsed.org.is_some());
    given.set(ImportFields::OWNER, parsed.owner.is_some());
    given.set(ImportFields::ACCOUNT, parsed.account.is_some());
    given.set(ImportFields::STATUS, parsed.status.is_some());
    given.set(ImportFields::CREDITS, parsed.credits.is_some());
    given.set(ImportFields::ALLOWED_IPS, parsed.allowed_ips.is_some());
    given.set(ImportFields::EXPIRES_AT, parsed.expires_at.is_some());
    given.set(ImportFields::CREATED_AT, parsed.created_at.is_some());
    let mut problems = Vec::new();
    let (hash, shown_prefix, shown_last4) = match (&parsed.key, &parsed.hash) {
        (Some(key), None) => {
            let shape = if key.is_empty()
                || key.len() > MAX_KEY_LEN
                || !key.bytes().all(|b| b.is_ascii_graphic())
            {
                problems.push(problem(
                    "key",
                    format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
                ));
                None
            } else {
                Some(rules.key_format.classify(key))
            };
            if shape == Some(KeyShape::Malformed) {
                problems.push(problem(
                    "key",
                    "fits neither api_keys.format nor a prefix in api_keys.accept_prefixes: \
                     keygate would refuse it before any lookup"
                        .to_string(),
                ));
            }
            let last4 = key[key.len().saturating_sub(4)..].to_string();
            (
                Some(KeyHash::of(key)),
                visible_prefix(key, rules.key_format.accept_prefixes()).to_string(),
                last4,
            )
        }
        (None, Some(h)) => {
            let hash = KeyHash::parse(h);
            if hash.is_none() {
                problems.push(problem(
                    "hash",
                    "must be sha256: and 64 hexadecimal digits".to_string(),
                ));
            }
            (hash, String::new(), String::new())
        }
        (Some(_), Some(_)) => {
            problems.push(problem(
                "key",
                "give either key or hash, not both".to_string(),
            ));
            (None, String::new(), String::new())
        }
        (None, None) => {
            problems.push(problem(
                "key",
                "each line needs key (the plaintext) or hash (sha256:<hex>)".to_string(),
            ));
            (None, String::new(), String::new())
        }
    };
    let prefix = match parsed.prefix {
        Some(p) if p.len() > 32 || !p.bytes().all(|b| b.is_ascii_graphic()) => {
            problems.push(problem(
                "prefix",
                "must be at most 32 visible ASCII characters".to_string(),
            ));
            String::new()
        }
        Some(p) => p,
        None => shown_prefix,
    };
    let last4 = match parsed.last4 {
        Some(l) if l.len() > 4 || !l.bytes().all(|b| b.is_ascii_graphic()) => {
            problems.push(problem(
                "last4",
                "must be at most 4 visible ASCII characters".to_string(),
            ));
            String::new()
        }
        Some(l) => l,
        None => shown_last4,
    };
    if let Some(account) = &parsed.account {
        if !valid_id(account) {
            problems.push(problem(
                "account",
                "must be 1-64 letters, digits, `_` or `-`".to_string(),
            ));
        }
    }
    if let Some(id) = &parsed.id {
        if !valid_id(id) {
            problems.push(problem(
                "id",
                "must be 1-64 letters, digits, `_` or `-`".to_string(),
            ));
        }
    }
    let status = match parsed.status.as_deref() {
        None | Some("active") => KeyStatus::Active,
        Some("revoked") => KeyStatus::Revoked,
        Some(_) => {
            problems.push(problem(
                "status",
                "must be one of: active, revoked".to_string(),
            ));
            KeyStatus::Active
        }
    };
    let tier_given = parsed.tier.is_some();
    // The key rules, as for a key made through any door. An import may carry an
    // expiry in the past (an expired key stays expired), so expiry is not theirs.
    let input = KeyInput {
        name: Some(parsed.name.unwrap_or_else(|| "imported".to_string())),
        tier: parsed.tier,
        scopes: parsed.scopes,
        environment: parsed.environment,
        credits: Some(parsed.credits.flatten()),
        refill: None,
        expires_at: None,
        allowed_ips: parsed.allowed_ips,
        org: parsed.org.flatten(),
        owner: parsed.owner.flatten(),
        account: None,
        cap: None,
    };
    let valid = match validate_new(&input, tiers, now) {
        Ok(v) => Some(v),
        Err(fields) => {
            problems.extend(fields.into_iter().map(|(f, m)| problem(&f, m)));
            None
        }
    };
    let (Some(valid), Some(hash), true) = (valid, hash, problems.is_empty()) else {
        return Err(problems);
    };
    let id_given = parsed.id.is_some();
    let tier = valid.tier.unwrap_or_else(|| rules.default_tier.to_string());
    // An imported balance is the customer's balance for this period: a tier's
    // refill starts from the next one, not at the key's first use. A line that sets
    // a balance without naming the tier may be updating a stored key of any tier:
    // the time of the import lies within the current period, whichever it is.
    let tier_period = || {
        rules.refill_of(&tier, None).and_then(|r| {
            DateTime::from_timestamp(r.every.period_start(now.timestamp_millis() as u64), 0)
        })
    };
    let refilled_at = if tier_given || !given.contains(ImportFields::CREDITS) {
        tier_period()
    } else {
        Some(now)
    };
    Ok(ImportLine::Key(Box::new(ImportedKey {
        line,
        record: KeyRecord {
            id: parsed.id.unwrap_or_else(crate::domain::id::new_key_id),
            name: valid.name,
            prefix,
            last4,
            tier,
            scopes: valid.scopes,
            environment: valid.environment,
            org: valid.org,
            owner: valid.owner,
            account: parsed.account,
            cap: None,
            status,
            credits: valid.credits.flatten(),
            refill: None,
            refilled_at,
            allowed_ips: valid.allowed_ips,
            expires_at: parsed.expires_at.flatten(),
            created_at: parsed.created_at.unwrap_or(now),
            last_used_at: None,
            secret_valid_until: None,
            account_gate: None,
        },
        id_given,
        hash,
        given,
        account_setting: setting,
    })))
}

/// What an import's lines said of their accounts, one setting per account.
#[derive(Default)]
pub struct AccountSettings(std::collections::BTreeMap<String, AccountSetting>);

impl AccountSettings {
    /// Adds what one line says; a plan or balance that differs from what an
    /// earlier line said of the same account is a problem of this line.
    pub fn merge(&mut self, s: AccountSetting) -> Result<(), Vec<LineProblem>> {
        let Some(known) = self.0.get_mut(&s.id) else {
            self.0.insert(s.id.clone(), s);
            return Ok(());
        };
        let mut problems = Vec::new();
        match (&known.plan, &s.plan) {
            (Some(a), Some(b)) if a != b => problems.push(LineProblem {
                line: s.line,
                field: "plan".into(),
                message: format!("line {} gave account {} plan {a}", known.line, s.id),
            }),
            (None, Some(b)) => known.plan = Some(b.clone()),
            _ => {}
        }
        match (known.status, s.status) {
            (Some(a), Some(b)) if a != b => problems.push(LineProblem {
                line: s.line,
                field: "account_status".into(),
                message: format!("line {} gave account {} status {a}", known.line, s.id),
            }),
            (None, Some(b)) => known.status = Some(b),
            _ => {}
        }
        match (known.credits, s.credits) {
            (Some(a), Some(b)) if a != b => problems.push(LineProblem {
                line: s.line,
                field: "account_credits".into(),
                message: format!("line {} gave account {} other credits", known.line, s.id),
            }),
            (None, Some(b)) => known.credits = Some(b),
            _ => {}
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The settings, one per account, in id order.
    pub fn into_list(self) -> Vec<AccountSetting> {
        self.0.into_values().collect()
    }
}

/// True when a line names no key field: it can only be an account line.
fn key_fields_absent(l: &Line) -> bool {
    l.id.is_none()
        && l.name.is_none()
        && l.tier.is_none()
        && l.scopes.is_none()
        && l.environment.is_none()
        && l.org.is_none()
        && l.owner.is_none()
        && l.credits.is_none()
        && l.expires_at.is_none()
        && l.allowed_ips.is_none()
        && l.status.is_none()
        && l.created_at.is_none()
        && l.prefix.is_none()
        && l.last4.is_none()
}

/// What the line says of its account, checked: `plan` a configured tier,
/// `account_credits` at least 0, `account_status` active or suspended, each only
/// with `account`.
fn account_setting(
    line: u64,
    l: &Line,
    tiers: &[&str],
) -> Result<Option<AccountSetting>, Vec<LineProblem>> {
    let mut problems = Vec::new();
    let mut refuse = |field: &str, message: String| {
        problems.push(LineProblem {
            line,
            field: field.into(),
            message,
        })
    };
    if let Some(plan) = &l.plan {
        if !tiers.contains(&plan.as_str()) {
            refuse("plan", format!("must be one of: {}", tiers.join(", ")));
        }
    }
    if let Some(Some(n)) = l.account_credits {
        if n < 0 {
            refuse("account_credits", "must be at least 0, or null".into());
        }
    }
    let status = match l.account_status.as_deref() {
        None => None,
        Some(s) => match AccountStatus::parse(s) {
            Some(st) => Some(st),
            None => {
                refuse("account_status", "must be one of: active, suspended".into());
                None
            }
        },
    };
    if l.account.is_none()
        && (l.plan.is_some() || l.account_credits.is_some() || l.account_status.is_some())
    {
        let field = if l.plan.is_some() {
            "plan"
        } else if l.account_credits.is_some() {
            "account_credits"
        } else {
            "account_status"
        };
        refuse(field, "belongs to an account: give `account` too".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(l.account.as_ref().map(|id| AccountSetting {
        id: id.clone(),
        plan: l.plan.clone(),
        credits: l.account_credits,
        status,
        line,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::Environment;

    fn config() -> Config {
        crate::config::parse(
            "upstream: { url: 'http://127.0.0.1:1' }\n\
             api_keys: { format: 'ak_{env}_{random:26}{checksum}', accept_prefixes: [ak_live_] }\n\
             tiers: { free: { per_minute: 1 }, pro: { per_minute: 1, credits: { refill: 1000, every: day } } }\n",
        )
        .unwrap()
    }

    #[test]
    fn an_imported_balance_counts_as_this_periods_refill() {
        let key = format!("ak_live_{}", "y".repeat(32));
        let line = |tier: &str| format!(r#"{{"key":"{key}","tier":"{tier}","credits":500}}"#);
        let pro = parse(&line("pro")).unwrap().record;
        let today = Utc::now().timestamp() / 86_400 * 86_400;
        assert_eq!(pro.credits, Some(500), "the balance is kept");
        assert_eq!(pro.refilled_at.map(|t| t.timestamp()), Some(today));
        assert_eq!(parse(&line("free")).unwrap().record.refilled_at, None);
    }

    fn parse(text: &str) -> Result<ImportedKey, Vec<LineProblem>> {
        parse_any(text).map(|l| match l {
            ImportLine::Key(k) => *k,
            ImportLine::Account(a) => panic!("an account line: {a:?}"),
        })
    }

    fn parse_any(text: &str) -> Result<ImportLine, Vec<LineProblem>> {
        let c = config();
        let format = crate::auth::key_format::KeyFormat::from_config(&c.api_keys).unwrap();
        let rules = KeyRules::new(&c, &format);
        parse_line(7, text, &rules, &rules.tier_names(), Utc::now())
    }

    fn fields(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .into_iter()
            .inspect(|p| assert_eq!(p.line, 7))
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn a_plaintext_key_is_stored_by_hash_with_every_field() {
        let key = format!("ak_live_{}", "x".repeat(32));
        let k = parse(&format!(
            r#"{{"key":"{key}","id":"cust_42","name":"Acme","tier":"pro","scopes":["search"],
               "org":"org_a","owner":"alice","credits":500,"expires_at":"2020-01-01T00:00:00Z",
               "allowed_ips":["10.0.0.0/8"],"status":"revoked","created_at":"2019-05-01T00:00:00Z"}}"#
        ))
        .unwrap();
        assert_eq!(k.hash, KeyHash::of(&key));
        assert!(k.id_given);
        let r = &k.record;
        assert_eq!(
            (r.id.as_str(), r.name.as_str(), r.tier.as_str()),
            ("cust_42", "Acme", "pro")
        );
        assert_eq!((r.prefix.as_str(), r.last4.as_str()), ("ak_live_", "xxxx"));
        assert_eq!(r.scopes, ["search"]);
        assert_eq!(
            (r.org.as_deref(), r.owner.as_deref()),
            (Some("org_a"), Some("alice"))
        );
        assert_eq!((r.credits, r.status), (Some(500), KeyStatus::Revoked));
        assert_eq!(
            r.expires_at.unwrap().timestamp(),
            1_577_836_800,
            "a past expiry is kept"
        );
        assert_eq!(r.created_at.timestamp(), 1_556_668_800);
        assert_eq!(r.allowed_ips.len(), 1);
    }

    #[test]
    fn a_hash_line_takes_the_defaults() {
        let hash = KeyHash::of("anything").to_string();
        let k = parse(&format!(r#"{{"hash":"{hash}"}}"#)).unwrap();
        assert!(!k.id_given && k.record.id.starts_with("key_"));
        assert_eq!(k.record.tier, "free", "default_tier");
        assert_eq!(k.record.environment, Environment::Live);
        assert_eq!(
            (k.record.status, k.record.credits),
            (KeyStatus::Active, None)
        );
        assert_eq!(k.record.name, "imported");
    }

    #[test]
    fn a_line_says_which_fields_it_carries_and_null_credits_is_one() {
        let hash = KeyHash::of("anything").to_string();
        let bare = parse(&format!(r#"{{"hash":"{hash}"}}"#)).unwrap();
        assert_eq!(bare.given, ImportFields::default());
        let unmetered = parse(&format!(r#"{{"hash":"{hash}","credits":null}}"#)).unwrap();
        assert_eq!(unmetered.given, ImportFields::CREDITS);
        assert_eq!(unmetered.record.credits, None);
        let cleared = parse(&format!(
            r#"{{"hash":"{hash}","owner":null,"org":null,"expires_at":null}}"#
        ))
        .unwrap();
        for f in [
            ImportFields::OWNER,
            ImportFields::ORG,
            ImportFields::EXPIRES_AT,
        ] {
            assert!(cleared.given.contains(f), "{f:?}: null is said");
        }
        assert_eq!((cleared.record.owner, cleared.record.org), (None, None));
        let key = format!("ak_live_{}", "z".repeat(32));
        let named = parse(&format!(r#"{{"key":"{key}","name":"n","credits":3}}"#)).unwrap();
        for f in [
            ImportFields::NAME,
            ImportFields::PREFIX,
            ImportFields::LAST4,
            ImportFields::CREDITS,
        ] {
            assert!(named.given.contains(f), "{f:?}");
        }
        assert!(!named.given.contains(ImportFields::TIER));
        assert!(
            named.record.refilled_at.is_some(),
            "a balance set without its tier counts from now"
        );
        let columns: Vec<_> = named.given.columns().collect();
        assert_eq!(
            columns,
            ["name", "prefix", "last4", "credits", "refilled_at"]
        );
    }

    #[test]
    fn every_bad_field_of_a_line_is_named() {
        assert_eq!(fields("{}"), ["key"]);
        assert_eq!(fields("not json"), ["line"]);
        assert_eq!(fields(r#"{"hash":"sha256:00"}"#), ["hash"]);
        assert_eq!(fields(r#"{"hash":"sha256:00","color":"red"}"#), ["color"]);
        assert_eq!(
            fields(r#"{"key":"ak_live_abc","hash":"sha256:00"}"#),
            ["key"]
        );
        assert_eq!(
            fields(r#"{"key":"zz_nothing_like_it"}"#),
            ["key"],
            "never usable"
        );
        assert_eq!(
            fields(r#"{"key":"ak_live_abc","credits":"5"}"#),
            ["credits"]
        );
        // Faults of type are all named too, not only the first one met.
        assert_eq!(
            fields(r#"{"tier":5,"key":"ak_live_abc","credits":"5","scopes":"search","colour":1}"#),
            ["colour", "credits", "scopes", "tier"]
        );
        let many = fields(
            r#"{"key":"ak_live_abc","id":"a b","tier":"gold","environment":"prod","status":"gone","credits":-1,"allowed_ips":["nope"]}"#,
        );
        for f in [
            "id",
            "tier",
            "environment",
            "status",
            "credits",
            "allowed_ips",
        ] {
            assert!(many.contains(&f.to_string()), "{f} in {many:?}");
        }
    }
}
