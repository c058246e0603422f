//! Links between the proxy and the other ends of the network: a latency each way and a
//! loss rate for datagrams, drawn from a seeded generator so a run is reproducible.

use std::time::Duration;

/// One link's behaviour (the same both ways).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Link {
    /// One-way delay of every message.
    pub latency: Duration,
    /// The share of datagrams (UDP) lost, 0.0 to 1.0; a stream transport loses nothing (its
    /// own retransmissions are below what the network models).
    pub loss: f64,
}

impl Link {
    /// A link that delays every message by `latency`.
    pub fn latency(latency: Duration) -> Link {
        Link { latency, loss: 0.0 }
    }

    /// A link without delay that loses `loss` of its datagrams.
    pub fn lossy(loss: f64) -> Link {
        Link {
            latency: Duration::ZERO,
            loss,
        }
    }
}

/// A small seeded generator (SplitMix64): the same seed draws the same losses.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 bits, the precision of an f64 in [0, 1).
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_losses() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..64).map(|_| r.chance(0.3)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let lost = draw(7).iter().filter(|l| **l).count();
        assert!((5..40).contains(&lost), "{lost}");
        let mut r = Rng::new(1);
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
    }
}
