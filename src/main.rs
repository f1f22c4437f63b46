use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use regfs::config;
use regfs::daemon::{self, MountOptions};
use regfs::store::StoreOptions;

/// regfs: mount a WSO2 Carbon registry as a directory tree.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the registry at MOUNTPOINT (backgrounds itself unless --foreground).
    Mount {
        mountpoint: PathBuf,
        /// Data directory of the embedded default (SQLite files and, in the background, the log).
        /// Default: /var/lib/regfs as root, else $XDG_DATA_HOME/regfs or ~/.local/share/regfs.
        #[arg(long, env = "REGFS_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Stay attached to the terminal and log to stderr.
        #[arg(long, short = 'f')]
        foreground: bool,
        /// Log filter (RUST_LOG overrides it): error, warn, info, debug, trace.
        #[arg(long, default_value = "info")]
        log_level: String,
        /// Log file (default in the background: DATA_DIR/regfs.log).
        #[arg(long)]
        log_file: Option<PathBuf>,
        /// Skip the kernel's POSIX mode/owner checks (default_permissions) and leave every
        /// decision to the registry.
        #[arg(long)]
        no_posix_permissions: bool,
        /// Runtime worker threads serving requests.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
    /// Create the schema and base collections in the embedded default's databases.
    Init {
        #[arg(long, env = "REGFS_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount {
            mountpoint,
            data_dir,
            foreground,
            log_level,
            log_file,
            no_posix_permissions,
            threads,
        } => daemon::run(MountOptions {
            mountpoint,
            data_dir: data_dir.unwrap_or_else(config::default_data_dir),
            foreground,
            log_level,
            log_file,
            posix_permissions: !no_posix_permissions,
            threads,
        }),
        Command::Init { data_dir } => {
            let data_dir = data_dir.unwrap_or_else(config::default_data_dir);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(regfs::Error::from)
                .and_then(|rt| {
                    rt.block_on(config::embedded_registry(
                        &data_dir,
                        StoreOptions::default(),
                    ))
                })
                .map(|_| {
                    println!(
                        "regfs: initialized {} ({} and {})",
                        data_dir.display(),
                        config::LOCAL_DB,
                        config::SHARED_DB
                    )
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regfs: {e}");
            ExitCode::FAILURE
        }
    }
}
