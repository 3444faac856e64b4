//! TOTP (RFC 6238): HMAC-SHA1, 6 digits, 30-second steps, one step of tolerated clock skew.

use aws_lc_rs::hmac;
use usher_core::Rng;

/// Length of a TOTP secret in bytes (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// A fresh TOTP secret.
pub fn generate_secret(rng: &dyn Rng) -> Vec<u8> {
    let mut s = vec![0u8; SECRET_LEN];
    rng.fill(&mut s);
    s
}

/// The code for time step `step`.
pub fn code_at_step(secret: &[u8], step: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h.last().copied().unwrap_or(0) & 0x0f);
    let word = h
        .get(offset..offset + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]));
    let modulo = 10u32.pow(digits);
    format!("{:0width$}", word % modulo, width = digits as usize)
}

/// The 30-second step of unix time `now`.
pub fn step_of(now: i64) -> u64 {
    u64::try_from(now.max(0)).unwrap_or(0) / 30
}

/// Checks a 6-digit code at `now`, accepting the previous, current and next step. Returns the
/// matching step so the caller can refuse its reuse.
pub fn verify(secret: &[u8], code: &str, now: i64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .find(|s| crate::secret::ct_eq(&code_at_step(secret, *s, 6), code))
}

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes RFC 4648 base32 (case-insensitive, padding and spaces ignored).
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in s.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

/// A random Rng-independent helper for tests and clients: the current code for a base32 secret.
pub fn current_code(base32_secret: &str, now: i64) -> Option<String> {
    base32_decode(base32_secret).map(|s| code_at_step(&s, step_of(now), 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at_step(secret, t / 30, 8), code, "t={t}");
        }
    }

    #[test]
    fn verify_window_and_format() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let code = code_at_step(secret, step_of(now), 6);
        assert_eq!(verify(secret, &code, now), Some(step_of(now)));
        assert_eq!(verify(secret, &code, now + 30), Some(step_of(now)));
        assert_eq!(verify(secret, &code, now + 90), None);
        assert_eq!(verify(secret, "12345", now), None);
        assert_eq!(verify(secret, "abcdef", now), None);
    }

    #[test]
    fn base32_roundtrip() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap_or_default(), b"foobar");
        assert_eq!(base32_decode("mzxw 6ytb oi======").unwrap_or_default(), b"foobar");
        assert!(base32_decode("0189").is_none());
        let uri = otpauth_uri("usher", "ann@contoso.test", b"foobar");
        assert_eq!(
            uri,
            "otpauth://totp/usher:ann@contoso.test?secret=MZXW6YTBOI&issuer=usher&algorithm=SHA1&digits=6&period=30"
        );
    }
}
