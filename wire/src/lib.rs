//! HeliosProxy's PostgreSQL wire protocol, sans I/O: framing, the startup packet, the messages the
//! proxy reads or writes itself, password exchanges, and the socket type that may carry TLS.
//!
//! Parsers take a byte slice and return `Ok(None)` when more input is needed; encoders append
//! to the caller's buffer. Nothing here owns a socket except [`stream`].

pub mod auth;
pub mod bodies;
pub mod frame;
pub mod frontend;
pub mod messages;
pub mod results;
pub mod scram;
pub mod startup;
pub mod stream;
pub mod tls;

/// A protocol violation in bytes received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A length field is smaller than the header it must include.
    #[error("invalid message length {0}")]
    BadLength(i64),
    /// A message is larger than the configured limit.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// A message body is malformed.
    #[error("malformed {what} message")]
    Malformed {
        /// Which message.
        what: &'static str,
    },
    /// A message type the protocol does not define for this direction.
    #[error("invalid frontend message type {:?}", *.0 as char)]
    UnknownMessage(u8),
    /// The startup packet asked for an unsupported protocol version.
    #[error("unsupported frontend protocol {major}.{minor}")]
    Protocol {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
}
