//! Metrics by name, for the command line: `metric_from_name("top_k:3")`, `metrics_from_names("accuracy,f1")`.

use super::{Accuracy, AccuracyMulti, ErrorRate, F1Score, F1ScoreMulti, Metric, Precision, Recall, TopKAccuracy};
use crate::{LearnerError, Result};

/// The names [`metric_from_name`] knows, as its error lists them. `top_k:K` takes any `K` from 1; the column
/// names (`f1_score`, `top_3_accuracy`, ...) and plain `top_k` (fastai's default, `K = 5`) are accepted too.
pub const METRIC_NAMES: &[&str] =
    &["accuracy", "error_rate", "top_k:K", "f1", "precision", "recall", "accuracy_multi[:T]", "f1_multi[:T]"];

/// The metric called `name`: `accuracy`, `error_rate`, `top_k:K` (also `top_K_accuracy`, or `top_k` for
/// `K = 5`), `f1` (or `f1_score`), `precision` (or `precision_score`), `recall` (or `recall_score`); for multi-label
/// data `accuracy_multi` and `f1_multi` (fastai's `F1ScoreMulti`), each at threshold 0.5 or at `T` with `:T`
/// (`accuracy_multi:0.3`).
///
/// ```
/// use tiny_learner::metric_from_name;
/// assert_eq!(metric_from_name("top_k:3").unwrap().name(), "top_3_accuracy");
/// assert!(metric_from_name("error_rate").unwrap().lower_is_better());
/// let err = metric_from_name("acuracy").unwrap_err().to_string();
/// assert!(err.contains("acuracy") && err.contains("accuracy, error_rate, top_k:K, f1, precision, recall"));
/// assert_eq!(metric_from_name("accuracy_multi:0.3").unwrap().name(), "accuracy_multi");
/// ```
///
/// # Errors
/// [`LearnerError::UnknownMetric`], listing the known names, for any other name;
/// [`LearnerError::InvalidArgument`] for a `K` that is not a whole number from 1.
pub fn metric_from_name(name: &str) -> Result<Box<dyn Metric>> {
    let name = name.trim();
    let k = name
        .strip_prefix("top_k:")
        .or_else(|| name.strip_prefix("top_").and_then(|s| s.strip_suffix("_accuracy")).filter(|k| *k != "k"));
    if let Some(k) = k {
        let k = k.parse().map_err(|_| LearnerError::InvalidArgument {
            what: "metric_from_name",
            msg: format!("{name}: the k of top_k:K must be a whole number from 1, not {k:?}"),
        })?;
        return Ok(Box::new(TopKAccuracy::new(k)?));
    }
    let (base, thresh) = match name.split_once(':') {
        Some((base @ ("accuracy_multi" | "f1_multi"), t)) => {
            let t: f32 =
                t.parse().ok().filter(|t: &f32| t.is_finite()).ok_or_else(|| LearnerError::InvalidArgument {
                    what: "metric_from_name",
                    msg: format!("{name}: the threshold T of {base}:T must be a number, not {t:?}"),
                })?;
            (base, t)
        }
        _ => (name, crate::DEFAULT_THRESH),
    };
    Ok(match base {
        "accuracy_multi" => Box::new(AccuracyMulti::new(thresh)),
        "f1_multi" => Box::new(F1ScoreMulti::new(thresh)),
        "accuracy" => Box::new(Accuracy::new()),
        "error_rate" => Box::new(ErrorRate::new()),
        "top_k" | "top_k_accuracy" => Box::new(TopKAccuracy::new(5)?),
        "f1" | "f1_score" => Box::new(F1Score::new()),
        "precision" | "precision_score" => Box::new(Precision::new()),
        "recall" | "recall_score" => Box::new(Recall::new()),
        _ => {
            let known = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
            return Err(LearnerError::UnknownMetric { name: name.to_string(), known });
        }
    })
}

/// The metrics of a comma-separated list such as `accuracy,error_rate,top_k:3,f1`, in order; an empty (or
/// blank) list gives none.
///
/// ```
/// use tiny_learner::metrics_from_names;
/// let names: Vec<String> = metrics_from_names("accuracy, error_rate,top_k:3,f1").unwrap().iter().map(|m| m.name()).collect();
/// assert_eq!(names, ["accuracy", "error_rate", "top_3_accuracy", "f1_score"]);
/// assert!(metrics_from_names("").unwrap().is_empty());
/// assert!(metrics_from_names("accuracy,accuracy").is_err());
/// ```
///
/// # Errors
/// As [`metric_from_name`] for each item (an empty item is an unknown name), and
/// [`LearnerError::InvalidArgument`] when two items make the same column.
pub fn metrics_from_names(list: &str) -> Result<Vec<Box<dyn Metric>>> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut metrics: Vec<Box<dyn Metric>> = Vec::new();
    for item in list.split(',') {
        let metric = metric_from_name(item)?;
        if metrics.iter().any(|m| m.name() == metric.name()) {
            let msg = format!("{list}: the metric {} is listed twice", metric.name());
            return Err(LearnerError::InvalidArgument { what: "metrics_from_names", msg });
        }
        metrics.push(metric);
    }
    Ok(metrics)
}
