//! The component artefact: a `.tar.gz` holding `manifest.json`, `plugin.wasm` and
//! `plugin.sig` (a detached Ed25519 signature, base64, over the manifest exactly as stored —
//! which names the component, its version, hooks, grants and the wasm's SHA-256 — so a
//! signed component can be neither altered nor renamed or re-versioned). Unpacking refuses
//! anything else: other names, directories, links, path traversal, oversized contents, and
//! archives that decompress to more than an artefact can hold (extension headers included).

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The WIT package version components are built against; artefacts declare it in their
/// manifest and the runtime refuses components that do not implement it.
pub const WIT_PACKAGE: &str = "helios:plugin@0.3.0";
/// Older WIT packages the runtime still loads (through an adapter).
pub const OLDER_WIT_PACKAGES: &[&str] = &["helios:plugin@0.2.0"];

/// Largest `plugin.wasm` accepted.
pub const MAX_WASM_BYTES: u64 = 32 << 20;
/// Largest `manifest.json` / `plugin.sig` accepted.
const MAX_SMALL_FILE: u64 = 64 << 10;
/// Largest compressed artefact accepted.
pub const MAX_ARTIFACT_BYTES: u64 = 48 << 20;
/// Most bytes an artefact may decompress to: its three files and the tar headers, GNU
/// long-name and PAX extension entries included (the tar reader buffers those whole).
const MAX_DECOMPRESSED: u64 = MAX_WASM_BYTES + 2 * MAX_SMALL_FILE + (64 << 10);
/// What the signature covers before the manifest's bytes.
const SIGNED_PREFIX: &[u8] = b"heliosproxy component manifest v1\0";

/// What `manifest.json` says about the component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Component name.
    pub name: String,
    /// Component version.
    pub version: String,
    /// The WIT package it targets, e.g. `helios:plugin@0.3.0`.
    pub wit: String,
    /// Hooks it implements.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// Host interfaces it asks for.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Lower-case hex SHA-256 of `plugin.wasm`.
    pub wasm_sha256: String,
}

/// An unpacked artefact.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest.
    pub manifest: Manifest,
    /// The component bytes.
    pub wasm: Vec<u8>,
    /// The detached signature, when the artefact is signed.
    pub signature: Option<[u8; 64]>,
    /// The manifest's bytes as read from an archive (the signature covers these).
    manifest_bytes: Option<Vec<u8>>,
}

