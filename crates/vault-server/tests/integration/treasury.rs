//! Treasury wallets through the HTTP API on a real socket: custody per billing tier, signatures
//! that verify against the wallet's public key on every chain, exports that are the signing
//! key, client shares, refusals (agents, scoped keys, direct reads of the system vault),
//! a provider down in the business tier, rotation and deletion, and the audit trail.

use std::sync::Arc;
use std::time::Duration;

use custody_policy::BillingTier;
use ed25519_dalek::Verifier as _;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use kms_providers::{FaultConfig, FaultInjector, KeyProvider};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest as _;
use vault_server::{Config, VaultServer};

use crate::pg::PgCluster;
use crate::support::LiveServer;

/// A caller of a live server.
struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    fn new(live: &LiveServer, key: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: live.http_base(),
            auth: format!("Bearer {key}"),
        }
    }

    fn as_key(&self, key: &str) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            auth: format!("Bearer {key}"),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body)
    }

    async fn generate(&self, body: Value) -> (u16, Value) {
        self.call(
            Method::POST,
            "/v1/treasury/wallets/generate",
            Some(body),
            &[],
        )
        .await
    }

    async fn sign(&self, chain: &str, body: Value, share: Option<&str>) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = share.map(|s| ("x-client-share", s)).into_iter().collect();
        self.call(
            Method::POST,
            &format!("/v1/treasury/wallets/{chain}/sign"),
            Some(body),
            &headers,
        )
        .await
    }

    async fn export(&self, chain: &str, share: Option<&str>) -> (u16, Value) {
        let mut headers = vec![("x-confirm-export", chain)];
        if let Some(share) = share {
            headers.push(("x-client-share", share));
        }
        self.call(
            Method::POST,
            &format!("/v1/treasury/wallets/{chain}/export"),
            None,
            &headers,
        )
        .await
    }

    /// The audit events of `action`, newest first.
    async fn events(&self, action: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/v1/audit/events?action={action}&limit=100"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().clone()
    }
}

struct Live {
    live: LiveServer,
    api: Api,
    _dir: Option<tempfile::TempDir>,
}

async fn start_in(config: Config, dir: Option<tempfile::TempDir>) -> Live {
    let server = VaultServer::open(config).await.unwrap();
    let key = server.bootstrap_admin_key().await.unwrap().unwrap();
    let live = LiveServer::serve(server).await;
    let api = Api::new(&live, key.expose_secret());
    Live {
        live,
        api,
        _dir: dir,
    }
}

async fn start(tier: BillingTier) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default_config()
        .with_data_dir(dir.path())
        .with_billing_tier(tier);
    start_in(config, Some(dir)).await
}

fn wallet<'a>(list: &'a Value, chain: &str) -> &'a Value {
    list["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["chain"] == chain)
        .unwrap()
}

fn unhex(text: &Value) -> Vec<u8> {
    hex::decode(text.as_str().unwrap()).unwrap()
}

/// Checks a signature answer against the wallet's public key: secp256k1 signatures recover
/// to it (from the returned digest, which is checked too), Ed25519 ones verify under it.
fn assert_signed_by(chain: &str, public_key: &[u8], answer: &Value, expected_digest: &[u8; 32]) {
    let signature = unhex(&answer["signature_hex"]);
    match chain {
        "ethereum" | "bitcoin" => {
            let digest = unhex(&answer["digest_hex"]);
            assert_eq!(digest, expected_digest, "{answer}");
            let id = answer["recovery_id"].as_u64().unwrap();
            let (rs, header) = if chain == "ethereum" {
                (&signature[..64], u64::from(signature[64]) - 27)
            } else {
                (&signature[1..], u64::from(signature[0]) - 39)
            };
            assert_eq!(header, id, "{answer}");
            let sig = Signature::from_slice(rs).unwrap();
            let recovered = VerifyingKey::recover_from_prehash(
                &digest,
                &sig,
                RecoveryId::from_byte(u8::try_from(id).unwrap()).unwrap(),
            )
            .unwrap();
            assert_eq!(recovered.to_sec1_point(true).as_bytes(), public_key);
        }
        "solana" => {
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&public_key.try_into().unwrap()).unwrap();
            let sig = ed25519_dalek::Signature::from_slice(&signature).unwrap();
            key.verify(expected_digest, &sig).unwrap();
        }
        other => panic!("unknown chain {other}"),
    }
}

