//! Who may set what on a key — decided here and nowhere else.
//!
//! An operator (the CLI) and an `admin` caller may set anything. Everyone else — a
//! user signed in with a JWT (or the portal), or an API key holding `keys:manage` —
//! manages only their own keys, and on them:
//! - only scopes listed in `management.user_scopes` (a key: only those it also holds
//!   itself), or scopes the key already has;
//! - never a tier other than the users' tier (`default_tier`) or the key's current
//!   one, never credits, expiry or an organisation of their choosing: new keys get
//!   the users' tier, no credit limit of their own making, and the caller's own org.

use crate::domain::Refill;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Who is asking, as the key rules see them.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    /// What they may do.
    pub role: Role<'a>,
    /// Who they are: the owner their keys get (none for the CLI).
    pub subject: Option<&'a str>,
    /// Their organisation, given to the keys they create.
    pub org: Option<&'a str>,
    /// The account of the key they present, if they present one.
    pub account: Option<&'a str>,
    /// Who they are and where they call from, as the audit log records it
    /// (`None`: the CLI, or a caller the audit knows by `credential`).
    pub origin: Option<&'a crate::domain::AuditOrigin>,
    /// The credential's own id (a key id, or a user id for a token or a session):
    /// who the audit log names when no origin is given.
    pub credential: Option<&'a str>,
}

/// What an [`Actor`] may do.
#[derive(Clone, Copy, Debug)]
pub enum Role<'a> {
    /// The CLI: an operator, anything goes; keys have no owner unless named.
    Operator,
    /// A caller holding `admin`: anything goes, on every owner's keys.
    Admin,
    /// A user authenticated with a JWT (or a portal session).
    User,
    /// An API key holding `keys:manage`.
    Key {
        /// The scopes the managing key holds.
        scopes: &'a [String],
    },
}

impl<'a> Actor<'a> {
    /// The CLI.
    pub fn operator() -> Self {
        Actor {
            role: Role::Operator,
            subject: None,
            org: None,
            account: None,
            origin: None,
            credential: None,
        }
    }

    /// A user (JWT, portal) with this subject and organisation.
    pub fn user(subject: &'a str, org: Option<&'a str>) -> Self {
        Actor {
            role: Role::User,
            subject: Some(subject),
            org,
            account: None,
            origin: None,
            credential: Some(subject),
        }
    }

    /// Who presented `principal`'s credential: an admin (the `admin` scope), a
    /// managing API key, or a user (a JWT).
    pub fn of(principal: &'a crate::auth::Principal) -> Self {
        let id = &principal.identity;
        let role = match (id.key_id(), id.scopes().iter().any(|s| s == "admin")) {
            (_, true) => Role::Admin,
            (Some(_), false) => Role::Key {
                scopes: id.scopes(),
            },
            (None, false) => Role::User,
        };
        Actor {
            role,
            subject: Some(id.subject()),
            org: id.org(),
            account: id.account_id(),
            origin: None,
            // The key presented, not its owner: two keys of one owner are told apart.
            credential: Some(id.key_id().unwrap_or(id.subject())),
        }
    }

    /// This actor, calling from `origin` (who and where, for the audit log).
    pub fn from(self, origin: &'a crate::domain::AuditOrigin) -> Self {
        Actor {
            origin: Some(origin),
            ..self
        }
    }

    /// Who the audit log says made a change: the origin given, else `cli` for
    /// the CLI, else the credential (with no address: a door that knows it gives
    /// the origin).
    pub fn audit_origin(&self) -> crate::domain::AuditOrigin {
        match (self.origin, self.role) {
            (Some(o), _) => o.clone(),
            (None, Role::Operator) => crate::domain::AuditOrigin::cli(),
            (None, _) => crate::domain::AuditOrigin {
                actor: self.credential.unwrap_or("unknown").to_string(),
                ..Default::default()
            },
        }
    }

    /// True when the actor may see and change a key owned by `owner`.
    pub fn may_manage(&self, owner: Option<&str>) -> bool {
        match self.role {
            Role::Operator | Role::Admin => true,
            Role::User | Role::Key { .. } => self.subject.is_some() && owner == self.subject,
        }
    }

