//! Field-by-field validation of management request bodies: every bad field is
//! reported (422 `validation_error`, `details` by field), unknown fields included.

use crate::config::duration::parse_duration;
use crate::domain::Environment;
use crate::error::GateError;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde_json::{Map, Value};
use std::time::Duration;

/// Reads typed fields out of a JSON object, remembering every problem.
pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Starts validating `body`; fields not in `known` are errors.
    pub fn new(body: &'a Map<String, Value>, known: &[&str]) -> Self {
        let mut errors = Map::new();
        for key in body.keys().filter(|k| !known.contains(&k.as_str())) {
            errors.insert(key.clone(), Value::String("unknown field".into()));
        }
        Fields { body, errors }
    }

    /// Records a problem with `field`.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .insert(field.to_string(), Value::String(message.into()));
    }

    /// The raw value, if present (null counts as present).
    fn raw(&self, field: &str) -> Option<&'a Value> {
        self.body.get(field)
    }

    /// A string of 1..=`max` characters; `None` when absent (an error if `required`).
    pub fn string(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        match self.raw(field) {
            None if required => {
                self.error(field, "is required");
                None
            }
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => {
                Some(s.trim().to_string())
            }
            Some(Value::String(_)) => {
                self.error(field, format!("must be 1 to {max} characters"));
                None
            }
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// One of `choices`.
    pub fn one_of(&mut self, field: &str, required: bool, choices: &[&str]) -> Option<String> {
        let value = self.string(field, required, 100)?;
        if choices.contains(&value.as_str()) {
            Some(value)
        } else {
            self.error(field, format!("must be one of: {}", choices.join(", ")));
            None
        }
    }

    /// `live` or `test`.
    pub fn environment(&mut self, field: &str) -> Option<Environment> {
        self.one_of(field, false, &["live", "test"])
            .and_then(|e| Environment::parse(&e))
    }

    /// A list of scopes: visible ASCII, at most 100 of at most 100 characters.
    pub fn scopes(&mut self, field: &str) -> Option<Vec<String>> {
        let items = match self.raw(field)? {
            Value::Array(items) => items,
            _ => {
                self.error(field, "must be an array of strings");
                return None;
            }
        };
        let scopes: Option<Vec<String>> = items
            .iter()
            .map(|v| {
                v.as_str().filter(|s| {
                    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_graphic())
                })
            })
            .map(|s| s.map(str::to_owned))
            .collect();
        match scopes {
            Some(s) if s.len() <= 100 => Some(s),
            _ => {
                self.error(
                    field,
                    "must be at most 100 scopes of 1-100 visible ASCII characters",
                );
                None
            }
        }
    }

    /// A non-negative integer or null: `Some(None)` for null (unmetered).
    pub fn credits(&mut self, field: &str) -> Option<Option<i64>> {
        match self.raw(field)? {
            Value::Null => Some(None),
            Value::Number(n) if n.as_i64().is_some_and(|c| c >= 0) => Some(n.as_i64()),
            _ => {
                self.error(field, "must be a non-negative integer or null");
                None
            }
        }
    }

    /// A list of IP networks (`10.0.0.0/8`) or addresses.
    pub fn allowed_ips(&mut self, field: &str) -> Option<Vec<IpNet>> {
        let items = match self.raw(field)? {
            Value::Array(items) => items,
            Value::Null => return Some(Vec::new()),
            _ => {
                self.error(field, "must be an array of IP networks");
                return None;
            }
        };
        let mut nets = Vec::new();
        for item in items {
            let net = item.as_str().and_then(|s| {
                s.parse::<IpNet>()
                    .ok()
                    .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
            });
            match net {
                Some(n) => nets.push(n),
                None => {
                    self.error(
                        field,
                        format!("{item} is not an IP address or CIDR network"),
                    );
                    return None;
                }
            }
        }
        (nets.len() <= 100).then_some(nets).or_else(|| {
            self.error(field, "at most 100 networks");
            None
        })
    }

    /// An RFC 3339 time in the future, or null: `Some(None)` for null (no expiry).
    pub fn future_time(&mut self, field: &str) -> Option<Option<DateTime<Utc>>> {
        match self.raw(field)? {
            Value::Null => Some(None),
            Value::String(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) if t.with_timezone(&Utc) > Utc::now() => Some(Some(t.with_timezone(&Utc))),
                Ok(_) => {
                    self.error(field, "must be in the future");
                    None
                }
                Err(_) => {
                    self.error(
                        field,
                        "must be an RFC 3339 time such as 2027-01-01T00:00:00Z",
                    );
                    None
                }
            },
            _ => {
                self.error(field, "must be an RFC 3339 time or null");
                None
            }
        }
    }

    /// A duration: a string such as `1h` or a number of seconds, at most `max`.
    pub fn duration(&mut self, field: &str, max: Duration) -> Option<Duration> {
        let d = match self.raw(field)? {
            Value::Null => return None,
            Value::String(s) => parse_duration(s).map_err(|e| e.to_string()),
            Value::Number(n) => n
                .as_u64()
                .map(Duration::from_secs)
                .ok_or_else(|| "must be a whole number of seconds".into()),
            _ => Err("must be a duration such as 1h, or seconds".to_string()),
        };
        match d {
            Ok(d) if d <= max => Some(d),
            Ok(_) => {
                self.error(field, format!("must be at most {}s", max.as_secs()));
                None
            }
            Err(e) => {
                self.error(field, e);
                None
            }
        }
    }

    /// `Err(422)` listing every problem, or `Ok`.
    pub fn finish(self) -> Result<(), GateError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(GateError::Validation(self.errors))
        }
    }
}
