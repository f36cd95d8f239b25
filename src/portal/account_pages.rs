//! The portal's account pages (docs/portal.md, Pages): a customer's own account
//! (`/account`: plan, limits now, pooled usage with each key's share, the credit
//! balance) and the admins' account pages (`/accounts`: search and pages;
//! `/accounts/{id}`: change the plan, add credits, suspend or resume). Every rule
//! is the one [`crate::keys::accounts::AccountService`]'s, as for the API.

use super::account_views::{self, AccountListView, AccountPageView};
use super::form::Form;
use super::usage_view;
use super::{frame, page, query_param, PortalContext, Reply, Visit};
use crate::domain::{
    AccountFilter, AccountPatch, AccountRecord, AccountStatus, CreditChange, Pool, UsageRow,
};
use crate::error::GateError;
use crate::keys::accounts::{AccountService, AccountView};
use crate::keys::limits_view::LimitsView;
use crate::keys::policy::Actor;
use crate::ledger::usage::Totals;
use crate::limit::TierLimits;
use std::sync::Arc;

/// Accounts on one page of the admins' list.
const PAGE: usize = 50;

impl super::Portal {
    fn account_service(&self) -> Result<&Arc<AccountService>, GateError> {
        self.keys.accounts().ok_or(GateError::NotFound)
    }

    /// `/account`: the signed-in user's own account.
    pub(super) async fn own_account_page(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
    ) -> Result<Reply, GateError> {
        let user = visit.user().ok_or(GateError::NotFound)?;
        let s = self.account_service()?;
        let own = s.own(&cx.rules(), &user.id).await?;
        let view = s.get(&Actor::operator(), &own.id).await?;
        self.render_account(cx, visit, s, view, false, &[]).await
    }

    /// `/accounts/{id}` (admins).
    pub(super) async fn admin_account_page(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        id: &str,
        warnings: &[String],
    ) -> Result<Reply, GateError> {
        let actor = admin(visit)?;
        let s = self.account_service()?;
        let view = s.get(&actor, id).await?;
        self.render_account(cx, visit, s, view, true, warnings)
            .await
    }

    async fn render_account(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        s: &AccountService,
        view: AccountView,
        admin: bool,
        warnings: &[String],
    ) -> Result<Reply, GateError> {
        self.usage
            .flush(&*self.store, crate::ledger::usage::Flush::Exact)
            .await;
        let now = self.clock.now_utc();
        let since = usage_view::month_start(now);
        let a = &view.account;
        let keys = view.keys.clone().unwrap_or_default();
        let mut rows: Vec<UsageRow> = Vec::new();
        let mut per_key = Vec::with_capacity(keys.len());
        for k in keys {
            let of_key = self.store.usage(Some(&k.id), since).await?;
            per_key.push((k, Totals::of(&of_key)));
            rows.extend(of_key);
        }
        per_key.sort_by(|x, y| y.1.total.cmp(&x.1.total).then(x.0.id.cmp(&y.0.id)));
        let total = Totals::of(&rows);
        let config = cx.rules.tiers.get(&a.plan);
        let pooled = config.is_some_and(|t| t.pool == Pool::Account);
        let limits = config
            .map(|t| LimitsView::of(t, t.credits.map(|c| c.refill())).with_overrides(&a.overrides));
        let windows = if pooled {
            let tier: TierLimits = cx.tiers.get(&a.plan).with_overrides(&a.overrides);
            self.windows_now(
                &format!("{}{}", crate::auth::ACCOUNT_LIMIT_PREFIX, a.id),
                &tier,
            )
            .await
        } else {
            Vec::new()
        };
        let balance = s.balance_of(&cx.rules(), a);
        let owner_email = match (&a.owner, admin) {
            (Some(o), true) => self
                .owner_emails_of(std::slice::from_ref(o))
                .await?
                .remove(o),
            _ => None,
        };
        let plans = if admin {
            cx.rules.tier_names()
        } else {
            Vec::new()
        };
        let v = AccountPageView {
            account: a,
            owner_email: owner_email.as_deref(),
            limits,
            pooled,
            windows: &windows,
            balance,
            total: &total,
            keys: &per_key,
            plans: &plans,
            warnings,
        };
        Ok(page(account_views::account(&frame(cx, visit), &v, now)))
    }

