//! What a re-roll from the page costs, from the plan (the single decider):
//!
//! - the spend: the plan of `nbbuild --only <task>`, exactly what the
//!   re-roll will submit (the task's candidates, plus any input it lacks);
//! - what it invalidates: the tasks a plain build would rebuild afterwards
//!   because of it (the plain plan with the task's current record out of
//!   sight, less what is stale already), with their cost.
//!
//! The quote's id is a hash of the spend: the selected tasks, their keys,
//! their calls and credits. A re-roll is started only with the id of the
//! plan it will run, checked again inside the build before anything is
//! sent, so what is spent is what was shown.

use crate::commands::plan::StoreView;
use crate::compile::{Compiled, Task, TaskKind};
use crate::error::{Error, Result};
use crate::plan::{Plan, PlanOptions, PlanView, Status};
use crate::review::flow_read::task_id;
use crate::settings::Settings;
use nbbuild_cache::{Store, TaskRecord};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The `--only` selector that selects exactly task `t` (a row by its label,
/// any other task by `TAB/ID`).
pub fn selector_for(c: &Compiled, t: &Task) -> Result<String> {
    let candidates = [
        t.row.map(|_| t.label()),
        Some(format!("{}/{}", t.tab + 1, t.node_id)),
        Some(format!("{}/{}", t.tab_name, t.node_id)),
    ];
    for sel in candidates.into_iter().flatten() {
        if crate::selector::matches(c, &sel) == vec![t.index] {
            return Ok(sel);
        }
    }
    Err(
        Error::usage(format!("no --only selector picks {} alone", t.label()))
            .hint("run `nbbuild --only` by hand for this task"),
    )
}

/// The id of a spend: what the `--only` plan will submit, task by task.
pub fn spend_id(c: &Compiled, p: &Plan, task: &str) -> String {
    let items: Vec<Value> = p
        .stale()
        .map(|i| {
            json!([
                task_id(&c.tasks[i.task]),
                i.key,
                i.calls,
                (i.credits * 1000.0).round() as i64
            ])
        })
        .collect();
    let canon = json!({
        "task": task,
        "items": items,
        "calls": [p.image_calls, p.video_calls],
        "credits": (p.credits * 1000.0).round() as i64,
    });
    let h = blake3::hash(canon.to_string().as_bytes()).to_hex();
    format!("q-{}", &h[..24])
}

/// The store as planning sees it, with one record out of sight (as if the
/// task had been re-rolled to candidates nobody knows yet).
struct Without {
    inner: Arc<StoreView>,
    key: Option<String>,
}

impl PlanView for Without {
    fn record(&self, key: &str) -> Option<TaskRecord> {
        if self.key.as_deref() == Some(key) {
            return None;
        }
        self.inner.record(key)
    }
    fn previous(&self, label: &str, kind: TaskKind) -> Option<(String, TaskRecord)> {
        self.inner.previous(label, kind)
    }
    fn file_hash(&self, path: &str) -> std::result::Result<String, String> {
        self.inner.file_hash(path)
    }
    fn url_hash(&self, url: &str) -> std::result::Result<String, String> {
        self.inner.url_hash(url)
    }
}

fn plan_with(
    s: &Settings,
    c: &Arc<Compiled>,
    view: Arc<dyn PlanView>,
    only: Option<&BTreeSet<usize>>,
) -> Plan {
    crate::plan::Decider::new(
        c.clone(),
        view,
        PlanOptions {
            images_only: s.images_only,
            only: only.cloned(),
            prices: s.prices.clone(),
        },
    )
    .plan()
}

pub struct Quote {
    pub id: String,
    pub selector: String,
    pub json: Value,
}

/// The quote for re-rolling task `t` of `c` (the flow as it will be built,
/// with the page's prompt edit applied when there is one). `stale_now`: the
/// ids of the tasks a plain build of the flow on disk would build already.
pub fn quote(
    s: &Settings,
    c: &Arc<Compiled>,
    t: &Task,
    store: &Arc<Store>,
    stale_now: &BTreeSet<String>,
) -> Result<Quote> {
    let selector = selector_for(c, t)?;
    let view = Arc::new(crate::commands::plan::store_view(s, store));
    let only: BTreeSet<usize> = [t.index].into_iter().collect();
    let spend = plan_with(s, c, view.clone(), Some(&only));
    let id = task_id(t);
    let qid = spend_id(c, &spend, &id);
    let key = spend
        .items
        .iter()
        .find(|i| i.task == t.index)
        .and_then(|i| i.key.clone());
    let after = plan_with(s, c, Arc::new(Without { inner: view, key }), None);
    let row = |p: &Plan, i: &crate::plan::PlanItem| {
        let reason = match &i.status {
            Status::Stale(r) => r.describe(),
            _ => String::new(),
        };
        let _ = p;
        json!({"id": task_id(&c.tasks[i.task]), "name": i.name, "kind": i.kind,
               "reason": reason, "calls": i.calls, "credits": i.credits})
    };
    let spend_rows: Vec<Value> = spend.stale().map(|i| row(&spend, i)).collect();
    let invalidated: Vec<&crate::plan::PlanItem> = after
        .stale()
        .filter(|i| i.task != t.index && !stale_now.contains(&task_id(&c.tasks[i.task])))
        .collect();
    let inv_credits: f64 = invalidated.iter().fold(0.0, |a, i| a + i.credits);
    let inv_calls: u64 = invalidated.iter().map(|i| i.calls as u64).sum();
    let inv_rows: Vec<Value> = invalidated.iter().map(|i| row(&after, i)).collect();
    Ok(Quote {
        id: qid.clone(),
        selector: selector.clone(),
        json: json!({
            "id": qid,
            "task": id,
            "selector": selector,
            "spend": {
                "tasks": spend_rows,
                "calls": {"image": spend.image_calls, "video": spend.video_calls},
                "credits": spend.credits,
            },
            "invalidates": {
                "tasks": inv_rows,
                "calls": inv_calls,
                "credits": inv_credits,
            },
            "total_credits": spend.credits + inv_credits,
            // What the amounts are in: G-Labs credits or US dollars.
            "unit": spend.unit.as_str(),
        }),
    })
}
