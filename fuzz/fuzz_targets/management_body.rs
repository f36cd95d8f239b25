//! The management API's JSON bodies (`POST /keys`, `PUT /keys/{id}`) through the
//! door and the key rules behind it: never a panic; every refusal is a 4xx the
//! contract defines, with a message.
#![no_main]

use keygate::error::GateError;
use keygate::keys::input::{validate_change, validate_new};
use keygate::keys::policy::{self, Actor, Grants, Role};
use keygate::management::keys::{parse_change, parse_create};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tiers = ["free", "pro"];
    let now = chrono::Utc::now();
    let held = vec!["keys:manage".to_string(), "search".to_string()];
    let role = match data.len() % 3 {
        0 => Role::Admin,
        1 => Role::User,
        _ => Role::Key { scopes: &held },
    };
    let actor = Actor {
        role,
        subject: Some("usr_1"),
        org: None,
        account: None,
        origin: None,
        credential: Some("key_1"),
    };
    let scopes = ["search".to_string()];
    let grants = Grants {
        user_scopes: &scopes,
        user_tier: "free",
    };
    let created = parse_create(data, &tiers, now).and_then(|input| {
        let valid = validate_new(&input, &tiers, now)
            .map_err(|e| GateError::Validation(e.into_iter().map(|(k, v)| (k, v.into())).collect()))?;
        let request = policy::CreateRequest {
            tier: valid.tier,
            scopes: valid.scopes,
            credits: valid.credits,
            refill: valid.refill,
            expires_at: valid.expires_at,
            org: valid.org,
            owner: valid.owner,
            cap: valid.cap.is_some(),
        };
        policy::admit_create(&actor, &grants, "free", request)
            .map(drop)
            .map_err(GateError::from)
    });
    let changed = parse_change(data, &tiers, now).and_then(|change| {
        validate_change(&change, &tiers, now)
            .map(drop)
            .map_err(|e| GateError::Validation(e.into_iter().map(|(k, v)| (k, v.into())).collect()))
    });
    for result in [created, changed] {
        if let Err(e) = result {
            let status = e.status().as_u16();
            assert!((400..500).contains(&status), "a body error answered {status}");
            assert!(!e.message().is_empty());
        }
    }
});
