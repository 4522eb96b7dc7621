//! Which tier a Mayastor pool belongs to, from the policy's pool selectors — the only
//! part of a `StoragePolicy` the executor needs, passed in by value so the executor
//! never reads the Kubernetes API.

use std::collections::BTreeMap;

use couchestor_core::{
    Tier,
    api::{LabelSelector, StoragePolicySpec},
    selector,
};

/// The pool selector of each tier of one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPools {
    selectors: Vec<(Tier, LabelSelector)>,
}

impl TierPools {
    /// Hot and cold selectors, and warm when the policy has that tier.
    pub fn new(hot: LabelSelector, warm: Option<LabelSelector>, cold: LabelSelector) -> Self {
        let mut selectors = vec![(Tier::Hot, hot)];
        if let Some(warm) = warm {
            selectors.push((Tier::Warm, warm));
        }
        selectors.push((Tier::Cold, cold));
        Self { selectors }
    }

    /// The selectors of `policy`.
    pub fn from_policy(policy: &StoragePolicySpec) -> Self {
        Self::new(
            policy.hot_pool_selector.clone(),
            policy.warm_pool_selector.clone(),
            policy.cold_pool_selector.clone(),
        )
    }

    /// No tiers at all: every pool is of no tier. What is left of a move whose policy
    /// is gone ([`crate::executor::Executor::abandon`]).
    pub fn none() -> Self {
        Self {
            selectors: Vec::new(),
        }
    }

    /// Tiers with `key=value` match labels (a convenience for tests and simple
    /// policies): `[(Hot, "hot"), (Cold, "cold")]`.
    pub fn by_label(key: &str, values: &[(Tier, &str)]) -> Self {
        let selectors = values
            .iter()
            .map(|(tier, value)| {
                let selector = LabelSelector {
                    match_labels: Some(BTreeMap::from([(key.to_owned(), (*value).to_owned())])),
                    match_expressions: None,
                };
                (*tier, selector)
            })
            .collect();
        Self { selectors }
    }

    /// The tier a pool with `labels` belongs to; `None` for a pool no selector matches
    /// or one several selectors match (ambiguous pools are never a target).
    pub fn tier_of(&self, labels: &BTreeMap<String, String>) -> Option<Tier> {
        let mut matching = self
            .selectors
            .iter()
            .filter(|(_, s)| selector::matches(s, labels))
            .map(|(t, _)| *t);
        match (matching.next(), matching.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    /// Whether the policy has `tier`.
    pub fn has(&self, tier: Tier) -> bool {
        self.selectors.iter().any(|(t, _)| *t == tier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_pool_belongs_to_the_tier_whose_selector_matches_its_labels() {
        let tiers = TierPools::by_label("tier", &[(Tier::Hot, "hot"), (Tier::Cold, "cold")]);
        assert_eq!(tiers.tier_of(&labels(&[("tier", "hot")])), Some(Tier::Hot));
        assert_eq!(
            tiers.tier_of(&labels(&[("tier", "cold")])),
            Some(Tier::Cold)
        );
        assert_eq!(tiers.tier_of(&labels(&[("tier", "warm")])), None);
        assert_eq!(tiers.tier_of(&labels(&[])), None);
        assert!(!tiers.has(Tier::Warm));
    }

    #[test]
    fn a_pool_matched_by_two_tiers_belongs_to_none() {
        let any = LabelSelector {
            match_labels: Some(BTreeMap::from([("disk".to_owned(), "x".to_owned())])),
            match_expressions: None,
        };
        let tiers = TierPools::new(any.clone(), None, any);
        assert_eq!(tiers.tier_of(&labels(&[("disk", "x")])), None);
    }
}
