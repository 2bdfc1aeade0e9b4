//! What a build would do, before it does it: every task fresh or stale with
//! one reason, the calls it would make and the credits they would cost.
//!
//! Pure: the store and the file hashes come in through `PlanView`.

use crate::compile::{Compiled, InputSource, Params, Task, TaskKind};
use crate::key::{Change, ImageId, ImageInput, Preimage};
use crate::models::{Provider, Unit};
use nbbuild_cache::{Candidate, TaskRecord};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What one call costs, in the unit of the route that makes it: G-Labs
/// credits per call by model name, or Google US dollars per still by
/// `name@size` and per second of clip by `name@resolution`. The defaults are
/// the catalog's (models.rs); `[prices]` (credits) and `[prices_usd]`
/// (dollars) in nbbuild.toml override any entry.
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    pub unit: Unit,
    pub table: BTreeMap<String, f64>,
}

impl Default for Prices {
    fn default() -> Self {
        Prices::for_provider(Provider::Glabs)
    }
}

impl Prices {
    pub fn for_provider(p: Provider) -> Prices {
        Prices {
            unit: p.unit(),
            table: crate::models::default_prices(p),
        }
    }

    /// Price of one call of `t`; a model the table does not know costs what
    /// the dearest model of its kind costs, so an estimate never undercounts.
    pub fn of(&self, t: &Task) -> f64 {
        self.call(t.kind, &t.params)
    }

    pub fn call(&self, kind: TaskKind, p: &Params) -> f64 {
        let is_video = |k: &str| k.starts_with("veo");
        let dearest = || {
            self.table
                .iter()
                .filter(|(k, _)| is_video(k) == (kind == TaskKind::Video))
                .map(|(_, v)| *v)
                .fold(0.0, f64::max)
        };
        match self.unit {
            Unit::Credits => self.table.get(&p.model).copied().unwrap_or_else(dearest),
            Unit::Usd => {
                let tier = crate::models::price_tier(kind, &p.resolution);
                let rate = self
                    .table
                    .get(&format!("{}@{tier}", p.model))
                    .copied()
                    .unwrap_or_else(dearest);
                match kind {
                    TaskKind::Image => rate,
                    TaskKind::Video => rate * f64::from(p.duration.unwrap_or(8)),
                }
            }
        }
    }

    /// An amount in this table's unit, as people read it.
    pub fn format(&self, amount: f64) -> String {
        self.unit.format(amount)
    }
}

