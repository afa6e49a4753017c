//! Organisation tiers: how many vaults, secrets and agents an organisation may have, and which
//! custody modes it may enable.
//!
//! A server is one organisation. Its tier is `custody_policy::BillingTier` (the lower crate
//! already names the plans and their treasury custody); the server adds the quotas. Counts are
//! enforced by the store inside the write (see `Storage::insert_vault_within` and
//! `Storage::put_version_within`), never by a read followed by a write.

use std::collections::{BTreeMap, BTreeSet};

use custody_policy::{BillingTier, CustodyMode, ModeKind};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::problem::ApiError;
use crate::storage::StorageError;

/// The names a tier's `custody_modes` list may hold: the four named modes and `custom` for
/// every `{t}of{n}:…` layout.
pub const CUSTODY_MODE_KINDS: [&str; 5] = [
    "standard",
    "2of2_client_custody",
    "2of3_multi_hsm",
    "2of3_client_custody",
    "custom",
];

/// The quotas and custody modes of one tier. `None` is unlimited (or, for the modes, all).
///
/// # Example
///
/// ```
/// use custody_policy::BillingTier;
/// use vault_server::TierLimits;
///
/// let free = TierLimits::default_for(BillingTier::Free);
/// assert_eq!(free.max_vaults(), Some(3));
/// assert!(free.allows_mode_kind("standard"));
/// assert!(!free.allows_mode_kind("2of3_multi_hsm"));
/// assert_eq!(TierLimits::default_for(BillingTier::Enterprise).max_secrets(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLimits {
    max_vaults: Option<u64>,
    max_secrets: Option<u64>,
    max_agents: Option<u64>,
    custody_modes: Option<BTreeSet<String>>,
}

impl TierLimits {
    /// The built-in limits of a tier (what an absent `[tiers.NAME]` table means).
    ///
    /// | tier | vaults | secrets | agents | custody modes |
    /// |---|---|---|---|---|
    /// | `free` | 3 | 100 | 2 | `standard` |
    /// | `pro` | 20 | 1 000 | 10 | + `2of2_client_custody` |
    /// | `team` | 50 | 5 000 | 25 | + `2of3_client_custody` |
    /// | `business` | 200 | 25 000 | 100 | + `2of3_multi_hsm` |
    /// | `enterprise` | unlimited | unlimited | unlimited | all, `custom` included |
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::BillingTier;
    ///
    /// let pro = vault_server::TierLimits::default_for(BillingTier::Pro);
    /// assert_eq!(pro.max_agents(), Some(10));
    /// ```
    #[must_use]
    pub fn default_for(tier: BillingTier) -> TierLimits {
        let modes = |n: usize| {
            Some(
                CUSTODY_MODE_KINDS
                    .iter()
                    .take(n)
                    .map(|m| (*m).to_owned())
                    .collect::<BTreeSet<_>>(),
            )
        };
        match tier {
            BillingTier::Free => TierLimits {
                max_vaults: Some(3),
                max_secrets: Some(100),
                max_agents: Some(2),
                custody_modes: modes(1),
            },
            BillingTier::Pro => TierLimits {
                max_vaults: Some(20),
                max_secrets: Some(1_000),
                max_agents: Some(10),
                custody_modes: modes(2),
            },
            BillingTier::Team => TierLimits {
                max_vaults: Some(50),
                max_secrets: Some(5_000),
                max_agents: Some(25),
                custody_modes: Some(
                    ["standard", "2of2_client_custody", "2of3_client_custody"]
                        .iter()
                        .map(|m| (*m).to_owned())
                        .collect(),
                ),
            },
            BillingTier::Business => TierLimits {
                max_vaults: Some(200),
                max_secrets: Some(25_000),
                max_agents: Some(100),
                custody_modes: modes(4),
            },
            // Enterprise and any tier added later: no limits (the self-hosting default).
            _ => TierLimits {
                max_vaults: None,
                max_secrets: None,
                max_agents: None,
                custody_modes: None,
            },
        }
    }

    /// The most live vaults, if limited.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::BillingTier;
    /// assert_eq!(vault_server::TierLimits::default_for(BillingTier::Business).max_vaults(), Some(200));
    /// ```
    #[must_use]
    pub fn max_vaults(&self) -> Option<u64> {
        self.max_vaults
    }

    /// The most live secrets (paths with an undeleted version), if limited.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::BillingTier;
    /// assert_eq!(vault_server::TierLimits::default_for(BillingTier::Free).max_secrets(), Some(100));
    /// ```
    #[must_use]
    pub fn max_secrets(&self) -> Option<u64> {
        self.max_secrets
    }

    /// The most agents, if limited. Agents are created by the agents API, which enforces this
    /// in its insert the way vaults do (see the crate README).
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::BillingTier;
    /// assert_eq!(vault_server::TierLimits::default_for(BillingTier::Free).max_agents(), Some(2));
    /// ```
    #[must_use]
    pub fn max_agents(&self) -> Option<u64> {
        self.max_agents
    }

