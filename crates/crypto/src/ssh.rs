//! OpenSSH keys and certificates, written from the published formats: public key blobs and
//! `string`/`mpint` encoding (RFC 4251, RFC 4253), certificates (OpenSSH `PROTOCOL.certkeys`)
//! and unencrypted private key files (OpenSSH `PROTOCOL.key`). Certificate authorities and user
//! keys are Ed25519; subjects may be Ed25519 or RSA.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, STANDARD_NO_PAD};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{CryptoError, b64url, b64url_decode};

const ALG_ED25519: &str = "ssh-ed25519";
const ALG_RSA: &str = "ssh-rsa";
const CERT_ED25519: &str = "ssh-ed25519-cert-v01@openssh.com";
const CERT_RSA: &str = "ssh-rsa-cert-v01@openssh.com";
/// Largest key line, certificate line or certificate blob accepted or produced.
const MAX_INPUT: usize = 64 * 1024;
/// Most principals in a certificate (OpenSSH's own limit).
const MAX_PRINCIPALS: usize = 256;
/// Most critical options, and most extensions, in a certificate.
const MAX_OPTIONS: usize = 64;
/// RSA modulus sizes: OpenSSH's floor and ceiling on the wire, and the floor for JWKs.
const RSA_MIN_BITS_WIRE: usize = 1024;
const RSA_MIN_BITS_JWK: usize = 2048;
const RSA_MAX_BITS: usize = 16384;
const PRIVATE_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
const PRIVATE_END: &str = "-----END OPENSSH PRIVATE KEY-----\n";
/// Standard base64 that accepts input with or without padding.
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn malformed(what: &'static str) -> CryptoError {
    CryptoError::Malformed(what)
}

/// SSH wire encoding (RFC 4251 section 5).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Lengths never reach 4 GiB: everything produced is capped at `MAX_INPUT`.
    fn string(&mut self, bytes: &[u8]) {
        self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(bytes);
    }

    /// A non-negative integer given as big-endian magnitude.
    fn mpint(&mut self, magnitude: &[u8]) {
        let m = strip_zeros(magnitude);
        if m.first().is_some_and(|b| b & 0x80 != 0) {
            self.u32(u32::try_from(m.len() + 1).unwrap_or(u32::MAX));
            self.buf.push(0);
            self.buf.extend_from_slice(m);
        } else {
            self.string(m);
        }
    }
}

/// SSH wire decoding; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CryptoError> {
        if n > self.buf.len() {
            return Err(malformed("truncated SSH data"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        self.take(N)?
            .try_into()
            .map_err(|_| malformed("truncated SSH data"))
    }

    fn u32(&mut self) -> Result<u32, CryptoError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, CryptoError> {
        self.array().map(u64::from_be_bytes)
    }

    fn string(&mut self) -> Result<&'a [u8], CryptoError> {
        let n = usize::try_from(self.u32()?).map_err(|_| malformed("SSH string too long"))?;
        self.take(n)
    }

    /// A string that must be UTF-8 text without control characters.
    fn text(&mut self) -> Result<String, CryptoError> {
        let s = std::str::from_utf8(self.string()?).map_err(|_| malformed("SSH text is not UTF-8"))?;
        check_text(s)?;
        Ok(s.to_owned())
    }

    /// A non-negative mpint, returned as big-endian magnitude without leading zeros.
    fn mpint(&mut self) -> Result<Vec<u8>, CryptoError> {
        let raw = self.string()?;
        if raw.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(malformed("negative SSH mpint"));
        }
        Ok(strip_zeros(raw).to_vec())
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn finish(&self) -> Result<(), CryptoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(malformed("trailing bytes in SSH data"))
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

fn bit_len(magnitude: &[u8]) -> usize {
    let m = strip_zeros(magnitude);
    m.first()
        .map_or(0, |&top| (m.len() - 1) * 8 + (8 - top.leading_zeros() as usize))
}

fn check_text(s: &str) -> Result<(), CryptoError> {
    if s.chars().any(char::is_control) {
        return Err(malformed("control character in SSH text"));
    }
    Ok(())
}

fn bounded(text: &str) -> Result<&str, CryptoError> {
    if text.len() > MAX_INPUT {
        return Err(malformed("SSH input too large"));
    }
    Ok(text.trim())
}

fn decode_b64(s: &str) -> Result<Vec<u8>, CryptoError> {
    B64_DECODE
        .decode(s)
        .map_err(|_| malformed("invalid base64 in SSH key"))
}

fn check_rsa(e: &[u8], n: &[u8], min_bits: usize) -> Result<(), CryptoError> {
    let bits = bit_len(n);
    if !(min_bits..=RSA_MAX_BITS).contains(&bits) {
        return Err(CryptoError::Key(format!(
            "an RSA key must have {min_bits} to {RSA_MAX_BITS} bits, this one has {bits}"
        )));
    }
    let odd = |v: &[u8]| v.last().is_some_and(|b| b & 1 == 1);
    if !odd(n) {
        return Err(CryptoError::Key("invalid RSA modulus".into()));
    }
    if !odd(e) || !(2..=33).contains(&bit_len(e)) {
        return Err(CryptoError::Key("invalid RSA public exponent".into()));
    }
    Ok(())
}

/// The key algorithms handled here.
#[derive(Clone, Copy)]
enum KeyKind {
    Ed25519,
    Rsa,
}

impl KeyKind {
    fn from_name(name: &[u8]) -> Result<Self, CryptoError> {
        match name {
            b"ssh-ed25519" => Ok(Self::Ed25519),
            b"ssh-rsa" => Ok(Self::Rsa),
            _ => Err(malformed("unsupported SSH key type")),
        }
    }

    fn from_cert_name(name: &[u8]) -> Result<Self, CryptoError> {
        match name {
            b"ssh-ed25519-cert-v01@openssh.com" => Ok(Self::Ed25519),
            b"ssh-rsa-cert-v01@openssh.com" => Ok(Self::Rsa),
            _ => Err(malformed("unsupported SSH certificate type")),
        }
    }
}

/// An SSH public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshPublicKey {
    /// An Ed25519 key.
    Ed25519([u8; 32]),
    /// An RSA key: exponent and modulus, big-endian unsigned without leading zeros.
    Rsa {
        /// Public exponent.
        e: Vec<u8>,
        /// Modulus.
        n: Vec<u8>,
    },
}

