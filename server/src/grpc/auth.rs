//! The tonic interceptor that checks the bearer token in `authorization`
//! metadata against the operator's [`Tokens`] and leaves a [`Caller`] in the
//! request.
use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use tonic::{Request, Status, service::Interceptor};

use super::failed_auth::FailedAuth;
use crate::{
    auth::{Caller, Role, Tokens},
    error::Error,
    net::authorization,
};

/// Who may call a service.
#[derive(Clone)]
pub struct Auth {
    tokens: Option<Arc<Tokens>>,
    /// The role the service needs; `None`: any valid token.
    role: Option<Role>,
    service: &'static str,
    failures: Option<Arc<FailedAuth>>,
}

impl Auth {
    /// `tokens: None` turns authentication off: every caller is anonymous.
    pub fn new(tokens: Option<Arc<Tokens>>, role: Option<Role>, service: &'static str) -> Self {
        Auth {
            tokens,
            role,
            service,
            failures: None,
        }
    }

    /// Counts, logs and throttles failed calls in `failures`.
    pub fn with_failures(mut self, failures: Arc<FailedAuth>) -> Self {
        self.failures = Some(failures);
        self
    }

    /// [`Self::check`], with a failure recorded per peer; a peer past its
    /// budget gets RESOURCE_EXHAUSTED and how long to wait.
    fn check_counted<T>(&self, request: &Request<T>) -> Result<Caller, Error> {
        let result = self.check(request);
        if let (Err(Error::Unauthenticated(reason)), Some(failures)) = (&result, &self.failures) {
            let peer = request.remote_addr().map(|a| a.ip());
            if let Err(wait) = failures.failed(peer, reason, Instant::now()) {
                return Err(Error::RateLimited {
                    message: format!(
                        "too many calls without a valid token from this address ({reason}): \
                         retry in {} ms",
                        wait.as_millis().max(1)
                    ),
                    retry_after: wait,
                });
            }
        }
        result
    }

    fn check<T>(&self, request: &Request<T>) -> Result<Caller, Error> {
        let Some(tokens) = &self.tokens else {
            return Ok(Caller::anonymous());
        };
        let unauthenticated = |m: &str| Error::Unauthenticated(m.into());
        let value = request.metadata().get("authorization");
        let token = authorization::bearer_token(value.map(|v| v.as_bytes()))
            .map_err(|e| unauthenticated(&e.message(authorization::METADATA)))?;
        let caller = tokens.verify(token, SystemTime::now())?;
        if let (Some(need), Some(has)) = (self.role, caller.role)
            && !has.may_act_as(need)
        {
            return Err(Error::PermissionDenied(format!(
                "a token with role {} cannot call {}: use one with role {}",
                has.name(),
                self.service,
                need.name()
            )));
        }
        Ok(caller)
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.check_counted(&request)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The caller of `request`; anonymous when no [`Auth`] layer ran.
pub fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous)
}
