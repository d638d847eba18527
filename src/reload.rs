//! Rules that reload without a restart. On SIGHUP (the binary calls [`reload`]) and when the
//! configuration file changes (polled every `[identity] reload_interval`, like the identity
//! files), the whole file is read and validated again. Valid: `[routing]` and
//! `[[authorization]]` are swapped in one step for every new connection and request. Invalid:
//! the old rules stay and every problem is logged with file and key, as at start. Keys that
//! only take effect at a restart are named in a log line when they differ.

use crate::Gateway;
use crate::config::{Config, Source};
use crate::rules::Rules;
use std::path::Path;
use std::time::SystemTime;

/// Reads the configuration file again and swaps the rules if it is valid. Returns whether
/// the new rules are in force. Blocking file reads run off the async workers.
pub async fn reload(gw: &Gateway) -> bool {
    let Some(source) = gw.source.clone() else {
        tracing::warn!("configuration was not read from a file; nothing to reload");
        return false;
    };
    let loaded = tokio::task::spawn_blocking(move || {
        // Stamped before reading: an edit made while reading is seen again by the watch.
        let stamp = modified(&source.path);
        (stamp, Config::load(&source.path, &source.overrides))
    })
    .await
    .map(|(stamp, loaded)| {
        *gw.config_stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
        loaded
    });
    let config = match loaded {
        Ok(Ok(c)) => c,
        Ok(Err(errors)) => {
            for e in &errors.0 {
                tracing::error!(problem = %e, "configuration not reloaded; keeping the current rules");
            }
            gw.metrics.config.reloaded(false);
            return false;
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration reload task failed");
            gw.metrics.config.reloaded(false);
            return false;
        }
    };
    let restart = needs_restart(&gw.config, &config);
    if !restart.is_empty() {
        tracing::warn!(
            keys = %restart.join(", "),
            "configuration keys changed that take effect only at a restart"
        );
    }
    let rules = Rules::from_config(&config, gw.identity());
    let summary = (
        config.routing.statics.len(),
        config.authorization.len(),
        config.routing.cluster_domain.clone(),
    );
    gw.rules.swap(rules);
    gw.metrics.config.reloaded(true);
    tracing::info!(
        static_routes = summary.0,
        authorization_rules = summary.1,
        cluster_domain = %summary.2,
        "configuration reloaded"
    );
    true
}

/// Polls the configuration file's modification time and reloads when it differs from the
/// file last read (at start, by a SIGHUP, or by this watch). Runs until dropped.
pub async fn watch(gw: std::sync::Arc<Gateway>, source: Source) {
    *gw.config_stamp.lock().unwrap_or_else(|e| e.into_inner()) = modified(&source.path);
    let mut tick = tokio::time::interval(gw.config.identity.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let p = source.path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || modified(&p)).await else {
            continue;
        };
        let last = *gw.config_stamp.lock().unwrap_or_else(|e| e.into_inner());
        if now != last {
            reload(&gw).await;
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The keys whose change a reload does not apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.server, &new.server);
    let mut keys = Vec::new();
    macro_rules! compare {
        ($($section:literal $x:expr, $y:expr;)*) => {
            $(if $x != $y { keys.push($section); })*
        };
    }
    compare! {
        "server.listen" a.listen, b.listen;
        "server.admin" a.admin, b.admin;
        "server.threads" a.threads, b.threads;
        "server.handshake_timeout" a.handshake_timeout, b.handshake_timeout;
        "server.header_timeout" a.header_timeout, b.header_timeout;
        "server.connect_timeout" a.connect_timeout, b.connect_timeout;
        "server.idle_timeout" a.idle_timeout, b.idle_timeout;
        "server.http_idle_timeout" a.http_idle_timeout, b.http_idle_timeout;
        "server.response_timeout" a.response_timeout, b.response_timeout;
        "server.max_connections" a.max_connections, b.max_connections;
        "server.max_in_flight" a.max_in_flight, b.max_in_flight;
        "server.h2_max_concurrent_streams" a.h2_max_concurrent_streams, b.h2_max_concurrent_streams;
        "server.tls_resumption" a.tls_resumption, b.tls_resumption;
        "server.drain_timeout" a.drain_timeout, b.drain_timeout;
        "identity.trust_anchors" old.identity.trust_anchors, new.identity.trust_anchors;
        "identity.certificate" old.identity.certificate, new.identity.certificate;
        "identity.key" old.identity.key, new.identity.key;
        "identity.name" old.identity.name, new.identity.name;
        "identity.reload_interval" old.identity.reload_interval, new.identity.reload_interval;
        "identity.linkerd" old.identity.linkerd, new.identity.linkerd;
        "routing.dns_servers" old.routing.dns_servers, new.routing.dns_servers;
        "log.access" old.log, new.log;
        "discovery" old.discovery, new.discovery;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn parse(extra: &str) -> Config {
        let dir = std::env::temp_dir();
        for f in ["cg-reload-ca.crt", "cg-reload-tls.crt", "cg-reload-tls.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let text = format!(
            "{extra}\n[identity]\ntrust_anchors = \"cg-reload-ca.crt\"\ncertificate = \"cg-reload-tls.crt\"\nkey = \"cg-reload-tls.key\"\n"
        );
        Config::parse(&text, "t.toml", &dir, &Overrides::default()).unwrap()
    }

    #[test]
    fn restart_keys_named() {
        let old = parse("[server]\nlisten = \"127.0.0.1:1\"\n");
        let same =
            parse("[server]\nlisten = \"127.0.0.1:1\"\n[[authorization]]\nidentities = [\"*\"]\n");
        assert!(needs_restart(&old, &same).is_empty());
        let moved =
            parse("[server]\nlisten = \"127.0.0.1:2\"\nthreads = 2\n[log]\naccess = \"all\"\n");
        assert_eq!(
            needs_restart(&old, &moved),
            vec!["server.listen", "server.threads", "log.access"]
        );
        let discovered = parse("[discovery]\ndestination_addr = \"127.0.0.1:8086\"\n");
        assert_eq!(
            needs_restart(&old, &discovered),
            vec!["server.listen", "discovery"]
        );
    }
}
