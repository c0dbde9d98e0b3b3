//! The `ConfigWatcher` actor: follows the config file (file events, SIGHUP, explicit requests)
//! and runs validate → compile → apply. An invalid file is rejected with every problem logged;
//! the serving config stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshgate_config::{LoadError, compile, load_file};
use notify::Watcher;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::snapshot::NodeView;
use crate::supervisor::SupervisorMsg;

/// Editors write a file in several steps; wait for the burst of events to settle.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How long applying a config may take (binding sockets, resolving new upstream targets).
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct ConfigWatcher;

pub struct ConfigWatcherArgs {
    pub path: PathBuf,
    pub supervisor: ActorRef<SupervisorMsg>,
    pub view: Arc<NodeView>,
    /// Follow file changes (SIGHUP and explicit requests always work).
    pub watch_file: bool,
}

/// Why a reload was attempted (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    FileChanged,
    Sighup,
    Request,
}

pub enum ConfigWatcherMsg {
    /// A file event arrived; reload once the burst settles.
    FileEvent,
    /// Reload now; reply with the new generation or every problem found.
    Reload(ReloadTrigger, Option<RpcReplyPort<Result<u64, String>>>),
}

pub struct ConfigWatcherState {
    args: ConfigWatcherArgs,
    reload_pending: bool,
    last_text: Option<String>,
    _watcher: Option<notify::RecommendedWatcher>,
    _sighup: DropGuard,
}

impl Actor for ConfigWatcher {
    type Msg = ConfigWatcherMsg;
    type State = ConfigWatcherState;
    type Arguments = ConfigWatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let watcher = if args.watch_file {
            Some(watch_file(&args.path, myself.clone())?)
        } else {
            None
        };
        let sighup = listen_for_sighup(myself.clone())?;
        let last_text = std::fs::read_to_string(&args.path).ok();
        Ok(ConfigWatcherState {
            args,
            reload_pending: false,
            last_text,
            _watcher: watcher,
            _sighup: sighup.drop_guard(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConfigWatcherMsg::FileEvent => {
                if !state.reload_pending {
                    state.reload_pending = true;
                    myself.send_after(DEBOUNCE, || {
                        ConfigWatcherMsg::Reload(ReloadTrigger::FileChanged, None)
                    });
                }
            }
            ConfigWatcherMsg::Reload(trigger, reply) => {
                if trigger == ReloadTrigger::FileChanged {
                    state.reload_pending = false;
                }
                let result = state.reload(trigger).await;
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        }
        Ok(())
    }
}

impl ConfigWatcherState {
    async fn reload(&mut self, trigger: ReloadTrigger) -> Result<u64, String> {
        let path = &self.args.path;
        let text = std::fs::read_to_string(path).ok();
        if trigger == ReloadTrigger::FileChanged && text.is_some() && text == self.last_text {
            // Touched or rewritten with the same bytes: nothing to do.
            return Ok(self.args.view.generation());
        }
        let result = self.load_and_apply().await;
        let view = &self.args.view;
        match &result {
            Ok(generation) => {
                self.last_text = text;
                tracing::info!(?trigger, generation, path = %path.display(), "config reloaded");
                view.record_reload(*generation, Ok(()));
            }
            Err(problems) => {
                tracing::error!(?trigger, path = %path.display(), "config rejected, still serving generation {}:\n{problems}", view.generation());
                view.record_reload(view.generation(), Err(problems.clone()));
            }
        }
        result
    }

    async fn load_and_apply(&self) -> Result<u64, String> {
        let config = load_file(&self.args.path).map_err(|e| match e {
            LoadError::Invalid(problems) => problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        })?;
        let compiled = compile(&config).map_err(|problems| {
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let applied = self
            .args
            .supervisor
            .call(
                |port| SupervisorMsg::Apply(Arc::new(compiled), port),
                Some(APPLY_TIMEOUT),
            )
            .await
            .map_err(|e| format!("supervisor unavailable: {e}"))?;
        match applied {
            ractor::rpc::CallResult::Success(result) => result,
            ractor::rpc::CallResult::Timeout => Err("applying the config timed out".into()),
            ractor::rpc::CallResult::SenderError => Err("supervisor dropped the reload".into()),
        }
    }
}

/// Watch the file's directory (editors and `kubectl` replace files by rename).
fn watch_file(
    path: &std::path::Path,
    myself: ActorRef<ConfigWatcherMsg>,
) -> Result<notify::RecommendedWatcher, ActorProcessingErr> {
    let file_name = path.file_name().map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name);
        if ours {
            let _ = myself.cast(ConfigWatcherMsg::FileEvent);
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

fn listen_for_sighup(
    myself: ActorRef<ConfigWatcherMsg>,
) -> Result<CancellationToken, ActorProcessingErr> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.cancelled() => break,
                received = hangups.recv() => {
                    if received.is_none() {
                        break;
                    }
                    let _ = myself.cast(ConfigWatcherMsg::Reload(ReloadTrigger::Sighup, None));
                }
            }
        }
    });
    Ok(stop)
}
