//! A task's life: accepted (or refused at capacity), queued for a slot,
//! run for its latency, then finished: completed with its files, failed, or
//! lost. Also its end by `stop`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::clock::iso_now;
use super::files::Recipe;
use super::state::Shared;
use super::tasks::{Kind, Outcome, Status, Submit, Task, TaskState};
use crate::{media, CreatedTask};

/// What became of a submit.
pub(super) enum Admission {
    /// Created and queued under this id.
    Created(String),
    /// Created and queued, but its answer is to be lost on the way back
    /// (`lose_answer_rate`).
    AnswerLost,
    /// Nothing created: this many tasks (`capacity`) were already held.
    AtCapacity(usize),
}

impl Shared {
    /// An 8-hex-digit id: a bijection of a counter that is never reset, so
    /// ids are never reused (not even after a restart).
    fn task_id(&self, n: u32) -> String {
        let mut x = n.wrapping_add(self.config.seed as u32);
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        format!("{x:08x}")
    }

    /// Accept a validated submit: create and queue it, unless `capacity`
    /// tasks are held.
    pub(super) fn accept(self: &Arc<Self>, req: Submit) -> Admission {
        let mut guard = self.lock();
        let st = &mut *guard;
        // Checked under the same lock as the insert, so concurrent submits
        // can never push the held tasks past the capacity.
        if let Some(cap) = self.config.capacity {
            if st.pending + st.running >= cap {
                st.stats.rate_limited += 1;
                st.stats.capacity_refused += 1;
                return Admission::AtCapacity(cap);
            }
        }
        st.accepted += 1;
        let accepted = st.accepted;
        match req.kind {
            Kind::Image => st.stats.image_submits += 1,
            Kind::Video => st.stats.video_submits += 1,
        }
        let variant = {
            let count = st
                .variants
                .entry((req.kind, req.prompt.clone()))
                .or_insert(0);
            *count += 1;
            *count
        };
        let id = self.task_id(st.next_id);
        st.next_id = st.next_id.wrapping_add(1);
        let outcome = self.outcome(accepted, &req.prompt);
        let flaw = req.kind == Kind::Image && self.is_flawed(&req.prompt, variant);
        st.log_index.insert(id.clone(), st.log.len());
        st.log.push(CreatedTask {
            task_id: id.clone(),
            kind: req.kind.name().to_string(),
            prompt: req.prompt.clone(),
            variant,
            flaw,
            forgotten: false,
            answer_lost: false,
        });
        let task = Task {
            id: id.clone(),
            kind: req.kind,
            prompt: req.prompt,
            aspect: req.aspect,
            outputs: req.outputs,
            seconds: req.seconds,
            variant,
            flaw,
            outcome,
            status: Status::Pending,
            created_at: iso_now(),
            completed_at: None,
            results: Vec::new(),
            error: None,
        };
        st.tasks.insert(id.clone(), task);
        st.recent.push_back(id.clone());
        st.queue.push_back(id.clone());
        st.pending += 1;
        st.note_in_flight();
        self.pump(st);
        drop(guard);

        self.die_if_due(accepted);
        // The task exists and runs; only its answer is lost on the way back.
        if self.roll_lose_answer() {
            let mut st = self.lock();
            st.stats.answers_lost += 1;
            if let Some(&i) = st.log_index.get(&id) {
                st.log[i].answer_lost = true;
            }
            return Admission::AnswerLost;
        }
        Admission::Created(id)
    }

    /// Start pending tasks while slots are free.
    fn pump(self: &Arc<Self>, st: &mut TaskState) {
        let slots = self.config.slots.max(1);
        while st.running < slots {
            let Some(id) = st.queue.pop_front() else {
                break;
            };
            let Some(task) = st.tasks.get_mut(&id) else {
                continue;
            };
            if task.status != Status::Pending {
                continue;
            }
            task.status = Status::Running;
            st.pending -= 1;
            st.running += 1;
            let base = match task.kind {
                Kind::Image => self.config.image_latency_ms,
                Kind::Video => self.config.video_latency_ms,
            };
            // The safety filter answers sooner than a generation.
            let latency = match task.outcome {
                Outcome::Policy => base / 4,
                _ => base,
            };
            let me = Arc::clone(self);
            let epoch = st.epoch;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(latency)).await;
                me.finish(&id, epoch);
            });
        }
        st.note_in_flight();
    }

    /// A running task's latency has passed.
    fn finish(self: &Arc<Self>, id: &str, epoch: u64) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.epoch != epoch {
            return;
        }
        let Some(task) = st.tasks.get_mut(id) else {
            return;
        };
        if task.status != Status::Running {
            return;
        }
        st.running -= 1;
        match task.outcome {
            Outcome::Complete => {
                for suffix in &task.outputs {
                    st.next_file += 1;
                    let n = st.next_file;
                    let (name, recipe) = match task.kind {
                        Kind::Image => {
                            let (width, height) = media::still_size(&task.aspect);
                            (
                                format!("image_{n:03}{suffix}.png"),
                                Recipe::Still {
                                    prompt: task.prompt.clone(),
                                    variant: task.variant,
                                    width,
                                    height,
                                    flaw: task.flaw,
                                },
                            )
                        }
                        Kind::Video => {
                            let (width, height) = media::clip_size(&task.aspect);
                            (
                                format!("video_{n:03}{suffix}.mp4"),
                                Recipe::Clip {
                                    prompt: task.prompt.clone(),
                                    variant: task.variant,
                                    seconds: task.seconds,
                                    width,
                                    height,
                                },
                            )
                        }
                    };
                    st.files.insert(name.clone(), (recipe, None));
                    task.results.push(name);
                }
                task.status = Status::Completed;
                task.completed_at = Some(iso_now());
            }
            Outcome::Policy => {
                task.status = Status::Failed;
                task.error = Some((
                    400,
                    "Prompt blocked by safety filter".into(),
                    "PUBLIC_ERROR_UNSAFE_GENERATION: the prompt was blocked by the safety filter"
                        .into(),
                ));
            }
            Outcome::Timeout => {
                task.status = Status::Failed;
                task.error = Some((
                    0,
                    "Timeout: no result generated".into(),
                    "No media was produced within the time limit".into(),
                ));
            }
            Outcome::Lose => {
                st.tasks.remove(id);
                st.stats.lost += 1;
                st.mark_forgotten(id);
            }
        }
        self.pump(st);
    }

    /// Stop a pending or running task: it fails with error_code 499 and its
    /// slot goes to the next in the queue. Returns the status it had (`None`
    /// when there is no such task).
    pub(super) fn stop_task(self: &Arc<Self>, id: &str) -> Option<Status> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let task = st.tasks.get_mut(id)?;
        let was = task.status;
        if matches!(was, Status::Pending | Status::Running) {
            task.status = Status::Failed;
            task.error = Some((
                499,
                "Stopped by user".into(),
                "The task was cancelled through the API".into(),
            ));
            if was == Status::Pending {
                st.pending -= 1;
            } else {
                st.running -= 1;
                self.pump(st);
            }
        }
        Some(was)
    }
}

#[cfg(test)]
mod tests {
    use crate::SimConfig;

    use super::*;

    #[test]
    fn ids_are_unique_hex() {
        let s = Shared::new(SimConfig::default(), "127.0.0.1:1".parse().unwrap());
        let ids: std::collections::HashSet<String> = (0..10_000).map(|n| s.task_id(n)).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|i| i.len() == 8 && i.chars().all(|c| c.is_ascii_hexdigit())));
    }
}
