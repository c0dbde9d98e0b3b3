//! The `meshgate` command line: `run`, `validate`, `hash-key`, `pki`, `--version`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meshgate::telemetry::{LogFormat, init_logging};
use meshgate::{EMBEDDED_DEFAULT_CONFIG, Node};
use meshgate_config::{CompiledConfig, Format, LoadError, compile, load_file, parse_str};

/// Exit status for a config that cannot be used (invalid, unreadable).
const EXIT_INVALID: u8 = 2;
const EXIT_FAILURE: u8 = 1;

/// `--features mimalloc`: less CPU per request, more memory per idle connection than the system
/// allocator (docs/performance.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "meshgate",
    version,
    about = "API gateway and service-mesh sidecar in one binary"
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MESHGATE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (or sidecar) until SIGTERM/SIGINT; SIGHUP reloads the config.
    Run {
        /// Config file (YAML or JSON). Without it, the embedded quickstart config runs.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config file: print every problem with its field path; exit 2 when invalid.
    Validate {
        /// Config file (YAML or JSON).
        file: PathBuf,
    },
    /// Print the Argon2id hash of an API key (`<id>.<secret>`, from stdin or the argument) for
    /// `consumers[].credentials[].api_key.hash`; `--basic` hashes a Basic password instead;
    /// `--generate ID` makes a new random key and prints it, then its hash.
    HashKey {
        /// The key (prefer stdin: arguments are visible to other local users).
        key: Option<String>,
        /// Hash a Basic password rather than an API key.
        #[arg(long, conflicts_with = "generate")]
        basic: bool,
        /// Generate a key with this id.
        #[arg(long, value_name = "ID", conflicts_with = "key")]
        generate: Option<String>,
    },
    /// Mesh PKI tools: create a CA, issue service certificates, inspect certificates.
    #[command(subcommand)]
    Pki(meshgate::cli::pki::PkiCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    match cli.command {
        Command::Validate { file } => validate(&file),
        Command::HashKey {
            key,
            basic,
            generate,
        } => hash_key(key, basic, generate),
        Command::Pki(command) => match meshgate::cli::pki::run(command) {
            Ok(output) => {
                println!("{output}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("meshgate pki: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Command::Run { config } => run(config, cli.log_format),
    }
}

fn hash_key(key: Option<String>, basic: bool, generate: Option<String>) -> ExitCode {
    use meshgate::cli::hash_key::{HashKeyError, HashKeyInput, run};
    let input = match (generate, basic) {
        (Some(id), _) => HashKeyInput::Generate(id),
        (None, true) => HashKeyInput::Password(key),
        (None, false) => HashKeyInput::ApiKey(key),
    };
    match run(input, &mut std::io::stdin().lock()) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e @ HashKeyError::Invalid(_)) => {
            eprintln!("meshgate hash-key: {e}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("meshgate hash-key: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Help and version go to stdout as clap prints them; usage errors are one line.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see meshgate --help)");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn validate(file: &Path) -> ExitCode {
    match load_and_compile(Some(file)) {
        Ok(compiled) => {
            for warning in resolve_warnings(&compiled.source) {
                eprintln!("{}: warning: {warning}", file.display());
            }
            println!(
                "{}: valid ({} listeners, {} routes, {} upstreams)",
                file.display(),
                compiled.listeners.len(),
                compiled.routes.len(),
                compiled.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{problems}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Load and compile, rendering every problem as `path: reason` lines.
fn load_and_compile(file: Option<&Path>) -> Result<CompiledConfig, String> {
    let loaded = match file {
        Some(path) => load_file(path),
        None => parse_str(EMBEDDED_DEFAULT_CONFIG, Format::Yaml),
    };
    let name = file.map_or("embedded config".to_string(), |p| p.display().to_string());
    let config = loaded.map_err(|e| match e {
        LoadError::Invalid(problems) => render_problems(&name, problems.iter()),
        other => other.to_string(),
    })?;
    let compiled = compile(&config).map_err(|problems| render_problems(&name, problems.iter()))?;
    // Certificate files are part of the config: a missing or broken one is a config problem.
    meshgate_actors::tls::load_all(&compiled)
        .map_err(|problems| render_problems(&name, problems.iter()))?;
    Ok(compiled)
}

/// Static targets whose host name does not resolve now. The lookups block: call this off the
/// async workers. A warning, not an error: the node keeps resolving them every 30 s.
fn resolve_warnings(config: &meshgate_config::Config) -> Vec<meshgate_config::ConfigError> {
    use std::net::ToSocketAddrs;
    meshgate_config::warnings(config, &|host, port| {
        (host, port)
            .to_socket_addrs()
            .is_ok_and(|mut addrs| addrs.next().is_some())
    })
}

fn render_problems<'a>(
    name: &str,
    problems: impl Iterator<Item = &'a meshgate_config::ConfigError>,
) -> String {
    let lines: Vec<String> = problems.map(|p| format!("  {p}")).collect();
    format!(
        "{name}: invalid config ({} problem{}):\n{}",
        lines.len(),
        if lines.len() == 1 { "" } else { "s" },
        lines.join("\n")
    )
}

fn run(config_path: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
    let compiled = match load_and_compile(config_path.as_deref()) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    // One worker: a current-thread runtime. The multi-thread scheduler with one worker still
    // pays for work stealing and cross-thread wakeups of its I/O driver on every timer.
    let mut runtime = match compiled.server.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshgate: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        // The OTLP exporter needs the runtime, so logging starts inside it.
        if let Err(e) = init_logging(log_format, compiled.telemetry.tracing.as_ref()) {
            eprintln!("meshgate: {e}; traces will not be exported");
            let _ = init_logging(log_format, None);
        }
        let code = serve(compiled, config_path).await;
        // Exporting the last spans blocks on the runtime's I/O: wait off the workers.
        let _ = tokio::task::spawn_blocking(meshgate::telemetry::tracing::shutdown).await;
        code
    })
}

async fn serve(compiled: CompiledConfig, config_path: Option<PathBuf>) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    // Install signal handlers before binding so an early SIGTERM still drains.
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        eprintln!("meshgate: cannot install signal handlers");
        return ExitCode::from(EXIT_FAILURE);
    };
    // Checked beside the start, not before it: a slow resolver must not delay serving.
    let source = compiled.source.clone();
    tokio::spawn(async move {
        if let Ok(warnings) = tokio::task::spawn_blocking(move || resolve_warnings(&source)).await {
            for warning in warnings {
                tracing::warn!(field = %warning.path, "{}", warning.message);
            }
        }
    });
    let path = config_path
        .as_ref()
        .and_then(|p| std::path::absolute(p).ok());
    let node = match Node::start(compiled, path).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("meshgate: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let snapshot = node.view().load_full();
    let listeners: Vec<String> = snapshot
        .bound
        .iter()
        .map(|b| format!("{}={}", b.name, b.address))
        .collect();
    let admin = node.admin_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        target: "meshgate::ready",
        listeners = %listeners.join(","),
        admin = %admin,
        generation = snapshot.generation,
        "meshgate ready"
    );
    drop(snapshot);
    let signal_name = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            // logrotate renamed the access log: write to a new file at the configured path.
            _ = usr1.recv() => node.telemetry().reopen_access_log(),
        }
    };
    // The serving generation's drain_timeout: a reload may have changed it.
    let drain = node.view().load().config.server.drain_timeout;
    tracing::info!(signal = signal_name, deadline = ?drain, "draining");
    let shutdown = node.shutdown(drain);
    tokio::pin!(shutdown);
    tokio::select! {
        cut = &mut shutdown => {
            tracing::info!(cut_off = cut, "stopped");
            ExitCode::SUCCESS
        }
        _ = term.recv() => second_signal(),
        _ = int.recv() => second_signal(),
    }
}

fn second_signal() -> ExitCode {
    tracing::warn!("second signal: exiting without waiting for the drain");
    ExitCode::from(EXIT_FAILURE)
}
