//! CPython's `random.Random(seed)`, as far as w2c needs it: seeding from an
//! integer, `_randbelow` (what `randrange(n)` and `shuffle` draw with) and
//! `shuffle`. Draws made with it can be repeated in Python exactly, so the
//! subsample and the bootstrap intervals of `w2c compare` are checked
//! against Python itself.

use rand_mt::Mt;

/// CPython's `random.Random(seed)` (MT19937 seeded by `init_by_array`).
pub struct PyRandom(Mt);

impl PyRandom {
    /// `random.Random(seed)`.
    pub fn new(seed: u64) -> Self {
        // init_by_array over |seed| split into 32-bit little-endian words.
        let mut key = Vec::new();
        let mut s = seed;
        while s > 0 {
            key.push((s & 0xffff_ffff) as u32);
            s >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        PyRandom(Mt::new_with_key(key))
    }

    /// `randrange(n)` for `0 < n < 2^32`: `getrandbits(k)` with
    /// `k = n.bit_length()`, redrawn until below `n`.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.0.next_u32() >> (32 - k);
            if r < n {
                return r;
            }
        }
    }

    /// `shuffle(items)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.randbelow((i + 1) as u32) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_mt19937_parity() {
        // CPython 3.11: random.Random(42).getrandbits(32) == 2746317213,
        // random.Random(0).getrandbits(32) == 3626764237,
        // r = random.Random(11); x = list(range(10)); r.shuffle(x) gives
        // [2, 6, 0, 1, 5, 4, 3, 9, 8, 7], and
        // r = random.Random(7); [r.randrange(90) for _ in range(5)] gives
        // [41, 19, 50, 83, 6].
        assert_eq!(PyRandom::new(42).0.next_u32(), 2746317213);
        assert_eq!(PyRandom::new(0).0.next_u32(), 3626764237);
        let mut x: Vec<u32> = (0..10).collect();
        PyRandom::new(11).shuffle(&mut x);
        assert_eq!(x, vec![2, 6, 0, 1, 5, 4, 3, 9, 8, 7]);
        let mut r = PyRandom::new(7);
        let draws: Vec<u32> = (0..5).map(|_| r.randbelow(90)).collect();
        assert_eq!(draws, vec![41, 19, 50, 83, 6]);
    }
}
