//! The response workflow (Decision 05/2017, Circular 20/2017): states,
//! the transitions between them and why an incident was closed. Pure.

use std::fmt;

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Detected,
    Notified,
    InitialReport,
    InProgress,
    Closed,
}

impl State {
    pub const ALL: [State; 5] =
        [State::Detected, State::Notified, State::InitialReport, State::InProgress, State::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Detected => "detected",
            State::Notified => "notified",
            State::InitialReport => "initial_report",
            State::InProgress => "in_progress",
            State::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The state's name in Vietnamese, for reports.
    pub fn name_vi(self) -> &'static str {
        match self {
            State::Detected => "Đã phát hiện",
            State::Notified => "Đã thông báo",
            State::InitialReport => "Đã báo cáo ban đầu",
            State::InProgress => "Đang xử lý",
            State::Closed => "Đã kết thúc",
        }
    }

    /// The state reached by the ordinary workflow from this one.
    pub fn next(self) -> Option<State> {
        match self {
            State::Detected => Some(State::Notified),
            State::Notified => Some(State::InitialReport),
            State::InitialReport => Some(State::InProgress),
            State::InProgress => Some(State::Closed),
            State::Closed => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an incident was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Not an incident: dismissed, no deadline runs.
    FalsePositive,
    /// Another incident covers it (merges close with this): dismissed.
    Duplicate,
    /// Handled: the completion report follows.
    Resolved,
}

impl CloseReason {
    pub const NAMES: &'static str = "false_positive, duplicate, resolved";

    pub fn parse(s: &str) -> Option<CloseReason> {
        match s {
            "false_positive" => Some(CloseReason::FalsePositive),
            "duplicate" => Some(CloseReason::Duplicate),
            "resolved" => Some(CloseReason::Resolved),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::FalsePositive => "false_positive",
            CloseReason::Duplicate => "duplicate",
            CloseReason::Resolved => "resolved",
        }
    }

    /// A dismissal stops every deadline.
    pub fn dismisses(self) -> bool {
        !matches!(self, CloseReason::Resolved)
    }
}

/// A refused transition, naming what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("unknown state `{0}` (one of detected, notified, initial_report, in_progress, closed)")]
    UnknownState(String),
    #[error("unknown reason `{0}` (one of {names})", names = CloseReason::NAMES)]
    UnknownReason(String),
    #[error("an incident in state `{0}` cannot change state")]
    Final(State),
    #[error("illegal transition {from} → {to}; allowed from `{from}`: {allowed}")]
    Illegal { from: State, to: State, allowed: String },
    #[error(
        "closing an incident in state `{0}` needs --reason false_positive or duplicate (resolved needs in_progress)"
    )]
    ReasonRequired(State),
    #[error("a reason is only given when closing (`{0}` takes none)")]
    ReasonNotAllowed(State),
}

/// Checks a transition and returns the close reason it carries (for a
/// transition to `closed`). `detected → closed` and any other early close
/// is a dismissal and needs `false_positive` or `duplicate`; the ordinary
/// close from `in_progress` is `resolved` unless said otherwise.
pub fn check(from: State, to: &str, reason: &str) -> Result<(State, Option<CloseReason>), WorkflowError> {
    let to_state = State::parse(to).ok_or_else(|| WorkflowError::UnknownState(to.to_string()))?;
    let reason = match reason.trim() {
        "" => None,
        r => Some(CloseReason::parse(r).ok_or_else(|| WorkflowError::UnknownReason(r.to_string()))?),
    };
    if from == State::Closed {
        return Err(WorkflowError::Final(from));
    }
    if to_state != State::Closed {
        if reason.is_some() {
            return Err(WorkflowError::ReasonNotAllowed(to_state));
        }
        if from.next() == Some(to_state) {
            return Ok((to_state, None));
        }
        return Err(WorkflowError::Illegal { from, to: to_state, allowed: allowed(from) });
    }
    match (from, reason) {
        (State::InProgress, None) => Ok((State::Closed, Some(CloseReason::Resolved))),
        (State::InProgress, Some(r)) => Ok((State::Closed, Some(r))),
        (_, Some(r)) if r.dismisses() => Ok((State::Closed, Some(r))),
        _ => Err(WorkflowError::ReasonRequired(from)),
    }
}

fn allowed(from: State) -> String {
    let mut v: Vec<String> = from.next().into_iter().map(|s| s.as_str().to_string()).collect();
    if from != State::InProgress && from != State::Closed {
        v.push("closed (with --reason false_positive or duplicate)".into());
    }
    v.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_and_its_reasons() {
        assert_eq!(check(State::Detected, "notified", "").unwrap(), (State::Notified, None));
        let e = check(State::Detected, "in_progress", "").unwrap_err().to_string();
        assert!(e.contains("allowed from `detected`: notified, closed"), "{e}");
        // dismissal needs a reason
        let e = check(State::Detected, "closed", "").unwrap_err().to_string();
        assert!(e.contains("--reason false_positive or duplicate"), "{e}");
        assert_eq!(
            check(State::Detected, "closed", "false_positive").unwrap(),
            (State::Closed, Some(CloseReason::FalsePositive))
        );
        assert!(check(State::Notified, "closed", "resolved").is_err());
        assert_eq!(
            check(State::InProgress, "closed", "").unwrap(),
            (State::Closed, Some(CloseReason::Resolved))
        );
        let e = check(State::Detected, "closed", "oops").unwrap_err().to_string();
        assert!(e.contains("unknown reason `oops` (one of false_positive, duplicate, resolved)"), "{e}");
        assert!(
            check(State::Closed, "notified", "").unwrap_err().to_string().contains("cannot change state")
        );
        assert!(check(State::Notified, "done", "").unwrap_err().to_string().contains("unknown state `done`"));
        assert!(check(State::Detected, "notified", "resolved").is_err());
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
    }
}
