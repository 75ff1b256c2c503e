//! The SSRF guard: webhooks are sent by Berth from inside its network, so an address a
//! project administrator types must not reach what only Berth can reach — its own loopback
//! services, link-local addresses and the cloud metadata services (which hand out
//! credentials) — unless the system administrator allow-lists it (`[webhooks]
//! allowed_hosts`).
//!
//! Checked twice: when a policy is saved (a clear 400 naming the address), and at every
//! delivery, on the addresses the name resolves to *then* ([`GuardedResolver`], so a name that
//! later resolves elsewhere — DNS rebinding — is refused too). Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Addresses of cloud metadata services outside the link-local ranges.
const METADATA: &[IpAddr] = &[
    // AWS over IPv6.
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    // Alibaba Cloud.
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    // Oracle Cloud's second address.
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
];

/// Why `ip` may not receive webhooks, if it may not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if METADATA.contains(&ip) || ip == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)) {
        return Some("a cloud metadata service");
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || v4.octets()[0] == 0 {
                Some("\"this network\" (0.0.0.0/8)")
            } else if v4.is_broadcast() || v4.is_multicast() {
                Some("broadcast or multicast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unicast_link_local() {
                Some("link-local")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// What the system administrator allows despite the rules: networks and host names.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
}

impl Guard {
    /// From `[webhooks] allowed_hosts`: IP addresses, CIDR networks or host names.
    pub fn new(allowed: &[String]) -> Result<Guard, String> {
        let mut g = Guard::default();
        for a in allowed {
            let a = a.trim();
            if let Ok(net) = a.parse::<IpNet>() {
                g.nets.push(net);
            } else if let Ok(ip) = a.parse::<IpAddr>() {
                g.nets.push(IpNet::from(ip));
            } else if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
                g.hosts.push(a.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "webhooks.allowed_hosts: {a:?} is not an IP address, a network (10.0.0.0/8) or a host name"
                ));
            }
        }
        Ok(g)
    }

    /// May a webhook go to `ip`?
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        match forbidden(ip) {
            Some(why) if !self.nets.iter().any(|n| n.contains(&ip)) => Err(format!(
                "{ip} is {why}: webhooks are not sent there unless a system administrator adds it to \
                 [webhooks] allowed_hosts"
            )),
            _ => Ok(()),
        }
    }

    /// Is the host name itself allow-listed (whatever it resolves to)?
    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host.trim_end_matches('.')))
    }

    /// Check a target address as typed: an `http`/`https` URL with a host and without
    /// credentials; an IP literal must be allowed. (Names are checked when they resolve.)
    pub fn check_url(&self, address: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(address).map_err(|e| format!("{address:?} is not a URL: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!("{address:?}: only http and https addresses receive webhooks"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{address:?}: put credentials in the auth header, not in the address"));
        }
        match url.host() {
            None => Err(format!("{address:?} has no host")),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map(|()| url),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map(|()| url),
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") && !self.host_allowed(d) => Err(format!(
                "{address:?}: localhost is loopback: webhooks are not sent there unless a system \
                             administrator adds it to [webhooks] allowed_hosts"
            )),
            Some(url::Host::Domain(_)) => Ok(url),
        }
    }

    /// Resolve `host` and keep the addresses a webhook may go to; an error names the ones
    /// refused.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} could not be resolved: {e}"))?
            .collect();
        if self.host_allowed(host) {
            return Ok(found);
        }
        let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            found.into_iter().partition(|a| self.check_ip(a.ip()).is_ok());
        if ok.is_empty() {
            return Err(match refused.first().map(|a| self.check_ip(a.ip())) {
                Some(Err(why)) => format!("{host} resolves to {why}"),
                _ => format!("{host} resolves to no address"),
            });
        }
        Ok(ok)
    }
}

/// reqwest's resolver through the guard: connections go only to addresses it allows.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let addrs = guard
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_link_local_and_metadata_are_refused_unless_allowed() {
        let g = Guard::new(&[]).unwrap();
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "100.100.100.200",
            "224.0.0.1",
            "::",
        ] {
            assert!(g.check_ip(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for good in ["10.1.2.3", "192.168.1.10", "172.16.0.1", "8.8.8.8", "2001:db8::1", "fd12::1"] {
            assert!(g.check_ip(good.parse().unwrap()).is_ok(), "{good}");
        }
        let g = Guard::new(&["127.0.0.1".into(), "fe80::/10".into()]).unwrap();
        assert!(g.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(g.check_ip("127.0.0.2".parse().unwrap()).is_err());
        assert!(g.check_ip("fe80::7".parse().unwrap()).is_ok());
        assert!(g.check_ip("169.254.169.254".parse().unwrap()).is_err());
        assert!(Guard::new(&["not a host!".into()]).is_err());
    }

    #[test]
    fn urls_are_checked_as_typed() {
        let g = Guard::new(&[]).unwrap();
        let e = g.check_url("http://169.254.169.254/latest/meta-data/").unwrap_err();
        assert!(e.contains("cloud metadata"), "{e}");
        assert!(g.check_url("http://[::1]:8080/hook").unwrap_err().contains("loopback"));
        assert!(g.check_url("http://localhost:8080/").unwrap_err().contains("loopback"));
        assert!(g.check_url("ftp://example.com/").unwrap_err().contains("http and https"));
        assert!(g.check_url("https://user:pw@example.com/").unwrap_err().contains("auth header"));
        assert!(g.check_url("https://hooks.example.com/x").is_ok());
        assert!(Guard::new(&["localhost".into()]).unwrap().check_url("http://localhost:1/").is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_it_resolves() {
        let g = Guard::new(&[]).unwrap();
        let e = g.resolve("localhost", 80).await.unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let g = Guard::new(&["127.0.0.1".into(), "::1".into()]).unwrap();
        assert!(!g.resolve("localhost", 80).await.unwrap().is_empty());
    }
}
