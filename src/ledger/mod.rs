//! What requests spend and leave behind: credits debited by group commit, and
//! per-key usage aggregated in memory and flushed in batches.

pub mod credits; // spends credits on metered routes by group commit
pub mod usage; // per-key usage, aggregated in memory and flushed in batches
