//! Tier classification (DESIGN §5).
//!
//! A volume's IOPS (read + write operations per second, averaged over the policy's
//! sampling window) is compared with the watermarks `L < W < H`. Each tier has a *keep
//! band* wider than its target band, so a volume that just moved does not move back at
//! the same load (hysteresis):
//!
//! | current | stays while        | otherwise goes to                         |
//! |---------|--------------------|-------------------------------------------|
//! | hot     | `IOPS ≥ W`         | warm if `L < IOPS`, else cold             |
//! | warm    | `L < IOPS < H`     | hot if `IOPS ≥ H`, cold if `IOPS ≤ L`     |
//! | cold    | `IOPS < W`         | hot if `IOPS ≥ H`, else warm              |
//!
//! Without a warm tier: hot stays while `IOPS > L` (else cold); cold stays while
//! `IOPS < H` (else hot).
//!
//! Unknown metrics are never read as idle: they yield [`Classification::Unknown`], which
//! never moves anything. No decision is taken before a full sampling window of data
//! exists, nor within the cooldown after the volume's last move.

use std::{fmt, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A storage tier. Ordered from coldest to hottest, so `a < b` means `a` is colder.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Tier {
    #[serde(rename = "cold")]
    Cold,
    #[serde(rename = "warm")]
    Warm,
    #[serde(rename = "hot")]
    Hot,
}

impl Tier {
    /// All tiers from hottest to coldest.
    pub const ALL: [Tier; 3] = [Tier::Hot, Tier::Warm, Tier::Cold];

    /// The lowercase name used on the wire (`hot`, `warm`, `cold`).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "hot" => Some(Tier::Hot),
            "warm" => Some(Tier::Warm),
            "cold" => Some(Tier::Cold),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The watermarks of a policy, already validated (`low < warm < high`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermarks {
    pub low: f64,
    /// `None` when the policy has no warm tier.
    pub warm: Option<f64>,
    pub high: f64,
}

/// What is known of a volume's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Metrics are missing, failed or stale: not the same as idle.
    Unknown,
    /// IOPS averaged over the sampling window, and how much history backs it.
    Known { iops: f64, history: Duration },
}

/// Everything classification needs about one volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifyInput {
    pub current: Tier,
    pub load: Load,
    /// When the volume last finished a move, if ever.
    pub last_moved: Option<Timestamp>,
    pub now: Timestamp,
}

/// Timing rules of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub sampling_window: Duration,
    pub cooldown: Duration,
}

/// The outcome of classifying one volume.
#[derive(Debug, Clone, PartialEq)]
pub enum Classification {
    /// The volume is inside its keep band (or must wait); `reason` says which.
    Stay { reason: String },
    /// The volume is outside its keep band and may move now.
    Move { to: Tier, iops: f64, reason: String },
    /// The volume would move but its cooldown has not passed.
    CoolingDown {
        wanted: Tier,
        until: Timestamp,
        reason: String,
    },
    /// Not enough data to decide; never a move.
    Unknown { reason: String },
}

impl Classification {
    /// The tier the volume should move to now, if any.
    pub fn target(&self) -> Option<Tier> {
        match self {
            Classification::Move { to, .. } => Some(*to),
            _ => None,
        }
    }

    /// A one-line explanation for status, Events and dry-run output.
    pub fn reason(&self) -> &str {
        match self {
            Classification::Stay { reason }
            | Classification::Move { reason, .. }
            | Classification::CoolingDown { reason, .. }
            | Classification::Unknown { reason } => reason,
        }
    }
}

/// The tier a volume at `iops` belongs on, given where it is now (hysteresis), or
/// `None` when it is inside its keep band.
pub fn target_tier(current: Tier, iops: f64, w: &Watermarks) -> Option<Tier> {
    let (low, high) = (w.low, w.high);
    let wanted = match w.warm {
        Some(warm) => match current {
            Tier::Hot if iops >= warm => Tier::Hot,
            Tier::Hot if iops > low => Tier::Warm,
            Tier::Hot => Tier::Cold,
            Tier::Warm if iops >= high => Tier::Hot,
            Tier::Warm if iops <= low => Tier::Cold,
            Tier::Warm => Tier::Warm,
            Tier::Cold if iops >= high => Tier::Hot,
            Tier::Cold if iops >= warm => Tier::Warm,
            Tier::Cold => Tier::Cold,
        },
        None => match current {
            Tier::Hot | Tier::Warm if iops > low => Tier::Hot,
            Tier::Hot | Tier::Warm => Tier::Cold,
            Tier::Cold if iops >= high => Tier::Hot,
            Tier::Cold => Tier::Cold,
        },
    };
    (wanted != current).then_some(wanted)
}

