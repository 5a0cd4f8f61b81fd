//! The DNS-rebinding guard of the HTTP listeners (A2A, the dashboard,
//! metrics): a request whose `Host` (or HTTP/2 `:authority`) is neither on
//! the listener's list nor an IP address gets 403, so a browser page cannot point a DNS name of its own at
//! the port and call it. Where asked ([`AllowedHosts::checking_origin`]), a
//! state-changing request (not GET/HEAD/OPTIONS) whose `Origin` names a
//! host off the list gets 403 too.
use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The host names one listener accepts, lower-cased and without ports, and
/// how a refused caller adds one (the flag named in the 403's message).
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    hosts: Vec<String>,
    /// e.g. "add it with --ui-allowed-host".
    hint: &'static str,
    /// Whether state-changing requests' `Origin` is checked too.
    origins: bool,
}

impl AllowedHosts {
    /// `configured` (empty: the loopback names), plus `public_url`'s host
    /// when given (`scheme://host[:port][/...]`). `hint` ends the 403's
    /// message: how to allow another host.
    pub fn new(configured: &[String], public_url: Option<&str>, hint: &'static str) -> Self {
        let mut hosts: Vec<String> = if configured.is_empty() {
            ["localhost", "127.0.0.1", "[::1]", "::1"]
                .map(String::from)
                .to_vec()
        } else {
            configured
                .iter()
                .map(|h| strip_port(h.trim()).to_ascii_lowercase())
                .collect()
        };
        if let Some(host) = public_url.and_then(url_host) {
            hosts.push(host);
        }
        Self {
            hosts,
            hint,
            origins: false,
        }
    }

    /// The hosts of a listener bound to `bound`: `configured` (empty: the
    /// loopback names), plus the bound address unless it is unspecified
    /// (`0.0.0.0`, `::`), so a client that calls it by its address (a
    /// browser, a Prometheus scrape) is let in.
    pub fn bound(
        configured: &[String],
        bound: Option<std::net::SocketAddr>,
        hint: &'static str,
    ) -> Self {
        let bound = bound
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| format!("http://{a}"));
        Self::new(configured, bound.as_deref(), hint)
    }

    /// These hosts, also required of a state-changing request's `Origin`
    /// (for a listener whose pages a browser loads, like the dashboard).
    pub fn checking_origin(self) -> Self {
        Self {
            origins: true,
            ..self
        }
    }

    /// The accepted names.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether `authority` (`host[:port]`) names an accepted host.
    pub fn allows(&self, authority: &str) -> bool {
        self.hosts
            .contains(&strip_port(authority).to_ascii_lowercase())
    }

    /// Whether a request's `Host` (`host[:port]`) is let in: an accepted
    /// name, or an IP address. DNS rebinding needs a name of the
    /// attacker's; a browser that called an address itself is on that
    /// address's origin, so a listener bound to 0.0.0.0 answers a scrape or
    /// a browser by the machine's address without configuration.
    pub fn allows_host(&self, authority: &str) -> bool {
        let host = strip_port(authority);
        let ip = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        self.allows(authority) || ip.parse::<std::net::IpAddr>().is_ok()
    }

    fn refuse(&self, what: &str, value: &str) -> Response {
        (
            StatusCode::FORBIDDEN,
            format!(
                "{what} {} is not allowed here: the server accepts {} ({})",
                crate::logs::field(value),
                self.hosts.join(", "),
                self.hint
            ),
        )
            .into_response()
    }
}

/// The host of `scheme://host[:port][/...]`, lower-cased.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    Some(strip_port(authority).to_ascii_lowercase())
}

