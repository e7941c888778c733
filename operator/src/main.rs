use std::process::ExitCode;

use anyhow::Context as _;
use shellcar::cli::{self, Cli, Command};
use shellcar::client;
use shellcar::crd::Decision;

/// Errors are printed as one line of causes, `error: what: why`, without a backtrace: they
/// are for the person at the terminal (a refused approval, a missing kubeconfig).
#[tokio::main]
async fn main() -> ExitCode {
    match command(cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn command(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crd(args) => {
            match args.out_dir {
                None => print!("{}", shellcar::crds_yaml()?),
                Some(dir) => {
                    for (file, yaml) in shellcar::crds()? {
                        let path = dir.join(file);
                        std::fs::write(&path, yaml)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Debug(args) => Ok(ExitCode::from(client::debug::debug(*args).await?)),
        Command::Attach(args) => Ok(ExitCode::from(client::attach::attach(args).await?)),
        Command::Ls(args) => Ok(ExitCode::from(client::sessions::ls(args).await?)),
        Command::End(args) => Ok(ExitCode::from(client::sessions::end(args).await?)),
        Command::Extend(args) => Ok(ExitCode::from(client::sessions::extend(args).await?)),
        Command::Approve(args) => {
            let code = client::approve::decide(Decision::Approved, args).await?;
            Ok(ExitCode::from(code))
        }
        Command::Reject(args) => {
            let code = client::approve::decide(Decision::Rejected, args).await?;
            Ok(ExitCode::from(code))
        }
        Command::StopDebugger(args) => Ok(shellcar::stopper::run(&args.container_id)),
        Command::Completion(args) => {
            // Named as invoked: `shellcar`, or `kubectl-shellcar` on PATH as a plugin.
            let name = std::env::args_os()
                .next()
                .as_deref()
                .and_then(|argv0| std::path::Path::new(argv0).file_name())
                .map_or_else(
                    || "shellcar".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => shellcar::run(*args).await.map(|()| ExitCode::SUCCESS),
    }
}
