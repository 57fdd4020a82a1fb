//! A small deterministic generator for test data (xorshift64*): the same seed gives the same
//! bytes on every machine, so tests need no fixture files. Not for anything secret.

/// xorshift64* state.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    /// A generator for `seed` (any value; 0 is remapped, xorshift must not start at 0).
    pub fn new(seed: u64) -> Prng {
        Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n` > 0; slightly biased, which tests do not mind).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Prng::below(0)");
        self.next_u64() % n
    }

    /// Fills `buf`.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.fill(&mut out);
        out
    }
}

/// `len` deterministic bytes for `seed` (incompressible in practice).
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    Prng::new(seed).bytes(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(bytes(1, 1000), bytes(1, 1000));
        assert_ne!(bytes(1, 1000), bytes(2, 1000));
        assert_eq!(bytes(0, 0), Vec::<u8>::new());
        // A prefix of a longer run is the shorter run.
        assert_eq!(bytes(5, 13)[..], bytes(5, 100)[..13]);
    }

    #[test]
    fn bytes_are_spread_over_all_values() {
        let data = bytes(3, 1 << 16);
        let mut seen = [0usize; 256];
        for b in &data {
            seen[*b as usize] += 1;
        }
        // 256 expected per value; none absent, none dominating.
        assert!(seen.iter().all(|&n| (128..512).contains(&n)), "{seen:?}");
        let mut rng = Prng::new(9);
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
