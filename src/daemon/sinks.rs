//! Event delivery inside the daemon: the sink `Deliveries` and the events API as a daemon
//! `Extension` — delivery tasks per tenant on start and reload, fed by the daemon's commit
//! feed, stopped (and their metrics forgotten) when the tenant is removed, JSON-lines files
//! reopened on SIGHUP, metrics in `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use super::{Extension, ExtensionContext, TenantHook};
use crate::config::GlobalConfig;
use crate::sink::api::{events_api_router, ServedTenants};
use crate::sink::Deliveries;
use crate::store::Store;
use crate::telemetry::metrics::{Collector, Exposition};

pub struct SinkExtension {
    retention: Option<Duration>,
    /// The tenants the events API answers for: the running ones.
    served: ServedTenants,
    /// Created with the first store the daemon hands over (it opens the store itself).
    deliveries: OnceLock<Deliveries>,
}

impl SinkExtension {
    pub fn new(global: &GlobalConfig) -> Self {
        Self {
            retention: global.event_retention,
            served: ServedTenants::default(),
            deliveries: OnceLock::new(),
        }
    }

    fn deliveries(&self, store: &Store) -> &Deliveries {
        self.deliveries
            .get_or_init(|| Deliveries::new(store.clone(), self.retention))
    }
}

impl Extension for SinkExtension {
    fn routes(&self, context: &ExtensionContext) -> Option<axum::Router> {
        Some(events_api_router(
            context.store.clone(),
            context.global.events_api_token.clone(),
            context.commits.clone(),
            self.served.clone(),
        ))
    }

    fn start_tenant(&self, hook: TenantHook) {
        self.served.insert(&hook.config.id);
        self.deliveries(&hook.store)
            .spawn(&hook.config, &hook.commits, &hook.stop, &hook.tracker);
    }

    fn stop_tenant(&self, tenant: &str) {
        self.served.remove(tenant);
        if let Some(deliveries) = self.deliveries.get() {
            deliveries.stop(tenant);
        }
    }

    fn on_reload(&self) {
        if let Some(deliveries) = self.deliveries.get() {
            deliveries.reopen_files();
        }
    }

    fn collect_metrics(&self, out: &mut Exposition) {
        if let Some(deliveries) = self.deliveries.get() {
            deliveries.collect(out);
        }
    }
}
