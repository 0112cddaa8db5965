//! A Bloom filter per table: "is this key possibly in the table?"
//!
//! A lookup of a key that a table does not hold should not cost a data
//! block read. Each table carries a Bloom filter over its user keys: a bit
//! array of `m` bits and `k` hash functions. Adding a key sets `k` bits;
//! a key whose `k` bits are not all set was certainly never added. A key
//! whose bits are all set was *probably* added: the filter has no false
//! negatives, and false positives at a rate of about
//!
//! ```text
//! p = (1 - e^(-k·n/m))^k        best k = (m/n)·ln 2,  p ≈ 0.6185^(m/n)
//! ```
//!
//! At the default 10 bits per key, `k = 7` and `p ≈ 0.82 %`.
//!
//! The `k` positions come from one 64-bit hash by double hashing
//! (Kirsch and Mitzenmacher): `h1 + i·h2 mod m` for `i` in `0..k`, which is
//! provably as good as `k` independent hashes for a Bloom filter.
//!
//! ## Encoding (the filter block body)
//!
//! ```text
//! bits (ceil(m/8) bytes, bit i at byte i/8, mask 1 << (i % 8)) | k (u8)
//! ```
//!
//! `m` is the number of bits, `8 · (len - 1)`. A filter with `k` of 0 or
//! above 30 is rejected as damaged.

/// The largest `k` accepted when decoding.
const MAX_K: u8 = 30;

/// 64-bit hash of a key: FNV-1a over the bytes, then the splitmix64
/// finalizer, which spreads every input bit over every output bit (FNV
/// alone leaves the high bits of short keys poorly mixed).
pub fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A built or decoded Bloom filter.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    bits: Vec<u8>,
    k: u8,
}

impl BloomFilter {
    /// A filter sized for the keys hashed in `hashes`, at `bits_per_key`.
    pub fn build(hashes: &[u64], bits_per_key: usize) -> Self {
        let bits_per_key = bits_per_key.max(1);
        let k = ((bits_per_key as f64) * std::f64::consts::LN_2)
            .round()
            .clamp(1.0, 30.0) as u8;
        let m = (hashes.len() * bits_per_key).max(64);
        let mut filter = Self {
            bits: vec![0; m.div_ceil(8)],
            k,
        };
        for &h in hashes {
            filter.add(h);
        }
        filter
    }

    fn positions(&self, h: u64) -> impl Iterator<Item = usize> + '_ {
        let m = (self.bits.len() * 8) as u64;
        let h2 = mix(h ^ 0x9e37_79b9_7f4a_7c15) | 1;
        (0..u64::from(self.k)).map(move |i| (h.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    fn add(&mut self, h: u64) {
        let positions: Vec<usize> = self.positions(h).collect();
        for p in positions {
            self.bits[p / 8] |= 1 << (p % 8);
        }
    }

    /// Whether a key with hash `h` may have been added.
    pub fn may_contain(&self, h: u64) -> bool {
        self.positions(h)
            .all(|p| self.bits[p / 8] & (1 << (p % 8)) != 0)
    }

    /// The number of hash functions.
    pub fn k(&self) -> u8 {
        self.k
    }

    /// The number of bits.
    pub fn bit_len(&self) -> usize {
        self.bits.len() * 8
    }

    /// The theoretical false-positive rate for `n` keys.
    pub fn theoretical_fp_rate(&self, n: usize) -> f64 {
        let k = f64::from(self.k);
        (1.0 - (-k * n as f64 / self.bit_len() as f64).exp()).powf(k)
    }

    /// The block body: bits then `k`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.bits.clone();
        out.push(self.k);
        out
    }

    /// Decodes a filter block body.
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        let (&k, bits) = body.split_last().ok_or("empty filter block")?;
        if k == 0 || k > MAX_K {
            return Err(format!("filter with k = {k}"));
        }
        if bits.is_empty() {
            return Err("filter without bits".into());
        }
        Ok(Self {
            bits: bits.to_vec(),
            k,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives() {
        let hashes: Vec<u64> = (0..10_000u32).map(|i| hash(&i.to_le_bytes())).collect();
        let f = BloomFilter::build(&hashes, 10);
        assert_eq!(f.k(), 7);
        assert!(hashes.iter().all(|&h| f.may_contain(h)));
        let decoded = BloomFilter::decode(&f.encode()).unwrap();
        assert!(hashes.iter().all(|&h| decoded.may_contain(h)));
    }

    /// The measured false-positive rate over absent keys is within 1.5x of
    /// the theory for 10 bits per key (and not suspiciously far below it).
    #[test]
    fn false_positive_rate_matches_theory() {
        // 1M absent keys in release, 200k in debug (the assertion is the same).
        let probes: u32 = if cfg!(debug_assertions) {
            200_000
        } else {
            1_000_000
        };
        let n = 100_000u32;
        for bits_per_key in [6usize, 10, 14] {
            let hashes: Vec<u64> = (0..n).map(|i| hash(format!("key{i}").as_bytes())).collect();
            let f = BloomFilter::build(&hashes, bits_per_key);
            let fp = (0..probes)
                .filter(|i| f.may_contain(hash(format!("absent{i}").as_bytes())))
                .count();
            let measured = fp as f64 / f64::from(probes);
            let theory = f.theoretical_fp_rate(n as usize);
            assert!(
                measured <= 1.5 * theory && measured >= theory / 1.5,
                "{bits_per_key} bits/key: measured {measured}, theory {theory}"
            );
        }
    }

    #[test]
    fn damaged_filters_are_refused() {
        assert!(BloomFilter::decode(&[]).is_err());
        assert!(BloomFilter::decode(&[0xff, 0]).is_err());
        assert!(BloomFilter::decode(&[0xff, 31]).is_err());
        assert!(BloomFilter::decode(&[7]).is_err());
    }
}
