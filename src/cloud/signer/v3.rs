//! Signature V3 (`ACS3-HMAC-SHA256`), the signature Alibaba's current
//! (Tea/darabonba) SDKs send by default, as pure stages.
//!
//! The request's metadata travels in headers instead of query parameters
//! (`x-acs-action`, `x-acs-version`, `x-acs-date`, `x-acs-signature-nonce`,
//! `x-acs-content-sha256`, and `x-acs-security-token` with STS credentials);
//! the query string holds only the API's own parameters.
//!
//! ```text
//! HashedPayload    = hex(SHA-256(body))                 (= x-acs-content-sha256)
//! CanonicalRequest = METHOD \n PATH \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n HashedPayload
//!   CanonicalQuery   = enc(k)=enc(v)&... sorted by name (V1's percent-encoding)
//!   CanonicalHeaders = name:value\n ... lower-case names, trimmed values, sorted by name
//!   SignedHeaders    = name;name;...  the same names, sorted
//! StringToSign     = "ACS3-HMAC-SHA256" \n hex(SHA-256(CanonicalRequest))
//! Signature        = hex(HMAC-SHA256(key = AccessKeySecret, StringToSign))   (no "&" appended)
//! Authorization    = ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<SignedHeaders>,Signature=<Signature>
//! ```
//!
//! Every stage is checked against the vectors computed with Alibaba's
//! `alibabacloud_tea_openapi.utils.Utils.get_authorization`
//! (`tests/fixtures/signature-v3-vectors.json`). The client signs with these
//! functions and the simulator verifies with the very same ones; the
//! simulator reads the `Authorization` header with [`parse_authorization`],
//! which answers hostile input with an [`AuthorizationError`], never a panic.

use std::collections::BTreeMap;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};

/// The algorithm name, first word of the `Authorization` header and first
/// line of the string to sign.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// `x-acs-action`: the API's name.
pub const ACTION: &str = "x-acs-action";
/// `x-acs-version`: the API version.
pub const VERSION: &str = "x-acs-version";
/// `x-acs-date`: when the request was signed (ISO 8601, UTC, seconds).
pub const DATE: &str = "x-acs-date";
/// `x-acs-signature-nonce`: unique per attempt.
pub const NONCE: &str = "x-acs-signature-nonce";
/// `x-acs-content-sha256`: the hashed payload.
pub const CONTENT_SHA256: &str = "x-acs-content-sha256";
/// `x-acs-security-token`: the STS token, with temporary credentials only.
pub const SECURITY_TOKEN: &str = "x-acs-security-token";
/// The header that carries the signature.
pub const AUTHORIZATION: &str = "authorization";

/// Lower-case hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// `hex(SHA-256(body))`: the last line of the canonical request and the
/// value of `x-acs-content-sha256`.
pub fn hashed_payload(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

/// The canonical query string: the API's parameters sorted by name, names
/// and values percent-encoded as V1 encodes them (space `%20`, `*` `%2A`,
/// `~` kept). Empty when there are none.
pub fn canonical_query(query: &BTreeMap<String, String>) -> String {
    super::canonicalized_query(query)
}

/// The signed headers of a request in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalHeaders {
    /// `name:value\n` per header, sorted by name; a name sent more than once
    /// has its trimmed values sorted and joined with `,` (as the SDK does).
    pub canonical: String,
    /// The names joined with `;`: the `SignedHeaders` of the `Authorization`.
    pub signed: String,
}

/// Canonicalizes `headers` (name, value): names lower-cased, values trimmed,
/// sorted by name. Every header given is signed.
pub fn canonical_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> CanonicalHeaders {
    let mut by_name: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers {
        by_name
            .entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(value.trim());
    }
    let mut canonical = String::with_capacity(by_name.len() * 48);
    let mut signed = String::with_capacity(by_name.len() * 16);
    for (i, (name, values)) in by_name.iter_mut().enumerate() {
        values.sort_unstable();
        canonical.push_str(name);
        canonical.push(':');
        for (j, v) in values.iter().enumerate() {
            if j > 0 {
                canonical.push(',');
            }
            canonical.push_str(v);
        }
        canonical.push('\n');
        if i > 0 {
            signed.push(';');
        }
        signed.push_str(name);
    }
    CanonicalHeaders { canonical, signed }
}

