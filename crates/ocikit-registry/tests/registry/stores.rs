//! A registry checks its stores before it serves: an S3 bucket that does not exist fails
//! [`Registry::check_stores`] (and `/healthz`) with the store's own error, instead of
//! starting and answering every push with a bare 500.

use std::sync::Arc;

use ocikit_registry::{Config, Error, Registry};
use reqwest::{Method, StatusCode};

use crate::{BACKENDS, Server, server};

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[tokio::test]
async fn a_missing_bucket_fails_the_store_check_and_an_existing_one_passes() {
    for backend in BACKENDS {
        let server = server(backend).await;
        server.registry.check_stores().await.unwrap();
        server.stop().await;
    }
    let Some(moto) = ocikit_testkit::moto::shared() else {
        return;
    };
    let bucket = moto.bucket();
    let store = ocikit_store::S3Store::new(crate::s3_config(moto, &bucket, "content")).unwrap();
    let uploads = ocikit_store::S3Store::new(crate::s3_config(moto, &bucket, "uploads")).unwrap();
    let good = Registry::new(Arc::new(store), Arc::new(uploads), Config::default()).unwrap();
    good.check_stores().await.unwrap();

    let missing = format!("{bucket}-missing");
    let store = ocikit_store::S3Store::new(crate::s3_config(moto, &missing, "content")).unwrap();
    let uploads = ocikit_store::S3Store::new(crate::s3_config(moto, &missing, "uploads")).unwrap();
    let registry = Registry::new(Arc::new(store), Arc::new(uploads), Config::default()).unwrap();
    let err = registry.check_stores().await.unwrap_err();
    assert!(matches!(err, Error::StoreUnavailable { .. }), "{err:?}");
    let text = chain(&err);
    assert!(text.contains("content store"), "{text}");
    assert!(
        text.contains("NoSuchBucket") || text.contains(&missing),
        "{text}"
    );
    // Its health endpoint says so too.
    let server = Server::start(registry).await;
    let resp = server.send(Method::GET, "/healthz").await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;
}
