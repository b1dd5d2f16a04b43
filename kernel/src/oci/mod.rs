//! Where components come from and whether to trust them: artefacts (`.tar.gz` with manifest,
//! wasm and detached signature, see [`artifact`]), the Ed25519 trust root ([`trust`]), and
//! resolving a `source` from config into verified wasm bytes.
//!
//! Sources: `oci://host:port/repo:tag` or `oci://host:port/repo@sha256:…` (see [`registry`]),
//! a path to an artefact (`x.tar.gz`, also as `file://…`), or a path to a bare `.wasm`. With a
//! trust root configured, a bare `x.wasm` loads only when the file `x.wasm.sig` beside it is an
//! Ed25519 signature over the wasm bytes by a trusted key, as `openssl pkeyutl -sign -rawin`
//! (64 raw bytes) or `signify -S -m x.wasm` (its `.sig` text) writes it.

pub mod artifact;
pub mod registry;
pub mod trust;

use std::path::Path;

pub use artifact::{Artifact, ArtifactError, Manifest};
pub use trust::{TrustError, TrustRoot};

/// A component ready to compile, with what is known about its provenance.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The wasm bytes.
    pub wasm: Vec<u8>,
    /// The manifest, for artefacts.
    pub manifest: Option<Manifest>,
    /// The trust-root key file that verified the signature, when one did.
    pub signed_by: Option<String>,
}

/// Why a source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The artefact is malformed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// Verification failed.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A bare wasm file with a trust root configured and no signature beside it.
    #[error(
        "no signature file {path}.sig beside the wasm, and a trust root is configured; sign it (`openssl pkeyutl -sign -rawin -inkey KEY -in FILE.wasm -out FILE.wasm.sig`, or `signify -S -s KEY -m FILE.wasm`), or pack and sign an artefact with `helios-plugin pack` and `helios-plugin sign`"
    )]
    BareWasm {
        /// The wasm file.
        path: String,
    },
    /// A signature file that is not an Ed25519 signature in a known form.
    #[error(
        "{path}: not an Ed25519 signature (64 raw bytes as openssl writes them, or signify's .sig)"
    )]
    BadSignatureFile {
        /// The signature file.
        path: String,
    },
    /// A scheme this build cannot fetch.
    #[error("unsupported source `{0}` (use oci://…, a path to a .tar.gz artefact or a .wasm file)")]
    Unsupported(String),
    /// Pulling from a registry failed.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The repository is named after another component than the one it holds.
    #[error(
        "repository `{repository}` holds component `{component}`; a component is pulled from a repository of its own name"
    )]
    Misnamed {
        /// The repository's last path segment.
        repository: String,
        /// The manifest's component name.
        component: String,
    },
}

/// Where and how to fetch remote sources.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Directory for pulled artefacts.
    pub cache_dir: Option<std::path::PathBuf>,
    /// How long a pull may take.
    pub timeout: std::time::Duration,
}

/// Reads `source` and verifies it against `trust` (when set).
pub fn resolve(
    source: &str,
    trust: Option<&TrustRoot>,
    fetch: &FetchOptions,
) -> Result<Verified, SourceError> {
    let path = source.strip_prefix("file://").unwrap_or(source);
    let bytes = if let Some(reference) = source.strip_prefix("oci://") {
        registry::pull(
            reference,
            &fetch.insecure_registries,
            fetch.cache_dir.as_deref(),
            fetch.timeout,
        )?
    } else if source.contains("://") && !source.starts_with("file://") {
        return Err(SourceError::Unsupported(source.to_owned()));
    } else {
        read_bounded(Path::new(path))?
    };
    if path.ends_with(".wasm") {
        let signed_by = match trust {
            Some(root) => Some(verify_sidecar(path, &bytes, root)?),
            None => None,
        };
        return Ok(Verified {
            wasm: bytes,
            manifest: None,
            signed_by,
        });
    }
    let artifact = Artifact::unpack(&bytes)?;
    // A signed component pulled under another component's repository name would run in
    // its place: the repository must be named after the component it holds.
    if let Some(reference) = source.strip_prefix("oci://") {
        let repository = reference
            .split(['@'])
            .next()
            .unwrap_or(reference)
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let repository = repository.split(':').next().unwrap_or_default();
        if repository != artifact.manifest.name {
            return Err(SourceError::Misnamed {
                repository: repository.to_owned(),
                component: artifact.manifest.name.clone(),
            });
        }
    }
    let signed_by = match trust {
        Some(root) => Some(
            root.verify(&artifact.signed_payload(), artifact.signature.as_ref())?
                .to_owned(),
        ),
        None => None,
    };
    Ok(Verified {
        wasm: artifact.wasm,
        manifest: Some(artifact.manifest),
        signed_by,
    })
}

/// Checks the signature file `<path>.sig` over a bare wasm's bytes; the verifying key's file.
fn verify_sidecar(path: &str, wasm: &[u8], root: &TrustRoot) -> Result<String, SourceError> {
    let sig_path = format!("{path}.sig");
    let sig = match std::fs::read(&sig_path) {
        Ok(sig) => sig,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::BareWasm {
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(SourceError::Read {
                path: sig_path,
                source,
            });
        }
    };
    let sig =
        trust::parse_signature(&sig).ok_or(SourceError::BadSignatureFile { path: sig_path })?;
    Ok(root.verify(wasm, Some(&sig))?.to_owned())
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, SourceError> {
    let read_err = |source| SourceError::Read {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > artifact::MAX_ARTIFACT_BYTES {
        return Err(ArtifactError::TooLarge {
            name: path.display().to_string(),
            limit: artifact::MAX_ARTIFACT_BYTES,
        }
        .into());
    }
    std::fs::read(path).map_err(read_err)
}