/// `host` of `host[:port]` (an IPv6 literal keeps its brackets).
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Middleware (`axum::middleware::from_fn_with_state`): refuses a request
/// whose `Host` is not in `hosts` (400 without one), or, when `hosts`
/// checks origins, a state-changing one whose `Origin` is not (a browser
/// sends `Origin: null` from opaque origins: refused as well).
pub async fn check_host(
    State(hosts): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_string()),
        None => match req.headers().get(header::HOST).map(|h| h.to_str()) {
            Some(Ok(h)) => Some(h.to_string()),
            // Sent, but not a name: refused as such, never read as absent.
            Some(Err(_)) => {
                return (
                    StatusCode::BAD_REQUEST,
                    "the Host header is not ASCII text: send the server's host name or address",
                )
                    .into_response();
            }
            None => None,
        },
    };
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "no Host header").into_response();
    };
    if !hosts.allows_host(&host) {
        return hosts.refuse("Host", strip_port(&host));
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if hosts.origins
        && !safe
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("");
        // An accepted name, or the request's own host (the page came from
        // the address it posts to: same-origin).
        let allowed = origin.split_once("://").is_some_and(|(_, authority)| {
            hosts.allows(authority) || authority.eq_ignore_ascii_case(&host)
        });
        if !allowed {
            return hosts.refuse("Origin", origin);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_loopback_or_the_configured_ones_and_the_public_one() {
        let hosts = AllowedHosts::new(&[], Some("https://agents.example.com:8443"), "");
        assert!(hosts.allows("127.0.0.1:80"));
        assert!(hosts.allows("Agents.Example.com"));
        assert!(!hosts.allows("evil.com:80"));
        let hosts = AllowedHosts::new(&["Box.Local".into()], Some("http://[::1]:9"), "");
        assert_eq!(hosts.hosts(), ["box.local", "[::1]"]);
        assert!(!hosts.allows("localhost"));
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("h:80"), "h");
    }

    /// A Host that is an IP address is let in on every listener: DNS
    /// rebinding needs a name of the attacker's, and a browser that called
    /// the address itself is on the listener's own origin. A listener bound
    /// to 0.0.0.0 and scraped or opened by the machine's address works
    /// without configuration. An `Origin` is still checked against the
    /// names: a page served from another address is another site.
    #[test]
    fn a_host_that_is_an_ip_address_is_let_in_but_not_as_an_origin() {
        let hosts = AllowedHosts::bound(&[], Some("[::]:9466".parse().unwrap()), "");
        for host in ["10.0.0.5:9466", "10.0.0.5", "[fd00::5]:9466", "[::1]"] {
            assert!(hosts.allows_host(host), "{host}");
        }
        for host in ["attacker.example", "10.0.0.5.nip.io", "[not-ip]", "1.2.3"] {
            assert!(!hosts.allows_host(host), "{host}");
        }
        assert!(!hosts.allows("10.0.0.5:9466"));
    }

    /// A page the browser loaded from an address posts with that address as
    /// its `Origin`, equal to the `Host`: same-origin, let in (the
    /// dashboard's Cancel and Retry, opened at http://10.0.0.5:7469); an
    /// `Origin` of another address is another site's page.
    #[tokio::test]
    async fn a_post_from_the_page_at_an_address_is_let_in_and_one_from_another_is_not() {
        use axum::{Router, body::Body, routing::post};
        use tower::ServiceExt;
        let hosts =
            AllowedHosts::bound(&[], Some("0.0.0.0:7469".parse().unwrap()), "").checking_origin();
        let app = Router::new().route("/x", post(|| async { "ok" })).layer(
            axum::middleware::from_fn_with_state(Arc::new(hosts), check_host),
        );
        let post_from = |origin: &str| {
            Request::post("/x")
                .header(header::HOST, "10.0.0.5:7469")
                .header(header::ORIGIN, origin)
                .body(Body::empty())
                .unwrap()
        };
        let same = app.clone().oneshot(post_from("http://10.0.0.5:7469")).await;
        assert_eq!(same.unwrap().status(), StatusCode::OK);
        let other = app.clone().oneshot(post_from("http://10.0.0.6:7469")).await;
        assert_eq!(other.unwrap().status(), StatusCode::FORBIDDEN);
        let named = app.oneshot(post_from("http://evil.example")).await;
        assert_eq!(named.unwrap().status(), StatusCode::FORBIDDEN);
    }

    /// A `Host` that is sent but is not text is refused as such, not as
    /// "no Host header".
    #[tokio::test]
    async fn a_host_that_is_not_text_is_named_as_such() {
        use axum::http::HeaderValue;
        use axum::{Router, body::Body, routing::get};
        use tower::ServiceExt;
        let hosts = AllowedHosts::new(&[], None, "");
        let app = Router::new().route("/x", get(|| async { "ok" })).layer(
            axum::middleware::from_fn_with_state(Arc::new(hosts), check_host),
        );
        let req = Request::get("/x")
            .header(header::HOST, HeaderValue::from_bytes(b"a\xffb").unwrap())
            .body(Body::empty())
            .unwrap();
        let answer = app.oneshot(req).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(answer.into_body(), 1024)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("Host header is not ASCII text"), "{body}");
    }

    #[test]
    fn a_listener_bound_to_an_address_accepts_it_and_a_wildcard_adds_none() {
        // A scrape or a browser that calls a listener by its bound address.
        let hosts = AllowedHosts::bound(&[], Some("10.0.0.5:9466".parse().unwrap()), "");
        assert!(hosts.allows("10.0.0.5:9466") && hosts.allows("localhost"));
        assert!(!hosts.allows("attacker.example"));
        let hosts = AllowedHosts::bound(&["m.example".into()], Some("[::]:9".parse().unwrap()), "");
        assert_eq!(hosts.hosts(), ["m.example"]);
        let hosts = AllowedHosts::bound(&[], Some("[fd00::5]:9".parse().unwrap()), "");
        assert!(hosts.allows("[fd00::5]:9"));
    }
}
