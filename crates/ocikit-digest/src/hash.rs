//! Streaming hashers for the algorithms ocikit computes.
//!
//! SHA-256 and SHA-512 come from the `sha2` crate, which uses the SHA-NI instructions where
//! the CPU has them; on the reference machine it matched `ring` and `openssl speed` for
//! SHA-256 (see `docs/benchmarks.md`).

use sha2::Digest as _;

use crate::digest::push_hex;
use crate::{Algorithm, Digest, Error, Result};

/// A streaming hasher for one of the supported algorithms.
///
/// ```
/// use ocikit_digest::{Algorithm, Hasher};
///
/// let mut hasher = Hasher::new(&Algorithm::Sha256)?;
/// hasher.update(b"hello ");
/// hasher.update(b"world");
/// assert_eq!(
///     hasher.finish().to_string(),
///     "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
/// );
/// # Ok::<(), ocikit_digest::Error>(())
/// ```
#[derive(Clone)]
pub struct Hasher {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A hasher for `algorithm`, or [`Error::UnsupportedAlgorithm`] when ocikit cannot
    /// compute it.
    pub fn new(algorithm: &Algorithm) -> Result<Hasher> {
        match algorithm {
            Algorithm::Sha256 => Ok(Hasher::sha256()),
            Algorithm::Sha512 => Ok(Hasher::sha512()),
            other => Err(Error::UnsupportedAlgorithm {
                algorithm: other.clone(),
            }),
        }
    }

    /// A SHA-256 hasher.
    pub fn sha256() -> Hasher {
        Hasher {
            inner: Inner::Sha256(sha2::Sha256::new()),
        }
    }

    /// A SHA-512 hasher.
    pub fn sha512() -> Hasher {
        Hasher {
            inner: Inner::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Sha256(_) => Algorithm::Sha256,
            Inner::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.inner {
            Inner::Sha256(h) => h.update(bytes),
            Inner::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self.inner {
            Inner::Sha256(h) => make("sha256", Algorithm::Sha256, &h.finalize()),
            Inner::Sha512(h) => make("sha512", Algorithm::Sha512, &h.finalize()),
        }
    }

    /// The digest of everything fed so far, leaving the hasher usable.
    pub fn current(&self) -> Digest {
        self.clone().finish()
    }
}

fn make(name: &str, algorithm: Algorithm, raw: &[u8]) -> Digest {
    let mut full = String::with_capacity(name.len() + 1 + raw.len() * 2);
    full.push_str(name);
    full.push(':');
    push_hex(&mut full, raw);
    Digest::from_trusted_parts(full, name.len(), algorithm)
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::sha256();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The SHA-512 digest of `bytes`.
    pub fn sha512(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::sha512();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn compute(algorithm: &Algorithm, bytes: &[u8]) -> Result<Digest> {
        let mut hasher = Hasher::new(algorithm)?;
        hasher.update(bytes);
        Ok(hasher.finish())
    }

    /// Checks that `bytes` hash to this digest.
    ///
    /// Fails with [`Error::UnsupportedAlgorithm`] for algorithms ocikit cannot compute (such
    /// content is never considered verified) and [`Error::DigestMismatch`] otherwise.
    pub fn verify(&self, bytes: &[u8]) -> Result<()> {
        let actual = Digest::compute(self.algorithm(), bytes)?;
        if &actual == self {
            Ok(())
        } else {
            Err(Error::DigestMismatch {
                expected: self.clone(),
                actual,
            })
        }
    }
}
