//! How far the median of a few noisy rounds can be trusted: a confidence interval for the
//! median from the rounds' own order, whatever the distribution of the rounds.

/// The least confidence of the drivers' intervals.
pub(crate) const CONFIDENCE: f64 = 0.95;

/// The median of `values` (the upper one of an even count) and an interval that holds the
/// true median with at least [`CONFIDENCE`], for independent rounds: the `k`-th smallest
/// and the `k`-th largest value, `k` the largest rank for which the chance that fewer than
/// `k` rounds fall below the median (a binomial tail with one half) stays within half of
/// `1 - CONFIDENCE`. No interval for fewer than 6 values: even the smallest and largest
/// miss the median more often than that. `None` for no values.
pub(crate) fn median_interval(mut values: Vec<f64>) -> Option<(f64, Option<(f64, f64)>)> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = *values.get(n / 2)?;
    // P(at most i of n rounds below the median), summed term by term; each term from the
    // last in logarithms, so that long runs neither overflow nor underflow.
    let tail = (1.0 - CONFIDENCE) / 2.0;
    let mut ln_term = -(n as f64) * std::f64::consts::LN_2;
    let mut below = 0.0;
    let mut k = 0;
    for i in 0..n {
        below += ln_term.exp();
        if below > tail {
            break;
        }
        k = i + 1;
        ln_term += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let interval = (k > 0).then(|| (values[k - 1], values[n - k]));
    Some((median, interval))
}

/// `median` and its interval as a ratio: `0.971x [0.891-1.098]`.
pub(crate) fn ratio_with_interval(values: Vec<f64>) -> String {
    match median_interval(values) {
        Some((median, Some((low, high)))) => format!("{median:.3}x [{low:.3}-{high:.3}]"),
        Some((median, None)) => format!("{median:.3}x [too few rounds]"),
        None => "no rounds".to_owned(),
    }
}
