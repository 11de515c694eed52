//! Terminals for machines whose config asks for a TTY (`init.tty`).
//!
//! With `process.terminal = true` the OCI runtime allocates a pseudo
//! terminal inside the container and hands its master side to whoever
//! listens on `--console-socket`, as an `SCM_RIGHTS` message. roost gives
//! that master to the machine's log relay ([`crate::logs`]), which copies
//! the terminal's output into the machine's log. The relay is its own
//! process, so a machine's terminal stays open while roost restarts; it
//! exits on its own when the last process holding the terminal's slave
//! side exits.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::net::UnixListener;

use crate::RuntimeError;

/// How long the runtime has to send the terminal after it finished `create`.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(5);

/// True if the bundle's `config.json` asks for a terminal.
pub(crate) fn bundle_wants_terminal(bundle: &Path) -> Result<bool, RuntimeError> {
    let path = bundle.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        // Leave a missing config to the runtime, whose error names the bundle.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => {
            return Err(RuntimeError::io(
                format!("cannot read {}", path.display()),
                err,
            ))
        }
    };
    let config: serde_json::Value = serde_json::from_slice(&text).map_err(|err| {
        RuntimeError::invalid("bundle config.json", format!("{}: {err}", path.display()))
    })?;
    Ok(config["process"]["terminal"].as_bool().unwrap_or(false))
}

/// A listening console socket at `path`; the runtime connects to it once.
pub(crate) struct ConsoleSocket {
    listener: UnixListener,
}

impl ConsoleSocket {
    pub(crate) fn bind(path: &Path) -> Result<ConsoleSocket, RuntimeError> {
        let listener = UnixListener::bind(path).map_err(|err| {
            RuntimeError::io(
                format!("cannot listen on console socket {}", path.display()),
                err,
            )
        })?;
        Ok(ConsoleSocket { listener })
    }

    /// Receives the terminal master the runtime sends during `create`.
    pub(crate) async fn receive_master(self) -> Result<OwnedFd, RuntimeError> {
        let (stream, _) = tokio::time::timeout(HANDOFF_TIMEOUT, self.listener.accept())
            .await
            .map_err(|_| RuntimeError::BadOutput {
                command: "console socket".into(),
                reason: "the runtime never connected to hand over the terminal".into(),
            })?
            .map_err(|err| RuntimeError::io("cannot accept on the console socket", err))?;
        let received = stream
            .async_io(tokio::io::Interest::READABLE, || {
                receive_fd(stream.as_raw_fd()).map_err(std::io::Error::from)
            })
            .await
            .map_err(|err| RuntimeError::io("cannot receive the terminal", err))?;
        if let Some(fd) = received {
            return Ok(fd);
        }
        Err(RuntimeError::BadOutput {
            command: "console socket".into(),
            reason: "the runtime's message carried no terminal descriptor".into(),
        })
    }
}

/// Reads one message from the console socket and returns the descriptor it
/// carries, if any. `WouldBlock` lets tokio wait for readiness and retry.
fn receive_fd(socket: std::os::fd::RawFd) -> nix::Result<Option<OwnedFd>> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS installed a new descriptor that nothing else owns.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Ok(None)
}
