#!/usr/bin/env python3
"""Writes keygate.json, the OpenAPI 3 document of keygate's management API.
Edit this file, run it, commit both (a test checks they agree)."""
import json, os, sys

def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}

def nullable(schema):
    return {**schema, "nullable": True}

def err(desc):
    return {"description": desc, "content": {"application/json": {"schema": ref("Error")}}}

def ok(desc, schema):
    return {"description": desc, "content": {"application/json": {"schema": schema}}}

def body(schema):
    return {"required": True, "content": {"application/json": {"schema": schema}}}

COMMON = {
    "400": err("Malformed JSON, a body that is not an object, or a malformed path"),
    "401": err("Missing, invalid, expired or revoked credential"),
    "403": err("The credential lacks the scope this needs, or may not set a field it sent: "
               "only an admin sets tier, credits, expiry, org, owner or scopes outside "
               "management.user_scopes (`details` names each field)"),
    "408": err("The request body did not arrive within server.body_timeout"),
    "413": err("Body larger than 64 KiB"),
    "422": err("Field errors; `details` names each field"),
    "429": err("Too many requests from this IP, or too many failed logins"),
    "503": err("The store is unavailable, or password hashing is at capacity (Retry-After)"),
}

def responses(success, *codes):
    r = dict(success)
    for c in codes:
        r[c] = {"404": err("No such key, or not yours"), "405": err("Method not allowed"),
                "409": err("Conflicts with the current state (max_keys reached, revoked key)")}.get(c) or COMMON[c]
    return r

KEY_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
SECURED = [{"bearer": []}, {"apiKey": []}]

key_props = {
    "id": {"type": "string"}, "name": {"type": "string"}, "prefix": {"type": "string"},
    "last4": {"type": "string"}, "tier": {"type": "string"},
    "scopes": {"type": "array", "items": {"type": "string"}},
    "environment": {"type": "string", "enum": ["live", "test"]},
    "org": nullable({"type": "string"}), "owner": nullable({"type": "string"}),
    "account": nullable({"type": "string", "description": "The account the key belongs to"}),
    "cap": {"allOf": [ref("Cap")], "nullable": True,
            "description": "The key's own cap below its account's windows (pool: account tiers)"},
    "status": {"type": "string", "enum": ["active", "revoked"]},
    "credits": nullable({"type": "integer", "minimum": 0}),
    "allowed_ips": {"type": "array", "items": {"type": "string"}},
    "expires_at": nullable({"type": "string", "format": "date-time"}),
    "created_at": {"type": "string", "format": "date-time"},
    "last_used_at": nullable({"type": "string", "format": "date-time"}),
    "refill": {"allOf": [ref("Refill")], "nullable": True,
               "description": "The credit refill in force: the key's own, else its tier's"},
    "refilled_at": nullable({"type": "string", "format": "date-time",
                             "description": "Start of the period the credits were last refilled in"}),
    "limits": {"allOf": [ref("Limits")], "nullable": True,
               "description": "The limits the key is held to (null: its tier is no longer configured)"},
}
key_required = list(key_props)

REFILL_IN = {"allOf": [ref("Refill")], "nullable": True,
             "description": "The key's own credit refill, overriding its tier's (null: the tier's). Admin only."}

