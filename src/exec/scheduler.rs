//! The scheduler: one state per task, moved forward only by completions.
//!
//! It is pure: the executor feeds it what its tasks report ([`Completion`])
//! and carries out what it answers ([`Action`]). It knows the graph and
//! nothing else: deciding a task (fresh? which slots?) is the plan's
//! (`plan.rs`), running one candidate is the runner's (`runner.rs`), and
//! the order candidates take G-Labs slots in is the limiter's
//! (`limiter.rs`, by critical path).
//!
//! ```text
//!  Waiting --inputs' picks known--> Ready --stale--> Running --> Done(final)
//!     |                               |                            ^
//!     |                               +--fresh / blocked / left----+
//!     +--an input ended with nothing to consume---(skipped / not run)
//! ```

use super::state::{Failure, TaskOutcome, TaskState};
use crate::glabs::FailureKind;
use std::collections::BTreeMap;

/// Where one task stands in this run.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Some input has neither a pick nor a final outcome yet. Nothing is
    /// known of this task's key.
    Waiting,
    /// Every input's pick is known and the task is started: it computes its
    /// key and asks the decider whether anything is needed. No call yet.
    Ready,
    /// Decided stale: its missing candidates are queued for a slot or at
    /// G-Labs. Its pick may already be known (consumers may be running).
    Running,
    /// Final: fresh, built, failed, skipped or not run. The outcome is kept
    /// in [`Scheduler::outcome`].
    Done(TaskState),
}

/// What a started task reports.
#[derive(Debug, Clone)]
pub enum Completion {
    /// Decided stale: candidates are being generated.
    Generating(usize),
    /// The object its consumers take is known: the first candidate, in slot
    /// order, that is stored and passed QA. Sent before its other
    /// candidates are done.
    Pick(usize, String),
    /// It ended.
    Done(usize, TaskOutcome),
}

/// What the executor must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start task `task` with its inputs' picks (input task -> object).
    Start {
        task: usize,
        picks: BTreeMap<usize, String>,
    },
    /// Task `task` reached its final state (report it).
    Finished { task: usize },
}

pub struct Scheduler {
    deps: Vec<Vec<usize>>,
    consumers: Vec<Vec<usize>>,
    /// Tasks this run was not going to build anyway (`--only`, `--mode
    /// images`): when an input fails they are "not run", not "skipped".
    left_out: Vec<bool>,
    labels: Vec<String>,
    states: Vec<State>,
    picks: Vec<Option<String>>,
    outcomes: Vec<Option<TaskOutcome>>,
    done: usize,
}