    /// Whether a mode kind (one of [`CUSTODY_MODE_KINDS`]) may be enabled.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::BillingTier;
    /// let team = vault_server::TierLimits::default_for(BillingTier::Team);
    /// assert!(team.allows_mode_kind("2of3_client_custody"));
    /// assert!(!team.allows_mode_kind("custom"));
    /// ```
    #[must_use]
    pub fn allows_mode_kind(&self, kind: &str) -> bool {
        self.custody_modes
            .as_ref()
            .is_none_or(|modes| modes.contains(kind))
    }

    /// Refuses a custody mode this tier does not allow (403 `custody-mode-not-allowed`).
    pub(crate) fn check_mode(&self, tier: BillingTier, mode: &CustodyMode) -> Result<(), ApiError> {
        let kind = mode_kind_name(mode.kind());
        if self.allows_mode_kind(kind) {
            return Ok(());
        }
        let allowed: Vec<&str> = self
            .custody_modes
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        Err(ApiError::CustodyModeNotAllowed(format!(
            "custody mode `{kind}` is not available on this organisation's `{tier}` tier; \
             allowed: {}",
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            }
        )))
    }

    /// Applies a `[tiers.NAME]` table over these limits.
    fn apply(mut self, raw: &RawTierLimits, prefix: &str) -> Result<TierLimits, ConfigError> {
        if let Some(limit) = &raw.max_vaults {
            self.max_vaults = limit.value(&format!("{prefix}.max_vaults"))?;
        }
        if let Some(limit) = &raw.max_secrets {
            self.max_secrets = limit.value(&format!("{prefix}.max_secrets"))?;
        }
        if let Some(limit) = &raw.max_agents {
            self.max_agents = limit.value(&format!("{prefix}.max_agents"))?;
        }
        if let Some(modes) = &raw.custody_modes {
            let mut set = BTreeSet::new();
            for mode in modes {
                if !CUSTODY_MODE_KINDS.contains(&mode.as_str()) {
                    return Err(ConfigError::Invalid {
                        field: format!("{prefix}.custody_modes"),
                        reason: format!(
                            "unknown mode {mode:?}; use any of {}",
                            CUSTODY_MODE_KINDS.join(", ")
                        ),
                    });
                }
                set.insert(mode.clone());
            }
            self.custody_modes = Some(set);
        }
        Ok(self)
    }
}

/// The tier list name of a mode kind.
fn mode_kind_name(kind: ModeKind) -> &'static str {
    kind.api_name().unwrap_or("custom")
}

/// The organisation's tier and its effective limits, from the configuration.
///
/// # Example
///
/// ```
/// let config = vault_server::Config::from_toml_str("tier = \"free\"\n[tiers.free]\nmax_vaults = 1")?;
/// assert_eq!(config.limits().tier().as_str(), "free");
/// assert_eq!(config.limits().limits().max_vaults(), Some(1));
/// assert_eq!(config.limits().limits().max_secrets(), Some(100));
/// # Ok::<(), vault_server::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgLimits {
    tier: BillingTier,
    limits: TierLimits,
}

impl Default for OrgLimits {
    fn default() -> OrgLimits {
        OrgLimits {
            tier: BillingTier::Enterprise,
            limits: TierLimits::default_for(BillingTier::Enterprise),
        }
    }
}

impl OrgLimits {
    /// The organisation's tier (default `enterprise`: a self-hosted server is unlimited).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::Config::default_config().limits().tier().as_str(), "enterprise");
    /// ```
    #[must_use]
    pub fn tier(&self) -> BillingTier {
        self.tier
    }

    /// The tier's limits: the built-in ones with the `[tiers.NAME]` table applied.
    ///
    /// # Example
    ///
    /// ```
    /// let limits = vault_server::Config::default_config().limits().limits().clone();
    /// assert_eq!(limits.max_vaults(), None);
    /// ```
    #[must_use]
    pub fn limits(&self) -> &TierLimits {
        &self.limits
    }

    /// Refuses a custody mode the tier does not allow.
    pub(crate) fn check_mode(&self, mode: &CustodyMode) -> Result<(), ApiError> {
        self.limits.check_mode(self.tier, mode)
    }

    /// The answer for a write the store refused at the limit; other storage errors are
    /// handed back for the caller's own mapping.
    ///
    /// This is the one place a quota becomes a 403, for vaults, secrets and agents alike.
    pub(crate) fn limit_error(&self, err: StorageError) -> Result<ApiError, StorageError> {
        match err {
            StorageError::LimitReached { resource, limit } => {
                Ok(ApiError::ResourceLimitExceeded(format!(
                    "this organisation's `{tier}` tier allows at most {limit} {resource}, and \
                     that many exist; delete some {resource} or move to a larger tier \
                     (configuration `tiers.{tier}.max_{resource}`)",
                    tier = self.tier
                )))
            }
            other => Err(other),
        }
    }

