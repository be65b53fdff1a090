//! Typed outcomes of a failed plugin call. Wasmtime's trap errors carry long
//! backtraces; they are reduced here to a short reason fit for a client
//! error or a log line.

use super::bundle::PluginId;
use super::state::PluginState;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Trap;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The call ran past its deadline and was interrupted.
    #[error("exceeded its {0:?} deadline")]
    Deadline(Duration),
    /// The plugin tried to grow its memory past its cap.
    #[error("exceeded its memory cap of {0} bytes")]
    OutOfMemory(usize),
    /// The plugin trapped: a panic, a stack overflow, an invalid operation.
    #[error("trapped: {0}")]
    Trap(String),
    /// The plugin returned something the contract forbids.
    #[error("returned malformed output: {0}")]
    BadOutput(String),
    /// The plugin declined on purpose, with its own error code. Not a fault:
    /// the instance stays healthy.
    #[error("refused: {code}: {message}")]
    Refused { code: String, message: String },
    /// No instance could be created (e.g. every pooled slot is in use).
    #[error("could not be instantiated: {0}")]
    Unavailable(String),
}

impl Failure {
    /// Faults leave an instance in an unknown state: it is dropped.
    pub fn is_fault(&self) -> bool {
        !matches!(self, Failure::Refused { .. } | Failure::Unavailable(_))
    }

    /// A stable machine-readable name, for error codes and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Deadline(_) => "plugin_deadline",
            Failure::OutOfMemory(_) => "plugin_out_of_memory",
            Failure::Trap(_) => "plugin_trap",
            Failure::BadOutput(_) => "plugin_bad_output",
            Failure::Refused { .. } => "plugin_refused",
            Failure::Unavailable(_) => "plugin_unavailable",
        }
    }
}

/// A failed call, naming the plugin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin} {failure}")]
pub struct CallError {
    pub plugin: Arc<PluginId>,
    pub failure: Failure,
}

/// The deadline was reached; raised from the epoch callback.
#[derive(Debug)]
pub(super) struct DeadlineReached;

impl std::fmt::Display for DeadlineReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline reached")
    }
}

impl std::error::Error for DeadlineReached {}

/// Classifies an error raised by a call into `state`'s instance.
pub(super) fn classify(
    error: &wasmtime::Error,
    state: &PluginState,
    deadline: Duration,
) -> Failure {
    if state.memory.exceeded {
        return Failure::OutOfMemory(state.memory.limit());
    }
    if error.downcast_ref::<DeadlineReached>().is_some() {
        return Failure::Deadline(deadline);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => Failure::Trap("panicked or aborted".into()),
        Some(Trap::StackOverflow) => Failure::Trap("stack overflow".into()),
        Some(trap) => Failure::Trap(trap.to_string().trim_start_matches("wasm trap: ").into()),
        None => Failure::Trap(first_line(&error.to_string())),
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}
