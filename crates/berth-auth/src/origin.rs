//! Where clients reach Berth: the base URL that token realms, `docker login` hints and
//! redirects name. `external_url` when configured; otherwise taken from each request —
//! `X-Forwarded-Proto`/`X-Forwarded-Host` (or `Forwarded`) set by a reverse proxy, else the
//! `Host` header, else the HTTP/2 `:authority` (which HTTP/2 requests carry instead of a
//! `Host` header). A value that could break out of a quoted challenge is ignored.

use http::{HeaderMap, Uri};

/// `scheme://host[:port]` clients used for this request (no trailing slash).
pub fn public_base(external_url: Option<&str>, headers: &HeaderMap, uri: &Uri, tls: bool) -> String {
    if let Some(u) = external_url {
        return u.trim_end_matches('/').to_owned();
    }
    let (proto, host) = forwarded(headers);
    let host = host
        .or_else(|| header(headers, "x-forwarded-host").and_then(|h| h.split(',').next()).map(str::trim))
        .or_else(|| header(headers, "host"))
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| safe_host(h))
        .unwrap_or("localhost");
    let proto = proto
        .or_else(|| header(headers, "x-forwarded-proto").and_then(|p| p.split(',').next()).map(str::trim))
        .filter(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| if tls { "https" } else { "http" }.to_owned());
    format!("{proto}://{host}")
}

/// The host part of [`public_base`] (what `docker login` takes).
pub fn public_host(external_url: Option<&str>, headers: &HeaderMap, uri: &Uri, tls: bool) -> String {
    let base = public_base(external_url, headers, uri, tls);
    let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// `proto` and `host` of the first element of RFC 7239 `Forwarded`.
fn forwarded(headers: &HeaderMap) -> (Option<&str>, Option<&str>) {
    let Some(first) = header(headers, "forwarded").and_then(|f| f.split(',').next()) else { return (None, None) };
    let mut out = (None, None);
    for pair in first.split(';') {
        if let Some((k, v)) = pair.split_once('=') {
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "proto" => out.0 = Some(v),
                "host" => out.1 = Some(v),
                _ => {}
            }
        }
    }
    out
}

/// A host[:port] that cannot break a quoted header value or a URL.
fn safe_host(h: &str) -> bool {
    !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn from_configuration_proxy_headers_host_or_authority() {
        let plain: Uri = "/v2/".parse().unwrap();
        let h2: Uri = "https://reg.example:8443/v2/".parse().unwrap();
        let none = HeaderMap::new();
        assert_eq!(public_base(Some("https://r.example/"), &none, &plain, false), "https://r.example");
        assert_eq!(public_base(None, &headers(&[("host", "r:5000")]), &plain, false), "http://r:5000");
        // HTTP/2: no Host header, the :authority is in the URI.
        assert_eq!(public_base(None, &none, &h2, true), "https://reg.example:8443");
        assert_eq!(public_host(None, &none, &h2, true), "reg.example:8443");
        let proxied =
            headers(&[("host", "10.0.0.5:5000"), ("x-forwarded-host", "reg.example"), ("x-forwarded-proto", "https")]);
        assert_eq!(public_base(None, &proxied, &plain, false), "https://reg.example");
        let rfc = headers(&[("forwarded", "for=1.2.3.4;proto=https;host=\"reg.example:444\", for=5.6.7.8")]);
        assert_eq!(public_base(None, &rfc, &plain, false), "https://reg.example:444");
        // Nothing usable: never a value that breaks out of a quoted challenge.
        let evil = headers(&[("host", "a\",error=\"x"), ("x-forwarded-proto", "javascript")]);
        assert_eq!(public_base(None, &evil, &plain, false), "http://localhost");
    }
}
