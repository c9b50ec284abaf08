//! Running the chat of a connection before STARTTLS: the built-in interpreter driven over the
//! socket, or an external program (`-C`) with the socket as its standard input and output.

use std::ffi::OsString;
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::time::{Instant, sleep, timeout_at};
use tracing::debug;

use crate::TunnelError;
use crate::background::CHILD_MARKER;
use crate::chat::{Action, Chat, ChatScript};
use crate::net::{Stream, set_blocking};

/// The chat that prepares a connection before STARTTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatMode {
    /// Run the built-in interpreter on this script, which may be empty.
    Builtin(ChatScript),
    /// Run an external chat program with the chat arguments as its arguments.
    Program {
        /// The program given with `-C`.
        program: PathBuf,
        /// The chat arguments of the command line.
        args: Vec<OsString>,
    },
}

impl ChatMode {
    /// Runs the chat on `stream` and returns once STARTTLS may begin.
    ///
    /// # Errors
    ///
    /// [`TunnelError::ChatAborted`], [`TunnelError::ChatTimedOut`] and
    /// [`TunnelError::ChatClosed`] from the built-in interpreter,
    /// [`TunnelError::ChatSpawn`] and [`TunnelError::ChatCommandFailed`] from a program,
    /// and [`TunnelError::Io`] when the socket fails.
    pub async fn run(&self, stream: &mut Stream) -> Result<(), TunnelError> {
        match self {
            Self::Builtin(script) => run_script(script, stream).await,
            Self::Program { program, args } => run_program(program, args, stream).await,
        }
    }
}

/// Drives the built-in interpreter over `stream`.
async fn run_script(script: &ChatScript, stream: &mut Stream) -> Result<(), TunnelError> {
    let mut chat = Chat::new(script);
    let mut deadline = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match chat.next_action() {
            Action::Send(bytes) => stream
                .write_all(&bytes)
                .await
                .map_err(TunnelError::io("send of a chat string"))?,
            Action::Pause(pause) => sleep(pause).await,
            Action::Expect { timeout } => {
                deadline = Instant::now() + timeout;
                receive(&mut chat, stream, &mut buffer, deadline).await?;
            }
            Action::Receive => receive(&mut chat, stream, &mut buffer, deadline).await?,
            Action::Done => return Ok(()),
            Action::Aborted { pattern } => {
                return Err(TunnelError::ChatAborted {
                    pattern: String::from_utf8_lossy(&pattern).into_owned(),
                });
            }
            Action::TimedOut { expect, timeout } => {
                return Err(TunnelError::ChatTimedOut {
                    expect: String::from_utf8_lossy(&expect).into_owned(),
                    seconds: timeout.as_secs(),
                });
            }
            Action::Closed { expect } => {
                return Err(TunnelError::ChatClosed {
                    expect: String::from_utf8_lossy(&expect).into_owned(),
                });
            }
        }
    }
}

/// Waits for input until `deadline` and feeds it to `chat`, taking from the socket only the
/// bytes the interpreter consumed.
async fn receive(
    chat: &mut Chat<'_>,
    stream: &Stream,
    buffer: &mut [u8],
    deadline: Instant,
) -> Result<(), TunnelError> {
    match timeout_at(deadline, stream.peek(buffer)).await {
        Err(_) => chat.time_out(),
        Ok(Ok(0)) => chat.close(),
        Ok(Ok(received)) => {
            let consumed = chat.receive(&buffer[..received]);
            stream
                .discard(consumed)
                .await
                .map_err(TunnelError::io("recv of chat input"))?;
        }
        Ok(Err(source)) => {
            return Err(TunnelError::Io {
                call: "recv of chat input",
                source,
            });
        }
    }
    Ok(())
}

/// Runs `program` with the socket as standard input and output and waits for it.
async fn run_program(
    program: &PathBuf,
    args: &[OsString],
    stream: &Stream,
) -> Result<(), TunnelError> {
    let spawn_error = |source| TunnelError::ChatSpawn {
        program: program.clone(),
        source,
    };
    let duplicate = || stream.as_fd().try_clone_to_owned().map_err(spawn_error);
    let (input, output) = (duplicate()?, duplicate()?);

    // The descriptors share the socket's file status, and a chat program expects blocking
    // reads. The runtime does not touch the socket until the program has ended.
    set_blocking(&input, true)?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .env_remove(CHILD_MARKER)
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .kill_on_drop(true)
        .status()
        .await;
    set_blocking(stream, false)?;

    let status = status.map_err(spawn_error)?;
    debug!(program = %program.display(), %status, "chat program ended");
    if !status.success() {
        return Err(TunnelError::ChatCommandFailed {
            program: program.clone(),
            status,
        });
    }
    Ok(())
}
