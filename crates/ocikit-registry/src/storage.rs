//! Where a registry keeps its content: a directory, or (feature `s3`) an S3 bucket, opened
//! the way `ocikit serve` and `ocikit registry-gc` open them.
//!
//! A directory holds the content store at its root and the upload store inside its
//! private `.ocikit/` directory ([`Registry::open_with`]). A bucket holds them under two
//! prefixes, `PREFIX/content` and `PREFIX/uploads` ([`S3Location`]), so that several
//! registries can share one bucket and both stores of one registry stay apart.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::{Config, GcOptions, GcReport, Registry};

/// The key prefix a registry in a bucket uses when none is given: content under
/// `registry/content`, uploads under `registry/uploads` (`ocikit serve --s3-prefix`'s
/// default).
pub const DEFAULT_S3_PREFIX: &str = "registry";

/// Where a registry keeps its content.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Storage {
    /// A directory: content at its root, uploads in `.ocikit/registry-uploads`.
    Directory(PathBuf),
    /// An S3 bucket (feature `s3`).
    #[cfg(feature = "s3")]
    S3(S3Location),
}

impl Storage {
    /// Opens the registry kept here with `config`. A directory that does not exist yet is
    /// created (an empty registry); a bucket's stores are set up (nothing is sent yet: see
    /// [`Registry::check_stores`]).
    pub async fn open(&self, config: Config) -> Result<Registry> {
        match self {
            Storage::Directory(root) => Registry::open_with(root.clone(), config).await,
            #[cfg(feature = "s3")]
            Storage::S3(location) => Registry::open_s3(location, config),
        }
    }

    /// [`Storage::open`] for a registry that must exist already: a directory that is not
    /// there is refused ([`Error::NotARegistryDirectory`]) instead of created, so that a
    /// mistyped path makes no empty registry.
    pub async fn open_existing(&self, config: Config) -> Result<Registry> {
        // Irrefutable without the `s3` feature.
        #[allow(irrefutable_let_patterns)]
        if let Storage::Directory(root) = self {
            let probe = root.clone();
            let is_dir = tokio::task::spawn_blocking(move || probe.is_dir())
                .await
                .unwrap_or(false);
            if !is_dir {
                return Err(Error::NotARegistryDirectory { path: root.clone() });
            }
        }
        self.open(config).await
    }

    /// Collects the garbage of the registry kept here, as `ocikit registry-gc` does: the
    /// registry must exist ([`Storage::open_existing`]) and both its stores must answer
    /// ([`Registry::check_stores`]) before [`Registry::gc`] runs with `options`. Safe while
    /// servers run on the same storage.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        let registry = self.open_existing(Config::default()).await?;
        registry.check_stores().await?;
        registry.gc(options).await
    }
}

/// How the storage is named in messages: the directory's path, or
/// `s3://BUCKET/PREFIX/content`.
impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Directory(root) => write!(f, "{}", root.display()),
            #[cfg(feature = "s3")]
            Storage::S3(location) => fmt::Display::fmt(location, f),
        }
    }
}

#[cfg(feature = "s3")]
pub use self::s3::S3Location;

#[cfg(feature = "s3")]
mod s3 {
    use std::fmt;
    use std::sync::Arc;

    use ocikit_store::s3::S3Config;
    use ocikit_store::{S3Store, Store};

    use super::DEFAULT_S3_PREFIX;
    use crate::error::{Error, Result};
    use crate::{Config, Registry};

