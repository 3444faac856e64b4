//! ES256 signing keys, JWT issuance and strict validation (RFC 8725): the algorithm is pinned per
//! key, `kid` is required and must name a known key, `typ` must be the one of the expected token
//! kind, and `iss`, `aud`, `exp` and `nbf` are checked against the caller's clock.

use std::collections::HashMap;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::{CryptoError, b64url};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// The kinds of token usher issues; each has its own `typ` so one is never taken for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An OAuth access token (`typ: at+jwt`, RFC 9068).
    Access,
    /// An OpenID Connect id token (`typ: JWT`).
    Id,
    /// A client's assertion for `private_key_jwt` (`typ: JWT`, validated against the client's keys).
    ClientAssertion,
}

impl TokenKind {
    /// The `typ` header value.
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::Access => "at+jwt",
            TokenKind::Id | TokenKind::ClientAssertion => "JWT",
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS.
    #[error("the token is malformed")]
    Malformed,
    /// `alg` other than the key's.
    #[error("the token's algorithm `{0}` is not allowed")]
    Algorithm(String),
    /// No `kid` header.
    #[error("the token has no key id")]
    MissingKeyId,
    /// `kid` names no key of this issuer.
    #[error("the token's key `{0}` is not a signing key of this issuer")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `typ` is not the expected kind's.
    #[error("the token's type `{got}` is not `{expected}`")]
    WrongType {
        /// Expected `typ`.
        expected: &'static str,
        /// The token's `typ`.
        got: String,
    },
    /// `iss` differs.
    #[error("the token's issuer is not this tenant")]
    WrongIssuer,
    /// `aud` is not an accepted audience.
    #[error("the token's audience is not accepted here")]
    WrongAudience,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim is missing or mistyped.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(&'static str),
}

/// A public key in JWK form (P-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    /// base64url x coordinate.
    pub x: String,
    /// base64url y coordinate.
    pub y: String,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// An ES256 signing key.
pub struct SigningKey {
    kid: String,
    pkcs8: Zeroizing<Vec<u8>>,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn generate(kid: &str) -> Result<Self, CryptoError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| CryptoError::Key("could not generate a P-256 key".into()))?;
        Self::from_pkcs8(kid, doc.as_ref())
    }

    /// A key from its PKCS#8 DER form.
    pub fn from_pkcs8(kid: &str, der: &[u8]) -> Result<Self, CryptoError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| CryptoError::Key("not a P-256 PKCS#8 key".into()))?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point.first() != Some(&4) {
            return Err(CryptoError::Key("unexpected public key encoding".into()));
        }
        let jwk = Jwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: b64url(point.get(1..33).unwrap_or_default()),
            y: b64url(point.get(33..65).unwrap_or_default()),
            kid: Some(kid.to_owned()),
            alg: Some("ES256".into()),
            use_: Some("sig".into()),
        };
        Ok(Self {
            kid: kid.to_owned(),
            pkcs8: Zeroizing::new(der.to_vec()),
            encoding: EncodingKey::from_ec_der(der),
            jwk,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The PKCS#8 DER form (to be sealed before storing).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` as a token of `kind`.
    pub fn sign<T: Serialize>(&self, kind: TokenKind, claims: &T) -> Result<String, CryptoError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(kind.typ().to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| CryptoError::Key(e.to_string()))
    }

    /// Signs arbitrary claims with an explicit `typ` (client assertions in tests and clients).
    pub fn sign_with_typ(&self, typ: &str, claims: &Value) -> Result<String, CryptoError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| CryptoError::Key(e.to_string()))
    }
}

/// What a validator expects of a token.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The token kind (`typ`).
    pub kind: TokenKind,
    /// The exact issuer.
    pub issuer: &'a str,
    /// Accepted audiences (any one suffices).
    pub audiences: &'a [String],
    /// Current unix time.
    pub now: i64,
}

