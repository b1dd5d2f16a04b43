//! `helios-plugin`: scaffold, pack, sign, verify and inspect HeliosProxy components.
//!
//! Exit codes a script can rely on: 0 success; 1 the artefact was checked and refused
//! (bad signature, digest mismatch, malformed); 2 usage error; 3 any other failure (I/O, …).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use heliosproxy::oci::{Artifact, TrustRoot, registry, trust};
use heliosproxy::plugins;

#[derive(Parser)]
#[command(
    version,
    about = "Create, sign, verify and inspect HeliosProxy components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scaffold a component crate on the SDK that builds and passes its own test. The SDK
    /// this CLI carries is written beside it (`NAME/helios-sdk/`), so the crate builds
    /// wherever it is copied; `--sdk DIR` depends on another copy of the `sdk` crate instead.
    New {
        /// Crate name (also the directory created).
        name: String,
        /// Parent directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// An SDK crate directory to depend on instead of the copy this CLI carries.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Write a new Ed25519 key pair: NAME.key (private, mode 0600) and NAME.pub.
    Keygen {
        /// Base name of the key files.
        #[arg(long, default_value = "signing")]
        name: String,
        /// Directory to write them to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Pack a .wasm component into an (unsigned) artefact.
    Pack {
        /// The component.
        #[arg(long)]
        wasm: PathBuf,
        /// Component name.
        #[arg(long)]
        name: String,
        /// Component version.
        #[arg(long, default_value = "0.1.0")]
        version: String,
        /// Hooks it implements (comma-separated).
        #[arg(long, value_delimiter = ',')]
        hooks: Vec<String>,
        /// Host interfaces it needs (comma-separated).
        #[arg(long, value_delimiter = ',')]
        grants: Vec<String>,
        /// Output artefact.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Sign an artefact in place with a private key.
    Sign {
        /// PKCS#8 PEM private key.
        #[arg(long)]
        key: PathBuf,
        /// The artefact.
        artifact: PathBuf,
    },
    /// Verify an artefact against a trust root; exit 1 when it does not verify.
    Verify {
        /// Directory of trusted *.pub keys.
        #[arg(long)]
        trust_root: PathBuf,
        /// The artefact.
        artifact: PathBuf,
    },
    /// Push an artefact to an OCI registry (`host:port/repo:tag`, `oci://` optional).
    Push {
        /// The artefact.
        artifact: PathBuf,
        /// Where to push it.
        reference: String,
        /// Speak plain HTTP to this registry (loopback, private mirrors).
        #[arg(long)]
        insecure: bool,
    },
    /// Pull an artefact from an OCI registry.
    Pull {
        /// What to pull.
        reference: String,
        /// Output file.
        #[arg(long, short)]
        out: PathBuf,
        /// Speak plain HTTP to this registry.
        #[arg(long)]
        insecure: bool,
    },
    /// Show manifest, digest, size, signature status, and the component's imports/exports.
    Inspect {
        /// The artefact (or a bare .wasm).
        artifact: PathBuf,
        /// Directory of trusted *.pub keys, to report signature status.
        #[arg(long)]
        trust_root: Option<PathBuf>,
    },
}

/// A check that ran and said no (exit code 1), as opposed to a failure to run (3).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Refused>().is_some() => {
            eprintln!("refused: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::New { name, dir, sdk } => scaffold(&name, &dir, sdk.as_deref()),
        Command::Keygen { name, out } => {
            let (private, public) = trust::generate_key_pair();
            std::fs::create_dir_all(&out)?;
            let key_path = out.join(format!("{name}.key"));
            trust::write_private_key(&key_path, &private).with_context(|| {
                format!("creating {} (it must not exist yet)", key_path.display())
            })?;
            let pub_path = out.join(format!("{name}.pub"));
            std::fs::write(&pub_path, public)?;
            println!(
                "wrote {} (private, 0600) and {}",
                key_path.display(),
                pub_path.display()
            );
            Ok(())
        }
        Command::Pack {
            wasm,
            name,
            version,
            hooks,
            grants,
            out,
        } => {
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let artifact = Artifact::new(&name, &version, hooks, grants, bytes);
            std::fs::write(&out, artifact.pack()?)?;
            println!(
                "packed {} ({}) sha256 {}",
                out.display(),
                name,
                artifact.manifest.wasm_sha256
            );
            Ok(())
        }
        Command::Sign { key, artifact } => {
            let signing_key = trust::load_signing_key(&key)?;
            let mut a = read_artifact(&artifact)?;
            a.sign(&signing_key);
            std::fs::write(&artifact, a.pack()?)?;
            println!("signed {} with {}", artifact.display(), key.display());
            Ok(())
        }
        Command::Verify {
            trust_root,
            artifact,
        } => {
            let root = TrustRoot::load(&trust_root)?;
            let a = read_artifact(&artifact)?;
            let key = root
                .verify(&a.signed_payload(), a.signature.as_ref())
                .map_err(|e| Refused(format!("{}: {e}", artifact.display())))?;
            println!(
                "{}: {} {} signed by {key}",
                artifact.display(),
                a.manifest.name,
                a.manifest.version
            );
            Ok(())
        }
        Command::Inspect {
            artifact,
            trust_root,
        } => inspect(&artifact, trust_root.as_deref()),
        Command::Push {
            artifact,
            reference,
            insecure,
        } => {
            let reference = reference.trim_start_matches("oci://").to_owned();
            read_artifact(&artifact)?;
            let bytes = std::fs::read(&artifact)?;
            let url = registry::push(&reference, bytes, &insecure_list(&reference, insecure))?;
            println!("pushed {} to {url}", artifact.display());
            Ok(())
        }
        Command::Pull {
            reference,
            out,
            insecure,
        } => {
            let reference = reference.trim_start_matches("oci://").to_owned();
            let bytes = registry::pull(
                &reference,
                &insecure_list(&reference, insecure),
                None,
                registry::REGISTRY_TIMEOUT,
            )?;
            Artifact::unpack(&bytes).map_err(|e| Refused(format!("{reference}: {e}")))?;
            std::fs::write(&out, bytes)?;
            println!("pulled {reference} to {}", out.display());
            Ok(())
        }
    }
}

/// The registry host of a reference, when `--insecure` asks for plain HTTP.
fn insecure_list(reference: &str, insecure: bool) -> Vec<String> {
    if insecure {
        vec![reference.split('/').next().unwrap_or(reference).to_owned()]
    } else {
        Vec::new()
    }
}

fn read_artifact(path: &Path) -> Result<Artifact> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Artifact::unpack(&bytes).map_err(|e| Refused(format!("{}: {e}", path.display())).into())
}

