//! The portal (docs/portal.md): server-rendered pages, under `portal.prefix` on
//! the data plane, where the API's users sign up, sign in, create, copy, revoke and
//! regenerate their keys and watch their usage. Never proxied.
//!
//! A door like the CLI and the management API: keys go through the one
//! [`KeyService`], people through [`Accounts`], usage through the store the
//! management API reads. [`Portal::handle`] answers every request with a complete
//! response — a page, a redirect, an asset, or an HTML error page — and the gate
//! only writes it. Every response carries the portal's security headers; every
//! POST must carry the form token of the browser's cookie ([`session`]).

mod account_pages;
mod account_views;
pub mod branding;
pub mod chart;
mod form;
pub mod pages;
pub mod session;
mod usage_view;

use crate::accounts::{sign_up_problems, Accounts};
use crate::auth::cache::limit_key_of_key;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::{AuditOrigin, KeyHash, KeyRecord, UserRecord};
use crate::error::GateError;
use crate::keys::input::KeyInput;
use crate::keys::policy::{Actor, Role};
use crate::keys::rules::KeyRules;
use crate::keys::service::{KeyService, KeyServiceError};
use crate::ledger::usage::UsageRecorder;
use crate::limit::{Limiter, Tiers};
use crate::local::router::{self, Route, Routed, Seg};
use crate::local::LocalRequest;
use crate::store::KeyStore;
use account_pages::AccountForm;
use form::Form;
use http::{Method, StatusCode};
use maud::Markup;
use pages::Frame;
use session::{CookiePolicy, FormKey};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How many of the audit log's newest entries the admin overview shows.
const OVERVIEW_AUDIT_ENTRIES: usize = 20;

/// Largest form body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// Headers on every portal response: no framing, no sniffing, no referrer,
/// nothing cached; and the Content-Security-Policy of its branding
/// ([`branding::Branding::csp`]: no script or style but the portal's own files).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
];

const STYLESHEET: &str = include_str!("assets/portal.css");
const SCRIPT: &str = include_str!("assets/portal.js");
/// The portal's icon, so that no page makes the browser ask the data plane for
/// `/favicon.ico` (a 401 there: noise in the logs and the refusal counts).
const FAVICON: &str = include_str!("assets/favicon.svg");

/// A complete response.
#[derive(Debug)]
pub struct PortalResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers besides [`SECURITY_HEADERS`] (`Content-Type`, `Location`,
    /// `Set-Cookie`, `Retry-After`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// A failed sign-in: counted against the client IP like a bad credential.
    pub failed_authentication: bool,
}

/// The portal's settings, compiled once per config.
#[derive(Clone, Debug)]
pub struct PortalSettings {
    /// `portal.prefix`.
    pub prefix: String,
    /// `portal.session_ttl`.
    pub session_ttl: std::time::Duration,
    /// `portal.tier`: the tier users get, instead of the default tier.
    pub tier: Option<String>,
    /// Cookies only over HTTPS (`__Host-` names): with `server.tls`, or
    /// `portal.secure_cookies` when TLS ends in front of keygate.
    pub secure_cookies: bool,
    /// How a new key's `curl` example sends it: the first of `api_keys.sources`.
    pub send_key: pages::SendKey,
    /// `portal.branding`, compiled.
    pub branding: Arc<branding::Branding>,
    /// How many `webhooks` receivers are configured (the overview shows their
    /// deliveries when there are any).
    pub webhook_receivers: usize,
}

impl PortalSettings {
    /// The portal's settings in `config`, with its compiled `branding`.
    pub fn from_config(config: &Config, branding: Arc<branding::Branding>) -> Self {
        let p = &config.portal;
        PortalSettings {
            prefix: p.prefix.clone(),
            session_ttl: p.session_ttl.get(),
            tier: p.tier.clone(),
            secure_cookies: config.server.tls.is_some() || p.secure_cookies,
            send_key: pages::SendKey::of(&config.api_keys.sources),
            webhook_receivers: config.webhooks.len(),
            branding,
        }
    }
}

/// What the portal reads of the running config (swapped on reload).
#[derive(Clone, Copy)]
pub struct PortalContext<'a> {
    /// The portal's settings.
    pub settings: &'a PortalSettings,
    /// The key rules, with the portal's tier as the one users get.
    pub rules: KeyRules<'a>,
    /// `management.registration: open`: anyone may sign up.
    pub signup_open: bool,
    /// Compiled tiers (the limits shown on a key's page).
    pub tiers: &'a Tiers,
}

impl PortalContext<'_> {
    fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    fn cookies(&self) -> CookiePolicy<'_> {
        CookiePolicy {
            path: self.prefix(),
            secure: self.settings.secure_cookies,
        }
    }

    fn signup_open(&self) -> bool {
        self.signup_open
    }

    /// The key rules, with the portal's tier as the one users get.
    fn rules(&self) -> KeyRules<'_> {
        self.rules
    }
}

