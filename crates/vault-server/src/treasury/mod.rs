//! Treasury wallets: an organisation's chain keys (Ethereum, Bitcoin, Solana) kept as secrets
//! of a system vault, `__treasury-keys`, whose custody follows the billing tier.
//!
//! The system vault is created on first use, one per user (this server hosts one
//! organisation, and every vault belongs to the user that created it), with the custody mode
//! of [`organisation_tier`]'s `treasury_custody()` at that moment; like every vault's mode it
//! never changes afterwards. It is reachable only through `/v1/treasury/…`: the vault and
//! secret routes refuse it (403) even for its owner, `GET /v1/vaults` hides it, and nobody can
//! create a vault with a reserved `__` name.

mod chains;
pub(crate) mod routes;

use custody_policy::BillingTier;

use crate::config::Config;
use crate::problem::ApiError;
use crate::storage::VaultRecord;

/// The name of the system vault holding treasury keys.
pub(crate) const SYSTEM_VAULT: &str = "__treasury-keys";

/// Vault names with this prefix are reserved for system vaults.
const RESERVED_PREFIX: &str = "__";

/// The organisation's billing tier. Every read of the tier goes through here, so where it
/// comes from can change in one place.
pub(crate) fn organisation_tier(config: &Config) -> BillingTier {
    config.limits().tier()
}

/// Whether `vault` is the treasury's system vault.
pub(crate) fn is_system_vault(vault: &VaultRecord) -> bool {
    vault.name == SYSTEM_VAULT
}

/// Passes any vault but the system vault, which answers 403: its keys are used only through
/// the treasury routes, which check the caller, confirm exports and audit every use.
pub(crate) fn refuse_system_vault(vault: VaultRecord) -> Result<VaultRecord, ApiError> {
    if is_system_vault(&vault) {
        return Err(ApiError::Forbidden(format!(
            "the system vault `{SYSTEM_VAULT}` holds treasury keys and is used only through \
             /v1/treasury/wallets"
        )));
    }
    Ok(vault)
}

/// Refuses a vault name reserved for system vaults.
pub(crate) fn refuse_reserved_name(name: &str) -> Result<(), ApiError> {
    if name.starts_with(RESERVED_PREFIX) {
        return Err(ApiError::Validation(format!(
            "vault names starting with `{RESERVED_PREFIX}` are reserved for system vaults"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_tier_comes_from_the_file_or_the_environment_and_defaults_to_enterprise() {
        let default = Config::default_config();
        assert_eq!(organisation_tier(&default), BillingTier::Enterprise);
        let file = Config::from_toml_str("tier = \"pro\"").unwrap();
        assert_eq!(organisation_tier(&file), BillingTier::Pro);
        let env = BTreeMap::from([("MPCVAULT_TIER".to_owned(), "free".to_owned())]);
        let config = Config::load(None, &env).unwrap();
        assert_eq!(organisation_tier(&config), BillingTier::Free);
        let err = Config::from_toml_str("tier = \"platinum\"").unwrap_err();
        assert!(err.to_string().contains("tier"), "{err}");
        let set = Config::default_config().with_billing_tier(BillingTier::Team);
        assert_eq!(organisation_tier(&set), BillingTier::Team);
    }

    #[test]
    fn the_system_vault_is_refused_and_its_prefix_reserved() {
        let vault = |name: &str| VaultRecord {
            id: "v".into(),
            name: name.into(),
            description: String::new(),
            created_by: "admin".into(),
            created_at: 0,
            cmek_enabled: false,
            custody: None,
        };
        assert!(matches!(
            refuse_system_vault(vault(SYSTEM_VAULT)),
            Err(ApiError::Forbidden(_))
        ));
        assert!(refuse_system_vault(vault("payments")).is_ok());
        assert!(refuse_reserved_name("__mine").is_err());
        assert!(refuse_reserved_name("_single").is_ok());
    }
}