fn inspect(path: &Path, trust_root: Option<&Path>) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (wasm, manifest, signature, payload) = if path.extension().is_some_and(|e| e == "wasm") {
        (bytes, None, None, Vec::new())
    } else {
        let a =
            Artifact::unpack(&bytes).map_err(|e| Refused(format!("{}: {e}", path.display())))?;
        let payload = a.signed_payload();
        (a.wasm, Some(a.manifest), a.signature, payload)
    };
    if let Some(m) = &manifest {
        println!("name:      {}", m.name);
        println!("version:   {}", m.version);
        println!("wit:       {}", m.wit);
        println!("hooks:     {}", m.hooks.join(", "));
        println!("grants:    {}", m.grants.join(", "));
    }
    println!("size:      {} bytes", wasm.len());
    println!(
        "sha256:    {}",
        heliosproxy::oci::artifact::sha256_hex(&wasm)
    );
    let status = match (signature, trust_root) {
        (None, _) => "unsigned".to_owned(),
        (Some(_), None) => "signed (not checked: pass --trust-root)".to_owned(),
        (Some(sig), Some(dir)) => match TrustRoot::load(dir)?.verify(&payload, Some(&sig)) {
            Ok(key) => format!("valid, signed by {key}"),
            Err(e) => format!("INVALID: {e}"),
        },
    };
    println!("signature: {status}");
    let (imports, exports) =
        plugins::describe(&wasm).map_err(|e| Refused(format!("not a component: {e}")))?;
    println!("imports:   {}", imports.join(", "));
    println!("exports:   {}", exports.join(", "));
    Ok(())
}