    /// The owner whose keys a listing is limited to (`None`: every key).
    pub fn owner_filter(&self) -> Option<&'a str> {
        match self.role {
            Role::Operator | Role::Admin => None,
            Role::User | Role::Key { .. } => Some(self.subject.unwrap_or("")),
        }
    }
}

/// The configured limits on non-admin callers.
#[derive(Clone, Copy, Debug)]
pub struct Grants<'a> {
    /// `management.user_scopes`.
    pub user_scopes: &'a [String],
    /// The tier non-admins' keys get.
    pub user_tier: &'a str,
}

/// What a create asks for; `None` where the request did not say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateRequest {
    /// Tier asked for.
    pub tier: Option<String>,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// Credits asked for (`Some(None)`: unmetered).
    pub credits: Option<Option<i64>>,
    /// A refill of the key's own asked for (`Some(None)`: the tier's).
    pub refill: Option<Option<Refill>>,
    /// Expiry asked for (`Some(None)`: never).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Organisation asked for.
    pub org: Option<String>,
    /// Owner asked for.
    pub owner: Option<String>,
    /// A cap of the key's own asked for.
    pub cap: bool,
}

/// A create, admitted: every field decided.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmittedCreate {
    /// Tier.
    pub tier: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Credits (`None`: unmetered).
    pub credits: Option<i64>,
    /// The key's own refill (`None`: its tier's).
    pub refill: Option<Refill>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Organisation.
    pub org: Option<String>,
    /// Owner (`None` only for the CLI, when it names none).
    pub owner: Option<String>,
}

/// What an update asks to change; `None` where it did not say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdateRequest<'a> {
    /// New tier.
    pub tier: Option<&'a str>,
    /// New scopes.
    pub scopes: Option<&'a [String]>,
    /// New credits.
    pub credits: Option<Option<i64>>,
    /// New refill of the key's own.
    pub refill: Option<Option<Refill>>,
    /// New expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A new cap asked for.
    pub cap: bool,
}

/// The key as it stands, for an update.
#[derive(Clone, Copy, Debug)]
pub struct Current<'a> {
    /// Its tier.
    pub tier: &'a str,
    /// Its scopes.
    pub scopes: &'a [String],
    /// Its credits.
    pub credits: Option<i64>,
    /// Its own refill.
    pub refill: Option<Refill>,
    /// Its expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The fields the caller may not set, each with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not permitted: {}", .0.keys().cloned().collect::<Vec<_>>().join(", "))]
pub struct Denied(pub Map<String, Value>);

struct Refusals(Map<String, Value>);

impl Refusals {
    fn new() -> Self {
        Refusals(Map::new())
    }

    fn refuse(&mut self, field: &str, why: impl Into<String>) {
        self.0.insert(field.to_string(), Value::String(why.into()));
    }

    fn finish(self) -> Result<(), Denied> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Denied(self.0))
        }
    }
}

const ADMIN_ONLY: &str = "only an admin may set this";

impl Actor<'_> {
    fn is_admin(&self) -> bool {
        matches!(self.role, Role::Operator | Role::Admin)
    }

    /// Why `scope` may not be granted by this non-admin, if it may not.
    fn scope_refusal(&self, grants: &Grants<'_>, scope: &str) -> Option<String> {
        if !grants.user_scopes.iter().any(|s| s == scope) {
            return Some(format!(
                "`{scope}` is not in management.user_scopes: only an admin may grant it"
            ));
        }
        match self.role {
            Role::Key { scopes } if !scopes.iter().any(|s| s == scope) => Some(format!(
                "`{scope}` is not held by the managing key: a key cannot grant more than it has"
            )),
            _ => None,
        }
    }
}

/// Only an operator (the CLI) or an admin may import keys: an import sets every
/// field, for every owner.
pub fn admit_import(actor: &Actor<'_>) -> Result<(), Denied> {
    if actor.is_admin() {
        return Ok(());
    }
    let mut r = Refusals::new();
    r.refuse("import", ADMIN_ONLY);
    r.finish()
}

