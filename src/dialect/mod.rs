//! Dialects (docs/dialects.md): keygate answering in the shapes an API has
//! documented to its customers, configured, not coded. A [`Dialect`] is compiled
//! once with the config: the template of every refusal's body with its message
//! texts, and keygate's own operations mounted at documented methods and paths,
//! each with a template for the body it reads and for the answer it writes.
//!
//! A mounted operation is the management API's own, called through
//! `crate::management::Management::handle` with its `/v1` method and path: the
//! same rules and the same authorization behind a second door, nothing copied.
//! The templates only reshape bodies; statuses and headers stay the contract's.

pub mod samples;
pub mod templates;

use crate::config::{DialectConfig, Operation, Problem};
use crate::error::GateError;
use dashmap::DashMap;
use minijinja::{context, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use templates::Templates;

/// At most this many rendered refusal bodies are kept (see [`BodyCache`]).
const CACHED_BODIES: usize = 4096;

/// The compiled dialect of a config; [`Dialect::default`] speaks the contract.
#[derive(Debug, Default)]
pub struct Dialect {
    templates: Templates,
    /// `dialect.errors.body`, when set.
    error_body: Option<ErrorTemplate>,
    /// Message texts by `error` code or reason.
    messages: HashMap<String, String>,
    endpoints: Vec<Endpoint>,
    cache: BodyCache,
}

/// An error template.
#[derive(Debug)]
struct ErrorTemplate {
    /// Its name (YAML path).
    name: String,
    /// Where its bodies are cached: 0 for `dialect.errors.body`, `i + 1` for
    /// endpoint `i`'s.
    slot: usize,
    /// It reads neither `request_id` nor `timestamp`: a refusal with a
    /// [`GateError::body_key`] always renders the same body.
    cacheable: bool,
}

/// Refusal bodies rendered by cacheable templates, by template, kind and
/// `retry_after`: each is rendered once, then copied. Bounded: past
/// [`CACHED_BODIES`] entries, bodies are rendered every time.
#[derive(Debug, Default)]
struct BodyCache {
    bodies: DashMap<(usize, std::mem::Discriminant<GateError>, u64), Arc<[u8]>>,
    size: AtomicUsize,
}

/// One operation at a documented method and path.
#[derive(Debug)]
pub struct Endpoint {
    /// The operation answered.
    pub operation: Operation,
    method: http::Method,
    /// The path's segments; `None` where the key id goes.
    segments: Vec<Option<String>>,
    request: Option<String>,
    response: Option<String>,
    errors: Option<ErrorTemplate>,
}

/// A request matched to a mounted endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    /// Index of the endpoint in `dialect.endpoints`.
    pub index: usize,
    /// The key id the path named, for operations on one key.
    pub id: Option<String>,
}

