//! The account pages' HTML (maud): a customer's account and the admins' account
//! list. Names the browser tests rely on (docs/portal.md): the `plan`, `add` and
//! `status` fields, buttons `Change plan`, `Add credits`, `Suspend`, `Resume`,
//! `Search`, `Next page`; classes `plan`, `balance`, `account-status`.

use super::pages::WindowNow;
use super::pages::{failure_reasons, latency, span_of, when, Frame};
use crate::domain::AccountStatus;
use crate::domain::{AccountRecord, KeyRecord};
use crate::keys::limits_view::LimitsView;
use crate::ledger::usage::Totals;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

/// What the account page shows of one account.
pub struct AccountPageView<'a> {
    /// The account.
    pub account: &'a AccountRecord,
    /// Its owner's email, if it is a user's (admins' pages).
    pub owner_email: Option<&'a str>,
    /// The plan's limits with the account's overrides (`None`: the plan is no
    /// longer configured).
    pub limits: Option<LimitsView>,
    /// Whether the plan's windows and credits are the account's.
    pub pooled: bool,
    /// The account's windows now (pooled plans only).
    pub windows: &'a [WindowNow],
    /// The pooled balance now (`None`: unmetered).
    pub balance: Option<i64>,
    /// Requests over 30 days, all keys together.
    pub total: &'a Totals,
    /// Each key with its requests over 30 days, busiest first.
    pub keys: &'a [(KeyRecord, Totals)],
    /// The configured plans (for the admins' plan form; empty for customers).
    pub plans: &'a [&'a str],
    /// What the last change said (a downgrade below the keys held).
    pub warnings: &'a [String],
}

/// What the admins' account list shows.
pub struct AccountListView<'a> {
    /// This page of accounts, each with its owner's email if any.
    pub accounts: &'a [(AccountRecord, Option<String>)],
    /// The search as typed: `email`, `plan`, `status`.
    pub search: [&'a str; 3],
    /// The next page's cursor.
    pub next: Option<&'a str>,
    /// The configured plans.
    pub plans: &'a [&'a str],
}

fn status_badge(s: AccountStatus) -> Markup {
    html! {
        @match s {
            AccountStatus::Active => span class="badge active account-status" { "active" },
            AccountStatus::Suspended => span class="badge revoked account-status" { "suspended" },
        }
    }
}

fn share(part: &Totals, whole: &Totals) -> String {
    if whole.total == 0 {
        return "—".into();
    }
    format!("{:.0}%", part.total as f64 * 100.0 / whole.total as f64)
}

