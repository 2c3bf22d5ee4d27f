//! A store decorator for a synthetic keyspace (benchmarks): every shard object of the keyspace reads as one
//! template object, so a keyspace of any shard count needs one shard's bytes. Its manifest, groups and the
//! template are real; lookups of the template's keys land on every shard the placement names and read what
//! a real keyspace of that shape would read there.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub struct TemplateStore {
    inner: Arc<dyn ObjectStore>,
    template: Path,
}

impl TemplateStore {
    pub fn new(inner: Arc<dyn ObjectStore>, template: Path) -> Self {
        TemplateStore { inner, template }
    }

    fn resolve<'a>(&'a self, location: &'a Path) -> &'a Path {
        if location.as_ref().contains("/shard=") { &self.template } else { location }
    }
}

impl fmt::Display for TemplateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TemplateStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for TemplateStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(self.resolve(location), options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
