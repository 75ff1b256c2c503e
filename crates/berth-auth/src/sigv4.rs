//! AWS Signature Version 4, verified (the ECR API's authentication: `aws ecr …` and boto3
//! sign every request with an access key). Pure: the caller finds the secret of the access
//! key the request names and passes the time.
//!
//! A request is accepted when its `Authorization` header is `AWS4-HMAC-SHA256
//! Credential=<key>/<yyyymmdd>/<region>/<service>/aws4_request, SignedHeaders=…,
//! Signature=…`, the credential's date is the day of `X-Amz-Date`, which is within
//! [`MAX_SKEW`] of now, `host` and `x-amz-date` are among the signed headers, the service is
//! the one expected (any region), no session token is sent (Berth issues no temporary
//! credentials), and the signature recomputed over the canonical request (method, path,
//! sorted query, signed headers with trimmed values, the body's SHA-256) matches, compared
//! in constant time. The canonical request and the signature are `berth_types::sigv4`'s, the
//! same code that signs Berth's own S3 requests.

use berth_types::sigv4;
use sha2::{Digest, Sha256};

/// How far `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a signed request is refused, with the error code AWS's JSON protocols use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No `Authorization` header (or not SigV4).
    #[error("{0}")]
    Missing(String),
    /// The header is malformed or leaves out something it must sign.
    #[error("{0}")]
    Incomplete(String),
    /// A session token: Berth issues no temporary credentials.
    #[error("{0}")]
    Token(String),
    /// The date is outside the allowed skew.
    #[error("{0}")]
    Expired(String),
    /// The signature does not match.
    #[error("{0}")]
    Mismatch(String),
}

impl SigError {
    /// The `__type` AWS answers with.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::Missing(_) => "MissingAuthenticationTokenException",
            SigError::Incomplete(_) => "IncompleteSignatureException",
            SigError::Token(_) => "UnrecognizedClientException",
            SigError::Expired(_) | SigError::Mismatch(_) => "InvalidSignatureException",
        }
    }
}

/// The parts of a request the signature covers.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The path, as sent (`/`).
    pub path: &'a str,
    /// The query string, as sent (without `?`; empty when none).
    pub query: &'a str,
    /// Every header `(name, value)` as received (names in any case).
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

/// What the `Authorization` header claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id.
    pub access_key: String,
    /// `yyyymmdd`.
    pub date: String,
    /// The region the client signed for.
    pub region: String,
    /// The service (`ecr`).
    pub service: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Parse the `Authorization` header (step one: the caller then looks the key up).
    pub fn credential(&self) -> Result<Credential, SigError> {
        if self.header("x-amz-security-token").is_some() {
            return Err(SigError::Token(
                "The security token included in the request is invalid: Berth issues no temporary credentials; sign \
                 with an access key of a user or robot account"
                    .into(),
            ));
        }
        let auth = self.header("authorization").ok_or_else(|| {
            SigError::Missing("Missing Authentication Token: sign the request with an access key (AWS SigV4)".into())
        })?;
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
            SigError::Incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm".into())
        })?;
        let (mut cred, mut signed, mut sig) = (None, None, None);
        for part in rest.split(',') {
            match part.trim().split_once('=') {
                Some(("Credential", v)) => cred = Some(v.trim()),
                Some(("SignedHeaders", v)) => signed = Some(v.trim()),
                Some(("Signature", v)) => sig = Some(v.trim()),
                _ => {}
            }
        }
        let incomplete = |what: &str| {
            SigError::Incomplete(format!("Authorization header requires '{what}' parameter. Authorization={auth}"))
        };
        let (cred, signed, sig) = (
            cred.ok_or(incomplete("Credential"))?,
            signed.ok_or(incomplete("SignedHeaders"))?,
            sig.ok_or(incomplete("Signature"))?,
        );
        let parts: Vec<&str> = cred.split('/').collect();
        let [key, date, region, service, "aws4_request"] = parts[..] else {
            return Err(SigError::Incomplete(format!(
                "Credential should be scoped to a valid region, like <key>/<yyyymmdd>/<region>/<service>/aws4_request, not {cred:?}"
            )));
        };
        let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
        for must in ["host", "x-amz-date"] {
            if !signed_headers.iter().any(|h| h == must) {
                return Err(SigError::Incomplete(format!("'{must}' must be a signed header")));
            }
        }
        Ok(Credential {
            access_key: key.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature: sig.to_owned(),
        })
    }

    /// The canonical request of SigV4 for these signed headers: the path as sent (`/` for
    /// the JSON APIs), the query's pairs decoded and encoded again in canonical order.
    fn canonical(&self, signed_headers: &[String]) -> String {
        let decode = |x: &str| percent_encoding::percent_decode_str(x).decode_utf8_lossy().into_owned();
        let query: Vec<(String, String)> = self
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect();
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter(|(k, _)| signed_headers.iter().any(|h| k.eq_ignore_ascii_case(h)))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let payload = match self.header("x-amz-content-sha256") {
            Some(h) if h != "UNSIGNED-PAYLOAD" => h.to_owned(),
            _ => hex::encode(Sha256::digest(self.body)),
        };
        sigv4::canonical(self.method, self.path, &sigv4::canonical_query(&query), &headers, &payload).0
    }

    /// Verify the signature with the access key's `secret`, at `now` (Unix seconds), for
    /// `service`.
    pub fn verify(&self, c: &Credential, secret: &str, service: &str, now: i64) -> Result<(), SigError> {
        if c.service != service {
            return Err(SigError::Mismatch(format!(
                "Credential should be scoped to correct service: '{service}', not {:?}",
                c.service
            )));
        }
        let amz_date =
            self.header("x-amz-date").ok_or_else(|| SigError::Incomplete("the X-Amz-Date header is missing".into()))?;
        let at = parse_amz_date(amz_date)
            .ok_or_else(|| SigError::Incomplete(format!("X-Amz-Date {amz_date:?} is not yyyymmddThhmmssZ")))?;
        if !amz_date.starts_with(&c.date) {
            return Err(SigError::Mismatch(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: {:?} != {:?}",
                c.date,
                &amz_date[..8.min(amz_date.len())]
            )));
        }
        if (now - at).abs() > MAX_SKEW_SECS {
            return Err(SigError::Expired(format!(
                "Signature expired: {amz_date} is more than 5 minutes from the server's time {} (check the client's clock)",
                crate::rfc3339(now * 1000)
            )));
        }
        let canonical = self.canonical(&c.signed_headers);
        let expected = sigv4::signature(&canonical, amz_date, secret, &c.region, &c.service);
        if crate::secret::ct_eq(expected.as_bytes(), c.signature.to_ascii_lowercase().as_bytes()) {
            Ok(())
        } else {
            Err(SigError::Mismatch(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
                 Access Key and signing method."
                    .into(),
            ))
        }
    }
}

