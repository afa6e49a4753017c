//! The OpenAPI 3.1 document, generated from the handlers' annotations and the API types.

use std::sync::OnceLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mpc-vault",
        description = "Secrets vault with multi-party key custody. JSON API compatible with \
                       1claw's shapes. Every failure is `application/problem+json` (RFC 7807).",
        license(name = "Apache-2.0 OR MIT"),
    ),
    paths(
        routes::health,
        routes::health_hsm,
        routes::jwks,
        routes::api_key_token,
        routes::create_key,
        routes::list_keys,
        routes::revoke_key,
        routes::create_vault,
        routes::list_vaults,
        routes::get_vault,
        routes::delete_vault,
        routes::enable_mpc,
        routes::list_secrets,
        routes::put_secret,
        routes::get_secret,
        routes::delete_secret,
        routes::list_versions,
        routes::get_secret_version,
        routes::disable_version,
        routes::rotate_secret,
        crate::agents::agent_token,
        crate::agents::create_agent,
        crate::agents::list_agents,
        crate::agents::get_agent,
        crate::agents::delete_agent,
        crate::policies::create_policy,
        crate::policies::list_policies,
        crate::policies::get_policy,
        crate::policies::update_policy,
        crate::policies::delete_policy,
        crate::audit::routes::events,
        crate::audit::routes::verify,
        crate::audit::routes::export,
        crate::audit::routes::create_checkpoint,
        crate::audit::routes::public_key,
        crate::cmek_routes::enable_cmek,
        crate::cmek_routes::disable_cmek,
        crate::cmek_routes::start_rotation,
        crate::cmek_routes::rotation_status,
        crate::treasury::routes::generate,
        crate::treasury::routes::list,
        crate::treasury::routes::get,
        crate::treasury::routes::sign,
        crate::treasury::routes::export,
        crate::treasury::routes::rotate,
        crate::treasury::routes::delete,
    ),
    components(schemas(crate::problem::Problem)),
    modifiers(&StandardErrors),
)]
struct ApiDoc;

/// Adds the bearer scheme, and to every operation the problems any request can meet (bad
/// input, missing auth, unknown resource, timeout, oversize or non-JSON body, server and
/// provider failures) unless the operation documents them itself.
struct StandardErrors;

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A user API key (`1ck_…`) or an access token from \
                         POST /v1/auth/api-key-token",
                    ))
                    .build(),
            ),
        );
        let standard = [
            ("400", "Invalid input (body, path, query, client share)"),
            ("401", "Missing or invalid credentials"),
            (
                "403",
                "Not allowed: no policy grants it, or an agent or a vault-scoped key cannot do it",
            ),
            ("404", "No such vault, secret or route"),
            ("408", "The request timed out"),
            ("413", "The body or value is too large"),
            ("415", "The body is not application/json"),
            (
                "429",
                "Too many requests from this API key or address; see Retry-After",
            ),
            ("500", "Server failure (details in the server log only)"),
            ("503", "Key providers temporarily unavailable"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 4] = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in standard {
                    if operation.responses.responses.contains_key(status) {
                        continue;
                    }
                    let mut response = ResponseBuilder::new().description(description);
                    if status == "429" {
                        // The seconds to wait, as sent with every 429.
                        response = response.header(
                            "Retry-After",
                            utoipa::openapi::HeaderBuilder::new()
                                .schema(
                                    utoipa::openapi::ObjectBuilder::new()
                                        .schema_type(utoipa::openapi::schema::Type::Integer)
                                        .minimum(Some(1)),
                                )
                                .description(Some("Seconds until a request would be accepted"))
                                .build(),
                        );
                    }
                    let response = response
                        .content(
                            crate::problem::PROBLEM_JSON,
                            ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                    "Problem",
                                ))))
                                .build(),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .insert(status.to_owned(), RefOr::T(response));
                }
            }
        }
    }
}

/// The OpenAPI document as pretty JSON (built once).
///
/// The same text is committed as `crates/vault-server/openapi.json`; a test fails when the
/// committed file is stale.
///
/// # Example
///
/// ```
/// let doc: serde_json::Value = serde_json::from_str(vault_server::openapi_json())?;
/// assert_eq!(doc["openapi"], "3.1.0");
/// assert!(doc["paths"]["/v1/vaults"].is_object());
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn openapi_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
}