/// The browser's state, as its cookies say.
struct Visit {
    /// The signed-in user and their session token.
    signed_in: Option<(UserRecord, String)>,
    /// The `kg_pre` value in force (existing, or new and set by this response).
    pre: Option<String>,
    /// `Set-Cookie` headers to send.
    set_cookies: Vec<String>,
    /// A wrong email or password was tried.
    failed_sign_in: bool,
    /// The key form tokens are made with.
    form_key: FormKey,
    /// What the previous action did, said on this page (`?done=`).
    notice: Option<&'static str>,
    /// Where the browser reached keygate (`https://api.example.com`): the base of
    /// a new key's `curl` example. `None` for a `Host` that is not a plain host.
    origin: Option<String>,
    /// The signed-in user calling from this request, as the audit log records
    /// their changes.
    audit: Option<crate::domain::AuditOrigin>,
}

/// The origin the browser used, from its `Host` header (plain host names and
/// ports only, never anything a page could not print safely).
fn origin_of(headers: &http::HeaderMap, https: bool) -> Option<String> {
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    plain.then(|| format!("{}://{host}", if https { "https" } else { "http" }))
}

/// The note a page shows after an action that redirected to it (`?done=NAME`):
/// fixed texts only, never the query's own words.
fn notice_of(query: Option<&str>) -> Option<&'static str> {
    match query_param(query, "done")?.as_str() {
        "revoked" => Some("Key revoked: it stopped working everywhere within a second."),
        "signed-out" => Some("You are signed out."),
        "password-set" => Some("Your new password is set: sign in with it."),
        "plan" => Some("Plan changed: every key of the account follows it within a second."),
        "credits" => Some("Credits added to the account's balance."),
        "suspended" => {
            Some("Account suspended: every one of its keys is refused until it is resumed.")
        }
        "resumed" => Some("Account resumed: its keys work again."),
        _ => None,
    }
}

impl Visit {
    /// A new key's first call, ready to paste: `curl` with the key as the API
    /// takes it, at the origin the browser used.
    fn try_it(&self, cx: &PortalContext<'_>, secret: &str) -> Option<String> {
        let origin = self.origin.as_deref()?;
        Some(cx.settings.send_key.curl(origin, secret))
    }

    fn user(&self) -> Option<&UserRecord> {
        self.signed_in.as_ref().map(|(u, _)| u)
    }

    /// The cookie value forms are bound to: the session's, else `kg_pre`.
    fn form_cookie(&self) -> Option<&str> {
        match &self.signed_in {
            Some((_, token)) => Some(token),
            None => self.pre.as_deref(),
        }
    }

    fn csrf(&self) -> String {
        self.form_cookie()
            .map(|c| self.form_key.token(c))
            .unwrap_or_default()
    }

    /// The signed-in user as the key rules see them.
    fn actor(&self) -> Option<Actor<'_>> {
        let user = self.user()?;
        Some(Actor {
            role: if user.is_admin {
                Role::Admin
            } else {
                Role::User
            },
            subject: Some(&user.id),
            org: None,
            account: None,
            origin: self.audit.as_ref(),
            credential: Some(&user.id),
        })
    }
}

/// What a handler answers.
enum Reply {
    /// A page.
    Page(StatusCode, Markup),
    /// `303 See Other` to a path below the prefix.
    Redirect(String),
    /// A static file.
    Asset(&'static str, &'static str),
    /// A file of the config's (the branding's logo and stylesheet).
    Bytes(&'static str, Arc<[u8]>),
}

/// The portal service.
pub struct Portal {
    store: Arc<dyn KeyStore>,
    keys: Arc<KeyService>,
    accounts: Option<Arc<Accounts>>,
    limiter: Arc<dyn Limiter>,
    usage: Arc<UsageRecorder>,
    clock: Arc<dyn Clock>,
    /// The form-token key, read from the store (or made there) on first use.
    form_key: tokio::sync::OnceCell<FormKey>,
    /// The webhook deliveries, for the admin overview.
    events: Option<Arc<dyn crate::store::events::EventStore>>,
}

impl Portal {
    /// The portal over the key lifecycle `keys`, the users in `accounts` (none: the
    /// store cannot hold users, and every page is 404), usage in `store` (with what
    /// `usage` has not flushed yet) and the limiter's counters.
    pub fn new(
        store: Arc<dyn KeyStore>,
        keys: Arc<KeyService>,
        accounts: Option<Arc<Accounts>>,
        limiter: Arc<dyn Limiter>,
        usage: Arc<UsageRecorder>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Portal {
            store,
            keys,
            accounts,
            limiter,
            usage,
            clock,
            form_key: tokio::sync::OnceCell::new(),
            events: None,
        }
    }

    /// This portal, showing the webhook deliveries in `events` on the overview.
    pub fn with_events(self, events: Option<Arc<dyn crate::store::events::EventStore>>) -> Self {
        Portal { events, ..self }
    }

