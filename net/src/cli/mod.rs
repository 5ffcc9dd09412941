//! The client side of the `ramjet` command: `admin`, `produce`, `consume`.
//!
//! Each subcommand is a clap [`Args`](clap::Args) struct plus a `run_*` function that the
//! binary calls; they run the client on a glommio executor on the calling thread. Output is
//! human-readable by default and one JSON document (or one JSON object per message) with
//! `--json`. Errors say what failed and what to do next.

mod admin;
mod consume;
mod produce;
mod time;

pub use admin::{run_admin, AclCommand, AdminArgs, AdminCommand, TopicCommand};
pub use consume::{run_consume, ConsumeArgs};
pub use produce::{run_produce, run_recall, ProduceArgs, RecallArgs};

use crate::client::{ClientConfig, ClientError};

/// Environment variable holding the name server list (RocketMQ's convention).
pub const NAMESRV_ENV: &str = "NAMESRV_ADDR";
/// Name server used when neither `--namesrv` nor `NAMESRV_ADDR` is set.
pub const DEFAULT_NAMESRV: &str = "127.0.0.1:9876";

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("reading standard input: {0}")]
    Stdin(std::io::Error),
    #[error("writing output: {0}")]
    Output(std::io::Error),
}

/// The name servers to use: the flag, else `NAMESRV_ADDR`, else 127.0.0.1:9876.
pub fn namesrv_from(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| {
            std::env::var(NAMESRV_ENV)
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_NAMESRV.to_string())
}

/// ACL credentials of the client commands (brokers with `broker.acl_enable`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AclFlags {
    /// ACL access key to sign requests with [env RAMJET_ACCESS_KEY].
    #[arg(long, global = true, env = "RAMJET_ACCESS_KEY")]
    pub access_key: Option<String>,
    /// ACL secret key of --access-key [env RAMJET_SECRET_KEY].
    #[arg(long, global = true, env = "RAMJET_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

impl AclFlags {
    pub fn credentials(&self) -> Result<Option<crate::client::Credentials>, CliError> {
        match (&self.access_key, &self.secret_key) {
            (None, None) => Ok(None),
            (Some(ak), Some(sk)) => Ok(Some(crate::client::Credentials::new(ak, sk))),
            _ => Err(CliError::Usage(
                "--access-key and --secret-key go together (or RAMJET_ACCESS_KEY and RAMJET_SECRET_KEY)"
                    .into(),
            )),
        }
    }
}

/// Where the client commands connect and how they sign: `--namesrv` and the ACL keys.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientFlags {
    /// Name servers `host:port[;host:port]` (default: $NAMESRV_ADDR, else 127.0.0.1:9876).
    #[arg(long, global = true)]
    pub namesrv: Option<String>,
    #[command(flatten)]
    pub acl: AclFlags,
}

impl ClientFlags {
    /// The client configuration these flags describe.
    fn config(&self) -> Result<ClientConfig, CliError> {
        let mut cfg = ClientConfig::new(&namesrv_from(self.namesrv.as_deref()))?;
        cfg.credentials = self.acl.credentials()?;
        Ok(cfg)
    }
}

/// Run `fut` on a fresh executor on this thread.
fn run_on_executor<T: 'static>(
    fut: impl std::future::Future<Output = Result<T, CliError>> + 'static,
) -> Result<T, CliError> {
    crate::client::transport::block_on(None, fut)?
}

/// `KEY=VALUE` for `--property`.
fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("property {s:?} must look like KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests;