/// `METHOD \n PATH \n query \n canonical headers \n signed headers \n payload hash`.
/// The canonical headers end with their own newline, so a blank line
/// separates them from the signed-header list.
pub fn canonical_request(
    method: &str,
    path: &str,
    canonical_query: &str,
    headers: &CanonicalHeaders,
    hashed_payload: &str,
) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let mut out = String::with_capacity(
        method.len()
            + path.len()
            + canonical_query.len()
            + headers.canonical.len()
            + headers.signed.len()
            + hashed_payload.len()
            + 5,
    );
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    out.push_str(&headers.canonical);
    out.push('\n');
    out.push_str(&headers.signed);
    out.push('\n');
    out.push_str(hashed_payload);
    out
}

/// `ACS3-HMAC-SHA256 \n hex(SHA-256(canonical request))`.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// `hex(HMAC-SHA256(key = secret, string to sign))`: the key is the secret
/// as is (V1 appends `&`; V3 does not).
pub fn signature(string_to_sign: &str, access_key_secret: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(access_key_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The `Authorization` header's value.
pub fn authorization(access_key_id: &str, signed_headers: &str, signature: &str) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// The parts of a request that V3 signs.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path (`/` for RPC).
    pub path: &'a str,
    /// The query parameters, decoded.
    pub query: &'a BTreeMap<String, String>,
    /// The signed headers (name, value), any case, any order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body as sent.
    pub body: &'a [u8],
}

/// A request signed with V3: every stage, for tests and for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// The `SignedHeaders` list.
    pub signed_headers: String,
    /// The hex signature.
    pub signature: String,
}

/// All stages at once.
pub fn sign(req: &Request<'_>, access_key_secret: &str) -> Signed {
    let headers = canonical_headers(req.headers.iter().copied());
    let canonical_request = canonical_request(
        req.method,
        req.path,
        &canonical_query(req.query),
        &headers,
        &hashed_payload(req.body),
    );
    let string_to_sign = string_to_sign(&canonical_request);
    let signature = signature(&string_to_sign, access_key_secret);
    Signed {
        canonical_request,
        string_to_sign,
        signed_headers: headers.signed,
        signature,
    }
}

/// The longest `Authorization` value [`parse_authorization`] reads (real
/// ones are about 250 bytes).
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;
/// The most headers a `SignedHeaders` list may name.
pub const MAX_SIGNED_HEADERS: usize = 64;

/// An `Authorization` header, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// The AccessKeyId (`Credential=`).
    pub credential: &'a str,
    /// `SignedHeaders=` split on `;`: lower-case, sorted, unique.
    pub signed_headers: Vec<&'a str>,
    /// `Signature=`: 64 lower-case hex digits.
    pub signature: &'a str,
}

