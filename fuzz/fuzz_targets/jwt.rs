//! JWT verification (`shared::auth::TokenAuthority::verify`) on hostile tokens.
//!
//! Input, by its first byte:
//! - `m`: a token issued for a generated user, then mutated by the edits the rest of the
//!   bytes describe (bytes replaced, inserted, removed, bits flipped, truncation);
//! - `f`: a forged token, signed by a generated secret with HS256/384/512, or with
//!   `alg` `none` or anything else and generated signature bytes;
//! - anything else: the bytes themselves are the token.
//!
//! Checks: verification never panics; whatever it accepts — and whatever it calls
//! expired, which it may only say of a token with a good signature — is a three-part
//! token whose header says HS256 and whose signature is the HMAC-SHA256 of its first two
//! parts under the authority's secret, speaking for the `sub` and `exp` of its claims.
//! An issued token verifies as its user until it expires; a mutation of it that is not a
//! no-op is refused unless it leaves the signed parts as they were and the signature's
//! bytes as they were (base64's unused bits aside).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sha2::Sha256;
use shared::auth::{AuthError, Identity, TokenAuthority};
use shared::domain::UserId;

const SECRET: &[u8] = b"docfan-fuzz-secret-0123456789abcdef";

/// Reads base64url with or without padding and with any unused trailing bits: every
/// spelling a lenient verifier might take for the same bytes.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_718_000_000, 0).unwrap()
}

fn authority() -> &'static TokenAuthority {
    static AUTHORITY: std::sync::OnceLock<TokenAuthority> = std::sync::OnceLock::new();
    AUTHORITY.get_or_init(|| TokenAuthority::new(SECRET).unwrap())
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((b'm', rest)) => {
            let _ = mutated(&mut Unstructured::new(rest));
        }
        Some((b'f', rest)) => {
            let _ = forged(&mut Unstructured::new(rest));
        }
        _ => {
            let _ = verify(&String::from_utf8_lossy(data));
        }
    }
});

/// The authority's verdict on `token` at `at`. With a shared secret verification never
/// waits, so its future is ready at the first poll.
fn verdict(token: &str, at: DateTime<Utc>) -> Result<Identity, AuthError> {
    use std::task::{Context, Poll, Waker};
    let mut verifying = std::pin::pin!(authority().verify(token, at));
    match verifying
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => panic!("HS256 verification waited"),
    }
}

/// Verifies `token` at [`now`] and checks that what it accepts is genuine.
fn verify(token: &str) -> Result<Identity, AuthError> {
    let outcome = verdict(token, now());
    match &outcome {
        Ok(identity) => {
            let exp = check_genuine(token);
            assert_eq!(identity.expires_at.timestamp(), exp);
            assert!(identity.expires_at > now());
        }
        Err(AuthError::Expired) => {
            let exp = check_genuine(token);
            assert!(
                exp <= now().timestamp(),
                "only a token past its exp is expired"
            );
        }
        Err(AuthError::Missing) => assert!(token.is_empty()),
        Err(AuthError::Invalid(why)) => assert!(!why.is_empty()),
        Err(AuthError::Unavailable(why)) => panic!("a shared secret is always at hand: {why}"),
    }
    outcome
}

/// Panics unless `token` is an HS256 token signed with [`SECRET`]; returns its `exp`.
fn check_genuine(token: &str) -> i64 {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        panic!("accepted a token of {} parts: {token:?}", parts.len());
    };
    let header: Value =
        serde_json::from_slice(&LENIENT.decode(header).expect("header is base64url"))
            .expect("header is JSON");
    assert_eq!(
        header["alg"], "HS256",
        "accepted a token signed with another algorithm"
    );
    let signature = LENIENT.decode(signature).expect("signature is base64url");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(&token.as_bytes()[..token.rfind('.').unwrap()]);
    assert_eq!(
        &mac.finalize().into_bytes()[..],
        signature.as_slice(),
        "accepted a token not signed with the authority's secret: {token:?}"
    );
    let claims: Value =
        serde_json::from_slice(&LENIENT.decode(claims).expect("claims are base64url"))
            .expect("claims are JSON");
    claims["exp"].as_i64().expect("exp is an integer")
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set(u16, u8),
    Insert(u16, u8),
    Remove(u16),
    FlipBit(u16, u8),
    Truncate(u16),
}