    /// The form-token key every replica on the store shares.
    async fn form_key(&self, accounts: &Accounts) -> Result<FormKey, GateError> {
        self.form_key
            .get_or_try_init(|| async {
                let candidate = FormKey::new_secret();
                let secret = accounts
                    .users()
                    .shared_secret(session::FORM_KEY_NAME, &candidate)
                    .await?;
                Ok::<_, GateError>(FormKey::new(&secret))
            })
            .await
            .cloned()
    }

    /// Answers one request; never fails (a refusal is an HTML error page).
    pub async fn handle(&self, cx: &PortalContext<'_>, req: &LocalRequest<'_>) -> PortalResponse {
        let Some(accounts) = &self.accounts else {
            return self.error_response(cx, None, &GateError::NotFound);
        };
        let mut visit = match self.visit(cx, accounts, req).await {
            Ok(v) => v,
            Err(e) => return self.error_response(cx, None, &e),
        };
        let result = self.route(cx, accounts, req, &mut visit).await;
        let mut response = match result {
            Ok(reply) => self.render(cx, reply),
            Err(e) => self.error_response(cx, Some(&visit), &e),
        };
        response.failed_authentication = visit.failed_sign_in;
        for cookie in visit.set_cookies {
            response.headers.push(("Set-Cookie", cookie));
        }
        response
    }

    /// Reads the browser's cookies: the signed-in user, if the session is alive.
    async fn visit(
        &self,
        cx: &PortalContext<'_>,
        accounts: &Accounts,
        req: &LocalRequest<'_>,
    ) -> Result<Visit, GateError> {
        let mut signed_in = None;
        let mut stale = false;
        let names = cx.cookies();
        if let Some(token) = session::cookie(req.headers, names.session_name()) {
            match accounts.users().session_user(&KeyHash::of(token)).await? {
                Some(user) => signed_in = Some((user, token.to_string())),
                None => stale = true,
            }
        }
        let audit = signed_in.as_ref().map(|(u, _)| req.audit_origin(&u.id));
        let mut visit = Visit {
            audit,
            signed_in,
            pre: session::cookie(req.headers, names.pre_name()).map(str::to_string),
            set_cookies: Vec::new(),
            failed_sign_in: false,
            form_key: self.form_key(accounts).await?,
            notice: notice_of(req.query),
            origin: origin_of(req.headers, cx.settings.secure_cookies),
        };
        if stale {
            // Expired or signed out elsewhere: the browser forgets it too.
            visit.set_cookies.push(cx.cookies().clear_session());
        }
        Ok(visit)
    }

    /// Gives a browser that has not signed in a `kg_pre` to bind forms to.
    fn ensure_pre(&self, cx: &PortalContext<'_>, visit: &mut Visit) {
        if visit.signed_in.is_none() && visit.pre.is_none() {
            let value = session::new_pre_token();
            visit.set_cookies.push(cx.cookies().pre(&value));
            visit.pre = Some(value);
        }
    }

