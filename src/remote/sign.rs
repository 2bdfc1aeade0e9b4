//! Who wrote a record: Ed25519 keys per writer, so a signature names its
//! writer (a shared HMAC key, as Turborepo uses, only says "some key
//! holder"). The secret is read from the environment and lives only in
//! memory: it has no `Display`, its `Debug` shows the public half, and it is
//! never written anywhere but `nbbuild remote keygen`'s stdout.
//!
//! Text forms: `nbbuild-ed25519-secret:<64 hex>` (the 32-byte seed) and
//! `ed25519:<64 hex>` (the public key). The secret's prefix contains the
//! word `secret`, which nbbuild.toml refuses, so it cannot be pasted there.

use ed25519_dalek::{Signer as _, Verifier as _};
use std::fmt;

const SECRET_PREFIX: &str = "nbbuild-ed25519-secret:";
const PUBLIC_PREFIX: &str = "ed25519:";

/// A writer's signing key.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

/// A writer's public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public())
    }
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SigningKey, String> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| format!("no random source: {e}"))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Errors never contain the text given (it may be a real secret).
    pub fn parse(s: &str) -> Result<SigningKey, String> {
        let hex = s
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| format!("a signing key starts with `{SECRET_PREFIX}`"))?;
        let seed = hex32(hex)?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The secret as text: only `nbbuild remote keygen` prints it.
    pub fn to_secret_string(&self) -> String {
        format!("{SECRET_PREFIX}{}", to_hex(&self.0.to_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signature of `msg`, as hex.
    pub fn sign(&self, msg: &[u8]) -> String {
        to_hex(&self.0.sign(msg).to_bytes())
    }
}

impl PublicKey {
    pub fn parse(s: &str) -> Result<PublicKey, String> {
        let hex = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| format!("a public key starts with `{PUBLIC_PREFIX}`"))?;
        let bytes = hex32(hex)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| "not a point of Ed25519".to_string())
    }

    /// Whether `sig_hex` is this key's signature of `msg` (strict: no
    /// malleable or small-order signatures).
    pub fn verify(&self, msg: &[u8], sig_hex: &str) -> bool {
        if sig_hex.len() != 128 {
            return false;
        }
        let (Ok(a), Ok(b)) = (hex32(&sig_hex[..64]), hex32(&sig_hex[64..])) else {
            return false;
        };
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&a);
        bytes[32..].copy_from_slice(&b);
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        self.0.verify_strict(msg, &sig).is_ok() && self.0.verify(msg, &sig).is_ok()
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        let s = self.to_string();
        s[..PUBLIC_PREFIX.len() + 12].to_string()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", to_hex(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let k = SigningKey::generate().unwrap();
        let again = SigningKey::parse(&k.to_secret_string()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_eq!(
            PublicKey::parse(&k.public().to_string()).unwrap(),
            k.public()
        );
        // Two keys differ.
        assert_ne!(SigningKey::generate().unwrap().public(), k.public());
    }

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let k = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let sig = k.sign(b"record");
        assert!(k.public().verify(b"record", &sig));
        assert!(!k.public().verify(b"recorD", &sig));
        assert!(!other.public().verify(b"record", &sig));
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert!(!k
            .public()
            .verify(b"record", &String::from_utf8(flipped).unwrap()));
        assert!(!k.public().verify(b"record", "zz"));
    }

    #[test]
    fn a_bad_secret_is_refused_without_being_echoed() {
        let text = format!("{SECRET_PREFIX}{}", "g".repeat(64));
        let err = SigningKey::parse(&text).unwrap_err();
        assert!(!err.contains("gggg"), "{err}");
        let k = SigningKey::generate().unwrap();
        let dbg = format!("{k:?}");
        assert!(
            !dbg.contains(&k.to_secret_string()[SECRET_PREFIX.len()..]),
            "{dbg}"
        );
        assert!(SigningKey::parse(&k.public().to_string()).is_err());
    }
}
