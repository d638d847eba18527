//! Rules that reload without a restart. On SIGHUP (the binary calls [`reload`]) and when the
//! configuration file changes (polled every `[identity] reload_interval`, like the identity
//! files), the whole file is read and validated again. Valid: `[routing]`,
//! `[[authorization]]`, `[server] allow_sources`, `[sni] default_port` and `[passthrough]
//! allow` are swapped in one step for every new
//! connection and request. Invalid: the old rules stay and every problem is logged with file
//! and key, as at start. Every other
//! setting takes effect only at a restart; those that differ are named in a log line.

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
        config.server.allow_sources.as_ref().map(Vec::len),
    );
    gw.rules.swap(rules);
    gw.metrics.config.reloaded(true);
    tracing::info!(
        static_routes = summary.0,
        authorization_rules = summary.1,
        cluster_domain = %summary.2,
        allow_sources = %summary.3.map_or("any".to_string(), |n| format!("{n} networks")),
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

/// The settings whose change a reload does not apply: every setting of the old and new
/// configuration is compared by its `Debug` text, except the rules (`[routing]` table and
/// domain, `[[authorization]]`, `[server] allow_sources`), which reload. Each struct is
/// destructured without `..`, so a new key fails to compile until it is listed here.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut differ = |key: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        if format!("{a:?}") != format!("{b:?}") {
            keys.push(key.to_string());
        }
    };
    macro_rules! each {
        ($section:literal, $a:expr, $b:expr, $ty:path { $($field:ident),* $(,)? } $(except $($skip:ident),*)?) => {{
            let $ty { $($field: _,)* $($($skip: _,)*)? } = $a;
            $(differ(concat!($section, ".", stringify!($field)), &$a.$field, &$b.$field);)*
        }};
    }
    let Config {
        server: _,
        identity: _,
        routing: _,
        authorization: _, // rules: reloaded
        log: _,
        discovery: _,
        balancer: _,
        policy: _,
        source: _, // where it was read from, not a setting
        sni: _,
        passthrough: _,
    } = old;
    each!("server", &old.server, &new.server, crate::config::Server {
        listen, admin, threads, handshake_timeout, header_timeout, connect_timeout, idle_timeout,
        http_idle_timeout, response_timeout, max_connections, max_in_flight,
        h2_max_concurrent_streams, tls_resumption, drain_timeout, drain_delay,
        admin_max_connections, admin_idle_timeout, max_metric_targets, metrics,
    } except allow_sources);
    each!(
        "identity",
        &old.identity,
        &new.identity,
        crate::config::Identity {
            trust_anchors,
            certificate,
            key,
            name,
            reload_interval,
            linkerd,
        }
    );
    each!("routing", &old.routing, &new.routing, crate::config::Routing {
        dns_servers,
    } except cluster_domain, statics);
    each!("log", &old.log, &new.log, crate::config::Log { access });
    // The balancer's fields are named apart from their keys.
    let crate::config::Balancer {
        default_rtt,
        decay,
        failfast,
    } = &old.balancer;
    let b = &new.balancer;
    differ("discovery.ewma_default_rtt", default_rtt, &b.default_rtt);
    differ("discovery.ewma_decay", decay, &b.decay);
    differ("discovery.failfast_timeout", failfast, &b.failfast);
    differ("discovery", &old.discovery, &new.discovery);
    differ("policy", &old.policy, &new.policy);
    // `[sni] default_port` and `[passthrough] allow` are rules: reloaded. The certificate
    // files reload on their own (their watch); which entries there are, only at a restart.
    each!("sni", &old.sni, &new.sni, crate::config::Sni {
        certificates,
    } except default_port);
    match (&old.passthrough, &new.passthrough) {
        (Some(a), Some(b)) => each!("passthrough", a, b, crate::config::Passthrough {
            listen, max_connections,
        } except allow),
        (a, b) => differ("passthrough", a, b),
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
        // The keys a hand-written list once missed; allow_sources is a rule and reloads.
        let missed = parse(
            "[server]\nlisten = \"127.0.0.1:1\"\ndrain_delay = \"5s\"\nadmin_idle_timeout = \"1s\"\n\
             admin_max_connections = 7\nmax_metric_targets = 9\nmetrics = \"127.0.0.1:3\"\n\
             allow_sources = [\"10.0.0.0/8\"]\n[routing]\ncluster_domain = \"example.org\"\n",
        );
        assert_eq!(
            needs_restart(&old, &missed),
            vec![
                "server.drain_delay",
                "server.admin_max_connections",
                "server.admin_idle_timeout",
                "server.max_metric_targets",
                "server.metrics",
            ]
        );
        // `[sni] default_port` and `[passthrough] allow` are rules; the port and the
        // certificate entries are not.
        let passthrough = |allow: &str, listen: &str| {
            parse(&format!(
                "[server]\nlisten = \"127.0.0.1:1\"\n[sni]\ndefault_port = 443\n\
                 [passthrough]\nlisten = \"{listen}\"\nallow = [\"{allow}\"]\n"
            ))
        };
        let a = passthrough("*.a.svc.cluster.local", "127.0.0.1:15443");
        let b = passthrough("*.b.svc.cluster.local", "127.0.0.1:15443");
        assert!(needs_restart(&a, &b).is_empty());
        let moved = passthrough("*.a.svc.cluster.local", "127.0.0.1:15444");
        assert_eq!(needs_restart(&a, &moved), vec!["passthrough.listen"]);
        assert_eq!(needs_restart(&old, &a), vec!["passthrough"]);
        let certificate = parse(
            "[server]\nlisten = \"127.0.0.1:1\"\n[[sni.certificate]]\nnames = [\"a.b\"]\n\
             certificate = \"cg-reload-tls.crt\"\nkey = \"cg-reload-tls.key\"\n",
        );
        assert_eq!(needs_restart(&old, &certificate), vec!["sni.certificates"]);
        let discovered = parse("[discovery]\ndestination_addr = \"127.0.0.1:8086\"\n");
        assert_eq!(
            needs_restart(&old, &discovered),
            vec!["server.listen", "discovery"]
        );
    }
}