    /// `/accounts` (admins): a page of accounts, searched by email, plan, status.
    pub(super) async fn accounts_page(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        query: Option<&str>,
    ) -> Result<Reply, GateError> {
        let actor = admin(visit)?;
        let s = self.account_service()?;
        let param = |n: &str| query_param(query, n).unwrap_or_default();
        let (email, plan, status) = (param("email"), param("plan"), param("status"));
        let status_filter = match status.trim() {
            "" => None,
            st => Some(crate::keys::accounts::parse_status(st)?),
        };
        let owner = match email.trim() {
            "" => None,
            e => match s.user_of_email(e).await? {
                Some(id) => Some(id),
                // No such user: no account of theirs.
                None => Some(String::new()),
            },
        };
        let mut accounts = s
            .list(
                &actor,
                AccountFilter {
                    owner,
                    plan: Some(plan.trim().to_string()).filter(|p| !p.is_empty()),
                    org: None,
                    status: status_filter,
                    after: query_param(query, "cursor").filter(|c| !c.is_empty()),
                    limit: PAGE + 1,
                },
            )
            .await?;
        let next = crate::local::page::cut_page(&mut accounts, PAGE, |a| &a.id);
        let owners: Vec<String> = accounts.iter().filter_map(|a| a.owner.clone()).collect();
        let emails = self.owner_emails_of(&owners).await?;
        let rows: Vec<(AccountRecord, Option<String>)> = accounts
            .into_iter()
            .map(|a| {
                let email = a.owner.as_ref().and_then(|o| emails.get(o).cloned());
                (a, email)
            })
            .collect();
        let plans = cx.rules.tier_names();
        let v = AccountListView {
            accounts: &rows,
            search: [email.as_str(), plan.as_str(), status.as_str()],
            next: next.as_deref(),
            plans: &plans,
        };
        Ok(page(account_views::accounts(&frame(cx, visit), &v)))
    }

    /// `POST /accounts/{id}/plan`, `/credits`, `/status` (admins): one change, then
    /// the account's page again.
    pub(super) async fn change_account(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        id: &str,
        what: AccountForm,
        form: Form,
    ) -> Result<Reply, GateError> {
        let actor = admin(visit)?;
        let s = self.account_service()?;
        let rules = cx.rules();
        let mut done = match what {
            AccountForm::Plan => "plan",
            AccountForm::Credits => "credits",
            AccountForm::Status => "",
        };
        let warnings = match what {
            AccountForm::Plan => {
                let patch = AccountPatch {
                    plan: Some(form.text("plan")),
                    ..Default::default()
                };
                s.update(&rules, &actor, id, patch).await?.warnings
            }
            AccountForm::Status => {
                let status = match form.text("status").as_str() {
                    "suspended" => AccountStatus::Suspended,
                    "active" => AccountStatus::Active,
                    _ => return Err(GateError::BadRequest("Unknown account status")),
                };
                done = match status {
                    AccountStatus::Suspended => "suspended",
                    AccountStatus::Active => "resumed",
                };
                let patch = AccountPatch {
                    status: Some(status),
                    ..Default::default()
                };
                s.update(&rules, &actor, id, patch).await?.warnings
            }
            AccountForm::Credits => {
                let text = form.text("add");
                let Ok(n) = text.trim().parse::<i64>() else {
                    let mut details = serde_json::Map::new();
                    details.insert("add".into(), "must be a whole number of credits".into());
                    return Err(GateError::Validation(details));
                };
                s.change_credits(&actor, id, CreditChange::Add(n)).await?;
                Vec::new()
            }
        };
        if warnings.is_empty() {
            return Ok(Reply::Redirect(format!("/accounts/{id}?done={done}")));
        }
        self.admin_account_page(cx, visit, id, &warnings).await
    }