/// What planning needs from the outside.
pub trait PlanView: Send + Sync {
    fn record(&self, key: &str) -> Option<TaskRecord>;
    /// The newest record stored for a task of this label and kind (to
    /// explain a key change; an image and a video node may share a name).
    fn previous(&self, label: &str, kind: TaskKind) -> Option<(String, TaskRecord)>;
    /// blake3 of a local reference file.
    fn file_hash(&self, path: &str) -> Result<String, String>;
    /// blake3 of the content behind a URL: a `file://` or `data:` URL read
    /// locally, an http(s) URL nbbuild published or downloaded before (the
    /// store remembers URL -> content). Err: unknown or unreadable, why.
    fn url_hash(&self, url: &str) -> Result<String, String>;
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
    /// These slots' objects rotted in the store with no good copy to put
    /// back (0-based; see `Store::forget_corrupt`).
    CandidateCorrupted { slots: Vec<u32> },
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
            Reason::CandidateCorrupted { slots } => {
                let c: Vec<String> = slots.iter().map(|s| format!("c{}", s + 1)).collect();
                format!("candidate corrupted in the store ({})", c.join(", "))
            }
            Reason::QaFlagged { flagged } => format!("{flagged} candidate(s) flagged by QA"),
            Reason::Forced => "re-roll (--only)".into(),
            Reason::UpstreamChanges { upstream } => {
                format!("consumes {upstream}, which will be rebuilt")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// The estimate, in `unit` (the route's: credits or US dollars).
    pub credits: f64,
    pub unit: Unit,
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

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub images_only: bool,
    /// `--only`: the selected tasks.
    pub only: Option<BTreeSet<usize>>,
    pub prices: Prices,
}

/// Whether a verdict flags its candidate.
pub fn is_flagged(c: &Candidate) -> bool {
    c.qa.as_ref()
        .is_some_and(|v| v.verdict == nbbuild_cache::Outcome::Flagged)
}

/// Why a stored candidate set does not count as done (every one of its first
/// `n` slots held and none flagged), or None when it does.
pub fn judge(rec: &TaskRecord, n: u32) -> Option<Reason> {
    let flagged = rec
        .candidates
        .iter()
        .filter(|c| c.slot < n && is_flagged(c))
        .count() as u32;
    let missing = (0..n).filter(|s| rec.candidate(*s).is_none()).count() as u32;
    let corrupted: Vec<u32> = (0..n)
        .filter(|s| rec.candidate(*s).is_none() && rec.corrupted.iter().any(|c| c.slot == *s))
        .collect();
    if !corrupted.is_empty() {
        Some(Reason::CandidateCorrupted { slots: corrupted })
    } else if missing > 0 {
        Some(Reason::MissingCandidates { missing, of: n })
    } else if flagged > 0 {
        Some(Reason::QaFlagged { flagged })
    } else {
        None
    }
}

/// The candidate a task hands downstream: among its first `n` slots, the
/// first (in slot order) not flagged by QA, else the first.
pub fn pick(candidates: &[Candidate], n: u32) -> Option<&Candidate> {
    let mut cands = candidates.iter().filter(|c| c.slot < n);
    let first = cands.clone().next();
    cands.find(|c| !is_flagged(c)).or(first)
}

/// The slots a stale task generates: every slot for a re-roll, else the
/// missing and the flagged ones among the first `n`.
pub fn slots_to_generate(reason: &Reason, rec: Option<&TaskRecord>, n: u32) -> Vec<u32> {
    match (reason, rec) {
        (Reason::Forced, _) | (_, None) => (0..n).collect(),
        (_, Some(r)) => (0..n)
            .filter(|s| r.candidate(*s).is_none_or(is_flagged))
            .collect(),
    }
}

/// The key of `task` given the pick each input task hands down; Ok(None)
/// while a pick is not known yet; Err when an input cannot be read.
pub fn preimage_for(
    task: &Task,
    view: &dyn PlanView,
    picks: &BTreeMap<usize, String>,
) -> Result<Option<Preimage>, String> {
    let mut images = Vec::new();
    for inp in &task.inputs {
        let blake3 = match &inp.source {
            InputSource::File(p) => view.file_hash(p)?,
            InputSource::Url(u) => view.url_hash(u)?,
            InputSource::Task(d) => match picks.get(d) {
                Some(h) => h.clone(),
                None => return Ok(None),
            },
        };
        images.push(ImageInput {
            slot: inp.slot,
            id: ImageId::Bytes { blake3 },
        });
    }
    Ok(Some(Preimage::new(task, images)))
}

/// The one place that decides what a task needs: `plan` asks it for every
/// task with the picks known before building, and the executor asks it again
/// with the live picks once a task's inputs exist. Quote and spend come from
/// the same code.
pub struct Decider {
    pub compiled: std::sync::Arc<Compiled>,
    pub view: std::sync::Arc<dyn PlanView>,
    pub opts: PlanOptions,
    /// With `--only`: the selected tasks and every task they consume.
    needed: Option<BTreeSet<usize>>,
}

impl Decider {
    pub fn new(
        compiled: std::sync::Arc<Compiled>,
        view: std::sync::Arc<dyn PlanView>,
        opts: PlanOptions,
    ) -> Decider {
        let needed = opts.only.as_ref().map(|only| {
            let mut needed = BTreeSet::new();
            let mut stack: Vec<usize> = only.iter().copied().collect();
            while let Some(t) = stack.pop() {
                if needed.insert(t) {
                    stack.extend(compiled.tasks[t].deps());
                }
            }
            needed
        });
        Decider {
            compiled,
            view,
            opts,
            needed,
        }
    }

    /// Why this run leaves task `i` alone, if it does.
    pub fn skip(&self, i: usize) -> Option<&'static str> {
        let t = &self.compiled.tasks[i];
        if self.opts.images_only && t.kind == TaskKind::Video {
            return Some("--mode images");
        }
        match (&self.opts.only, &self.needed) {
            (Some(only), _) if only.contains(&i) => None,
            (Some(_), Some(nd)) if nd.contains(&i) => None,
            (Some(_), _) => Some("not selected by --only"),
            _ => None,
        }
    }