/// Classifies one volume. Pure: same input, same answer.
pub fn classify(input: &ClassifyInput, w: &Watermarks, timing: &Timing) -> Classification {
    let (iops, history) = match input.load {
        Load::Unknown => {
            return Classification::Unknown {
                reason: "IOPS unknown (metrics missing or stale); unknown is not idle".to_owned(),
            };
        }
        Load::Known { iops, .. } if !iops.is_finite() || iops < 0.0 => {
            return Classification::Unknown {
                reason: format!("IOPS value {iops} is not a valid rate"),
            };
        }
        Load::Known { iops, history } => (iops, history),
    };
    if history < timing.sampling_window {
        return Classification::Unknown {
            reason: format!(
                "only {} of metrics history, need a full sampling window of {}",
                crate::duration::format_duration(history),
                crate::duration::format_duration(timing.sampling_window)
            ),
        };
    }
    let current = input.current;
    let Some(to) = target_tier(current, iops, w) else {
        return Classification::Stay {
            reason: format!(
                "{iops:.0} IOPS is within the {current} keep band {}",
                keep_band(current, w)
            ),
        };
    };
    let why = format!(
        "{iops:.0} IOPS is outside the {current} keep band {}",
        keep_band(current, w)
    );
    if let Some(last) = input.last_moved {
        let until = add(last, timing.cooldown);
        if input.now < until {
            return Classification::CoolingDown {
                wanted: to,
                until,
                reason: format!("{why}; would move to {to} but cooling down until {until}"),
            };
        }
    }
    Classification::Move {
        to,
        iops,
        reason: format!("{why}; move {current} → {to}"),
    }
}

