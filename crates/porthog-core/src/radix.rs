//! A stable least-significant-digit radix sort by a `u32` key: a million-row import sorts its
//! sockets by inode (lsof's shared sockets) in four linear passes instead of a comparison sort.
//! Pure; no knowledge of what the keys mean.

/// Sorts `v` by `key`, keeping the input order of equal keys (as `sort_by_key` does). Uses one
/// scratch copy of `v`; a digit that is the same in every key costs no pass.
pub(crate) fn sort_by_u32_key<T: Copy>(v: &mut Vec<T>, key: impl Fn(&T) -> u32) {
    if v.len() < 2 {
        return;
    }
    let mut counts = [[0usize; 256]; 4];
    for x in v.iter() {
        let k = key(x);
        for (d, c) in counts.iter_mut().enumerate() {
            c[(k >> (8 * d)) as usize & 0xFF] += 1;
        }
    }
    let mut scratch: Vec<T> = Vec::new();
    for (d, c) in counts.iter().enumerate() {
        if c.contains(&v.len()) {
            continue;
        }
        let mut at = [0usize; 256];
        let mut sum = 0;
        for (slot, &n) in at.iter_mut().zip(c) {
            *slot = sum;
            sum += n;
        }
        if scratch.len() != v.len() {
            scratch = v.clone();
        }
        for x in v.iter() {
            let digit = (key(x) >> (8 * d)) as usize & 0xFF;
            scratch[at[digit]] = *x;
            at[digit] += 1;
        }
        std::mem::swap(v, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_as_a_stable_sort(keys in proptest::collection::vec(any::<u32>(), 0..400), narrow in any::<bool>()) {
            let mut v: Vec<(u32, usize)> = keys
                .iter()
                .enumerate()
                .map(|(i, &k)| (if narrow { k % 7 } else { k }, i))
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|x| x.0);
            super::sort_by_u32_key(&mut v, |x| x.0);
            prop_assert_eq!(v, want);
        }
    }
}
