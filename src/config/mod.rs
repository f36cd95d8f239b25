//! Configuration: the YAML file users write, loaded with every problem reported at once.
//!
//! [`load`] reads a file, substitutes `${VAR}`, parses each section on its own so that
//! one mistake does not hide the next, then checks the values that serde cannot
//! (addresses, URLs, references between sections).

pub mod env;
pub mod memory;
pub mod origin;
pub mod secret;
pub mod types;
mod validate;

pub use origin::OriginPattern;
pub use secret::Secret;
pub use types::*;

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::fmt;
use std::path::Path;

/// One thing wrong with a config, located by its YAML path (`tiers.free.per_minute`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path into the document; empty for the document itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source} (give another with -c FILE)")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; every problem is listed.
    #[error("{} problem(s) in config:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A config that decoded (with stand-ins for the parts that did not) and the
/// problems found so far: what the config itself can tell. Later checks — the
/// compile (`src/app/compile.rs`), which parses what the modules behind the
/// settings read — [`report`](Draft::report) theirs, and [`finish`](Draft::finish)
/// lists them all at once.
#[derive(Debug)]
pub struct Draft {
    /// The decoded config; a part named in `broken` is a stand-in.
    pub config: Config,
    problems: Vec<Problem>,
    broken: Vec<String>,
}

impl Draft {
    /// Adds what a later check found, except inside a part already reported
    /// broken: a stand-in's checks would only repeat (or invent) what is said.
    pub fn report(&mut self, found: Vec<Problem>) {
        let new: Vec<Problem> = found
            .into_iter()
            .filter(|p| !self.broken.iter().any(|b| within(&p.path, b)))
            .collect();
        self.broken.extend(new.iter().map(|p| p.path.clone()));
        self.problems.extend(new);
    }

    /// The config when nothing was found wrong; every problem otherwise.
    pub fn finish(self) -> Result<Config, ConfigError> {
        if self.problems.is_empty() {
            Ok(self.config)
        } else {
            Err(ConfigError::Invalid(self.problems))
        }
    }
}

/// Reads the config file at `path`.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads, substitutes, parses and validates the config at `path` with the config's
/// own checks only (the compile, `src/app/compile.rs`, adds the rest).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(&read(path)?)
}

/// Parses and validates config text, with `${VAR}` taken from the process
/// environment and the config's own checks only.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with_env(text, |name| std::env::var(name).ok())
}

/// [`parse`] with a custom variable lookup.
pub fn parse_with_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    draft(text, lookup)?.finish()
}

/// Substitutes `${VAR}` (from `lookup`), parses and runs the config's own checks.
/// Every problem is kept: a section (or tier, or route) that does not decode is
/// reported and stood in for, so the others are still validated. Fails at once only
/// when there is no config to go on (a bad variable, YAML that does not parse, a
/// document that is not a mapping).
pub fn draft(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Draft, ConfigError> {
    // A variable that is not set is one problem; the rest of the file is still
    // checked (with the variable empty), so one run lists everything.
    let (text, unset) = env::substitute_all(text, lookup);
    let unset: Vec<Problem> = unset.into_iter().map(|m| Problem::new("", m)).collect();
    let with_unset = |mut more: Vec<Problem>| {
        let mut all = unset.clone();
        all.append(&mut more);
        ConfigError::Invalid(all)
    };
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| with_unset(vec![Problem::new("", yaml_problem(&e))]))?;
    let Checked {
        mut problems,
        broken,
        doc,
    } = check_sections(doc).map_err(|e| match e {
        ConfigError::Invalid(p) => with_unset(p),
        other => other,
    })?;
    problems.splice(0..0, unset.iter().cloned());
    let config: Config = match decode(&doc, "") {
        Ok(c) => c,
        Err(p) => {
            problems.push(p);
            return Err(ConfigError::Invalid(problems));
        }
    };
    let mut draft = Draft {
        config,
        problems,
        broken,
    };
    let own = validate::validate(&draft.config);
    draft.report(own);
    Ok(draft)
}