/// The keep band of `tier`, written for humans (`[2000, ∞)`).
pub fn keep_band(tier: Tier, w: &Watermarks) -> String {
    match (w.warm, tier) {
        (Some(warm), Tier::Hot) => format!("[{warm}, ∞)"),
        (Some(_), Tier::Warm) => format!("({}, {})", w.low, w.high),
        (Some(warm), Tier::Cold) => format!("[0, {warm})"),
        (None, Tier::Hot | Tier::Warm) => format!("({}, ∞)", w.low),
        (None, Tier::Cold) => format!("[0, {})", w.high),
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let span = k8s_openapi::jiff::SignedDuration::try_from(d)
        .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
    t.checked_add(span).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const THREE: Watermarks = Watermarks {
        low: 500.0,
        warm: Some(2000.0),
        high: 5000.0,
    };
    const TWO: Watermarks = Watermarks {
        low: 500.0,
        warm: None,
        high: 5000.0,
    };
    const HOUR: Duration = Duration::from_secs(3600);
    const TIMING: Timing = Timing {
        sampling_window: HOUR,
        cooldown: Duration::from_secs(86_400),
    };

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid timestamp")
    }

    fn input(current: Tier, iops: f64) -> ClassifyInput {
        ClassifyInput {
            current,
            load: Load::Known {
                iops,
                history: HOUR,
            },
            last_moved: None,
            now: now(),
        }
    }

    fn any_tier() -> impl Strategy<Value = Tier> {
        prop_oneof![Just(Tier::Hot), Just(Tier::Warm), Just(Tier::Cold)]
    }

    /// Watermarks with `low < warm < high`, with or without a warm tier.
    fn any_watermarks() -> impl Strategy<Value = Watermarks> {
        (1u32..10_000, 1u32..10_000, 1u32..10_000, any::<bool>()).prop_map(|(a, b, c, warm)| {
            let low = f64::from(a);
            let mid = low + f64::from(b);
            let high = mid + f64::from(c);
            Watermarks {
                low,
                warm: warm.then_some(mid),
                high,
            }
        })
    }

    fn tiers_of(w: &Watermarks) -> Vec<Tier> {
        if w.warm.is_some() {
            vec![Tier::Hot, Tier::Warm, Tier::Cold]
        } else {
            vec![Tier::Hot, Tier::Cold]
        }
    }

    #[test]
    fn volume_over_high_watermark_is_classified_hot() {
        let c = classify(&input(Tier::Cold, 6000.0), &THREE, &TIMING);
        assert_eq!(c.target(), Some(Tier::Hot), "{c:?}");
        let c = classify(&input(Tier::Warm, 5000.0), &THREE, &TIMING);
        assert_eq!(c.target(), Some(Tier::Hot), "{c:?}");
    }

    #[test]
    fn idle_hot_volume_goes_cold_and_a_lukewarm_one_goes_warm() {
        assert_eq!(
            classify(&input(Tier::Hot, 0.0), &THREE, &TIMING).target(),
            Some(Tier::Cold)
        );
        assert_eq!(
            classify(&input(Tier::Hot, 1000.0), &THREE, &TIMING).target(),
            Some(Tier::Warm)
        );
        assert_eq!(
            classify(&input(Tier::Hot, 1000.0), &TWO, &TIMING).target(),
            None
        );
        assert_eq!(
            classify(&input(Tier::Hot, 500.0), &TWO, &TIMING).target(),
            Some(Tier::Cold)
        );
    }

    #[test]
    fn hysteresis_keeps_a_hot_volume_hot_between_warm_and_high() {
        let c = classify(&input(Tier::Hot, 3000.0), &THREE, &TIMING);
        assert!(matches!(c, Classification::Stay { .. }), "{c:?}");
        let c = classify(&input(Tier::Cold, 1999.0), &THREE, &TIMING);
        assert!(matches!(c, Classification::Stay { .. }), "{c:?}");
    }

    #[test]
    fn unknown_metrics_are_not_idle() {
        let mut i = input(Tier::Hot, 0.0);
        i.load = Load::Unknown;
        assert!(matches!(
            classify(&i, &THREE, &TIMING),
            Classification::Unknown { .. }
        ));
        i.load = Load::Known {
            iops: f64::NAN,
            history: HOUR,
        };
        assert!(matches!(
            classify(&i, &THREE, &TIMING),
            Classification::Unknown { .. }
        ));
    }

    #[test]
    fn no_decision_before_a_full_sampling_window() {
        let mut i = input(Tier::Hot, 0.0);
        i.load = Load::Known {
            iops: 0.0,
            history: Duration::from_secs(3599),
        };
        let c = classify(&i, &THREE, &TIMING);
        assert!(matches!(c, Classification::Unknown { .. }), "{c:?}");
        assert!(c.reason().contains("59m59s"), "{}", c.reason());
    }

    #[test]
    fn a_recently_moved_volume_cools_down_before_moving_again() {
        let mut i = input(Tier::Hot, 0.0);
        i.last_moved = Some(
            now()
                .checked_sub(k8s_openapi::jiff::SignedDuration::from_hours(23))
                .expect("in range"),
        );
        let c = classify(&i, &THREE, &TIMING);
        assert!(
            matches!(
                c,
                Classification::CoolingDown {
                    wanted: Tier::Cold,
                    ..
                }
            ),
            "{c:?}"
        );
        i.last_moved = Some(
            now()
                .checked_sub(k8s_openapi::jiff::SignedDuration::from_hours(24))
                .expect("in range"),
        );
        assert_eq!(classify(&i, &THREE, &TIMING).target(), Some(Tier::Cold));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn more_iops_never_yields_a_colder_target(
            w in any_watermarks(), current in any_tier(), a in 0.0f64..40_000.0, b in 0.0f64..40_000.0,
        ) {
            prop_assume!(tiers_of(&w).contains(&current));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let at = |iops| target_tier(current, iops, &w).unwrap_or(current);
            prop_assert!(at(lo) <= at(hi), "{current} at {lo} → {:?}, at {hi} → {:?}", at(lo), at(hi));
        }

        #[test]
        fn reclassifying_right_after_a_move_at_the_same_iops_stays(
            w in any_watermarks(), current in any_tier(), iops in 0.0f64..40_000.0,
        ) {
            prop_assume!(tiers_of(&w).contains(&current));
            if let Some(to) = target_tier(current, iops, &w) {
                prop_assert!(tiers_of(&w).contains(&to));
                prop_assert_eq!(target_tier(to, iops, &w), None, "{} → {} at {} then moves again", current, to, iops);
                // And through `classify`, with no cooldown in the way.
                let timing = Timing { sampling_window: HOUR, cooldown: Duration::ZERO };
                let again = classify(&input(to, iops), &w, &timing);
                let stays = matches!(again, Classification::Stay { .. });
                prop_assert!(stays, "{:?}", again);
            }
        }

        #[test]
        fn unknown_load_never_yields_a_move(
            w in any_watermarks(), current in any_tier(), history in 0u64..1_000_000, moved_ago in proptest::option::of(0i64..1_000_000),
        ) {
            let i = ClassifyInput {
                current,
                load: Load::Unknown,
                last_moved: moved_ago.map(|s| now().checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s)).expect("in range")),
                now: now(),
            };
            let timing = Timing { sampling_window: Duration::from_secs(history), cooldown: Duration::ZERO };
            prop_assert_eq!(classify(&i, &w, &timing).target(), None);
        }

        #[test]
        fn short_history_never_yields_a_move(
            w in any_watermarks(), current in any_tier(), iops in 0.0f64..40_000.0, short in 0u64..3600,
        ) {
            let mut i = input(current, iops);
            i.load = Load::Known { iops, history: Duration::from_secs(short) };
            prop_assert_eq!(classify(&i, &w, &TIMING).target(), None);
        }
    }
}