impl SshPublicKey {
    /// Parses an OpenSSH public key line, `"<type> <base64> [comment]"`.
    pub fn from_openssh(line: &str) -> Result<Self, CryptoError> {
        let mut parts = bounded(line)?.split_whitespace();
        let (Some(alg), Some(b64)) = (parts.next(), parts.next()) else {
            return Err(malformed(
                "expected an SSH public key line \"<type> <base64> [comment]\"",
            ));
        };
        let key = Self::from_blob(&decode_b64(b64)?)?;
        if key.algorithm() != alg {
            return Err(malformed("SSH key type does not match its encoding"));
        }
        Ok(key)
    }

    /// Parses an SSH wire public key blob.
    pub fn from_blob(blob: &[u8]) -> Result<Self, CryptoError> {
        let mut r = Reader::new(blob);
        let kind = KeyKind::from_name(r.string()?)?;
        let key = Self::read_fields(kind, &mut r)?;
        r.finish()?;
        Ok(key)
    }

    /// The key material that follows the type name, in a key blob or in a certificate.
    fn read_fields(kind: KeyKind, r: &mut Reader<'_>) -> Result<Self, CryptoError> {
        match kind {
            KeyKind::Ed25519 => {
                let pk = r
                    .string()?
                    .try_into()
                    .map_err(|_| malformed("Ed25519 key is not 32 bytes"))?;
                Ok(Self::Ed25519(pk))
            }
            KeyKind::Rsa => {
                let e = r.mpint()?;
                let n = r.mpint()?;
                check_rsa(&e, &n, RSA_MIN_BITS_WIRE)?;
                Ok(Self::Rsa { e, n })
            }
        }
    }

    fn write_fields(&self, w: &mut Writer) {
        match self {
            Self::Ed25519(pk) => w.string(pk),
            Self::Rsa { e, n } => {
                w.mpint(e);
                w.mpint(n);
            }
        }
    }

    /// The OpenSSH public key line, `"<type> <base64>"`, without comment.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm(), STANDARD.encode(self.blob()))
    }

    /// A public key from a JWK: `{"kty":"OKP","crv":"Ed25519","x":..}` or
    /// `{"kty":"RSA","n":..,"e":..}` with a modulus of at least 2048 bits.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, CryptoError> {
        let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
        if jwk.get("d").is_some() {
            return Err(CryptoError::Key(
                "the JWK holds a private key: give the public key only".into(),
            ));
        }
        match (field("kty"), field("crv")) {
            (Some("OKP"), Some("Ed25519")) => {
                let x = b64url_decode(field("x").unwrap_or_default())?;
                let pk = x
                    .try_into()
                    .map_err(|_| CryptoError::Key("an Ed25519 JWK's x must be 32 bytes".into()))?;
                Ok(Self::Ed25519(pk))
            }
            (Some("RSA"), _) => {
                let e = strip_zeros(&b64url_decode(field("e").unwrap_or_default())?).to_vec();
                let n = strip_zeros(&b64url_decode(field("n").unwrap_or_default())?).to_vec();
                check_rsa(&e, &n, RSA_MIN_BITS_JWK)?;
                Ok(Self::Rsa { e, n })
            }
            (kty, crv) => Err(CryptoError::Key(format!(
                "unsupported JWK (kty {}, crv {}): only Ed25519 (OKP) and RSA keys can be used for SSH",
                kty.unwrap_or("missing"),
                crv.unwrap_or("none")
            ))),
        }
    }

    /// The SSH wire public key blob.
    pub fn blob(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.string(self.algorithm().as_bytes());
        self.write_fields(&mut w);
        w.buf
    }

    /// The SHA-256 fingerprint as `ssh-keygen -l` prints it: `SHA256:` and unpadded base64.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(crate::secret::sha256(&self.blob()))
        )
    }

    /// The SSH key type name: `ssh-ed25519` or `ssh-rsa`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => ALG_ED25519,
            Self::Rsa { .. } => ALG_RSA,
        }
    }

    fn cert_algorithm(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => CERT_ED25519,
            Self::Rsa { .. } => CERT_RSA,
        }
    }
}

/// An Ed25519 seed and its public key, wiped on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
struct Ed25519Secret {
    seed: [u8; 32],
    public: [u8; 32],
}

impl Ed25519Secret {
    fn new(seed: &[u8]) -> Result<Self, CryptoError> {
        if seed.len() != 32 {
            return Err(CryptoError::Key("an Ed25519 seed must be 32 bytes".into()));
        }
        let pair = Self::pair(seed)?;
        let public = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::Key("unexpected Ed25519 public key length".into()))?;
        let mut secret = Self {
            seed: [0; 32],
            public,
        };
        secret.seed.copy_from_slice(seed);
        Ok(secret)
    }

    fn pair(seed: &[u8]) -> Result<Ed25519KeyPair, CryptoError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| CryptoError::Key(format!("Ed25519 seed refused: {e}")))
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(Self::pair(&self.seed)?.sign(msg).as_ref().to_vec())
    }
}

/// An Ed25519 SSH certificate authority key.
pub struct SshCaKey {
    secret: Ed25519Secret,
}

impl std::fmt::Debug for SshCaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SshCaKey({})", self.public_key().fingerprint())
    }
}