/// An account: its plan and limits now, the balance, usage with each key's share;
/// for admins, the forms that change it.
pub fn account(f: &Frame<'_>, v: &AccountPageView<'_>, now: DateTime<Utc>) -> Markup {
    let a = v.account;
    let admin = !v.plans.is_empty();
    let heading = if admin {
        format!("Account {}", a.id)
    } else {
        "Your account".to_string()
    };
    f.page(
        &heading,
        html! {
            @if !v.warnings.is_empty() {
                div class="error" role="alert" { ul { @for w in v.warnings { li { (w) } } } }
            }
            div class="card" {
                dl class="facts" {
                    dt { "Plan" } dd class="plan" { (a.plan) }
                    dt { "Status" } dd { (status_badge(a.status)) }
                    @if let Some(e) = v.owner_email { dt { "User" } dd { (e) } }
                    @if admin { dt { "Account id" } dd { code { (a.id) } } }
                    dt { "Credits" }
                    dd class="balance" { @match v.balance { Some(c) => (c), None => "unmetered" } }
                    @if let Some(r) = v.limits.as_ref().and_then(|l| l.refill) {
                        dt { "Credit refill" }
                        dd { (format!("back to {} every {}", r.amount, r.every))
                             @if let Some(at) = &a.refilled_at { " (last " (when(at)) ")" } }
                    }
                    dt { "Created" } dd { (when(&a.created_at)) }
                }
                @if a.status == AccountStatus::Suspended {
                    p class="error" { "This account is suspended: every one of its keys is refused until it is resumed." }
                }
            }
            section class="card" {
                h2 { "Plan limits" }
                @if v.pooled {
                    p class="hint" { "Shared by every key of the account: using more keys does not give more requests." }
                } @else {
                    p class="hint" { "Each key of the account has these limits of its own." }
                }
                @match &v.limits {
                    None => p { "This plan is no longer offered." },
                    Some(l) => {
                        table class="limits" {
                            thead { tr { th { "Window" } th { "Limit" } @if v.pooled { th { "Remaining" } th { "Resets in" } } } }
                            tbody {
                                @for (window, limit) in l.windows() {
                                    @let now_w = v.windows.iter().find(|w| w.window == window);
                                    tr {
                                        td { (window) }
                                        td { (limit) }
                                        @if v.pooled {
                                            td class="remaining" { @match now_w.and_then(|w| w.remaining) { Some(r) => (r), None => "unknown" } }
                                            td { @match now_w.and_then(|w| w.resets_in) { Some(s) => (span_of(s)), None => "—" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section class="card usage" {
                h2 { "Usage, last 30 days" }
                p { "Requests by all keys together: " strong class="account-total" { (v.total.total) }
                    " (" (v.total.successful) " successful, " (v.total.failed) " failed"
                    @if v.total.failed > 0 { ": " (failure_reasons(v.total)) }
                    "), average latency " (latency(v.total)) "." }
                @if v.keys.is_empty() {
                    @if admin {
                        p class="empty" { "This account holds no keys yet." }
                    } @else {
                        p class="empty" { "No keys yet. " a href=(f.href("/keys")) { "Create the first one" } ": its requests will count here." }
                    }
                } @else {
                    table class="keys per-key" {
                        thead { tr { th { "Key" } th { "Tier" } th { "Status" } th { "Requests" } th { "Failed" } th { "Share" } } }
                        tbody {
                            @for (k, t) in v.keys {
                                tr {
                                    td { a href=(f.href(&format!("/keys/{}", k.id))) { (k.name) } " " code { (super::pages::masked(k)) } }
                                    td { (k.tier) }
                                    td { (k.status.as_str()) }
                                    td class="requests" { (t.total) }
                                    td { (t.failed) }
                                    td { (share(t, v.total)) }
                                }
                            }
                        }
                    }
                }
            }
            @if admin {
                section class="card" {
                    h2 { "Change" }
                    form method="post" action=(f.href(&format!("/accounts/{}/plan", a.id))) class="create" {
                        (f.csrf_input())
                        label { "Plan"
                            select name="plan" {
                                @for p in v.plans {
                                    option value=(p) selected[*p == a.plan] { (p) }
                                }
                            }
                        }
                        button type="submit" { "Change plan" }
                    }
                    form method="post" action=(f.href(&format!("/accounts/{}/credits", a.id))) class="create" {
                        (f.csrf_input())
                        label { "Credits to add" input type="number" name="add" required step="1" placeholder="e.g. 500"; }
                        button type="submit" { "Add credits" }
                    }
                    form method="post" action=(f.href(&format!("/accounts/{}/status", a.id))) class="create" {
                        (f.csrf_input())
                        @match a.status {
                            AccountStatus::Active => {
                                input type="hidden" name="status" value="suspended";
                                button type="submit" class="danger" { "Suspend" }
                            },
                            AccountStatus::Suspended => {
                                input type="hidden" name="status" value="active";
                                button type="submit" { "Resume" }
                            },
                        }
                    }
                }
            }
            p class="hint" { "As of " (when(&now)) "." }
        },
    )
}

/// The admins' account list: a search form and one page of accounts.
pub fn accounts(f: &Frame<'_>, v: &AccountListView<'_>) -> Markup {
    let [email, plan, status] = v.search;
    f.page(
        "Accounts",
        html! {
            form method="get" action=(f.href("/accounts")) class="filter" {
                label { "Email" input type="search" name="email" value=(email) placeholder="the user's email"; }
                label { "Plan"
                    select name="plan" {
                        option value="" selected[plan.is_empty()] { "any" }
                        @for p in v.plans { option value=(p) selected[*p == plan] { (p) } }
                    }
                }
                label { "Status"
                    select name="status" {
                        option value="" selected[status.is_empty()] { "any" }
                        option value="active" selected[status == "active"] { "active" }
                        option value="suspended" selected[status == "suspended"] { "suspended" }
                    }
                }
                button type="submit" class="secondary" { "Search" }
            }
            @if v.accounts.is_empty() {
                p class="empty" { "No accounts match." }
            } @else {
                table class="accounts" {
                    thead { tr { th { "Account" } th { "User" } th { "Plan" } th { "Status" } th { "Credits" } th { "Created" } } }
                    tbody {
                        @for (a, email) in v.accounts {
                            tr {
                                td { a href=(f.href(&format!("/accounts/{}", a.id))) { code { (a.id) } } }
                                td { @match email { Some(e) => (e), None => "—" } }
                                td { (a.plan) }
                                td { (status_badge(a.status)) }
                                td { @match a.credits { Some(c) => (c), None => "unmetered" } }
                                td { (when(&a.created_at)) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = v.next {
                form method="get" action=(f.href("/accounts")) class="inline" {
                    input type="hidden" name="email" value=(email);
                    input type="hidden" name="plan" value=(plan);
                    input type="hidden" name="status" value=(status);
                    input type="hidden" name="cursor" value=(next);
                    button type="submit" class="secondary" { "Next page" }
                }
            }
        },
    )
}

/// The change-password page (`current_password`, `password`, button `Change
/// password`), with what went wrong or right.
pub fn password(f: &Frame<'_>, errors: &[(String, String)], done: bool) -> Markup {
    f.page(
        "Password",
        html! {
            div class="card narrow" {
                @if done { p class="ok-text" role="status" { "Your password was changed. Your other sessions have ended." } }
                @if !errors.is_empty() {
                    div class="error" role="alert" { ul { @for (field, why) in errors { li { strong { (field) } ": " (why) } } } }
                }
                form method="post" action=(f.href("/password")) class="create" {
                    (f.csrf_input())
                    label { "Current password" input type="password" name="current_password" required autocomplete="current-password"; }
                    label { "New password" input type="password" name="password" required minlength="8" autocomplete="new-password"; }
                    button type="submit" { "Change password" }
                }
            }
        },
    )
}

/// The page a password-reset link opens (`password`, button `Set password`).
pub fn reset(f: &Frame<'_>, token: &str, errors: &[(String, String)]) -> Markup {
    f.page(
        "Choose a new password",
        html! {
            div class="card narrow" {
                @if !errors.is_empty() {
                    div class="error" role="alert" { ul { @for (field, why) in errors { li { strong { (field) } ": " (why) } } } }
                }
                p class="hint" { "This link works once. Every session of yours ends when the password is set." }
                form method="post" action=(f.href(&format!("/reset/{token}"))) class="create" {
                    (f.csrf_input())
                    label { "New password" input type="password" name="password" required minlength="8" autocomplete="new-password"; }
                    button type="submit" { "Set password" }
                }
            }
        },
    )
}