/// Checks `req` for `actor` creating a key and fills in what it did not say (the
/// owner defaults to the actor). Every refused field is listed.
pub fn admit_create(
    actor: &Actor<'_>,
    grants: &Grants<'_>,
    default_tier: &str,
    req: CreateRequest,
) -> Result<AdmittedCreate, Denied> {
    let subject = actor.subject;
    if actor.is_admin() {
        return Ok(AdmittedCreate {
            tier: req.tier.unwrap_or_else(|| default_tier.to_string()),
            scopes: req.scopes,
            credits: req.credits.flatten(),
            refill: req.refill.flatten(),
            expires_at: req.expires_at.flatten(),
            org: req.org,
            owner: req.owner.or_else(|| subject.map(str::to_owned)),
        });
    }
    let mut r = Refusals::new();
    if req.tier.as_deref().is_some_and(|t| t != grants.user_tier) {
        r.refuse(
            "tier",
            format!(
                "your keys get tier {}: only an admin may choose another",
                grants.user_tier
            ),
        );
    }
    for scope in &req.scopes {
        if let Some(why) = actor.scope_refusal(grants, scope) {
            r.refuse("scopes", why);
            break;
        }
    }
    if req.credits.is_some() {
        r.refuse("credits", ADMIN_ONLY);
    }
    if req.refill.is_some() {
        r.refuse("refill", ADMIN_ONLY);
    }
    if req.expires_at.is_some() {
        r.refuse("expires_at", ADMIN_ONLY);
    }
    if req.cap {
        r.refuse("cap", ADMIN_ONLY);
    }
    if req.org.is_some() && req.org.as_deref() != actor.org {
        r.refuse(
            "org",
            "your keys get your own organisation: only an admin may set another",
        );
    }
    if req.owner.is_some() && req.owner.as_deref() != subject {
        r.refuse("owner", "only an admin may create keys for another owner");
    }
    r.finish()?;
    Ok(AdmittedCreate {
        tier: grants.user_tier.to_string(),
        scopes: req.scopes,
        credits: None,
        refill: None,
        expires_at: None,
        org: actor.org.map(str::to_owned),
        owner: subject.map(str::to_owned),
    })
}