/// A YAML syntax error, with what usually causes one.
fn yaml_problem(e: &serde_yaml::Error) -> String {
    format!(
        "invalid YAML: {e}. Check the indentation (spaces, not tabs; nested keys two \
         spaces in), that every `key: value` has a space after the colon, and quote \
         values that hold `: `, `#`, `{{` or `[`"
    )
}

/// True when `path` is `section` or lies inside it.
fn within(path: &str, section: &str) -> bool {
    path.strip_prefix(section)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// The structural pass: problems found, the paths that were replaced by stand-ins,
/// and the document with those stand-ins in place (so that it decodes).
struct Checked {
    problems: Vec<Problem>,
    broken: Vec<String>,
    doc: Value,
}

/// A value that decodes as a section, tier or route and passes validation, put in
/// place of one that does not decode.
fn stand_in(path: &str) -> Value {
    let yaml = match path {
        "upstream" => "{ url: \"http://127.0.0.1:1\" }".to_string(),
        "tiers" => "{ stand-in: { per_minute: 1 } }".to_string(),
        p if p.starts_with("tiers.") => "{ per_minute: 1 }".to_string(),
        p if p.starts_with("routes[") => "{ path: / }".to_string(),
        // A path of its own, so two stand-ins are not "mounted twice".
        p if p.starts_with("dialect.endpoints[") => {
            format!("{{ operation: verify, method: POST, path: \"/stand-in/{p}\" }}")
        }
        _ => "{}".to_string(),
    };
    serde_yaml::from_str(&yaml).unwrap_or(Value::Null)
}

/// Deserialises each top-level section (and each tier and route) on its own so
/// that every structural problem is reported, not just the first; each one that
/// fails is replaced by a [`stand_in`] (or removed, so its defaults apply).
fn check_sections(doc: Value) -> Result<Checked, ConfigError> {
    let Value::Mapping(mut map) = doc else {
        return Err(ConfigError::Invalid(vec![Problem::new(
            "",
            "the config must be a YAML mapping",
        )]));
    };
    let mut problems = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    for required in ["upstream", "tiers"] {
        if !map.contains_key(required) {
            problems.push(Problem::new(required, "missing required section"));
            broken.push(required.to_string());
            map.insert(Value::from(required), stand_in(required));
        }
    }
    let keys: Vec<Value> = map.keys().cloned().collect();
    for key in keys {
        let Some(name) = key.as_str().map(str::to_owned) else {
            problems.push(Problem::new("", format!("non-string key {key:?}")));
            map.remove(&key);
            continue;
        };
        let Some(value) = map.get_mut(&key) else {
            continue;
        };
        let result = match name.as_str() {
            "server" => decode::<ServerConfig>(value, &name).map(drop),
            "upstream" => decode::<UpstreamConfig>(value, &name).map(drop),
            "store" => decode::<StoreConfig>(value, &name).map(drop),
            "cache" => decode::<CacheConfig>(value, &name).map(drop),
            "api_keys" => decode::<ApiKeysConfig>(value, &name).map(drop),
            "jwt" => decode::<JwtConfig>(value, &name).map(drop),
            "default_tier" => decode::<String>(value, &name).map(drop),
            "rate_limit" => decode::<RateLimitConfig>(value, &name).map(drop),
            "forward" => decode::<ForwardConfig>(value, &name).map(drop),
            "management" => decode::<ManagementConfig>(value, &name).map(drop),
            "cors" => decode::<Option<CorsConfig>>(value, &name).map(drop),
            "portal" => decode::<PortalConfig>(value, &name).map(drop),
            "credits" => decode::<CreditsConfig>(value, &name).map(drop),
            "audit" => decode::<types::AuditConfig>(value, &name).map(drop),
            "authorizer" => decode::<types::AuthorizerConfig>(value, &name).map(drop),
            "telemetry" => decode::<Option<types::TelemetryConfig>>(value, &name).map(drop),
            "dialect" => {
                // Each endpoint on its own, then the rest.
                let endpoints = match value.get_mut("endpoints") {
                    Some(endpoints) => check_each_item::<DialectEndpoint>(
                        endpoints,
                        "dialect.endpoints",
                        &mut problems,
                        &mut broken,
                    ),
                    None => Ok(()),
                };
                endpoints.and_then(|()| decode::<DialectConfig>(value, &name).map(drop))
            }
            "tiers" => check_each_entry::<TierConfig>(value, &name, &mut problems, &mut broken),
            "routes" => check_each_item::<RouteConfig>(value, &name, &mut problems, &mut broken),
            "webhooks" => {
                check_each_item::<types::WebhookConfig>(value, &name, &mut problems, &mut broken)
            }
            _ => Err(Problem::new(name.as_str(), "unknown field")),
        };
        if let Err(p) = result {
            problems.push(p);
            broken.push(name.clone());
            match name.as_str() {
                "upstream" | "tiers" => *value = stand_in(&name),
                _ => {
                    map.remove(&key);
                }
            }
        }
    }
    if broken.iter().any(|b| b == "tiers") {
        // With no tiers to name, `default_tier` cannot be checked.
        broken.push("default_tier".into());
    }
    Ok(Checked {
        problems,
        broken,
        doc: Value::Mapping(map),
    })
}

/// Decodes every entry of the mapping `value` as `T`; a bad entry is reported and
/// replaced by a stand-in (its name still counts, e.g. for `default_tier`).
fn check_each_entry<T: DeserializeOwned>(
    value: &mut Value,
    path: &str,
    out: &mut Vec<Problem>,
    broken: &mut Vec<String>,
) -> Result<(), Problem> {
    let Value::Mapping(map) = value else {
        return Err(Problem::new(path, "expected a mapping"));
    };
    for (k, v) in map.iter_mut() {
        let key = k
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{k:?}"));
        let at = format!("{path}.{key}");
        if let Err(p) = decode::<T>(v, &at) {
            out.push(p);
            *v = stand_in(&at);
            broken.push(at);
        }
    }
    Ok(())
}

/// Decodes every item of the list `value` as `T`; a bad item is reported and
/// replaced by a stand-in, so the others keep their indices.
fn check_each_item<T: DeserializeOwned>(
    value: &mut Value,
    path: &str,
    out: &mut Vec<Problem>,
    broken: &mut Vec<String>,
) -> Result<(), Problem> {
    match value {
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let at = format!("{path}[{i}]");
                if let Err(p) = decode::<T>(v, &at) {
                    out.push(p);
                    *v = stand_in(&at);
                    broken.push(at);
                }
            }
            Ok(())
        }
        Value::Null => Ok(()),
        _ => Err(Problem::new(path, "expected a list")),
    }
}

/// Deserialises `value` as `T`, turning the error into a [`Problem`] whose path is
/// `base` joined with the path inside the value. Unknown fields point at the field.
fn decode<T: DeserializeOwned>(value: &Value, base: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value.clone()).map_err(|err| {
        let inner = err.path().to_string();
        let mut path = join(base, if inner == "." { "" } else { &inner });
        let mut message = err.inner().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((field, expected)) = rest.split_once('`') {
                if !(path == field || path.ends_with(&format!(".{field}"))) {
                    path = join(&path, field);
                }
                let expected = expected.trim_start_matches(", ").replace('`', "");
                message = if expected.is_empty() {
                    "unknown field".to_string()
                } else {
                    format!("unknown field ({expected})")
                };
            }
        }
        Problem::new(path, message)
    })
}

fn join(base: &str, inner: &str) -> String {
    match (base.is_empty(), inner.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{base}{inner}"),
        (false, false) => format!("{base}.{inner}"),
    }
}

#[cfg(test)]
mod tests;
