//! Unit tests of `table`: quantiles against hand-computed values, rows from a metrics text,
//! the two renderings, and `--prober` as people type it.

use super::*;

/// Cumulative buckets 1,2,5,+Inf holding 10, 20, 10, 0 observations.
const B: &[(f64, f64)] = &[(1.0, 10.0), (2.0, 30.0), (5.0, 40.0), (f64::INFINITY, 40.0)];

#[test]
fn quantiles_interpolate_like_histogram_quantile() {
    // rank 20 falls in (1,2] holding ranks 10..30: 1 + 1 * (20-10)/20.
    assert_eq!(quantile(0.5, B), Some(1.5));
    // rank 38 falls in (2,5] holding 30..40: 2 + 3 * 8/10.
    assert_eq!(quantile(0.95, B), Some(4.4));
    // rank 4 in the first bucket, which starts at 0.
    assert_eq!(quantile(0.1, B), Some(0.4));
    // Unordered input is sorted first.
    let mut rev = B.to_vec();
    rev.reverse();
    assert_eq!(quantile(0.5, &rev), Some(1.5));
}

#[test]
fn rank_in_the_inf_bucket_is_the_highest_finite_bound() {
    let b = [(1.0, 1.0), (2.0, 1.0), (f64::INFINITY, 10.0)];
    assert_eq!(quantile(0.99, &b), Some(2.0));
}

#[test]
fn no_observations_or_no_inf_bucket_is_no_estimate() {
    assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
    assert_eq!(quantile(0.5, &[(1.0, 3.0)]), None);
    assert_eq!(quantile(0.5, &[]), None);
}

const METRICS: &str = "# TYPE gateway_enabled gauge\n\
gateway_enabled{target_cluster_name=\"west\"} 1\n\
gateway_enabled{target_cluster_name=\"east\"} 1\n\
gateway_alive{target_cluster_name=\"west\"} 0\n\
gateway_alive{target_cluster_name=\"east\"} 1\n\
gateway_latency{target_cluster_name=\"west\"} 0.0\n\
gateway_latency{target_cluster_name=\"east\"} 12.4\n\
gateway_probe_latency_ms_bucket{le=\"1.0\",target_cluster_name=\"east\"} 10\n\
gateway_probe_latency_ms_bucket{le=\"2.0\",target_cluster_name=\"east\"} 30\n\
gateway_probe_latency_ms_bucket{le=\"5.0\",target_cluster_name=\"east\"} 40\n\
gateway_probe_latency_ms_bucket{le=\"+Inf\",target_cluster_name=\"east\"} 40\n\
gateway_probe_latency_ms_bucket{le=\"+Inf\",target_cluster_name=\"west\"} 0\n\
gateway_probes_total{target_cluster_name=\"east\",probe_successful=\"true\"} 40\n\
gateway_probes_total{target_cluster_name=\"east\",probe_successful=\"false\"} 2\n\
gateway_probes_total{target_cluster_name=\"west\",probe_successful=\"true\"} 0\n\
gateway_probes_total{target_cluster_name=\"west\",probe_successful=\"false\"} 5\n\
gateway_mirrored_services{target_cluster_name=\"east\"} 3\n\
gateway_mirrored_services{target_cluster_name=\"west\"} 0\n\
gateway_alive{target_cluster_name=\"unlisted\"} 1\n\
# EOF\n";

fn parsed() -> Vec<GatewayRow> {
    rows(&openmetrics::parse(METRICS).unwrap())
}

#[test]
fn rows_from_metrics_text() {
    let rows = parsed();
    assert_eq!(
        rows,
        vec![
            GatewayRow {
                cluster_name: "east".into(),
                alive: true,
                number_of_services: 3,
                latency: Some(12.4),
                p50: Some(1.5),
                p95: Some(4.4),
                p99: Some(4.88),
                probes: 42,
                failed: 2,
            },
            GatewayRow {
                cluster_name: "west".into(),
                alive: false,
                number_of_services: 0,
                latency: None,
                p50: None,
                p95: None,
                p99: None,
                probes: 5,
                failed: 5,
            },
        ]
    );
}

#[test]
fn table_columns_line_up() {
    let table = render_table(&parsed());
    assert_eq!(
        table,
        "CLUSTER  ALIVE  NUM_SVC  LATENCY  P50    P95    P99\n\
         east     true   3        12ms     1.5ms  4.4ms  4.9ms\n\
         west     false  0        -        -      -      -\n"
    );
}

#[test]
fn json_uses_linkerds_field_names() {
    let v: serde_json::Value = serde_json::from_str(&render_json(&parsed())).unwrap();
    assert_eq!(v[0]["clusterName"], "east");
    assert_eq!(v[0]["alive"], true);
    assert_eq!(v[0]["numberOfServices"], 3);
    assert_eq!(v[0]["latency"], 12.4);
    assert_eq!(v[0]["p50"], 1.5);
    assert_eq!(v[1]["latency"], serde_json::Value::Null);
    assert!(v[0].get("probes").is_none());
}

#[test]
fn prober_url_as_people_type_it() {
    let metrics = "http://10.0.0.1:4192/metrics";
    assert_eq!(prober_url(metrics).unwrap(), metrics);
    assert_eq!(prober_url("http://10.0.0.1:4192").unwrap(), metrics);
    assert_eq!(prober_url("http://10.0.0.1:4192/").unwrap(), metrics);
    assert_eq!(prober_url("10.0.0.1:4192").unwrap(), metrics);
    assert_eq!(
        prober_url("http://[::1]:4192").unwrap(),
        "http://[::1]:4192/metrics"
    );
    assert_eq!(
        prober_url("http://p:4192/other/metrics").unwrap(),
        "http://p:4192/other/metrics",
        "a path given is kept"
    );
    let https = prober_url("https://p:4192").unwrap_err();
    assert!(https.contains("only http://"), "{https}");
    assert!(prober_url("http://").is_err());
}
