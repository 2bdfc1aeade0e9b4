//! Record types kept in the sled trees (serialized as JSON).

use serde::{Deserialize, Serialize};

use crate::ObjectId;

/// Everything the store knows about one task key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TaskRecord {
    /// The task's node name when it was last planned (for `ls`/`show`/selection).
    #[serde(default)]
    pub name: String,
    /// The full key preimage, so `explain` can diff field by field.
    #[serde(default)]
    pub preimage: serde_json::Value,
    /// Current candidates, sorted by slot, at most one per slot.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// G-Labs tasks submitted and not yet committed, sorted by slot, at most one per slot.
    #[serde(default)]
    pub in_flight: Vec<InFlight>,
    /// Slots whose submission was sent and whose answer (the task id) has
    /// not been recorded: a lost answer or a crash in between. The next
    /// attempt looks the task up before paying again.
    #[serde(default)]
    pub submitting: Vec<Submitting>,
    /// Replaced candidate sets, oldest first.
    #[serde(default)]
    pub history: Vec<HistorySet>,
    /// Candidates taken out of their slot because their object was corrupt
    /// in the store and no good copy was found (see `Store::forget_corrupt`);
    /// an entry goes when its slot is committed again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupted: Vec<Corrupted>,
    /// unix ms
    #[serde(default)]
    pub created: u64,
    /// unix ms
    #[serde(default)]
    pub updated: u64,
}

impl TaskRecord {
    pub fn candidate(&self, slot: u32) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.slot == slot)
    }

    pub fn in_flight_for(&self, slot: u32) -> Option<&InFlight> {
        self.in_flight.iter().find(|f| f.slot == slot)
    }

    pub fn submitting_for(&self, slot: u32) -> Option<&Submitting> {
        self.submitting.iter().find(|f| f.slot == slot)
    }

    /// Every remote task id this record knows (in flight, current and
    /// earlier candidates): none of them can be another slot's lost answer.
    pub fn remote_ids(&self) -> impl Iterator<Item = &str> {
        self.in_flight.iter().map(|f| f.remote_task.as_str()).chain(
            self.candidates
                .iter()
                .chain(self.history.iter().flat_map(|h| h.candidates.iter()))
                .filter_map(|c| c.remote_task.as_deref()),
        )
    }

    /// Every object this record refers to: current candidates, then history.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        self.candidates
            .iter()
            .chain(self.history.iter().flat_map(|h| h.candidates.iter()))
            .map(|c| c.object.as_str())
    }
}

/// One generated result held by a task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Candidate {
    pub slot: u32,
    pub object: ObjectId,
    #[serde(default)]
    pub mime: String,
    /// Byte size of the object (set by the store from the object file on commit).
    #[serde(default)]
    pub size: u64,
    /// unix ms (set by the store on commit when 0)
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub qa: Option<Verdict>,
    #[serde(default)]
    pub qa_attempts: u32,
    /// Public URL once mirrored.
    #[serde(default)]
    pub url: Option<String>,
    /// The remote id that produced it (a G-Labs task id, a Google
    /// operation name, or the synthetic id of a Google still).
    #[serde(default)]
    pub remote_task: Option<String>,
    /// The route that made it (`glabs`, `google`); None in stores written
    /// before there was a second route (those were all G-Labs). Not part of
    /// the key: the key names the model, not the route (docs/keys.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

/// A candidate whose object rotted in the store with no good copy to put
/// back: its slot is empty, so the task is stale until it is regenerated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Corrupted {
    pub slot: u32,
    pub object: ObjectId,
    /// What the verified read found ("its bytes hash to ...").
    #[serde(default)]
    pub detail: String,
    /// Where the rotten file was moved (under `quarantine/`), if it existed.
    #[serde(default)]
    pub quarantined: Option<String>,
    /// unix ms
    #[serde(default)]
    pub at: u64,
}

/// A G-Labs task submitted for a candidate slot, recorded before it is polled.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct InFlight {
    pub slot: u32,
    pub remote_task: String,
    #[serde(default)]
    pub attempt: u32,
    /// unix ms
    #[serde(default)]
    pub submitted: u64,
}

