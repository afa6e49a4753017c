//! Which Entra ID identity the provider authenticates as.

use core::fmt;
use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use zeroize::Zeroizing;

/// The Entra ID identity an [`AzureKeyVaultProvider`](crate::AzureKeyVaultProvider) uses.
///
/// The production constructors build the matching `azure_identity` credential when the
/// provider is built, on the provider's own HTTPS transport (rustls with the `ring` provider),
/// so token requests and Key Vault requests verify TLS the same way. No default credential
/// chain is ever consulted: the identity is always named.
///
/// `Debug` never prints a client secret.
///
/// # Example
///
/// ```
/// use kms_providers::AzureCredential;
///
/// let c = AzureCredential::client_secret(
///     "72f988bf-86f1-41af-91ab-2d7cd011db47",
///     "6a1b4a4e-ffff-4e1c-8d2f-000000000000",
///     "not-a-real-secret",
/// );
/// assert!(!format!("{c:?}").contains("not-a-real-secret"));
/// ```
pub struct AzureCredential(Kind);

enum Kind {
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: Zeroizing<String>,
    },
    ManagedIdentity {
        client_id: Option<String>,
    },
    WorkloadIdentity,
    Token(Arc<dyn TokenCredential>),
}

impl AzureCredential {
    /// A service principal with a client secret (`ClientSecretCredential`).
    ///
    /// # Example
    ///
    /// ```
    /// let c = kms_providers::AzureCredential::client_secret("tenant", "client", "secret");
    /// assert!(format!("{c:?}").contains("ClientSecret"));
    /// ```
    pub fn client_secret(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self(Kind::ClientSecret {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            secret: Zeroizing::new(secret.into()),
        })
    }

    /// The system-assigned managed identity of the VM, App Service or container
    /// (`ManagedIdentityCredential`).
    ///
    /// # Example
    ///
    /// ```
    /// let c = kms_providers::AzureCredential::managed_identity();
    /// assert!(format!("{c:?}").contains("ManagedIdentity"));
    /// ```
    pub fn managed_identity() -> Self {
        Self(Kind::ManagedIdentity { client_id: None })
    }

    /// A user-assigned managed identity, by its client id.
    ///
    /// # Example
    ///
    /// ```
    /// let c = kms_providers::AzureCredential::user_assigned_managed_identity("client-id");
    /// assert!(format!("{c:?}").contains("client-id"));
    /// ```
    pub fn user_assigned_managed_identity(client_id: impl Into<String>) -> Self {
        Self(Kind::ManagedIdentity {
            client_id: Some(client_id.into()),
        })
    }

    /// Workload identity federation (AKS): tenant, client id and token file from
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`, as the
    /// workload identity webhook sets them (`WorkloadIdentityCredential`).
    ///
    /// # Example
    ///
    /// ```
    /// let c = kms_providers::AzureCredential::workload_identity();
    /// assert!(format!("{c:?}").contains("WorkloadIdentity"));
    /// ```
    pub fn workload_identity() -> Self {
        Self(Kind::WorkloadIdentity)
    }

    /// Any other `TokenCredential`, used as is (its own transport included).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kms_providers::AzureCredential;
    /// use kms_providers::testkit::AzureKeyVaultServer;
    ///
    /// let server = AzureKeyVaultServer::start_key_vault().await?;
    /// let c = AzureCredential::from_token_credential(server.credential());
    /// assert!(format!("{c:?}").contains("TokenCredential"));
    /// # Ok(()) }
    /// ```
    pub fn from_token_credential(credential: Arc<dyn TokenCredential>) -> Self {
        Self(Kind::Token(credential))
    }

    /// The SDK credential, built on `transport`.
    pub(super) fn build(
        &self,
        transport: &Transport,
    ) -> azure_core::Result<Arc<dyn TokenCredential>> {
        let client_options = || ClientOptions {
            transport: Some(transport.clone()),
            ..ClientOptions::default()
        };
        Ok(match &self.0 {
            Kind::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                Secret::new(secret.as_str().to_owned()),
                Some(ClientSecretCredentialOptions {
                    client_options: client_options(),
                }),
            )?,
            Kind::ManagedIdentity { client_id } => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options: client_options(),
                }))?
            }
            Kind::WorkloadIdentity => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    ..WorkloadIdentityCredentialOptions::default()
                }))?
            }
            Kind::Token(t) => Arc::clone(t),
        })
    }
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("secret", &"<redacted>")
                .finish(),
            Kind::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            Kind::WorkloadIdentity => f.write_str("WorkloadIdentity"),
            Kind::Token(_) => f.write_str("TokenCredential(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaks_no_secret() {
        let c = AzureCredential::client_secret("t", "c", "s3cr3t-value");
        let text = format!("{c:?} {c:#?}");
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("<redacted>"));
    }
}