/// The public keys of one issuer, each pinned to ES256.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// A key set from JWKs; keys that are not P-256 or lack a `kid` are refused.
    pub fn from_jwks(jwks: &[Jwk]) -> Result<Self, CryptoError> {
        let mut keys = HashMap::new();
        for jwk in jwks {
            if jwk.kty != "EC" || jwk.crv != "P-256" || jwk.alg.as_deref().is_some_and(|a| a != "ES256") {
                return Err(CryptoError::Key("only P-256 ES256 keys are accepted".into()));
            }
            let kid = jwk
                .kid
                .clone()
                .ok_or(CryptoError::Key("a JWK without kid".into()))?;
            let key = DecodingKey::from_ec_components(&jwk.x, &jwk.y)
                .map_err(|e| CryptoError::Key(e.to_string()))?;
            keys.insert(kid, key);
        }
        Ok(Self { keys })
    }

    /// Validates a token strictly and returns its claims.
    pub fn validate(&self, token: &str, expect: &Expectations<'_>) -> Result<Map<String, Value>, TokenError> {
        if token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        // The algorithm is pinned before anything else is trusted: only ES256, whatever the header says.
        let alg = alg_of(token);
        if alg != "ES256" {
            return Err(TokenError::Algorithm(alg));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        let got_typ = header.typ.unwrap_or_default();
        if !got_typ.eq_ignore_ascii_case(expect.kind.typ()) {
            return Err(TokenError::WrongType {
                expected: expect.kind.typ(),
                got: got_typ,
            });
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::Signature,
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::Algorithm(alg_of(token)),
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        check_claims(&claims, expect)?;
        Ok(claims)
    }
}

fn alg_of(token: &str) -> String {
    token
        .split('.')
        .next()
        .and_then(|h| crate::b64url_decode(h).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

fn check_claims(claims: &Map<String, Value>, expect: &Expectations<'_>) -> Result<(), TokenError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(TokenError::MissingClaim("iss"))?;
    if iss != expect.issuer {
        return Err(TokenError::WrongIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => expect.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| expect.audiences.iter().any(|x| x == a)),
        _ => return Err(TokenError::MissingClaim("aud")),
    };
    if !aud_ok {
        return Err(TokenError::WrongAudience);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(TokenError::MissingClaim("exp"))?;
    if expect.now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().ok_or(TokenError::MissingClaim("nbf"))?;
        if expect.now.saturating_add(LEEWAY_SECS) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn setup() -> (SigningKey, KeySet) {
        let k = SigningKey::generate("k1").unwrap_or_else(|e| unreachable!("{e}"));
        let ks = KeySet::from_jwks(&[k.jwk().clone()]).unwrap_or_else(|e| unreachable!("{e}"));
        (k, ks)
    }

    const ISS: &str = "https://h/t/v2.0";

    fn exp(kind: TokenKind, auds: &[String]) -> Expectations<'_> {
        Expectations {
            kind,
            issuer: ISS,
            audiences: auds,
            now: 1000,
        }
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": "api", "exp": 2000, "nbf": 900, "sub": "s"})
    }

    #[test]
    fn a_good_token_validates() {
        let (k, ks) = setup();
        let t = k.sign(TokenKind::Access, &claims()).unwrap_or_default();
        let auds = vec!["api".to_owned()];
        let c = ks.validate(&t, &exp(TokenKind::Access, &auds));
        assert_eq!(c.map(|c| c["sub"].clone()), Ok(json!("s")));
    }

    #[test]
    fn id_token_is_not_an_access_token() {
        let (k, ks) = setup();
        let t = k.sign(TokenKind::Id, &claims()).unwrap_or_default();
        let auds = vec!["api".to_owned()];
        assert_eq!(
            ks.validate(&t, &exp(TokenKind::Access, &auds)),
            Err(TokenError::WrongType {
                expected: "at+jwt",
                got: "JWT".into()
            })
        );
    }

    #[test]
    fn claims_are_checked() {
        let (k, ks) = setup();
        let auds = vec!["api".to_owned()];
        let sign = |c: Value| k.sign(TokenKind::Access, &c).unwrap_or_default();
        let mut c = claims();
        c["aud"] = json!("other");
        assert_eq!(
            ks.validate(&sign(c), &exp(TokenKind::Access, &auds)),
            Err(TokenError::WrongAudience)
        );
        let mut c = claims();
        c["iss"] = json!("https://evil/v2.0");
        assert_eq!(
            ks.validate(&sign(c), &exp(TokenKind::Access, &auds)),
            Err(TokenError::WrongIssuer)
        );
        let mut c = claims();
        c["exp"] = json!(900);
        assert_eq!(
            ks.validate(&sign(c), &exp(TokenKind::Access, &auds)),
            Err(TokenError::Expired)
        );
        let mut c = claims();
        c["nbf"] = json!(1100);
        assert_eq!(
            ks.validate(&sign(c), &exp(TokenKind::Access, &auds)),
            Err(TokenError::NotYetValid)
        );
        let mut c = claims();
        c.as_object_mut().map(|m| m.remove("exp"));
        assert_eq!(
            ks.validate(&sign(c), &exp(TokenKind::Access, &auds)),
            Err(TokenError::MissingClaim("exp"))
        );
    }

    #[test]
    fn another_keys_signature_is_refused() {
        let (_, ks) = setup();
        let other = SigningKey::generate("k1").unwrap_or_else(|e| unreachable!("{e}"));
        let t = other.sign(TokenKind::Access, &claims()).unwrap_or_default();
        let auds = vec!["api".to_owned()];
        assert_eq!(
            ks.validate(&t, &exp(TokenKind::Access, &auds)),
            Err(TokenError::Signature)
        );
        let unknown = SigningKey::generate("k9").unwrap_or_else(|e| unreachable!("{e}"));
        let t = unknown.sign(TokenKind::Access, &claims()).unwrap_or_default();
        assert_eq!(
            ks.validate(&t, &exp(TokenKind::Access, &auds)),
            Err(TokenError::UnknownKey("k9".into()))
        );
    }

    #[test]
    fn alg_none_and_hs256_confusion_are_refused() {
        let (k, ks) = setup();
        let auds = vec!["api".to_owned()];
        let body = b64url(claims().to_string().as_bytes());
        let none = format!(
            "{}.{body}.",
            b64url(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#)
        );
        assert!(matches!(
            ks.validate(&none, &exp(TokenKind::Access, &auds)),
            Err(TokenError::Algorithm(_))
        ));
        // HS256 keyed with the public key's bytes (the classic confusion attack).
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        h.typ = Some("at+jwt".into());
        let hs = jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(k.jwk().x.as_bytes()))
            .unwrap_or_default();
        assert!(matches!(
            ks.validate(&hs, &exp(TokenKind::Access, &auds)),
            Err(TokenError::Algorithm(_))
        ));
    }

    #[test]
    fn pkcs8_roundtrip_keeps_the_key() {
        let (k, _) = setup();
        let again = SigningKey::from_pkcs8("k1", k.pkcs8()).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(again.jwk(), k.jwk());
    }
}
