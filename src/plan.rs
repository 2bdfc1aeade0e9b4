//! What a build would do, before it does it: every task fresh or stale with
//! one reason, the calls it would make and the credits they would cost.
//!
//! Pure: the store and the file hashes come in through `PlanView`.

use crate::compile::{Compiled, InputSource, Task, TaskKind};
use crate::key::{diff, Change, ImageId, ImageInput, Preimage};
use nbbuild_cache::TaskRecord;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Credits per call, by the model sent to the API. Defaults below; a
/// `[prices]` table in nbbuild.toml overrides any entry.
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    pub table: BTreeMap<String, f64>,
}

impl Default for Prices {
    fn default() -> Self {
        let table = [
            ("nano_banana_2", 1.0),
            ("nano_banana_2_lite", 0.5),
            ("nano_banana_pro", 2.0),
            ("veo_31_fast", 10.0),
            ("veo_31_lite", 5.0),
            ("veo_31_quality", 40.0),
            ("veo_31_lite_relaxed", 0.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Prices { table }
    }
}

impl Prices {
    /// Price of one call; unknown models cost what the dearest model of
    /// their kind costs, so an estimate never undercounts.
    pub fn of(&self, model: &str) -> f64 {
        if let Some(p) = self.table.get(model) {
            return *p;
        }
        let video = model.starts_with("veo");
        self.table
            .iter()
            .filter(|(k, _)| k.starts_with("veo") == video)
            .map(|(_, v)| *v)
            .fold(0.0, f64::max)
    }
}

/// What planning needs from the outside.
pub trait PlanView {
    fn record(&self, key: &str) -> Option<TaskRecord>;
    /// The newest record stored for a task of this label and kind (to
    /// explain a key change; an image and a video node may share a name).
    fn previous(&self, label: &str, kind: TaskKind) -> Option<(String, TaskRecord)>;
    /// blake3 of a local reference file.
    fn file_hash(&self, path: &str) -> Result<String, String>;
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Never built.
    New,
    /// Built before with other inputs: these fields changed.
    KeyChanged { changes: Vec<Change> },
    /// An earlier run was interrupted or failed.
    MissingCandidates { missing: u32, of: u32 },
    /// QA flagged candidates.
    QaFlagged { flagged: u32 },
    /// Selected by `--only`.
    Forced,
    /// An input task will be rebuilt, so the pick it consumes will change.
    UpstreamChanges { upstream: String },
}

impl Reason {
    pub fn describe(&self) -> String {
        match self {
            Reason::New => "new".into(),
            Reason::KeyChanged { changes } => {
                let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
                format!("{} changed", fields.join(", "))
            }
            Reason::MissingCandidates { missing, of } => {
                format!("{missing} of {of} candidates missing")
            }
            Reason::QaFlagged { flagged } => format!("{flagged} candidate(s) flagged by QA"),
            Reason::Forced => "re-roll (--only)".into(),
            Reason::UpstreamChanges { upstream } => {
                format!("consumes {upstream}, which will be rebuilt")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Fresh,
    Stale(Reason),
    /// Not part of this run (`--mode images`, outside `--only`).
    Skipped {
        why: String,
    },
    /// Cannot be built now (a reference cannot be read).
    Blocked {
        why: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    pub task: usize,
    pub name: String,
    pub kind: TaskKind,
    pub key: Option<String>,
    pub status: Status,
    /// Calls this task would make (missing candidates).
    pub calls: u32,
    pub credits: f64,
    /// The preimage hashed into `key` (for `explain`).
    #[serde(skip)]
    pub preimage: Option<Preimage>,
    /// The newest stored record of the same task under another key, when
    /// the key changed (for `explain`).
    #[serde(skip)]
    pub previous: Option<(String, Preimage)>,
    /// The store's record under `key`, as read for planning (a build that
    /// turns out to have nothing to do settles from it without reading again).
    #[serde(skip)]
    pub record: Option<TaskRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub image_calls: u64,
    pub video_calls: u64,
    pub credits: f64,
}

impl Plan {
    pub fn stale(&self) -> impl Iterator<Item = &PlanItem> {
        self.items
            .iter()
            .filter(|i| matches!(i.status, Status::Stale(_)))
    }
    pub fn fresh_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.status, Status::Fresh))
            .count()
    }
}

pub struct PlanOptions<'a> {
    pub images_only: bool,
    pub only: Option<&'a BTreeSet<usize>>,
    pub prices: &'a Prices,
}

/// A stored candidate set that counts as done: every slot present and none flagged.
fn judge(rec: &TaskRecord, n: u32) -> Option<Reason> {
    let flagged = rec
        .candidates
        .iter()
        .filter(|c| c.slot < n && c.qa.as_ref().is_some_and(|v| v.verdict == "flagged"))
        .count() as u32;
    let missing = (0..n).filter(|s| rec.candidate(*s).is_none()).count() as u32;
    if missing > 0 {
        Some(Reason::MissingCandidates { missing, of: n })
    } else if flagged > 0 {
        Some(Reason::QaFlagged { flagged })
    } else {
        None
    }
}

/// The pick a fresh task hands downstream (same rule as the executor).
pub fn pick(rec: &TaskRecord, n: u32) -> Option<String> {
    let cands: Vec<_> = rec.candidates.iter().filter(|c| c.slot < n).collect();
    cands
        .iter()
        .find(|c| c.qa.as_ref().is_none_or(|v| v.verdict != "flagged"))
        .or(cands.first())
        .map(|c| c.object.clone())
}

pub fn preimage_for(
    task: &Task,
    view: &dyn PlanView,
    picks: &BTreeMap<usize, String>,
) -> Result<Option<Preimage>, String> {
    let mut images = Vec::new();
    for inp in &task.inputs {
        let id = match &inp.source {
            InputSource::File(p) => ImageId::Bytes {
                blake3: view.file_hash(p)?,
            },
            InputSource::Url(u) => ImageId::Url { url: u.clone() },
            InputSource::Task(d) => match picks.get(d) {
                Some(h) => ImageId::Bytes { blake3: h.clone() },
                None => return Ok(None),
            },
        };
        images.push(ImageInput { slot: inp.slot, id });
    }
    Ok(Some(Preimage::new(task, images)))
}

pub fn plan(c: &Compiled, view: &dyn PlanView, opts: &PlanOptions) -> Plan {
    let mut items: Vec<Option<PlanItem>> = vec![None; c.tasks.len()];
    // Pick each task hands downstream, when it is known without building.
    let mut picks: BTreeMap<usize, String> = BTreeMap::new();
    let needed: Option<BTreeSet<usize>> = opts.only.map(|only| {
        let mut needed = BTreeSet::new();
        let mut stack: Vec<usize> = only.iter().copied().collect();
        while let Some(t) = stack.pop() {
            if needed.insert(t) {
                stack.extend(c.tasks[t].deps());
            }
        }
        needed
    });
    for &i in &c.order {
        let t = &c.tasks[i];
        let n = t.params.candidates;
        let label = t.label();
        let price = opts.prices.of(&t.params.model);
        let mut item = PlanItem {
            task: i,
            name: label.clone(),
            kind: t.kind,
            key: None,
            status: Status::Fresh,
            calls: 0,
            credits: 0.0,
            preimage: None,
            previous: None,
            record: None,
        };
        let pre = match preimage_for(t, view, &picks) {
            Ok(p) => p,
            Err(why) => {
                item.status = Status::Blocked { why };
                items[i] = Some(item);
                continue;
            }
        };
        let skip = if opts.images_only && t.kind == TaskKind::Video {
            Some("--mode images")
        } else {
            match (opts.only, &needed) {
                (Some(only), _) if only.contains(&i) => None,
                (Some(_), Some(nd)) if nd.contains(&i) => None,
                (Some(_), _) => Some("not selected by --only"),
                _ => None,
            }
        };
        let forced = opts.only.is_some_and(|o| o.contains(&i));
        let Some(pre) = pre else {
            // An input will be rebuilt: this key is not known yet.
            let upstream = t
                .deps()
                .find(|d| !picks.contains_key(d))
                .map(|d| c.tasks[d].label())
                .unwrap_or_default();
            item.status = match skip {
                Some(why) => Status::Skipped { why: why.into() },
                None => Status::Stale(Reason::UpstreamChanges { upstream }),
            };
            if skip.is_none() {
                item.calls = n;
            }
            item.credits = price * item.calls as f64;
            items[i] = Some(item);
            continue;
        };
        let key = pre.key();
        item.key = Some(key.clone());
        let rec = view.record(&key);
        let verdict = match &rec {
            Some(r) => judge(r, n),
            None => Some(match view.previous(&label, t.kind) {
                Some((old_key, old)) => match Preimage::from_value(&old.preimage) {
                    Some(old_pre) if old_pre != pre => {
                        let changes = diff(&old_pre, &pre);
                        item.previous = Some((old_key, old_pre));
                        Reason::KeyChanged { changes }
                    }
                    _ => Reason::New,
                },
                None => Reason::New,
            }),
        };
        item.preimage = Some(pre.clone());
        let has_candidates = rec.as_ref().is_some_and(|r| !r.candidates.is_empty());
        let in_needed_only = opts.only.is_some() && !forced && skip.is_none();
        item.status = match (skip, forced, &verdict) {
            (Some(why), _, _) => Status::Skipped { why: why.into() },
            (None, true, _) => Status::Stale(Reason::Forced),
            (None, false, None) => Status::Fresh,
            // An input of an --only task is used as stored when it holds anything.
            (None, false, Some(_)) if in_needed_only && has_candidates => Status::Fresh,
            (None, false, Some(r)) => Status::Stale(r.clone()),
        };
        if let Status::Stale(reason) = &item.status {
            item.calls = match (reason, &rec) {
                (Reason::Forced, _) => n,
                (_, Some(r)) => (0..n)
                    .filter(|s| {
                        r.candidate(*s)
                            .is_none_or(|c| c.qa.as_ref().is_some_and(|v| v.verdict == "flagged"))
                    })
                    .count() as u32,
                (_, None) => n,
            };
        }
        item.credits = price * item.calls as f64;
        // Downstream consumers know their key now if this task will not change.
        let changes = matches!(item.status, Status::Stale(_));
        if !changes {
            if let Some(p) = rec.as_ref().and_then(|r| pick(r, n)) {
                picks.insert(i, p);
            }
        }
        item.record = rec;
        items[i] = Some(item);
    }
    let items: Vec<PlanItem> = items.into_iter().flatten().collect();
    let image_calls = items
        .iter()
        .filter(|i| i.kind == TaskKind::Image)
        .map(|i| i.calls as u64)
        .sum();
    let video_calls = items
        .iter()
        .filter(|i| i.kind == TaskKind::Video)
        .map(|i| i.calls as u64)
        .sum();
    let credits = items.iter().map(|i| i.credits).sum();
    Plan {
        items,
        image_calls,
        video_calls,
        credits,
    }
}
