//! The `crossgate` command line: parses arguments and calls the library. Exit codes: 0
//! success, 64 bad usage or configuration, 1 runtime failure.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
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
        /// The configuration file (TOML); relative identity paths are read from its folder.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The mTLS gateway address (IP:PORT), overriding [server] listen.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// The admin address for /live, /ready and /metrics (IP:PORT), overriding
        /// [server] admin.
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
    },
    /// Validate the configuration and identity files, and summarize them.
    ///
    /// Prints the identity, the leaf's dates (RFC 3339, UTC), routing and rules. Exit 0 when
    /// they load (warnings start with "warning:", e.g. under 10 % of the leaf's lifetime
    /// left), 64 when something is wrong, an expired leaf included. A prober's file (with
    /// [[link]]) is checked as `probe` loads it.
    Check {
        /// The configuration file (TOML), as `run` takes it.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a self-contained demonstration on loopback and exit.
    Demo,
    /// Probe linked gateways ([[link]]) and export gateway_* metrics on the admin port.
    Probe {
        /// The prober's TOML file: [server] admin, [identity] (its client certificate, when a
        /// link uses mTLS) and one [[link]] per gateway; every problem is reported, exit 64.
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
    /// Write a Linkerd-style development PKI and a matching crossgate.toml (loopback
    /// only), or issue another leaf from one (`certs issue`).
    ///
    /// DIR gets ca.crt, issuer.crt, gateway.crt/.key, client.crt/.key, crossgate.toml, and
    /// secret/ca.key, secret/issuer.key: the CA keys, mode 0600, needed by `certs issue`.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Certs {
        #[command(subcommand)]
        issue: Option<CertsCommand>,
        /// Folder to write the PKI into; created if missing, refused if not empty
        /// (unless --force).
        #[arg(long, value_name = "DIR", required = true)]
        out: Option<PathBuf>,
        /// Identity of the client leaf: a DNS name
        /// (<sa>.<ns>.serviceaccount.identity.linkerd.<trust-domain>) or a spiffe:// URI.
        #[arg(
            long,
            value_name = "ID",
            default_value = "frontend.west.serviceaccount.identity.linkerd.cluster.local"
        )]
        client_identity: String,
        /// Write into a folder that is not empty, replacing the files of the same names
        /// (crossgate.toml included).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Issue a leaf (24 h, ECDSA P-256) from a PKI written by `crossgate certs`: writes
    /// tls.crt (leaf, then issuer), tls.key (PKCS#8, mode 0600) and a copy of ca.crt.
    Issue {
        /// The identity the leaf carries as its SAN: a DNS name
        /// (<sa>.<ns>.serviceaccount.identity.linkerd.<trust-domain>) or a spiffe:// URI.
        #[arg(long, value_name = "IDENTITY")]
        name: String,
        /// Folder to write tls.crt, tls.key and ca.crt into; created if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The PKI folder to issue from: its issuer.crt, secret/issuer.key and ca.crt.
        #[arg(long, value_name = "PKI_DIR", default_value = ".")]
        from: PathBuf,
        /// Replace tls.crt, tls.key or ca.crt when they already exist in --out.
        #[arg(long)]
        force: bool,
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
    let problems = match cli.log_format {
        LogFormat::Text => crossgate::problems::Format::Text,
        LogFormat::Json => crossgate::problems::Format::Json,
    };
    match cli.command {
        Command::Run {
            config,
            listen,
            admin,
        } => run(
            config,
            crossgate::config::Overrides { listen, admin },
            problems,
        ),
        Command::Check { config } => ExitCode::from(crossgate::check::command(&config)),
        Command::Demo => runtime(cores())
            .and_then(|rt| {
                rt.block_on(crossgate::demo::demo())
                    .map_err(|e| eprintln!("demo failed: {e:#}"))
            })
            .map_or(ExitCode::FAILURE, |_| ExitCode::SUCCESS),
        Command::Probe { config } => probe(config, problems),
        Command::Gateways {
            prober,
            output,
            wait,
        } => {
            let format = match output {
                Output::Table => crossgate::probe::Format::Table,
                Output::Json => crossgate::probe::Format::Json,
            };
            runtime(1).map_or(ExitCode::FAILURE, |rt| {
                ExitCode::from(rt.block_on(crossgate::probe::gateways(&prober, format, wait)))
            })
        }
        Command::Certs {
            issue,
            out,
            client_identity,
            force,
        } => certs(issue, out, &client_identity, force),
    }
}