    pub fn forced(&self, i: usize) -> bool {
        self.opts.only.as_ref().is_some_and(|o| o.contains(&i))
    }

    /// Task `i`, given the pick of every input task known so far (`picks`)
    /// and the input tasks that cannot be built (`blocked`, with why).
    pub fn decide(
        &self,
        i: usize,
        picks: &BTreeMap<usize, String>,
        blocked: &BTreeMap<usize, String>,
    ) -> PlanItem {
        let c = &self.compiled;
        let t = &c.tasks[i];
        let n = t.params.candidates;
        let label = t.label();
        let price = self.opts.prices.of(t);
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
        let skip = self.skip(i);
        if let Some(d) = t.deps().find(|d| blocked.contains_key(d)) {
            item.status = match skip {
                Some(why) => Status::Skipped { why: why.into() },
                None => Status::Blocked {
                    why: format!("its input {} cannot be built", c.tasks[d].label()),
                },
            };
            return item;
        }
        let pre = match preimage_for(t, self.view.as_ref(), picks) {
            Ok(p) => p,
            Err(why) => {
                item.status = match skip {
                    Some(why) => Status::Skipped { why: why.into() },
                    None => Status::Blocked { why },
                };
                return item;
            }
        };
        let forced = self.forced(i);
        let Some(pre) = pre else {
            // An input will be rebuilt: this key is not known yet. The quote
            // is an upper bound: every candidate.
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
            return item;
        };
        let key = pre.key();
        item.key = Some(key.clone());
        let rec = self.view.record(&key);
        let verdict = match &rec {
            Some(r) => judge(r, n),
            None => Some(match self.view.previous(&label, t.kind) {
                Some((old_key, old)) => match Preimage::from_value(&old.preimage) {
                    Some(old_pre) if old_pre != pre => {
                        let changes = crate::key::diff_values(&old.preimage, &pre.to_value());
                        item.previous = Some((old_key, old_pre));
                        Reason::KeyChanged { changes }
                    }
                    _ => Reason::New,
                },
                None => Reason::New,
            }),
        };
        item.preimage = Some(pre);
        let has_candidates = rec.as_ref().is_some_and(|r| !r.candidates.is_empty());
        let in_needed_only = self.opts.only.is_some() && !forced && skip.is_none();
        item.status = match (skip, forced, &verdict) {
            (Some(why), _, _) => Status::Skipped { why: why.into() },
            (None, true, _) => Status::Stale(Reason::Forced),
            (None, false, None) => Status::Fresh,
            // An input of an --only task is used as stored when it holds anything.
            (None, false, Some(_)) if in_needed_only && has_candidates => Status::Fresh,
            (None, false, Some(r)) => Status::Stale(r.clone()),
        };
        if let Status::Stale(reason) = &item.status {
            item.calls = slots_to_generate(reason, rec.as_ref(), n).len() as u32;
        }
        item.credits = price * item.calls as f64;
        item.record = rec;
        item
    }

    /// The pick a decided task hands downstream, when this run cannot change
    /// it: a task that is not built, or a stale one whose first slot that is
    /// held and clean comes before every slot it will generate (adding c3
    /// and c4 leaves a clean c1 the pick).
    pub fn settled_pick(&self, item: &PlanItem) -> Option<String> {
        let n = self.compiled.tasks[item.task].params.candidates;
        let rec = item.record.as_ref()?;
        match &item.status {
            Status::Blocked { .. }
            | Status::Stale(Reason::Forced | Reason::UpstreamChanges { .. }) => None,
            Status::Stale(reason) => {
                // A flagged slot before the first clean one is re-rolled, and
                // a clean re-roll there becomes the pick: not settled.
                let first_clean =
                    (0..n).find(|&s| rec.candidate(s).is_some_and(|c| !is_flagged(c)))?;
                let generated = slots_to_generate(reason, Some(rec), n);
                if generated.iter().any(|&g| g < first_clean) {
                    return None;
                }
                rec.candidate(first_clean).map(|c| c.object.clone())
            }
            Status::Fresh | Status::Skipped { .. } => {
                pick(&rec.candidates, n).map(|c| c.object.clone())
            }
        }
    }

