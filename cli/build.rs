//! Embeds the plugin SDK's sources (the `helios-sdk` crate, the crates it builds on and the WIT
//! package it generates bindings from) so `helios-plugin new` can write them beside a new
//! component crate: the crate then builds wherever it is copied, with no path back into the
//! checkout this CLI was built from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The directories shipped, relative to the workspace root.
const SHIPPED: &[&str] = &["sdk", "sql", "analysis", "wit"];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("..")
        .canonicalize()
        .expect("the workspace root");
    let mut files = Vec::new();
    for dir in SHIPPED {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
        collect(&root, &root.join(dir), &mut files);
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    files.sort();
    let mut out = String::from("/// The SDK's files: path relative to the SDK root, contents.\n");
    out.push_str("pub const SDK_FILES: &[(&str, &[u8])] = &[\n");
    for (relative, absolute) in &files {
        writeln!(out, "    ({relative:?}, include_bytes!({absolute:?})),").unwrap();
    }
    out.push_str("];\n");
    let manifest = root.join("Cargo.toml");
    writeln!(
        out,
        "/// The workspace manifest the SDK's crates inherit from.\npub const WORKSPACE_MANIFEST: &str = include_str!({:?});",
        manifest.display().to_string()
    )
    .unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("sdk_files.rs");
    std::fs::write(dest, out).expect("write the embedded SDK");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            out.push((relative.display().to_string(), path.display().to_string()));
        }
    }
}
