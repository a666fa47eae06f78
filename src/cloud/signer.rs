//! Alibaba Cloud RPC signature V1 (HMAC-SHA1, `SignatureVersion=1.0`), as
//! pure stages; signature V3 (`ACS3-HMAC-SHA256`) is in [`v3`], and
//! [`SignatureVersion`] says which one a request uses.
//!
//! Nothing here reads the clock or a random source: the timestamp and nonce are
//! passed in, so every stage can be checked against the vectors computed with
//! Alibaba's own SDK (`tests/fixtures/signature-vectors.json`).
//!
//! ```text
//! params ──sort by name──> CanonicalizedQueryString = enc(k)=enc(v)&...
//!        StringToSign = METHOD & enc("/") & enc(CanonicalizedQueryString)
//!        Signature    = base64(HMAC-SHA1(secret + "&", StringToSign))
//! ```
//!
//! The client signs with these functions and the simulator verifies with the
//! very same ones, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;

use super::common::{self, Common};

pub mod v3;

/// Which signature a request carries.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SignatureVersion {
    /// V1: HMAC-SHA1 over the sorted query parameters (`Signature` in the
    /// query string), as Alibaba's older SDKs and the aliyun CLI sign.
    #[default]
    V1,
    /// V3: `ACS3-HMAC-SHA256` over the method, query, headers and body hash
    /// (an `Authorization` header), as Alibaba's current SDKs sign.
    V3,
}

impl SignatureVersion {
    /// Both, V1 first.
    pub const ALL: [SignatureVersion; 2] = [SignatureVersion::V1, SignatureVersion::V3];

    /// Whether it is V1 (the default, left out of plan JSON).
    pub fn is_v1(&self) -> bool {
        *self == SignatureVersion::V1
    }

    /// `v1` or `v3`: the name on the command line, in playbooks and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureVersion::V1 => "v1",
            SignatureVersion::V3 => "v3",
        }
    }
}

impl std::fmt::Display for SignatureVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature name that is neither `v1` nor `v3`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature `{0}`: expected v1 (HMAC-SHA1) or v3 (ACS3-HMAC-SHA256)")]
pub struct UnknownSignature(pub String);

impl std::str::FromStr for SignatureVersion {
    type Err = UnknownSignature;

    /// `v1`/`v3`, any case.
    fn from_str(s: &str) -> Result<SignatureVersion, UnknownSignature> {
        SignatureVersion::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownSignature(s.to_owned()))
    }
}

/// Bytes Alibaba leaves unencoded: RFC 3986 "unreserved" (`A-Z a-z 0-9 - _ . ~`).
const ALIBABA_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `SignatureMethod` sent with every request.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// `SignatureVersion` sent with every request.
pub const SIGNATURE_VERSION: &str = "1.0";
/// The format of `Timestamp`: ISO 8601 in UTC, seconds precision.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Alibaba's `percentEncode`: UTF-8, every byte outside `A-Z a-z 0-9 - _ . ~`
/// as `%XY` with upper-case hex (space is `%20`, `*` is `%2A`, `~` stays).
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ALIBABA_ENCODE_SET).to_string()
}

/// Decodes one `application/x-www-form-urlencoded` component, as a server does:
/// `+` is a space and `%XY` a byte. Invalid UTF-8 is replaced, never a panic.
pub fn form_decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// Splits a query string or form body into decoded `(name, value)` pairs.
/// A pair without `=` has an empty value (as servers read `SignatureType`).
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (form_decode(k), form_decode(v)),
            None => (form_decode(pair), String::new()),
        })
        .collect()
}

/// Formats a timestamp the way the `Timestamp` parameter wants it.
pub fn format_timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime(TIMESTAMP_FORMAT).to_string()
}

/// The canonicalized query string: parameters sorted by (un-encoded) name,
/// each name and value percent-encoded, joined with `&`. `Signature` itself
/// must not be in `params`.
pub fn canonicalized_query(params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(params.len() * 32);
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "{}={}",
            percent_encoding::utf8_percent_encode(k, ALIBABA_ENCODE_SET),
            percent_encoding::utf8_percent_encode(v, ALIBABA_ENCODE_SET)
        );
    }
    out
}

/// `StringToSign = METHOD & percentEncode("/") & percentEncode(canonicalized query)`.
pub fn string_to_sign(method: &str, canonicalized_query: &str) -> String {
    format!(
        "{}&%2F&{}",
        method.to_ascii_uppercase(),
        percent_encode(canonicalized_query)
    )
}

