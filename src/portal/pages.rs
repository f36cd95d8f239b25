//! The portal's pages, rendered with maud: every value is HTML-escaped by the
//! template engine, no page has inline script or style (the CSP forbids both),
//! and every form works without JavaScript. The names black-box tests rely on
//! (docs/portal.md) are here: inputs `email`, `name`, `password`, `scopes`,
//! select `environment`, buttons `Sign in`, `Create account`, `Create key`,
//! `Revoke`, `Regenerate`, `Sign out`.

use super::chart::{bars, legend, Bucket};
use crate::domain::Algorithm;
use crate::domain::{KeyRecord, KeyStatus, UserRecord};
use crate::keys::limits_view::LimitsView;
use crate::ledger::usage::Totals;
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use std::collections::BTreeMap;

/// What every page's frame shows: the product, where the portal lives, who is
/// signed in, and the form token of the cookie in force.
pub struct Frame<'a> {
    /// The product's name (`portal.branding.name`, else `portal.title`).
    pub title: &'a str,
    /// The logo and accent.
    pub branding: &'a super::branding::Branding,
    /// `portal.prefix`.
    pub prefix: &'a str,
    /// The signed-in user, if any.
    pub user: Option<&'a UserRecord>,
    /// The form token every form carries.
    pub csrf: String,
    /// What the previous action did (a fixed text), said above the page.
    pub notice: Option<&'static str>,
}

impl Frame<'_> {
    /// `path` below the portal's prefix.
    pub fn href(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    /// The hidden form-token field every form carries.
    pub fn csrf_input(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(&self.csrf); }
    }

    /// The whole page around `body`.
    pub fn page(&self, heading: &str, body: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (heading) " · " (self.title) }
                    link rel="stylesheet" href=(self.href("/static/portal.css"));
                    @if self.branding.stylesheet.is_some() {
                        link rel="stylesheet" href=(self.href("/static/brand.css"));
                    }
                    link rel="icon" type="image/svg+xml" href=(self.href("/static/favicon.svg"));
                    script src=(self.href("/static/portal.js")) defer {}
                }
                body {
                    header class="top" {
                        a class="brand" href=(self.href(if self.user.is_some() { "/keys" } else { "/login" })) {
                            @if let Some(logo) = self.branding.logo_href(self.prefix) {
                                img class="logo" src=(logo) alt="" height="28";
                            }
                            span { (self.title) }
                        }
                        @if let Some(user) = self.user {
                            nav {
                                a href=(self.href("/keys")) { "API keys" }
                                a href=(self.href("/account")) { "Account" }
                                a href=(self.href("/password")) { "Password" }
                                @if user.is_admin {
                                    a href=(self.href("/overview")) { "Overview" }
                                    a href=(self.href("/accounts")) { "Accounts" }
                                }
                            }
                            span class="who" { (user.email) }
                            form method="post" action=(self.href("/logout")) class="inline" {
                                (self.csrf_input())
                                button type="submit" class="link" { "Sign out" }
                            }
                        }
                    }
                    main {
                        h1 { (heading) }
                        @if let Some(n) = self.notice { p class="notice" role="status" { (n) } }
                        (body)
                    }
                }
            }
        }
    }
}

/// Renders a time as `2026-12-01 17:30 UTC`.
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A span of seconds as a person reads it: `45 s`, `3 min 5 s`, `6 h 23 min`, `2 d 4 h`.
pub fn span_of(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

fn when_opt(t: &Option<DateTime<Utc>>, none: &str) -> String {
    t.as_ref().map_or_else(|| none.to_string(), when)
}

/// `prefix…last4`: how a key is shown once its secret is gone.
pub fn masked(k: &KeyRecord) -> String {
    format!("{}…{}", k.prefix, k.last4)
}

fn errors_list(errors: &[(String, String)]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div class="error" role="alert" {
                ul { @for (field, why) in errors { li { strong { (field) } ": " (why) } } }
            }
        }
    }
}