/// The public key and address of an exported private key, derived here independently.
fn derive(chain: &str, private_key: &[u8]) -> (Vec<u8>, String) {
    match chain {
        "ethereum" | "bitcoin" => {
            let key = k256::ecdsa::SigningKey::from_slice(private_key).unwrap();
            let public = key.verifying_key();
            let compressed = public.to_sec1_point(true).as_bytes().to_vec();
            let address = if chain == "ethereum" {
                let xy = public.to_sec1_point(false).as_bytes()[1..].to_vec();
                let hash = sha3::Keccak256::digest(&xy);
                format!("0x{}", hex::encode(&hash[12..]))
            } else {
                let program = ripemd::Ripemd160::digest(sha2::Sha256::digest(&compressed));
                bech32::segwit::encode_v0(bech32::hrp::BC, &program).unwrap()
            };
            (compressed, address)
        }
        "solana" => {
            let key = ed25519_dalek::SigningKey::from_bytes(&private_key.try_into().unwrap());
            let public = key.verifying_key().to_bytes().to_vec();
            let address = bs58::encode(&public).into_string();
            (public, address)
        }
        other => panic!("unknown chain {other}"),
    }
}

/// The system vault's id, from the audit trail of its creation.
async fn system_vault_id(api: &Api) -> String {
    let events = api.events("treasury.generate").await;
    events
        .iter()
        .find_map(|e| e["vault_id"].as_str())
        .unwrap()
        .to_owned()
}

