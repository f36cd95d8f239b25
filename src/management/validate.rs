//! Field-by-field validation of management request bodies: every bad field is
//! reported (422 `validation_error`, `details` by field), unknown fields included.

use crate::domain::duration::parse_duration;
use crate::error::GateError;
use chrono::{DateTime, Utc};
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

    /// A string of any length (the key rules judge it); `None` when absent.
    pub fn text(&mut self, field: &str) -> Option<String> {
        match self.raw(field)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// An array of strings; `null` as an empty array when `null_is_empty`.
    pub fn text_list(&mut self, field: &str, null_is_empty: bool) -> Option<Vec<String>> {
        let items = match self.raw(field)? {
            Value::Array(items) => items,
            Value::Null if null_is_empty => return Some(Vec::new()),
            _ => {
                self.error(field, "must be an array of strings");
                return None;
            }
        };
        let strings: Option<Vec<String>> = items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect();
        if strings.is_none() {
            self.error(field, "must be an array of strings");
        }
        strings
    }

    /// An integer or null: `Some(None)` for null.
    pub fn int_or_null(&mut self, field: &str) -> Option<Option<i64>> {
        match self.raw(field)? {
            Value::Null => Some(None),
            Value::Number(n) if n.as_i64().is_some() => Some(n.as_i64()),
            _ => {
                self.error(field, "must be a non-negative integer or null");
                None
            }
        }
    }

    /// A refill object `{amount, every}` or null (`Some(None)`): the JSON types only;
    /// the values are the key rules' to judge.
    pub fn cap_or_null(&mut self, field: &str) -> Option<Option<crate::domain::KeyCap>> {
        match self.raw(field)? {
            Value::Null => Some(None),
            v @ Value::Object(_) => match serde_json::from_value(v.clone()) {
                Ok(cap) => Some(Some(cap)),
                Err(e) => {
                    self.error(
                        field,
                        format!(
                            "{e}; a cap is {{\"per_second\"|\"per_minute\"|\"per_hour\"|\"per_day\"|\"per_month\": <requests>}} or null"
                        ),
                    );
                    None
                }
            },
            _ => {
                self.error(field, "must be an object of windows, or null");
                None
            }
        }
    }

    /// A refill of a key's own, `null` (the tier's), or absent.
    pub fn refill_or_null(
        &mut self,
        field: &str,
    ) -> Option<Option<crate::keys::input::RefillInput>> {
        const SHAPE: &str =
            "must be {\"amount\": <credits>, \"every\": \"day\" | \"month\" | \"<duration>\"} or null";
        match self.raw(field)? {
            Value::Null => Some(None),
            Value::Object(o) if o.keys().all(|k| k == "amount" || k == "every") => {
                let amount = match o.get("amount") {
                    Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
                    _ => {
                        self.error(field, SHAPE);
                        return None;
                    }
                };
                let every = match o.get("every") {
                    Some(Value::String(s)) => Some(s.clone()),
                    _ => {
                        self.error(field, SHAPE);
                        return None;
                    }
                };
                Some(Some(crate::keys::input::RefillInput { amount, every }))
            }
            _ => {
                self.error(field, SHAPE);
                None
            }
        }
    }

    /// An RFC 3339 time or null: `Some(None)` for null.
    pub fn time_or_null(&mut self, field: &str) -> Option<Option<DateTime<Utc>>> {
        match self.raw(field)? {
            Value::Null => Some(None),
            Value::String(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Some(Some(t.with_timezone(&Utc))),
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
    pub fn duration(&mut self, field: &str) -> Option<Duration> {
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
            Ok(d) => Some(d),
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

    /// The problems found so far, by field (to merge with the key rules' own).
    pub fn into_errors(self) -> Map<String, Value> {
        self.errors
    }
}
