//! How loading a component or calling it can fail.

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The source could not be read or verified.
    #[error("component {name} from {source_path}: {error}")]
    Source {
        /// Component name.
        name: String,
        /// Source.
        source_path: String,
        /// Why.
        error: crate::oci::SourceError,
    },
    /// The trust root could not be loaded.
    #[error("plugin_runtime.trust_root: {0}")]
    TrustRoot(#[from] crate::oci::TrustError),
    /// The bytes are not a valid component, or it does not match the WIT world.
    #[error("component {name}: {message}")]
    Invalid {
        /// Component name.
        name: String,
        /// Why.
        message: String,
    },
    /// The component imports a host interface it was not granted.
    #[error(
        "component {name} imports `{interface}` but is not granted it (add \"{grant}\" to grants)"
    )]
    NotGranted {
        /// Component name.
        name: String,
        /// Imported interface.
        interface: String,
        /// The grant that would allow it.
        grant: String,
    },
    /// `init` refused the configuration or failed.
    #[error("component {name}: init failed: {message}")]
    Init {
        /// Component name.
        name: String,
        /// Why.
        message: String,
    },
}

/// How a single component call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its CPU deadline.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The component trapped (panic, unreachable, out of memory, …).
    #[error("trapped: {0}")]
    Trap(String),
    /// No instance could be created.
    #[error("could not instantiate: {0}")]
    Instantiate(String),
}
