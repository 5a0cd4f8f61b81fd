//! Which tenant opened each 2025-11-25 MCP session (`Mcp-Session-Id`). A
//! request naming a session another tenant opened is answered as rmcp
//! answers an unknown session (404), so one tenant can neither end another's
//! session nor hold its event stream open. The MCP spec: servers SHOULD
//! bind session IDs to their user; every call was already authorised by its
//! own token, so no data leaked, but tenant B could end tenant A's session.
//! With authentication off everyone is one user: nothing is bound.
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::auth::Caller;

/// The header that names a session.
const SESSION: &str = "mcp-session-id";

/// Most sessions remembered; past it the oldest is forgotten (and then
/// answered by rmcp alone, as before), so the map stays bounded whatever
/// clients open.
const MAX_SESSIONS: usize = 65_536;

/// The sessions' tenants, shared by every request of one listener.
#[derive(Clone, Default)]
pub struct Owners(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    tenant: HashMap<String, Arc<str>>,
    /// In the order they were opened, for forgetting the oldest.
    order: VecDeque<String>,
}

impl Owners {
    fn owner(&self, session: &str) -> Option<Arc<str>> {
        let inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inner.tenant.get(session).cloned()
    }

    fn bind(&self, session: &str, tenant: Arc<str>) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.tenant.insert(session.to_string(), tenant).is_none() {
            inner.order.push_back(session.to_string());
        }
        while inner.order.len() > MAX_SESSIONS {
            if let Some(oldest) = inner.order.pop_front() {
                inner.tenant.remove(&oldest);
            }
        }
    }

    fn forget(&self, session: &str) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.tenant.remove(session).is_some() {
            inner.order.retain(|s| s != session);
        }
    }
}

/// Middleware (after the bearer layer, which leaves the [`Caller`]): binds
/// a session to the tenant whose request opened it, and answers a request
/// of another tenant naming it 404.
pub async fn bind(State(owners): State<Owners>, req: Request, next: Next) -> Response {
    let Some(tenant) = req
        .extensions()
        .get::<Caller>()
        .filter(|c| c.role.is_some())
        .map(|c| c.tenant.clone())
    else {
        return next.run(req).await;
    };
    let named = (req.headers().get(SESSION))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(session) = &named
        && owners.owner(session).is_some_and(|owner| owner != tenant)
    {
        return (StatusCode::NOT_FOUND, "Session not found").into_response();
    }
    let delete = req.method() == Method::DELETE;
    let response = next.run(req).await;
    match named {
        None => {
            if let Some(opened) = (response.headers().get(SESSION)).and_then(|v| v.to_str().ok()) {
                owners.bind(opened, tenant);
            }
        }
        Some(session) if delete && response.status().is_success() => owners.forget(&session),
        Some(_) => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_stay_bounded_and_forgotten_ones_go() {
        let owners = Owners::default();
        for i in 0..MAX_SESSIONS + 10 {
            owners.bind(&format!("s{i}"), "acme".into());
        }
        assert!(owners.owner("s0").is_none(), "the oldest is forgotten");
        assert_eq!(owners.owner("s10").as_deref(), Some("acme"));
        owners.forget("s10");
        assert!(owners.owner("s10").is_none());
        let inner = owners.0.lock().unwrap();
        assert_eq!(inner.tenant.len(), inner.order.len());
    }
}