    /// Every task, in dependency order, with the picks known before building.
    pub fn plan(&self) -> Plan {
        let c = &self.compiled;
        let mut items: Vec<Option<PlanItem>> = vec![None; c.tasks.len()];
        let mut picks: BTreeMap<usize, String> = BTreeMap::new();
        let mut blocked: BTreeMap<usize, String> = BTreeMap::new();
        for &i in &c.order {
            let item = self.decide(i, &picks, &blocked);
            if let Some(p) = self.settled_pick(&item) {
                picks.insert(i, p);
            }
            if let Status::Blocked { why } = &item.status {
                blocked.insert(i, why.clone());
            }
            items[i] = Some(item);
        }
        // Flow order (tab, then node order), as people read the flow.
        let mut items: Vec<PlanItem> = items.into_iter().flatten().collect();
        items.sort_by_key(|it| it.task);
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
            unit: self.opts.prices.unit,
        }
    }
}

/// The plan of `c` (see [`Decider::plan`]).
pub fn plan(
    c: std::sync::Arc<Compiled>,
    view: std::sync::Arc<dyn PlanView>,
    opts: PlanOptions,
) -> Plan {
    Decider::new(c, view, opts).plan()
}

#[cfg(test)]
mod tests {
    //! The decider over an in-memory view of the store: no disk, no
    //! network, no runtime.
    use super::*;
    use nbbuild_cache::{Candidate, Verdict};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct MemView {
        records: Mutex<HashMap<String, TaskRecord>>,
    }

    impl PlanView for MemView {
        fn record(&self, key: &str) -> Option<TaskRecord> {
            self.records.lock().unwrap().get(key).cloned()
        }
        fn previous(&self, label: &str, kind: TaskKind) -> Option<(String, TaskRecord)> {
            let m = self.records.lock().unwrap();
            m.iter()
                .filter(|(_, r)| r.name == label)
                .filter(|(_, r)| {
                    r.preimage.get("kind").and_then(|k| k.as_str()) == Some(kind.as_str())
                })
                .max_by_key(|(_, r)| r.updated)
                .map(|(k, r)| (k.clone(), r.clone()))
        }
        fn file_hash(&self, path: &str) -> Result<String, String> {
            Ok(nbbuild_cache::hash_bytes(path.as_bytes()))
        }
        fn url_hash(&self, url: &str) -> Result<String, String> {
            Err(format!("{url}: unknown"))
        }
    }

    fn compiled(candidates: u32) -> Arc<Compiled> {
        Arc::new(crate::synth::compile_chain(2, 1, candidates))
    }

    fn index(c: &Compiled, kind: TaskKind, name: &str) -> usize {
        c.tasks
            .iter()
            .find(|t| t.kind == kind && t.label() == name)
            .unwrap()
            .index
    }

    /// Store what a build of `plan` would: every stale task with a key gets
    /// its slots, candidate objects named after the key.
    fn build(view: &MemView, c: &Compiled, d: &Decider, slots: u32) {
        let mut picks = BTreeMap::new();
        for &i in &c.order {
            let item = d.decide(i, &picks, &BTreeMap::new());
            let (Some(key), Some(pre)) = (item.key.clone(), item.preimage.clone()) else {
                continue;
            };
            let candidates = (0..slots)
                .map(|s| Candidate {
                    slot: s,
                    object: nbbuild_cache::hash_bytes(format!("{key}/{s}").as_bytes()),
                    ..Candidate::default()
                })
                .collect::<Vec<_>>();
            picks.insert(i, candidates[0].object.clone());
            view.records.lock().unwrap().insert(
                key,
                TaskRecord {
                    name: c.tasks[i].label(),
                    preimage: pre.to_value(),
                    candidates,
                    ..TaskRecord::default()
                },
            );
        }
    }

    fn decider(view: &Arc<MemView>, c: &Arc<Compiled>, opts: PlanOptions) -> Decider {
        Decider::new(c.clone(), view.clone() as Arc<dyn PlanView>, opts)
    }

