//! What every test module shares: a fresh store of each kind.

use ocikit_store::{FsStore, MemoryStore, Store};

/// A fresh, empty store of each kind, with whatever must outlive it: memory, a directory,
/// and (with the `s3` feature) a bucket of its own on a moto server on 127.0.0.1, which the
/// test process starts (and which must be installed under `CI=true`).
pub(crate) async fn stores() -> Vec<(Box<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path().join("layout")).await.unwrap();
    #[allow(unused_mut)] // pushed to with the `s3` feature
    let mut stores: Vec<(Box<dyn Store>, Option<tempfile::TempDir>)> = vec![
        (Box::new(MemoryStore::new()), None),
        (Box::new(fs), Some(dir)),
    ];
    #[cfg(feature = "s3")]
    if let Some(server) = ocikit_testkit::moto::shared() {
        use ocikit_testkit::moto::{ACCESS_KEY, SECRET_KEY};
        let config = ocikit_store::s3::S3Config::new(server.bucket())
            .with_endpoint(server.endpoint())
            .with_credentials(ACCESS_KEY, SECRET_KEY)
            .with_allow_http(true)
            .with_prefix("layout");
        let s3 = ocikit_store::S3Store::new(config).unwrap();
        stores.push((Box::new(s3), None));
    }
    stores
}