fn mutated(u: &mut Unstructured) -> arbitrary::Result<()> {
    let raw: String = u.arbitrary()?;
    let user: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-@:+".contains(*c))
        .take(shared::domain::MAX_USER_ID_LEN)
        .collect();
    let user = UserId::parse(if user.is_empty() {
        "ann".to_owned()
    } else {
        user
    })
    .unwrap();
    let ttl = TimeDelta::seconds(u.int_in_range(1..=10_000_000)?);
    let token = authority().issue(&user, ttl, now());
    let identity = verify(&token).expect("an issued token verifies");
    assert_eq!(
        identity,
        Identity {
            user,
            expires_at: now() + ttl
        }
    );
    assert_eq!(
        verdict(&token, now() + ttl),
        Err(AuthError::Expired),
        "an issued token expires at its exp"
    );

    let mut bytes = token.clone().into_bytes();
    for _ in 0..u.int_in_range(1..=4)? {
        let edit: Edit = u.arbitrary()?;
        let at = |i: u16, len: usize| usize::from(i) % len.max(1);
        match edit {
            Edit::Set(i, b) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes[i] = b;
            }
            Edit::Insert(i, b) => {
                let i = at(i, bytes.len() + 1);
                bytes.insert(i, b);
            }
            Edit::Remove(i) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes.remove(i);
            }
            Edit::FlipBit(i, bit) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes[i] ^= 1 << (bit % 8);
            }
            Edit::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
            _ => {}
        }
    }
    let mangled = String::from_utf8_lossy(&bytes);
    if mangled == token {
        return Ok(());
    }
    if let Ok(accepted) = verify(&mangled) {
        let signed = |t: &str| t[..t.rfind('.').unwrap()].to_owned();
        assert_eq!(
            signed(&mangled),
            signed(&token),
            "a mutation of the signed parts was accepted"
        );
        assert_eq!(accepted, identity);
    }
    Ok(())
}

fn forged(u: &mut Unstructured) -> arbitrary::Result<()> {
    let sub = if u.arbitrary()? {
        json!("ann")
    } else {
        docfan_fuzz::json_value(u, &["ann"], 1)?
    };
    let exp = if u.arbitrary()? {
        json!(now().timestamp() + i64::from(u.arbitrary::<u16>()?))
    } else {
        docfan_fuzz::json_value(u, &[], 1)?
    };
    let mut claims = json!({"sub": sub, "exp": exp});
    if u.ratio(1, 4)? {
        claims["aud"] = docfan_fuzz::json_value(u, &[], 1)?;
    }
    let token = match u.int_in_range(0..=3)? {
        algorithm @ 0..=2 => {
            let secret: Vec<u8> = u.arbitrary()?;
            let algorithm = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512][algorithm];
            jsonwebtoken::encode(
                &Header::new(algorithm),
                &claims,
                &EncodingKey::from_secret(&secret),
            )
            .expect("HMAC signing cannot fail")
        }
        _ => {
            let alg: String = if u.arbitrary()? {
                "none".into()
            } else {
                u.arbitrary()?
            };
            let header = json!({"alg": alg, "typ": "JWT"});
            let signature: Vec<u8> = u.arbitrary()?;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.{}",
                b64.encode(header.to_string()),
                b64.encode(claims.to_string()),
                b64.encode(signature)
            )
        }
    };
    // Only a secret HMAC-equivalent to the authority's could make this verify, and then
    // `verify` checks that the signature is genuine.
    let _ = verify(&token);
    Ok(())
}