doc = {
    "openapi": "3.0.3",
    "info": {"title": "keygate management API", "version": "1",
             "description": "Served by keygate under management.prefix (default /v1); never proxied."},
    "servers": [{"url": "/v1"}],
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error", "message", "details"], "properties": {
                "error": {"type": "string"}, "message": {"type": "string"},
                "details": {"type": "object"}, "retry_after": {"type": "integer"}}},
            "Refill": {"type": "object", "required": ["amount", "every"], "additionalProperties": False,
                       "description": "Credits reset to `amount` once per period: `day` (00:00 UTC), `month` "
                                      "(the first, 00:00 UTC) or a duration such as `7d` (multiples since the epoch)",
                       "properties": {"amount": {"type": "integer", "minimum": 0},
                                      "every": {"type": "string", "example": "month"}}},
            "Limits": {"type": "object", "required": ["algorithm", "block_seconds", "refill"], "additionalProperties": False,
                       "properties": {"algorithm": {"type": "string", "enum": ["fixed", "sliding"]},
                                      **{w: {"type": "integer", "minimum": 1} for w in
                                         ["per_second", "per_minute", "per_hour", "per_day", "per_month"]},
                                      "block_seconds": {"type": "integer", "minimum": 0},
                                      "refill": {"allOf": [ref("Refill")], "nullable": True}}},
            "Key": {"type": "object", "required": key_required, "properties": key_props, "additionalProperties": False},
            "KeyWithSecret": {"type": "object", "required": key_required + ["key"], "additionalProperties": False,
                              "properties": {**key_props, "key": {"type": "string"},
                                             "previous_key_valid_until": nullable({"type": "string", "format": "date-time"})}},
            "RevokedKey": {"type": "object", "required": key_required + ["revoked_at"], "additionalProperties": False,
                           "properties": {**key_props, "revoked_at": {"type": "string", "format": "date-time"}}},
            "KeyList": {"type": "object", "required": ["api_keys", "total", "next_cursor"], "properties": {
                "api_keys": {"type": "array", "items": ref("Key")}, "total": {"type": "integer", "minimum": 0},
                "next_cursor": nullable({"type": "string", "description": "The next page's cursor (null: the last page)"})}},
            "NewKey": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "tier": {"type": "string", "description": "Default: default_tier (the only tier a non-admin may name)"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "environment": {"type": "string", "enum": ["live", "test"]},
                "expires_at": nullable({"type": "string", "format": "date-time"}),
                "credits": nullable({"type": "integer", "minimum": 0}),
                "refill": REFILL_IN,
                "allowed_ips": {"type": "array", "items": {"type": "string"}},
                "org": {"type": "string"}, "owner": {"type": "string"},
                "account": {"type": "string", "pattern": "^([A-Za-z0-9_-]{1,64}|[^@ ]+@[^@ ]+)$",
                            "description": "The account it joins: an id (made on first use) "
                            "or a user's email. Admin only; a user's keys join their own account"},
                "cap": {"allOf": [ref("Cap")], "nullable": True, "description": "Admin only"}}},
            "KeyUpdate": {"type": "object", "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "tier": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "credits": nullable({"type": "integer", "minimum": 0}),
                "refill": REFILL_IN,
                "allowed_ips": {"type": "array", "items": {"type": "string"}},
                "expires_at": nullable({"type": "string", "format": "date-time"}),
                "cap": {"allOf": [ref("Cap")], "nullable": True, "description": "Admin only; null removes it"}}},
            "Regenerate": {"type": "object", "additionalProperties": False, "properties": {
                "grace_period": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}}},
            "FailedByReason": {"type": "object", "required": ["rate_limited", "no_credits", "refused", "api_error"],
                               "description": "Failed requests by why: refused by a rate limit (429), for want of "
                                              "credits (402), by keygate for another reason, or answered 4xx/5xx "
                                              "(or not at all) by the API; unclassified: failures counted before "
                                              "keygate kept reasons",
                               "properties": {"rate_limited": {"type": "integer"}, "no_credits": {"type": "integer"},
                                              "refused": {"type": "integer"}, "api_error": {"type": "integer"},
                                              "unclassified": {"type": "integer"}}},
            "Usage": {"type": "object", "required": ["key_id", "period", "since", "total_requests", "successful_requests",
                                                      "failed_requests", "failed_by_reason", "average_response_ms",
                                                      "top_endpoints", "hourly"],
                      "properties": {
                "key_id": {"type": "string"}, "period": {"type": "string", "enum": ["hour", "day", "week", "month"]},
                "since": {"type": "string", "format": "date-time"},
                "total_requests": {"type": "integer"}, "successful_requests": {"type": "integer"},
                "failed_requests": {"type": "integer"}, "failed_by_reason": ref("FailedByReason"),
                "average_response_ms": {"type": "number", "description": "To the microsecond (3 decimals)"},
                "top_endpoints": {"type": "array", "items": {"type": "object",
                    "required": ["endpoint", "requests", "failed", "average_response_ms"],
                    "properties": {"endpoint": {"type": "string",
                                                "description": "The path called, without its query; segments that "
                                                               "name one thing (numbers, UUIDs, long tokens) read {id}"},
                                   "requests": {"type": "integer"}, "failed": {"type": "integer"},
                                   "average_response_ms": {"type": "number"}}}},
                "hourly": {"type": "array", "items": {"type": "object",
                    "required": ["hour", "requests", "successful", "failed", "failed_by_reason", "average_response_ms"],
                    "properties": {"hour": {"type": "string", "format": "date-time"}, "requests": {"type": "integer"},
                                   "successful": {"type": "integer"}, "failed": {"type": "integer"},
                                   "failed_by_reason": ref("FailedByReason"),
                                   "average_response_ms": {"type": "number"}}}}}},
            "Verify": {"type": "object", "required": ["valid", "key_id", "tier", "scopes", "environment", "credits_remaining"],
                       "properties": {"valid": {"type": "boolean"}, "key_id": {"type": "string"}, "tier": {"type": "string"},
                                      "scopes": {"type": "array", "items": {"type": "string"}},
                                      "environment": {"type": "string", "enum": ["live", "test"]},
                                      "credits_remaining": nullable({"type": "integer"}),
                                      "refilled_at": nullable({"type": "string", "format": "date-time"}),
                                      "limits": {"allOf": [ref("Limits")], "nullable": True},
                                      "user_id": nullable({"type": "string", "description": "The key's owner; pool: account: the account's user (its id when it has none)"}),
                                      "account_id": nullable({"type": "string", "description": "The key's account"})}},
            "Credits": {"type": "object", "required": ["credits"], "properties": {
                "credits": nullable({"type": "integer"}), "key_id": {"type": "string"},
                "user_id": nullable({"type": "string", "description": "The key's owner; pool: account: the account's user (its id when it has none)"}),
                "account_id": nullable({"type": "string", "description": "The key's account"})}},
            "Cap": {"type": "object", "additionalProperties": False, "properties": {
                w: {"type": "integer", "minimum": 1} for w in
                ["per_second", "per_minute", "per_hour", "per_day", "per_month"]}},
            "Overrides": {"type": "object", "additionalProperties": False, "properties": {
                **{w: {"type": "integer", "minimum": 1} for w in
                   ["per_second", "per_minute", "per_hour", "per_day", "per_month"]},
                "max_keys": {"type": "integer", "minimum": 0}, "refill": ref("Refill")}},
            "Account": {"type": "object",
                        "required": ["id", "plan", "status", "overrides", "credits", "metadata", "owner", "created_at"],
                        "properties": {
                "id": {"type": "string"}, "plan": {"type": "string"},
                "status": {"type": "string", "enum": ["active", "suspended"]},
                "overrides": ref("Overrides"),
                "credits": nullable({"type": "integer", "minimum": 0, "description": "The pooled balance (null: unmetered)"}),
                "refilled_at": nullable({"type": "string", "format": "date-time"}),
                "metadata": {"type": "object", "description": "Free-form, at most 4 KiB"},
                "owner": nullable({"type": "string", "description": "The user whose own account it is"}),
                "created_at": {"type": "string", "format": "date-time"},
                "keys": {"type": "array", "items": ref("Key")},
                "warnings": {"type": "array", "items": {"type": "string"}}}},
            "AccountList": {"type": "object", "required": ["accounts", "next_cursor"], "properties": {
                "accounts": {"type": "array", "items": ref("Account")}, "next_cursor": nullable({"type": "string"})}},
            "AccountUpdate": {"type": "object", "additionalProperties": False, "properties": {
                "plan": {"type": "string"}, "status": {"type": "string", "enum": ["active", "suspended"]},
                "overrides": {"allOf": [ref("Overrides")], "nullable": True}, "metadata": {"type": "object"}}},
            "AccountCredits": {"type": "object", "additionalProperties": False, "properties": {
                "add": {"type": "integer", "description": "An increment (negative takes away, never below 0)"},
                "set": nullable({"type": "integer", "minimum": 0})}},
            "Login": {"type": "object", "required": ["email", "password"], "additionalProperties": False, "properties": {
                "email": {"type": "string"}, "password": {"type": "string"}}},
            "Register": {"type": "object", "required": ["email", "password"], "additionalProperties": False, "properties": {
                "email": {"type": "string"}, "password": {"type": "string", "minLength": 8}, "name": {"type": "string"}}},
            "Refresh": {"type": "object", "required": ["refresh_token"], "additionalProperties": False, "properties": {
                "refresh_token": {"type": "string"}}},
            "TokenPair": {"type": "object", "required": ["access_token", "refresh_token", "expires_in", "token_type"], "properties": {
                "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
                "expires_in": {"type": "integer"}, "token_type": {"type": "string", "enum": ["Bearer"]},
                "user": {"type": "object", "required": ["id", "email", "name"], "properties": {
                    "id": {"type": "string"}, "email": {"type": "string"}, "name": nullable({"type": "string"})}}}},
            "User": {"type": "object", "required": ["id", "email", "name", "is_admin", "disabled", "created_at"], "properties": {
                "id": {"type": "string"}, "email": {"type": "string"}, "name": nullable({"type": "string"}),
                "is_admin": {"type": "boolean"}, "disabled": {"type": "boolean"},
                "created_at": {"type": "string", "format": "date-time"}}},
            "AuditEntry": {"type": "object",
                           "required": ["id", "at", "actor", "action", "target", "client_ip", "request_id", "fields"],
                           "properties": {
                "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                "actor": {"type": "string", "description": "A key id, a user id, cli, or anonymous"},
                "action": {"type": "string", "enum": ["key.created", "key.updated", "key.revoked", "key.regenerated",
                                                        "keys.imported",
                                                        "account.updated", "account.credits_changed",
                                                        "user.created", "user.disabled", "user.enabled",
                                                        "user.deleted", "user.password_changed",
                                                        "user.password_reset", "user.reset_link_issued",
                                                        "auth.sign_in_failed", "auth.refresh_reuse"]},
                "target": {"type": "string",
                           "description": "A key, account or user id; for keys.imported, \"N keys\"; empty for a failed sign-in naming nobody"},
                "client_ip": nullable({"type": "string"}), "request_id": nullable({"type": "string"}),
                "fields": {"type": "array", "items": {"type": "string"},
                           "description": "The names of the fields the change set, never their values"}}},
            "AuditPage": {"type": "object", "required": ["entries", "next_before"], "properties": {
                "entries": {"type": "array", "items": ref("AuditEntry")},
                "next_before": nullable({"type": "integer"})}},
            "UserList": {"type": "object", "required": ["users", "next_cursor"], "properties": {
                "users": {"type": "array", "items": ref("User")}, "next_cursor": nullable({"type": "string"})}},
            "UserUpdate": {"type": "object", "required": ["disabled"], "additionalProperties": False, "properties": {
                "disabled": {"type": "boolean"}}},
            "ResetLink": {"type": "object", "required": ["user_id", "reset_url", "expires_at"], "properties": {
                "user_id": {"type": "string"}, "reset_url": {"type": "string", "description": "The portal's page: works once"},
                "expires_at": {"type": "string", "format": "date-time"}}},
        },
    },
    "paths": {
        "/auth/register": {"post": {"summary": "Register (registration: open)", "security": [], "requestBody": body(ref("Register")),
            "responses": responses({"201": ok("The new user", ref("User"))}, "400", "403", "409", "408", "413", "422", "429", "503")}},
        "/auth/token": {"post": {"summary": "Log in: an access JWT and a refresh token", "security": [], "requestBody": body(ref("Login")),
            "responses": responses({"200": ok("A token pair", ref("TokenPair"))}, "400", "401", "404", "408", "413", "422", "429", "503")}},
        "/auth/refresh": {"post": {"summary": "Rotate a refresh token", "security": [], "requestBody": body(ref("Refresh")),
            "responses": responses({"200": ok("A new token pair", ref("TokenPair"))}, "400", "401", "404", "408", "413", "422", "429", "503")}},
        "/keys": {
            "post": {"summary": "Create a key (the secret is shown only here)", "security": SECURED, "requestBody": body(ref("NewKey")),
                     "responses": responses({"201": ok("The new key and its secret", ref("KeyWithSecret"))},
                                            "400", "401", "403", "409", "408", "413", "422", "429", "503")},
            "get": {"summary": "List keys (never their secrets), newest first; with limit or cursor, one page",
                    "security": SECURED,
                    "parameters": [{"name": "limit", "in": "query", "required": False,
                                    "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                                   {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}}],
                    "responses": responses({"200": ok("Keys", ref("KeyList"))}, "400", "401", "403", "422", "429", "503")}},
        "/keys/import": {"post": {"summary": "Import existing keys (admins): JSON Lines, all or nothing", "security": SECURED,
            "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"},
                "example": '{"key": "ak_live_...", "id": "cust_42", "tier": "pro"}\n{"hash": "sha256:9f86d0..."}\n'}}},
            "responses": responses({"200": ok("How many keys were imported", {"type": "object", "required": ["imported"],
                                                                            "properties": {"imported": {"type": "integer"}}})},
                                   "400", "401", "403", "408", "413", "422", "429", "503")}},
        "/keys/first": {"post": {"summary": "The caller's first key: made once, while they hold no active key",
                     "security": SECURED, "requestBody": body(ref("NewKey")),
                     "responses": responses({"201": ok("The new key and its secret", ref("KeyWithSecret"))},
                                            "400", "401", "403", "409", "408", "413", "422", "429", "503")}},
        "/keys/verify": {"post": {"summary": "The caller's own key", "security": [{"apiKey": []}],
            "responses": responses({"200": ok("The key", ref("Verify"))}, "400", "401", "413", "429", "503")}},
        "/keys/{id}": {
            "parameters": [KEY_ID],
            "get": {"summary": "One key", "security": SECURED,
                    "responses": responses({"200": ok("The key", ref("Key"))}, "400", "401", "403", "404", "429", "503")},
            "put": {"summary": "Update name, tier, scopes, credits, allowed IPs, expiry", "security": SECURED,
                    "requestBody": body(ref("KeyUpdate")),
                    "responses": responses({"200": ok("The updated key", ref("Key"))},
                                           "400", "401", "403", "404", "409", "408", "413", "422", "429", "503")},
            "delete": {"summary": "Revoke (immediate)", "security": SECURED,
                       "responses": responses({"200": ok("The revoked key", ref("RevokedKey"))}, "400", "401", "403", "404", "429", "503")}},
        "/keys/{id}/regenerate": {"parameters": [KEY_ID], "post": {
            "summary": "New secret, same id and settings", "security": SECURED, "requestBody": body(ref("Regenerate")),
            "responses": responses({"200": ok("The key and its new secret", ref("KeyWithSecret"))},
                                   "400", "401", "403", "404", "409", "408", "413", "422", "429", "503")}},
        "/keys/{id}/usage": {"parameters": [KEY_ID], "get": {
            "summary": "Usage statistics", "security": SECURED,
            "parameters": [{"name": "period", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["hour", "day", "week", "month"]}}],
            "responses": responses({"200": ok("Usage", ref("Usage"))}, "400", "401", "403", "404", "422", "429", "503")}},
        "/credits": {"get": {"summary": "The caller's key's credits (its account's on a pool: account tier)",
            "security": [{"apiKey": []}],
            "responses": responses({"200": ok("Credits", ref("Credits"))}, "400", "401", "429", "503")}},
        "/accounts": {"get": {"summary": "List accounts (admins), in id order", "security": SECURED,
            "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                           for n in ["email", "org", "plan", "status", "cursor"]]
                          + [{"name": "limit", "in": "query", "required": False,
                              "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
            "responses": responses({"200": ok("A page of accounts", ref("AccountList"))}, "400", "401", "403", "422", "429", "503")}},
        "/accounts/{id}": {
            "parameters": [KEY_ID],
            "get": {"summary": "One account with its keys (admins, or its own user)", "security": SECURED,
                    "responses": responses({"200": ok("The account", ref("Account"))}, "400", "401", "403", "404", "429", "503")},
            "put": {"summary": "Change plan, status, overrides, metadata (admins)", "security": SECURED,
                    "requestBody": body(ref("AccountUpdate")),
                    "responses": responses({"200": ok("The account", ref("Account"))},
                                           "400", "401", "403", "404", "408", "413", "422", "429", "503")}},
        "/accounts/{id}/credits": {"parameters": [KEY_ID], "post": {
            "summary": "Add to or set the pooled balance (admins)", "security": SECURED,
            "requestBody": body(ref("AccountCredits")),
            "responses": responses({"200": ok("The account", ref("Account"))},
                                   "400", "401", "403", "404", "408", "413", "422", "429", "503")}},
        "/users": {"get": {"summary": "List users (admins), in id order", "security": SECURED,
            "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                           for n in ["email", "cursor"]]
                          + [{"name": "limit", "in": "query", "required": False,
                              "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
            "responses": responses({"200": ok("A page of users", ref("UserList"))}, "400", "401", "403", "404", "422", "429", "503")}},
        "/users/{id}": {
            "parameters": [KEY_ID],
            "put": {"summary": "Disable or enable a user (admins): a disabled user's keys are refused, sessions ended",
                    "security": SECURED, "requestBody": body(ref("UserUpdate")),
                    "responses": responses({"200": ok("The user", ref("User"))},
                                           "400", "401", "403", "404", "408", "409", "413", "422", "429", "503")},
            "delete": {"summary": "Delete a user (admins): their keys revoked, their account suspended",
                       "security": SECURED,
                       "responses": responses({"200": ok("Deleted", {"type": "object", "required": ["id", "deleted"],
                           "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}})},
                           "400", "401", "403", "404", "409", "429", "503")}},
        "/users/{id}/password-reset": {"parameters": [KEY_ID], "post": {
            "summary": "A one-time password-reset link for the portal (admins); nothing is mailed",
            "security": SECURED,
            "responses": responses({"200": ok("The link", ref("ResetLink"))}, "400", "401", "403", "404", "409", "429", "503")}},
        "/audit": {"get": {"summary": "The audit log (admins), newest first: every change to a key, an account or a user, "
                                      "with who made it, from where, and the fields it set",
            "security": SECURED,
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                           {"name": "before", "in": "query", "required": False,
                            "description": "Entries older than this entry's id (the next page)",
                            "schema": {"type": "integer", "minimum": 1}}],
            "responses": responses({"200": ok("A page of the log", ref("AuditPage"))},
                                   "400", "401", "403", "422", "429", "503")}},
        "/account": {"get": {"summary": "The caller's own account", "security": SECURED,
            "responses": responses({"200": ok("The account", ref("Account"))}, "400", "401", "403", "429", "503")}},
    },
}

import sys
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "keygate.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
