//! Pages of a listing (the management API's and the portal's): the store is asked
//! for one more item than the page holds, and that extra one says whether another
//! page follows.

/// Cuts `items` (fetched with `limit + 1`) down to `limit` and answers the next
/// page's cursor: the id of the page's last item when more followed, else `None`.
pub fn cut_page<T, K: ToOwned + ?Sized>(
    items: &mut Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> &K,
) -> Option<K::Owned> {
    let more = items.len() > limit;
    items.truncate(limit);
    if more {
        items.last().map(|last| id(last).to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::cut_page;

    #[test]
    fn a_cursor_only_when_more_followed() {
        let mut full = vec!["a", "b", "c"];
        assert_eq!(cut_page(&mut full, 2, |s| *s), Some("b".into()));
        assert_eq!(full, ["a", "b"]);
        let mut last = vec!["a", "b"];
        assert_eq!(cut_page(&mut last, 2, |s| *s), None);
        let mut numbered = vec![30i64, 20, 10];
        assert_eq!(cut_page(&mut numbered, 2, |n| n), Some(20));
        assert_eq!(last, ["a", "b"]);
    }
}
