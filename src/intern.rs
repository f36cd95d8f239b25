//! Shared strings for names drawn from a small set (tier names, route names), so
//! that per-key state holds a pointer to one copy instead of a copy each.

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;

/// Names held at most; past this (names a store invented by the thousand), new
/// names are still returned, just not shared.
const MAX_NAMES: usize = 4096;

static NAMES: Lazy<Mutex<HashSet<Arc<str>>>> = Lazy::new(Default::default);

/// `name` as a shared string: the same allocation for every caller asking for the
/// same name.
pub fn name(name: &str) -> Arc<str> {
    let mut names = NAMES.lock();
    if let Some(n) = names.get(name) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(name);
    if names.len() < MAX_NAMES {
        names.insert(n.clone());
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_name_is_one_allocation() {
        let (a, b) = (super::name("pro"), super::name("pro"));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(&*super::name("free"), "free");
    }
}
