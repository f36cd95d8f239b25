//! Query strings of the management API's listings: parameters, and the page size
//! with its cursor.

use crate::keys::accounts::MAX_PAGE;
use serde_json::{json, Map, Value};

/// A query string's parameters, percent-decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The parameters of `query`.
    pub fn of(query: Option<&str>) -> Self {
        Query(
            query
                .unwrap_or("")
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| {
                    let decode = |s: &str| {
                        percent_encoding::percent_decode_str(&s.replace('+', " "))
                            .decode_utf8_lossy()
                            .into_owned()
                    };
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `name`, unless empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    }
}

/// `limit`, when given: 1 to [`MAX_PAGE`]; otherwise a problem is added.
pub fn page_size(q: &Query, problems: &mut Map<String, Value>) -> Option<usize> {
    let l = q.get("limit")?;
    match l.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Some(n),
        _ => {
            problems.insert("limit".into(), json!(format!("must be 1-{MAX_PAGE}")));
            None
        }
    }
}
