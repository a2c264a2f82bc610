//! Following the systemd journal through `journalctl -o json --follow`,
//! from the cursor of the last committed entry (`--after-cursor`), or from
//! now on the first run. A reader thread hands lines over a bounded queue
//! (journalctl waits when the queue is full: nothing is dropped); lines
//! longer than [`super::logfmt::MAX_LINE`] are cut.
//!
//! When `journalctl` is missing or exits, the journal is reported as
//! unavailable (logged and counted) and the agent goes on with its files.

use std::{
    io::BufReader,
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, TryRecvError, sync_channel},
};

const QUEUE: usize = 10_000;

pub struct Journal {
    child: Child,
    rx: Receiver<String>,
    ended: bool,
}

impl Journal {
    pub fn start(after_cursor: Option<&str>) -> std::io::Result<Journal> {
        let mut cmd = Command::new("journalctl");
        cmd.args(["--output=json", "--follow", "--no-pager", "--quiet"]);
        match after_cursor {
            Some(c) => cmd.arg(format!("--after-cursor={c}")),
            None => cmd.arg("--lines=0"),
        };
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("journalctl has no output"))?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new().name("canhgac-journal".into()).spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while let Ok(Some(_)) = super::lines::read_line(&mut r, &mut buf, super::logfmt::MAX_LINE) {
                if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                    break;
                }
            }
        })?;
        tracing::info!(resume = after_cursor.is_some(), "following the systemd journal");
        Ok(Journal { child, rx, ended: false })
    }

    pub fn try_line(&mut self) -> Option<String> {
        match self.rx.try_recv() {
            Ok(l) => Some(l),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.ended = true;
                None
            }
        }
    }

    pub fn ended(&self) -> bool {
        self.ended
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