/// What a refusal's body is rendered from, besides the refusal.
pub struct Said<'a> {
    /// The request's `X-Request-Id`.
    pub request_id: &'a str,
    /// Now: the `timestamp` variable, RFC 3339 with milliseconds, formatted only
    /// when a template is rendered.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Dialect {
    /// Compiles `config`'s dialect: every template parsed, then rendered against
    /// sample values (every kind of refusal; each operation's sample answer)
    /// and checked to be JSON. Every problem is listed with its YAML path.
    pub fn compile(config: &DialectConfig) -> Result<Dialect, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut d = Dialect::default();
        let mut add = |d: &mut Dialect, name: String, source: &Option<String>| match source {
            Some(text) => match d.templates.add(&name, text) {
                Ok(()) => Some(name),
                Err(e) => {
                    problems.push(Problem::new(name, e));
                    None
                }
            },
            None => None,
        };
        let error_body = add(&mut d, "dialect.errors.body".into(), &config.errors.body);
        d.error_body = error_body.map(|name| d.error_template(name, 0));
        let mut endpoints = Vec::new();
        for (i, e) in config.endpoints.iter().enumerate() {
            let at = |field: &str| format!("dialect.endpoints[{i}].{field}");
            endpoints.push(Endpoint {
                operation: e.operation,
                method: e
                    .method
                    .to_ascii_uppercase()
                    .parse()
                    .unwrap_or(http::Method::GET),
                segments: e
                    .path
                    .split('/')
                    .skip(1)
                    .map(|s| (!crate::config::is_path_param(s)).then(|| s.to_string()))
                    .collect(),
                request: add(&mut d, at("request"), &e.request),
                response: add(&mut d, at("response"), &e.response),
                errors: add(&mut d, at("errors"), &e.errors)
                    .map(|name| d.error_template(name, i + 1)),
            });
        }
        d.endpoints = endpoints;
        for (key, text) in &config.errors.messages {
            let known = crate::error::CODES.contains(&key.as_str())
                || crate::obs::metrics::reason::ALL.contains(&key.as_str());
            if !known {
                problems.push(Problem::new(
                    format!("dialect.errors.messages.{key}"),
                    "is neither an error code (unauthorized, rate_limit_exceeded, …) nor a reason (missing, expired, rate_limited, …)",
                ));
            } else if text.is_empty() || text.len() > 500 {
                problems.push(Problem::new(
                    format!("dialect.errors.messages.{key}"),
                    "must be 1-500 characters",
                ));
            }
            d.messages.insert(key.clone(), text.clone());
        }
        if problems.is_empty() {
            d.try_samples(&mut problems);
        }
        if problems.is_empty() {
            Ok(d)
        } else {
            Err(problems)
        }
    }

    fn error_template(&self, name: String, slot: usize) -> ErrorTemplate {
        let reads = self.templates.variables(&name);
        let cacheable = !reads.contains("request_id") && !reads.contains("timestamp");
        ErrorTemplate {
            name,
            slot,
            cacheable,
        }
    }

    /// Renders every template against sample values; a problem for each one
    /// that fails or does not produce JSON (once per template).
    fn try_samples(&self, problems: &mut Vec<Problem>) {
        let said = Said {
            request_id: "req_0123456789abcdef",
            now: chrono::DateTime::from_timestamp(1_768_473_000, 0).unwrap_or_default(),
        };
        let mut error_templates: Vec<&String> = self.error_body.iter().map(|t| &t.name).collect();
        error_templates.extend(
            self.endpoints
                .iter()
                .filter_map(|e| e.errors.as_ref().map(|t| &t.name)),
        );
        for name in error_templates {
            for err in GateError::samples() {
                let vars = self.error_vars(&err, &said);
                if let Err(e) = self.templates.render_json(name, vars) {
                    problems.push(Problem::new(
                        name.clone(),
                        format!("rendering a `{}` refusal: {e}", err.code()),
                    ));
                    break;
                }
            }
        }
        for e in &self.endpoints {
            if let Some(name) = &e.request {
                // Good when it renders JSON from some kind of field.
                let mut first_error = None;
                for body in samples::requests() {
                    let vars =
                        context! { body => body, id => "key_sample", query => query_vars(None) };
                    match self.templates.render_json(name, vars) {
                        Ok(_) => {
                            first_error = None;
                            break;
                        }
                        Err(why) => {
                            first_error.get_or_insert(why);
                        }
                    }
                }
                if let Some(why) = first_error {
                    problems.push(Problem::new(name.clone(), why));
                }
            }
            if let Some(name) = &e.response {
                let answer = samples::answer(e.operation);
                if let Err(why) = self
                    .templates
                    .render_json(name, response_vars(&answer, 200, "key_sample", None, &said))
                {
                    problems.push(Problem::new(name.clone(), why));
                }
            }
        }
    }

    /// The endpoint `method path` is mounted at, if any. Asked of every request:
    /// nothing is allocated unless an endpoint with a key id matches.
    pub fn route(&self, method: &http::Method, path: &str) -> Option<Mounted> {
        if self.endpoints.is_empty() {
            return None;
        }
        let count = path.split('/').count().saturating_sub(1);
        self.endpoints.iter().enumerate().find_map(|(index, e)| {
            if e.method != *method || e.segments.len() != count {
                return None;
            }
            let mut id = None;
            for (want, got) in e.segments.iter().zip(path.split('/').skip(1)) {
                match want {
                    Some(lit) if lit == got => {}
                    Some(_) => return None,
                    None if got.is_empty() => return None,
                    None => id = Some(got),
                }
            }
            Some(Mounted {
                index,
                id: id.map(str::to_string),
            })
        })
    }

    /// The mounted endpoint at `index`.
    pub fn endpoint(&self, index: usize) -> Option<&Endpoint> {
        self.endpoints.get(index)
    }

    /// True when refusals are written in the contract's own shape and words.
    pub fn speaks_contract(&self) -> bool {
        self.error_body.is_none() && self.messages.is_empty() && self.endpoints.is_empty()
    }

    /// The body of `err` as the front door writes it: the contract's at once when
    /// this dialect speaks it; otherwise [`Self::error_body`], `now` as the
    /// `timestamp`.
    pub fn refusal(
        &self,
        err: &GateError,
        mounted: Option<usize>,
        request_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<u8> {
        if self.speaks_contract() {
            return err.body();
        }
        self.error_body(err, mounted, &Said { request_id, now })
    }

    /// The JSON body of `err`: by the endpoint's error template (`mounted`),
    /// else `dialect.errors.body`, else the contract's, with the dialect's text
    /// for it. A template that fails here (it rendered the samples) is logged and
    /// the contract's body written: a refusal is never lost.
    pub fn error_body(&self, err: &GateError, mounted: Option<usize>, said: &Said<'_>) -> Vec<u8> {
        let template = mounted
            .and_then(|i| self.endpoints.get(i))
            .and_then(|e| e.errors.as_ref())
            .or(self.error_body.as_ref());
        let Some(template) = template else {
            return match self.message_for(err) {
                Some(text) => err.body_saying(text),
                None => err.body(),
            };
        };
        let key = err
            .body_key()
            .filter(|_| template.cacheable)
            .map(|retry| (template.slot, std::mem::discriminant(err), retry));
        if let Some(body) = key.as_ref().and_then(|k| self.cache.bodies.get(k)) {
            return body.to_vec();
        }
        match self
            .templates
            .render(&template.name, self.error_vars(err, said))
        {
            Ok(text) => {
                let body = text.into_bytes();
                if let Some(k) = key {
                    if self.cache.size.fetch_add(1, Ordering::Relaxed) < CACHED_BODIES {
                        self.cache.bodies.insert(k, Arc::from(body.as_slice()));
                    }
                }
                body
            }
            Err(e) => {
                tracing::warn!(template = %template.name, error = %e, "an error template failed; answering in the contract's shape");
                err.body()
            }
        }
    }

    /// The dialect's text for `err`: by its reason, else by its code.
    fn message_for(&self, err: &GateError) -> Option<&str> {
        if self.messages.is_empty() {
            return None;
        }
        self.messages
            .get(err.reason())
            .or_else(|| self.messages.get(err.code()))
            .map(String::as_str)
    }

    fn error_vars(&self, err: &GateError, said: &Said<'_>) -> Value {
        let message = match self.message_for(err) {
            Some(text) => text.to_string(),
            None => err.message(),
        };
        context! {
            status => err.status().as_u16(),
            code => err.code(),
            reason => err.reason(),
            message => message,
            details => Value::from_serialize(err.details()),
            retry_after => err.retry_after(),
            request_id => said.request_id,
            timestamp => timestamp(said.now),
        }
    }

    /// The body the operation of endpoint `index` reads: the request's JSON
    /// (`{}` when empty) through the endpoint's request template, if any.
    pub fn request_body(
        &self,
        index: usize,
        body: &[u8],
        id: Option<&str>,
        query: Option<&str>,
    ) -> Result<Vec<u8>, GateError> {
        let Some(name) = self.endpoints.get(index).and_then(|e| e.request.as_ref()) else {
            return Ok(body.to_vec());
        };
        let parsed: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| GateError::InvalidBody(format!("Malformed JSON body: {e}")))?
        };
        let vars = context! {
            body => Value::from_serialize(&parsed),
            id => id,
            query => query_vars(query),
        };
        self.templates.render_json(name, vars).map_err(|e| {
            // The request's own shape did not fit the template (a field of the
            // wrong type, say): the caller's request, said as a 400.
            tracing::debug!(template = %name, error = %e, "a request template failed");
            GateError::InvalidBody(format!(
                "The request body does not have the documented shape: {e}"
            ))
        })
    }

    /// The answer of endpoint `index`: the operation's `answer` through the
    /// endpoint's response template, if any. A template that fails here is
    /// logged and the operation's own answer written: what it made (a key's
    /// secret, say) is never lost.
    pub fn response_body(
        &self,
        index: usize,
        answer: &serde_json::Value,
        status: u16,
        id: Option<&str>,
        query: Option<&str>,
        said: &Said<'_>,
    ) -> Vec<u8> {
        let own = || serde_json::to_vec(answer).unwrap_or_default();
        let Some(name) = self.endpoints.get(index).and_then(|e| e.response.as_ref()) else {
            return own();
        };
        match self.templates.render(
            name,
            response_vars(answer, status, id.unwrap_or(""), query, said),
        ) {
            Ok(text) => text.into_bytes(),
            Err(e) => {
                tracing::warn!(template = %name, error = %e, "a response template failed; answering in the contract's shape");
                own()
            }
        }
    }
}

/// `now` as templates see it: RFC 3339, milliseconds, `Z`.
pub fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn response_vars(
    answer: &serde_json::Value,
    status: u16,
    id: &str,
    query: Option<&str>,
    said: &Said<'_>,
) -> Value {
    context! {
        body => Value::from_serialize(answer),
        status => status,
        id => id,
        query => query_vars(query),
        request_id => said.request_id,
        timestamp => timestamp(said.now),
    }
}

/// The query string's parameters, by name (the last of a repeated one).
fn query_vars(query: Option<&str>) -> Value {
    let map: HashMap<String, String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    Value::from_serialize(&map)
}

#[cfg(test)]
mod tests;
