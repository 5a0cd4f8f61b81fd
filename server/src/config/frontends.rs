//! The settings of the HTTP front ends (MCP, A2A, the dashboard, metrics), and their checks.
use std::time::Duration;

use super::ConfigError;

/// How the A2A front end behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone, Default)]
pub struct A2aOptions {
    /// The base URL the agent card gives for every binding
    /// (`http(s)://host[:port]`, no path); `None`: `http://` and the bound
    /// address.
    pub public_url: Option<String>,
    /// `Host` header values accepted on the A2A listener besides the public
    /// URL's host (a guard against DNS rebinding); empty: loopback names only.
    pub allowed_hosts: Vec<String>,
}

/// How the dashboard behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone, Default)]
pub struct UiOptions {
    /// `Host` header values accepted on the dashboard's listener besides
    /// its bound address (a guard against DNS rebinding), also required of
    /// a state-changing request's `Origin`; empty: loopback names only.
    pub allowed_hosts: Vec<String>,
}

/// How the metrics listener behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone, Default)]
pub struct MetricsOptions {
    /// `Host` header values accepted on the metrics listener besides its
    /// bound address (a guard against DNS rebinding), as the dashboard's;
    /// empty: loopback names only.
    pub allowed_hosts: Vec<String>,
}

/// How the MCP front end behaves; `Default` is what `errand serve` uses.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The session of MCP requests without an `Errand-Session` header.
    pub default_session: String,
    /// The `pollIntervalMs` suggested to Tasks clients; > 0.
    pub poll_interval: Duration,
    /// `Host` header values accepted on the MCP listener (a guard against DNS
    /// rebinding); empty: loopback names only.
    pub allowed_hosts: Vec<String>,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            default_session: "mcp".into(),
            poll_interval: Duration::from_secs(1),
            allowed_hosts: Vec::new(),
        }
    }
}

impl McpOptions {
    /// The default session must name one; its length is checked per call,
    /// like any session a client names.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.default_session.is_empty() {
            return Err(ConfigError {
                flag: "mcp-default-session",
                problem: "must not be empty: name the session of MCP calls without an Errand-Session header".into(),
            });
        }
        Ok(())
    }
}

impl A2aOptions {
    /// A public URL, when given, must be a base URL.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            check_public_url(url)?;
        }
        Ok(())
    }
}

/// `--a2a-public-url` must be `http(s)://host[:port]` with nothing after.
fn check_public_url(url: &str) -> Result<(), ConfigError> {
    let problem = |p: &str| ConfigError {
        flag: "a2a-public-url",
        problem: format!("{url:?} {p}"),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| problem("must start with http:// or https://"))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(problem("names no host: give http(s)://host[:port]"));
    }
    if host.contains(['/', '?', '#', '@', ' ']) {
        return Err(problem(
            "must be http(s)://host[:port] only: the bindings' paths (/jsonrpc, /rest) are added to it",
        ));
    }
    Ok(())
}
