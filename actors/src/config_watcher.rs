//! The `ConfigWatcher` actor: follows the config file (file events, SIGHUP, explicit requests)
//! and runs validate → compile → apply. An invalid file is rejected with every problem logged;
//! the serving config stays. After a file event it waits for the file to stop changing: a
//! file rewritten in place is otherwise read half-written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshgate_config::{LoadError, compile, load_text};
use notify::Watcher;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::error::ControlError;
use crate::snapshot::NodeView;
use crate::supervised_task::LinkedLoop;
use crate::supervisor::SupervisorMsg;

/// Editors write a file in several steps; wait for the burst of events to settle.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// After the burst, the file must read the same (length, modification time and bytes) at both
/// ends of this window before it is applied; while it keeps changing, the watcher keeps
/// waiting. A writer that pauses longer than this mid-file is caught by validation instead
/// (an empty file, a file without listeners, a reload that removes every listener).
pub const STABLE_WINDOW: Duration = Duration::from_millis(250);
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
    /// A file event arrived; reload once the burst settles and the file is stable.
    FileEvent,
    /// Read the file again and apply it if it is what the previous read saw.
    CheckStable,
    /// Reload now; reply with the new generation or every problem found.
    Reload(
        ReloadTrigger,
        Option<RpcReplyPort<Result<u64, ControlError>>>,
    ),
    /// The SIGHUP listener panicked or its signal stream ended.
    SighupLoopFailed(String),
}

pub struct ConfigWatcherState {
    args: ConfigWatcherArgs,
    reload_pending: bool,
    /// What the file looked like at the previous stability check.
    last_probe: Option<FileProbe>,
    last_text: Option<String>,
    _watcher: Option<notify::RecommendedWatcher>,
    _sighup: LinkedLoop,
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
        let sighup = listen_for_sighup(&myself)?;
        let last_text = std::fs::read_to_string(&args.path).ok();
        Ok(ConfigWatcherState {
            args,
            reload_pending: false,
            last_probe: None,
            last_text,
            _watcher: watcher,
            _sighup: sighup,
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
                    state.last_probe = None;
                    myself.send_after(DEBOUNCE, || ConfigWatcherMsg::CheckStable);
                }
            }
            ConfigWatcherMsg::CheckStable => {
                let probe = FileProbe::read(&state.args.path);
                if state.last_probe.as_ref() == Some(&probe) {
                    state.reload_pending = false;
                    state.last_probe = None;
                    let _ = state.reload(ReloadTrigger::FileChanged, probe.text).await;
                } else {
                    state.last_probe = Some(probe);
                    myself.send_after(STABLE_WINDOW, || ConfigWatcherMsg::CheckStable);
                }
            }
            ConfigWatcherMsg::Reload(trigger, reply) => {
                let text = FileProbe::read(&state.args.path).text;
                let result = state.reload(trigger, text).await;
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            ConfigWatcherMsg::SighupLoopFailed(reason) => return Err(reason.into()),
        }
        Ok(())
    }
}

impl ConfigWatcherState {
    /// Apply `text`, what the file held when it was read (`Err`: why it could not be read).
    async fn reload(
        &mut self,
        trigger: ReloadTrigger,
        text: Result<String, String>,
    ) -> Result<u64, ControlError> {
        let path = &self.args.path;
        let unchanged =
            matches!((&text, &self.last_text), (Ok(now), Some(before)) if now == before);
        if trigger == ReloadTrigger::FileChanged && unchanged {
            // Touched or rewritten with the same bytes: nothing to do.
            return Ok(self.args.view.generation());
        }
        let result = match &text {
            Ok(text) => self.load_and_apply(text).await,
            Err(reason) => Err(ControlError::ReadConfig {
                path: path.display().to_string(),
                reason: reason.clone(),
            }),
        };
        let view = &self.args.view;
        match &result {
            Ok(generation) => {
                self.last_text = text.ok();
                tracing::info!(?trigger, generation, path = %path.display(), "config reloaded");
                view.record_reload(*generation, Ok(()));
            }
            Err(problems) => {
                tracing::error!(?trigger, path = %path.display(), "config rejected, still serving generation {}:\n{problems}", view.generation());
                view.record_reload(view.generation(), Err(problems.to_string()));
            }
        }
        result
    }

    async fn load_and_apply(&self, text: &str) -> Result<u64, ControlError> {
        let config = load_text(text, &self.args.path).map_err(|e| match e {
            LoadError::Invalid(problems) => ControlError::invalid(problems.0),
            other => ControlError::invalid([other]),
        })?;
        let compiled = compile(&config).map_err(|problems| ControlError::invalid(problems.0))?;
        let applied = self
            .args
            .supervisor
            .call(
                |port| SupervisorMsg::Apply(Arc::new(compiled), port),
                Some(APPLY_TIMEOUT),
            )
            .await
            .map_err(|e| ControlError::SupervisorUnavailable(e.to_string()))?;
        match applied {
            ractor::rpc::CallResult::Success(result) => result,
            ractor::rpc::CallResult::Timeout => Err(ControlError::ApplyTimedOut(APPLY_TIMEOUT)),
            ractor::rpc::CallResult::SenderError => Err(ControlError::SupervisorUnavailable(
                "it dropped the reload".into(),
            )),
        }
    }
}

/// One read of the config file: its length and modification time as well as its bytes, so
/// that a rewrite with the same length in the same second still differs by content.
#[derive(Debug, PartialEq, Eq)]
struct FileProbe {
    len: Option<u64>,
    modified: Option<std::time::SystemTime>,
    text: Result<String, String>,
}

impl FileProbe {
    fn read(path: &std::path::Path) -> Self {
        let metadata = std::fs::metadata(path).ok();
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string());
        Self {
            len: metadata.as_ref().map(|m| m.len()),
            modified: metadata.and_then(|m| m.modified().ok()),
            text,
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

/// Turn each SIGHUP into a reload, in a loop linked to the watcher (a panic fails it, and the
/// supervisor restarts it).
fn listen_for_sighup(
    myself: &ActorRef<ConfigWatcherMsg>,
) -> Result<LinkedLoop, ActorProcessingErr> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let reloads = myself.clone();
    let listening = async move {
        while hangups.recv().await.is_some() {
            let _ = reloads.cast(ConfigWatcherMsg::Reload(ReloadTrigger::Sighup, None));
        }
        Err(ControlError::LoopEnded("the signal stream closed"))
    };
    Ok(LinkedLoop::spawn(
        myself,
        "the SIGHUP listener",
        listening,
        ConfigWatcherMsg::SighupLoopFailed,
    ))
}
