//! The `/v2/…` path parser: one function turns a raw path into a typed [`Route`].
//!
//! Repository names contain slashes, so the path is read from the right: the last one or two
//! segments say which endpoint it is, everything before them is the name. The raw
//! (percent-encoded) path is used as is: an encoded `%2e%2e` or `%2F` is not a valid name
//! character and is refused, so no request can smuggle a path through a name.

use berth_types::{Digest, NameError, Reference, RepoName};

/// A parsed registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

/// Why a path did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not a registry endpoint at all.
    NotFound,
    /// An endpoint, but the name, reference or digest is malformed.
    Name(NameError),
}

impl From<NameError> for RouteError {
    fn from(e: NameError) -> Self {
        RouteError::Name(e)
    }
}

impl Route {
    /// The route template, for metrics and logs (never the raw URL).
    pub fn template(&self) -> &'static str {
        match self {
            Route::Base => "/v2/",
            Route::Catalog => "/v2/_catalog",
            Route::Tags(_) => "/v2/{name}/tags/list",
            Route::Manifest(..) => "/v2/{name}/manifests/{reference}",
            Route::Blob(..) => "/v2/{name}/blobs/{digest}",
            Route::UploadStart(_) => "/v2/{name}/blobs/uploads/",
            Route::Upload(..) => "/v2/{name}/blobs/uploads/{id}",
            Route::Referrers(..) => "/v2/{name}/referrers/{digest}",
        }
    }

    /// The repository the route addresses, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(r)
            | Route::Manifest(r, _)
            | Route::Blob(r, _)
            | Route::UploadStart(r)
            | Route::Upload(r, _)
            | Route::Referrers(r, _) => Some(r),
        }
    }
}

fn decode_colon(s: &str) -> String {
    // Some clients encode the ':' of a digest; nothing else is decoded.
    s.replace("%3A", ":").replace("%3a", ":")
}

/// Parse a raw request path.
pub fn parse(path: &str) -> Result<Route, RouteError> {
    let rest = match path.strip_prefix("/v2") {
        Some("") | Some("/") => return Ok(Route::Base),
        Some(r) => r.strip_prefix('/').ok_or(RouteError::NotFound)?,
        None => return Err(RouteError::NotFound),
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name.parse()?));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        return Ok(Route::UploadStart(name.parse()?));
    }
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    let (name, kind) = head.rsplit_once('/').ok_or(RouteError::NotFound)?;
    match kind {
        "manifests" => Ok(Route::Manifest(name.parse()?, decode_colon(last).parse()?)),
        "blobs" => Ok(Route::Blob(name.parse()?, decode_colon(last).parse().map_err(NameError::from)?)),
        "referrers" => Ok(Route::Referrers(name.parse()?, decode_colon(last).parse().map_err(NameError::from)?)),
        "uploads" => {
            let name = name.strip_suffix("/blobs").ok_or(RouteError::NotFound)?;
            Ok(Route::Upload(name.parse()?, last.to_owned()))
        }
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn ok(p: &str) -> Route {
        parse(p).unwrap_or_else(|e| panic!("{p}: {e:?}"))
    }

    #[test]
    fn table() {
        assert_eq!(ok("/v2/"), Route::Base);
        assert_eq!(ok("/v2"), Route::Base);
        assert_eq!(ok("/v2/_catalog"), Route::Catalog);
        assert!(matches!(ok("/v2/a/b/c/tags/list"), Route::Tags(n) if n.as_str() == "a/b/c"));
        assert!(matches!(ok("/v2/a/manifests/latest"), Route::Manifest(n, Reference::Tag(_)) if n.as_str() == "a"));
        assert!(matches!(ok(&format!("/v2/a/b/manifests/{D}")), Route::Manifest(_, Reference::Digest(_))));
        assert!(matches!(ok(&format!("/v2/a/b/blobs/{D}")), Route::Blob(n, _) if n.as_str() == "a/b"));
        assert!(matches!(ok(&format!("/v2/a/blobs/{}", D.replace(':', "%3A"))), Route::Blob(..)));
        assert!(matches!(ok("/v2/a/b/blobs/uploads/"), Route::UploadStart(n) if n.as_str() == "a/b"));
        assert!(matches!(ok("/v2/a/b/blobs/uploads"), Route::UploadStart(_)));
        assert!(
            matches!(ok("/v2/a/b/blobs/uploads/abc-123"), Route::Upload(n, id) if n.as_str() == "a/b" && id == "abc-123")
        );
        assert!(matches!(ok(&format!("/v2/x/referrers/{D}")), Route::Referrers(..)));
        // names that contain endpoint words
        assert!(
            matches!(ok("/v2/blobs/manifests/manifests/v1"), Route::Manifest(n, _) if n.as_str() == "blobs/manifests")
        );
        assert!(matches!(ok("/v2/tags/tags/list"), Route::Tags(n) if n.as_str() == "tags"));
    }

    #[test]
    fn refuses() {
        assert_eq!(parse("/v3/a/tags/list"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/a/unknown/x"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/a"), Err(RouteError::NotFound));
        for bad in [
            "/v2/../etc/tags/list",
            "/v2/a/%2e%2e/tags/list",
            "/v2//etc/passwd/tags/list",
            "/v2/A/tags/list",
            "/v2/a%2Fb/tags/list",
            "/v2/a/manifests/..",
            "/v2/a/blobs/sha256:zz",
        ] {
            assert!(matches!(parse(bad), Err(RouteError::Name(_))), "{bad}");
        }
    }
}