/// `Base64(HMAC-SHA1(key = secret + "&", string_to_sign))`.
pub fn signature(string_to_sign: &str, access_key_secret: &str) -> String {
    let mut key = Vec::with_capacity(access_key_secret.len() + 1);
    key.extend_from_slice(access_key_secret.as_bytes());
    key.push(b'&');
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// All stages at once: the signature of `params` (which must not hold `Signature`).
pub fn sign(method: &str, params: &BTreeMap<String, String>, access_key_secret: &str) -> String {
    signature(
        &string_to_sign(method, &canonicalized_query(params)),
        access_key_secret,
    )
}

/// Compares two signatures in constant time (the simulator's check).
pub fn signatures_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The common parameters of one attempt. `timestamp` and `nonce` are fresh for
/// every attempt (the caller supplies them; this module never reads a clock).
pub struct CommonParams<'a> {
    /// API action, e.g. `StopDtsJob`.
    pub action: &'a str,
    /// API version, e.g. `2020-01-01`.
    pub version: &'a str,
    /// The AccessKeyId (an `STS.` id with STS credentials).
    pub access_key_id: &'a str,
    /// The STS token, when the credentials are temporary.
    pub security_token: Option<&'a str>,
    /// `SignatureNonce`: unique per attempt.
    pub nonce: &'a str,
    /// `Timestamp` of the attempt.
    pub timestamp: jiff::Timestamp,
}

