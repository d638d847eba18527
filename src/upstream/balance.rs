//! The balancer's choice, as Linkerd's proxies make it: power of two choices over the *ready*
//! endpoints, each weighed by its peak-EWMA round-trip time times its requests in flight plus
//! one. Pure: plain numbers in, an index out; time and randomness are arguments, so that the
//! choice is tested with a seeded source and no clock.

/// An endpoint's round-trip estimate (peak EWMA, as tower's `PeakEwma`): a slower sample
/// replaces the estimate at once; faster ones pull it down with weight `1 - e^(-Δt/decay)`;
/// without samples it decays toward zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rtt {
    /// Nanoseconds.
    pub estimate: f64,
    /// When the estimate was last updated, nanoseconds on the caller's clock.
    pub at: u64,
}

impl Rtt {
    /// An endpoint with no samples yet: the default RTT, as of `now`.
    pub fn new(default_ns: f64, now: u64) -> Rtt {
        Rtt {
            estimate: default_ns,
            at: now,
        }
    }

    /// Takes a sample of `rtt_ns` received at `now`.
    pub fn observe(&mut self, rtt_ns: f64, now: u64, decay_ns: f64) {
        let decay = weight(now.saturating_sub(self.at), decay_ns);
        let next = self.estimate * decay + rtt_ns * (1.0 - decay);
        self.estimate = if rtt_ns > self.estimate { rtt_ns } else { next };
        self.at = self.at.max(now);
    }

    /// The estimate decayed to `now` (a zero-length sample, as tower does when it weighs).
    pub fn at(&self, now: u64, decay_ns: f64) -> f64 {
        self.estimate * weight(now.saturating_sub(self.at), decay_ns)
    }
}

fn weight(elapsed_ns: u64, decay_ns: f64) -> f64 {
    if decay_ns <= 0.0 {
        return 0.0;
    }
    (-(elapsed_ns as f64) / decay_ns).exp()
}

/// The load of an endpoint: its RTT estimate times (requests in flight + 1).
pub fn load(rtt_ns: f64, in_flight: u32) -> f64 {
    rtt_ns * f64::from(in_flight.saturating_add(1))
}

/// Power of two choices among `n` endpoints: the lighter (by `load`) of two distinct ready
/// ones drawn at random (`random` yields uniform `u64`s); the only ready one when there is one;
/// `None` when none is ready. `load` is asked of the two drawn only.
pub fn p2c(
    n: usize,
    ready: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> f64,
    random: &mut impl FnMut() -> u64,
) -> Option<usize> {
    let count = (0..n).filter(|&i| ready(i)).count();
    let nth_ready = |k: usize| (0..n).filter(|&i| ready(i)).nth(k);
    match count {
        0 => None,
        1 => nth_ready(0),
        c => {
            let a = (random() % c as u64) as usize;
            // A second, distinct draw: one of the other c - 1, shifted past `a`.
            let mut b = (random() % (c as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            let (a, b) = (nth_ready(a)?, nth_ready(b)?);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

/// A small, fast, seedable generator (xorshift64*) for the balancer's draws: not for secrets.
#[derive(Clone, Debug)]
pub struct Draws(u64);

impl Draws {
    pub fn new(seed: u64) -> Draws {
        Draws(seed.max(1))
    }

    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    fn choose(loads: &[Option<f64>], random: &mut impl FnMut() -> u64) -> Option<usize> {
        p2c(
            loads.len(),
            |i| loads[i].is_some(),
            |i| loads[i].unwrap_or(f64::MAX),
            random,
        )
    }
    const DECAY: f64 = 10_000.0 * MS;

    #[test]
    fn a_slower_sample_is_taken_at_once_and_faster_ones_pull_down_slowly() {
        let mut rtt = Rtt::new(30.0 * MS, 0);
        rtt.observe(80.0 * MS, 1_000, DECAY);
        assert_eq!(rtt.estimate, 80.0 * MS, "peak: taken at once");
        // One second later, a 1 ms sample: weight 1 - e^-0.1 ≈ 0.095.
        rtt.observe(1.0 * MS, 1_000 + 1_000 * MS as u64, DECAY);
        let expected = 80.0 * MS * (-0.1f64).exp() + 1.0 * MS * (1.0 - (-0.1f64).exp());
        assert!((rtt.estimate - expected).abs() < 1.0, "{}", rtt.estimate);
        // Without samples the estimate decays toward zero.
        let later = rtt.at + 10_000 * MS as u64;
        assert!((rtt.at(later, DECAY) - rtt.estimate * (-1.0f64).exp()).abs() < 1.0);
        assert_eq!(rtt.at(rtt.at, DECAY), rtt.estimate);
    }

    #[test]
    fn load_grows_with_requests_in_flight() {
        assert_eq!(load(2.0, 0), 2.0);
        assert_eq!(load(2.0, 3), 8.0);
        assert_eq!(load(2.0, u32::MAX), 2.0 * f64::from(u32::MAX));
    }

    #[test]
    fn none_one_or_the_lighter_of_two_ready() {
        let mut draws = Draws::new(7);
        let mut random = || draws.draw();
        assert_eq!(choose(&[], &mut random), None);
        assert_eq!(choose(&[None, None], &mut random), None);
        assert_eq!(choose(&[None, Some(5.0), None], &mut random), Some(1));
        // Two ready: always the lighter, whatever the draws.
        for _ in 0..100 {
            assert_eq!(choose(&[Some(9.0), None, Some(1.0)], &mut random), Some(2));
        }
    }

    #[test]
    fn the_heaviest_of_three_is_never_chosen_and_the_lightest_wins_two_thirds() {
        let mut draws = Draws::new(42);
        let mut random = || draws.draw();
        let loads = [Some(1.0), Some(2.0), Some(50.0)];
        let mut chosen = [0usize; 3];
        for _ in 0..30_000 {
            chosen[choose(&loads, &mut random).unwrap()] += 1;
        }
        assert_eq!(chosen[2], 0, "the heaviest loses every pair it is drawn in");
        // The lightest wins both pairs it is in: 2/3 of the draws.
        let share = chosen[0] as f64 / 30_000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.02, "{chosen:?}");
    }

    #[test]
    fn seeded_draws_repeat_and_differ_by_seed() {
        let a: Vec<u64> = (0..4).scan(Draws::new(1), |d, _| Some(d.draw())).collect();
        let b: Vec<u64> = (0..4).scan(Draws::new(1), |d, _| Some(d.draw())).collect();
        let c: Vec<u64> = (0..4).scan(Draws::new(2), |d, _| Some(d.draw())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            Draws::new(0).draw(),
            Draws::new(1).draw(),
            "zero is not a stuck seed"
        );
    }
}
