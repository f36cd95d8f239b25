//! The management API's JSON bodies (`POST /keys`, `PUT /keys/{id}`): never a panic;
//! every refusal is a 4xx the contract defines, with a message.
#![no_main]

use keygate::management::keys::{parse_patch, CreateBody};
use keygate::management::Caller;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tiers = ["free", "pro"];
    let user = Caller {
        subject: "usr_1".into(),
        admin: data.len() % 2 == 1,
        key_id: None,
    };
    for result in [
        CreateBody::parse(data, &tiers, &user).map(|_| ()),
        parse_patch(data, &tiers).map(|_| ()),
    ] {
        if let Err(e) = result {
            let status = e.status().as_u16();
            assert!((400..500).contains(&status), "a body error answered {status}");
            assert!(!e.message().is_empty());
        }
    }
});