/// `crossgate certs` and `crossgate certs issue`: the files written, or why none were.
fn certs(
    issue: Option<CertsCommand>,
    out: Option<PathBuf>,
    client_identity: &str,
    force: bool,
) -> ExitCode {
    use crossgate::certs::CertsError;
    let written = match (issue, out) {
        (
            Some(CertsCommand::Issue {
                name,
                out,
                from,
                force,
            }),
            _,
        ) => crossgate::certs::issue(&from, &out, &name, force),
        (None, Some(out)) => crossgate::certs::write_dev_pki(&out, client_identity, force),
        // clap requires --out without a subcommand.
        (None, None) => Err(CertsError::Usage(vec!["--out DIR is required".into()])),
    };
    match written {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(CertsError::Usage(problems)) => {
            for p in problems {
                eprintln!("error: {p}");
            }
            ExitCode::from(USAGE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `crossgate run`: the configuration and the identity load completely (every problem
/// reported, in the words `check` uses, exit 64) before any port is bound.
fn run(
    path: PathBuf,
    overrides: crossgate::config::Overrides,
    problems: crossgate::problems::Format,
) -> ExitCode {
    let config = match crossgate::config::Config::load(&path, &overrides) {
        Ok(c) => c,
        Err(errors) => {
            crossgate::problems::report(&errors.0, problems);
            return ExitCode::from(USAGE);
        }
    };
    let gw = match crossgate::Gateway::build(&config) {
        Ok(gw) => gw,
        Err(errors) => {
            crossgate::problems::report(&errors, problems);
            return ExitCode::from(USAGE);
        }
    };
    for w in crossgate::identity::audit_anchors(&config.identity).warnings {
        tracing::warn!("{w}");
    }
    crossgate::lifecycle::check_fd_limit(&config.server);
    let threads = config.server.threads.unwrap_or_else(cores);
    // The main thread serves the gateway port too; `threads - 1` workers besides it.
    let Ok(rt) = runtime(1) else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        tracing::info!(
            threads,
            source = if config.server.threads.is_some() {
                "server.threads"
            } else {
                "cores available"
            },
            scheduler = if threads == 1 {
                "current-thread"
            } else {
                "current-thread per worker"
            },
            "runtime"
        );
        let listeners = match crossgate::Listeners::bind_all(&config).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let hup = tokio::spawn(reload_on_sighup(gw.clone()));
        crossgate::run_workers(gw, listeners, crossgate::stop_signal(), threads).await;
        hup.abort();
        ExitCode::SUCCESS
    })
}

fn probe(path: PathBuf, problems: crossgate::problems::Format) -> ExitCode {
    let config = match crossgate::probe::ProbeConfig::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            crossgate::problems::report(&errors.0, problems);
            return ExitCode::from(USAGE);
        }
    };
    let prober = match crossgate::probe::Prober::build(&config) {
        Ok(p) => p,
        Err(errors) => {
            crossgate::problems::report(&errors, problems);
            return ExitCode::from(USAGE);
        }
    };
    // Probes are small and few: one thread does them all.
    let Ok(rt) = runtime(1) else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        let admin = match tokio::net::TcpListener::bind(config.admin).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot bind admin {}: {e}", config.admin);
                return ExitCode::FAILURE;
            }
        };
        crossgate::probe::run(prober, admin, crossgate::stop_signal()).await;
        ExitCode::SUCCESS
    })
}

/// The runtime for `n` worker threads.
fn runtime(n: usize) -> Result<tokio::runtime::Runtime, ()> {
    // One thread: the current-thread scheduler does the same work without cross-thread
    // wake-up bookkeeping (a quarter less CPU per HTTP/2 request in BENCHMARKS.md).
    let mut b = if n == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(n);
        b
    };
    b.enable_all()
        .build()
        .map_err(|e| eprintln!("cannot start runtime: {e}"))
}

/// The cores this process may use: its CPU affinity and cgroup quota count, as
/// `std::thread::available_parallelism` reads them (a pod limited to 1 CPU gets 1).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, Into::into)
}

/// SIGHUP reads the configuration file again (rules swap when it is valid) and the identity
/// files too (the new leaf is served when it loads).
async fn reload_on_sighup(gw: std::sync::Arc<crossgate::Gateway>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "cannot listen for SIGHUP; the configuration reloads only when its file changes"
        );
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration and the identity");
        gw.reload().await;
    }
}

fn init_logging(format: LogFormat, demo: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if demo { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal: files and log collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
