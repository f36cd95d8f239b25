//! How a rate-limit window counts: the one name the config, the limiters and the
//! headers share.

/// How a window counts (`tiers.<name>.algorithm`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Epoch-aligned instances (calendar months): exact per instance, up to 2N
    /// across a boundary.
    #[default]
    Fixed,
    /// No interval of the window's length admits more than the limit
    /// (`crate::limit::sliding`).
    Sliding,
}

impl Algorithm {
    /// `fixed` or `sliding`.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Fixed => "fixed",
            Algorithm::Sliding => "sliding",
        }
    }
}