    async fn route(
        &self,
        cx: &PortalContext<'_>,
        accounts: &Accounts,
        req: &LocalRequest<'_>,
        visit: &mut Visit,
    ) -> Result<Reply, GateError> {
        // HEAD is GET without the body.
        let method = match req.method {
            &Method::HEAD => &Method::GET,
            m => m,
        };
        let form = if method == Method::POST {
            // A form a browser posts from another site (a planted cookie and a
            // forged sign-in form, say) is refused before anything is read.
            if !session::same_origin(req.headers) {
                return Err(GateError::CsrfRejected);
            }
            let form = Form::parse(req.body)?;
            check_form_token(visit, &form)?;
            Some(form)
        } else {
            None
        };
        let signed_out = visit.signed_in.is_none();
        let (endpoint, params) = match router::route(ROUTES, method, req.path) {
            Routed::To(Endpoint::SignupPage | Endpoint::SignUp, _) if !cx.signup_open() => {
                return Err(GateError::NotFound)
            }
            Routed::To(endpoint, params) => (endpoint, params),
            // A signed-out visitor who gets or posts is sent to sign in from
            // every page that needs it, before the method is judged.
            Routed::WrongMethod(_)
                if signed_out
                    && (method == Method::GET || method == Method::POST)
                    && router::endpoints_at(ROUTES, req.path)
                        .iter()
                        .any(|e| e.needs_sign_in()) =>
            {
                return Ok(Reply::Redirect("/login".into()))
            }
            // With sign-up closed, its page does not exist.
            Routed::WrongMethod(_)
                if !cx.signup_open()
                    && router::endpoints_at(ROUTES, req.path).contains(&Endpoint::SignupPage) =>
            {
                return Err(GateError::NotFound)
            }
            Routed::WrongMethod(allow) => return Err(GateError::MethodNotAllowed { allow }),
            Routed::NotFound => return Err(GateError::NotFound),
        };
        if signed_out && endpoint.needs_sign_in() {
            return Ok(Reply::Redirect("/login".into()));
        }
        let id = params.first().copied().unwrap_or_default();
        use Endpoint::*;
        match (endpoint, form) {
            (Stylesheet, _) => Ok(Reply::Asset("text/css; charset=utf-8", STYLESHEET)),
            (Script, _) => Ok(Reply::Asset("text/javascript; charset=utf-8", SCRIPT)),
            (Favicon, _) => Ok(Reply::Asset("image/svg+xml", FAVICON)),
            (BrandStylesheet, _) => match &cx.settings.branding.stylesheet {
                Some(css) => Ok(Reply::Bytes(
                    "text/css; charset=utf-8",
                    css.as_bytes().into(),
                )),
                None => Err(GateError::NotFound),
            },
            (Logo, _) => match &cx.settings.branding.logo {
                Some(branding::Logo::File {
                    content_type,
                    bytes,
                }) => Ok(Reply::Bytes(content_type, bytes.clone())),
                _ => Err(GateError::NotFound),
            },
            (Home, _) => Ok(Reply::Redirect(
                if signed_out { "/login" } else { "/keys" }.into(),
            )),
            (LoginPage, _) => {
                if !signed_out {
                    return Ok(Reply::Redirect("/keys".into()));
                }
                self.ensure_pre(cx, visit);
                let f = frame(cx, visit);
                Ok(page(pages::login(&f, "", None, cx.signup_open())))
            }
            (SignIn, Some(form)) => self.sign_in(cx, accounts, req, visit, form).await,
            (SignupPage, _) => {
                if !signed_out {
                    return Ok(Reply::Redirect("/keys".into()));
                }
                self.ensure_pre(cx, visit);
                let f = frame(cx, visit);
                Ok(page(pages::signup(&f, "", "", &[])))
            }
            (SignUp, Some(form)) => self.sign_up(cx, accounts, req, visit, form).await,
            (SignOut, Some(_)) => {
                if let Some((_, token)) = visit.signed_in.take() {
                    accounts.users().end_session(&KeyHash::of(&token)).await?;
                }
                visit.set_cookies.push(cx.cookies().clear_session());
                Ok(Reply::Redirect("/login?done=signed-out".into()))
            }
            (KeysPage, _) => {
                let filter = query_param(req.query, "owner").unwrap_or_default();
                self.keys_page(cx, visit, StatusCode::OK, &filter, &[], "")
                    .await
            }
            (CreateKey, Some(form)) => self.create_key(cx, visit, form).await,
            (KeyPage, _) => self.key_page(cx, visit, id).await,
            (ConfirmRevoke, _) => {
                let k = self.own_key(cx, visit, id).await?;
                Ok(page(pages::confirm_revoke(&frame(cx, visit), &k)))
            }
            (Revoke, Some(_)) => {
                let actor = visit.actor().ok_or(GateError::NotFound)?;
                self.keys.revoke(&cx.rules(), &actor, id).await?;
                Ok(Reply::Redirect("/keys?done=revoked".into()))
            }
            (ConfirmRegenerate, _) => {
                let k = self.own_key(cx, visit, id).await?;
                Ok(page(pages::confirm_regenerate(&frame(cx, visit), &k)))
            }
            (Regenerate, Some(form)) => self.regenerate(cx, visit, id, form).await,
            (Overview, _) if visit.user().is_some_and(|u| u.is_admin) => {
                self.overview(cx, visit).await
            }
            (Overview, _) => Err(GateError::NotFound),
            (OwnAccount, _) => self.own_account_page(cx, visit).await,
            (Accounts, _) => self.accounts_page(cx, visit, req.query).await,
            (AccountPage, _) => self.admin_account_page(cx, visit, id, &[]).await,
            (AccountPlan, Some(form)) => {
                self.change_account(cx, visit, id, AccountForm::Plan, form)
                    .await
            }
            (AccountCredits, Some(form)) => {
                self.change_account(cx, visit, id, AccountForm::Credits, form)
                    .await
            }
            (PasswordPage, _) => self.password_page(cx, visit, req, None).await,
            (ChangePassword, Some(form)) => self.password_page(cx, visit, req, Some(form)).await,
            (ResetPage, _) => self.reset_page(cx, visit, req, id, None).await,
            (ResetPassword, Some(form)) => self.reset_page(cx, visit, req, id, Some(form)).await,
            (AccountStatus, Some(form)) => {
                self.change_account(cx, visit, id, AccountForm::Status, form)
                    .await
            }
            // A POST route always has its form (parsed above).
            (
                SignIn | SignUp | SignOut | CreateKey | Revoke | Regenerate | AccountPlan
                | AccountCredits | AccountStatus | ChangePassword | ResetPassword,
                None,
            ) => Err(GateError::Internal),
        }
    }