impl SshCaKey {
    /// The key with a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            secret: Ed25519Secret::new(seed)?,
        })
    }

    /// The 32-byte seed, to be persisted by the caller.
    pub fn seed(&self) -> &[u8; 32] {
        &self.secret.seed
    }

    /// The CA's public key, as listed in `TrustedUserCAKeys` or `@cert-authority`.
    pub fn public_key(&self) -> SshPublicKey {
        SshPublicKey::Ed25519(self.secret.public)
    }
}

/// What a certificate is for: 1 and 2 on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertType {
    /// A user certificate.
    User,
    /// A host certificate.
    Host,
}

impl CertType {
    fn code(self) -> u32 {
        match self {
            Self::User => 1,
            Self::Host => 2,
        }
    }

    fn from_code(code: u32) -> Result<Self, CryptoError> {
        match code {
            1 => Ok(Self::User),
            2 => Ok(Self::Host),
            _ => Err(malformed("unknown SSH certificate type")),
        }
    }
}

/// What to certify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSpec {
    /// User or host certificate.
    pub cert_type: CertType,
    /// Serial number.
    pub serial: u64,
    /// Key ID, logged by sshd.
    pub key_id: String,
    /// User names or host names the certificate is valid for (at least one).
    pub principals: Vec<String>,
    /// Start of validity, unix seconds.
    pub valid_after: u64,
    /// End of validity, unix seconds (`u64::MAX`: forever).
    pub valid_before: u64,
    /// Critical options, name and value (empty for a flag); any order, no duplicates.
    pub critical_options: Vec<(String, String)>,
    /// Extensions, name and value (empty for a flag); any order, no duplicates.
    pub extensions: Vec<(String, String)>,
}

fn check_spec(spec: &CertSpec) -> Result<(), CryptoError> {
    if spec.principals.is_empty() || spec.principals.len() > MAX_PRINCIPALS {
        return Err(malformed("a certificate needs 1 to 256 principals"));
    }
    if spec.principals.iter().any(String::is_empty) {
        return Err(malformed("empty certificate principal"));
    }
    if spec.valid_after >= spec.valid_before {
        return Err(malformed("certificate validity ends before it starts"));
    }
    check_text(&spec.key_id)?;
    spec.principals.iter().try_for_each(|p| check_text(p))
}

/// The options or extensions section: sorted by name, names unique, non-empty values wrapped
/// in a string.
fn options_blob(options: &[(String, String)]) -> Result<Vec<u8>, CryptoError> {
    if options.len() > MAX_OPTIONS {
        return Err(malformed("too many certificate options"));
    }
    let mut sorted: Vec<&(String, String)> = options.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    if sorted
        .windows(2)
        .any(|p| p.first().map(|x| &x.0) == p.get(1).map(|x| &x.0))
    {
        return Err(malformed("duplicate certificate option"));
    }
    let mut w = Writer::default();
    for (name, value) in sorted {
        if name.is_empty() {
            return Err(malformed("empty certificate option name"));
        }
        check_text(name)?;
        check_text(value)?;
        w.string(name.as_bytes());
        if value.is_empty() {
            w.string(b"");
        } else {
            let mut inner = Writer::default();
            inner.string(value.as_bytes());
            w.string(&inner.buf);
        }
    }
    Ok(w.buf)
}

/// The certificate blob, signed, without checking `spec`.
fn cert_blob(
    ca: &SshCaKey,
    subject: &SshPublicKey,
    spec: &CertSpec,
    nonce: &[u8; 32],
) -> Result<Vec<u8>, CryptoError> {
    let mut principals = Writer::default();
    spec.principals
        .iter()
        .for_each(|p| principals.string(p.as_bytes()));
    let mut w = Writer::default();
    w.string(subject.cert_algorithm().as_bytes());
    w.string(nonce);
    subject.write_fields(&mut w);
    w.u64(spec.serial);
    w.u32(spec.cert_type.code());
    w.string(spec.key_id.as_bytes());
    w.string(&principals.buf);
    w.u64(spec.valid_after);
    w.u64(spec.valid_before);
    w.string(&options_blob(&spec.critical_options)?);
    w.string(&options_blob(&spec.extensions)?);
    w.string(b"");
    w.string(&ca.public_key().blob());
    let mut sig = Writer::default();
    sig.string(ALG_ED25519.as_bytes());
    sig.string(&ca.secret.sign(&w.buf)?);
    w.string(&sig.buf);
    Ok(w.buf)
}

/// Signs a certificate for `subject` with the CA. Returns one OpenSSH line,
/// `"<cert type> <base64> <key id>"`, as `ssh-keygen -s` writes to `*-cert.pub`.
pub fn sign_certificate(
    ca: &SshCaKey,
    subject: &SshPublicKey,
    spec: &CertSpec,
    nonce: &[u8; 32],
) -> Result<String, CryptoError> {
    check_spec(spec)?;
    let blob = cert_blob(ca, subject, spec, nonce)?;
    if blob.len() > MAX_INPUT {
        return Err(malformed("certificate too large"));
    }
    let mut line = format!("{} {}", subject.cert_algorithm(), STANDARD.encode(blob));
    if !spec.key_id.is_empty() {
        line.push(' ');
        line.push_str(&spec.key_id);
    }
    Ok(line)
}

/// A certificate whose signature has been checked against its own `signature_key`. Whether that
/// key is a trusted CA, and whether the validity window covers now, is for the caller to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCertificate {
    /// User or host certificate.
    pub cert_type: CertType,
    /// Serial number.
    pub serial: u64,
    /// Key ID.
    pub key_id: String,
    /// Principals, in certificate order.
    pub principals: Vec<String>,
    /// Start of validity, unix seconds.
    pub valid_after: u64,
    /// End of validity, unix seconds (`u64::MAX`: forever).
    pub valid_before: u64,
    /// Critical options, in certificate order; flags have an empty value.
    pub critical_options: Vec<(String, String)>,
    /// Extensions, in certificate order; flags have an empty value.
    pub extensions: Vec<(String, String)>,
    /// The certified key.
    pub subject: SshPublicKey,
    /// The CA key that signed the certificate.
    pub signature_key: SshPublicKey,
}