/// The sign-in page.
pub fn login(f: &Frame<'_>, email: &str, error: Option<&str>, signup_open: bool) -> Markup {
    f.page(
        "Sign in",
        html! {
            @if let Some(e) = error { div class="error" role="alert" { (e) } }
            form method="post" action=(f.href("/login")) class="card narrow" {
                (f.csrf_input())
                label { "Email" input type="email" name="email" value=(email) required autocomplete="username"; }
                label { "Password" input type="password" name="password" required autocomplete="current-password"; }
                button type="submit" { "Sign in" }
            }
            @if signup_open {
                p { "No account yet? " a href=(f.href("/signup")) { "Create one" } }
            }
        },
    )
}

/// The sign-up page.
pub fn signup(f: &Frame<'_>, email: &str, name: &str, errors: &[(String, String)]) -> Markup {
    f.page(
        "Create account",
        html! {
            (errors_list(errors))
            form method="post" action=(f.href("/signup")) class="card narrow" {
                (f.csrf_input())
                label { "Email" input type="email" name="email" value=(email) required autocomplete="username"; }
                label { "Name" input type="text" name="name" value=(name) autocomplete="name"; }
                label { "Password (at least 8 characters)" input type="password" name="password" required minlength="8" autocomplete="new-password"; }
                button type="submit" { "Create account" }
            }
            p { "Already have an account? " a href=(f.href("/login")) { "Sign in" } }
        },
    )
}

/// What the keys page lists and offers.
pub struct KeysView<'a> {
    /// The keys shown.
    pub keys: &'a [KeyRecord],
    /// Owner ids to emails (admins see owners).
    pub owners: &'a BTreeMap<String, String>,
    /// Show the owner column and filter (admin).
    pub admin: bool,
    /// The admin's owner filter.
    pub filter: &'a str,
    /// Scopes the create form offers (`management.user_scopes`).
    pub scopes: &'a [String],
    /// What the create form was refused for.
    pub errors: &'a [(String, String)],
    /// The name typed into the refused form.
    pub name: &'a str,
}

fn status_badge(k: &KeyRecord, now: DateTime<Utc>) -> Markup {
    let expired = k.expires_at.is_some_and(|e| e <= now);
    html! {
        @match (k.status, expired) {
            (KeyStatus::Revoked, _) => span class="badge revoked" { "revoked" },
            (_, true) => span class="badge revoked" { "expired" },
            _ => span class="badge active" { "active" },
        }
    }
}

fn owner_label<'a>(owners: &'a BTreeMap<String, String>, k: &'a KeyRecord) -> &'a str {
    match &k.owner {
        Some(o) => owners.get(o).map_or(o.as_str(), String::as_str),
        None => "—",
    }
}

