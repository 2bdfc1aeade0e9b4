//! Where things live in the bucket (docs/remote.md):
//!
//! ```text
//! PREFIX/v1/cas/<ab>/<blake3>   object bytes, immutable
//! PREFIX/v1/ac/<ab>/<task key>  the signed record of a task
//! PREFIX/v1/claims/<task key>   who is paying for a task right now
//! ```
//!
//! `<ab>` is the first two hex digits, so no listing of one folder is huge.
//! `v1` is the layout version: a change of layout or record format goes to
//! `v2/` beside it and never rewrites what is there.

use super::config::RemoteUrl;

pub const VERSION: &str = "v1";

#[derive(Debug, Clone)]
pub struct Layout {
    root: String,
}

fn fan(id: &str) -> &str {
    id.get(..2).unwrap_or("__")
}

impl Layout {
    pub fn new(url: &RemoteUrl) -> Layout {
        let root = if url.prefix.is_empty() {
            VERSION.to_string()
        } else {
            format!("{}/{VERSION}", url.prefix)
        };
        Layout { root }
    }
    pub fn cas(&self, blake3: &str) -> String {
        format!("{}/cas/{}/{blake3}", self.root, fan(blake3))
    }
    pub fn cas_prefix(&self) -> String {
        format!("{}/cas/", self.root)
    }
    pub fn record(&self, key: &str) -> String {
        format!("{}/ac/{}/{key}", self.root, fan(key))
    }
    pub fn records_prefix(&self) -> String {
        format!("{}/ac/", self.root)
    }
    pub fn claim(&self, key: &str) -> String {
        format!("{}/claims/{key}", self.root)
    }
    pub fn claims_prefix(&self) -> String {
        format!("{}/claims/", self.root)
    }
    /// The object id at the end of a `cas` key.
    pub fn id_of(key: &str) -> &str {
        key.rsplit('/').next().unwrap_or(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let l = Layout::new(&RemoteUrl::parse("s3://b/team/x").unwrap());
        assert_eq!(l.cas("abcdef"), "team/x/v1/cas/ab/abcdef");
        assert_eq!(l.record("12ff"), "team/x/v1/ac/12/12ff");
        assert_eq!(l.claim("12ff"), "team/x/v1/claims/12ff");
        let bare = Layout::new(&RemoteUrl::parse("s3://b").unwrap());
        assert_eq!(bare.record("12ff"), "v1/ac/12/12ff");
        assert_eq!(Layout::id_of(&bare.cas("abcdef")), "abcdef");
    }
}