/// A submission sent for a slot whose answer is not recorded yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Submitting {
    pub slot: u32,
    /// unix ms, when it was sent
    pub at: u64,
    #[serde(default)]
    pub attempt: u32,
}

/// A candidate set that was replaced (re-roll, or one slot replaced).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HistorySet {
    /// unix ms
    pub replaced: u64,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub candidates: Vec<Candidate>,
}

/// What a review concluded, stored as `"clean"`, `"flagged"` or
/// `"unreviewed"`. A string this version does not know reads as unreviewed,
/// never as clean.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No tell seen.
    Clean,
    /// At least one tell seen (even when the reviewer named none).
    Flagged,
    /// The reviewer could not give a usable answer. Never treated as clean.
    #[default]
    #[serde(other)]
    Unreviewed,
}

impl Outcome {
    /// `"clean"`, `"flagged"` or `"unreviewed"`, as stored in verdicts.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Flagged => "flagged",
            Outcome::Unreviewed => "unreviewed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A visual-QA verdict on one object by one reviewer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Verdict {
    pub verdict: Outcome,
    #[serde(default)]
    pub tells: Vec<String>,
    #[serde(default)]
    pub confidence: Option<f64>,
    #[serde(default)]
    pub reviewer: String,
    /// unix ms
    #[serde(default)]
    pub at: u64,
}

/// Why an object is pinned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Pin {
    pub object: ObjectId,
    pub why: String,
    /// unix ms
    #[serde(default)]
    pub at: u64,
}

/// Counts for `nbbuild cache stats`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Stats {
    pub tasks: u64,
    /// current candidates over all tasks
    pub candidates: u64,
    pub history_sets: u64,
    /// candidates inside history sets
    pub history_candidates: u64,
    pub in_flight: u64,
    /// files in `objects/`
    pub objects: u64,
    /// their total size
    pub object_bytes: u64,
    pub verdicts: u64,
    pub uploads: u64,
    pub url_objects: u64,
    pub file_hashes: u64,
    pub pins: u64,
    pub runs: u64,
    /// files left in `tmp/`
    pub tmp_files: u64,
    /// sled's own estimate of its size on disk
    pub db_bytes: u64,
}

/// What `verify` found wrong.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// An object whose bytes do not hash to its name, or whose size differs
    /// from the recorded one.
    CorruptObject,
    /// A record refers to an object that is not in `objects/`.
    MissingObject,
    /// A record that cannot be decoded.
    BadRecord,
    /// A file in `objects/` that is not named like an object.
    StrayFile,
    /// A candidate taken out of its slot because its object was corrupt and
    /// no good copy was found: the next build regenerates it.
    CorruptCandidate,
    /// A temporary file left by an interrupted write (harmless; gc removes it).
    TmpLeftover,
    /// A file set aside by corruption recovery, or an interrupted sled
    /// snapshot (harmless; gc removes set-aside files).
    Quarantined,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::CorruptObject => "corrupt_object",
            ProblemKind::MissingObject => "missing_object",
            ProblemKind::BadRecord => "bad_record",
            ProblemKind::StrayFile => "stray_file",
            ProblemKind::CorruptCandidate => "corrupt_candidate",
            ProblemKind::TmpLeftover => "tmp_leftover",
            ProblemKind::Quarantined => "quarantined",
        }
    }

    /// Leftovers that lose nothing and that `gc` cleans up.
    pub fn is_harmless(self) -> bool {
        matches!(self, ProblemKind::TmpLeftover | ProblemKind::Quarantined)
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The object id, task key or path concerned.
    pub what: String,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.kind, self.what, self.detail)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct VerifyReport {
    pub problems: Vec<Problem>,
    pub objects_checked: u64,
    pub bytes_checked: u64,
}

impl VerifyReport {
    /// No problems other than harmless leftovers.
    pub fn is_ok(&self) -> bool {
        self.problems.iter().all(|p| p.kind.is_harmless())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct GcReport {
    pub objects_removed: u64,
    pub bytes_freed: u64,
    pub history_sets_removed: u64,
    /// stale files in `tmp/` and set-aside (`quarantine/`) files removed
    pub leftovers_removed: u64,
    pub dry_run: bool,
}
