//! The key rules' view of the running config: the tiers, the default tier, what
//! non-admins may be given, the format of issued keys. Every door (the CLI, the
//! management API, the portal, an import) judges keys by this one view.

use super::limits_view::LimitsView;
use super::policy::Grants;
use crate::auth::key_format::KeyFormat;
use crate::config::{Config, TierConfig};
use crate::domain::{KeyRecord, Refill};
use std::collections::BTreeMap;

/// What the key rules read of the running config.
#[derive(Clone, Copy, Debug)]
pub struct KeyRules<'a> {
    /// Configured tiers.
    pub tiers: &'a BTreeMap<String, TierConfig>,
    /// The tier of keys that name none, and the only one non-admins get.
    pub default_tier: &'a str,
    /// `management.user_scopes`.
    pub user_scopes: &'a [String],
    /// The format of issued keys (`api_keys.format`), parsed once by the caller.
    pub key_format: &'a KeyFormat,
}

impl<'a> KeyRules<'a> {
    /// The rules of `config`, issuing keys in `key_format` (that config's
    /// `api_keys.key_format()`, which a serving process compiles once).
    pub fn new(config: &'a Config, key_format: &'a KeyFormat) -> Self {
        KeyRules {
            tiers: &config.tiers,
            default_tier: &config.default_tier,
            user_scopes: &config.management.user_scopes,
            key_format,
        }
    }

    /// The configured tiers' names.
    pub fn tier_names(&self) -> Vec<&'a str> {
        crate::config::tier_names(self.tiers)
    }

    /// What non-admin callers may be given: `management.user_scopes` and the
    /// default tier.
    pub(super) fn grants(&self) -> Grants<'a> {
        Grants {
            user_scopes: self.user_scopes,
            user_tier: self.default_tier,
        }
    }

    /// The most active keys one owner may hold in `tier`, if the tier says.
    pub(super) fn max_keys(&self, tier: &str) -> Option<u64> {
        self.tiers.get(tier).and_then(|t| t.max_keys)
    }

    /// Whose windows and credits `tier`'s are (`key` for a tier not configured).
    pub fn pool(&self, tier: &str) -> crate::domain::Pool {
        self.tiers.get(tier).map(|t| t.pool).unwrap_or_default()
    }

    /// The limits shown for `record` (a presented one: its refill is the one in
    /// force); `None` when its tier is no longer configured.
    pub fn limits(&self, record: &KeyRecord) -> Option<LimitsView> {
        self.tiers
            .get(&record.tier)
            .map(|t| LimitsView::of(t, record.refill))
    }

    /// The refill in force for a key of `tier` whose own is `own`.
    pub fn refill_of(&self, tier: &str, own: Option<Refill>) -> Option<Refill> {
        own.or_else(|| {
            self.tiers
                .get(tier)
                .and_then(|t| t.credits.as_ref())
                .map(|c| c.refill())
        })
    }
}
