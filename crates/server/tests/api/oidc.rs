//! An independent OpenID Connect client library (`openidconnect`) against usher: discovery,
//! authorization code + PKCE through the HTML sign-in form, id-token and access-token validation
//! against the published JWKS, refresh rotation and the device flow.

use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthenticationFlow, AuthorizationCode, ClientId, CsrfToken,
    DeviceAuthorizationUrl, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use usher_testkit::{ADMIN_PASSWORD, TestServer, spawn};

use crate::helpers::{post_login, txn_of};

#[derive(Clone, Debug, Deserialize, Serialize)]
struct DeviceEndpoint {
    device_authorization_endpoint: DeviceAuthorizationUrl,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}

type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

fn http(s: &TestServer) -> openidconnect::reqwest::Client {
    let pem = std::fs::read(&s.ca).unwrap();
    openidconnect::reqwest::Client::builder()
        .add_root_certificate(openidconnect::reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn discover(s: &TestServer) -> Metadata {
    let issuer = IssuerUrl::new(format!("{}/{}/v2.0", s.url, s.tenant_id)).unwrap();
    Metadata::discover_async(issuer, &http(s)).await.unwrap()
}

/// Validates an access token with an independent JWT library against the discovered JWKS.
async fn validate_access_token(s: &TestServer, meta: &Metadata, token: &str) -> serde_json::Value {
    let text = http(s)
        .get(meta.jwks_uri().url().as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[s.url.as_str()]);
    v.set_issuer(&[meta.issuer().as_str()]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .unwrap()
        .claims
}

async fn register_web_app(s: &TestServer) -> (String, String) {
    let (app_id, _) = s
        .create_app(json!({"displayName": "spa", "isFallbackPublicClient": true, "publicClient": {"redirectUris": ["http://localhost:8400/callback"]}}))
        .await;
    (app_id, "http://localhost:8400/callback".into())
}

/// Follows the authorize URL through the password page; returns the redirect's query pairs.
async fn sign_in_through_form(s: &TestServer, url: &str, upn: &str, password: &str) -> Vec<(String, String)> {
    let browser = s.client();
    let r = browser.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let txn = txn_of(&page);
    let r = post_login(
        s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", upn),
            ("password", password),
        ],
    )
    .await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn authorization_code_with_pkce_validated_by_openidconnect() {
    let s = spawn().await;
    let meta = discover(&s).await;
    let (app_id, redirect) = register_web_app(&s).await;
    let client = CoreClient::from_provider_metadata(meta.clone(), ClientId::new(app_id.clone()), None)
        .set_redirect_uri(RedirectUrl::new(redirect).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let q = sign_in_through_form(&s, auth_url.as_str(), "admin@contoso.test", ADMIN_PASSWORD).await;
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("state").as_deref(), Some(csrf.secret().as_str()));
    let code = get("code").unwrap();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http(&s))
        .await
        .unwrap();
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs([CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let id_claims = tokens.id_token().unwrap().claims(&verifier, &nonce).unwrap();
    assert_eq!(
        id_claims.preferred_username().unwrap().as_str(),
        "admin@contoso.test"
    );
    assert_eq!(id_claims.audiences()[0].as_str(), app_id);
    let at = validate_access_token(&s, &meta, tokens.access_token().secret()).await;
    assert_eq!(at["upn"], "admin@contoso.test");
    assert_eq!(at["azp"], app_id);

    // Refresh through the library: rotated, and the old one is dead afterwards.
    let rt1 = tokens.refresh_token().unwrap().clone();
    let refreshed = client
        .exchange_refresh_token(&rt1)
        .unwrap()
        .request_async(&http(&s))
        .await
        .unwrap();
    let rt2 = refreshed.refresh_token().unwrap().secret().clone();
    assert_ne!(&rt2, rt1.secret());
    validate_access_token(&s, &meta, refreshed.access_token().secret()).await;
    let reuse = client
        .exchange_refresh_token(&rt1)
        .unwrap()
        .request_async(&http(&s))
        .await;
    let err = format!("{:?}", reuse.unwrap_err());
    assert!(err.contains("AADSTS50173"), "{err}");
    let after = client
        .exchange_refresh_token(&RefreshToken::new(rt2))
        .unwrap()
        .request_async(&http(&s))
        .await;
    assert!(after.is_err(), "the whole family is revoked");
}

#[tokio::test]
async fn device_flow_with_openidconnect() {
    let s = spawn().await;
    let meta = discover(&s).await;
    let device_url = meta.additional_metadata().device_authorization_endpoint.clone();
    let client = CoreClient::from_provider_metadata(
        meta.clone(),
        ClientId::new(usher_testkit::CLI_CLIENT_ID.into()),
        None,
    )
    .set_device_authorization_url(device_url);
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("profile".into()))
        .request_async(&http(&s))
        .await
        .unwrap();
    let user_code = details.user_code().secret().clone();
    let approver = {
        let url = s.url.clone();
        let ca = s.ca.clone();
        let tenant = s.tenant_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let pem = std::fs::read(&ca).unwrap();
            let c = reqwest::Client::builder()
                .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let page = c
                .post(format!("{url}/devicelogin"))
                .form(&[("user_code", user_code.as_str())])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let txn = txn_of(&page);
            let done = c
                .post(format!("{url}/{tenant}/login"))
                .form(&[
                    ("txn", txn.as_str()),
                    ("step", "password"),
                    ("username", "admin@contoso.test"),
                    ("password", ADMIN_PASSWORD),
                ])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(done.contains("id=\"done\""), "{done}");
        })
    };
    let tokens = client
        .exchange_device_access_token(&details)
        .unwrap()
        .request_async(&http(&s), tokio::time::sleep, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    approver.await.unwrap();
    let at = validate_access_token(&s, &meta, tokens.access_token().secret()).await;
    assert_eq!(at["upn"], "admin@contoso.test");
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs([CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let id = tokens
        .id_token()
        .unwrap()
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert_eq!(id.preferred_username().unwrap().as_str(), "admin@contoso.test");
}
