//! Pure detection engine: decoded events in, state and deduplicated findings out.
pub mod finding;

pub use finding::{
    Durations, Finding, FindingKind, FindingUpdate, Severity, TaskInfo, TaskRole, Trigger,
};
