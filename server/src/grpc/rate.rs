//! Every RPC under its tenant's request rate: the [`Auth`] interceptor,
//! then one [`RateLimiter`] bucket per tenant shared by all services, so a
//! tenant's flood of cheap calls (GetTask, ListTools, ...) cannot crowd out
//! the others. Refused calls get RESOURCE_EXHAUSTED with `retry-after-ms`.
use std::{sync::Arc, time::Instant};

use tonic::{Request, Status, service::Interceptor};

use super::auth::{Auth, caller};
use crate::{error::Error, quota::RateLimiter};

/// Requests per second per tenant, shared by every service of a server.
#[derive(Clone)]
pub struct TenantRate {
    limiter: Arc<RateLimiter>,
    per_second: u32,
}

impl TenantRate {
    /// `per_second` 0: no limit.
    pub fn new(per_second: u32) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::new(per_second)),
            per_second,
        }
    }

    /// Counts one call of `tenant`, or says when to retry.
    pub(crate) fn take(&self, tenant: &Arc<str>) -> Result<(), Error> {
        self.limiter
            .take(tenant, Instant::now())
            .map_err(|wait| Error::RateLimited {
                message: format!(
                    "your tenant calls faster than {} requests per second: retry in {} ms",
                    self.per_second,
                    wait.as_millis().max(1)
                ),
                retry_after: wait,
            })
    }
}

/// [`Auth`], then the caller's tenant's [`TenantRate`].
#[derive(Clone)]
pub struct Limited {
    auth: Auth,
    rate: TenantRate,
}

impl Limited {
    pub fn new(auth: Auth, rate: TenantRate) -> Self {
        Self { auth, rate }
    }
}

impl Interceptor for Limited {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let request = self.auth.call(request)?;
        let caller = caller(&request);
        if caller.role.is_some() {
            // With authentication off there is no tenant to key a rate by.
            self.rate.take(&caller.tenant)?;
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_have_separate_budgets_and_a_refusal_says_when_to_retry() {
        let rate = TenantRate::new(2);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        rate.take(&a).unwrap();
        rate.take(&a).unwrap();
        let status = Status::from(rate.take(&a).unwrap_err());
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.metadata().get("retry-after-ms").is_some());
        assert!(status.message().contains("2 requests per second"));
        rate.take(&b).unwrap();
        assert!(TenantRate::new(0).take(&a).is_ok());
    }
}
