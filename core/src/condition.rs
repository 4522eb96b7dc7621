//! Conditions following the Kubernetes API conventions: one entry per `type`,
//! `lastTransitionTime` changes only when `status` changes, `observedGeneration` says
//! which spec the condition describes.

use crate::{
    Timestamp,
    api::{Condition, Time},
};

/// `Ready`: the object is doing its job.
pub const READY: &str = "Ready";
/// `MetricsAvailable`: Prometheus answered with fresh data for this policy.
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
/// `MayastorAvailable`: the Mayastor REST API answered.
pub const MAYASTOR_AVAILABLE: &str = "MayastorAvailable";
/// `Valid`: the spec passed validation.
pub const VALID: &str = "Valid";

/// The three condition statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b { Status::True } else { Status::False }
    }
}

/// Sets condition `type_` in `conditions`, keeping its `lastTransitionTime` when the
/// status is unchanged. `reason` must be CamelCase (API conventions).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status.as_str() {
                c.last_transition_time = Time(now);
            }
            c.status = status.as_str().to_owned();
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.as_str().to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

/// The condition of `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == Status::True.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut cs = Vec::new();
        set(
            &mut cs,
            READY,
            Status::False,
            "Starting",
            "first look",
            Some(1),
            at(100),
        );
        set(
            &mut cs,
            READY,
            Status::False,
            "StillStarting",
            "second look",
            Some(2),
            at(200),
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, Time(at(100)));
        assert_eq!(cs[0].reason, "StillStarting");
        assert_eq!(cs[0].observed_generation, Some(2));
        set(
            &mut cs,
            READY,
            Status::True,
            "Evaluated",
            "ok",
            Some(2),
            at(300),
        );
        assert_eq!(cs[0].last_transition_time, Time(at(300)));
        assert!(is_true(&cs, READY));
        assert!(!is_true(&cs, METRICS_AVAILABLE));
    }
}