/// The keys page: the list and the create form.
pub fn keys(f: &Frame<'_>, v: &KeysView<'_>, now: DateTime<Utc>) -> Markup {
    f.page(
        "API keys",
        html! {
            section class="card" {
                h2 { "Create a key" }
                (errors_list(v.errors))
                form method="post" action=(f.href("/keys")) class="create" {
                    (f.csrf_input())
                    label { "Name" input type="text" name="name" value=(v.name) required maxlength="200" placeholder="e.g. Production server"; }
                    label { "Environment"
                        select name="environment" {
                            option value="live" selected { "live" }
                            option value="test" { "test" }
                        }
                    }
                    @if !v.scopes.is_empty() {
                        fieldset {
                            legend { "Scopes" }
                            @for s in v.scopes {
                                label class="check" { input type="checkbox" name="scopes" value=(s); (s) }
                            }
                        }
                    }
                    button type="submit" { "Create key" }
                }
            }
            @if v.admin {
                form method="get" action=(f.href("/keys")) class="filter" {
                    label { "Filter by owner" input type="search" name="owner" value=(v.filter) placeholder="email or user id"; }
                    button type="submit" class="secondary" { "Filter" }
                }
            }
            @if v.keys.is_empty() {
                p class="empty" { "No keys yet. Create one above; you will see it once, then only its last four characters." }
            } @else {
                table class="keys" {
                    thead { tr {
                        th { "Name" } th { "Key" }
                        @if v.admin { th { "Owner" } }
                        th { "Environment" } th { "Tier" } th { "Scopes" } th { "Status" }
                        th { "Created" } th { "Last used" } th { "" }
                    } }
                    tbody {
                        @for k in v.keys {
                            tr {
                                td { a href=(f.href(&format!("/keys/{}", k.id))) { (k.name) } }
                                td { code { (masked(k)) } }
                                @if v.admin { td { (owner_label(v.owners, k)) } }
                                td { (k.environment.as_str()) }
                                td { (k.tier) }
                                td { @if k.scopes.is_empty() { "—" } @else { (k.scopes.join(", ")) } }
                                td { (status_badge(k, now)) }
                                td { (when(&k.created_at)) }
                                td { (when_opt(&k.last_used_at, "never")) }
                                td class="actions" {
                                    @if k.status == KeyStatus::Active {
                                        form method="get" action=(f.href(&format!("/keys/{}/regenerate", k.id))) class="inline" {
                                            button type="submit" class="secondary" { "Regenerate" }
                                        }
                                        form method="get" action=(f.href(&format!("/keys/{}/revoke", k.id))) class="inline" {
                                            button type="submit" class="danger" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// How the API takes a key: the first of `api_keys.sources`, for the `curl`
/// example a new key's page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendKey {
    /// `header:NAME`.
    Header(String),
    /// `bearer`.
    Bearer,
    /// `query:NAME`.
    Query(String),
}

impl SendKey {
    /// The first source of `sources` (`X-API-Key` when none parses).
    pub fn of(sources: &[String]) -> Self {
        match sources.first().map(String::as_str) {
            Some("bearer") => SendKey::Bearer,
            Some(s) if s.starts_with("query:") => SendKey::Query(s[6..].to_string()),
            Some(s) if s.starts_with("header:") => SendKey::Header(s[7..].to_string()),
            _ => SendKey::Header("X-API-Key".into()),
        }
    }

    /// `curl -i` of `origin`'s root with `secret`.
    pub fn curl(&self, origin: &str, secret: &str) -> String {
        match self {
            SendKey::Header(name) => format!("curl -i -H '{name}: {secret}' {origin}/"),
            SendKey::Bearer => format!("curl -i -H 'Authorization: Bearer {secret}' {origin}/"),
            SendKey::Query(name) => format!("curl -i '{origin}/?{name}={secret}'"),
        }
    }
}

/// The one page that shows a whole key: after create or regenerate; with the
/// first call ready to paste when the origin is known (`try_it`).
pub fn new_key(
    f: &Frame<'_>,
    k: &KeyRecord,
    secret: &str,
    previous_valid_until: Option<DateTime<Utc>>,
    try_it: Option<&String>,
) -> Markup {
    f.page(
        "Your new API key",
        html! {
            div class="card secret" {
                p { "Copy your key now. It " strong { "will not be shown again" } ": keygate keeps only its hash." }
                div class="copy-row" {
                    input type="text" readonly id="new-key" class="key" value=(secret) aria-label="Your new API key";
                    button type="button" class="copy" data-copy="new-key" { "Copy" }
                }
                p class="hint" { "Send it in the " code { "X-API-Key" } " header, or as " code { "Authorization: Bearer …" } "." }
                @if let Some(until) = previous_valid_until {
                    p { "The previous key keeps working until " (when(&until)) "." }
                }
                dl {
                    dt { "Name" } dd { (k.name) }
                    dt { "Environment" } dd { (k.environment.as_str()) }
                    dt { "Tier" } dd { (k.tier) }
                    dt { "Scopes" } dd { @if k.scopes.is_empty() { "—" } @else { (k.scopes.join(", ")) } }
                }
                p { a href=(f.href(&format!("/keys/{}", k.id))) { "Go to this key's usage" } " · " a href=(f.href("/keys")) { "Back to your keys" } }
            }
            @if let Some(curl) = try_it {
                section class="card try" {
                    h2 { "Try it" }
                    p { "Your first call, ready to paste:" }
                    pre { code { (curl) } }
                    p class="hint" {
                        "Every answer carries " code { "X-RateLimit-Limit" } ", " code { "X-RateLimit-Remaining" }
                        " and " code { "X-RateLimit-Reset" } ": what your plan allows in its current window, what is left, and when it renews. "
                        "Over the limit you get " code { "429" } " with " code { "Retry-After" } "; a refused key gets " code { "401" } "."
                    }
                }
            }
        },
    )
}

/// The revoke confirmation step.
pub fn confirm_revoke(f: &Frame<'_>, k: &KeyRecord) -> Markup {
    f.page(
        "Revoke key",
        html! {
            div class="card narrow" {
                p { "Revoke " strong { (k.name) } " (" code { (masked(k)) } ")? Requests with it are refused at once, on every replica. This cannot be undone." }
                form method="post" action=(f.href(&format!("/keys/{}/revoke", k.id))) {
                    (f.csrf_input())
                    button type="submit" class="danger" { "Revoke key" }
                    " "
                    a href=(f.href("/keys")) { "Cancel" }
                }
            }
        },
    )
}

/// The regenerate step, with its grace period.
pub fn confirm_regenerate(f: &Frame<'_>, k: &KeyRecord) -> Markup {
    f.page(
        "Regenerate key",
        html! {
            div class="card narrow" {
                p { "Give " strong { (k.name) } " (" code { (masked(k)) } ") a new secret. Its id, scopes, tier and usage stay." }
                form method="post" action=(f.href(&format!("/keys/{}/regenerate", k.id))) {
                    (f.csrf_input())
                    label { "The current key stops working"
                        select name="grace_period" {
                            option value="0s" selected { "at once" }
                            option value="1h" { "in 1 hour" }
                            option value="24h" { "in 24 hours" }
                            option value="7d" { "in 7 days" }
                        }
                    }
                    button type="submit" { "Regenerate key" }
                    " "
                    a href=(f.href("/keys")) { "Cancel" }
                }
            }
        },
    )
}

/// A key's usage as the detail page shows it.
#[derive(Clone, Debug, Default)]
pub struct KeyUsage {
    /// The last 24 hours, oldest first.
    pub hourly: Vec<Bucket>,
    /// The last 30 days, oldest first.
    pub daily: Vec<Bucket>,
    /// Totals over 24 hours.
    pub day: Totals,
    /// Totals over 30 days.
    pub month: Totals,
    /// Busiest endpoints over 30 days, with their counts.
    pub top: Vec<(String, Totals)>,
}

/// One window of the key's tier, now.
pub struct WindowNow {
    /// `second`, `minute`, …
    pub window: &'static str,
    /// Its limit.
    pub limit: u64,
    /// What remains of it now.
    pub remaining: Option<u64>,
    /// Seconds until it resets.
    pub resets_in: Option<u64>,
}

/// An average response time as a person reads it: µs below a millisecond,
/// then ms, then s; `—` with no requests.
pub fn latency(t: &Totals) -> String {
    if t.total == 0 {
        return "—".into();
    }
    let ms = t.average_ms();
    match ms {
        ms if ms < 1.0 => format!("{:.0} µs", ms * 1000.0),
        ms if ms < 100.0 => format!("{ms:.2} ms"),
        ms if ms < 10_000.0 => format!("{ms:.0} ms"),
        ms => format!("{:.1} s", ms / 1000.0),
    }
}

/// Why requests failed, in words (`2 rate limited, 1 error from the API`);
/// empty with no failures.
pub fn failure_reasons(t: &Totals) -> String {
    if t.failed == 0 {
        return String::new();
    }
    let failed = Totals {
        successful: 0,
        ..*t
    };
    super::chart::describe(&failed)
}

/// The header of a [`totals_row`] table.
fn totals_head(first: &str) -> Markup {
    html! { thead { tr { th { (first) } th { "Requests" } th { "Successful" } th { "Failed" } th { "Average latency" } } } }
}

fn totals_row(label: &str, t: &Totals) -> Markup {
    html! { tr { th { (label) } (totals_cells(t)) } }
}

/// A row's counts and latency, each cell labelled for the stacked layout of
/// narrow screens.
fn totals_cells(t: &Totals) -> Markup {
    html! {
        td data-label="Requests" { (t.total) }
        td class="ok-text" data-label="Successful" { (t.successful) }
        @if t.failed == 0 {
            td class="none-failed" data-label="Failed" { "0" }
        } @else {
            td class="fail-text" data-label="Failed" {
                (t.failed) br; span class="reasons" { (failure_reasons(t)) }
            }
        }
        td class="latency" data-label="Average latency" { (latency(t)) }
    }
}

/// What the key detail page shows.
#[derive(Clone, Copy)]
pub struct KeyDetail<'a> {
    /// The key.
    pub key: &'a KeyRecord,
    /// Its owner's email (admins' view).
    pub owner: Option<&'a str>,
    /// The account's balance, when the key's tier pools per account.
    pub pooled: Option<Option<i64>>,
    /// Its windows now.
    pub windows: &'a [WindowNow],
    /// Its limits.
    pub limits: Option<&'a LimitsView>,
    /// Its usage.
    pub usage: &'a KeyUsage,
}

/// The key detail page: the key, its limits now, its usage.
pub fn key_detail(f: &Frame<'_>, v: &KeyDetail<'_>, now: DateTime<Utc>) -> Markup {
    let KeyDetail {
        key: k,
        owner,
        pooled,
        windows,
        limits,
        usage,
    } = *v;
    let refill = limits.and_then(|l| l.refill);
    let sliding = limits.is_some_and(|l| l.algorithm == Algorithm::Sliding);
    f.page(
        &k.name,
        html! {
            div class="card" {
                dl class="facts" {
                    dt { "Key" } dd { code { (masked(k)) } }
                    dt { "Status" } dd { (status_badge(k, now)) }
                    @if let Some(o) = owner { dt { "Owner" } dd { (o) } }
                    dt { "Environment" } dd { (k.environment.as_str()) }
                    dt { "Tier" } dd { (k.tier) }
                    dt { "Scopes" } dd { @if k.scopes.is_empty() { "—" } @else { (k.scopes.join(", ")) } }
                    @match pooled {
                        Some(balance) => {
                            dt { "Credits remaining" }
                            dd class="credits" {
                                @match balance { Some(c) => (c), None => "unmetered" }
                                " (" a href=(f.href("/account")) { "the account's" } ", shared by its keys)"
                            }
                        },
                        None => {
                            dt { "Credits remaining" } dd class="credits" { @match k.credits { Some(c) => (c), None => "unmetered" } }
                        },
                    }
                    @if let Some(r) = refill {
                        dt { "Credit refill" }
                        dd class="refill" {
                            (format!("back to {} every {}", r.amount, r.every))
                            @if let Some(at) = &k.refilled_at { " (last " (when(at)) ")" }
                        }
                    }
                    dt { "Created" } dd { (when(&k.created_at)) }
                    dt { "Last used" } dd { (when_opt(&k.last_used_at, "never")) }
                    dt { "Expires" } dd { (when_opt(&k.expires_at, "never")) }
                }
                @if k.status == KeyStatus::Active {
                    div class="actions" {
                        form method="get" action=(f.href(&format!("/keys/{}/regenerate", k.id))) class="inline" {
                            button type="submit" class="secondary" { "Regenerate" }
                        }
                        form method="get" action=(f.href(&format!("/keys/{}/revoke", k.id))) class="inline" {
                            button type="submit" class="danger" { "Revoke" }
                        }
                    }
                }
            }
            section class="card" {
                h2 { "Rate limits now" }
                @if sliding {
                    p class="algorithm" { "Sliding windows: a request counts against a window for that window's length after it is made, so no stretch of that length ever holds more than the limit." }
                }
                @if windows.is_empty() {
                    p { "This tier has no rate limits." }
                } @else {
                    table class="limits" {
                        thead { tr { th { "Window" } th { "Limit" } th { "Remaining" } th { "Resets in" } } }
                        tbody {
                            @for w in windows {
                                tr {
                                    td { (w.window) }
                                    td { (w.limit) }
                                    td class="remaining" { @match w.remaining { Some(r) => (r), None => "unknown" } }
                                    td { @match w.resets_in { Some(s) => (span_of(s)), None => "—" } }
                                }
                            }
                        }
                    }
                }
            }
            section class="card usage" {
                h2 { "Usage" }
                @if usage.month.total == 0 {
                    p class="empty" { "No requests with this key yet. Calls made with it show up here within a few seconds: how many, which paths, how fast, and why any failed." }
                }
                table class="totals" {
                    (totals_head(""))
                    tbody {
                        (totals_row("Last 24 hours", &usage.day))
                        (totals_row("Last 30 days", &usage.month))
                    }
                }
                (legend(&usage.month))
                h3 { "Requests per hour, last 24 hours (UTC)" }
                (bars("Requests per hour over the last 24 hours, UTC", &usage.hourly, 3))
                h3 { "Requests per day, last 30 days (UTC)" }
                (bars("Requests per day over the last 30 days, UTC", &usage.daily, 5))
                h3 { "Top endpoints, last 30 days" }
                @if usage.top.is_empty() {
                    p class="empty" { "No requests yet." }
                } @else {
                    table class="endpoints totals" {
                        (totals_head("Endpoint"))
                        tbody { @for (e, t) in &usage.top {
                            tr { td data-label="Endpoint" { code { (e) } } (totals_cells(t)) }
                        } }
                    }
                }
            }
        },
    )
}

/// What the admin overview shows.
pub struct OverviewView<'a> {
    /// Every key's requests per hour over 24 hours.
    pub hourly: &'a [Bucket],
    /// Totals over 24 hours.
    pub day: &'a Totals,
    /// Busiest keys over 24 hours: the key (if it still exists), its id, requests, failed.
    pub busiest: &'a [(Option<KeyRecord>, String, u64, u64)],
    /// Owner ids to emails.
    pub owners: &'a BTreeMap<String, String>,
    /// Requests by outcome, since this replica started.
    pub outcomes: &'a [(String, u64)],
    /// Refusals by reason, since this replica started.
    pub reasons: &'a [(String, u64)],
    /// The audit log's newest entries, newest first.
    pub audit: &'a [crate::domain::AuditEntry],
    /// The newest webhook deliveries, newest first.
    pub deliveries: &'a [crate::store::events::Delivery],
    /// How many webhook receivers are configured.
    pub receivers: usize,
}

/// The admin overview.
pub fn overview(f: &Frame<'_>, v: &OverviewView<'_>) -> Markup {
    f.page(
        "Overview",
        html! {
            section class="card" {
                h2 { "Requests, last 24 hours (every key)" }
                table class="totals" {
                    (totals_head(""))
                    tbody { (totals_row("Last 24 hours", v.day)) }
                }
                (legend(v.day))
                h3 { "Requests per hour (UTC)" }
                (bars("Requests per hour over the last 24 hours, every key, UTC", v.hourly, 3))
            }
            section class="card" {
                h2 { "Busiest keys, last 24 hours" }
                @if v.busiest.is_empty() {
                    p class="empty" { "No requests yet. Requests made with any key show here within a few seconds." }
                } @else {
                    table {
                        thead { tr { th { "Key" } th { "Owner" } th { "Requests" } th { "Failed" } } }
                        tbody {
                            @for (k, id, n, failed) in v.busiest {
                                tr {
                                    td { @match k {
                                        Some(k) => a href=(f.href(&format!("/keys/{}", k.id))) { (k.name) " " code { (masked(k)) } },
                                        None => code { (id) },
                                    } }
                                    td { @match k { Some(k) => (owner_label(v.owners, k)), None => "—" } }
                                    td { (n) }
                                    td { (failed) }
                                }
                            }
                        }
                    }
                }
            }
            div class="columns" {
                section class="card" {
                    h2 { "Requests by outcome" }
                    p class="hint" { "Since this replica started." }
                    (count_table("Outcome", v.outcomes))
                }
                section class="card" {
                    h2 { "Refusals by reason" }
                    p class="hint" { "Since this replica started." }
                    (count_table("Reason", v.reasons))
                }
            }
            @if v.receivers > 0 || !v.deliveries.is_empty() {
                section class="card" {
                    h2 { "Webhook deliveries" }
                    p class="hint" { "The newest attempts, newest first. A failed one is tried again, from 1 s to an hour apart, for 24 hours." }
                    (deliveries_table(v.deliveries))
                }
            }
            section class="card" {
                h2 { "Recent changes" }
                p class="hint" { "The audit log's newest entries. Every entry: " code { "GET /v1/audit" } " or " code { "keygate audit list" } "." }
                (audit_table(v.audit))
            }
        },
    )
}

/// Webhook deliveries as a table: when (UTC), to whom, which event, the attempt
/// and how it ended.
fn deliveries_table(deliveries: &[crate::store::events::Delivery]) -> Markup {
    use crate::store::events::Outcome;
    html! {
        @if deliveries.is_empty() {
            p class="empty" { "No deliveries yet. Events go out within a second of the change that makes them." }
        } @else {
            table class="totals deliveries" {
                thead { tr { th { "When (UTC)" } th { "Receiver" } th { "Event" } th { "Attempt" } th { "Result" } } }
                tbody {
                    @for d in deliveries {
                        tr {
                            td data-label="When (UTC)" { (d.at.format("%Y-%m-%d %H:%M:%S")) }
                            td data-label="Receiver" { code { (d.receiver) } }
                            td data-label="Event" { (d.kind) " " code { (d.event_id) } }
                            td data-label="Attempt" { (d.attempt) }
                            @match d.outcome {
                                Outcome::Delivered => td class="ok-text" data-label="Result" { "delivered" @if let Some(s) = d.status { " (" (s) ")" } },
                                Outcome::Failed => td class="fail-text" data-label="Result" { "failed: " (d.error.as_deref().unwrap_or("")) },
                                Outcome::GivenUp => td class="fail-text" data-label="Result" { "given up: " (d.error.as_deref().unwrap_or("")) },
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Audit entries as a table: when (UTC), who, from where, what, to what, which fields.
fn audit_table(entries: &[crate::domain::AuditEntry]) -> Markup {
    html! {
        @if entries.is_empty() {
            p class="empty" { "No changes yet. Keys, accounts and users changed from the API, the portal or the CLI show here." }
        } @else {
            table class="totals audit" {
                thead { tr { th { "When (UTC)" } th { "Who" } th { "From" } th { "What" } th { "Target" } th { "Fields" } } }
                tbody {
                    @for e in entries {
                        tr {
                            td data-label="When (UTC)" { (e.at.format("%Y-%m-%d %H:%M:%S")) }
                            td data-label="Who" { code { (e.origin.actor) } }
                            td data-label="From" { (e.origin.client_ip.as_deref().unwrap_or("—")) }
                            td data-label="What" { (e.action) }
                            td data-label="Target" { @if e.target.is_empty() { "—" } @else { code { (e.target) } } }
                            td data-label="Fields" { (e.fields.join(", ")) }
                        }
                    }
                }
            }
        }
    }
}

fn count_table(label: &str, rows: &[(String, u64)]) -> Markup {
    html! {
        @if rows.is_empty() {
            p class="empty" { "None yet." }
        } @else {
            table { thead { tr { th { (label) } th { "Requests" } } }
                tbody { @for (k, n) in rows { tr { td { (k) } td { (n) } } } } }
        }
    }
}

/// An error page: the status and the refusal's message.
pub fn error(f: &Frame<'_>, status: http::StatusCode, message: &str) -> Markup {
    let heading = status.canonical_reason().unwrap_or("Error");
    f.page(
        heading,
        html! {
            div class="card narrow" {
                p class="error" { (message) }
                p { a href=(f.href(if f.user.is_some() { "/keys" } else { "/login" })) { "Back to the portal" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::span_of;

    #[test]
    fn spans_read_like_a_person_would_say_them() {
        assert_eq!(span_of(5), "5 s");
        assert_eq!(span_of(65), "1 min 5 s");
        assert_eq!(span_of(22_985), "6 h 23 min");
        assert_eq!(span_of(2 * 86_400 + 4 * 3600), "2 d 4 h");
    }
}
