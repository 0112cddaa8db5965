//! SCRAM-SHA-256 (RFC 5802 and 7677), the server's side: how PostgreSQL
//! checks a password without the password ever crossing the wire.
//!
//! ```text
//!   client                                   server (knows StoredKey, ServerKey, salt)
//!   n,,n=,r=<cnonce>               ------->
//!                                  <-------  r=<cnonce><snonce>,s=<salt>,i=4096
//!   c=biws,r=<nonce>,p=<proof>     ------->  checks the proof
//!                                  <-------  v=<server signature>
//! ```
//!
//! Both sides derive `SaltedPassword = PBKDF2-HMAC-SHA256(password, salt,
//! i)`, then `ClientKey = HMAC(SaltedPassword, "Client Key")` and
//! `StoredKey = SHA-256(ClientKey)`. The client proves it knows
//! `ClientKey` by sending `ClientKey XOR HMAC(StoredKey, AuthMessage)`,
//! where `AuthMessage` is the three messages so far: the server recovers
//! `ClientKey` with the same HMAC, hashes it and compares with `StoredKey`.
//! The server's signature, `HMAC(ServerKey, AuthMessage)`, proves to the
//! client in turn that the server knew the password too. The nonces make
//! every exchange different, so a recorded one cannot be replayed.
//!
//! The server keeps only the derived keys ([`ScramSecret`]), made once at
//! start with a random salt.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The mechanism's name, as announced in AuthenticationSASL.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// PBKDF2 iterations (PostgreSQL's default, `scram_iterations`).
pub const ITERATIONS: u32 = 4096;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// What the server keeps of a password.
#[derive(Clone)]
pub struct ScramSecret {
    salt: [u8; 16],
    iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramSecret(..)")
    }
}

impl ScramSecret {
    /// Derives the keys of `password` with a random salt.
    pub fn new(password: &str) -> Self {
        Self::with_salt(password, rand::random(), ITERATIONS)
    }

    /// Derives the keys of `password` with `salt` (for tests).
    pub fn with_salt(password: &str, salt: [u8; 16], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramSecret {
            salt,
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }
}

/// Why an exchange failed (the client gets "password authentication
/// failed" in every case, as PostgreSQL answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCRAM: {0}")]
pub struct ScramError(pub String);

fn fail<T>(why: &str) -> Result<T, ScramError> {
    Err(ScramError(why.to_owned()))
}

/// One exchange, after the server's first message.
#[derive(Debug)]
pub struct Exchange {
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Exchange {
    /// Reads the client's first message and returns the exchange and the
    /// server's first message.
    pub fn start(secret: &ScramSecret, client_first: &[u8]) -> Result<(Self, String), ScramError> {
        let text = std::str::from_utf8(client_first).or_else(|_| fail("not UTF-8"))?;
        // gs2 header: "n,," (no channel binding) or "y,," (client could
        // but thinks the server cannot); "p=" asks for binding we lack.
        let bare = match text
            .strip_prefix("n,,")
            .or_else(|| text.strip_prefix("y,,"))
        {
            Some(bare) => bare,
            None => return fail("channel binding is not supported"),
        };
        let client_nonce = bare
            .split(',')
            .find_map(|attr| attr.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ScramError("client nonce missing".into()))?;
        let server_nonce = BASE64.encode(rand::random::<[u8; 18]>());
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(secret.salt),
            secret.iterations
        );
        Ok((
            Exchange {
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client's final message; returns the server's final
    /// message (`v=...`).
    pub fn finish(self, secret: &ScramSecret, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final).or_else(|_| fail("not UTF-8"))?;
        let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
            return fail("proof missing");
        };
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                channel = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if !matches!(channel, Some("biws" | "eSws")) {
            return fail("unexpected channel binding");
        }
        if nonce != Some(self.nonce.as_str()) {
            return fail("nonce mismatch");
        }
        let proof = BASE64
            .decode(proof)
            .or_else(|_| fail("proof is not base64"))?;
        if proof.len() != 32 {
            return fail("proof has the wrong length");
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&secret.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *k = p ^ s;
        }
        let candidate: [u8; 32] = Sha256::digest(client_key).into();
        // Compare every byte whatever the first difference: no timing hint.
        let diff = candidate
            .iter()
            .zip(secret.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return fail("wrong password");
        }
        let server_signature = hmac(&secret.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, written from the RFC, to drive the server's.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = BASE64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    #[test]
    fn right_password_passes_and_wrong_one_fails() {
        let secret = ScramSecret::with_salt("sesame", [7; 16], 64);
        for (password, ok) in [("sesame", true), ("sesam", false)] {
            let (exchange, server_first) = Exchange::start(&secret, b"n,,n=,r=abcdefgh").unwrap();
            assert!(server_first.starts_with("r=abcdefgh"));
            let reply = client_final(password, "n=,r=abcdefgh", &server_first);
            let outcome = exchange.finish(&secret, reply.as_bytes());
            assert_eq!(outcome.is_ok(), ok, "{password}: {outcome:?}");
            if ok {
                assert!(outcome.unwrap().starts_with("v="));
            }
        }
    }

    #[test]
    fn the_nonce_must_be_the_servers() {
        let secret = ScramSecret::with_salt("sesame", [7; 16], 64);
        let (exchange, server_first) = Exchange::start(&secret, b"n,,n=,r=abc").unwrap();
        let forged = server_first.replacen("r=abc", "r=abd", 1);
        let reply = client_final("sesame", "n=,r=abc", &forged);
        assert!(exchange.finish(&secret, reply.as_bytes()).is_err());
        assert!(Exchange::start(&secret, b"p=tls-server-end-point,,n=,r=abc").is_err());
        assert!(Exchange::start(&secret, b"n,,n=").is_err());
    }
}
