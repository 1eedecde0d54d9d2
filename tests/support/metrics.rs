//! The filter's metrics as Prometheus reads them from Envoy's
//! `/stats/prometheus`: series summed by label, as a PromQL `sum` would.

use mcp_policy::metrics::DECISIONS;

use super::envoy::Envoy;

/// One sample line: `name{a="x",b="y"} value`, parsed.
pub struct Sample {
    pub metric: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample of a Prometheus text scrape (comments skipped).
pub fn samples(scrape: &str) -> Vec<Sample> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.trim().parse().ok()?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (label, value) = pair.split_once("=\"")?;
                    Some((label.to_string(), value.trim_end_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                metric: metric.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// The sum of `metric`'s series whose labels include all of `selector`.
/// Panics if the scrape has no such metric at all (a configuration without
/// the stats tags names it otherwise, and must not read as zero).
pub fn sum(scrape: &str, metric: &str, selector: &[(&str, &str)]) -> u64 {
    let samples = samples(scrape);
    assert!(
        samples.iter().any(|sample| sample.metric == metric),
        "{metric} is not in the scrape; lines naming mcp_policy:\n{}",
        scrape
            .lines()
            .filter(|line| line.contains("mcp_policy"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    selected(&samples, metric, selector)
}

/// The sum of `metric`'s samples whose labels include all of `selector`.
fn selected(samples: &[Sample], metric: &str, selector: &[(&str, &str)]) -> u64 {
    let total: f64 = samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            selector.iter().all(|(label, value)| {
                sample
                    .labels
                    .iter()
                    .any(|(have, is)| have == label && is == value)
            })
        })
        .map(|sample| sample.value)
        .sum();
    total as u64
}

/// `sum(mcp_policy_decisions_total{selector})` of one Envoy.
pub async fn decisions(envoy: &Envoy, selector: &[(&str, &str)]) -> u64 {
    sum(&envoy.admin("/stats/prometheus").await, DECISIONS, selector)
}

/// `sum(metric{selector})` of a service's own `/metrics` page (the
/// rate-limit and approval services): 0 while nothing was counted, as those
/// services export a labelled counter only once it has a series.
pub async fn service_sum(metrics_url: &str, metric: &str, selector: &[(&str, &str)]) -> u64 {
    let scrape = reqwest::get(metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    selected(&samples(&scrape), metric, selector)
}
