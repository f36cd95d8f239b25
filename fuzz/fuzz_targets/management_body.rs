//! The management API's JSON bodies (`POST /keys`, `PUT /keys/{id}`) and the key
//! rules applied to them: never a panic; every refusal is a 4xx the contract
//! defines, with a message.
#![no_main]

use keygate::error::GateError;
use keygate::keys::policy::{self, Grants};
use keygate::management::keys::{parse_patch, CreateBody};
use keygate::management::Caller;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tiers = ["free", "pro"];
    let user = Caller {
        subject: "usr_1".into(),
        admin: data.len() % 2 == 1,
        key_id: (data.len() % 3 == 0).then(|| "key_1".to_string()),
        org: None,
        scopes: vec!["keys:manage".into(), "search".into()],
    };
    let scopes = ["search".to_string()];
    let grants = Grants {
        user_scopes: &scopes,
        user_tier: "free",
    };
    let created = CreateBody::parse(data, &tiers).and_then(|body| {
        policy::admit_create(user.actor(), &grants, &user.subject, "free", body.request)
            .map(drop)
            .map_err(GateError::from)
    });
    for result in [created, parse_patch(data, &tiers).map(drop)] {
        if let Err(e) = result {
            let status = e.status().as_u16();
            assert!((400..500).contains(&status), "a body error answered {status}");
            assert!(!e.message().is_empty());
        }
    }
});
