//! `errand token new`: make a bearer token for the server's tokens file.
use std::{io::Write, path::PathBuf, process::ExitCode, time::SystemTime};

use anyhow::{Context, Result, anyhow};
use clap::{Subcommand, ValueEnum};
use errand_server::auth::{self, Role, TokenSpec};

#[derive(Subcommand)]
pub enum Command {
    /// Make a new token. Prints the secret (shown this once) on the first line
    /// of stdout and the tokens-file line on the second; the file keeps only
    /// the token's SHA-256.
    New(NewArgs),
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// What the token may call: agent (ToolService), worker (WorkerService),
    /// admin (an agent that sees every tenant on the dashboard) or viewer
    /// (looks at its tenant on the dashboard, changes nothing).
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The tenant whose sessions, tasks and tools the token sees.
    #[arg(long)]
    tenant: String,
    /// Worker tokens only: the tools the worker may register (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tools: Option<Vec<String>>,
    /// When the token stops working: an RFC 3339 time or a duration (30d, 12h).
    #[arg(long)]
    expires: Option<String>,
    /// A label for the operator, kept in the file.
    #[arg(long)]
    name: Option<String>,
    /// Append the line to this tokens file (created, or narrowed, to mode
    /// 0600) instead of printing it.
    #[arg(long)]
    append: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Agent,
    Worker,
    Admin,
    Viewer,
}

pub fn run(cmd: Command) -> Result<ExitCode> {
    let Command::New(args) = cmd;
    let now = SystemTime::now();
    let spec = TokenSpec {
        role: match args.role {
            RoleArg::Agent => Role::Agent,
            RoleArg::Worker => Role::Worker,
            RoleArg::Admin => Role::Admin,
            RoleArg::Viewer => Role::Viewer,
        },
        tenant: args.tenant,
        tools: args.tools,
        expires: args
            .expires
            .as_deref()
            .map(|e| auth::parse_expiry(e, now))
            .transpose()
            .map_err(|e| anyhow!(e))?,
        name: args.name,
    };
    if let Some(warning) = spec.expires.and_then(|at| auth::expired_warning(at, now)) {
        eprintln!("errand: {warning}");
    }
    let token = auth::new_token().map_err(|e| anyhow!(e))?;
    let line = spec.line(&token).map_err(|e| anyhow!(e))?;
    let mut out = crate::output::Stdout::lock();
    writeln!(out, "{token}")?;
    match args.append {
        Some(path) => {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            // `mode` applies to a new file only: narrow an existing one, which
            // the server refuses when group or others may write it.
            let mode = file.metadata()?.permissions().mode() & 0o777;
            if mode != 0o600 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot chmod 600 {}", path.display()))?;
                eprintln!("errand: {} was mode {mode:o}, now 600", path.display());
            }
            writeln!(file, "{line}")?;
            eprintln!(
                "errand: token added to {}; the secret above is shown only now",
                path.display()
            );
        }
        None => {
            writeln!(out, "{line}")?;
            eprintln!(
                "errand: the first line is the secret, shown only now; append the second to the --tokens-file"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
