//! The configuration file as written: a raw, stringly form whose values (durations, paths,
//! secrets) the validator checks, collecting every problem instead of stopping at the first.

use std::path::PathBuf;

use serde::Deserialize;

use crate::notify::ChannelConfig;

/// A section written with nothing under it (`kubernetes:` and only comments) is its default.
pub(super) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConfig {
    pub(super) namespace: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) git: RawGit,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) control: RawControl,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) kubernetes: RawKube,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) prometheus: RawPrometheus,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) server: RawServer,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) leader_election: RawLease,
    pub(super) shutdown_grace: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) retry: RawRetry,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) notifications: Vec<ChannelConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawGit {
    pub(super) url: Option<String>,
    pub(super) branch: Option<String>,
    pub(super) status_branch: Option<String>,
    pub(super) plans: Option<String>,
    pub(super) status_folder: Option<String>,
    pub(super) poll_interval: Option<String>,
    pub(super) coalesce_window: Option<String>,
    pub(super) max_plan_bytes: Option<usize>,
    pub(super) auth: Option<RawGitAuth>,
    pub(super) ca_bundle: Option<PathBuf>,
    pub(super) author: Option<RawIdentity>,
    pub(super) committer: Option<RawIdentity>,
    pub(super) signing_key: Option<PathBuf>,
    pub(super) allowed_signers: Option<PathBuf>,
    pub(super) push_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawIdentity {
    pub(super) name: String,
    pub(super) email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSecret {
    pub(super) file: Option<PathBuf>,
    pub(super) env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawGitAuth {
    pub(super) token: Option<RawUserSecret>,
    pub(super) password: Option<RawUserSecret>,
    pub(super) ssh: Option<RawSsh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawUserSecret {
    pub(super) username: Option<String>,
    #[serde(flatten)]
    pub(super) secret: RawSecretFlat,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSecretFlat {
    pub(super) file: Option<PathBuf>,
    pub(super) env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSsh {
    pub(super) username: Option<String>,
    pub(super) private_key: Option<PathBuf>,
    pub(super) passphrase: Option<RawSecret>,
    pub(super) known_hosts: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawControl {
    #[serde(default)]
    pub(super) allowed_authors: Vec<String>,
    #[serde(default)]
    pub(super) require_signature: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawKube {
    pub(super) kubeconfig: Option<PathBuf>,
    pub(super) context: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPrometheus {
    pub(super) url: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) bearer_token_file: Option<PathBuf>,
    pub(super) basic_auth: Option<RawBasic>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) reporter: Option<String>,
    pub(super) health_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawBasic {
    pub(super) username: String,
    pub(super) password_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) webhook_secret_file: Option<PathBuf>,
    pub(super) max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLease {
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) lease_name: Option<String>,
    pub(super) lease_duration: Option<String>,
    pub(super) identity: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRetry {
    pub(super) initial_delay: Option<String>,
    pub(super) max_delay: Option<String>,
    pub(super) report_after: Option<String>,
}
