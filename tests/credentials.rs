//! Credentials end to end: the runbook client's default chain, STS and the
//! metadata service of the simulator over loopback HTTP, with real
//! signatures, issued SecurityTokens and their expiry.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use runbook::cloud::client::{ClientOptions, RpcClient};
use runbook::cloud::credentials::{CredentialSource, Credentials, CredentialsError};
use runbook::cloud::provider::{self, CredentialsProvider};
use runbook::cloud::sts::{self, RoleRequest};
use runbook::cloud::{ActionRequest, CloudApi, Endpoints};
use runbook::sim::{self, Fixtures, SimConfig, SimHandle};

pub(crate) const OWN_ID: &str = "LTAIsimOwnKey0001";
pub(crate) const OWN_SECRET: &str = "own-secret";
/// A user of account 1111 (fixtures), trusted by the role of account 2222.
pub(crate) const OPS_ID: &str = "LTAIopsKey0000001";
pub(crate) const OPS_SECRET: &str = "ops-secret";
pub(crate) const MAINT_ROLE: &str = "acs:ram::2222222222222222:role/maint";
pub(crate) const DW_ROLE: &str = "acs:ram::3333333333333333:role/dataworks-ops";
pub(crate) const OIDC_PROVIDER: &str = "acs:ram::1111111111111111:oidc-provider/ack-rrsa";

/// Two accounts' roles, an ECS instance role, a credentials URI role.
pub(crate) fn identities(session_lifetime: Option<&str>) -> String {
    format!(
        "identities:
  users:
    - {{ access_key_id: {OPS_ID}, access_key_secret: {OPS_SECRET}, arn: 'acs:ram::1111111111111111:user/ops' }}
  roles:
    - arn: '{MAINT_ROLE}'
      trusted: ['acs:ram::1111111111111111:user/ops', '{OIDC_PROVIDER}', 'acs:ram::1000000000000001:root']
    - arn: '{DW_ROLE}'
      trusted: ['acs:ram::1111111111111111:root', 'acs:ram::1000000000000001:root', '{MAINT_ROLE}']
    - arn: 'acs:ram::2222222222222222:role/ecs-maint'
      trusted: ['*']
    - arn: 'acs:ram::2222222222222222:role/locked'
      trusted: []
  ecs_role: ecs-maint
  imds_token_required: true
  credentials_uri_role: 'acs:ram::2222222222222222:role/ecs-maint'
{}",
        session_lifetime.map_or_else(String::new, |l| format!("  session_lifetime: {l}\n"))
    )
}

