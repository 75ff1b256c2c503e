//! AWS Signature Version 4, both ways: signing the few S3 requests `object_store` does not
//! make (listing multipart uploads, `berth-blob`), and the pieces `berth-auth` verifies the
//! ECR API's signed requests with (the canonical request, the string to sign, the signature).
//! Pure: the caller passes the time. Checked against AWS's published example, in the S3 tests
//! by a real S3 server that verifies signatures, and in `berth-auth` on requests botocore signed.
//!
//! The algorithm (AWS General Reference, "Create a signed AWS API request"): a canonical
//! request (method, URI-encoded path, sorted URI-encoded query, sorted lowercase headers,
//! the signed header names, the payload's SHA-256) is hashed into a string to sign with the
//! time and the credential scope (`date/region/service/aws4_request`), and signed with a key
//! derived from the secret by four HMAC-SHA256 steps.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of the empty payload, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// SigV4's URI encoding: unreserved characters (`A-Z a-z 0-9 - . _ ~`) as they are, `/` kept
/// in paths, everything else `%XX` with upper-case hex.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The signing key for `date` (`YYYYMMDD`), region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// A request to sign.
pub struct Request<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path as sent (not yet encoded).
    pub path: &'a str,
    /// Query parameters, not yet encoded (a parameter without a value has `""`).
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign (`host` and `x-amz-date` at least), any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the payload (or `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

/// Who signs, where and when.
pub struct Scope<'a> {
    /// Access key id.
    pub key_id: &'a str,
    /// Secret access key.
    pub secret: &'a str,
    /// Region (`us-east-1`).
    pub region: &'a str,
    /// Service (`s3`).
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the `x-amz-date` header's value.
    pub amz_date: &'a str,
}

/// The canonical query string.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut q: Vec<(String, String)> =
        query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    q.sort();
    q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The canonical request from parts already in canonical form (`uri` encoded, `query` the
/// canonical query string) and the headers to sign, any case: their names are lower-cased
/// and sorted, values of one name joined with `,`, whitespace runs folded. Returns it with
/// the signed header names (`content-type;host;x-amz-date`).
pub fn canonical(
    method: &str,
    uri: &str,
    query: &str,
    headers: &[(&str, &str)],
    payload_sha256: &str,
) -> (String, String) {
    let mut by_name: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for (k, v) in headers {
        by_name.entry(k.to_ascii_lowercase()).or_default().push(v.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    let canonical_headers: String = by_name.iter().map(|(k, v)| format!("{k}:{}\n", v.join(","))).collect();
    let signed: String = by_name.keys().map(String::as_str).collect::<Vec<_>>().join(";");
    let uri = if uri.is_empty() { "/" } else { uri };
    (format!("{method}\n{uri}\n{query}\n{canonical_headers}\n{signed}\n{payload_sha256}"), signed)
}

/// The canonical request of `r` (its path and query encoded here) and the signed header names.
pub fn canonical_request(r: &Request<'_>) -> (String, String) {
    let path = if r.path.is_empty() { "/".to_string() } else { uri_encode(r.path, true) };
    canonical(r.method, &path, &canonical_query(r.query), r.headers, r.payload_sha256)
}

/// The hex signature of a canonical request: the string to sign (algorithm, `amz_date`,
/// the credential scope `date/region/service/aws4_request`, the request's SHA-256), signed
/// with the key derived from `secret`.
pub fn signature(canonical: &str, amz_date: &str, secret: &str, region: &str, service: &str) -> String {
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    hex::encode(hmac(&signing_key(secret, date, region, service), to_sign.as_bytes()))
}

/// The `Authorization` header value for `r`.
pub fn authorization(r: &Request<'_>, s: &Scope<'_>) -> String {
    let (canonical, signed) = canonical_request(r);
    let date = &s.amz_date[..8.min(s.amz_date.len())];
    let signature = signature(&canonical, s.amz_date, s.secret, s.region, s.service);
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={signed}, Signature={signature}",
        s.key_id, s.region, s.service
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of AWS's SigV4 documentation (IAM `ListUsers`, 2015-08-30).
    #[test]
    fn aws_documented_example() {
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam");
        assert_eq!(hex::encode(key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
        let r = Request {
            method: "GET",
            path: "/",
            query: &[("Version", "2010-05-08"), ("Action", "ListUsers")],
            headers: &[
                ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
                ("Host", "iam.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            payload_sha256: EMPTY_SHA256,
        };
        let s = Scope {
            key_id: "AKIDEXAMPLE",
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "iam",
            amz_date: "20150830T123600Z",
        };
        let (canonical, _) = canonical_request(&r);
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(
            authorization(&r, &s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn encoding_and_query_order() {
        assert_eq!(uri_encode("a b/c~d*", false), "a%20b%2Fc~d%2A");
        assert_eq!(uri_encode("/bucket/x y", true), "/bucket/x%20y");
        assert_eq!(canonical_query(&[("uploads", ""), ("prefix", "p/data/")]), "prefix=p%2Fdata%2F&uploads=");
    }
}
