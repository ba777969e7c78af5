//! Which variant of search a user gets: the plan's `get_search_variant` (Step 9), the md5 of the
//! user id read as one number, even → enriched, a missing id hashed as "anonymous".

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// The two arms of the A/B test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Descriptions without the extracted attributes.
    Baseline,
    /// Descriptions enriched with the extracted attributes.
    Enriched,
}

impl Variant {
    /// The name the event table and the analysis use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Enriched => "enriched",
        }
    }
}

/// The user id a request without one is counted under.
pub const ANONYMOUS: &str = "anonymous";

/// The variant of `user_id` when `enriched_percent` of users get the enriched one. The md5 of
/// the id, read as a 128-bit number `h`, puts the user in one of 200 buckets (`h mod 200`);
/// the even buckets come first (`rank = 100 × (h mod 2) + (h mod 200) / 2`) and the first
/// `2 × enriched_percent` ranks are enriched. At 50 % that is exactly the plan's rule (even →
/// enriched), and raising the share only moves users from baseline to enriched.
pub fn variant_for(user_id: Option<&str>, enriched_percent: f64) -> Variant {
    let digest = Md5::digest(user_id.unwrap_or(ANONYMOUS).as_bytes());
    let hash = u128::from_be_bytes(digest.into());
    let rank = 100 * (hash % 2) + (hash % 200) / 2;
    if (rank as f64) < 2.0 * enriched_percent {
        Variant::Enriched
    } else {
        Variant::Baseline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `int(hashlib.md5(user_id.encode()).hexdigest(), 16) % 2 == 0`, as Python 3
    /// computed it for these ids.
    #[test]
    fn at_half_the_rule_is_the_plans() {
        for (id, even) in [
            ("anonymous", false),
            ("user-1", true),
            ("user-2", false),
            ("user-3", true),
            ("user-4", false),
            ("user-5", false),
            ("alice", true),
            ("bob", true),
            ("carol", true),
            ("", true),
            ("u:ü", false),
        ] {
            let want = if even {
                Variant::Enriched
            } else {
                Variant::Baseline
            };
            assert_eq!(variant_for(Some(id), 50.0), want, "{id}");
        }
        assert_eq!(variant_for(None, 50.0), variant_for(Some(ANONYMOUS), 50.0));
    }

    #[test]
    fn a_larger_share_only_moves_users_to_enriched() {
        let ids: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let enriched = |percent: f64| -> Vec<bool> {
            ids.iter()
                .map(|id| variant_for(Some(id), percent) == Variant::Enriched)
                .collect()
        };
        let mut before = enriched(0.0);
        assert!(before.iter().all(|e| !e));
        for percent in [10.0, 25.0, 50.0, 80.0, 100.0] {
            let now = enriched(percent);
            assert!(before.iter().zip(&now).all(|(b, n)| !b || *n), "{percent}");
            let share = now.iter().filter(|e| **e).count() as f64 / ids.len() as f64;
            assert!((share - percent / 100.0).abs() < 0.04, "{percent}: {share}");
            before = now;
        }
    }
}
