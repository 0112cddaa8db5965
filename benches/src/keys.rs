//! Keys, values and key distributions.
//!
//! Key `i` is `i` in big-endian in its first 8 bytes, so that keys sort in
//! the order of their numbers (what `fillseq` and `readseq` need), followed
//! by bytes derived from `i` up to the key size. The `n` keys of a database
//! are `0..n`; keys `n..2n` are never written, which is what `readmissing`
//! looks up.
//!
//! Values are slices of one buffer of random bytes, at offsets that vary
//! with the key, so that no store gains from compressing them and no two
//! consecutive values are identical.
//!
//! The Zipfian generator is the one YCSB uses (Gray et al., "Quickly
//! generating billion-record synthetic databases", SIGMOD 1994), with
//! YCSB's constant 0.99 and its scrambling: the popular ranks are hashed
//! across the key space so that hot keys are not also neighbours.

use rand::Rng;
use rand::rngs::SmallRng;

/// The smallest key size: the 8 bytes of the key's number.
pub const MIN_KEY_SIZE: usize = 8;

/// The keys and values of one run.
#[derive(Debug, Clone)]
pub struct KeySpace {
    /// How many keys the database holds.
    pub n: u64,
    key_size: usize,
    value_size: usize,
    random: Vec<u8>,
}

/// How far apart the values of consecutive keys start in the random buffer.
const VALUE_WINDOW: usize = 4096;

impl KeySpace {
    /// `n` keys of `key_size` bytes (at least [`MIN_KEY_SIZE`]) with values
    /// of `value_size` bytes.
    pub fn new(n: u64, key_size: usize, value_size: usize, rng: &mut SmallRng) -> Self {
        let mut random = vec![0; value_size + VALUE_WINDOW];
        rng.fill(random.as_mut_slice());
        Self {
            n,
            key_size: key_size.max(MIN_KEY_SIZE),
            value_size,
            random,
        }
    }

    /// Makes values compressible: in every 32 bytes, only the first
    /// `fraction` are random and the rest repeat them (as db_bench's
    /// `--compression_ratio` does), so lz4 keeps about `fraction` of them.
    pub fn with_random_fraction(mut self, fraction: f64) -> Self {
        if fraction < 1.0 {
            let keep = ((32.0 * fraction.max(0.0)).round() as usize).clamp(4, 32);
            for piece in self.random.chunks_mut(32) {
                for j in keep..piece.len() {
                    piece[j] = piece[j - keep];
                }
            }
        }
        self
    }

    /// Writes key `i` into `buf`.
    pub fn key(&self, i: u64, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&i.to_be_bytes());
        let mut h = mix(i);
        while buf.len() < self.key_size {
            buf.extend_from_slice(&h.to_le_bytes());
            h = mix(h);
        }
        buf.truncate(self.key_size);
    }

    /// Key `i` as a new vector.
    pub fn key_vec(&self, i: u64) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.key_size);
        self.key(i, &mut buf);
        buf
    }

    /// The value written for key `i` (the same every time for one `i`).
    pub fn value(&self, i: u64) -> &[u8] {
        // The remainder is below VALUE_WINDOW, so the slice is in bounds.
        let start = usize::try_from(mix(i) % VALUE_WINDOW as u64).unwrap_or(0);
        &self.random[start..start + self.value_size]
    }

    /// The size of a key plus its value: the user bytes one write carries.
    pub fn pair_bytes(&self) -> u64 {
        (self.key_size + self.value_size) as u64
    }

    /// The key size.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// The value size.
    pub fn value_size(&self) -> usize {
        self.value_size
    }
}

/// A 64-bit mixing function (splitmix64's finalizer): cheap, bijective.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Which keys a workload touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// A few keys take most accesses (YCSB's scrambled Zipfian, 0.99).
    Zipfian,
}

impl KeyDist {
    /// The name used on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            KeyDist::Uniform => "uniform",
            KeyDist::Zipfian => "zipfian",
        }
    }

    /// Parses [`KeyDist::name`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "uniform" => Some(KeyDist::Uniform),
            "zipfian" => Some(KeyDist::Zipfian),
            _ => None,
        }
    }
}

/// Draws key numbers in `0..n` from a [`KeyDist`].
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Uniform over `0..n`.
    Uniform {
        /// The number of keys.
        n: u64,
    },
    /// Scrambled Zipfian over `0..n`.
    Zipfian(Zipfian),
}

impl KeyChooser {
    /// A chooser of `dist` over `0..n` (`n` at least 1).
    pub fn new(dist: KeyDist, n: u64) -> Self {
        match dist {
            KeyDist::Uniform => KeyChooser::Uniform { n: n.max(1) },
            KeyDist::Zipfian => KeyChooser::Zipfian(Zipfian::new(n.max(1))),
        }
    }

    /// The next key number.
    pub fn next(&self, rng: &mut SmallRng) -> u64 {
        match self {
            KeyChooser::Uniform { n } => rng.random_range(0..*n),
            KeyChooser::Zipfian(z) => z.next(rng),
        }
    }
}

/// YCSB's Zipfian generator with its constant and scrambling.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    const THETA: f64 = 0.99;

    /// A generator over `0..n` (`n` at least 1). Computing the
    /// normalization constant takes `n` steps.
    pub fn new(n: u64) -> Self {
        let theta = Self::THETA;
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(theta))
                .sum::<f64>()
        };
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let eta = if n < 2 {
            0.0
        } else {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        };
        Self {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// The next key number: a Zipfian rank, scrambled over `0..n`.
    pub fn next(&self, rng: &mut SmallRng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        let rank = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(self.theta) {
            1
        } else {
            // `as` saturates for out-of-range floats; the min keeps it a rank.
            ((self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64)
                .min(self.n - 1)
        };
        mix(rank) % self.n
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn keys_sort_by_number_and_have_the_asked_size() {
        let mut rng = SmallRng::seed_from_u64(1);
        let ks = KeySpace::new(1000, 16, 100, &mut rng);
        let keys: Vec<Vec<u8>> = (0..1000).map(|i| ks.key_vec(i)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(keys.iter().all(|k| k.len() == 16));
        assert_eq!(ks.value(7).len(), 100);
        assert_eq!(ks.value(7), ks.value(7));
    }

    #[test]
    fn zipfian_stays_in_range_and_is_skewed() {
        let mut rng = SmallRng::seed_from_u64(2);
        let z = Zipfian::new(10_000);
        let mut counts = vec![0u32; 10_000];
        for _ in 0..100_000 {
            let k = z.next(&mut rng);
            counts[usize::try_from(k).unwrap()] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        // The hottest 1% of keys take far more than 1% of the accesses.
        let top: u32 = counts[..100].iter().sum();
        assert!(top > 30_000, "top 1% got {top} of 100000");
    }
}
