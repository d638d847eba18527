//! Which task keeps the gateway's leaf current, started by [`crate::run`]: the file watch
//! ([`super::watch`]) or, with `[identity.linkerd]`, the Certify loop ([`super::linkerd`]);
//! both swap the leaf into the store and report to the metrics.

use super::linkerd;
use crate::Gateway;
use std::sync::Arc;

/// The task that keeps the gateway's leaf current: the file watch, or the Certify loop with
/// `[identity.linkerd]`. Either swaps the leaf into the store and counts it.
pub(crate) fn spawn(gw: &Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    let counter = gw.metrics.clone();
    let hooks = super::WatchHooks {
        reload_now: gw.identity_reload.clone(),
        reloaded: Some(Arc::new(move |ok| counter.tls.identity_reloaded(ok))),
    };
    let config = &gw.config.identity;
    if let Some(linkerd) = &config.linkerd {
        let roots = gw.tls.roots();
        let provider = gw.tls.provider().clone();
        let certifier = match linkerd::Certifier::new(gw.identity(), linkerd, roots, provider) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot ask the identity controller; no leaf");
                return tokio::spawn(async {});
            }
        };
        let (m1, m2) = (gw.metrics.clone(), gw.metrics.clone());
        let reports = linkerd::Reports {
            certified: Box::new(move |result| m1.tls.certified(result)),
            changed: Box::new(move |store| m2.tls.cert_refreshed(store.not_after())),
        };
        return tokio::spawn(linkerd::run(
            gw.tls.store.clone(),
            certifier,
            linkerd.clone(),
            config.reload_interval,
            hooks,
            reports,
        ));
    }
    let reloaded = gw.clone();
    tokio::spawn(super::watch(
        gw.tls.store.clone(),
        config.clone(),
        gw.tls.provider().clone(),
        hooks,
        move |store, roots| {
            reloaded.metrics.tls.cert_refreshed(store.not_after());
            reloaded.client_tls.set_roots(roots.clone());
            if let Err(e) = reloaded.tls.rebuild(roots) {
                tracing::warn!(error = %crate::explain::tls(&e), "cannot rebuild TLS with the new anchors");
            }
        },
    ))
}