pub(crate) async fn sim_with(yaml: &str) -> SimHandle {
    sim::spawn(SimConfig {
        credentials: vec![(OWN_ID.to_owned(), OWN_SECRET.to_owned())],
        fixtures: Fixtures::from_yaml(yaml).unwrap(),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn endpoints(sim: &SimHandle) -> Endpoints {
    let mut e = Endpoints::new();
    e.add_flag(&format!("dts={}", sim.base_url())).unwrap();
    e.add_flag(&format!("dataworks={}", sim.base_url()))
        .unwrap();
    e
}

fn client(sim: &SimHandle, credentials: CredentialsProvider) -> RpcClient {
    RpcClient::with_provider(credentials, endpoints(sim), ClientOptions::default())
        .unwrap()
        .with_sts_endpoint(&sim.base_url())
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Sync + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn status_read() -> ActionRequest {
    let spec = runbook::cloud::actions::lookup("dts.DescribeDtsJobDetail").unwrap();
    ActionRequest::typed(
        spec,
        "cn-hangzhou",
        BTreeMap::from([("DtsJobId".to_owned(), "j1".to_owned())]),
    )
}

fn count(sim: &SimHandle, action: &str) -> usize {
    sim.calls()
        .iter()
        .filter(|c| c.action.as_deref() == Some(action))
        .count()
}

#[tokio::test]
async fn get_caller_identity_names_the_signing_principal() {
    let sim = sim_with(&identities(None)).await;
    let own = client(
        &sim,
        CredentialsProvider::fixed(Credentials::new(OWN_ID, OWN_SECRET, None)),
    );
    let me = own.caller_identity(None).await.unwrap();
    assert_eq!(me.arn, "acs:ram::1000000000000001:user/sim");
    assert_eq!(me.account_id, runbook::sim::SIM_ACCOUNT);
    assert_eq!(me.identity_type, "RAMUser");
    assert!(me.request_id.is_some());

    let ops = client(
        &sim,
        CredentialsProvider::fixed(Credentials::new(OPS_ID, OPS_SECRET, None)),
    );
    let who = ops.caller_identity(None).await.unwrap();
    assert_eq!(who.arn, "acs:ram::1111111111111111:user/ops");
    // A wrong secret is refused like any signed call.
    let bad = client(
        &sim,
        CredentialsProvider::fixed(Credentials::new(OPS_ID, "nope", None)),
    );
    let e = bad.caller_identity(None).await.unwrap_err();
    assert_eq!(e.code, "SignatureDoesNotMatch", "{e}");
}

#[tokio::test]
async fn assume_role_crosses_accounts_and_the_token_is_checked() {
    let sim = sim_with(&identities(Some("3s"))).await;
    let base = std::sync::Arc::new(CredentialsProvider::fixed(Credentials::new(
        OPS_ID, OPS_SECRET, None,
    )));
    let ops = client(
        &sim,
        CredentialsProvider::fixed(Credentials::new(OPS_ID, OPS_SECRET, None)),
    )
    .with_session_name("nightly");
    let who = ops.caller_identity(Some(MAINT_ROLE)).await.unwrap();
    assert_eq!(
        who.arn,
        "acs:ram::2222222222222222:assumed-role/maint/nightly"
    );
    assert_eq!(who.account_id, "2222222222222222");
    assert_eq!(who.identity_type, "AssumedRoleUser");

    // Not trusted, unknown.
    let e = ops
        .caller_identity(Some("acs:ram::2222222222222222:role/locked"))
        .await
        .unwrap_err();
    assert!(e.message.contains("NoPermission"), "{e}");
    let e = ops
        .caller_identity(Some("acs:ram::9:role/none"))
        .await
        .unwrap_err();
    assert!(e.message.contains("EntityNotExist.Role"), "{e}");

    // The issued credentials: the token must match and they expire.
    let role = CredentialsProvider::assume_role(base, RoleRequest::new(MAINT_ROLE, "s1"));
    let issued = role.current(&ops).await.unwrap();
    assert!(issued.access_key_id().starts_with("STS."));
    assert!(issued.expiration().is_some());
    let forged = Credentials::new(
        issued.access_key_id(),
        issued.access_key_secret().expose(),
        Some("CAISforged".to_owned()),
    );
    let e = ops.caller_identity_of(&forged).await.unwrap_err();
    assert_eq!(e.code, "InvalidSecurityToken.MismatchWithAccessKey");
    let no_token = Credentials::new(
        issued.access_key_id(),
        issued.access_key_secret().expose(),
        None,
    );
    let e = ops.caller_identity_of(&no_token).await.unwrap_err();
    assert_eq!(e.code, "MissingSecurityToken");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ops.caller_identity_of(&issued).await {
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(_) => panic!("the 3 s credentials never expired"),
            Err(e) => {
                assert_eq!(e.code, "InvalidSecurityToken.Expired", "{e}");
                assert!(
                    !e.message
                        .contains(issued.security_token().unwrap().expose())
                );
                break;
            }
        }
    }
}

#[tokio::test]
async fn calls_keep_working_across_expiry_because_credentials_are_refreshed() {
    let sim = sim_with(&format!(
        "dts_jobs:\n  - {{ id: j1 }}\n{}",
        identities(Some("3s"))
    ))
    .await;
    let base = std::sync::Arc::new(CredentialsProvider::fixed(Credentials::new(
        OPS_ID, OPS_SECRET, None,
    )));
    let provider = CredentialsProvider::assume_role(base, RoleRequest::new(MAINT_ROLE, "long"));
    let api = client(&sim, provider);
    // About three lifetimes of calls: none may fail on an expired token.
    let until = Instant::now() + Duration::from_secs(8);
    let mut calls = 0;
    while Instant::now() < until {
        api.call(&status_read()).await.unwrap();
        calls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(calls > 10);
    let assumed = count(&sim, "AssumeRole");
    assert!(
        (3..calls).contains(&assumed),
        "refreshed {assumed} times for {calls} calls"
    );
    assert!(
        sim.calls()
            .iter()
            .all(|c| c.code.as_deref() != Some("InvalidSecurityToken.Expired"))
    );
}

#[tokio::test]
async fn a_refresh_failure_sends_nothing_and_names_the_source() {
    let sim = sim_with(&identities(None)).await;
    let base = std::sync::Arc::new(CredentialsProvider::fixed(Credentials::new(
        OPS_ID, OPS_SECRET, None,
    )));
    let provider = CredentialsProvider::assume_role(
        base,
        RoleRequest::new("acs:ram::2222222222222222:role/locked", "x"),
    );
    let api = client(&sim, provider);
    let e = api.call(&status_read()).await.unwrap_err();
    assert_eq!(e.code, runbook::cloud::client::CREDENTIALS_UNAVAILABLE);
    assert!(
        e.message
            .contains("role acs:ram::2222222222222222:role/locked"),
        "{e}"
    );
    assert_eq!(count(&sim, "DescribeDtsJobDetail"), 0);
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Resolves the chain against the simulator and says who it signs as.
async fn chain(
    sim: &SimHandle,
    profile: Option<&str>,
    vars: &[(&str, &str)],
) -> Result<(CredentialSource, String), CredentialsError> {
    let sts_url = sim.base_url();
    let mut all: Vec<(&str, &str)> = vec![
        (sts::ENV_STS_ENDPOINT, sts_url.as_str()),
        (provider::ENV_ECS_METADATA_DISABLED, "true"),
    ];
    all.extend_from_slice(vars);
    // A later pair overrides an earlier one.
    let lookup = env(&all
        .iter()
        .rev()
        .fold(Vec::new(), |mut acc: Vec<(&str, &str)>, p| {
            if !acc.iter().any(|(k, _)| *k == p.0) {
                acc.push(*p);
            }
            acc
        }));
    let client =
        RpcClient::from_chain(profile, &lookup, endpoints(sim), ClientOptions::default()).await?;
    let source = client.credentials().source();
    let who = client
        .caller_identity(None)
        .await
        .map_err(|e| CredentialsError::Unavailable {
            source_name: "test".into(),
            reason: e.to_string(),
        })?;
    Ok((source, who.arn))
}

#[tokio::test]
async fn every_source_of_the_default_chain_works_against_the_simulator() {
    let sim = sim_with(&identities(None)).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_owned();
    let token = write(dir.path(), "oidc/token", "eyJhbGciOi.sim.token\n");
    let uri = format!("{}/credentials", sim.base_url());
    let config = format!(
        r#"{{"current": "ak", "profiles": [
  {{"name": "ak", "mode": "AK", "access_key_id": "{OPS_ID}", "access_key_secret": "{OPS_SECRET}", "region_id": "cn-shanghai"}},
  {{"name": "sts", "mode": "StsToken", "access_key_id": "{OPS_ID}", "access_key_secret": "{OPS_SECRET}", "sts_token": "x"}},
  {{"name": "role", "mode": "RamRoleArn", "access_key_id": "{OPS_ID}", "access_key_secret": "{OPS_SECRET}", "ram_role_arn": "{MAINT_ROLE}", "ram_session_name": "prof"}},
  {{"name": "chain", "mode": "ChainableRamRoleArn", "source_profile": "role", "ram_role_arn": "{DW_ROLE}", "ram_session_name": "chained"}},
  {{"name": "ecs", "mode": "EcsRamRole", "ram_role_name": "ecs-maint"}},
  {{"name": "oidc", "mode": "OIDC", "ram_role_arn": "{MAINT_ROLE}", "oidc_provider_arn": "{OIDC_PROVIDER}", "oidc_token_file": "{token}"}},
  {{"name": "uri", "mode": "CredentialsURI", "credentials_uri": "{uri}"}},
  {{"name": "sso", "mode": "CloudSSO"}},
  {{"name": "half", "mode": "RamRoleArn", "access_key_id": "{OPS_ID}", "access_key_secret": "{OPS_SECRET}"}}
]}}"#
    );
    write(dir.path(), ".aliyun/config.json", &config);
    let meta = sim.base_url();
    let home_only: &[(&str, &str)] = &[("HOME", &home)];

    // 1. The environment comes first.
    let (source, arn) = chain(
        &sim,
        None,
        &[
            ("HOME", &home),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", OWN_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OWN_SECRET),
            (provider::ENV_ROLE_ARN, MAINT_ROLE),
        ],
    )
    .await
    .unwrap();
    assert_eq!(source, CredentialSource::Environment);
    assert_eq!(arn, "acs:ram::1000000000000001:user/sim");

    // 2. Then the OIDC role (RRSA).
    let oidc: &[(&str, &str)] = &[
        ("HOME", &home),
        (provider::ENV_ROLE_ARN, MAINT_ROLE),
        (provider::ENV_OIDC_PROVIDER_ARN, OIDC_PROVIDER),
        (provider::ENV_OIDC_TOKEN_FILE, &token),
        (provider::ENV_ROLE_SESSION_NAME, "rrsa"),
    ];
    let (source, arn) = chain(&sim, None, oidc).await.unwrap();
    assert!(
        matches!(source, CredentialSource::OidcRole { .. }),
        "{source}"
    );
    assert_eq!(arn, "acs:ram::2222222222222222:assumed-role/maint/rrsa");
    // The token never reaches the call log.
    let logged = serde_json::to_string(&sim.calls()).unwrap();
    assert!(!logged.contains("sim.token"), "{logged}");
    // Partly configured: an error naming the missing variable.
    let e = chain(&sim, None, &oidc[..3]).await.unwrap_err();
    assert!(
        e.to_string().contains(provider::ENV_OIDC_TOKEN_FILE) && e.to_string().contains("OIDC"),
        "{e}"
    );

    // 3. The aliyun CLI's profiles, in every mode.
    let (source, arn) = chain(&sim, None, home_only).await.unwrap();
    assert!(
        matches!(source, CredentialSource::AliyunProfile { .. }),
        "{source}"
    );
    assert_eq!(arn, "acs:ram::1111111111111111:user/ops");
    let (_, arn) = chain(&sim, Some("role"), home_only).await.unwrap();
    assert_eq!(arn, "acs:ram::2222222222222222:assumed-role/maint/prof");
    let (source, arn) = chain(&sim, Some("chain"), home_only).await.unwrap();
    assert_eq!(
        arn,
        "acs:ram::3333333333333333:assumed-role/dataworks-ops/chained"
    );
    assert!(source.to_string().contains("assumed with role"), "{source}");
    let (_, arn) = chain(
        &sim,
        Some("ecs"),
        &[
            ("HOME", &home),
            (provider::ENV_ECS_METADATA_ENDPOINT, &meta),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        arn,
        "acs:ram::2222222222222222:assumed-role/ecs-maint/ecs-instance"
    );
    let (_, arn) = chain(&sim, Some("oidc"), home_only).await.unwrap();
    assert!(
        arn.starts_with("acs:ram::2222222222222222:assumed-role/maint/"),
        "{arn}"
    );
    let (source, arn) = chain(&sim, Some("uri"), home_only).await.unwrap();
    assert!(
        matches!(source, CredentialSource::CredentialsUri { .. }),
        "{source}"
    );
    assert_eq!(
        arn,
        "acs:ram::2222222222222222:assumed-role/ecs-maint/credentials-uri"
    );
    let e = chain(&sim, Some("sso"), home_only).await.unwrap_err();
    assert!(e.to_string().contains("mode `CloudSSO`"), "{e}");
    let e = chain(&sim, Some("half"), home_only).await.unwrap_err();
    assert!(e.to_string().contains("ram_role_arn"), "{e}");
    let (source, _) = chain(&sim, Some("sts"), home_only).await.unwrap();
    assert!(source.to_string().contains("profile `sts`"), "{source}");

    // 4. The ECS instance role, IMDSv2 style (the simulator requires the token).
    let empty = tempfile::tempdir().unwrap();
    let nohome = empty.path().to_str().unwrap();
    let (source, arn) = chain(
        &sim,
        None,
        &[
            ("HOME", nohome),
            (provider::ENV_ECS_METADATA_DISABLED, "false"),
            (provider::ENV_ECS_METADATA_ENDPOINT, &meta),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        source,
        CredentialSource::EcsRamRole {
            role: "ecs-maint".into()
        }
    );
    assert_eq!(
        arn,
        "acs:ram::2222222222222222:assumed-role/ecs-maint/ecs-instance"
    );
    let calls = sim.calls();
    let token_put = calls
        .iter()
        .position(|c| c.action.as_deref() == Some("MetadataToken") && c.method == "PUT")
        .expect("a session token was asked for");
    let creds_get = calls
        .iter()
        .rposition(|c| c.action.as_deref() == Some("MetadataCredentials"))
        .unwrap();
    assert!(token_put < creds_get);
    assert_eq!(calls[creds_get].http_status, Some(200));

    // 5. The credentials URI, last.
    let (source, arn) = chain(
        &sim,
        None,
        &[("HOME", nohome), (provider::ENV_CREDENTIALS_URI, &uri)],
    )
    .await
    .unwrap();
    assert!(
        matches!(source, CredentialSource::CredentialsUri { .. }),
        "{source}"
    );
    assert!(
        arn.ends_with("assumed-role/ecs-maint/credentials-uri"),
        "{arn}"
    );

    // Nothing anywhere: every source is listed.
    let e = chain(&sim, None, &[("HOME", nohome)]).await.unwrap_err();
    let text = e.to_string();
    for what in [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ROLE_ARN",
        ".aliyun/config.json: no such file",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED=true",
        "ALIBABA_CLOUD_CREDENTIALS_URI",
    ] {
        assert!(text.contains(what), "{what}: {text}");
    }
    // Half an AccessKey is an error, not a skip to the next source.
    let e = chain(
        &sim,
        None,
        &[("HOME", &home), ("ALIBABA_CLOUD_ACCESS_KEY_ID", OPS_ID)],
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{e}"
    );
}

/// The libraries' INI credentials file, between the aliyun CLI profile and
/// the ECS instance role: every type against the simulator's STS and
/// metadata service, its place in the chain, and partial sections.
#[tokio::test]
async fn the_credentials_file_works_in_every_type_at_its_place_in_the_chain() {
    use runbook::cloud::credentials_file::ENV_CREDENTIALS_FILE;
    let sim = sim_with(&identities(None)).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_owned();
    let token = write(dir.path(), "oidc/token", "eyJhbGciOi.sim.token\n");
    let meta = sim.base_url();
    let ini = format!(
        "# the libraries' credentials file\n\
         [default]\n\
         type = access_key\n\
         access_key_id = {OPS_ID}\n\
         access_key_secret = {OPS_SECRET}\n\
         \n\
         [role]\n\
         type = ram_role_arn\n\
         access_key_id = {OPS_ID}\n\
         access_key_secret = {OPS_SECRET}\n\
         role_arn = {MAINT_ROLE}\n\
         role_session_name = from-ini\n\
         \n\
         [ecs]\n\
         type = ecs_ram_role\n\
         role_name = ecs-maint\n\
         \n\
         [oidc]\n\
         type = oidc_role_arn\n\
         role_arn = {MAINT_ROLE}\n\
         oidc_provider_arn = {OIDC_PROVIDER}\n\
         oidc_token_file_path = {token}\n\
         role_session_name = ini-oidc\n\
         \n\
         [rsa]\n\
         type = rsa_key_pair\n\
         public_key_id = x\n"
    );
    let path = write(dir.path(), ".alibabacloud/credentials", &ini);
    let home_only: &[(&str, &str)] = &[("HOME", &home)];

    // `default` with no aliyun CLI config: an AccessKey.
    let (source, arn) = chain(&sim, None, home_only).await.unwrap();
    assert_eq!(
        source,
        CredentialSource::CredentialsFile {
            path: path.clone().into(),
            section: "default".into()
        }
    );
    assert_eq!(arn, "acs:ram::1111111111111111:user/ops");
    // ALIBABA_CLOUD_PROFILE picks the section: a role, assumed for 3600 s
    // with the file's session name.
    let (source, arn) = chain(
        &sim,
        None,
        &[("HOME", &home), ("ALIBABA_CLOUD_PROFILE", "role")],
    )
    .await
    .unwrap();
    assert_eq!(arn, "acs:ram::2222222222222222:assumed-role/maint/from-ini");
    assert!(source.to_string().contains("section [role] of"), "{source}");
    let assumed = sim
        .calls()
        .into_iter()
        .rfind(|c| c.action.as_deref() == Some("AssumeRole"))
        .unwrap();
    assert_eq!(assumed.param("DurationSeconds"), Some("3600"));
    assert_eq!(assumed.param("RoleSessionName"), Some("from-ini"));
    // The ECS instance role of the file, through the metadata service.
    let (_, arn) = chain(
        &sim,
        None,
        &[
            ("HOME", &home),
            ("ALIBABA_CLOUD_PROFILE", "ecs"),
            (provider::ENV_ECS_METADATA_ENDPOINT, &meta),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        arn,
        "acs:ram::2222222222222222:assumed-role/ecs-maint/ecs-instance"
    );
    // An OIDC role (credentials-python's type).
    let (_, arn) = chain(
        &sim,
        None,
        &[("HOME", &home), ("ALIBABA_CLOUD_PROFILE", "oidc")],
    )
    .await
    .unwrap();
    assert_eq!(arn, "acs:ram::2222222222222222:assumed-role/maint/ini-oidc");
    // rsa_key_pair is refused, naming the line and the supported types.
    let e = chain(
        &sim,
        None,
        &[("HOME", &home), ("ALIBABA_CLOUD_PROFILE", "rsa")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{path}:26: type `rsa_key_pair` (STS GenerateSessionAccessKey, Japan site only) is not supported; types: access_key, ecs_ram_role, ram_role_arn, oidc_role_arn"
        )
    );
    // A section that is in neither file is an error, not a skip.
    let e = chain(
        &sim,
        None,
        &[("HOME", &home), ("ALIBABA_CLOUD_PROFILE", "nope")],
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");

    // The environment and the aliyun CLI profile come first.
    let (source, _) = chain(
        &sim,
        None,
        &[
            ("HOME", &home),
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", OWN_ID),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", OWN_SECRET),
        ],
    )
    .await
    .unwrap();
    assert_eq!(source, CredentialSource::Environment);
    write(
        dir.path(),
        ".aliyun/config.json",
        &format!(
            r#"{{"current": "ak", "profiles": [{{"name": "ak", "mode": "AK", "access_key_id": "{OWN_ID}", "access_key_secret": "{OWN_SECRET}"}}]}}"#
        ),
    );
    let (source, _) = chain(&sim, None, home_only).await.unwrap();
    assert!(
        matches!(source, CredentialSource::AliyunProfile { .. }),
        "{source}"
    );
    // ... unless ALIBABA_CLOUD_PROFILE names a section only the file has.
    let (_, arn) = chain(
        &sim,
        None,
        &[("HOME", &home), ("ALIBABA_CLOUD_PROFILE", "role")],
    )
    .await
    .unwrap();
    assert_eq!(arn, "acs:ram::2222222222222222:assumed-role/maint/from-ini");
    // --profile means the aliyun CLI profile: the file is not read.
    let e = chain(&sim, Some("role"), home_only).await.unwrap_err();
    assert!(e.to_string().contains("no profile `role`"), "{e}");
    std::fs::remove_file(dir.path().join(".aliyun/config.json")).unwrap();

    // ALIBABA_CLOUD_CREDENTIALS_FILE, and credentials-python's file name.
    let other = write(
        dir.path(),
        "elsewhere.ini",
        &format!(
            "[default]\ntype=access_key\naccess_key_id={OWN_ID}\naccess_key_secret={OWN_SECRET}\n"
        ),
    );
    let (source, _) = chain(
        &sim,
        None,
        &[("HOME", &home), (ENV_CREDENTIALS_FILE, &other)],
    )
    .await
    .unwrap();
    assert!(source.to_string().contains("elsewhere.ini"), "{source}");
    let py_home = tempfile::tempdir().unwrap();
    let py = write(
        py_home.path(),
        ".alibabacloud/credentials.ini",
        &std::fs::read_to_string(&other).unwrap(),
    );
    let (source, _) = chain(&sim, None, &[("HOME", py_home.path().to_str().unwrap())])
        .await
        .unwrap();
    assert_eq!(
        source,
        CredentialSource::CredentialsFile {
            path: py.into(),
            section: "default".into()
        }
    );
    // No file: skipped, and said so when nothing else has credentials.
    let empty = tempfile::tempdir().unwrap();
    let e = chain(&sim, None, &[("HOME", empty.path().to_str().unwrap())])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(".alibabacloud/credentials: no such file"),
        "{e}"
    );
}

/// Every key each type needs, left out or left empty: an error naming the
/// file, the line (the section's, or the empty key's) and the key; never a
/// value of the file.
#[tokio::test]
async fn a_partial_section_of_the_credentials_file_names_the_file_line_and_key() {
    let sim = sim_with(&identities(None)).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_owned();
    let types: &[(&str, &[&str])] = &[
        ("access_key", &["access_key_id", "access_key_secret"]),
        (
            "ram_role_arn",
            &["access_key_id", "access_key_secret", "role_arn"],
        ),
        (
            "oidc_role_arn",
            &["role_arn", "oidc_provider_arn", "oidc_token_file_path"],
        ),
    ];
    for (kind, keys) in types {
        for missing in keys.iter().copied() {
            for empty in [false, true] {
                // Two comment lines first, so the section is on line 3.
                let mut ini = format!("# a\n# b\n[default]\ntype = {kind}\n");
                let mut empty_line = 0;
                for (i, key) in keys.iter().enumerate() {
                    if *key != missing {
                        ini.push_str(&format!("{key} = S3CR3T{i}\n"));
                    } else if empty {
                        ini.push_str(&format!("{key} =\n"));
                        empty_line = ini.lines().count();
                    }
                }
                let path = write(dir.path(), ".alibabacloud/credentials", &ini);
                let e = chain(&sim, None, &[("HOME", &home)]).await.unwrap_err();
                let want = if empty {
                    format!("{path}:{empty_line}: `{missing}` of section [default] is empty")
                } else {
                    format!("{path}:3: section [default] has no `{missing}`, which its type needs")
                };
                assert_eq!(e.to_string(), want, "{kind} without {missing}");
                assert!(!e.to_string().contains("S3CR3T"));
                assert!(e.hint().contains("ALIBABA_CLOUD_CREDENTIALS_FILE"));
            }
        }
    }
    // No type, and a type nobody knows.
    let path = write(
        dir.path(),
        ".alibabacloud/credentials",
        "[default]\naccess_key_id = x\n",
    );
    let e = chain(&sim, None, &[("HOME", &home)]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{path}:1: section [default] has no `type` (one of access_key, ecs_ram_role, ram_role_arn, oidc_role_arn)"
        )
    );
    let path = write(
        dir.path(),
        ".alibabacloud/credentials",
        "[default]\ntype = sts\n",
    );
    let e = chain(&sim, None, &[("HOME", &home)]).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{path}:2: unknown type `sts`")),
        "{e}"
    );
    // Not INI at all: the line, not its text.
    let path = write(
        dir.path(),
        ".alibabacloud/credentials",
        "[default]\nLTAIkeyS3CR3T\n",
    );
    let e = chain(&sim, None, &[("HOME", &home)]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{path}:2: expected `[section]`, `key = value` or a comment")
    );
}

// ---- runs end to end (`runbook run` as a process) ---------------------------------------

use std::process::{Command, Stdio};

use crate::run::{Rig, text};

/// Stops a DTS job as a role of one account and a DataWorks node as a role
/// of another: `defaults.role_arn` and a step's own, templates over params.
const TWO_ACCOUNTS: &str = r#"
name: two-accounts
defaults: { region: cn-hangzhou, role_arn: "{{params.dts_role}}" }
params:
  dts_role: { type: string }
  dw_role: { type: string }
steps:
  - id: stop-dts
    call: dts.StopDtsJob
    with: { DtsJobId: j1 }
  - id: stop-node
    needs: [stop-dts]
    role_arn: "{{params.dw_role}}"
    call: dataworks.StopDISyncInstance
    with: { ProjectId: 10000, FileId: 100, TaskType: DI_REALTIME }
"#;

fn rig_with_identities(lifetime: Option<&str>) -> Rig {
    let fixtures = Fixtures::from_yaml(&identities(lifetime)).unwrap();
    Rig::with("", Duration::ZERO, |c| {
        c.fixtures.identities = fixtures.identities;
    })
}

/// `(request_json identity, action)` of every journaled attempt.
fn journaled_identities(rig: &Rig) -> Vec<(String, String)> {
    rig.journal_texts(
        "SELECT request_json FROM attempts WHERE request_json <> ?1",
        "",
    )
    .into_iter()
    .map(|json| {
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        (
            v["identity"].as_str().unwrap_or("").to_owned(),
            v["action"].as_str().unwrap_or("").to_owned(),
        )
    })
    .collect()
}

#[test]
fn one_run_acts_in_two_accounts_through_role_arn_and_journals_who_made_each_call() {
    let rig = rig_with_identities(None);
    let pb = rig.playbook("two.yaml", TWO_ACCOUNTS);
    let dts_role = format!("dts_role={MAINT_ROLE}");
    let dw_role = format!("dw_role={DW_ROLE}");

    // The plan shows the roles, and they are part of its digest.
    let plan = rig.run(&[
        "plan", &pb, "-p", &dts_role, "-p", &dw_role, "--format", "json",
    ]);
    assert!(plan.status.success(), "{}", text(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["steps"][0]["role_arn"], MAINT_ROLE);
    assert_eq!(plan["steps"][1]["role_arn"], DW_ROLE);
    let other = rig.run(&[
        "plan",
        &pb,
        "-p",
        &format!("dts_role={DW_ROLE}"),
        "-p",
        &dw_role,
        "--format",
        "json",
    ]);
    assert!(other.status.success(), "{}", text(&other));
    let other: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_ne!(plan["digest"], other["digest"]);

    let out = rig.run(&["run", &pb, "-p", &dts_role, "-p", &dw_role, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let caller = |action: &str| {
        rig.calls()
            .iter()
            .find(|c| c.action.as_deref() == Some(action))
            .and_then(|c| c.caller.clone())
            .unwrap_or_default()
    };
    assert!(
        caller("StopDtsJob").starts_with("acs:ram::2222222222222222:assumed-role/maint/"),
        "{}",
        caller("StopDtsJob")
    );
    assert!(
        caller("StopDISyncInstance")
            .starts_with("acs:ram::3333333333333333:assumed-role/dataworks-ops/"),
        "{}",
        caller("StopDISyncInstance")
    );
    let journaled = journaled_identities(&rig);
    assert!(
        journaled.iter().any(|(who, action)| action == "StopDtsJob"
            && who.starts_with("acs:ram::2222222222222222:assumed-role/maint/")),
        "{journaled:?}"
    );
    assert!(
        journaled
            .iter()
            .any(|(who, action)| action == "StopDISyncInstance"
                && who.starts_with("acs:ram::3333333333333333:assumed-role/dataworks-ops/")),
        "{journaled:?}"
    );
    // No key in the journal, ever.
    let requests = rig
        .journal_texts(
            "SELECT request_json FROM attempts WHERE request_json <> ?1",
            "",
        )
        .join("\n");
    assert!(
        !requests.contains("STS."),
        "an issued AccessKeyId reached the journal"
    );
    assert!(!requests.contains(crate::run::SECRET));
    assert!(!requests.contains(crate::run::ID));

    // A role nobody may assume: the run stops before its call (exit 4).
    let locked = rig.playbook(
        "locked.yaml",
        &TWO_ACCOUNTS.replace(
            "{{params.dw_role}}",
            "acs:ram::2222222222222222:role/locked",
        ),
    );
    let before = rig.calls().len();
    let out = rig.run(&["run", &locked, "-p", &dts_role, "-p", &dw_role, "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NoPermission"), "{stderr}");
    assert!(stderr.contains("runbook resume"), "{stderr}");
    let sent: Vec<_> = rig.calls()[before..]
        .iter()
        .filter_map(|c| c.action.clone())
        .collect();
    assert!(!sent.contains(&"StopDISyncInstance".to_owned()), "{sent:?}");

    // A malformed role_arn is a plan error with its position.
    let bad = rig.playbook(
        "bad.yaml",
        &TWO_ACCOUNTS.replace("{{params.dw_role}}", "arn:aws:iam::1:role/x"),
    );
    let out = rig.run(&["plan", &bad, "-p", &dts_role, "-p", &dw_role]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a RAM role ARN"),
        "{}",
        text(&out)
    );
}

#[test]
fn role_arn_on_the_command_line_acts_for_the_whole_run_and_is_kept_by_resume() {
    let rig = rig_with_identities(None);
    let pb = rig.playbook(
        "one.yaml",
        "name: one\ndefaults: { region: cn-hangzhou }\nsteps:\n  - id: stop\n    call: dts.StopDtsJob\n    with: { DtsJobId: j1 }\n",
    );
    let out = rig.run(&["run", &pb, "--yes", "--role-arn", MAINT_ROLE]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stop = rig
        .calls()
        .into_iter()
        .find(|c| c.action.as_deref() == Some("StopDtsJob"))
        .unwrap();
    assert!(
        stop.caller
            .as_deref()
            .is_some_and(|c| c.starts_with("acs:ram::2222222222222222:assumed-role/maint/")),
        "{stop:?}"
    );
    let out = rig.run(&["run", &pb, "--yes", "--role-arn", "maint"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a RAM role ARN"));
}

/// `runbook run` with nothing but the libraries' credentials file: the
/// role of its section signs every call.
#[test]
fn a_run_signs_with_the_credentials_file_alone() {
    let rig = rig_with_identities(None);
    let pb = rig.playbook(
        "one.yaml",
        "name: one\ndefaults: { region: cn-hangzhou }\nsteps:\n  - id: stop\n    call: dts.StopDtsJob\n    with: { DtsJobId: j1 }\n",
    );
    let home = rig.dir.path().join("home");
    write(
        &home,
        ".alibabacloud/credentials",
        &format!(
            "[maint]\ntype = ram_role_arn\naccess_key_id = {OPS_ID}\naccess_key_secret = {OPS_SECRET}\nrole_arn = {MAINT_ROLE}\nrole_session_name = nightly-ini\n"
        ),
    );
    let out = rig
        .cmd(&["run", &pb, "--yes"])
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env_remove("ALIBABA_CLOUD_CONFIG_FILE")
        .env_remove("ALIBABA_CLOUD_CREDENTIALS_FILE")
        .env("HOME", &home)
        .env("ALIBABA_CLOUD_PROFILE", "maint")
        .env(provider::ENV_ECS_METADATA_DISABLED, "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stop = rig
        .calls()
        .into_iter()
        .find(|c| c.action.as_deref() == Some("StopDtsJob"))
        .unwrap();
    assert_eq!(
        stop.caller.as_deref(),
        Some("acs:ram::2222222222222222:assumed-role/maint/nightly-ini")
    );
    assert!(
        journaled_identities(&rig).iter().any(|(who, action)| who
            .ends_with("assumed-role/maint/nightly-ini")
            && action == "StopDtsJob"),
        "{:?}",
        journaled_identities(&rig)
    );
}

#[test]
fn temporary_credentials_expire_and_are_refreshed_during_a_run() {
    // Role sessions live 3 s; the run takes about 8.
    let rig = rig_with_identities(Some("3s"));
    let pb = rig.playbook(
        "long.yaml",
        &format!(
            "name: long\ndefaults: {{ region: cn-hangzhou, role_arn: '{MAINT_ROLE}' }}\nsteps:\n\
             \x20 - id: first\n    call: dts.DescribeDtsJobDetail\n    with: {{ DtsJobId: j1 }}\n\
             \x20 - id: pause\n    needs: [first]\n    sleep: 4s\n\
             \x20 - id: second\n    needs: [pause]\n    call: dts.DescribeDtsJobDetail\n    with: {{ DtsJobId: j1 }}\n\
             \x20 - id: pause2\n    needs: [second]\n    sleep: 4s\n\
             \x20 - id: third\n    needs: [pause2]\n    call: dts.StopDtsJob\n    with: {{ DtsJobId: j1 }}\n"
        ),
    );
    let out = rig.run(&["run", &pb, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = rig.sim().calls();
    let assumed = all
        .iter()
        .filter(|c| c.action.as_deref() == Some("AssumeRole"))
        .count();
    assert!(assumed >= 3, "one session per 3 s: {assumed}");
    assert!(
        all.iter()
            .all(|c| c.code.as_deref() != Some("InvalidSecurityToken.Expired")),
        "no call was signed with expired credentials"
    );
}

#[test]
fn a_refresh_failure_mid_run_exits_4_with_nothing_half_sent_and_the_run_resumes() {
    let rig = rig_with_identities(Some("3s"));
    let token = rig.dir.path().join("rrsa-token");
    std::fs::write(&token, "sim.oidc.token").unwrap();
    let pb = rig.playbook(
        "rrsa.yaml",
        "name: rrsa\ndefaults: { region: cn-hangzhou }\nsteps:\n\
         \x20 - id: first\n    call: dts.DescribeDtsJobDetail\n    with: { DtsJobId: j1 }\n\
         \x20 - id: pause\n    needs: [first]\n    sleep: 5s\n\
         \x20 - id: stop\n    needs: [pause]\n    call: dts.StopDtsJob\n    with: { DtsJobId: j1 }\n",
    );
    let rrsa = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(rig.state())
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
            .env("HOME", rig.dir.path())
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
            .env(provider::ENV_ROLE_ARN, MAINT_ROLE)
            .env(provider::ENV_OIDC_PROVIDER_ARN, OIDC_PROVIDER)
            .env(provider::ENV_OIDC_TOKEN_FILE, &token)
            .env(sts::ENV_STS_ENDPOINT, rig.sim().base_url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        rig.journal.apply(&mut cmd);
        cmd
    };
    let dts = format!("dts={}", rig.sim().base_url());
    let child = rrsa(&["run", &pb, "--yes", "--endpoint", &dts])
        .spawn()
        .unwrap();
    // The first call is made; then the token goes away (a revoked pod identity).
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(rig.sim(), "DescribeDtsJobDetail") == 0 {
        assert!(Instant::now() < deadline, "the first call never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&token).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("OIDC token file"), "{stderr}");
    assert!(stderr.contains("neither journaled nor sent"), "{stderr}");
    assert_eq!(count(rig.sim(), "StopDtsJob"), 0, "the stop was not sent");
    assert!(
        journaled_identities(&rig)
            .iter()
            .all(|(_, action)| action != "StopDtsJob"),
        "the stop was not journaled"
    );
    let first = journaled_identities(&rig);
    assert!(
        first
            .iter()
            .any(|(who, _)| who.starts_with("acs:ram::2222222222222222:assumed-role/maint/")),
        "{first:?}"
    );

    // The token is back: the run goes on where it stopped.
    std::fs::write(&token, "sim.oidc.token").unwrap();
    let run_id = rig.last_run_id();
    let out = rrsa(&["resume", &run_id, "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(rig.sim(), "StopDtsJob"), 1);
}
