//! Reading a JWT's payload without verifying it. The CLI is not a relying party: it only reads
//! its own tokens' claims (`tid`, `upn`, `exp`) to show and cache them.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

/// Decodes the payload (second part) of a compact JWS into its JSON claims.
pub fn decode_payload(token: &str) -> Result<Map<String, Value>> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("the token is not a JWT (expected three dot-separated parts)");
    };
    if parts.next().is_some() {
        bail!("the token is not a JWS compact serialization (too many parts)");
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(payload))
        .context("the token's payload is not base64url")?;
    let value: Value = serde_json::from_slice(&bytes).context("the token's payload is not JSON")?;
    match value {
        Value::Object(map) => Ok(map),
        _ => bail!("the token's payload is not a JSON object"),
    }
}

/// The claims the CLI uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Tenant id (`tid`).
    pub tid: Option<String>,
    /// User name: `upn`, else `preferred_username`, else `unique_name`.
    pub upn: Option<String>,
    /// Object id (`oid`).
    pub oid: Option<String>,
    /// Expiry (`exp`, seconds since the epoch).
    pub exp: Option<i64>,
}

impl Claims {
    /// Reads the claims of a token; missing claims are `None`.
    pub fn of(token: &str) -> Result<Claims> {
        let map = decode_payload(token)?;
        let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Claims {
            tid: text("tid"),
            upn: text("upn")
                .or_else(|| text("preferred_username"))
                .or_else(|| text("unique_name")),
            oid: text("oid"),
            exp: map.get("exp").and_then(Value::as_i64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwt(payload: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#);
        let body = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{header}.{body}.c2lnbmF0dXJl")
    }

    #[test]
    fn reads_claims_without_verifying() -> Result<()> {
        let token = jwt(&json!({
            "tid": "11111111-1111-1111-1111-111111111111",
            "upn": "admin@contoso.test",
            "preferred_username": "other@contoso.test",
            "oid": "o",
            "exp": 1_900_000_000,
            "name": "Ádmin ✓"
        }));
        let c = Claims::of(&token)?;
        assert_eq!(c.tid.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
        assert_eq!(c.upn.as_deref(), Some("admin@contoso.test"));
        assert_eq!(c.exp, Some(1_900_000_000));
        let map = decode_payload(&token)?;
        assert_eq!(map.get("name").and_then(Value::as_str), Some("Ádmin ✓"));
        Ok(())
    }

    #[test]
    fn falls_back_to_preferred_username() -> Result<()> {
        let c = Claims::of(&jwt(&json!({"preferred_username": "bob@contoso.test"})))?;
        assert_eq!(c.upn.as_deref(), Some("bob@contoso.test"));
        assert_eq!(c.tid, None);
        Ok(())
    }

    #[test]
    fn accepts_padded_payloads() -> Result<()> {
        let body = URL_SAFE.encode(br#"{"tid":"t1"}"#);
        let c = Claims::of(&format!("e30.{body}.sig"))?;
        assert_eq!(c.tid.as_deref(), Some("t1"));
        Ok(())
    }

    #[test]
    fn rejects_non_jwts() {
        assert!(decode_payload("opaque-token").is_err());
        assert!(decode_payload("a.!!!.c").is_err());
        assert!(decode_payload("a.b.c.d").is_err());
        let not_object = URL_SAFE_NO_PAD.encode(b"[1]");
        assert!(decode_payload(&format!("e30.{not_object}.x")).is_err());
    }
}
