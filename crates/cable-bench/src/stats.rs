//! Latency histograms (nanoseconds) and how they are reported (milliseconds).

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A histogram of nanoseconds, 1 ns to one hour, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `ns`, clamped into the histogram's range.
pub(crate) fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1));
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1_000.0).round() / 1_000.0
}

const QUANTILES: [(&str, f64); 3] = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)];

/// `{"p50":…,"p90":…,"p99":…,"max":…}` in milliseconds, or `null`s when nothing was recorded.
pub(crate) fn percentiles_json(h: &Histogram<u64>) -> Value {
    let mut out = serde_json::Map::new();
    for (name, q) in QUANTILES {
        out.insert(name.into(), quantile(h, q).map_or(Value::Null, Value::from));
    }
    out.insert(
        "max".into(),
        if h.is_empty() {
            Value::Null
        } else {
            json!(ms(h.max()))
        },
    );
    Value::Object(out)
}

fn quantile(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| ms(h.value_at_quantile(q)))
}

/// The header of the human-readable percentile table.
pub(crate) fn table_header() -> String {
    format!(
        "  {:<14} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "(ms)", "p50", "p90", "p99", "max", "count"
    )
}

/// One row of the human-readable percentile table.
pub(crate) fn table_row(name: &str, h: &Histogram<u64>) -> String {
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    format!(
        "  {:<14} {:>10} {:>10} {:>10} {:>10} {:>10}",
        name,
        cell(quantile(h, 0.50)),
        cell(quantile(h, 0.90)),
        cell(quantile(h, 0.99)),
        cell((!h.is_empty()).then(|| ms(h.max()))),
        h.len()
    )
}

/// `value` rounded to `digits` decimals, for the summary.
pub(crate) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut h = histogram();
        for us in 1..=100u64 {
            record(&mut h, us * 1_000);
        }
        let p = percentiles_json(&h);
        assert!((p["p50"].as_f64().unwrap() - 0.050).abs() < 0.001, "{p}");
        assert!((p["max"].as_f64().unwrap() - 0.100).abs() < 0.001, "{p}");
        assert_eq!(percentiles_json(&histogram())["p99"], Value::Null);
    }
}