impl Scheduler {
    /// `deps[i]`: the input tasks of task `i` (each at most once).
    pub fn new(deps: Vec<Vec<usize>>, left_out: Vec<bool>, labels: Vec<String>) -> Scheduler {
        let n = deps.len();
        let mut consumers = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                consumers[d].push(i);
            }
        }
        Scheduler {
            deps,
            consumers,
            left_out,
            labels,
            states: vec![State::Waiting; n],
            picks: vec![None; n],
            outcomes: vec![None; n],
            done: 0,
        }
    }

    pub fn state(&self, i: usize) -> &State {
        &self.states[i]
    }

    pub fn outcome(&self, i: usize) -> Option<&TaskOutcome> {
        self.outcomes[i].as_ref()
    }

    /// Every task reached a final state.
    pub fn finished(&self) -> bool {
        self.done == self.states.len()
    }

    /// The final outcomes by task (a task never started is "not run").
    pub fn into_outcomes(self) -> Vec<TaskOutcome> {
        self.outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| TaskOutcome::new(TaskState::NotRun)))
            .collect()
    }

    /// The tasks with no inputs start at once.
    pub fn begin(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        for i in 0..self.states.len() {
            self.try_start(i, &mut actions);
        }
        actions
    }

    /// Take one completion; what to do next.
    pub fn on(&mut self, c: Completion) -> Vec<Action> {
        let mut actions = Vec::new();
        match c {
            Completion::Generating(i) => {
                if self.states[i] == State::Ready {
                    self.states[i] = State::Running;
                }
            }
            Completion::Pick(i, object) => self.picked(i, object, &mut actions),
            Completion::Done(i, outcome) => self.settle(i, outcome, &mut actions),
        }
        actions
    }

    fn picked(&mut self, i: usize, object: String, actions: &mut Vec<Action>) {
        if self.picks[i].is_some() {
            return;
        }
        self.picks[i] = Some(object);
        for c in self.consumers[i].clone() {
            self.try_start(c, actions);
        }
    }

    fn try_start(&mut self, i: usize, actions: &mut Vec<Action>) {
        if self.states[i] != State::Waiting {
            return;
        }
        let mut picks = BTreeMap::new();
        for &d in &self.deps[i] {
            match &self.picks[d] {
                Some(p) => {
                    picks.insert(d, p.clone());
                }
                None => return,
            }
        }
        self.states[i] = State::Ready;
        actions.push(Action::Start { task: i, picks });
    }

    fn settle(&mut self, i: usize, outcome: TaskOutcome, actions: &mut Vec<Action>) {
        if matches!(self.states[i], State::Done(_)) {
            return;
        }
        let pick = outcome
            .usable()
            .then(|| outcome.pick().map(|c| c.object.clone()))
            .flatten();
        let failed = matches!(outcome.state, TaskState::Failed | TaskState::Skipped);
        self.states[i] = State::Done(outcome.state.clone());
        self.outcomes[i] = Some(outcome);
        self.done += 1;
        actions.push(Action::Finished { task: i });
        if let Some(p) = pick {
            self.picked(i, p, actions);
            return;
        }
        if self.picks[i].is_some() {
            return;
        }
        // Nothing to consume: the consumers still waiting on it end too.
        for c in self.consumers[i].clone() {
            if self.states[c] != State::Waiting {
                continue;
            }
            let mut o = TaskOutcome::new(if failed && !self.left_out[c] {
                TaskState::Skipped
            } else {
                // A task this run was not going to build is not "skipped
                // because of a failure": it is simply not run.
                TaskState::NotRun
            });
            o.note = "an input task has no result".into();
            if o.state == TaskState::Skipped {
                o.failures.push(Failure {
                    candidate: None,
                    kind: FailureKind::SkippedUpstreamFailed,
                    attempts: 0,
                    message: format!("its input {} failed", self.labels[i]),
                });
            }
            self.settle(c, o, actions);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbbuild_cache::Candidate;

    fn cand(object: &str) -> Candidate {
        serde_json::from_value(serde_json::json!({
            "slot": 0, "object": object, "size": 1, "remote_task": "t", "created": 0
        }))
        .unwrap()
    }

    fn built(object: &str) -> TaskOutcome {
        let mut o = TaskOutcome::new(TaskState::Built);
        o.candidates = vec![cand(object)];
        o
    }

    fn failed() -> TaskOutcome {
        TaskOutcome::new(TaskState::Failed)
    }

    /// a -> b -> c, and d alone.
    fn chain() -> Scheduler {
        Scheduler::new(
            vec![vec![], vec![0], vec![1], vec![]],
            vec![false; 4],
            ["a", "b", "c", "d"].map(String::from).to_vec(),
        )
    }

    fn started(actions: &[Action]) -> Vec<usize> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { task, .. } => Some(*task),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tasks_without_inputs_start_first_and_consumers_wait() {
        let mut s = chain();
        assert_eq!(started(&s.begin()), vec![0, 3]);
        assert_eq!(s.state(1), &State::Waiting);
        assert_eq!(s.state(0), &State::Ready);
        s.on(Completion::Generating(0));
        assert_eq!(s.state(0), &State::Running);
    }

    #[test]
    fn a_consumer_starts_on_its_inputs_pick_before_the_input_is_done() {
        let mut s = chain();
        s.begin();
        let a = s.on(Completion::Pick(0, "obj-a".into()));
        assert_eq!(
            a,
            vec![Action::Start {
                task: 1,
                picks: BTreeMap::from([(0, "obj-a".to_string())])
            }]
        );
        assert_eq!(s.state(0), &State::Ready, "a is not done yet");
        // Its final outcome starts nothing twice.
        let a = s.on(Completion::Done(0, built("obj-a")));
        assert_eq!(a, vec![Action::Finished { task: 0 }]);
        assert_eq!(s.state(0), &State::Done(TaskState::Built));
    }

    #[test]
    fn a_final_outcome_hands_its_pick_down_when_none_was_sent() {
        let mut s = chain();
        s.begin();
        let a = s.on(Completion::Done(0, built("obj-a")));
        assert_eq!(started(&a), vec![1]);
    }

    #[test]
    fn a_failure_skips_every_task_below_it_and_nothing_else() {
        let mut s = chain();
        s.begin();
        let a = s.on(Completion::Done(0, failed()));
        assert_eq!(
            a,
            vec![
                Action::Finished { task: 0 },
                Action::Finished { task: 1 },
                Action::Finished { task: 2 }
            ]
        );
        assert_eq!(s.state(2), &State::Done(TaskState::Skipped));
        let c = s.outcome(2).unwrap();
        assert_eq!(c.failures[0].kind, FailureKind::SkippedUpstreamFailed);
        assert_eq!(c.failures[0].message, "its input b failed");
        assert!(!s.finished(), "d still runs");
        s.on(Completion::Done(3, built("obj-d")));
        assert!(s.finished());
    }

    #[test]
    fn a_task_left_out_of_the_run_is_not_run_when_its_input_fails() {
        let mut s = Scheduler::new(
            vec![vec![], vec![0]],
            vec![false, true],
            vec!["a".into(), "b".into()],
        );
        s.begin();
        s.on(Completion::Done(0, failed()));
        assert_eq!(s.state(1), &State::Done(TaskState::NotRun));
        assert!(s.outcome(1).unwrap().failures.is_empty());
    }

    #[test]
    fn a_consumer_of_two_inputs_waits_for_both_picks() {
        let mut s = Scheduler::new(
            vec![vec![], vec![], vec![0, 1]],
            vec![false; 3],
            ["a", "b", "c"].map(String::from).to_vec(),
        );
        s.begin();
        assert!(started(&s.on(Completion::Pick(1, "b".into()))).is_empty());
        assert_eq!(started(&s.on(Completion::Pick(0, "a".into()))), vec![2]);
        // A consumer already started is not ended by an input that fails after handing its pick down.
        s.on(Completion::Done(0, failed()));
        assert_eq!(s.state(2), &State::Ready);
    }

    #[test]
    fn not_run_with_candidates_hands_them_down() {
        let mut s = chain();
        s.begin();
        let mut o = built("kept");
        o.state = TaskState::NotRun;
        assert_eq!(started(&s.on(Completion::Done(0, o))), vec![1]);
    }
}
