//! The benchmark drivers' confidence interval for a median (`benches/common/stats.rs`),
//! against the ranks statistics tables give.

#[path = "../benches/common/stats.rs"]
#[allow(dead_code)] // the drivers' formatting is not tested here
mod stats;

use stats::median_interval;

/// `1.0, 2.0, …, n` in a scrambled order.
fn ranks(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 7) % n + 1) as f64).collect()
}

#[test]
fn nine_rounds_give_the_second_smallest_and_second_largest() {
    assert_eq!(median_interval(ranks(9)), Some((5.0, Some((2.0, 8.0)))));
}

#[test]
fn the_ranks_match_the_tables() {
    // 95 % intervals for the median (rank k to n + 1 - k): n = 6 → 1, 20 → 6, 100 → 40.
    assert_eq!(median_interval(ranks(6)).unwrap().1, Some((1.0, 6.0)));
    assert_eq!(median_interval(ranks(20)).unwrap().1, Some((6.0, 15.0)));
    assert_eq!(median_interval(ranks(100)).unwrap().1, Some((40.0, 61.0)));
}

#[test]
fn five_rounds_are_too_few_for_an_interval_and_none_give_nothing() {
    assert_eq!(median_interval(ranks(5)), Some((3.0, None)));
    assert_eq!(median_interval(Vec::new()), None);
}

#[test]
fn long_runs_neither_overflow_nor_underflow() {
    let (median, interval) = median_interval(ranks(5001)).unwrap();
    assert_eq!(median, 2501.0);
    // The normal approximation: n/2 ± 1.96 √n / 2, ±69 ranks around 2,501.
    let (low, high) = interval.unwrap();
    assert!((2425.0..=2440.0).contains(&low), "{low}");
    assert_eq!(low + high, 5002.0);
}
