//! Rounds in rotating order, medians and paired ratios.

use std::io;

/// One measurement of one peer in one round.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// The rate measured (requests/s, MB/s, ...).
    pub value: f64,
    /// Failed requests during the measurement.
    pub errors: u64,
}

/// The samples of one peer, one per round.
#[derive(Clone, Debug, Default)]
pub struct Series(pub Vec<Sample>);

impl Series {
    /// The median value.
    pub fn median(&self) -> f64 {
        median(self.0.iter().map(|s| s.value).collect())
    }

    /// The smallest and the largest value.
    pub fn spread(&self) -> (f64, f64) {
        spread(self.0.iter().map(|s| s.value))
    }

    /// Errors over all rounds.
    pub fn errors(&self) -> u64 {
        self.0.iter().map(|s| s.errors).sum()
    }
}

/// A ratio between two peers: the median over rounds of the ratio within
/// each round, so that a slow moment of the machine, which slows both peers
/// of a round alike, does not move it.
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
    /// Median of the per-round ratios.
    pub median: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
}

impl Ratio {
    /// `a / b`, round by round.
    pub fn of(a: &Series, b: &Series) -> Ratio {
        let ratios: Vec<f64> =
            a.0.iter()
                .zip(&b.0)
                .map(|(a, b)| a.value / b.value)
                .collect();
        let (min, max) = spread(ratios.iter().copied());
        Ratio {
            median: median(ratios),
            min,
            max,
        }
    }
}

/// The median (the mean of the two middle values for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The nearest-rank percentile `p` (0-100) of `values`.
pub fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn spread(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// Measures every peer once per round; returns one series per peer.
///
/// The order rotates by one place each round, so that no peer always
/// follows the same one, and every other round runs backwards, so that of
/// two neighbours in `peers` each goes first as often as the other. Peers
/// compared with each other belong next to each other in `peers`: then
/// they are measured seconds apart in every round but one, and a slow
/// patch of the machine falls on both.
///
/// # Errors
/// The first failed measurement.
pub fn rotate<P>(
    peers: &[P],
    rounds: usize,
    measure: impl FnMut(&P) -> io::Result<Sample>,
) -> io::Result<Vec<Series>> {
    let rounds = rotate_with(peers, rounds, measure)?;
    Ok(rounds.into_iter().map(Series).collect())
}

/// [`rotate`] for measurements of any kind: one `Vec` per peer, a
/// measurement per round.
///
/// # Errors
/// The first failed measurement.
pub fn rotate_with<P, S>(
    peers: &[P],
    rounds: usize,
    mut measure: impl FnMut(&P) -> io::Result<S>,
) -> io::Result<Vec<Vec<S>>> {
    let mut series: Vec<Vec<S>> = peers.iter().map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..peers.len())
            .map(|i| (i + round) % peers.len())
            .collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            series[i].push(measure(&peers[i])?);
        }
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(hundred.clone(), 99.0), 99.0);
        assert_eq!(percentile(hundred, 50.0), 50.0);
        assert_eq!(percentile(vec![7.0], 99.0), 7.0);
    }

    #[test]
    fn ratios_are_paired_by_round() {
        let series =
            |v: &[f64]| Series(v.iter().map(|&value| Sample { value, errors: 0 }).collect());
        // A slow second round halves both peers; the paired ratio stays 2.
        let ratio = Ratio::of(&series(&[20.0, 10.0, 22.0]), &series(&[10.0, 5.0, 11.0]));
        assert_eq!((ratio.median, ratio.min, ratio.max), (2.0, 2.0, 2.0));
    }

    #[test]
    fn rotation_changes_who_goes_first() {
        let mut order = Vec::new();
        rotate(&['a', 'b', 'c'], 4, |p| {
            order.push(*p);
            Ok(Sample {
                value: 1.0,
                errors: 0,
            })
        })
        .unwrap();
        // abc; bca backwards; cab; abc backwards.
        assert_eq!(order.iter().collect::<String>(), "abcacbcabcba");
    }
}
