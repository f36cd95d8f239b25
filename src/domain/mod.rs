//! Plain domain types every layer shares: the store, authentication, limits, the
//! management API and the CLI. This module imports nothing of theirs.

pub mod account;
pub mod algorithm;
pub mod audit;
pub mod duration;
pub mod event;
pub mod hash;
pub mod id;
pub mod key;
pub mod refill;
pub mod usage;
pub mod user;

pub use account::{
    AccountFilter, AccountGate, AccountPatch, AccountRecord, AccountSetting, AccountStatus,
    CreditChange, PlanOverrides, Pool,
};
pub use algorithm::Algorithm;
pub use audit::{AuditEntry, AuditOrigin};
pub use hash::KeyHash;
pub use key::{Environment, ImportFields, ImportedKey, KeyCap, KeyPatch, KeyRecord, KeyStatus};
pub use refill::{Refill, RefillDue, RefillEvery};
pub use usage::{Totals, UsageClass, UsageRow};
pub use user::{canonical_email, UserRecord};