    /// `GET|POST /password`: the signed-in user changes their password.
    pub(super) async fn password_page(
        &self,
        cx: &PortalContext<'_>,
        visit: &Visit,
        req: &crate::local::LocalRequest<'_>,
        form: Option<Form>,
    ) -> Result<Reply, GateError> {
        let (Some(user), Some(accounts)) = (visit.user(), &self.accounts) else {
            return Err(GateError::NotFound);
        };
        let Some(form) = form else {
            return Ok(page(account_views::password(&frame(cx, visit), &[], false)));
        };
        let from = visit
            .audit
            .clone()
            .unwrap_or_else(|| req.audit_origin(&user.id));
        let keep = visit
            .signed_in
            .as_ref()
            .map(|(_, token)| crate::domain::KeyHash::of(token));
        let changed = accounts
            .change_password(
                user,
                form.text("current_password"),
                form.text("password"),
                keep.as_ref(),
                req.client_ip,
                &from,
            )
            .await;
        let (status, errors) = match changed {
            Ok(()) => return Ok(page(account_views::password(&frame(cx, visit), &[], true))),
            Err(GateError::InvalidCredentials) => (
                http::StatusCode::UNAUTHORIZED,
                vec![(
                    "current_password".to_string(),
                    "is not your password".to_string(),
                )],
            ),
            Err(GateError::Validation(fields)) => (
                http::StatusCode::UNPROCESSABLE_ENTITY,
                fields
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            ),
            Err(e) => return Err(e),
        };
        Ok(Reply::Page(
            status,
            account_views::password(&frame(cx, visit), &errors, false),
        ))
    }

    /// `GET|POST /reset/{token}`: a password-reset link an admin issued; it works
    /// once, and a link that does not work is a 404 page.
    pub(super) async fn reset_page(
        &self,
        cx: &PortalContext<'_>,
        visit: &mut Visit,
        req: &crate::local::LocalRequest<'_>,
        token: &str,
        form: Option<Form>,
    ) -> Result<Reply, GateError> {
        let accounts = self.accounts.as_ref().ok_or(GateError::NotFound)?;
        let Some(form) = form else {
            if !accounts.reset_link_valid(token).await? {
                return Err(GateError::NotFound);
            }
            self.ensure_pre(cx, visit);
            return Ok(page(account_views::reset(&frame(cx, visit), token, &[])));
        };
        let from = req.audit_origin("anonymous");
        match accounts
            .reset_password(token, form.text("password"), &from)
            .await
        {
            Ok(()) => Ok(Reply::Redirect("/login?done=password-set".into())),
            Err(GateError::Validation(fields)) => {
                let errors: Vec<(String, String)> = fields
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
                    .collect();
                Ok(Reply::Page(
                    http::StatusCode::UNPROCESSABLE_ENTITY,
                    account_views::reset(&frame(cx, visit), token, &errors),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Emails of the users with these ids (admins see whose account is whose).
    async fn owner_emails_of(
        &self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, GateError> {
        let mut out = std::collections::BTreeMap::new();
        let Some(accounts) = &self.accounts else {
            return Ok(out);
        };
        for id in ids {
            if out.contains_key(id) {
                continue;
            }
            if let Some(u) = accounts.users().user_by_id(id).await? {
                out.insert(id.clone(), u.email);
            }
        }
        Ok(out)
    }
}

/// Which change an admin's account form makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountForm {
    /// A new plan.
    Plan,
    /// Credits added (or taken away).
    Credits,
    /// Suspended or resumed.
    Status,
}

/// The signed-in admin (anyone else: 404, as for the overview).
fn admin<'a>(visit: &'a Visit) -> Result<Actor<'a>, GateError> {
    match visit.user() {
        Some(u) if u.is_admin => visit.actor().ok_or(GateError::NotFound),
        _ => Err(GateError::NotFound),
    }
}