/// Why an `Authorization` header cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizationError {
    /// Longer than [`MAX_AUTHORIZATION_LEN`].
    TooLong(usize),
    /// Another scheme than `ACS3-HMAC-SHA256` (the name shown is cut short).
    Algorithm(String),
    /// A part that is not `Name=value`.
    Malformed(String),
    /// A part other than `Credential`, `SignedHeaders` and `Signature`.
    UnknownPart(String),
    /// A part given twice.
    Duplicate(&'static str),
    /// A part missing or empty.
    Missing(&'static str),
    /// A `SignedHeaders` entry that is empty, not lower-case, out of order,
    /// repeated, or one too many.
    SignedHeaders(String),
    /// A signature that is not 64 lower-case hex digits.
    SignatureFormat,
}

/// Cuts `s` to a few characters for an error message (never splitting a
/// character).
fn cut(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

impl fmt::Display for AuthorizationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorizationError::TooLong(len) => write!(
                f,
                "the Authorization header is {len} bytes long, more than {MAX_AUTHORIZATION_LEN}"
            ),
            AuthorizationError::Algorithm(got) => write!(
                f,
                "the Authorization header must start with `{ALGORITHM} `, got `{}`",
                cut(got)
            ),
            AuthorizationError::Malformed(part) => write!(
                f,
                "the Authorization part `{}` is not Name=value",
                cut(part)
            ),
            AuthorizationError::UnknownPart(name) => write!(
                f,
                "the Authorization part `{}` is unknown: expected Credential, SignedHeaders and Signature",
                cut(name)
            ),
            AuthorizationError::Duplicate(name) => {
                write!(f, "the Authorization part `{name}` is given more than once")
            }
            AuthorizationError::Missing(name) => {
                write!(f, "the Authorization part `{name}` is missing or empty")
            }
            AuthorizationError::SignedHeaders(why) => write!(f, "SignedHeaders {why}"),
            AuthorizationError::SignatureFormat => {
                f.write_str("the Signature must be 64 lower-case hex digits")
            }
        }
    }
}

impl std::error::Error for AuthorizationError {}