    async fn sign_in(
        &self,
        cx: &PortalContext<'_>,
        accounts: &Accounts,
        req: &LocalRequest<'_>,
        visit: &mut Visit,
        form: Form,
    ) -> Result<Reply, GateError> {
        let email = form.text("email");
        let password = form.text("password");
        if email.is_empty() || password.is_empty() {
            let f = frame(cx, visit);
            return Ok(Reply::Page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::login(
                    &f,
                    &email,
                    Some("Enter your email and password."),
                    cx.signup_open(),
                ),
            ));
        }
        let from = req.audit_origin(AuditOrigin::ANONYMOUS);
        match accounts
            .sign_in(&email, password, req.client_ip, &from)
            .await
        {
            Ok(user) => self.start_session(cx, accounts, visit, user).await,
            Err(GateError::InvalidCredentials) => {
                // The form again, and the failure counted against the client IP.
                visit.failed_sign_in = true;
                self.ensure_pre(cx, visit);
                let f = frame(cx, visit);
                let message = GateError::InvalidCredentials.message();
                Ok(Reply::Page(
                    StatusCode::UNAUTHORIZED,
                    pages::login(&f, &email, Some(&message), cx.signup_open()),
                ))
            }
            Err(e) => Err(e),
        }
    }

    async fn sign_up(
        &self,
        cx: &PortalContext<'_>,
        accounts: &Accounts,
        req: &LocalRequest<'_>,
        visit: &mut Visit,
        form: Form,
    ) -> Result<Reply, GateError> {
        let email = form.text("email").trim().to_string();
        let name = form.text("name").trim().to_string();
        let password = form.text("password");
        let mut errors: Vec<(String, String)> = sign_up_problems(&email, &password)
            .into_iter()
            .map(|(f, why)| (f.to_string(), why))
            .collect();
        if password.chars().count() > 200 {
            errors.push(("password".into(), "must be at most 200 characters".into()));
        }
        if name.chars().count() > 200 {
            errors.push(("name".into(), "must be at most 200 characters".into()));
        }
        if !errors.is_empty() {
            let f = frame(cx, visit);
            return Ok(Reply::Page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::signup(&f, &email, &name, &errors),
            ));
        }
        let name = (!name.is_empty()).then_some(name.clone());
        match accounts
            .register(
                email.clone(),
                password,
                name.clone(),
                &req.audit_origin("anonymous"),
            )
            .await
        {
            Ok(user) => self.start_session(cx, accounts, visit, user).await,
            Err(GateError::Conflict(_)) => {
                let f = frame(cx, visit);
                let errors = [(
                    "email".to_string(),
                    "is already registered; sign in instead".to_string(),
                )];
                Ok(Reply::Page(
                    StatusCode::CONFLICT,
                    pages::signup(&f, &email, name.as_deref().unwrap_or(""), &errors),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Signs `user` in: a new session (a new token at every sign-in), its cookie,
    /// and the pre-sign-in cookie gone.
    async fn start_session(
        &self,
        cx: &PortalContext<'_>,
        accounts: &Accounts,
        visit: &mut Visit,
        user: UserRecord,
    ) -> Result<Reply, GateError> {
        let ttl = cx.settings.session_ttl;
        let token = session::new_session_token();
        let expires = self.clock.now_utc() + chrono::Duration::from_std(ttl).unwrap_or_default();
        accounts
            .users()
            .create_session(&KeyHash::of(&token), &user.id, expires)
            .await?;
        // A session the browser held before (another user's, say) ends here.
        if let Some((_, old)) = visit.signed_in.take() {
            accounts.users().end_session(&KeyHash::of(&old)).await?;
        }
        visit.set_cookies.push(cx.cookies().session(&token, ttl));
        if visit.pre.take().is_some() {
            visit.set_cookies.push(cx.cookies().clear_pre());
        }
        tracing::info!(user = %user.id, "portal sign-in");
        Ok(Reply::Redirect("/keys".into()))
    }

    /// The keys page, with `errors` from a refused create form.
    async fn keys_page(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        status: StatusCode,
        filter: &str,
        errors: &[(String, String)],
        name: &str,
    ) -> Result<Reply, GateError> {
        let actor = visit.actor().ok_or(GateError::NotFound)?;
        let admin = matches!(actor.role, Role::Admin);
        let mut keys = self.keys.list(&cx.rules(), &actor).await?;
        let owners = if admin {
            self.owner_emails(&keys).await?
        } else {
            BTreeMap::new()
        };
        let filter = filter.trim();
        if admin && !filter.is_empty() {
            let needle = filter.to_lowercase();
            keys.retain(|k| {
                k.owner.as_ref().is_some_and(|o| {
                    o.to_lowercase().contains(&needle)
                        || owners
                            .get(o)
                            .is_some_and(|e| e.to_lowercase().contains(&needle))
                })
            });
        }
        let view = pages::KeysView {
            keys: &keys,
            owners: &owners,
            admin,
            filter,
            scopes: cx.rules.user_scopes,
            errors,
            name,
        };
        Ok(Reply::Page(
            status,
            pages::keys(&frame(cx, visit), &view, self.clock.now_utc()),
        ))
    }

    /// Emails of the owners of `keys` (admins see who owns what).
    async fn owner_emails(
        &self,
        keys: &[KeyRecord],
    ) -> Result<BTreeMap<String, String>, GateError> {
        let mut owners = BTreeMap::new();
        let Some(accounts) = &self.accounts else {
            return Ok(owners);
        };
        for owner in keys.iter().filter_map(|k| k.owner.as_ref()) {
            if owners.contains_key(owner) || owners.len() >= 500 {
                continue;
            }
            if let Some(u) = accounts.users().user_by_id(owner).await? {
                owners.insert(owner.clone(), u.email);
            }
        }
        Ok(owners)
    }

    async fn create_key(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        form: Form,
    ) -> Result<Reply, GateError> {
        let actor = visit.actor().ok_or(GateError::NotFound)?;
        let name = form.text("name");
        let input = KeyInput {
            name: Some(name.clone()),
            environment: Some(form.text("environment")).filter(|e| !e.is_empty()),
            scopes: Some(form.all("scopes")),
            ..KeyInput::default()
        };
        match self.keys.create(&cx.rules(), &actor, input).await {
            Ok(issued) => Ok(page(pages::new_key(
                &frame(cx, visit),
                &issued.record,
                &issued.secret.plaintext,
                None,
                visit.try_it(cx, &issued.secret.plaintext).as_ref(),
            ))),
            Err(e) => {
                let (status, errors) = form_errors(e)?;
                self.keys_page(cx, visit, status, "", &errors, &name).await
            }
        }
    }

    async fn regenerate(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        id: &str,
        form: Form,
    ) -> Result<Reply, GateError> {
        let actor = visit.actor().ok_or(GateError::NotFound)?;
        self.keys.get(&cx.rules(), &actor, id).await?;
        // How long a grace may be is the key service's rule, said there.
        let grace = match form.text("grace_period").trim() {
            "" | "0" | "0s" => None,
            text => match crate::domain::duration::parse_duration(text) {
                Ok(d) => Some(d).filter(|d| !d.is_zero()),
                Err(e) => {
                    let mut details = serde_json::Map::new();
                    details.insert("grace_period".into(), e.to_string().into());
                    return Err(GateError::Validation(details));
                }
            },
        };
        let issued = self.keys.regenerate(&cx.rules(), &actor, id, grace).await?;
        Ok(page(pages::new_key(
            &frame(cx, visit),
            &issued.record,
            &issued.secret.plaintext,
            issued.previous_valid_until,
            visit.try_it(cx, &issued.secret.plaintext).as_ref(),
        )))
    }

    /// The signed-in user's key `id` (an admin: anyone's); another's is 404.
    async fn own_key(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        id: &str,
    ) -> Result<KeyRecord, GateError> {
        let actor = visit.actor().ok_or(GateError::NotFound)?;
        Ok(self.keys.get(&cx.rules(), &actor, id).await?)
    }

    async fn key_page(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        id: &str,
    ) -> Result<Reply, GateError> {
        // What this process counted but has not flushed yet is included (and the
        // key's `last_used_at` with it), so the key is read after the flush.
        self.usage
            .flush(&*self.store, crate::ledger::usage::Flush::Exact)
            .await;
        let key = self.own_key(cx, visit, id).await?;
        let now = self.clock.now_utc();
        let rows = self
            .store
            .usage(Some(id), usage_view::month_start(now))
            .await?;
        let usage = usage_view::key_usage(&rows, now);
        let tier = cx.tiers.get(&key.tier);
        // A pooled tier's windows are the account's.
        let counters = match (&key.account, tier.pool) {
            (Some(account), crate::domain::Pool::Account) => {
                format!("{}{account}", crate::auth::ACCOUNT_LIMIT_PREFIX)
            }
            _ => limit_key_of_key(&key.id),
        };
        let windows = self.windows_now(&counters, tier).await;
        let owner = match (visit.user().is_some_and(|u| u.is_admin), &key.owner) {
            (true, Some(o)) => Some(
                self.owner_emails(std::slice::from_ref(&key))
                    .await?
                    .remove(o)
                    .unwrap_or_else(|| o.clone()),
            ),
            _ => None,
        };
        let limits = cx.rules().limits(&key);
        let pooled = match (&key.account, tier.pool, self.keys.accounts()) {
            (Some(account), crate::domain::Pool::Account, Some(s)) => {
                Some(s.balance(&cx.rules(), account).await?)
            }
            _ => None,
        };
        let detail = pages::KeyDetail {
            key: &key,
            owner: owner.as_deref(),
            pooled,
            windows: &windows,
            limits: limits.as_ref(),
            usage: &usage,
        };
        Ok(page(pages::key_detail(&frame(cx, visit), &detail, now)))
    }

    /// Where the counters `limit_key` stand in each window of `tier`, now.
    async fn windows_now(
        &self,
        limit_key: &str,
        tier: &crate::limit::TierLimits,
    ) -> Vec<pages::WindowNow> {
        let state = self.limiter.peek(limit_key, &tier.windows).await.ok();
        let now_ms = self.clock.now_ms();
        tier.windows
            .iter()
            .map(|w| {
                let s = state
                    .as_ref()
                    .and_then(|d| d.windows.iter().find(|s| s.window == w.window));
                pages::WindowNow {
                    window: w.window.name(),
                    limit: w.limit,
                    remaining: s.map(|s| s.remaining),
                    resets_in: s.map(|s| s.reset_at_ms.saturating_sub(now_ms).div_ceil(1000)),
                }
            })
            .collect()
    }

    /// The admin overview: every key's usage, the busiest keys, and the audit
    /// log's newest [`OVERVIEW_AUDIT_ENTRIES`] entries.
    async fn overview(&self, cx: &PortalContext<'_>, visit: &Visit) -> Result<Reply, GateError> {
        let actor = visit.actor().ok_or(GateError::NotFound)?;
        let now = self.clock.now_utc();
        self.usage
            .flush(&*self.store, crate::ledger::usage::Flush::Exact)
            .await;
        let rows = self.store.usage(None, usage_view::day_start(now)).await?;
        let all = usage_view::key_usage(&rows, now);
        // Only the busiest keys are read, not every key in the store.
        let mut busiest: Vec<(Option<KeyRecord>, String, u64, u64)> = Vec::new();
        for (id, n, failed) in usage_view::busiest(&rows, 10) {
            let key = match self.keys.get(&cx.rules(), &actor, &id).await {
                Ok(k) => Some(k),
                Err(KeyServiceError::NotFound) => None,
                Err(e) => return Err(e.into()),
            };
            busiest.push((key, id, n, failed));
        }
        let listed: Vec<KeyRecord> = busiest.iter().filter_map(|b| b.0.clone()).collect();
        let owners = self.owner_emails(&listed).await?;
        let (outcomes, reasons) = usage_view::process_counts();
        let audit = self.store.audit_log(None, OVERVIEW_AUDIT_ENTRIES).await?;
        let deliveries = match &self.events {
            Some(e) => e.recent_deliveries(OVERVIEW_AUDIT_ENTRIES as u32).await?,
            None => Vec::new(),
        };
        let view = pages::OverviewView {
            hourly: &all.hourly,
            day: &all.day,
            busiest: &busiest,
            owners: &owners,
            outcomes: &outcomes,
            reasons: &reasons,
            audit: &audit,
            deliveries: &deliveries,
            receivers: cx.settings.webhook_receivers,
        };
        Ok(page(pages::overview(&frame(cx, visit), &view)))
    }

    fn render(&self, cx: &PortalContext<'_>, reply: Reply) -> PortalResponse {
        let (status, headers, body) = match reply {
            Reply::Page(status, markup) => (
                status,
                vec![("Content-Type", "text/html; charset=utf-8".to_string())],
                markup.into_string().into_bytes(),
            ),
            Reply::Redirect(to) => (
                StatusCode::SEE_OTHER,
                vec![
                    ("Location", format!("{}{to}", cx.prefix())),
                    ("Content-Type", "text/plain; charset=utf-8".to_string()),
                ],
                Vec::new(),
            ),
            Reply::Asset(content_type, text) => (
                StatusCode::OK,
                vec![("Content-Type", content_type.to_string())],
                text.as_bytes().to_vec(),
            ),
            Reply::Bytes(content_type, bytes) => (
                StatusCode::OK,
                vec![("Content-Type", content_type.to_string())],
                bytes.to_vec(),
            ),
        };
        PortalResponse {
            status,
            headers,
            body,
            failed_authentication: false,
        }
    }

    /// A refusal made before the portal was reached (the client IP's limits, a
    /// body too large) as the portal's HTML error page.
    pub fn error_page(&self, cx: &PortalContext<'_>, err: &GateError) -> PortalResponse {
        self.error_response(cx, None, err)
    }

    /// A refusal as an HTML page with its status (and `Retry-After`, `Allow`).
    fn error_response(
        &self,
        cx: &PortalContext<'_>,
        visit: Option<&Visit>,
        err: &GateError,
    ) -> PortalResponse {
        let f = Frame {
            title: &cx.settings.branding.name,
            branding: &cx.settings.branding,
            prefix: cx.prefix(),
            user: visit.and_then(Visit::user),
            csrf: visit.map(Visit::csrf).unwrap_or_default(),
            notice: None,
        };
        let message = err.page_message();
        let mut headers = vec![("Content-Type", "text/html; charset=utf-8".to_string())];
        headers.extend(err.page_headers());
        PortalResponse {
            status: err.status(),
            headers,
            body: pages::error(&f, err.status(), &message)
                .into_string()
                .into_bytes(),
            failed_authentication: false,
        }
    }
}

/// A POST must carry the form token of the cookie in force; anything else is 403
/// and changes nothing.
fn check_form_token(visit: &Visit, form: &Form) -> Result<(), GateError> {
    let presented = form.text("csrf");
    match visit.form_cookie() {
        Some(cookie) if visit.form_key.matches(cookie, &presented) => Ok(()),
        _ => Err(GateError::CsrfRejected),
    }
}

/// What a portal page or form does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Stylesheet,
    Script,
    Favicon,
    BrandStylesheet,
    Logo,
    Home,
    LoginPage,
    SignIn,
    SignupPage,
    SignUp,
    SignOut,
    KeysPage,
    CreateKey,
    KeyPage,
    ConfirmRevoke,
    Revoke,
    ConfirmRegenerate,
    Regenerate,
    Overview,
    OwnAccount,
    Accounts,
    AccountPage,
    AccountPlan,
    AccountCredits,
    AccountStatus,
    PasswordPage,
    ChangePassword,
    ResetPage,
    ResetPassword,
}

impl Endpoint {
    /// Only for a signed-in user (a signed-out visit is sent to sign in).
    fn needs_sign_in(self) -> bool {
        use Endpoint::*;
        !matches!(
            self,
            Stylesheet
                | Script
                | Favicon
                | BrandStylesheet
                | Logo
                | Home
                | LoginPage
                | SignIn
                | SignupPage
                | SignUp
                | SignOut
                | ResetPage
                | ResetPassword
        )
    }
}

/// Every page and form of the portal, below its prefix; its 405s and their
/// `Allow` come from here too.
const ROUTES: &[Route<Endpoint>] = {
    use Endpoint::*;
    use Seg::{Lit, Param};
    &[
        Route::new(&[Lit("static"), Lit("portal.css")], "GET", Stylesheet),
        Route::new(&[Lit("static"), Lit("portal.js")], "GET", Script),
        Route::new(&[Lit("static"), Lit("favicon.svg")], "GET", Favicon),
        Route::new(&[Lit("static"), Lit("brand.css")], "GET", BrandStylesheet),
        Route::new(&[Lit("static"), Lit("logo")], "GET", Logo),
        Route::new(&[], "GET", Home),
        Route::new(&[Lit("login")], "GET", LoginPage),
        Route::new(&[Lit("login")], "POST", SignIn),
        Route::new(&[Lit("signup")], "GET", SignupPage),
        Route::new(&[Lit("signup")], "POST", SignUp),
        Route::new(&[Lit("logout")], "POST", SignOut),
        Route::new(&[Lit("keys")], "GET", KeysPage),
        Route::new(&[Lit("keys")], "POST", CreateKey),
        Route::new(&[Lit("keys"), Param], "GET", KeyPage),
        Route::new(&[Lit("keys"), Param, Lit("revoke")], "GET", ConfirmRevoke),
        Route::new(&[Lit("keys"), Param, Lit("revoke")], "POST", Revoke),
        Route::new(
            &[Lit("keys"), Param, Lit("regenerate")],
            "GET",
            ConfirmRegenerate,
        ),
        Route::new(&[Lit("keys"), Param, Lit("regenerate")], "POST", Regenerate),
        Route::new(&[Lit("overview")], "GET", Overview),
        Route::new(&[Lit("account")], "GET", OwnAccount),
        Route::new(&[Lit("accounts")], "GET", Accounts),
        Route::new(&[Lit("accounts"), Param], "GET", AccountPage),
        Route::new(&[Lit("accounts"), Param, Lit("plan")], "POST", AccountPlan),
        Route::new(
            &[Lit("accounts"), Param, Lit("credits")],
            "POST",
            AccountCredits,
        ),
        Route::new(
            &[Lit("accounts"), Param, Lit("status")],
            "POST",
            AccountStatus,
        ),
        Route::new(&[Lit("password")], "GET", PasswordPage),
        Route::new(&[Lit("password")], "POST", ChangePassword),
        Route::new(&[Lit("reset"), Param], "GET", ResetPage),
        Route::new(&[Lit("reset"), Param], "POST", ResetPassword),
    ]
};

fn frame<'a>(cx: &'a PortalContext<'a>, visit: &'a Visit) -> Frame<'a> {
    Frame {
        title: &cx.settings.branding.name,
        branding: &cx.settings.branding,
        prefix: cx.prefix(),
        user: visit.user(),
        csrf: visit.csrf(),
        notice: visit.notice,
    }
}

fn page(markup: Markup) -> Reply {
    Reply::Page(StatusCode::OK, markup)
}

/// A create refused for its fields: the status and the problems, for the form.
fn form_errors(e: KeyServiceError) -> Result<(StatusCode, Vec<(String, String)>), GateError> {
    match e {
        KeyServiceError::Invalid(fields) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            fields.into_iter().collect(),
        )),
        KeyServiceError::Denied(d) => Ok((
            StatusCode::FORBIDDEN,
            d.0.into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or("not permitted").to_string()))
                .collect(),
        )),
        e @ KeyServiceError::QuotaReached { .. } => {
            Ok((StatusCode::CONFLICT, vec![("name".into(), e.to_string())]))
        }
        e => Err(e.into()),
    }
}

/// The first value of `name` in a query string.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests;