/// Splits `"<type> <base64> [comment]"` or a bare base64 blob into declared type and base64.
fn split_cert_text(text: &str) -> Result<(Option<&str>, &str), CryptoError> {
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(b64), None) => Ok((None, b64)),
        (Some(alg), Some(b64)) => Ok((Some(alg), b64)),
        _ => Err(malformed("empty SSH certificate")),
    }
}

fn read_principals(data: &[u8]) -> Result<Vec<String>, CryptoError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() {
        if out.len() >= MAX_PRINCIPALS {
            return Err(malformed("too many certificate principals"));
        }
        out.push(r.text()?);
    }
    Ok(out)
}

/// Options or extensions; a non-empty value must be exactly one wrapped string.
fn read_options(data: &[u8]) -> Result<Vec<(String, String)>, CryptoError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() {
        if out.len() >= MAX_OPTIONS {
            return Err(malformed("too many certificate options"));
        }
        let name = r.text()?;
        let mut data = Reader::new(r.string()?);
        let value = if data.is_empty() {
            String::new()
        } else {
            data.text()?
        };
        data.finish()?;
        out.push((name, value));
    }
    Ok(out)
}

fn verify_signature(key: &SshPublicKey, msg: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
    let SshPublicKey::Ed25519(pk) = key else {
        return Err(CryptoError::Key(
            "only Ed25519 certificate authorities are supported".into(),
        ));
    };
    let mut r = Reader::new(signature);
    if r.string()? != ALG_ED25519.as_bytes() {
        return Err(malformed("unexpected certificate signature algorithm"));
    }
    let sig = r.string()?;
    r.finish()?;
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(msg, sig)
        .map_err(|_| CryptoError::Signature)
}

/// Parses a certificate, as a whole line (`"<type> <base64> [comment]"`) or as bare base64 (what
/// sshd passes as `%k`), and checks its signature with the embedded signature key, which must be
/// Ed25519. Options and extensions are returned in certificate order, as sshd reads them.
pub fn parse_certificate(text: &str) -> Result<ParsedCertificate, CryptoError> {
    let (declared, b64) = split_cert_text(bounded(text)?)?;
    let blob = decode_b64(b64)?;
    if blob.len() > MAX_INPUT {
        return Err(malformed("SSH input too large"));
    }
    let mut r = Reader::new(&blob);
    let alg = r.string()?;
    let kind = KeyKind::from_cert_name(alg)?;
    if declared.is_some_and(|d| d.as_bytes() != alg) {
        return Err(malformed("SSH certificate type does not match its encoding"));
    }
    let _nonce = r.string()?;
    let cert = read_cert_body(kind, &mut r)?;
    let signed = blob.get(..blob.len() - r.remaining()).unwrap_or_default();
    let signature = r.string()?;
    r.finish()?;
    verify_signature(&cert.signature_key, signed, signature)?;
    Ok(cert)
}

/// The fields from the subject key through the signature key.
fn read_cert_body(kind: KeyKind, r: &mut Reader<'_>) -> Result<ParsedCertificate, CryptoError> {
    let subject = SshPublicKey::read_fields(kind, r)?;
    let serial = r.u64()?;
    let cert_type = CertType::from_code(r.u32()?)?;
    let key_id = r.text()?;
    let principals = read_principals(r.string()?)?;
    let valid_after = r.u64()?;
    let valid_before = r.u64()?;
    let critical_options = read_options(r.string()?)?;
    let extensions = read_options(r.string()?)?;
    let _reserved = r.string()?;
    let signature_key = SshPublicKey::from_blob(r.string()?)?;
    Ok(ParsedCertificate {
        cert_type,
        serial,
        key_id,
        principals,
        valid_after,
        valid_before,
        critical_options,
        extensions,
        subject,
        signature_key,
    })
}

/// An Ed25519 SSH user key.
pub struct SshUserKey {
    secret: Ed25519Secret,
}

impl std::fmt::Debug for SshUserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SshUserKey({})", self.public_key().fingerprint())
    }
}

impl SshUserKey {
    /// The key with a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self {
            secret: Ed25519Secret::new(seed)?,
        })
    }

    /// The public key.
    pub fn public_key(&self) -> SshPublicKey {
        SshPublicKey::Ed25519(self.secret.public)
    }

    /// The public key as a JWK: `{"kty":"OKP","crv":"Ed25519","x":..}`.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&self.secret.public)})
    }

    /// The unencrypted OpenSSH private key file (`openssh-key-v1`, cipher and KDF `none`);
    /// `check` is the random check word repeated inside the file. Buffers are sized up front so
    /// no copy of the key is left behind by reallocation.
    pub fn to_openssh_private(&self, comment: &str, check: u32) -> Zeroizing<String> {
        let private = Zeroizing::new(self.private_section(comment, check));
        let mut w = Writer::with_capacity(private.len() + 128);
        w.buf.extend_from_slice(b"openssh-key-v1\0");
        w.string(b"none");
        w.string(b"none");
        w.string(b"");
        w.u32(1);
        w.string(&self.public_key().blob());
        w.string(&private);
        let file = Zeroizing::new(w.buf);
        armor(&file)
    }

    /// The private key list: check words, key, comment, padding to 8-byte blocks.
    fn private_section(&self, comment: &str, check: u32) -> Vec<u8> {
        let mut w = Writer::with_capacity(comment.len() + 160);
        w.u32(check);
        w.u32(check);
        w.string(ALG_ED25519.as_bytes());
        w.string(&self.secret.public);
        w.u32(64);
        w.buf.extend_from_slice(&self.secret.seed);
        w.buf.extend_from_slice(&self.secret.public);
        w.string(comment.as_bytes());
        for pad in 1..=7u8 {
            if w.buf.len().is_multiple_of(8) {
                break;
            }
            w.buf.push(pad);
        }
        w.buf
    }
}