/// Reads `ACS3-HMAC-SHA256 Credential=ID,SignedHeaders=a;b,Signature=HEX`.
/// Spaces around the parts are allowed; everything else must be exact.
///
/// # Errors
///
/// Any deviation, as an [`AuthorizationError`] that says which.
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, AuthorizationError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthorizationError::TooLong(value.len()));
    }
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(AuthorizationError::Algorithm(algorithm.to_owned()));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (name, v) = part
            .split_once('=')
            .ok_or_else(|| AuthorizationError::Malformed(part.to_owned()))?;
        let (slot, name) = match name.trim() {
            "Credential" => (&mut credential, "Credential"),
            "SignedHeaders" => (&mut signed_headers, "SignedHeaders"),
            "Signature" => (&mut signature, "Signature"),
            other => return Err(AuthorizationError::UnknownPart(other.to_owned())),
        };
        if slot.replace(v.trim()).is_some() {
            return Err(AuthorizationError::Duplicate(name));
        }
    }
    fn present<'v>(v: Option<&'v str>, name: &'static str) -> Result<&'v str, AuthorizationError> {
        v.filter(|v| !v.is_empty())
            .ok_or(AuthorizationError::Missing(name))
    }
    let credential = present(credential, "Credential")?;
    let signed_headers = present(signed_headers, "SignedHeaders")?;
    let signature = present(signature, "Signature")?;
    if signature.len() != 64 || !signature.bytes().all(|b| HEX.contains(&b)) {
        return Err(AuthorizationError::SignatureFormat);
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if names.len() > MAX_SIGNED_HEADERS {
        return Err(AuthorizationError::SignedHeaders(format!(
            "names {} headers, more than {MAX_SIGNED_HEADERS}",
            names.len()
        )));
    }
    for (i, name) in names.iter().enumerate() {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(AuthorizationError::SignedHeaders(format!(
                "has `{}`: a header name must be lower-case letters, digits, `-` or `_`",
                cut(name)
            )));
        }
        if i > 0 && names[i - 1] >= *name {
            return Err(AuthorizationError::SignedHeaders(format!(
                "must be sorted and unique, but `{}` comes after `{}`",
                cut(name),
                cut(names[i - 1])
            )));
        }
    }
    Ok(Authorization {
        credential,
        signed_headers: names,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One vector of `tests/fixtures/signature-v3-vectors.json`, computed
    /// with Alibaba's own SDK (ground truth).
    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        method: String,
        path: String,
        query: BTreeMap<String, String>,
        headers: BTreeMap<String, String>,
        body: String,
        access_key_id: String,
        access_key_secret: String,
        canonical_request: String,
        string_to_sign: String,
        authorization: String,
    }

    #[derive(serde::Deserialize)]
    struct File {
        algorithm: String,
        vectors: Vec<Vector>,
    }

    fn vectors() -> Vec<Vector> {
        let file: File = serde_json::from_str(include_str!(
            "../../../tests/fixtures/signature-v3-vectors.json"
        ))
        .unwrap();
        assert_eq!(file.algorithm, ALGORITHM);
        assert_eq!(file.vectors.len(), 5, "every published vector is checked");
        file.vectors
    }

    fn headers(v: &Vector) -> Vec<(&str, &str)> {
        v.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The canonical request's lines: (headers block, signed list, payload hash).
    fn tail(canonical_request: &str) -> (&str, &str, &str) {
        let mut lines = canonical_request.rsplitn(3, '\n');
        let payload = lines.next().unwrap();
        let signed = lines.next().unwrap();
        (lines.next().unwrap(), signed, payload)
    }

    #[test]
    fn every_vector_hashes_its_payload() {
        for v in vectors() {
            let (_, _, payload) = tail(&v.canonical_request);
            assert_eq!(hashed_payload(v.body.as_bytes()), payload, "{}", v.name);
            assert_eq!(
                hashed_payload(v.body.as_bytes()),
                v.headers[CONTENT_SHA256],
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn every_vector_canonicalizes_query_and_headers() {
        for v in vectors() {
            let lines: Vec<&str> = v.canonical_request.splitn(4, '\n').collect();
            assert_eq!(lines[0], v.method, "{}", v.name);
            assert_eq!(lines[1], v.path, "{}", v.name);
            assert_eq!(canonical_query(&v.query), lines[2], "{}", v.name);
            let h = canonical_headers(headers(&v));
            let (_, signed, _) = tail(&v.canonical_request);
            assert_eq!(h.signed, signed, "{}", v.name);
            assert!(
                lines[3].starts_with(&h.canonical),
                "{}: {:?} vs {:?}",
                v.name,
                h.canonical,
                lines[3]
            );
        }
    }

    #[test]
    fn every_vector_builds_its_canonical_request_and_string_to_sign() {
        for v in vectors() {
            let h = canonical_headers(headers(&v));
            let cr = canonical_request(
                &v.method,
                &v.path,
                &canonical_query(&v.query),
                &h,
                &hashed_payload(v.body.as_bytes()),
            );
            assert_eq!(cr, v.canonical_request, "{}", v.name);
            assert_eq!(string_to_sign(&cr), v.string_to_sign, "{}", v.name);
        }
    }

    #[test]
    fn every_vector_signs_and_authorizes() {
        for v in vectors() {
            let hs = headers(&v);
            let signed = sign(
                &Request {
                    method: &v.method,
                    path: &v.path,
                    query: &v.query,
                    headers: &hs,
                    body: v.body.as_bytes(),
                },
                &v.access_key_secret,
            );
            assert_eq!(signed.canonical_request, v.canonical_request, "{}", v.name);
            assert_eq!(signed.string_to_sign, v.string_to_sign, "{}", v.name);
            let auth = authorization(&v.access_key_id, &signed.signed_headers, &signed.signature);
            assert_eq!(auth, v.authorization, "{}", v.name);
            assert_eq!(
                signature(&v.string_to_sign, &v.access_key_secret),
                signed.signature,
                "{}",
                v.name
            );
            // And the server reads it back.
            let parsed = parse_authorization(&v.authorization).unwrap();
            assert_eq!(parsed.credential, v.access_key_id);
            assert_eq!(parsed.signed_headers.join(";"), signed.signed_headers);
            assert!(super::super::signatures_equal(
                parsed.signature,
                &signed.signature
            ));
            // A wrong secret gives another signature.
            assert_ne!(
                signature(&v.string_to_sign, &format!("{}x", v.access_key_secret)),
                signed.signature
            );
        }
    }

    #[test]
    fn hostile_authorization_headers_are_refused_with_a_reason() {
        let good = "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-date,Signature=";
        let sig = "a".repeat(64);
        let cases: Vec<(String, AuthorizationError)> = vec![
            (String::new(), AuthorizationError::Algorithm(String::new())),
            (
                "ACS3-HMAC-SHA1 Credential=AK".into(),
                AuthorizationError::Algorithm("ACS3-HMAC-SHA1".into()),
            ),
            (
                "acs3-hmac-sha256 Credential=AK".into(),
                AuthorizationError::Algorithm("acs3-hmac-sha256".into()),
            ),
            (
                "ACS3-HMAC-SHA256".into(),
                AuthorizationError::Malformed(String::new()),
            ),
            (
                format!("{good}{sig},Signature={sig}"),
                AuthorizationError::Duplicate("Signature"),
            ),
            (
                format!(
                    "ACS3-HMAC-SHA256 Credential=A,Credential=B,SignedHeaders=host,Signature={sig}"
                ),
                AuthorizationError::Duplicate("Credential"),
            ),
            (
                format!("ACS3-HMAC-SHA256 SignedHeaders=host,Signature={sig}"),
                AuthorizationError::Missing("Credential"),
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature={sig}"),
                AuthorizationError::Missing("Credential"),
            ),
            (
                format!("{good}{sig},Extra=1"),
                AuthorizationError::UnknownPart("Extra".into()),
            ),
            (
                format!("{good}{}", "A".repeat(64)),
                AuthorizationError::SignatureFormat,
            ),
            (format!("{good}abc"), AuthorizationError::SignatureFormat),
            (
                format!("{good}{sig},"),
                AuthorizationError::Malformed(String::new()),
            ),
            (
                format!(
                    "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=x-acs-date;host,Signature={sig}"
                ),
                AuthorizationError::SignedHeaders(
                    "must be sorted and unique, but `host` comes after `x-acs-date`".into(),
                ),
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;host,Signature={sig}"),
                AuthorizationError::SignedHeaders(
                    "must be sorted and unique, but `host` comes after `host`".into(),
                ),
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=Host,Signature={sig}"),
                AuthorizationError::SignedHeaders(
                    "has `Host`: a header name must be lower-case letters, digits, `-` or `_`"
                        .into(),
                ),
            ),
            (
                format!(
                    "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;;x-acs-date,Signature={sig}"
                ),
                AuthorizationError::SignedHeaders(
                    "has ``: a header name must be lower-case letters, digits, `-` or `_`".into(),
                ),
            ),
            (
                format!("{}{sig}", good.repeat(200)),
                AuthorizationError::TooLong(good.len() * 200 + 64),
            ),
        ];
        for (value, want) in cases {
            let got = parse_authorization(&value);
            assert_eq!(got, Err(want.clone()), "{value:?}");
            assert!(!want.to_string().is_empty());
        }
        let many: Vec<String> = (0..=MAX_SIGNED_HEADERS)
            .map(|i| format!("h{i:03}"))
            .collect();
        let value = format!(
            "ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={},Signature={sig}",
            many.join(";")
        );
        assert!(matches!(
            parse_authorization(&value),
            Err(AuthorizationError::SignedHeaders(_))
        ));
        // Spaces around the parts are fine (some SDKs write `, `).
        let spaced = format!("ACS3-HMAC-SHA256 Credential=AK, SignedHeaders=host, Signature={sig}");
        assert_eq!(parse_authorization(&spaced).unwrap().credential, "AK");
        // A long multi-byte name is cut on a character boundary.
        let e = AuthorizationError::UnknownPart("Ω".repeat(100)).to_string();
        assert!(e.contains("..."), "{e}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn header_name() -> impl Strategy<Value = String> {
            "[a-z][a-z0-9-]{0,12}"
        }

        proptest! {
            /// Header names are case-insensitive and their order does not matter.
            #[test]
            fn header_order_and_case_do_not_change_the_signature(
                headers in proptest::collection::btree_map(header_name(), "[ -~]{0,20}", 1..8),
                seed in any::<u64>(),
            ) {
                let plain: Vec<(String, String)> = headers.into_iter().collect();
                let mut shuffled: Vec<(String, String)> = plain
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        let k = if (seed >> (i % 64)) & 1 == 1 { k.to_ascii_uppercase() } else { k.clone() };
                        (k, format!("  {v} "))
                    })
                    .collect();
                shuffled.rotate_left((seed % plain.len() as u64) as usize);
                shuffled.reverse();
                let a = canonical_headers(plain.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let b = canonical_headers(shuffled.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                prop_assert_eq!(&a, &b);
                // The signed list is the sorted names.
                let names: Vec<&str> = plain.iter().map(|(k, _)| k.as_str()).collect();
                prop_assert_eq!(a.signed, names.join(";"));
            }

            /// Any unicode query and body: the canonical request is what the
            /// server recomputes after the query went over the wire.
            #[test]
            fn unicode_query_survives_the_wire(
                query in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..6),
                body in any::<String>(),
            ) {
                let wire = canonical_query(&query);
                prop_assert!(wire.is_ascii());
                let decoded: BTreeMap<String, String> = super::super::super::parse_form(&wire).into_iter().collect();
                prop_assert_eq!(&decoded, &query);
                let headers = [("host", "h"), (CONTENT_SHA256, "x")];
                let req = |q| Request { method: "POST", path: "/", query: q, headers: &headers, body: body.as_bytes() };
                prop_assert_eq!(sign(&req(&query), "k"), sign(&req(&decoded), "k"));
                let signed = sign(&req(&query), "k");
                prop_assert_eq!(signed.signature.len(), 64);
                prop_assert!(signed.canonical_request.ends_with(&hashed_payload(body.as_bytes())));
            }

            /// Query values are encoded with `%20` for a space, `%2A` for `*`
            /// and upper-case hex; `~` stays.
            #[test]
            fn query_encoding_is_alibabas(value in "[ *~a-z+/=&%Ω]{0,16}") {
                let q: BTreeMap<String, String> = [("K".to_owned(), value.clone())].into();
                let c = canonical_query(&q);
                prop_assert!(!c[2..].contains('+') && !c[2..].contains('*') && !c[2..].contains(' '));
                prop_assert_eq!(c[2..].matches('~').count(), value.matches('~').count());
                for escape in c.split('%').skip(1) {
                    prop_assert!(escape.len() >= 2 && escape[..2].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{}", c);
                }
            }

            /// Whatever the header value, parsing never panics.
            #[test]
            fn parse_authorization_never_panics(value in any::<String>()) {
                let _ = parse_authorization(&value);
            }

            /// What [`authorization`] writes, [`parse_authorization`] reads.
            #[test]
            fn authorization_round_trips(
                id in "[A-Za-z0-9.]{1,30}",
                names in proptest::collection::btree_set(header_name(), 1..10),
                sig in "[0-9a-f]{64}",
            ) {
                let signed: Vec<&str> = names.iter().map(String::as_str).collect();
                let value = authorization(&id, &signed.join(";"), &sig);
                let parsed = parse_authorization(&value).unwrap();
                prop_assert_eq!(parsed.credential, id.as_str());
                prop_assert_eq!(parsed.signed_headers, signed);
                prop_assert_eq!(parsed.signature, sig.as_str());
            }
        }

        #[test]
        fn empty_body_hashes_to_the_sha256_of_nothing() {
            assert_eq!(
                hashed_payload(b""),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
            let q = BTreeMap::new();
            assert_eq!(canonical_query(&q), "");
        }
    }
}