/// Why an artefact was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not a gzip-compressed tar, or truncated.
    #[error("not a readable .tar.gz artefact: {0}")]
    Archive(String),
    /// An entry that has no business in an artefact.
    #[error(
        "artefact entry `{0}` refused (only manifest.json, plugin.wasm and plugin.sig are allowed, as plain files)"
    )]
    Entry(String),
    /// An entry is larger than allowed.
    #[error("artefact entry `{name}` is larger than {limit} bytes")]
    TooLarge {
        /// Entry name.
        name: String,
        /// Limit.
        limit: u64,
    },
    /// A required file is missing.
    #[error("artefact has no {0}")]
    Missing(&'static str),
    /// The manifest does not parse.
    #[error("manifest.json: {0}")]
    Manifest(String),
    /// The wasm does not match the manifest's digest.
    #[error("plugin.wasm has sha256 {actual} but the manifest says {expected}")]
    Digest {
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The signature file is not 64 bytes of base64.
    #[error("plugin.sig is not a base64 Ed25519 signature")]
    Signature,
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Artifact {
    /// Builds an unsigned artefact from a component and its description.
    pub fn new(
        name: &str,
        version: &str,
        hooks: Vec<String>,
        grants: Vec<String>,
        wasm: Vec<u8>,
    ) -> Self {
        Artifact {
            manifest: Manifest {
                name: name.to_owned(),
                version: version.to_owned(),
                wit: WIT_PACKAGE.to_owned(),
                hooks,
                grants,
                wasm_sha256: sha256_hex(&wasm),
            },
            wasm,
            signature: None,
            manifest_bytes: None,
        }
    }

    /// What the signature covers: the manifest exactly as stored in the archive, which binds
    /// the wasm through its digest.
    pub fn signed_payload(&self) -> Vec<u8> {
        let manifest = self.manifest_bytes.clone().unwrap_or_else(|| {
            serde_json::to_vec_pretty(&self.manifest).expect("a manifest serializes")
        });
        [SIGNED_PREFIX, &manifest].concat()
    }

    /// Signs the artefact (its manifest as [`Artifact::pack`] writes it) with `key`.
    pub fn sign(&mut self, key: &ed25519_dalek::SigningKey) {
        self.manifest_bytes = None;
        self.signature = Some(crate::oci::trust::sign(key, &self.signed_payload()));
    }

    /// Writes the `.tar.gz`.
    pub fn pack(&self) -> std::io::Result<Vec<u8>> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            tar.append_data(&mut header, name, data)
        };
        let manifest = match &self.manifest_bytes {
            Some(bytes) => bytes.clone(),
            None => serde_json::to_vec_pretty(&self.manifest).map_err(std::io::Error::other)?,
        };
        add("manifest.json", &manifest)?;
        add("plugin.wasm", &self.wasm)?;
        if let Some(sig) = &self.signature {
            add("plugin.sig", B64.encode(sig).as_bytes())?;
        }
        let gz = tar.into_inner()?;
        let mut out = gz.finish()?;
        out.flush()?;
        Ok(out)
    }

    /// Reads and checks a `.tar.gz`: only the three known plain files, sizes bounded, and the
    /// wasm matching the manifest's digest. The signature is checked separately against a
    /// trust root.
    pub fn unpack(bytes: &[u8]) -> Result<Artifact, ArtifactError> {
        if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(ArtifactError::TooLarge {
                name: "artefact".into(),
                limit: MAX_ARTIFACT_BYTES,
            });
        }
        let gz = flate2::read::GzDecoder::new(bytes).take(MAX_DECOMPRESSED);
        let mut archive = tar::Archive::new(gz);
        let (mut manifest, mut wasm, mut sig) = (None, None, None);
        let entries = archive
            .entries()
            .map_err(|e| ArtifactError::Archive(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| ArtifactError::Archive(e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| ArtifactError::Archive(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let name = path.trim_start_matches("./").to_owned();
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(ArtifactError::Entry(path));
            }
            let limit = match name.as_str() {
                "plugin.wasm" => MAX_WASM_BYTES,
                "manifest.json" | "plugin.sig" => MAX_SMALL_FILE,
                _ => return Err(ArtifactError::Entry(path)),
            };
            let declared = entry.header().size().unwrap_or(u64::MAX);
            if declared > limit {
                return Err(ArtifactError::TooLarge { name, limit });
            }
            let mut data = Vec::with_capacity(declared as usize);
            entry
                .take(limit + 1)
                .read_to_end(&mut data)
                .map_err(|e| ArtifactError::Archive(e.to_string()))?;
            if data.len() as u64 > limit {
                return Err(ArtifactError::TooLarge { name, limit });
            }
            let slot = match name.as_str() {
                "plugin.wasm" => &mut wasm,
                "manifest.json" => &mut manifest,
                _ => &mut sig,
            };
            if slot.is_some() {
                return Err(ArtifactError::Entry(format!("{path} (duplicate)")));
            }
            *slot = Some(data);
        }
        let manifest_bytes = manifest.ok_or(ArtifactError::Missing("manifest.json"))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| ArtifactError::Manifest(e.to_string()))?;
        let wasm = wasm.ok_or(ArtifactError::Missing("plugin.wasm"))?;
        let actual = sha256_hex(&wasm);
        if !actual.eq_ignore_ascii_case(&manifest.wasm_sha256) {
            return Err(ArtifactError::Digest {
                expected: manifest.wasm_sha256,
                actual,
            });
        }
        let signature = match sig {
            None => None,
            Some(text) => {
                let raw = B64
                    .decode(String::from_utf8_lossy(&text).trim())
                    .map_err(|_| ArtifactError::Signature)?;
                Some(raw.try_into().map_err(|_| ArtifactError::Signature)?)
            }
        };
        Ok(Artifact {
            manifest,
            wasm,
            signature,
            manifest_bytes: Some(manifest_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Artifact {
        Artifact::new(
            "demo",
            "1.0.0",
            vec!["validate".into()],
            vec![],
            b"\0asm fake".to_vec(),
        )
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        let mut a = sample();
        a.signature = Some([7u8; 64]);
        let back = Artifact::unpack(&a.pack().unwrap()).unwrap();
        assert_eq!(back.manifest, a.manifest);
        assert_eq!(back.wasm, a.wasm);
        assert_eq!(back.signature, Some([7u8; 64]));
    }

    #[test]
    fn a_manifest_that_lies_about_the_digest_is_refused() {
        let mut a = sample();
        a.manifest.wasm_sha256 = sha256_hex(b"something else");
        assert!(matches!(
            Artifact::unpack(&a.pack().unwrap()),
            Err(ArtifactError::Digest { .. })
        ));
    }

    #[test]
    fn truncated_archives_are_refused() {
        let bytes = sample().pack().unwrap();
        assert!(Artifact::unpack(&bytes[..bytes.len() / 2]).is_err());
        assert!(Artifact::unpack(b"not gzip at all").is_err());
    }

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                h.set_link_name("/etc/passwd").unwrap();
                h.set_cksum();
                tar.append_data(&mut h, name, &[][..]).unwrap();
            } else {
                // Write the raw name so `../` survives (append_data would refuse it).
                let bytes = name.as_bytes();
                h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
                h.set_cksum();
                tar.append(&h, *data).unwrap();
            }
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn extension_headers_cannot_make_unpacking_buffer_more_than_an_artefact() {
        // A GNU long-name and a PAX header of 200 MB of zeros each (a few hundred KB
        // compressed): the tar reader would buffer them whole before the first file.
        for kind in [tar::EntryType::GNULongName, tar::EntryType::XHeader] {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut tar = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_size(200 << 20);
            header.set_entry_type(kind);
            header.set_cksum();
            tar.append(&header, std::io::repeat(b'a').take(200 << 20))
                .unwrap();
            let bytes = tar.into_inner().unwrap().finish().unwrap();
            assert!(bytes.len() < MAX_ARTIFACT_BYTES as usize);
            assert!(
                matches!(Artifact::unpack(&bytes), Err(ArtifactError::Archive(_))),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn the_signature_covers_the_manifest() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let mut a = sample();
        a.sign(&key);
        let packed = Artifact::unpack(&a.pack().unwrap()).unwrap();
        assert_eq!(packed.signed_payload(), a.signed_payload());
        let mut renamed = packed.clone();
        renamed.manifest.name = "other".into();
        let renamed = Artifact::unpack(&renamed_pack(&renamed)).unwrap();
        assert_ne!(renamed.signed_payload(), a.signed_payload());
    }

    /// Packs with the manifest as it now is (not the bytes it was read with).
    fn renamed_pack(a: &Artifact) -> Vec<u8> {
        let mut fresh = Artifact::new(
            &a.manifest.name,
            &a.manifest.version,
            a.manifest.hooks.clone(),
            a.manifest.grants.clone(),
            a.wasm.clone(),
        );
        fresh.signature = a.signature;
        fresh.pack().unwrap()
    }

    #[test]
    fn traversal_links_and_strangers_are_refused() {
        let bad = [
            tar_with(&[("../evil", tar::EntryType::Regular, b"x")]),
            tar_with(&[("plugin.wasm", tar::EntryType::Symlink, b"")]),
            tar_with(&[("notes.txt", tar::EntryType::Regular, b"x")]),
            tar_with(&[("dir/plugin.wasm", tar::EntryType::Regular, b"x")]),
        ];
        for b in bad {
            assert!(matches!(Artifact::unpack(&b), Err(ArtifactError::Entry(_))));
        }
    }
}
