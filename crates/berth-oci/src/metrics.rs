//! Prometheus metrics: requests by route and status, bytes in and out, request durations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels carrying only the route template.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template.
    pub route: String,
}

/// All metrics of the HTTP layer.
pub struct Metrics {
    registry: Registry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Body bytes received, by route.
    pub bytes_in: Family<RouteLabels, Counter>,
    /// Body bytes sent, by route.
    pub bytes_out: Family<RouteLabels, Counter>,
    /// Request durations in seconds, by route (upload routes give upload durations).
    pub duration: Family<RouteLabels, Histogram>,
    /// Logins that reached a lock since start (read from the access service at scrape).
    login_lockouts: Gauge,
    /// (account, address) pairs and addresses locked now.
    login_locked: Gauge,
    /// Cached copies served because an upstream failed, since start.
    proxy_stale: Gauge,
    /// Bytes fetched from upstreams by pull-through caches, since start.
    proxy_fetched: Gauge,
}

/// The method as a label: one of the methods Berth serves, else `other` (a client cannot
/// create label values).
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes_in = Family::<RouteLabels, Counter>::default();
        let bytes_out = Family::<RouteLabels, Counter>::default();
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 10))
        });
        registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
        registry.register("http_request_body_bytes", "Request body bytes received", bytes_in.clone());
        registry.register("http_response_body_bytes", "Response body bytes sent", bytes_out.clone());
        registry.register("http_request_duration_seconds", "Request durations", duration.clone());
        let login_lockouts = Gauge::default();
        let login_locked = Gauge::default();
        registry.register("login_lockouts", "Logins that reached a lock since start", login_lockouts.clone());
        registry.register("login_locked", "Account-address pairs and addresses locked now", login_locked.clone());
        let proxy_stale = Gauge::default();
        let proxy_fetched = Gauge::default();
        registry.register(
            "proxy_stale_served",
            "Cached copies served because the upstream failed, since start",
            proxy_stale.clone(),
        );
        registry.register("proxy_upstream_bytes", "Bytes fetched from upstreams, since start", proxy_fetched.clone());
        Metrics {
            registry,
            requests,
            bytes_in,
            bytes_out,
            duration,
            login_lockouts,
            login_locked,
            proxy_stale,
            proxy_fetched,
        }
    }
}

impl Metrics {
    /// Update the login-lock gauges (at scrape).
    pub fn set_login_locks(&self, lockouts: u64, locked: usize) {
        self.login_lockouts.set(lockouts as i64);
        self.login_locked.set(locked as i64);
    }

    /// Update the pull-through cache gauges (at scrape).
    pub fn set_proxy(&self, stale: u64, fetched: u64) {
        self.proxy_stale.set(stale as i64);
        self.proxy_fetched.set(fetched as i64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