/// `20261207T000244Z` as Unix seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        s.get(r).filter(|d| d.bytes().all(|c| c.is_ascii_digit()))?.parse().ok()
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request botocore 1.43 signed (`SigV4Auth(creds, "ecr", "eu-west-1")`) with AWS's
    /// documentation example key.
    fn botocore() -> Vec<(String, String)> {
        [
            ("Host", "127.0.0.1:5000"),
            ("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Date", "20261207T000244Z"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261207/eu-west-1/ecr/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
                 Signature=92ea8f9899cb23e0cf66dddc5553af77de6031899e7aa13f6e984cab533ff044",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const BODY: &[u8] = br#"{"repositoryNames": ["team/app"]}"#;

    fn req<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest { method: "POST", path: "/", query: "", headers, body }
    }

    #[test]
    fn amz_dates_are_utc_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20261207T000244Z"), Some(1_796_601_764));
        assert_eq!(parse_amz_date("20240229T120000Z"), Some(1_709_208_000));
        for bad in ["2026-12-07T00:02:44Z", "20261307T000244Z", "20261207T250244Z", "20261207T000244", "x"] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_request_botocore_signed_verifies_and_every_change_breaks_it() {
        let now = parse_amz_date("20261207T000244Z").unwrap();
        let h = botocore();
        let r = req(&h, BODY);
        let c = r.credential().unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.region.as_str(), c.service.as_str()),
            ("AKIAIOSFODNN7EXAMPLE", "eu-west-1", "ecr")
        );
        r.verify(&c, SECRET, "ecr", now).unwrap();
        r.verify(&c, SECRET, "ecr", now + MAX_SKEW_SECS).unwrap();

        // Another secret, body, target or host: a mismatch.
        assert_eq!(r.verify(&c, "wrong", "ecr", now).unwrap_err().code(), "InvalidSignatureException");
        let other = req(&h, br#"{"repositoryNames": ["team/other"]}"#);
        assert!(matches!(other.verify(&c, SECRET, "ecr", now), Err(SigError::Mismatch(_))));
        for (name, value) in
            [("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.DeleteRepository"), ("Host", "evil:5000")]
        {
            let mut h2 = h.clone();
            h2.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.into();
            assert!(matches!(req(&h2, BODY).verify(&c, SECRET, "ecr", now), Err(SigError::Mismatch(_))), "{name}");
        }
        // Replayed outside the window.
        let e = r.verify(&c, SECRET, "ecr", now + MAX_SKEW_SECS + 1).unwrap_err();
        assert!(matches!(e, SigError::Expired(_)) && e.to_string().contains("Signature expired"), "{e}");
        assert!(matches!(r.verify(&c, SECRET, "ecr", now - MAX_SKEW_SECS - 1), Err(SigError::Expired(_))));
        // Scoped to another service.
        assert!(r.verify(&c, SECRET, "s3", now).unwrap_err().to_string().contains("correct service: 's3'"));
    }

    #[test]
    fn malformed_headers_and_session_tokens_are_refused_with_aws_codes() {
        let h = botocore();
        let with = |name: &str, value: &str| {
            let mut h2: Vec<(String, String)> = h.iter().filter(|(k, _)| k != name).cloned().collect();
            if !value.is_empty() {
                h2.push((name.to_owned(), value.to_owned()));
            }
            h2
        };
        let code = |h: Vec<(String, String)>| req(&h, BODY).credential().unwrap_err().code();
        assert_eq!(code(with("Authorization", "")), "MissingAuthenticationTokenException");
        assert_eq!(code(with("Authorization", "Basic YWJjOmRlZg==")), "IncompleteSignatureException");
        assert_eq!(
            code(with(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIA/20261207/eu-west-1/ecr, SignedHeaders=host;x-amz-date, Signature=00"
            )),
            "IncompleteSignatureException"
        );
        assert_eq!(
            code(with(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIA/20261207/eu-west-1/ecr/aws4_request, SignedHeaders=x-amz-date, Signature=00"
            )),
            "IncompleteSignatureException",
            "host must be signed"
        );
        let mut token = h.clone();
        token.push(("X-Amz-Security-Token".into(), "FQoGZXIvYXdzE".into()));
        assert_eq!(code(token), "UnrecognizedClientException");
        // A credential date that is not X-Amz-Date's day.
        let h2 = with("X-Amz-Date", "20261208T000244Z");
        let r = req(&h2, BODY);
        let c = r.credential().unwrap();
        let e = r.verify(&c, SECRET, "ecr", parse_amz_date("20261208T000244Z").unwrap()).unwrap_err();
        assert!(e.to_string().contains("Date in Credential scope does not match"), "{e}");
    }
}