    /// A registry in an S3 bucket: its content store under `PREFIX/content` and its upload
    /// store under `PREFIX/uploads`. Settings left unset come from the environment as
    /// [`S3Config`] says (credentials from `AWS_ACCESS_KEY_ID` and friends, the region from
    /// `AWS_REGION`).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct S3Location {
        /// The bucket, endpoint, region and credentials; its prefix is the registry's.
        config: S3Config,
    }

    impl S3Location {
        /// The registry in `bucket`, under [`DEFAULT_S3_PREFIX`], on AWS.
        pub fn new(bucket: impl Into<String>) -> S3Location {
            S3Location {
                config: S3Config::new(bucket).with_prefix(DEFAULT_S3_PREFIX),
            }
        }

        /// Every store setting from `config` (its prefix is the registry's, under which the
        /// two stores' prefixes go).
        pub fn from_config(config: S3Config) -> S3Location {
            S3Location { config }
        }

        /// Sets the registry's key prefix (`""`: `content/` and `uploads/` at the bucket's
        /// root). Slashes at either end are ignored.
        pub fn with_prefix(mut self, prefix: impl Into<String>) -> S3Location {
            self.config.prefix = prefix.into();
            self
        }

        /// Sets the endpoint of an S3-compatible server; an `http://` endpoint allows plain
        /// HTTP (for local servers), any other does not.
        pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> S3Location {
            let endpoint = endpoint.into();
            self.config.allow_http = endpoint.starts_with("http://");
            self.config.endpoint = Some(endpoint);
            self
        }

        /// Sets the bucket's region.
        pub fn with_region(mut self, region: impl Into<String>) -> S3Location {
            self.config.region = Some(region.into());
            self
        }

        /// Sets static credentials (instead of the environment's).
        pub fn with_credentials(
            mut self,
            access_key_id: impl Into<String>,
            secret_access_key: impl Into<String>,
        ) -> S3Location {
            self.config = self
                .config
                .with_credentials(access_key_id, secret_access_key);
            self
        }

        /// The bucket.
        pub fn bucket(&self) -> &str {
            &self.config.bucket
        }

        /// The registry's key prefix, without slashes at either end.
        pub fn prefix(&self) -> &str {
            self.config.prefix.trim_matches('/')
        }

        /// The key prefix of one of the registry's stores: `PREFIX/part`, or `part` with
        /// the empty prefix.
        fn store_prefix(&self, part: &str) -> String {
            match self.prefix() {
                "" => part.to_owned(),
                prefix => format!("{prefix}/{part}"),
            }
        }

        /// The key prefix of the content store (`PREFIX/content`).
        pub fn content_prefix(&self) -> String {
            self.store_prefix("content")
        }

        /// The key prefix of the upload store (`PREFIX/uploads`).
        pub fn uploads_prefix(&self) -> String {
            self.store_prefix("uploads")
        }

        /// Checks the bucket's name: an empty one, or one with a `/`, whitespace or a
        /// control character, cannot name a bucket in a path-style URL.
        fn check_bucket(&self) -> Result<()> {
            let bucket = self.bucket();
            if bucket.is_empty()
                || bucket
                    .chars()
                    .any(|c| c == '/' || c.is_whitespace() || c.is_control())
            {
                return Err(Error::InvalidBucket {
                    bucket: bucket.to_owned(),
                });
            }
            Ok(())
        }

        /// One of the two stores, under `prefix`.
        fn store(&self, prefix: String) -> Result<Arc<dyn Store>> {
            let config = self.config.clone().with_prefix(prefix);
            let store = S3Store::new(config).map_err(|source| Error::S3Setup {
                bucket: self.bucket().to_owned(),
                source,
            })?;
            Ok(Arc::new(store))
        }
    }

    /// `s3://BUCKET/PREFIX/content`: where the content is.
    impl fmt::Display for S3Location {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "s3://{}/{}", self.bucket(), self.content_prefix())
        }
    }

    impl Registry {
        /// The registry in the bucket `location` names, with `config`: content under
        /// [`S3Location::content_prefix`], uploads under [`S3Location::uploads_prefix`].
        /// Refuses a bucket name that cannot be one ([`Error::InvalidBucket`]) and settings
        /// the S3 client refuses ([`Error::S3Setup`]); nothing is sent to the bucket yet
        /// (see [`Registry::check_stores`]).
        pub fn open_s3(location: &S3Location, config: Config) -> Result<Registry> {
            location.check_bucket()?;
            let store = location.store(location.content_prefix())?;
            let uploads = location.store(location.uploads_prefix())?;
            Registry::new(store, uploads, config)
        }
    }
}