/// PEM-style armor with base64 lines of 70 characters, as OpenSSH writes.
fn armor(bytes: &[u8]) -> Zeroizing<String> {
    let mut b64 = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
    STANDARD.encode_string(bytes, &mut b64);
    let mut out = Zeroizing::new(String::with_capacity(
        b64.len() + b64.len() / 70 + PRIVATE_BEGIN.len() + PRIVATE_END.len() + 2,
    ));
    out.push_str(PRIVATE_BEGIN);
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i.is_multiple_of(70) {
            out.push('\n');
        }
        out.push(c);
    }
    out.push('\n');
    out.push_str(PRIVATE_END);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use serde_json::json;

    use super::*;

    const KEYGEN: &str = "/usr/bin/ssh-keygen";
    const JAN_2024: u64 = 1_704_067_200;
    const JAN_2025: u64 = 1_735_689_600;

    fn run_keygen(args: &[&str]) -> std::process::Output {
        Command::new(KEYGEN)
            .env("TZ", "UTC")
            .args(args)
            .output()
            .expect("run ssh-keygen")
    }

    fn keygen(args: &[&str]) -> String {
        let out = run_keygen(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ssh-keygen {args:?} failed: {err}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        path
    }

    /// A key pair made by ssh-keygen; returns the private key path.
    fn keygen_key(dir: &Path, name: &str, kind: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut args = vec!["-q", "-N", "", "-C", "made-by-keygen", "-f", s(&path)];
        args.extend_from_slice(kind);
        keygen(&args);
        path
    }

    fn read_pub(private: &Path) -> String {
        std::fs::read_to_string(format!("{}.pub", s(private))).unwrap()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    fn ca() -> SshCaKey {
        SshCaKey::from_seed(&[7u8; 32]).unwrap()
    }

    fn user_spec() -> CertSpec {
        CertSpec {
            cert_type: CertType::User,
            serial: 42,
            key_id: "alice@usher".into(),
            principals: vec!["alice".into(), "admin".into()],
            valid_after: JAN_2024,
            valid_before: JAN_2025,
            critical_options: pairs(&[
                ("source-address", "10.0.0.0/8,192.168.1.1"),
                ("force-command", "/bin/true"),
            ]),
            extensions: pairs(&[
                ("permit-pty", ""),
                ("permit-X11-forwarding", ""),
                ("permit-agent-forwarding", ""),
            ]),
        }
    }

    fn b64_of(line: &str) -> &str {
        line.split_whitespace().nth(1).unwrap()
    }

    /// Re-encodes a certificate line after changing its blob.
    fn tamper(line: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut blob = STANDARD.decode(b64_of(line)).unwrap();
        f(&mut blob);
        STANDARD.encode(blob)
    }

    /// `ssh-keygen -L` output without the file name line, each line trimmed.
    fn listing(path: &Path) -> Vec<String> {
        keygen(&["-L", "-f", s(path)])
            .lines()
            .skip(1)
            .map(|l| l.trim().to_owned())
            .collect()
    }

    #[test]
    fn ssh_seed_gives_the_rfc8032_public_key() {
        let seed: Vec<u8> = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"[i * 2..i * 2 + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        let ca = SshCaKey::from_seed(&seed).unwrap();
        assert_eq!(ca.seed().as_slice(), seed.as_slice());
        let SshPublicKey::Ed25519(pk) = ca.public_key() else {
            panic!("not Ed25519")
        };
        assert_eq!(
            crate::secret::hex(&pk),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            SshUserKey::from_seed(&seed).unwrap().public_key(),
            ca.public_key()
        );
        assert!(SshCaKey::from_seed(&[1u8; 31]).is_err());
        assert!(SshUserKey::from_seed(&[1u8; 33]).is_err());
    }

    #[test]
    fn ssh_public_keys_round_trip() {
        let ed = SshUserKey::from_seed(&[3u8; 32]).unwrap().public_key();
        let line = ed.to_openssh();
        assert!(line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
        assert_eq!(SshPublicKey::from_openssh(&line).unwrap(), ed);
        assert_eq!(
            SshPublicKey::from_openssh(&format!("  {line} a comment with spaces\n")).unwrap(),
            ed
        );
        assert_eq!(SshPublicKey::from_blob(&ed.blob()).unwrap(), ed);

        let mut n = vec![0xc5u8; 256];
        n[255] = 0x01;
        let rsa = SshPublicKey::Rsa {
            e: vec![1, 0, 1],
            n: n.clone(),
        };
        let blob = rsa.blob();
        // mpint: e has no sign byte, n (high bit set) gets one.
        assert_eq!(&blob[11..22], &[0, 0, 0, 3, 1, 0, 1, 0, 0, 1, 1]);
        assert_eq!(blob[22], 0);
        assert_eq!(blob.len(), 11 + 7 + 4 + 257);
        assert_eq!(SshPublicKey::from_openssh(&rsa.to_openssh()).unwrap(), rsa);
        assert_eq!(rsa.algorithm(), "ssh-rsa");

        // Type mismatch, trailing bytes, unknown type, short RSA, junk.
        let mismatched = format!("ssh-rsa {}", b64_of(&line));
        assert!(SshPublicKey::from_openssh(&mismatched).is_err());
        let mut long = ed.blob();
        long.push(0);
        assert!(SshPublicKey::from_blob(&long).is_err());
        assert!(SshPublicKey::from_openssh(&format!("ssh-ed25519 {}", STANDARD.encode(&long))).is_err());
        let mut w = Writer::default();
        w.string(b"ssh-dss");
        w.string(&[1; 32]);
        assert!(SshPublicKey::from_blob(&w.buf).is_err());
        let short = SshPublicKey::Rsa {
            e: vec![1, 0, 1],
            n: n[..64].to_vec(),
        };
        assert!(SshPublicKey::from_blob(&short.blob()).is_err());
        assert!(SshPublicKey::from_openssh("ssh-ed25519").is_err());
        assert!(SshPublicKey::from_openssh("ssh-ed25519 !!!!").is_err());
        assert!(SshPublicKey::from_openssh(&"A".repeat(MAX_INPUT + 1)).is_err());
    }

    #[test]
    fn ssh_keygen_keys_parse_and_fingerprints_match() {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind, algorithm) in [
            ("ed", &["-t", "ed25519"][..], "ssh-ed25519"),
            ("rsa", &["-t", "rsa", "-b", "2048"][..], "ssh-rsa"),
        ] {
            let private = keygen_key(dir.path(), name, kind);
            let line = read_pub(&private);
            let key = SshPublicKey::from_openssh(&line).unwrap();
            assert_eq!(key.algorithm(), algorithm);
            let head: Vec<&str> = line.split_whitespace().take(2).collect();
            assert_eq!(key.to_openssh(), head.join(" "));
            let printed = keygen(&["-l", "-f", &format!("{}.pub", s(&private))]);
            assert_eq!(
                printed.split_whitespace().nth(1),
                Some(key.fingerprint().as_str())
            );
            if let SshPublicKey::Rsa { e, n } = &key {
                assert_eq!(e, &[1, 0, 1]);
                assert_eq!(bit_len(n), 2048);
                assert_ne!(n[0], 0);
            }
        }
    }

    #[test]
    fn ssh_fingerprint_matches_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let key = SshUserKey::from_seed(&[9u8; 32]).unwrap().public_key();
        let path = write_file(dir.path(), "k.pub", &format!("{} c\n", key.to_openssh()));
        let printed = keygen(&["-l", "-f", s(&path)]);
        assert_eq!(
            printed.split_whitespace().nth(1),
            Some(key.fingerprint().as_str())
        );
        assert!(key.fingerprint().starts_with("SHA256:"));
        assert!(!key.fingerprint().ends_with('='));
    }

    #[test]
    fn ssh_private_key_is_read_by_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let key = SshUserKey::from_seed(&[5u8; 32]).unwrap();
        // Comments of every length mod 8 exercise every padding length.
        for len in 0..8 {
            let comment = &"user@host"[..len];
            let pem = key.to_openssh_private(comment, 0x1234_5678);
            assert!(pem.starts_with(PRIVATE_BEGIN) && pem.ends_with(PRIVATE_END));
            let body: Vec<&str> = pem
                .lines()
                .skip(1)
                .take_while(|l| !l.starts_with("-----"))
                .collect();
            assert!(body.iter().all(|l| l.len() <= 70));
            assert!(body[..body.len() - 1].iter().all(|l| l.len() == 70));
            let path = write_file(dir.path(), &format!("id{len}"), &pem);
            let out = keygen(&["-y", "-f", s(&path)]);
            let mut parts = out.split_whitespace();
            let head = format!("{} {}", parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(head, key.public_key().to_openssh());
            assert_eq!(parts.next().unwrap_or(""), comment);
        }
    }

    #[test]
    fn ssh_certificate_is_accepted_by_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let subject = SshUserKey::from_seed(&[1u8; 32]).unwrap().public_key();
        let spec = user_spec();
        let line = sign_certificate(&ca, &subject, &spec, &[0xab; 32]).unwrap();
        assert!(line.starts_with("ssh-ed25519-cert-v01@openssh.com AAAA"));
        assert!(line.ends_with(" alice@usher"));
        let path = write_file(dir.path(), "user-cert.pub", &format!("{line}\n"));
        let expected = [
            "Type: ssh-ed25519-cert-v01@openssh.com user certificate".to_owned(),
            format!("Public key: ED25519-CERT {}", subject.fingerprint()),
            format!(
                "Signing CA: ED25519 {} (using ssh-ed25519)",
                ca.public_key().fingerprint()
            ),
            "Key ID: \"alice@usher\"".into(),
            "Serial: 42".into(),
            "Valid: from 2024-01-01T00:00:00 to 2025-01-01T00:00:00".into(),
            "Principals:".into(),
            "alice".into(),
            "admin".into(),
            "Critical Options:".into(),
            "force-command /bin/true".into(),
            "source-address 10.0.0.0/8,192.168.1.1".into(),
            "Extensions:".into(),
            "permit-X11-forwarding".into(),
            "permit-agent-forwarding".into(),
            "permit-pty".into(),
        ];
        assert_eq!(listing(&path), expected);

        // Our own parser reads it back, options sorted by name.
        let parsed = parse_certificate(&line).unwrap();
        let mut sorted = spec.clone();
        sorted.critical_options.sort();
        sorted.extensions.sort();
        assert_eq!(parsed.cert_type, CertType::User);
        assert_eq!((parsed.serial, parsed.key_id.as_str()), (42, "alice@usher"));
        assert_eq!(parsed.principals, spec.principals);
        assert_eq!((parsed.valid_after, parsed.valid_before), (JAN_2024, JAN_2025));
        assert_eq!(parsed.critical_options, sorted.critical_options);
        assert_eq!(parsed.extensions, sorted.extensions);
        assert_eq!(parsed.subject, subject);
        assert_eq!(parsed.signature_key, ca.public_key());
        assert_eq!(parse_certificate(b64_of(&line)).unwrap(), parsed);
    }

    #[test]
    fn ssh_host_certificate_for_rsa_key_is_accepted_by_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = SshPublicKey::from_openssh(&read_pub(&keygen_key(
            dir.path(),
            "host",
            &["-t", "rsa", "-b", "2048"],
        )))
        .unwrap();
        let spec = CertSpec {
            cert_type: CertType::Host,
            serial: u64::MAX,
            key_id: String::new(),
            principals: vec!["db1.example.com".into()],
            valid_after: 0,
            valid_before: u64::MAX,
            critical_options: vec![],
            extensions: pairs(&[("login@usher.dev", "alice")]),
        };
        let line = sign_certificate(&ca(), &rsa, &spec, &[0; 32]).unwrap();
        assert_eq!(line.split_whitespace().count(), 2);
        let path = write_file(dir.path(), "host-cert.pub", &format!("{line}\n"));
        let listed = listing(&path);
        assert_eq!(listed[0], "Type: ssh-rsa-cert-v01@openssh.com host certificate");
        assert_eq!(listed[1], format!("Public key: RSA-CERT {}", rsa.fingerprint()));
        assert_eq!(
            listed[3..7],
            [
                "Key ID: \"\"",
                "Serial: 18446744073709551615",
                "Valid: forever",
                "Principals:"
            ]
        );
        assert_eq!(
            listed[7..10],
            ["db1.example.com", "Critical Options: (none)", "Extensions:"]
        );
        // ssh-keygen shows unknown extensions as hex of the data: a wrapped string.
        assert_eq!(
            listed[10],
            "login@usher.dev UNKNOWN OPTION: 00000005616c696365 (len 9)"
        );
        let parsed = parse_certificate(&line).unwrap();
        assert_eq!((parsed.cert_type, parsed.subject), (CertType::Host, rsa));
        assert_eq!(parsed.extensions, spec.extensions);
    }

    #[test]
    fn ssh_keygen_certificates_parse() {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = keygen_key(dir.path(), "ca", &["-t", "ed25519"]);
        let ca_key = SshPublicKey::from_openssh(&read_pub(&ca_path)).unwrap();
        let user = keygen_key(dir.path(), "user", &["-t", "ed25519"]);
        let user_pub = format!("{}.pub", s(&user));
        let cert_path = PathBuf::from(format!("{}-cert.pub", s(&user)));
        let validity = "20240101000000:20250101000000";
        let ca = s(&ca_path);
        keygen(&[
            "-q",
            "-s",
            ca,
            "-I",
            "id",
            "-n",
            "a,b",
            "-V",
            validity,
            "-O",
            "extension:permit-pty",
            "-z",
            "7",
            &user_pub,
        ]);
        let line = std::fs::read_to_string(&cert_path).unwrap();
        let cert = parse_certificate(&line).unwrap();
        assert_eq!(cert.cert_type, CertType::User);
        assert_eq!((cert.serial, cert.key_id.as_str()), (7, "id"));
        assert_eq!(cert.principals, ["a", "b"]);
        assert_eq!((cert.valid_after, cert.valid_before), (JAN_2024, JAN_2025));
        assert!(cert.critical_options.is_empty());
        assert!(cert.extensions.contains(&("permit-pty".into(), String::new())));
        let listed = listing(&cert_path);
        let shown: Vec<&str> = listed
            .iter()
            .skip_while(|l| *l != "Extensions:")
            .skip(1)
            .map(String::as_str)
            .collect();
        let names: Vec<&str> = cert.extensions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, shown);
        assert_eq!(
            cert.subject,
            SshPublicKey::from_openssh(&read_pub(&user)).unwrap()
        );
        assert_eq!(cert.signature_key, ca_key);
        assert_eq!(parse_certificate(b64_of(&line)).unwrap(), cert);

        // Options with values, host certificates.
        std::fs::remove_file(&cert_path).unwrap();
        keygen(&[
            "-q",
            "-s",
            ca,
            "-I",
            "opts",
            "-n",
            "alice",
            "-O",
            "clear",
            "-O",
            "force-command=/bin/ls -l",
            "-O",
            "source-address=10.0.0.1/32",
            "-O",
            "extension:login@usher.dev=alice",
            "-O",
            "extension:permit-pty",
            &user_pub,
        ]);
        let cert = parse_certificate(&std::fs::read_to_string(&cert_path).unwrap()).unwrap();
        assert_eq!(
            cert.critical_options,
            pairs(&[("force-command", "/bin/ls -l"), ("source-address", "10.0.0.1/32")])
        );
        assert_eq!(
            cert.extensions,
            pairs(&[("login@usher.dev", "alice"), ("permit-pty", "")])
        );
        assert_eq!((cert.valid_after, cert.valid_before), (0, u64::MAX));
        std::fs::remove_file(&cert_path).unwrap();
        keygen(&["-q", "-s", ca, "-h", "-I", "host", "-n", "h.example", &user_pub]);
        let cert = parse_certificate(&std::fs::read_to_string(&cert_path).unwrap()).unwrap();
        assert_eq!(
            (cert.cert_type, cert.principals),
            (CertType::Host, vec!["h.example".to_owned()])
        );

        // An RSA CA's certificate is refused.
        let rsa_ca = keygen_key(dir.path(), "rsa-ca", &["-t", "rsa", "-b", "2048"]);
        std::fs::remove_file(&cert_path).unwrap();
        keygen(&["-q", "-s", s(&rsa_ca), "-I", "id", "-n", "a", &user_pub]);
        let err = parse_certificate(&std::fs::read_to_string(&cert_path).unwrap()).unwrap_err();
        assert!(err.to_string().contains("only Ed25519"), "{err}");
    }

    #[test]
    fn ssh_tampered_certificates_are_refused() {
        let subject = SshUserKey::from_seed(&[1u8; 32]).unwrap().public_key();
        let line = sign_certificate(&ca(), &subject, &user_spec(), &[0xab; 32]).unwrap();
        assert!(parse_certificate(&line).is_ok());
        // Layout: type (4+32), nonce (4+32), key (4+32), serial at 108, type at 116.
        for offset in [45, 80, 115, 130] {
            let bad = tamper(&line, |b| b[offset] ^= 0x01);
            assert!(
                matches!(parse_certificate(&bad), Err(CryptoError::Signature)),
                "offset {offset}"
            );
        }
        let bad_sig = tamper(&line, |b| *b.last_mut().unwrap() ^= 0x80);
        assert!(matches!(parse_certificate(&bad_sig), Err(CryptoError::Signature)));
        let bad_type = tamper(&line, |b| b[119] = 3);
        assert!(matches!(
            parse_certificate(&bad_type),
            Err(CryptoError::Malformed(_))
        ));
        let trailing = tamper(&line, |b| b.push(0));
        assert!(matches!(
            parse_certificate(&trailing),
            Err(CryptoError::Malformed(_))
        ));
        let truncated = tamper(&line, |b| b.truncate(b.len() - 1));
        assert!(matches!(
            parse_certificate(&truncated),
            Err(CryptoError::Malformed(_))
        ));
        let huge_len = tamper(&line, |b| b[36..40].copy_from_slice(&u32::MAX.to_be_bytes()));
        assert!(parse_certificate(&huge_len).is_err());
        let mismatched = format!("ssh-rsa-cert-v01@openssh.com {}", b64_of(&line));
        assert!(parse_certificate(&mismatched).is_err());
        assert!(parse_certificate(&subject.to_openssh()).is_err());
        assert!(parse_certificate("").is_err());
        assert!(parse_certificate(&"A".repeat(MAX_INPUT + 4)).is_err());
    }

    #[test]
    fn ssh_certificate_caps_are_enforced() {
        let subject = SshUserKey::from_seed(&[1u8; 32]).unwrap().public_key();
        let mut spec = user_spec();
        spec.principals = (0..=MAX_PRINCIPALS).map(|i| format!("p{i}")).collect();
        assert!(sign_certificate(&ca(), &subject, &spec, &[0; 32]).is_err());
        let blob = cert_blob(&ca(), &subject, &spec, &[0; 32]).unwrap();
        let err = parse_certificate(&STANDARD.encode(blob)).unwrap_err();
        assert!(
            err.to_string().contains("too many certificate principals"),
            "{err}"
        );
        spec.principals.truncate(MAX_PRINCIPALS);
        let ok = sign_certificate(&ca(), &subject, &spec, &[0; 32]).unwrap();
        assert_eq!(parse_certificate(&ok).unwrap().principals.len(), MAX_PRINCIPALS);
    }

    #[test]
    fn ssh_bad_specs_are_refused() {
        let subject = SshUserKey::from_seed(&[1u8; 32]).unwrap().public_key();
        let refused = |f: &dyn Fn(&mut CertSpec)| {
            let mut spec = user_spec();
            f(&mut spec);
            sign_certificate(&ca(), &subject, &spec, &[0; 32]).is_err()
        };
        assert!(!refused(&|_| {}));
        assert!(refused(&|s| s.principals.clear()));
        assert!(refused(&|s| s.principals.push(String::new())));
        assert!(refused(&|s| s.valid_before = s.valid_after));
        assert!(refused(&|s| s.key_id = "id\nssh-ed25519 AAAA".into()));
        assert!(refused(&|s| s.principals.push("bob\0".into())));
        assert!(refused(&|s| s
            .extensions
            .push(("permit-pty".into(), String::new()))));
        assert!(refused(&|s| s.critical_options.push((String::new(), "x".into()))));
    }

    #[test]
    fn ssh_jwks_convert_or_are_refused() {
        let user = SshUserKey::from_seed(&[2u8; 32]).unwrap();
        let jwk = user.public_jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert_eq!(SshPublicKey::from_jwk(&jwk).unwrap(), user.public_key());

        let dir = tempfile::tempdir().unwrap();
        let rsa = SshPublicKey::from_openssh(&read_pub(&keygen_key(
            dir.path(),
            "rsa",
            &["-t", "rsa", "-b", "2048"],
        )))
        .unwrap();
        let SshPublicKey::Rsa { e, n } = &rsa else {
            panic!("not RSA")
        };
        let mut padded = vec![0u8];
        padded.extend_from_slice(n);
        let rsa_jwk = json!({"kty": "RSA", "e": b64url(e), "n": b64url(&padded)});
        assert_eq!(SshPublicKey::from_jwk(&rsa_jwk).unwrap(), rsa);

        let p256 = json!({"kty": "EC", "crv": "P-256", "x": b64url(&[1; 32]), "y": b64url(&[2; 32])});
        let err = SshPublicKey::from_jwk(&p256).unwrap_err().to_string();
        assert!(err.contains("P-256") && err.contains("only Ed25519"), "{err}");
        let short = json!({"kty": "RSA", "e": "AQAB", "n": b64url(&[0xffu8; 128])});
        let err = SshPublicKey::from_jwk(&short).unwrap_err().to_string();
        assert!(err.contains("2048") && err.contains("1024"), "{err}");
        let bad_x = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&[1; 31])});
        assert!(SshPublicKey::from_jwk(&bad_x).is_err());
        let x448 = json!({"kty": "OKP", "crv": "Ed448", "x": b64url(&[1; 57])});
        assert!(SshPublicKey::from_jwk(&x448).is_err());
        let mut private = jwk.clone();
        private["d"] = json!(b64url(&[2; 32]));
        assert!(SshPublicKey::from_jwk(&private).is_err());
        assert!(SshPublicKey::from_jwk(&json!({"kty": "RSA", "e": "AQAB"})).is_err());
    }
}
