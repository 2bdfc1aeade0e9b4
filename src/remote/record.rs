//! The record of one task in the team cache (`v1/ac/<ab>/<key>`): what a
//! writer built under a key, signed by that writer.
//!
//! The signature covers a canonical text of every other field (object keys
//! sorted at every level, no whitespace), after a domain tag, so the same
//! record always signs to the same bytes whatever JSON library wrote it.
//! A record is believed only when its signature verifies under a trusted
//! key, its key is the blake3 of its preimage (a writer cannot file a
//! result under someone else's inputs) and every candidate names a
//! well-formed object; the bytes are checked (blake3 and size) as they are
//! pulled.

use super::sign::{PublicKey, SigningKey};
use crate::key::Preimage;
use nbbuild_cache::{Candidate, TaskRecord, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const FORMAT: u32 = 1;
const DOMAIN: &[u8] = b"nbbuild team cache record v1\n";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteCandidate {
    pub slot: u32,
    pub blake3: String,
    pub size: u64,
    pub mime: String,
    #[serde(default)]
    pub qa: Option<Verdict>,
    #[serde(default)]
    pub qa_attempts: u32,
    /// The route that generated it (`glabs`, `google`), as its writer recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteRecord {
    pub format: u32,
    pub key: String,
    /// The task's name when it was written (for people; not trusted).
    pub name: String,
    pub preimage: Value,
    pub candidates: Vec<RemoteCandidate>,
    /// `ed25519:<hex>`
    pub writer: String,
    /// unix ms
    pub written: u64,
    #[serde(default)]
    pub signature: String,
}

/// Why a record is not believed.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejected {
    Unreadable(String),
    Untrusted(String),
    BadSignature(String),
    WrongKey,
    BadObject(String),
}

impl Rejected {
    pub fn describe(&self) -> String {
        match self {
            Rejected::Unreadable(e) => format!("unreadable record ({e})"),
            Rejected::Untrusted(w) => {
                format!("signed by {w}, which is not trusted (add it to [remote] trusted or NBBUILD_REMOTE_TRUSTED)")
            }
            Rejected::BadSignature(w) => format!("its signature does not verify as {w}'s"),
            Rejected::WrongKey => "its preimage does not hash to its key".into(),
            Rejected::BadObject(o) => format!("it names a malformed object `{o}`"),
        }
    }
}

