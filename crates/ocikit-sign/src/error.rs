//! The crate's error type.

use std::path::PathBuf;

use ocikit_digest::Digest;

use crate::key::KeyError;
use crate::payload::PayloadError;
use crate::policy::PolicyError;

/// Everything that can go wrong in `ocikit-sign`.
///
/// Parse failures keep their precise, comparable kinds in the wrapped module errors
/// ([`KeyError`], [`PayloadError`], [`PolicyError`]); verification failures say which check
/// failed and carry the values compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key file or key structure was malformed, of another kind than ECDSA P-256, or not
    /// what was expected (an unencrypted private key where an encrypted one belongs).
    #[error("invalid key")]
    Key(#[from] KeyError),
    /// The encrypted private key did not open: the passphrase is wrong, or the ciphertext,
    /// nonce or salt was altered (the two cannot be told apart: secretbox authenticates all
    /// of them under the key the passphrase derives).
    #[error("cannot decrypt the private key: wrong passphrase, or the key file was altered")]
    Decrypt,
    /// A simple-signing payload was malformed.
    #[error("invalid signature payload")]
    Payload(#[from] PayloadError),
    /// A signature layer was not a simple-signing signature, or was too large.
    #[error("invalid signature layer: {reason}")]
    SignatureLayer {
        /// What was wrong with it.
        reason: String,
    },
    /// The signature annotation was not standard base64, or not a DER ECDSA signature of a
    /// plausible size.
    #[error("signature is not base64 of a DER ECDSA signature")]
    SignatureEncoding,
    /// The signature does not verify over the payload with the public key (another key
    /// signed it, or the payload or signature was changed).
    #[error("signature does not verify with the public key")]
    BadSignature,
    /// The payload is for another manifest than the one being verified (a replayed
    /// signature, or an image changed after signing).
    #[error("signature is for manifest {signed}, not {expected}")]
    DigestMismatch {
        /// The digest of the manifest being verified.
        expected: Digest,
        /// The digest the signed payload names.
        signed: Digest,
    },
    /// The identity the payload claims does not satisfy the identity rule.
    #[error("signature claims identity `{signed}`, which {rule} does not accept for {image}")]
    IdentityMismatch {
        /// The image identity verified against (a docker reference, or a description of a
        /// location without one).
        image: String,
        /// The docker reference the signed payload names.
        signed: String,
        /// The rule applied (`matchRepository`, `exactReference`...).
        rule: &'static str,
    },
    /// A policy file was malformed or used what this crate does not support.
    #[error("invalid policy")]
    Policy(#[from] PolicyError),
    /// A file (a policy, a key named by a policy) could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The system's random number generator failed (key, salt or nonce generation).
    #[error("the system random number generator failed")]
    Random,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