    #[test]
    fn an_empty_store_quotes_every_slot_and_a_built_one_nothing() {
        let c = compiled(3);
        let view = Arc::new(MemView::default());
        let d = decider(&view, &c, PlanOptions::default());
        let p = d.plan();
        // 3 stills (2 chained, 1 alone) and 2 clips, 3 candidates each.
        assert_eq!((p.image_calls, p.video_calls), (9, 6));
        let chained = &p.items[index(&c, TaskKind::Image, "scene02")];
        assert_eq!(
            chained.status,
            Status::Stale(Reason::UpstreamChanges {
                upstream: "scene01".into()
            })
        );
        assert!(chained.key.is_none(), "its key waits on scene01's pick");
        build(&view, &c, &d, 3);
        let again = decider(&view, &c, PlanOptions::default()).plan();
        assert_eq!((again.image_calls, again.video_calls), (0, 0));
        assert!(again.items.iter().all(|i| i.status == Status::Fresh));
    }

    #[test]
    fn more_candidates_quote_only_the_missing_slots_and_fewer_are_free() {
        let c = compiled(2);
        let view = Arc::new(MemView::default());
        build(&view, &c, &decider(&view, &c, PlanOptions::default()), 2);
        let four = compiled(4);
        let p = decider(&view, &four, PlanOptions::default()).plan();
        assert_eq!((p.image_calls, p.video_calls), (6, 4));
        let head = &p.items[index(&four, TaskKind::Image, "scene01")];
        assert_eq!(
            head.status,
            Status::Stale(Reason::MissingCandidates { missing: 2, of: 4 })
        );
        // c1 is still the pick, so the consumer's key is known and it only
        // misses slots too.
        let next = &p.items[index(&four, TaskKind::Image, "scene02")];
        assert!(next.key.is_some());
        let one = compiled(1);
        let p = decider(&view, &one, PlanOptions::default()).plan();
        assert_eq!((p.image_calls, p.video_calls), (0, 0));
    }

    #[test]
    fn a_flagged_first_slot_leaves_the_consumers_key_unknown() {
        let c = compiled(2);
        let view = Arc::new(MemView::default());
        let d = decider(&view, &c, PlanOptions::default());
        build(&view, &c, &d, 2);
        let head = d.decide(
            index(&c, TaskKind::Image, "scene01"),
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        let key = head.key.unwrap();
        view.records
            .lock()
            .unwrap()
            .get_mut(&key)
            .unwrap()
            .candidates[0]
            .qa = Some(Verdict {
            verdict: nbbuild_cache::Outcome::Flagged,
            ..Verdict::default()
        });
        let p = decider(&view, &c, PlanOptions::default()).plan();
        let head = &p.items[index(&c, TaskKind::Image, "scene01")];
        assert_eq!(head.status, Status::Stale(Reason::QaFlagged { flagged: 1 }));
        assert_eq!(head.calls, 1);
        // A clean re-roll of c1 becomes the pick: what consumes it is quoted
        // whole, not as fresh.
        let next = &p.items[index(&c, TaskKind::Image, "scene02")];
        assert!(matches!(
            next.status,
            Status::Stale(Reason::UpstreamChanges { .. })
        ));
        assert_eq!(next.calls, 2);
    }

    #[test]
    fn only_rerolls_the_selection_and_images_mode_leaves_clips() {
        let c = compiled(2);
        let view = Arc::new(MemView::default());
        build(&view, &c, &decider(&view, &c, PlanOptions::default()), 2);
        let lone = index(&c, TaskKind::Image, "scene03");
        let p = decider(
            &view,
            &c,
            PlanOptions {
                only: Some(BTreeSet::from([lone])),
                ..PlanOptions::default()
            },
        )
        .plan();
        assert_eq!(p.items[lone].status, Status::Stale(Reason::Forced));
        assert_eq!((p.image_calls, p.video_calls), (2, 0));
        assert!(p
            .items
            .iter()
            .filter(|i| i.task != lone)
            .all(|i| matches!(i.status, Status::Skipped { .. })));
        let empty = Arc::new(MemView::default());
        let p = decider(
            &empty,
            &c,
            PlanOptions {
                images_only: true,
                ..PlanOptions::default()
            },
        )
        .plan();
        assert_eq!((p.image_calls, p.video_calls), (6, 0));
    }
}