/// Keys sorted at every level, compact.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(k).unwrap_or_default(),
                        canonical(&m[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

impl RemoteRecord {
    /// The record of a task's first `n` candidates, or None unless all `n`
    /// slots are held.
    pub fn from_local(key: &str, rec: &TaskRecord, n: u32) -> Option<RemoteRecord> {
        let candidates: Vec<RemoteCandidate> = rec
            .candidates
            .iter()
            .filter(|c| c.slot < n)
            .map(|c| RemoteCandidate {
                slot: c.slot,
                blake3: c.object.clone(),
                size: c.size,
                mime: c.mime.clone(),
                qa: c.qa.clone(),
                qa_attempts: c.qa_attempts,
                route: c.route.clone(),
            })
            .collect();
        if candidates.len() as u32 != n {
            return None;
        }
        Some(RemoteRecord {
            format: FORMAT,
            key: key.to_string(),
            name: rec.name.clone(),
            preimage: rec.preimage.clone(),
            candidates,
            writer: String::new(),
            written: 0,
            signature: String::new(),
        })
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("signature");
        }
        let mut out = DOMAIN.to_vec();
        out.extend_from_slice(canonical(&v).as_bytes());
        out
    }

    /// Sign as `key`, now.
    pub fn sign(mut self, key: &SigningKey, now_ms: u64) -> RemoteRecord {
        self.writer = key.public().to_string();
        self.written = now_ms;
        self.signature = String::new();
        self.signature = key.sign(&self.signed_bytes());
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parse and check a record read at the path of `key`: trusted writer,
    /// good signature, key = blake3(preimage), well-formed objects.
    pub fn verified(
        bytes: &[u8],
        key: &str,
        trusts: &dyn Fn(&PublicKey) -> bool,
    ) -> Result<RemoteRecord, Rejected> {
        let r: RemoteRecord =
            serde_json::from_slice(bytes).map_err(|e| Rejected::Unreadable(e.to_string()))?;
        if r.format != FORMAT {
            return Err(Rejected::Unreadable(format!("format {}", r.format)));
        }
        let writer = PublicKey::parse(&r.writer)
            .map_err(|e| Rejected::Unreadable(format!("writer: {e}")))?;
        if !trusts(&writer) {
            return Err(Rejected::Untrusted(writer.short()));
        }
        if !writer.verify(&r.signed_bytes(), &r.signature) {
            return Err(Rejected::BadSignature(writer.short()));
        }
        let pre = Preimage::from_value(&r.preimage).ok_or(Rejected::WrongKey)?;
        if r.key != key || pre.key() != key {
            return Err(Rejected::WrongKey);
        }
        if let Some(c) = r
            .candidates
            .iter()
            .find(|c| !nbbuild_cache::is_object_id(&c.blake3))
        {
            return Err(Rejected::BadObject(c.blake3.clone()));
        }
        Ok(r)
    }

    /// A local candidate for slot `c` of this record.
    pub fn candidate(c: &RemoteCandidate) -> Candidate {
        Candidate {
            slot: c.slot,
            object: c.blake3.clone(),
            mime: c.mime.clone(),
            size: c.size,
            created: 0,
            qa: c.qa.clone(),
            qa_attempts: c.qa_attempts,
            url: None,
            remote_task: None,
            route: c.route.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (String, RemoteRecord) {
        let c = crate::synth::compile_chain(1, 0, 1);
        let pre = Preimage::new(&c.tasks[0], vec![]);
        let key = pre.key();
        let rec = TaskRecord {
            name: "scene01".into(),
            preimage: pre.to_value(),
            candidates: vec![Candidate {
                slot: 0,
                object: nbbuild_cache::hash_bytes(b"png"),
                mime: "image/png".into(),
                size: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = RemoteRecord::from_local(&key, &rec, 1).unwrap();
        (key, r)
    }

    #[test]
    fn a_signed_record_verifies_for_a_trusted_writer_only() {
        let (key, r) = sample();
        let k = SigningKey::generate().unwrap();
        let bytes = r.sign(&k, 1).to_bytes();
        let me = k.public();
        assert!(RemoteRecord::verified(&bytes, &key, &|p| *p == me).is_ok());
        let err = RemoteRecord::verified(&bytes, &key, &|_| false).unwrap_err();
        assert!(matches!(err, Rejected::Untrusted(_)), "{err:?}");
    }

    #[test]
    fn any_edited_field_breaks_the_signature() {
        let (key, r) = sample();
        let k = SigningKey::generate().unwrap();
        let me = k.public();
        let signed = r.sign(&k, 1);
        let mut v = serde_json::to_value(&signed).unwrap();
        v["candidates"][0]["blake3"] = Value::String(nbbuild_cache::hash_bytes(b"other"));
        let bytes = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            RemoteRecord::verified(&bytes, &key, &|p| *p == me),
            Err(Rejected::BadSignature(_))
        ));
        // Key order and whitespace do not matter: the canonical text does.
        let mut v = serde_json::to_value(&signed).unwrap();
        let m = v.as_object_mut().unwrap();
        let pre = m.shift_remove("preimage").unwrap();
        m.insert("preimage".into(), pre);
        assert!(
            RemoteRecord::verified(&serde_json::to_vec(&v).unwrap(), &key, &|p| *p == me).is_ok()
        );
    }

    #[test]
    fn a_record_filed_under_another_key_is_refused() {
        let (_, r) = sample();
        let k = SigningKey::generate().unwrap();
        let me = k.public();
        let mut r = r;
        let other = "0".repeat(64);
        r.key = other.clone();
        let bytes = r.sign(&k, 1).to_bytes();
        assert_eq!(
            RemoteRecord::verified(&bytes, &other, &|p| *p == me).unwrap_err(),
            Rejected::WrongKey
        );
    }

    #[test]
    fn only_complete_candidate_sets_are_written() {
        let (key, r) = sample();
        let rec = TaskRecord {
            preimage: r.preimage.clone(),
            ..Default::default()
        };
        assert!(RemoteRecord::from_local(&key, &rec, 1).is_none());
    }
}