impl CommonParams<'_> {
    /// Adds the common parameters to `params` (overwriting any of the same name).
    pub fn apply(&self, params: &mut BTreeMap<String, String>) {
        let timestamp = format_timestamp(self.timestamp);
        for c in common::ALL {
            let value = match c {
                Common::Action => Some(self.action),
                Common::Version => Some(self.version),
                Common::Format => Some("JSON"),
                Common::AccessKeyId => Some(self.access_key_id),
                Common::SignatureMethod => Some(SIGNATURE_METHOD),
                Common::SignatureVersion => Some(SIGNATURE_VERSION),
                Common::SignatureNonce => Some(self.nonce),
                Common::Timestamp => Some(timestamp.as_str()),
                Common::SecurityToken => self.security_token,
                // Computed over all the others, by the caller.
                Common::Signature => None,
            };
            if let Some(v) = value {
                params.insert(c.name().to_owned(), v.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_follows_alibaba_rules() {
        assert_eq!(
            percent_encode("a b*c~d/e+f=g&h%i\"j"),
            "a%20b%2Ac~d%2Fe%2Bf%3Dg%26h%25i%22j"
        );
        assert_eq!(percent_encode("✓"), "%E2%9C%93");
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
    }

    #[test]
    fn form_decode_reads_plus_as_space() {
        assert_eq!(form_decode("a+b%2Bc%20d"), "a b+c d");
        assert_eq!(
            parse_form("A=1&SignatureType=&B"),
            vec![
                ("A".into(), "1".into()),
                ("SignatureType".into(), String::new()),
                ("B".into(), String::new()),
            ]
        );
    }

    #[test]
    fn documented_example_signs() {
        let params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            sign("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert_eq!(
            sign("POST", &params, "testsecret"),
            "MxbnVAM4w6sft9xjVpe/GCKueuk="
        );
    }

    /// One vector of `tests/fixtures/signature-vectors.json`, computed with
    /// Alibaba's own SDK (ground truth).
    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        method: String,
        params: BTreeMap<String, String>,
        secret: String,
        canonicalized_query_string: String,
        string_to_sign: String,
        signature: String,
        #[serde(default)]
        sdk_url_path_and_query: Option<String>,
    }

    fn vectors() -> Vec<Vector> {
        let v: Vec<Vector> =
            serde_json::from_str(include_str!("../../tests/fixtures/signature-vectors.json"))
                .unwrap();
        assert_eq!(v.len(), 9, "every published vector is checked");
        v
    }

    #[test]
    fn every_vector_canonicalizes() {
        for v in vectors() {
            assert_eq!(
                canonicalized_query(&v.params),
                v.canonicalized_query_string,
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn every_vector_builds_its_string_to_sign() {
        for v in vectors() {
            assert_eq!(
                string_to_sign(&v.method, &v.canonicalized_query_string),
                v.string_to_sign,
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn every_vector_signs() {
        for v in vectors() {
            assert_eq!(
                signature(&v.string_to_sign, &v.secret),
                v.signature,
                "{}",
                v.name
            );
            assert_eq!(
                sign(&v.method, &v.params, &v.secret),
                v.signature,
                "{}",
                v.name
            );
            assert!(signatures_equal(
                &sign(&v.method, &v.params, &v.secret),
                &v.signature
            ));
        }
    }

    /// A URL signed by Alibaba's SDK (vector 9: its own parameter order, `+`
    /// and `/` escaped, an empty `SignatureType=`) verifies the way a server
    /// verifies: decode, drop `Signature`, re-sign.
    #[test]
    fn sdk_signed_url_verifies_as_a_server_checks_it() {
        let v = vectors()
            .into_iter()
            .find(|v| v.sdk_url_path_and_query.is_some())
            .unwrap();
        let url = v.sdk_url_path_and_query.unwrap();
        let (_, query) = url.split_once('?').unwrap();
        let mut params: BTreeMap<String, String> = parse_form(query).into_iter().collect();
        let sent = params.remove("Signature").unwrap();
        assert_eq!(sent, v.signature);
        assert_eq!(params, v.params);
        assert!(signatures_equal(
            &sign(&v.method, &params, &v.secret),
            &sent
        ));
        assert!(
            !signatures_equal(&sign("GET", &params, &v.secret), &sent),
            "the method is signed"
        );
    }

    #[test]
    fn common_params_are_the_documented_set() {
        let mut params = BTreeMap::new();
        let ts: jiff::Timestamp = "2024-05-01T08:00:00Z".parse().unwrap();
        CommonParams {
            action: "StopDtsJob",
            version: "2020-01-01",
            access_key_id: "testid",
            security_token: None,
            nonce: "n-1",
            timestamp: ts,
        }
        .apply(&mut params);
        let names: Vec<&str> = params.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "AccessKeyId",
                "Action",
                "Format",
                "SignatureMethod",
                "SignatureNonce",
                "SignatureVersion",
                "Timestamp",
                "Version"
            ]
        );
        assert_eq!(params["Timestamp"], "2024-05-01T08:00:00Z");
        assert_eq!(params["Format"], "JSON");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #[test]
            fn form_decode_inverts_percent_encode(s in any::<String>()) {
                prop_assert_eq!(form_decode(&percent_encode(&s)), s);
            }

            #[test]
            fn percent_encode_leaves_only_unreserved_and_upper_hex(s in any::<String>()) {
                let encoded = percent_encode(&s);
                let bytes = encoded.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    let b = bytes[i];
                    if b == b'%' {
                        prop_assert!(i + 3 <= bytes.len(), "truncated escape in {}", encoded);
                        let hex = &encoded[i + 1..i + 3];
                        prop_assert!(hex.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)), "{}", hex);
                        i += 3;
                    } else {
                        prop_assert!(b.is_ascii_alphanumeric() || b"-_.~".contains(&b), "{}", encoded);
                        i += 1;
                    }
                }
            }

            #[test]
            fn canonical_query_ignores_insertion_order(
                (pairs, shuffled) in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..12)
                    .prop_flat_map(|m| {
                        let pairs: Vec<(String, String)> = m.into_iter().collect();
                        (Just(pairs.clone()), Just(pairs).prop_shuffle())
                    })
            ) {
                let mut reversed = BTreeMap::new();
                for (k, v) in pairs.iter().rev() {
                    reversed.insert(k.clone(), v.clone());
                }
                let shuffled: BTreeMap<String, String> = shuffled.into_iter().collect();
                let in_order: BTreeMap<String, String> = pairs.into_iter().collect();
                prop_assert_eq!(canonicalized_query(&in_order), canonicalized_query(&shuffled));
                prop_assert_eq!(canonicalized_query(&in_order), canonicalized_query(&reversed));
            }

            /// What the client puts on the wire, a server decodes to the same
            /// parameters, so both compute the same signature.
            #[test]
            fn wire_round_trip_keeps_the_signature(
                params in proptest::collection::btree_map(any::<String>(), any::<String>(), 1..8)
            ) {
                let wire = canonicalized_query(&params);
                let decoded: BTreeMap<String, String> = parse_form(&wire).into_iter().collect();
                // An empty name encodes to `=value`, which a form decoder reads back
                // as the empty name: still the same map.
                prop_assert_eq!(&decoded, &params);
                prop_assert_eq!(sign("POST", &decoded, "k"), sign("POST", &params, "k"));
            }
        }
    }
}
