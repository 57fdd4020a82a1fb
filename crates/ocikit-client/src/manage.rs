//! Registry management: deleting manifests and tags ([`Client::delete_manifest`]) and
//! listing the repositories of a registry ([`Client::catalog`], [`Client::catalog_page`]).

use reqwest::{Method, StatusCode, Url};

use crate::request::next_link;
use crate::{Client, Error, Operation, Request, Result, read_limited};

/// The largest catalog page read (bytes of JSON).
const MAX_CATALOG_PAGE: usize = 16 << 20;
/// Pages followed at most by [`Client::catalog`] (a registry that links pages in a circle
/// stops there).
const MAX_CATALOG_PAGES: usize = 100_000;

/// One page of a registry's catalog, as [`Client::catalog_page`] reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CatalogPage {
    /// The repositories of this page, as the registry lists them.
    pub repositories: Vec<String>,
    /// Where the next page starts: the `last` to ask for it with (the `last` parameter of the
    /// page's `Link: <…>; rel="next"`, else the page's last repository); `None` when the
    /// registry linked no next page.
    pub next: Option<String>,
}

#[derive(serde::Deserialize)]
struct Repositories {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl Client {
    /// Deletes `reference` of `repository`: `DELETE /v2/<name>/manifests/<reference>`. A
    /// digest removes the manifest (and, in most registries, every tag that names it); a
    /// tag removes only the tag, where the registry supports that (OCI Distribution 1.1;
    /// Distribution 2.8 does not). A registry that does not delete (or not this way)
    /// answers 405, or 400 with `UNSUPPORTED` (or, to a tag, `DIGEST_INVALID`, as
    /// Distribution 2.8 does): [`Error::Unsupported`]; one that has no such manifest or tag
    /// 404: [`Error::NotFound`].
    pub async fn delete_manifest(&self, repository: &str, reference: &str) -> Result<()> {
        self.validate_repository(repository)?;
        if reference.parse::<ocikit_digest::Digest>().is_err() {
            ocikit_digest::reference::validate_tag(reference).map_err(|source| {
                Error::InvalidName {
                    registry: self.registry().to_string(),
                    name: reference.to_string(),
                    source,
                }
            })?;
        }
        let mut req = Request::new(
            Method::DELETE,
            self.url(repository, &format!("manifests/{reference}"))?,
            repository,
            Operation::DeleteManifest {
                reference: reference.to_string(),
            },
        );
        req.scopes = vec![format!("repository:{repository}:delete")];
        let response = self.send(&req).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::BAD_REQUEST {
            let body = read_limited(response, crate::MAX_ERROR_BODY)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            let detail = crate::request::error_detail(&body);
            // Distribution 2.8 answers a tag's DELETE with 400 `DIGEST_INVALID`: it deletes
            // by digest only.
            let by_tag = !reference.contains(':');
            if status == StatusCode::METHOD_NOT_ALLOWED
                || detail.contains("UNSUPPORTED")
                || (by_tag && detail.contains("DIGEST_INVALID"))
            {
                return Err(Error::Unsupported {
                    registry: self.registry().to_string(),
                    repository: repository.to_string(),
                    operation: Box::new(req.operation.clone()),
                    status: status.as_u16(),
                    detail,
                });
            }
            return Err(Error::Status {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                operation: Box::new(req.operation.clone()),
                status: status.as_u16(),
                detail,
            });
        }
        Err(self.status_error(&req, response).await)
    }

    /// The registry's repositories (`GET /v2/_catalog`), following `Link` pagination on the
    /// registry's own origin: `page_size` asks for pages of that many (`n`; the registry's
    /// own size when `None`), `limit` stops after that many repositories (all when `None`).
    pub async fn catalog(
        &self,
        page_size: Option<usize>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let mut url = self.catalog_url(page_size, None)?;
        let mut repositories = Vec::new();
        for _ in 0..MAX_CATALOG_PAGES {
            if limit.is_some_and(|limit| repositories.len() >= limit) {
                break;
            }
            let (page, next) = self.catalog_request(url).await?;
            repositories.extend(page.repositories);
            match next {
                Some(next) if self.same_origin(&next) => url = next,
                _ => break,
            }
        }
        if let Some(limit) = limit {
            repositories.truncate(limit);
        }
        Ok(repositories)
    }

    /// One page of the registry's catalog: at most `n` repositories (the registry's own
    /// page size when `None`) after `last` (from the start when `None`). Its
    /// [`CatalogPage::next`] is the `last` of the next page.
    pub async fn catalog_page(&self, n: Option<usize>, last: Option<&str>) -> Result<CatalogPage> {
        let url = self.catalog_url(n, last)?;
        Ok(self.catalog_request(url).await?.0)
    }

    fn catalog_url(&self, n: Option<usize>, last: Option<&str>) -> Result<Url> {
        let mut url = self
            .base()
            .join("v2/_catalog")
            .map_err(|e| Error::ClientSetup {
                registry: self.registry().to_string(),
                reason: "cannot form the catalog URL".into(),
                source: Some(Box::new(e)),
            })?;
        if n.is_some() || last.is_some() {
            let mut pairs = url.query_pairs_mut();
            if let Some(n) = n {
                pairs.append_pair("n", &n.to_string());
            }
            if let Some(last) = last {
                pairs.append_pair("last", last);
            }
        }
        Ok(url)
    }

    /// Reads the catalog page at `url`; returns it and the URL of the next page (resolved
    /// against the response's).
    async fn catalog_request(&self, url: Url) -> Result<(CatalogPage, Option<Url>)> {
        let mut req = Request::new(Method::GET, url, "", Operation::Catalog);
        req.scopes = vec!["registry:catalog:*".into()];
        let response = self.expect(&req, &[StatusCode::OK]).await?;
        let next_url = next_link(&response).and_then(|link| response.url().join(&link).ok());
        let body = read_limited(response, MAX_CATALOG_PAGE)
            .await
            .map_err(|e| self.request_error(&req, e))?
            .unwrap_or_default();
        let page: Repositories =
            serde_json::from_slice(&body).map_err(|e| Error::InvalidResponse {
                registry: self.registry().to_string(),
                repository: String::new(),
                operation: Box::new(Operation::Catalog),
                reason: format!("the catalog is not JSON: {e}"),
            })?;
        let repositories = page.repositories.unwrap_or_default();
        let next = next_url.as_ref().map(|next| {
            next.query_pairs()
                .find(|(key, _)| key == "last")
                .map(|(_, value)| value.into_owned())
                .or_else(|| repositories.last().cloned())
                .unwrap_or_default()
        });
        Ok((CatalogPage { repositories, next }, next_url))
    }
}
