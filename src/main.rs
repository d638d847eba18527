//! The `crossgate` command line: parses arguments and calls the library. Exit codes: 0
//! success, 64 bad usage or configuration, 1 runtime failure.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "crossgate",
    version,
    about = "mTLS gateway for Linkerd multicluster"
)]
struct Cli {
    /// Log format on stderr; RUST_LOG filters (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Overrides [server] listen.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides [server] admin.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Validate the configuration and identity files.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a self-contained demonstration on loopback and exit.
    Demo,
    /// Probe linked gateways ([[link]]) and export gateway_* metrics on the admin port.
    Probe {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print CLUSTER ALIVE NUM_SVC LATENCY P50 P95 P99 from a prober's /metrics.
    /// Exit 0: every gateway alive; 1: one or more dead; 2: the prober cannot be read.
    Gateways {
        /// The prober's metrics URL (plain HTTP).
        #[arg(long, default_value = crossgate::probe::table::DEFAULT_PROBER)]
        prober: String,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Retry until the prober answers and every gateway it lists has finished at least one
        /// probe, or until DURATION (e.g. "10s") has passed; then print what was last read.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<std::time::Duration>,
    },
    /// Write a Linkerd-style development PKI and a matching crossgate.toml.
    Certs {
        #[arg(long)]
        out: PathBuf,
        /// Identity of the client leaf.
        #[arg(
            long,
            default_value = "frontend.west.serviceaccount.identity.linkerd.cluster.local"
        )]
        client_identity: String,
    },
}

const USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.log_format, matches!(cli.command, Command::Demo));
    match cli.command {
        Command::Run {
            config,
            listen,
            admin,
        } => run(config, crossgate::config::Overrides { listen, admin }),
        Command::Check { config } => match crossgate::check::check(&config) {
            Ok(r) => {
                println!(
                    "ok: identity {} ({} trust anchor(s)), certificate valid for {}d {}h more",
                    r.identity,
                    r.anchors,
                    r.seconds_left / 86_400,
                    (r.seconds_left % 86_400) / 3600
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                ExitCode::from(USAGE)
            }
        },
        Command::Demo => runtime(None)
            .and_then(|rt| {
                rt.block_on(crossgate::demo::demo())
                    .map_err(|e| eprintln!("demo failed: {e:#}"))
            })
            .map_or(ExitCode::FAILURE, |_| ExitCode::SUCCESS),
        Command::Probe { config } => probe(config),
        Command::Gateways {
            prober,
            output,
            wait,
        } => {
            let format = match output {
                Output::Table => crossgate::probe::Format::Table,
                Output::Json => crossgate::probe::Format::Json,
            };
            runtime(Some(1)).map_or(ExitCode::FAILURE, |rt| {
                ExitCode::from(rt.block_on(crossgate::probe::gateways(&prober, format, wait)))
            })
        }
        Command::Certs {
            out,
            client_identity,
        } => match crossgate::certs::write_dev_pki(&out, &client_identity) {
            Ok(files) => {
                for f in files {
                    println!("wrote {f}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}: {e}", out.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn run(path: PathBuf, overrides: crossgate::config::Overrides) -> ExitCode {
    let config = match crossgate::config::Config::load(&path, &overrides) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(USAGE);
        }
    };
    let gw = match crossgate::Gateway::build(&config) {
        Ok(gw) => gw,
        Err(errors) => {
            for e in errors {
                eprintln!("{}: identity: {e}", path.display());
            }
            return ExitCode::from(USAGE);
        }
    };
    let Ok(rt) = runtime(config.server.threads) else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        let listeners = match crossgate::Listeners::bind(&config.server).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, listen = %config.server.listen, admin = %config.server.admin, "cannot bind");
                return ExitCode::FAILURE;
            }
        };
        let hup = tokio::spawn(reload_on_sighup(gw.clone()));
        crossgate::run(gw, listeners, shutdown_signal()).await;
        hup.abort();
        ExitCode::SUCCESS
    })
}

fn probe(path: PathBuf) -> ExitCode {
    let config = match crossgate::probe::ProbeConfig::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(USAGE);
        }
    };
    let prober = match crossgate::probe::Prober::build(&config) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{}: identity: {e}", path.display());
            }
            return ExitCode::from(USAGE);
        }
    };
    // Probes are small and few: one thread does them all.
    let Ok(rt) = runtime(Some(1)) else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        let admin = match tokio::net::TcpListener::bind(config.admin).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, admin = %config.admin, "cannot bind");
                return ExitCode::FAILURE;
            }
        };
        crossgate::probe::run(prober, admin, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, ()> {
    // One thread: the current-thread scheduler does the same work without cross-thread
    // wake-up bookkeeping.
    let mut b = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all()
        .build()
        .map_err(|e| eprintln!("cannot start runtime: {e}"))
}

/// SIGHUP reads the configuration file again (rules swap when it is valid).
async fn reload_on_sighup(gw: std::sync::Arc<crossgate::Gateway>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "cannot listen for SIGHUP; the configuration reloads only when its file changes"
        );
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        gw.reload().await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(format: LogFormat, demo: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if demo { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