    /// The tier with its built-in limits (no `[tiers.NAME]` table).
    pub(crate) fn builtin(tier: BillingTier) -> OrgLimits {
        OrgLimits {
            tier,
            limits: TierLimits::default_for(tier),
        }
    }

    /// Builds the limits from the raw `tier` and `[tiers.*]` settings.
    pub(crate) fn from_raw(
        tier: Option<&str>,
        tiers: &BTreeMap<String, RawTierLimits>,
    ) -> Result<OrgLimits, ConfigError> {
        let tier = match tier {
            None => BillingTier::Enterprise,
            Some(name) => name.parse().map_err(|_| ConfigError::Invalid {
                field: "tier".into(),
                reason: format!(
                    "unknown tier {name:?}; use free, pro, team, business or enterprise"
                ),
            })?,
        };
        let mut chosen = None;
        // Every table is validated, not only the active tier's: a typo in another tier would
        // otherwise surface only on the day the tier changes.
        for (name, raw) in tiers {
            let prefix = format!("tiers.{name}");
            let table_tier: BillingTier = name.parse().map_err(|_| ConfigError::Invalid {
                field: prefix.clone(),
                reason: "unknown tier; use free, pro, team, business or enterprise".into(),
            })?;
            let limits = TierLimits::default_for(table_tier).apply(raw, &prefix)?;
            if table_tier == tier {
                chosen = Some(limits);
            }
        }
        Ok(OrgLimits {
            tier,
            limits: chosen.unwrap_or_else(|| TierLimits::default_for(tier)),
        })
    }
}

/// A `[tiers.NAME]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTierLimits {
    max_vaults: Option<RawLimit>,
    max_secrets: Option<RawLimit>,
    max_agents: Option<RawLimit>,
    custody_modes: Option<Vec<String>>,
}

/// A count, or the word `"unlimited"` (TOML has no null).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawLimit {
    Count(u64),
    Word(String),
}

impl RawLimit {
    fn value(&self, field: &str) -> Result<Option<u64>, ConfigError> {
        match self {
            RawLimit::Count(n) if i64::try_from(*n).is_ok() => Ok(Some(*n)),
            RawLimit::Word(w) if w == "unlimited" => Ok(None),
            _ => Err(ConfigError::Invalid {
                field: field.to_owned(),
                reason: "use a count (0 forbids any) or \"unlimited\"".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_override_only_what_they_name() {
        let raw: BTreeMap<String, RawTierLimits> = toml::from_str(
            "[free]\nmax_vaults = \"unlimited\"\ncustody_modes = [\"standard\", \"custom\"]",
        )
        .unwrap();
        let org = OrgLimits::from_raw(Some("free"), &raw).unwrap();
        assert_eq!(org.limits().max_vaults(), None);
        assert_eq!(org.limits().max_secrets(), Some(100));
        assert!(org.limits().allows_mode_kind("custom"));
        assert!(!org.limits().allows_mode_kind("2of3_multi_hsm"));
    }

    #[test]
    fn bad_tables_name_their_field() {
        let raw: BTreeMap<String, RawTierLimits> =
            toml::from_str("[pro]\ncustody_modes = [\"3of5\"]").unwrap();
        let err = OrgLimits::from_raw(None, &raw).unwrap_err();
        assert!(err.to_string().contains("tiers.pro.custody_modes"), "{err}");
        let raw: BTreeMap<String, RawTierLimits> =
            toml::from_str("[gold]\nmax_vaults = 1").unwrap();
        assert!(
            OrgLimits::from_raw(None, &raw)
                .unwrap_err()
                .to_string()
                .contains("tiers.gold")
        );
        let raw: BTreeMap<String, RawTierLimits> =
            toml::from_str("[pro]\nmax_vaults = \"lots\"").unwrap();
        assert!(
            OrgLimits::from_raw(None, &raw)
                .unwrap_err()
                .to_string()
                .contains("tiers.pro.max_vaults")
        );
        assert!(OrgLimits::from_raw(Some("platinum"), &BTreeMap::new()).is_err());
    }

    #[test]
    fn a_refused_mode_names_the_tier_and_the_allowed_modes() {
        let org = OrgLimits::from_raw(Some("free"), &BTreeMap::new()).unwrap();
        let err = org
            .check_mode(&CustodyMode::two_of_three_multi_hsm())
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 403);
        assert_eq!(
            err.detail(),
            "custody mode `2of3_multi_hsm` is not available on this organisation's `free` \
             tier; allowed: standard"
        );
        org.check_mode(&CustodyMode::standard()).unwrap();
    }
}
