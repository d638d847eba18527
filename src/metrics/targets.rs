//! Which target names may become metric labels. A name a client sends is only a label once it
//! is known to be real: a `[routing.static]` key, or a target an upstream connection reached.
//! Everything else (refused names, names that do not resolve, names an identity without rights
//! invents) is counted under one placeholder, `other`, as is every target past the
//! `[server] max_metric_targets` cap; `metric_targets_folded_total` counts how often.

use crate::route::Target;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashSet;
use std::sync::RwLock;

/// The placeholder label of targets that are not (or not yet) known.
pub const OTHER: &str = "other";

pub struct TargetLabels {
    known: RwLock<HashSet<Target>>,
    max: usize,
    /// Labels folded into [`OTHER`].
    pub folded: Counter,
}

impl TargetLabels {
    pub fn new(max: usize) -> TargetLabels {
        TargetLabels {
            known: RwLock::new(HashSet::new()),
            max,
            folded: Counter::default(),
        }
    }

    /// `target` is real (configured, or an upstream connection reached it): its name may be a
    /// label from now on, while the cap allows.
    pub fn reached(&self, target: &Target) {
        if self.is_known(target) {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if known.len() < self.max {
            known.insert(target.clone());
        }
    }

    pub fn is_known(&self, target: &Target) -> bool {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(target)
    }

    /// The `authority` label of `target`: `name:port` when known, else [`OTHER`] (counted).
    pub fn authority(&self, target: &Target) -> String {
        if self.is_known(target) {
            target.to_string()
        } else {
            self.folded.inc();
            OTHER.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Target {
        Target {
            name: name.into(),
            port: 80,
        }
    }

    #[test]
    fn only_reached_targets_under_the_cap_are_labels() {
        let labels = TargetLabels::new(2);
        assert_eq!(labels.authority(&t("a.ns.svc.cluster.local")), OTHER);
        labels.reached(&t("a.ns.svc.cluster.local"));
        labels.reached(&t("b.ns.svc.cluster.local"));
        labels.reached(&t("c.ns.svc.cluster.local"));
        assert_eq!(
            labels.authority(&t("a.ns.svc.cluster.local")),
            "a.ns.svc.cluster.local:80"
        );
        assert_eq!(labels.authority(&t("c.ns.svc.cluster.local")), OTHER);
        assert_eq!(labels.folded.get(), 2);
    }
}