/// The SDK's sources, embedded at build time (see `build.rs`).
mod embedded_sdk {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

/// Writes the embedded SDK under `dir` with a workspace manifest of its own (the crates
/// inherit versions and dependencies from it).
fn write_sdk(dir: &Path) -> Result<()> {
    for (relative, bytes) in embedded_sdk::SDK_FILES {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut manifest = String::from(
        "# The HeliosProxy plugin SDK and the crates it builds on, written by `helios-plugin new`.\n\
         [workspace]\nresolver = \"3\"\nmembers = [\"sdk\", \"sql\", \"analysis\"]\n",
    );
    for section in ["[workspace.package]", "[workspace.dependencies]"] {
        manifest.push('\n');
        manifest.push_str(&toml_section(embedded_sdk::WORKSPACE_MANIFEST, section));
    }
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    Ok(())
}

/// The lines of `section` (its header to the next header) in a TOML text.
fn toml_section(text: &str, section: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line.trim() == section;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn scaffold(name: &str, parent: &Path, sdk: Option<&Path>) -> Result<()> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("`{name}` is not a valid crate name");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let sdk_path = match sdk {
        Some(sdk) => std::fs::canonicalize(sdk)
            .with_context(|| format!("locating the SDK crate {}", sdk.display()))?
            .display()
            .to_string(),
        None => {
            write_sdk(&dir.join("helios-sdk"))?;
            "helios-sdk/sdk".to_owned()
        }
    };
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nhelios-sdk = {{ path = {sdk_path:?} }}\n\n[profile.release]\nopt-level = \"s\"\nlto = true\nstrip = true\npanic = \"abort\"\n\n# Stand-alone: the SDK beside it is a workspace of its own.\n[workspace]\nexclude = [\"helios-sdk\"]\n",
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), SCAFFOLD_LIB)?;
    println!(
        "created {}: `cargo test` runs its test, `cargo build --release --target wasm32-wasip2` builds the component",
        dir.display()
    );
    Ok(())
}

const SCAFFOLD_LIB: &str = r#"//! A HeliosProxy component: refuses statements that change a configured table, wherever
//! the change hides (CTEs, EXPLAIN ANALYZE, MERGE, PREPARE bodies), judged on what
//! PostgreSQL's parser says the statement does.

use std::sync::OnceLock;

use helios_sdk::*;

static TABLE: OnceLock<String> = OnceLock::new();

pub struct Component;

impl Plugin for Component {
    fn init(config: &Config) -> Result<Hooks, String> {
        let table = config.text("protected_table").unwrap_or("accounts").to_lowercase();
        let _ = TABLE.set(table);
        // The verdict depends only on the statement: the kernel may cache it.
        context::declare_pure(Hooks::VALIDATE);
        Ok(Hooks::VALIDATE)
    }

    fn validate(_call: &Call, stmt: &Statement) -> Verdict {
        let table = TABLE.get().map(String::as_str).unwrap_or("accounts");
        let analysis = context::analysis(stmt);
        if analysis.parse_error.is_some() {
            return deny("42501", "statement cannot be analysed");
        }
        let bare = |t: &str| t.rsplit('.').next().unwrap_or(t).to_owned();
        let changed = analysis
            .modifications
            .iter()
            .map(|m| &m.table)
            .chain(&analysis.writes)
            .any(|t| bare(t) == table);
        if changed {
            deny("42501", format!("changes to {table} are refused"))
        } else {
            Verdict::Allow
        }
    }
}

export_plugin!(Component);

#[cfg(test)]
mod tests {
    use super::*;
    use helios_sdk::testing::session;

    #[test]
    fn refuses_changes_to_the_protected_table() {
        Component::init(&Config::default()).unwrap();
        let check = |sql: &str| Component::validate(&session("app"), &statement(sql));
        assert!(matches!(check("select * from accounts"), Verdict::Allow));
        assert!(matches!(check("delete from accounts where id = 1"), Verdict::Deny(_)));
        assert!(matches!(
            check("with d as (update accounts set x = 1 returning 1) select * from d"),
            Verdict::Deny(_)
        ));
    }
}
"#;
