//! Arithmetic in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), the field
//! ISA-L uses. The tables are built at compile time, so there is no lazy initialisation.

/// The reduction polynomial (ISA-L's `gf_mul` uses the same one).
pub const POLYNOMIAL: u16 = 0x11d;

const fn build_exp_log() -> ([u8; 512], [u8; 256]) {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLYNOMIAL;
        }
        i += 1;
    }
    // Doubling the exp table lets `mul` skip the `% 255` on the log sum.
    while i < 512 {
        exp[i] = exp[i - 255];
        i += 1;
    }
    (exp, log)
}

const EXP_LOG: ([u8; 512], [u8; 256]) = build_exp_log();
static EXP: [u8; 512] = EXP_LOG.0;
static LOG: [u8; 256] = EXP_LOG.1;

const fn build_mul_table() -> [[u8; 256]; 256] {
    let (exp, log) = build_exp_log();
    let mut t = [[0u8; 256]; 256];
    let mut a = 1;
    while a < 256 {
        let mut b = 1;
        while b < 256 {
            t[a][b] = exp[log[a] as usize + log[b] as usize];
            b += 1;
        }
        a += 1;
    }
    t
}

/// `MUL_TABLE[c][x] = c · x`: one 256-entry row per coefficient, so the inner coding loop
/// is a single indexed load per byte (64 KiB in total, shared by every codec instance).
pub static MUL_TABLE: [[u8; 256]; 256] = build_mul_table();

/// `a · b` in GF(2^8).
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
}

/// The multiplicative inverse of a non-zero element; `inv(0)` is 0 by convention (as in ISA-L).
pub fn inv(a: u8) -> u8 {
    if a == 0 {
        return 0;
    }
    EXP[255 - LOG[a as usize] as usize]
}

/// The (k + m) × k encoding matrix ISA-L's `gf_gen_cauchy1_matrix` builds: identity on top
/// (the code is systematic) and `1 / (i ⊕ j)` for parity row `i` (k..k+m) and column `j`.
/// `i ⊕ j` is never zero because `i ≥ k > j`, and every square submatrix of a Cauchy
/// matrix is invertible, so any k surviving rows decode — for every k + m ≤ 255.
pub fn cauchy_matrix(k: usize, m: usize) -> Vec<u8> {
    let n = k + m;
    let mut a = vec![0u8; n * k];
    for i in 0..k {
        a[i * k + i] = 1;
    }
    for i in k..n {
        for j in 0..k {
            // k + m ≤ 255 is checked by the caller, so both fit in a byte.
            a[i * k + j] = inv((i ^ j) as u8);
        }
    }
    a
}

/// Inverts the n × n matrix `a` (row-major) by Gauss–Jordan elimination; `None` when it
/// is singular (which a Cauchy submatrix never is, but the caller gets an error, not a panic).
pub fn invert(mut a: Vec<u8>, n: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; n * n];
    for i in 0..n {
        out[i * n + i] = 1;
    }
    for col in 0..n {
        let pivot = (col..n).find(|&r| a[r * n + col] != 0)?;
        if pivot != col {
            for c in 0..n {
                a.swap(pivot * n + c, col * n + c);
                out.swap(pivot * n + c, col * n + c);
            }
        }
        let scale = inv(a[col * n + col]);
        for c in 0..n {
            a[col * n + c] = mul(a[col * n + c], scale);
            out[col * n + c] = mul(out[col * n + c], scale);
        }
        for r in 0..n {
            let f = a[r * n + col];
            if r == col || f == 0 {
                continue;
            }
            for c in 0..n {
                a[r * n + c] ^= mul(f, a[col * n + c]);
                out[r * n + c] ^= mul(f, out[col * n + c]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nonzero_element_times_its_inverse_is_one() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "a = {a}");
        }
    }

    #[test]
    fn multiplication_table_agrees_with_shift_and_add_multiplication() {
        // Independent reference: carry-less multiply, then reduce by the polynomial.
        fn slow_mul(a: u8, b: u8) -> u8 {
            let (mut a, mut b, mut p) = (u16::from(a), b, 0u16);
            while b != 0 {
                if b & 1 != 0 {
                    p ^= a;
                }
                a <<= 1;
                if a & 0x100 != 0 {
                    a ^= POLYNOMIAL;
                }
                b >>= 1;
            }
            p as u8
        }
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(MUL_TABLE[a as usize][b as usize], slow_mul(a, b));
            }
        }
    }

    #[test]
    fn inverting_a_cauchy_submatrix_and_multiplying_back_gives_identity() {
        let (k, m) = (5, 3);
        let a = cauchy_matrix(k, m);
        // Rows 1, 3, 5, 6, 7: two data rows lost, three parity rows used.
        let rows = [1usize, 3, 5, 6, 7];
        let sub: Vec<u8> = rows
            .iter()
            .flat_map(|&r| a[r * k..r * k + k].to_vec())
            .collect();
        let inverse = invert(sub.clone(), k).expect("Cauchy submatrices are invertible");
        for i in 0..k {
            for j in 0..k {
                let dot = (0..k).fold(0u8, |acc, t| acc ^ mul(sub[i * k + t], inverse[t * k + j]));
                assert_eq!(dot, u8::from(i == j), "({i}, {j})");
            }
        }
    }

    #[test]
    fn a_singular_matrix_is_reported_not_inverted() {
        assert_eq!(invert(vec![1, 2, 1, 2], 2), None);
    }
}
