//! The `Keygate-Signature` header: Stripe's scheme, so receivers can reuse its
//! verification code. `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under
//! the receiver's secret; a receiver checks the MAC in constant time and refuses a
//! `t` too far from its own clock (a replay).

use aws_lc_rs::hmac;

/// The header's name.
pub const HEADER: &str = "Keygate-Signature";

/// The header's value for `body` sent at `t` (Unix seconds) under `secret`.
pub fn sign(secret: &[u8], t: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// True when `header` signs `body` under `secret` with a `t` within `tolerance`
/// seconds of `now` (what a receiver does; keygate's own tests use it).
pub fn verify(secret: &[u8], header: &str, body: &str, now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut macs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => macs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t.filter(|t| (now - t).abs() <= tolerance) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let signed = format!("{t}.{body}");
    macs.iter()
        .any(|m| hmac::verify(&key, signed.as_bytes(), m).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let h = sign(b"whsec_test_secret", 1_800_000_000, r#"{"id":"evt_1"}"#);
        assert!(h.starts_with("t=1800000000,v1="));
        assert!(verify(
            b"whsec_test_secret",
            &h,
            r#"{"id":"evt_1"}"#,
            1_800_000_100,
            300
        ));
        assert!(!verify(
            b"whsec_test_secret",
            &h,
            r#"{"id":"evt_2"}"#,
            1_800_000_100,
            300
        ));
        assert!(!verify(
            b"another_secret!!",
            &h,
            r#"{"id":"evt_1"}"#,
            1_800_000_100,
            300
        ));
        assert!(
            !verify(
                b"whsec_test_secret",
                &h,
                r#"{"id":"evt_1"}"#,
                1_800_001_000,
                300
            ),
            "a replay past the tolerance"
        );
    }

    #[test]
    fn the_mac_is_stripes_hmac_sha256_of_t_dot_body() {
        // Computed independently: printf '1.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign(b"key", 1, "{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
