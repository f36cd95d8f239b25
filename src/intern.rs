//! Shared strings for names drawn from a small set (tier names, the endpoints
//! keys call), so that per-key state holds a pointer to one copy instead of a
//! copy each. Each kind has its own bounded set: paths a client invents cannot
//! crowd out tier names.

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;

/// Names held at most; past this (names a store invented by the thousand), new
/// names are still returned, just not shared.
const MAX_NAMES: usize = 4096;

static NAMES: Lazy<Mutex<HashSet<Arc<str>>>> = Lazy::new(Default::default);

static ENDPOINTS: Lazy<Mutex<HashSet<Arc<str>>>> = Lazy::new(Default::default);

/// `value` from `set`, added while the set holds fewer than [`MAX_NAMES`].
fn shared(set: &Mutex<HashSet<Arc<str>>>, value: &str) -> Arc<str> {
    let mut values = set.lock();
    if let Some(n) = values.get(value) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(value);
    if values.len() < MAX_NAMES {
        values.insert(n.clone());
    }
    n
}

/// `name` (a tier's) as a shared string: the same allocation for every caller
/// asking for the same name.
pub fn name(name: &str) -> Arc<str> {
    shared(&NAMES, name)
}

/// An endpoint (a path as usage counts it) as a shared string.
pub fn endpoint(endpoint: &str) -> Arc<str> {
    shared(&ENDPOINTS, endpoint)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_name_is_one_allocation() {
        let (a, b) = (super::name("pro"), super::name("pro"));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(&*super::name("free"), "free");
        let (a, b) = (super::endpoint("/v1/search"), super::endpoint("/v1/search"));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
    }
}
