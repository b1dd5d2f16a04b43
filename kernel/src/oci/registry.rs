//! Components in OCI registries (with the `oci-client` crate). An artefact is stored as an OCI
//! image manifest whose config has media type [`CONFIG_MEDIA_TYPE`] and whose single layer is
//! the artefact `.tar.gz` with media type [`LAYER_MEDIA_TYPE`]; `skopeo copy` moves it between
//! registries like any image. Pulled artefacts are cached on disk by digest, and a reference
//! that was pulled before is served from the cache when the registry cannot be reached.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::artifact::{MAX_ARTIFACT_BYTES, sha256_hex};

/// Media type of the config blob of a component artefact.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.heliosproxy.component.config.v1+json";
/// Media type of the layer holding the artefact `.tar.gz`.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.heliosproxy.component.v1.tar+gzip";
/// How long a pull or push may take by default before it is abandoned.
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference does not parse.
    #[error("invalid OCI reference `{0}`: {1}")]
    Reference(String, String),
    /// The registry answered with an error, or could not be reached.
    #[error("registry: {0}")]
    Registry(String),
    /// The registry did not answer in time.
    #[error("registry did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The image is not a component artefact.
    #[error(
        "{0} is not a HeliosProxy component artefact (expected one layer of {LAYER_MEDIA_TYPE})"
    )]
    NotAnArtifact(String),
    /// The cache could not be written or read.
    #[error("component cache {path}: {source}")]
    Cache {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Registry credentials from `HELIOS_REGISTRY_USER` / `HELIOS_REGISTRY_PASSWORD`, else
/// anonymous.
pub fn auth_from_env() -> RegistryAuth {
    match (
        std::env::var("HELIOS_REGISTRY_USER"),
        std::env::var("HELIOS_REGISTRY_PASSWORD"),
    ) {
        (Ok(u), Ok(p)) => RegistryAuth::Basic(u, p),
        _ => RegistryAuth::Anonymous,
    }
}

fn client(insecure_registries: &[String]) -> Client {
    // reqwest is built without a default crypto provider; use the one the kernel uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure_registries.to_vec()),
        ..Default::default()
    })
}

fn parse(reference: &str) -> Result<Reference, RegistryError> {
    Reference::from_str(reference)
        .map_err(|e| RegistryError::Reference(reference.to_owned(), e.to_string()))
}

/// Runs a registry future on a private runtime, so callers may be sync or async.
fn block_on<T: Send + 'static>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, RegistryError>> + Send + 'static,
) -> Result<T, RegistryError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| RegistryError::Registry(e.to_string()))?;
            rt.block_on(async {
                tokio::time::timeout(timeout, fut)
                    .await
                    .map_err(|_| RegistryError::Timeout(timeout))?
            })
        })
        .join()
        .unwrap_or_else(|_| Err(RegistryError::Registry("registry client panicked".into())))
    })
}

/// Pushes artefact bytes under `reference` (`host:port/repo:tag`); returns the manifest URL.
pub fn push(
    reference: &str,
    artifact: Vec<u8>,
    insecure_registries: &[String],
) -> Result<String, RegistryError> {
    let image = parse(reference)?;
    let client = client(insecure_registries);
    block_on(REGISTRY_TIMEOUT, async move {
        let layer = ImageLayer::new(artifact, LAYER_MEDIA_TYPE.to_owned(), None);
        let config = Config::new(b"{}".to_vec(), CONFIG_MEDIA_TYPE.to_owned(), None);
        let response = client
            .push(&image, &[layer], config, &auth_from_env(), None)
            .await
            .map_err(|e| RegistryError::Registry(e.to_string()))?;
        Ok(response.manifest_url)
    })
}

/// Pulls the artefact bytes behind `reference`. With a cache directory, the bytes are stored
/// by digest and remembered for the reference; when the registry is unreachable (or hangs) a
/// reference pulled before is served from the cache, with a warning.
pub fn pull(
    reference: &str,
    insecure_registries: &[String],
    cache: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<u8>, RegistryError> {
    let image = parse(reference)?;
    let client = client(insecure_registries);
    let name = reference.to_owned();
    let fetched = block_on(timeout, async move {
        let data = client
            .pull(&image, &auth_from_env(), vec![LAYER_MEDIA_TYPE])
            .await
            .map_err(|e| RegistryError::Registry(e.to_string()))?;
        match data.layers.as_slice() {
            [layer]
                if layer.media_type == LAYER_MEDIA_TYPE
                    && layer.data.len() as u64 <= MAX_ARTIFACT_BYTES =>
            {
                Ok(layer.data.to_vec())
            }
            _ => Err(RegistryError::NotAnArtifact(name)),
        }
    });
    let Some(cache) = cache else {
        return fetched;
    };
    let dir = cache.join("oci");
    let index = dir.join("refs").join(hex::encode(reference.as_bytes()));
    match fetched {
        Ok(bytes) => {
            let digest = sha256_hex(&bytes);
            let io = |path: &Path| {
                let path = path.to_owned();
                move |source| RegistryError::Cache { path, source }
            };
            std::fs::create_dir_all(dir.join("refs")).map_err(io(&dir))?;
            let blob = dir.join(format!("{digest}.tar.gz"));
            std::fs::write(&blob, &bytes).map_err(io(&blob))?;
            std::fs::write(&index, &digest).map_err(io(&index))?;
            Ok(bytes)
        }
        Err(e @ (RegistryError::Registry(_) | RegistryError::Timeout(_))) => {
            let Ok(digest) = std::fs::read_to_string(&index) else {
                return Err(e);
            };
            let blob = dir.join(format!("{}.tar.gz", digest.trim()));
            let bytes = std::fs::read(&blob).map_err(|source| RegistryError::Cache {
                path: blob.clone(),
                source,
            })?;
            if sha256_hex(&bytes) != digest.trim() {
                return Err(e);
            }
            tracing::warn!(
                reference,
                "registry unreachable ({e}); starting from the cached artefact {}",
                digest.trim()
            );
            Ok(bytes)
        }
        Err(e) => Err(e),
    }
}
