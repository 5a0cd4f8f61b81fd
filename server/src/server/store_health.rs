//! The health service follows the store: NOT_SERVING while its writes fail
//! (nothing can be accepted then), SERVING again once one goes through.
//! While they fail the store is probed every [`PROBE_EVERY`], so health
//! recovers without traffic (a load balancer that saw NOT_SERVING sends
//! none).
use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};
use tracing::{debug, info, warn};

use super::SERVICES;
use crate::store::{SharedStore, health::WriteHealth};

/// How often a store whose writes fail is probed.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Sets every service's status as the store's writes go, until `shutdown`.
/// Once `draining` is cancelled the drain owns the status (NOT_SERVING).
pub(super) async fn follow(
    writes: Arc<WriteHealth>,
    store: SharedStore,
    health: HealthReporter,
    draining: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut failing = writes.watch();
    let mut said = false;
    loop {
        let now = *failing.borrow_and_update();
        if now != said && !draining.is_cancelled() {
            said = now;
            let status = if now {
                warn!(
                    "the store refuses writes: health says NOT_SERVING until a write goes through"
                );
                ServingStatus::NotServing
            } else {
                info!("the store takes writes again: health says SERVING");
                ServingStatus::Serving
            };
            for name in ["", SERVICES[0], SERVICES[1]] {
                health.set_service_status(name, status).await;
            }
            // A drain that started meanwhile has the last word.
            if draining.is_cancelled() {
                for name in ["", SERVICES[0], SERVICES[1]] {
                    health
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                }
            }
        }
        tokio::select! {
            changed = failing.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(PROBE_EVERY), if now => {
                if let Err(e) = store.probe_write().await {
                    debug!(error = %e, "probing the store: its writes still fail");
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}
