//! RFC 8725 attacks against the API's bearer-token validation: every forged or misused token is
//! refused with 401 `InvalidAuthenticationToken` and the precise reason.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use usher_crypto::jwt::TokenKind;
use usher_testkit::{TestServer, spawn};

use crate::helpers::jwt_parts;

async fn me(s: &TestServer, token: &str) -> (u16, Value) {
    s.api("GET", "/v1.0/me", token, None).await
}

fn assert_refused(st: u16, body: &Value, reason: &str) {
    assert_eq!(st, 401, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken", "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(reason), "`{msg}` should mention `{reason}`");
}

#[tokio::test]
async fn forged_and_misused_tokens_are_refused() {
    let s = spawn().await;
    let good = s.admin_token().await;
    assert_eq!(me(&s, &good).await.0, 200);
    let (header, claims) = jwt_parts(&good);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let body = usher_crypto::b64url(claims.to_string().as_bytes());

    // alg=none.
    let none = format!(
        "{}.{body}.",
        usher_crypto::b64url(
            json!({"alg": "none", "typ": "at+jwt", "kid": kid})
                .to_string()
                .as_bytes()
        )
    );
    let (st, b) = me(&s, &none).await;
    assert_refused(st, &b, "algorithm `none` is not allowed");

    // Algorithm confusion: HS256 keyed with the public key's coordinates.
    let jwks: Value = s
        .client()
        .get(format!("{}/contoso.test/discovery/v2.0/keys", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.clone());
    h.typ = Some("at+jwt".into());
    let hs = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(x.as_bytes())).unwrap();
    let (st, b) = me(&s, &hs).await;
    assert_refused(st, &b, "algorithm `HS256` is not allowed");

    // A kid that names no key of ours.
    let attacker = usher_crypto::jwt::SigningKey::generate("attacker-kid").unwrap();
    let t = attacker.sign(TokenKind::Access, &claims).unwrap();
    let (st, b) = me(&s, &t).await;
    assert_refused(st, &b, "is not a signing key of this issuer");

    // A jku/x5u header naming the attacker's key set: headers never lead the server to fetch keys.
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    h.kid = Some("attacker-kid".into());
    h.jku = Some("https://evil.test/jwks.json".into());
    h.x5u = Some("https://evil.test/cert.pem".into());
    let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(attacker.pkcs8())).unwrap();
    let (st, b) = me(&s, &t).await;
    assert_refused(st, &b, "is not a signing key of this issuer");

    // Our kid, someone else's key.
    let impostor = usher_crypto::jwt::SigningKey::generate(&kid).unwrap();
    let t = impostor.sign(TokenKind::Access, &claims).unwrap();
    let (st, b) = me(&s, &t).await;
    assert_refused(st, &b, "signature is invalid");

    // No kid at all.
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    let k = usher_crypto::jwt::SigningKey::generate("x").unwrap();
    let t = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(k.pkcs8())).unwrap();
    let (st, b) = me(&s, &t).await;
    assert_refused(st, &b, "no key id");

    // Tokens signed with the server's real key but wrong in one claim or in their type.
    let real = s.running().state.idp.keys().active().unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(Value, TokenKind, &str)> = vec![
        (
            with(&|c| c["aud"] = json!("372140e0-b3b7-4226-8ef9-d57986796201")),
            TokenKind::Access,
            "audience is not accepted",
        ),
        (
            with(&|c| c["iss"] = json!("https://login.microsoftonline.com/other/v2.0")),
            TokenKind::Access,
            "issuer is not this tenant",
        ),
        (
            with(&|c| c["exp"] = json!(1_000_000)),
            TokenKind::Access,
            "has expired",
        ),
        (
            with(&|c| c["nbf"] = json!(4_000_000_000i64)),
            TokenKind::Access,
            "not valid yet",
        ),
        (claims.clone(), TokenKind::Id, "type `JWT` is not `at+jwt`"),
        (
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            TokenKind::Access,
            "lacks the `exp` claim",
        ),
    ];
    for (c, kind, reason) in cases {
        let t = real.sign(kind, &c).unwrap();
        let (st, b) = me(&s, &t).await;
        assert_refused(st, &b, reason);
    }

    // An id token from a real sign-in is not an access token (cross-JWT confusion).
    let (_, tokens) = s
        .password_token("admin@contoso.test", usher_testkit::ADMIN_PASSWORD)
        .await;
    let (st, b) = me(&s, tokens["id_token"].as_str().unwrap()).await;
    assert_refused(st, &b, "type `JWT` is not `at+jwt`");

    // A token for another resource (substitution) is refused by the API.
    let (app_id, obj) = s.create_app(json!({"displayName": "daemon"})).await;
    let secret = s.add_secret(&obj).await;
    let (_, t) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("scope", "372140e0-b3b7-4226-8ef9-d57986796201/.default"),
        ])
        .await;
    let (st, b) = me(&s, t["access_token"].as_str().unwrap()).await;
    assert_refused(st, &b, "audience is not accepted");

    // Garbage and a missing header.
    let (st, b) = me(&s, "not.a.jwt").await;
    assert_eq!(st, 401, "{b}");
    let r = s.client().get(format!("{}/v1.0/me", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
}