/// The custody mode the system vault was created with, from the audit trail.
async fn treasury_custody(api: &Api) -> String {
    let events = api.events("treasury.generate").await;
    let detail: Value =
        serde_json::from_str(events.last().unwrap()["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["system_vault"], "__treasury-keys");
    detail["custody_mode"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tier_gets_its_custody_and_client_shares_where_it_needs_them() {
    for (tier, mode, client_custody) in [
        (BillingTier::Free, "standard", false),
        (BillingTier::Pro, "2of2_client_custody", true),
        (BillingTier::Business, "2of3_multi_hsm", false),
    ] {
        let t = start(tier).await;
        let (status, list) = t.api.generate(json!({})).await;
        assert_eq!(status, 201, "{tier}: {list}");
        assert_eq!(list["wallets"].as_array().unwrap().len(), 3, "{list}");
        for chain in ["ethereum", "bitcoin", "solana"] {
            let w = wallet(&list, chain);
            assert_eq!(w["is_active"], true);
            assert_eq!(
                w["curve"],
                if chain == "solana" {
                    "ed25519"
                } else {
                    "secp256k1"
                }
            );
            assert_eq!(
                w.get("client_share").is_some(),
                client_custody,
                "{tier}: {w}"
            );
        }
        assert_eq!(treasury_custody(&t.api).await, mode, "{tier}");
        // Listing never returns a client share again.
        let (status, listed) = t
            .api
            .call(Method::GET, "/v1/treasury/wallets", None, &[])
            .await;
        assert_eq!(status, 200);
        for w in listed["wallets"].as_array().unwrap() {
            assert!(w.get("client_share").is_none(), "{w}");
        }
        // A second generate of an active chain is a conflict, and writes nothing.
        let (status, body) = t.api.generate(json!({"chains": ["solana"]})).await;
        assert_eq!(status, 409, "{body}");
        t.live.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_and_exports_are_the_signing_keys_on_every_chain() {
    let t = start(BillingTier::Enterprise).await;
    let (status, list) = t.api.generate(json!({})).await;
    assert_eq!(status, 201, "{list}");
    for chain in ["ethereum", "bitcoin", "solana"] {
        let w = wallet(&list, chain);
        let public_key = unhex(&w["public_key_hex"]);
        let (status, one) = t
            .api
            .call(
                Method::GET,
                &format!("/v1/treasury/wallets/{chain}"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(one["address"], w["address"]);

        let digest: [u8; 32] = sha2::Sha256::digest(format!("tx on {chain}")).into();
        let (status, signed) = t
            .api
            .sign(chain, json!({"digest_hex": hex::encode(digest)}), None)
            .await;
        assert_eq!(status, 200, "{signed}");
        assert_eq!(signed["chain"], chain);
        assert_eq!(signed["address"], w["address"]);
        assert_signed_by(chain, &public_key, &signed, &digest);

        // A message is hashed with the chain's convention (checked here for Ethereum).
        let (status, signed) = t.api.sign(chain, json!({"message": "hello"}), None).await;
        assert_eq!(status, 200, "{signed}");
        if chain == "ethereum" {
            assert_eq!(
                signed["digest_hex"],
                "50b2c43fd39106bafbba0da34fc430e1f91e3c96ea2acee2bc34119f92b37750"
            );
        }
        if chain == "solana" {
            let key =
                ed25519_dalek::VerifyingKey::from_bytes(&public_key.clone().try_into().unwrap())
                    .unwrap();
            let sig =
                ed25519_dalek::Signature::from_slice(&unhex(&signed["signature_hex"])).unwrap();
            key.verify(b"hello", &sig).unwrap();
        }

        // Export needs the confirmation naming the chain.
        let (status, body) = t
            .api
            .call(
                Method::POST,
                &format!("/v1/treasury/wallets/{chain}/export"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = t
            .api
            .call(
                Method::POST,
                &format!("/v1/treasury/wallets/{chain}/export"),
                None,
                &[("x-confirm-export", "not-this-chain")],
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let (status, exported) = t.api.export(chain, None).await;
        assert_eq!(status, 200, "{exported}");
        assert_eq!(exported["address"], w["address"]);
        let private_key = unhex(&exported["private_key_hex"]);
        let (derived_public, derived_address) = derive(chain, &private_key);
        assert_eq!(derived_public, public_key);
        let address = w["address"].as_str().unwrap();
        if chain == "ethereum" {
            // EIP-55 only changes letter case (its checksum is pinned by the unit vectors).
            assert_eq!(derived_address, address.to_ascii_lowercase());
        } else {
            assert_eq!(derived_address, address);
        }
        // The private key never reaches the audit trail.
        for action in ["treasury.export", "treasury.sign", "treasury.generate"] {
            let text = Value::Array(t.api.events(action).await).to_string();
            assert!(!text.contains(exported["private_key_hex"].as_str().unwrap()));
        }
    }
    // Bad sign inputs are typed errors.
    for body in [
        json!({}),
        json!({"digest_hex": "00", "message": "x"}),
        json!({"digest_hex": "zz".repeat(32)}),
        json!({"digest_hex": "00".repeat(31)}),
    ] {
        let (status, answer) = t.api.sign("ethereum", body, None).await;
        assert_eq!(status, 400, "{answer}");
    }
    let (status, _) = t.api.sign("dogecoin", json!({"message": "x"}), None).await;
    assert_eq!(status, 404);
    let (status, listed) = t
        .api
        .call(Method::GET, "/v1/treasury/wallets", None, &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["wallets"].as_array().unwrap().len(), 3);
    for action in [
        "treasury.generate",
        "treasury.sign",
        "treasury.export",
        "treasury.get",
        "treasury.list",
    ] {
        assert!(
            !t.api.events(action).await.is_empty(),
            "{action} not audited"
        );
    }
    t.live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_custody_needs_the_right_client_share() {
    let t = start(BillingTier::Pro).await;
    let (status, list) = t.api.generate(json!({})).await;
    assert_eq!(status, 201, "{list}");
    let eth_share = wallet(&list, "ethereum")["client_share"].as_str().unwrap();
    let btc_share = wallet(&list, "bitcoin")["client_share"].as_str().unwrap();
    let message = json!({"message": "pay"});

    let (status, body) = t.api.sign("ethereum", message.clone(), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "urn:mpc-vault:problem:client-share-missing");
    let (status, body) = t
        .api
        .sign("ethereum", message.clone(), Some("not base64!"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "urn:mpc-vault:problem:client-share-malformed");
    // Another key's share is refused.
    let (status, body) = t
        .api
        .sign("ethereum", message.clone(), Some(btc_share))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:mpc-vault:problem:client-share-foreign");
    let (status, body) = t.api.export("ethereum", None).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = t
        .api
        .sign("ethereum", message.clone(), Some(eth_share))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, exported) = t.api.export("ethereum", Some(eth_share)).await;
    assert_eq!(status, 200, "{exported}");
    let (public, _) = derive("ethereum", &unhex(&exported["private_key_hex"]));
    assert_eq!(public, unhex(&wallet(&list, "ethereum")["public_key_hex"]));
    t.live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_scoped_keys_and_direct_access_to_the_system_vault_are_refused() {
    let t = start(BillingTier::Business).await;
    let (status, list) = t.api.generate(json!({"chains": ["ethereum"]})).await;
    assert_eq!(status, 201, "{list}");
    let vault = system_vault_id(&t.api).await;
    let path = "users/admin/chains/ethereum/private_key";

    // An agent: 403 on every treasury endpoint.
    let (status, agent) = t
        .api
        .call(
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "bot"})),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let agent = t.api.as_key(agent["api_key"].as_str().unwrap());
    // A scoped key (to an ordinary vault): 403 as well.
    let (status, other) = t
        .api
        .call(
            Method::POST,
            "/v1/vaults",
            Some(json!({"name": "ops"})),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    let other_id = other["id"].as_str().unwrap().to_owned();
    let (status, scoped) = t
        .api
        .call(
            Method::POST,
            "/v1/auth/api-keys",
            Some(json!({"name": "ci", "vault_ids": [other_id]})),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{scoped}");
    let scoped = t.api.as_key(scoped["key"].as_str().unwrap());
    for caller in [&agent, &scoped] {
        for (method, route, body) in [
            (
                Method::POST,
                "/v1/treasury/wallets/generate",
                Some(json!({})),
            ),
            (Method::GET, "/v1/treasury/wallets", None),
            (Method::GET, "/v1/treasury/wallets/ethereum", None),
            (
                Method::POST,
                "/v1/treasury/wallets/ethereum/sign",
                Some(json!({"message": "x"})),
            ),
            (Method::POST, "/v1/treasury/wallets/ethereum/export", None),
            (Method::POST, "/v1/treasury/wallets/ethereum/rotate", None),
            (Method::DELETE, "/v1/treasury/wallets/ethereum", None),
        ] {
            let (status, body) = caller
                .call(
                    method.clone(),
                    route,
                    body,
                    &[("x-confirm-export", "ethereum")],
                )
                .await;
            assert_eq!(status, 403, "{method} {route}: {body}");
        }
    }

    // The owner cannot reach the system vault through the vault and secret routes.
    for (method, route, body) in [
        (
            Method::GET,
            format!("/v1/vaults/{vault}/secrets/{path}"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/vaults/{vault}/secret-version/{path}/1"),
            None,
        ),
        (
            Method::PUT,
            format!("/v1/vaults/{vault}/secrets/{path}"),
            Some(json!({"value": "00"})),
        ),
        (
            Method::DELETE,
            format!("/v1/vaults/{vault}/secrets/{path}"),
            None,
        ),
        (Method::GET, format!("/v1/vaults/{vault}/secrets"), None),
        (
            Method::GET,
            format!("/v1/vaults/{vault}/secret-versions/{path}"),
            None,
        ),
        (Method::GET, format!("/v1/vaults/{vault}"), None),
        (Method::DELETE, format!("/v1/vaults/{vault}"), None),
        (Method::GET, format!("/v1/vaults/{vault}/policies"), None),
        (
            Method::POST,
            format!("/v1/vaults/{vault}/mpc"),
            Some(json!({"custody_mode": "standard"})),
        ),
    ] {
        let (status, body) = t.api.call(method.clone(), &route, body, &[]).await;
        assert_eq!(status, 403, "{method} {route}: {body}");
    }
    // Hidden from the vault list; its name is reserved.
    let (_, vaults) = t.api.call(Method::GET, "/v1/vaults", None, &[]).await;
    let names: Vec<&str> = vaults["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops"]);
    let (status, _) = t
        .api
        .call(
            Method::POST,
            "/v1/vaults",
            Some(json!({"name": "__treasury-keys"})),
            &[],
        )
        .await;
    assert_eq!(status, 400);
    // The wallet still works for its owner.
    let (status, body) = t.api.sign("ethereum", json!({"message": "x"}), None).await;
    assert_eq!(status, 200, "{body}");
    t.live.shutdown().await;
}

/// Three local providers; `gcp` gets a short timeout but retries far longer than the request
/// timeout, so a sign that waited for it would time out (as in the resilience tests).
const RESILIENCE: &str = r#"
    tier = "business"
    [providers.gcp]
    backend = "local"
    timeout_ms = 400
    retry_attempts = 20
    retry_base_delay_ms = 200
    retry_max_delay_ms = 2000
    retry_budget_ms = 60000
    [providers.aws]
    backend = "local"
    [providers.azure]
    backend = "local"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_in_the_business_tier_still_signs() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        Config::from_toml_str(RESILIENCE)
            .unwrap()
            .with_data_dir(dir.path())
            .with_request_timeout(Duration::from_secs(5))
    };
    let t = start_in(config(), None).await;
    let (status, list) = t.api.generate(json!({"chains": ["bitcoin"]})).await;
    assert_eq!(status, 201, "{list}");
    assert_eq!(treasury_custody(&t.api).await, "2of3_multi_hsm");
    let admin = t.api.auth.clone();
    t.live.shutdown().await;

    // Restart with `gcp` hanging on every call.
    let server =
        VaultServer::open_instrumented(config(), |name, provider: Arc<dyn KeyProvider>| {
            if name == "gcp" {
                Arc::new(FaultInjector::new(provider, FaultConfig::new(1).hang_rate(1.0)).unwrap())
                    as Arc<dyn KeyProvider>
            } else {
                provider
            }
        })
        .await
        .unwrap();
    let live = LiveServer::serve(server).await;
    let api = Api::new(&live, admin.trim_start_matches("Bearer "));
    let digest = [7u8; 32];
    let (status, signed) = api
        .sign("bitcoin", json!({"digest_hex": hex::encode(digest)}), None)
        .await;
    assert_eq!(status, 200, "{signed}");
    assert_signed_by(
        "bitcoin",
        &unhex(&wallet(&list, "bitcoin")["public_key_hex"]),
        &signed,
        &digest,
    );
    live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_the_key_and_deletion_removes_it() {
    rotation_and_deletion(start(BillingTier::Pro).await).await;
}

/// The same lifecycle on PostgreSQL, where the wallet writes are the PostgreSQL store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_replaces_the_key_and_deletion_removes_it_on_postgres() {
    let cluster = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default_config()
        .with_data_dir(dir.path())
        .with_billing_tier(BillingTier::Pro)
        .with_database(cluster.database("treasury").await);
    rotation_and_deletion(start_in(config, Some(dir)).await).await;
}

async fn rotation_and_deletion(t: Live) {
    let (status, list) = t
        .api
        .generate(json!({"chains": ["solana", "ethereum"]}))
        .await;
    assert_eq!(status, 201, "{list}");
    let old = wallet(&list, "ethereum").clone();
    let old_share = old["client_share"].as_str().unwrap();
    let old_public = unhex(&old["public_key_hex"]);

    let (status, new) = t
        .api
        .call(
            Method::POST,
            "/v1/treasury/wallets/ethereum/rotate",
            None,
            &[],
        )
        .await;
    assert_eq!(status, 201, "{new}");
    assert_ne!(new["address"], old["address"]);
    assert_ne!(new["id"], old["id"]);
    let new_share = new["client_share"].as_str().unwrap();
    assert_ne!(new_share, old_share);

    // The old key cannot sign any more: its share belongs to a deleted version.
    let (status, body) = t
        .api
        .sign("ethereum", json!({"message": "x"}), Some(old_share))
        .await;
    assert_eq!(status, 403, "{body}");
    let digest = [1u8; 32];
    let (status, signed) = t
        .api
        .sign(
            "ethereum",
            json!({"digest_hex": hex::encode(digest)}),
            Some(new_share),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    assert_signed_by("ethereum", &unhex(&new["public_key_hex"]), &signed, &digest);
    let (status, exported) = t.api.export("ethereum", Some(new_share)).await;
    assert_eq!(status, 200);
    let (public, _) = derive("ethereum", &unhex(&exported["private_key_hex"]));
    assert_ne!(public, old_public);
    assert_eq!(public, unhex(&new["public_key_hex"]));
    let (_, listed) = t
        .api
        .call(Method::GET, "/v1/treasury/wallets", None, &[])
        .await;
    assert_eq!(listed["wallets"].as_array().unwrap().len(), 2);
    assert_eq!(wallet(&listed, "ethereum")["address"], new["address"]);

    // Delete: gone for good; a new generate makes a new key.
    let (status, _) = t
        .api
        .call(Method::DELETE, "/v1/treasury/wallets/solana", None, &[])
        .await;
    assert_eq!(status, 204);
    let (status, _) = t
        .api
        .call(Method::GET, "/v1/treasury/wallets/solana", None, &[])
        .await;
    assert_eq!(status, 404);
    let solana_share = wallet(&list, "solana")["client_share"].as_str().unwrap();
    let (status, _) = t
        .api
        .sign("solana", json!({"message": "x"}), Some(solana_share))
        .await;
    assert_eq!(status, 404);
    let (status, again) = t.api.generate(json!({"chains": ["solana"]})).await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(
        wallet(&again, "solana")["address"],
        wallet(&list, "solana")["address"]
    );
    for action in ["treasury.rotate", "treasury.delete"] {
        assert!(
            !t.api.events(action).await.is_empty(),
            "{action} not audited"
        );
    }
    t.live.shutdown().await;
}
