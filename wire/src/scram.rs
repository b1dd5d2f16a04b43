//! The server side of a SCRAM-SHA-256 exchange (RFC 5802/7677 as PostgreSQL speaks it),
//! with `SCRAM-SHA-256-PLUS` channel binding (`tls-server-end-point`, RFC 5929) over TLS,
//! and the stand-in verifier an unknown user is challenged with: derived from a server
//! secret and the user name, so its salt and iteration count are as stable as a real user's
//! and nothing in the exchange tells the two apart.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::auth::{AuthError, DEFAULT_ITERATIONS, ScramVerifier, constant_time_eq, hmac};

/// The channel-binding type the proxy offers over TLS.
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";

/// Server side of one SCRAM-SHA-256 exchange.
pub struct ScramServer {
    verifier: ScramVerifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// What the client's `c=` attribute must carry: the GS2 header, then the binding data
    /// when it bound the channel.
    expected_binding: Vec<u8>,
}

impl ScramServer {
    /// The mechanism list sent in `AuthenticationSASL` without TLS.
    pub const MECHANISMS: &'static [u8] = b"SCRAM-SHA-256\0\0";
    /// The mechanism list over TLS, where the channel can be bound.
    pub const MECHANISMS_PLUS: &'static [u8] = b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0";

    /// Handles the client's choice of `mechanism` and its client-first message; `binding`
    /// is this connection's `tls-server-end-point` data (`None` without TLS). Returns the
    /// exchange and the server-first message.
    pub fn start(
        verifier: ScramVerifier,
        mechanism: &[u8],
        client_first: &[u8],
        binding: Option<&[u8]>,
    ) -> Result<(Self, String), AuthError> {
        let plus = match mechanism {
            b"SCRAM-SHA-256" => false,
            b"SCRAM-SHA-256-PLUS" if binding.is_some() => true,
            _ => return Err(AuthError::BadMessage("mechanism")),
        };
        let text = std::str::from_utf8(client_first).map_err(|_| AuthError::BadMessage("utf8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = text
            .split_once(',')
            .ok_or(AuthError::BadMessage("gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(AuthError::BadMessage("gs2 header"))?;
        let gs2_header = format!("{flag},{authzid},");
        let mut expected_binding = gs2_header.into_bytes();
        match (flag, plus) {
            ("n", false) => {}
            // The client could bind but believes the server cannot: over TLS, where the
            // server offered PLUS, someone removed it from the list on the way.
            ("y", false) if binding.is_some() => {
                return Err(AuthError::ChannelBinding(
                    "the client was told the server cannot bind the channel",
                ));
            }
            ("y", false) => {}
            (f, true) if f.strip_prefix("p=") == Some(TLS_SERVER_END_POINT) => {
                expected_binding.extend_from_slice(binding.unwrap_or_default());
            }
            (f, _) if f.starts_with("p=") => {
                return Err(AuthError::ChannelBinding(
                    "only tls-server-end-point over TLS with SCRAM-SHA-256-PLUS",
                ));
            }
            (_, true) => {
                return Err(AuthError::ChannelBinding(
                    "SCRAM-SHA-256-PLUS needs a bound channel",
                ));
            }
            _ => return Err(AuthError::BadMessage("gs2 flag")),
        }
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(AuthError::BadMessage("client nonce"))?;
        let mut raw = [0u8; 18];
        rand::rng().fill_bytes(&mut raw);
        let nonce = format!("{client_nonce}{}", B64.encode(raw));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            ScramServer {
                verifier,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                nonce,
                expected_binding,
            },
            server_first,
        ))
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, AuthError> {
        let text = std::str::from_utf8(client_final).map_err(|_| AuthError::BadMessage("utf8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(AuthError::BadMessage("proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(AuthError::BadMessage("channel binding attribute"))?;
        let binding = B64
            .decode(binding)
            .map_err(|_| AuthError::BadMessage("channel binding encoding"))?;
        let nonce = attributes
            .find_map(|a| a.strip_prefix("r="))
            .ok_or(AuthError::BadMessage("nonce"))?;
        if nonce != self.nonce {
            return Err(AuthError::BadMessage("nonce mismatch"));
        }
        if !constant_time_eq(&binding, &self.expected_binding) {
            return Err(AuthError::ChannelBinding(
                "the client's channel binding does not match this connection",
            ));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| AuthError::BadMessage("proof encoding"))?;
        if proof.len() != 32 {
            return Err(AuthError::BadMessage("proof length"));
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        if !constant_time_eq(&computed, &self.verifier.stored_key) {
            return Err(AuthError::WrongPassword);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// The salt a user without a stored verifier is challenged with: stable per user (a second
/// attempt sees the same one, as for a real user), unpredictable without `secret`.
pub fn derived_salt(secret: &[u8], user: &str) -> [u8; 16] {
    let mac = hmac(secret, format!("scram salt\0{user}").as_bytes());
    mac[..16].try_into().expect("16 of 32 bytes")
}

/// A verifier no password matches, for a user that does not exist: the same iteration count
/// and salt length as a real one, and no PBKDF2 work (which would time it apart).
pub fn unknown_user_verifier(secret: &[u8], user: &str) -> ScramVerifier {
    let mut server_key = [0u8; 32];
    rand::rng().fill_bytes(&mut server_key);
    ScramVerifier {
        iterations: DEFAULT_ITERATIONS,
        salt: derived_salt(secret, user).to_vec(),
        stored_key: hmac(secret, format!("scram stored key\0{user}").as_bytes()),
        server_key,
    }
}

/// The `tls-server-end-point` binding data of a DER certificate: its hash with the hash of
/// its signature algorithm (SHA-256 for MD5, SHA-1 and SHA-256), as PostgreSQL computes it.
pub fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    const SHA384_OIDS: [&[u8]; 2] = [
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512_OIDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let has = |oid: &[u8]| cert_der.windows(oid.len()).any(|w| w == oid);
    if SHA512_OIDS.iter().any(|o| has(o)) {
        Sha512::digest(cert_der).to_vec()
    } else if SHA384_OIDS.iter().any(|o| has(o)) {
        Sha384::digest(cert_der).to_vec()
    } else {
        Sha256::digest(cert_der).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn exchange(
        password: &str,
        verifier: ScramVerifier,
        client_binding: ChannelBinding,
        mechanism: &[u8],
        server_binding: Option<&[u8]>,
    ) -> Result<(), AuthError> {
        let mut client = ScramSha256::new(password.as_bytes(), client_binding);
        let (server, server_first) =
            ScramServer::start(verifier, mechanism, client.message(), server_binding)?;
        client.update(server_first.as_bytes()).unwrap();
        let server_final = server.finish(client.message())?;
        client
            .finish(server_final.as_bytes())
            .map_err(|_| AuthError::BadMessage("server signature"))
    }

    fn plain(password: &str, verifier: ScramVerifier) -> Result<(), AuthError> {
        let unbound = ChannelBinding::unsupported();
        exchange(password, verifier, unbound, b"SCRAM-SHA-256", None)
    }

    #[test]
    fn scram_accepts_the_right_password_and_refuses_a_wrong_one() {
        let v = ScramVerifier::from_password("s3cret", b"saltsaltsalt", 4096);
        plain("s3cret", v.clone()).unwrap();
        assert_eq!(plain("wrong", v), Err(AuthError::WrongPassword));
    }

    #[test]
    fn scram_verifier_matches_postgres_protocol() {
        let text = postgres_protocol::password::scram_sha_256(b"pw");
        let v = ScramVerifier::parse(&text).unwrap();
        let again = ScramVerifier::from_password("pw", &v.salt, v.iterations);
        assert!(again == v);
        plain("pw", v).unwrap();
    }

    #[test]
    fn channel_binding_is_checked_both_ways() {
        let v = ScramVerifier::from_password("pw", b"0123456789abcdef", 4096);
        let cert = b"not really a certificate";
        let data = tls_server_end_point(cert);
        let plus = b"SCRAM-SHA-256-PLUS".as_slice();
        exchange(
            "pw",
            v.clone(),
            ChannelBinding::tls_server_end_point(data.clone()),
            plus,
            Some(&data),
        )
        .unwrap();
        // Bound to another certificate (a man in the middle terminating TLS): refused.
        let other = tls_server_end_point(b"the attacker's certificate");
        assert!(matches!(
            exchange(
                "pw",
                v.clone(),
                ChannelBinding::tls_server_end_point(other),
                plus,
                Some(&data)
            ),
            Err(AuthError::ChannelBinding(_))
        ));
        // A client that could bind but was told the server cannot: refused over TLS.
        assert!(matches!(
            exchange(
                "pw",
                v.clone(),
                ChannelBinding::unrequested(),
                b"SCRAM-SHA-256",
                Some(&data)
            ),
            Err(AuthError::ChannelBinding(_))
        ));
        // Plain SCRAM still works with and without TLS; PLUS without TLS does not.
        exchange(
            "pw",
            v.clone(),
            ChannelBinding::unsupported(),
            b"SCRAM-SHA-256",
            Some(&data),
        )
        .unwrap();
        exchange(
            "pw",
            v.clone(),
            ChannelBinding::unsupported(),
            b"SCRAM-SHA-256",
            None,
        )
        .unwrap();
        assert!(
            exchange(
                "pw",
                v,
                ChannelBinding::tls_server_end_point(data.clone()),
                plus,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_users_get_a_stable_salt_and_the_usual_iterations() {
        let a = unknown_user_verifier(b"secret", "mallory");
        let b = unknown_user_verifier(b"secret", "mallory");
        assert_eq!(a.salt, b.salt);
        assert_eq!(a.salt.len(), 16);
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
        assert_ne!(a.salt, unknown_user_verifier(b"secret", "trudy").salt);
        assert_ne!(a.salt, unknown_user_verifier(b"other", "mallory").salt);
        assert_eq!(
            exchange(
                "guess",
                a,
                ChannelBinding::unsupported(),
                b"SCRAM-SHA-256",
                None
            ),
            Err(AuthError::WrongPassword)
        );
    }
}