/// Checks an update of a key the caller may manage. A non-admin may rename it,
/// change its allowed networks, and set scopes it may grant or the key already
/// has; it may not raise anything an admin set.
pub fn admit_update(
    actor: &Actor<'_>,
    grants: &Grants<'_>,
    current: Current<'_>,
    req: &UpdateRequest<'_>,
) -> Result<(), Denied> {
    if actor.is_admin() {
        return Ok(());
    }
    let mut r = Refusals::new();
    if req
        .tier
        .is_some_and(|t| t != current.tier && t != grants.user_tier)
    {
        r.refuse("tier", ADMIN_ONLY);
    }
    if let Some(scopes) = req.scopes {
        let added = scopes.iter().filter(|s| !current.scopes.contains(s));
        for scope in added {
            if let Some(why) = actor.scope_refusal(grants, scope) {
                r.refuse("scopes", why);
                break;
            }
        }
    }
    if req.credits.is_some_and(|c| c != current.credits) {
        r.refuse("credits", ADMIN_ONLY);
    }
    if req.refill.is_some_and(|f| f != current.refill) {
        r.refuse("refill", ADMIN_ONLY);
    }
    if req.expires_at.is_some_and(|e| e != current.expires_at) {
        r.refuse("expires_at", ADMIN_ONLY);
    }
    if req.cap {
        r.refuse("cap", ADMIN_ONLY);
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants<'a>(scopes: &'a [String]) -> Grants<'a> {
        Grants {
            user_scopes: scopes,
            user_tier: "free",
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_user_cannot_make_itself_admin_or_unmetered() {
        let allowed = strings(&["search"]);
        let req = CreateRequest {
            tier: Some("pro".into()),
            scopes: strings(&["admin"]),
            credits: Some(None),
            refill: None,
            expires_at: Some(None),
            org: Some("org_victim".into()),
            owner: Some("bob".into()),
            cap: false,
        };
        let denied =
            admit_create(&Actor::user("alice", None), &grants(&allowed), "free", req).unwrap_err();
        let fields: Vec<&str> = denied.0.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            ["credits", "expires_at", "org", "owner", "scopes", "tier"]
        );
    }

    #[test]
    fn a_user_gets_the_user_tier_and_its_own_org() {
        let allowed = strings(&["search", "read"]);
        let ok = admit_create(
            &Actor::user("alice", Some("org_a")),
            &grants(&allowed),
            "pro",
            CreateRequest {
                tier: Some("free".into()),
                scopes: strings(&["search"]),
                org: Some("org_a".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (
                ok.tier.as_str(),
                ok.org.as_deref(),
                ok.owner.as_deref(),
                ok.credits
            ),
            ("free", Some("org_a"), Some("alice"), None)
        );
    }

    #[test]
    fn a_managing_key_grants_only_what_it_holds_and_users_may_grant() {
        let allowed = strings(&["search", "read"]);
        let held = strings(&["keys:manage", "search"]);
        let key = Actor {
            role: Role::Key { scopes: &held },
            subject: Some("a"),
            org: None,
            account: None,
            origin: None,
            credential: Some("key_a"),
        };
        let with = |s: &[&str]| CreateRequest {
            scopes: strings(s),
            ..Default::default()
        };
        assert!(admit_create(&key, &grants(&allowed), "free", with(&["search"])).is_ok());
        assert!(admit_create(&key, &grants(&allowed), "free", with(&["read"])).is_err());
        assert!(
            admit_create(&key, &grants(&allowed), "free", with(&["keys:manage"])).is_err(),
            "held, but not in user_scopes"
        );
    }

    #[test]
    fn admins_may_set_anything_and_get_defaults() {
        let admin = Actor {
            role: Role::Admin,
            subject: Some("ops"),
            org: None,
            account: None,
            origin: None,
            credential: Some("key_ops"),
        };
        let ok = admit_create(
            &admin,
            &grants(&[]),
            "free",
            CreateRequest {
                scopes: strings(&["admin"]),
                credits: Some(Some(5)),
                refill: None,
                owner: Some("bob".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (ok.tier.as_str(), ok.credits, ok.owner.as_deref()),
            ("free", Some(5), Some("bob"))
        );
        let cli = admit_create(
            &Actor::operator(),
            &grants(&[]),
            "free",
            CreateRequest::default(),
        )
        .unwrap();
        assert_eq!(cli.owner, None, "the CLI names an owner or none");
    }

    #[test]
    fn updates_never_raise_what_an_admin_set() {
        let allowed = strings(&["search"]);
        let scopes = strings(&["premium"]);
        let current = Current {
            tier: "pro",
            scopes: &scopes,
            credits: Some(100),
            refill: None,
            expires_at: None,
        };
        let user = &Actor::user("alice", None);
        let g = grants(&allowed);
        let keep = strings(&["premium", "search"]);
        let ok = UpdateRequest {
            tier: Some("pro"),
            scopes: Some(&keep),
            credits: Some(Some(100)),
            refill: None,
            expires_at: Some(None),
            cap: false,
        };
        assert!(
            admit_update(user, &g, current, &ok).is_ok(),
            "unchanged values"
        );
        let raise = strings(&["admin"]);
        let bad = UpdateRequest {
            tier: Some("enterprise"),
            scopes: Some(&raise),
            credits: Some(None),
            refill: None,
            expires_at: Some(Some(Utc::now())),
            cap: true,
        };
        let denied = admit_update(user, &g, current, &bad).unwrap_err();
        assert_eq!(denied.0.len(), 5);
        let down = UpdateRequest {
            tier: Some("free"),
            ..Default::default()
        };
        assert!(
            admit_update(user, &g, current, &down).is_ok(),
            "the user tier"
        );
    }
}
