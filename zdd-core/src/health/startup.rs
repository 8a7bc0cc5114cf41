use std::{borrow::Cow, fmt, sync::Arc};

use tokio::sync::watch;

use super::{CheckReport, Status};

type Tasks = Arc<watch::Sender<Vec<(Cow<'static, str>, State)>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Done,
    Failed,
}

/// The registered startup tasks and their states.
#[derive(Debug)]
pub(crate) struct Startup {
    tasks: Tasks,
}

impl Default for Startup {
    fn default() -> Self {
        Self {
            tasks: Arc::new(watch::Sender::new(Vec::new())),
        }
    }
}

impl Startup {
    pub(crate) fn register(&self, name: Cow<'static, str>) -> StartupTask {
        let mut index = 0;
        self.tasks.send_modify(|tasks| {
            index = tasks.len();
            tasks.push((name, State::Pending));
        });
        StartupTask {
            tasks: Arc::clone(&self.tasks),
            index,
            completed: false,
        }
    }

    /// Completes once no task is pending or failed.
    pub(crate) async fn all_done(&self) {
        let mut rx = self.tasks.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we are borrowed.
        let _ = rx
            .wait_for(|tasks| tasks.iter().all(|(_, state)| *state == State::Done))
            .await;
    }

    pub(crate) fn reports(&self) -> Vec<CheckReport> {
        self.tasks
            .borrow()
            .iter()
            .map(|(name, state)| {
                let (status, output) = match state {
                    State::Done => (Status::Pass, None),
                    State::Pending => (
                        Status::Fail,
                        Some(("pending", "not finished yet".to_owned())),
                    ),
                    State::Failed => (
                        Status::Fail,
                        Some(("failed", "dropped without completing".to_owned())),
                    ),
                };
                CheckReport::new(name, status, std::time::Duration::ZERO, output)
            })
            .collect()
    }
}

/// A startup task registered with
/// [`LifecycleHandle::startup_task`](crate::LifecycleHandle::startup_task).
///
/// The service does not turn ready until every startup task is
/// [completed](StartupTask::complete). Dropping it without completing marks it failed (a
/// warm-up that panicked must not make the service ready).
pub struct StartupTask {
    tasks: Tasks,
    index: usize,
    completed: bool,
}

impl StartupTask {
    /// Marks the task done.
    pub fn complete(mut self) {
        self.completed = true;
    }
}

impl Drop for StartupTask {
    /// Records the task as done if [`complete`](StartupTask::complete) was called, else as
    /// failed.
    fn drop(&mut self) {
        let state = if self.completed {
            State::Done
        } else {
            State::Failed
        };
        self.tasks.send_modify(|tasks| {
            if let Some((name, slot)) = tasks.get_mut(self.index) {
                *slot = state;
                if state == State::Failed {
                    error!(
                        task = &**name,
                        "startup task dropped without completing; the service will not turn ready"
                    );
                } else {
                    info!(task = &**name, "startup task completed");
                }
            }
        });
    }
}

impl fmt::Debug for StartupTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .tasks
            .borrow()
            .get(self.index)
            .map(|(name, _)| name.clone());
        f.debug_struct("StartupTask")
            .field("name", &name)
            .finish_non_exhaustive()
    }
}
