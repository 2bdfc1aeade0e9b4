//! The `command` reviewer: `--qa-command CMD` runs `CMD IMAGE_PATH` through
//! `sh`, and reads the JSON verdict from its stdout.

use super::{excerpt, parse_verdict, BoxFuture, Review, Reviewer, PROMPT_VERSION};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Most of stdout / stderr read from a reviewer command.
const MAX_OUTPUT: u64 = 1 << 20;

/// The `command` reviewer: `cmd` may carry its own arguments (it is run as
/// `sh -c 'CMD "$1"' nbbuild-qa IMAGE_PATH`); killed, with its process
/// group, after `timeout`. Runs once per image: a non-zero exit, a timeout
/// or output without a clean/flagged verdict is unreviewed.
pub fn command(cmd: String, timeout: Duration) -> Box<dyn Reviewer> {
    Box::new(Command {
        cmd: cmd.trim().to_string(),
        timeout,
    })
}

struct Command {
    cmd: String,
    timeout: Duration,
}

impl Reviewer for Command {
    fn id(&self) -> String {
        format!("command:{}#{PROMPT_VERSION}", self.cmd)
    }

    fn review<'a>(&'a self, _png: &'a [u8], path: &'a Path) -> BoxFuture<'a, Review> {
        Box::pin(async move {
            match self.run(path).await {
                Ok(review) => review,
                Err(why) => Review::unreviewed(format!("QA command `{}`: {why}", self.cmd)),
            }
        })
    }
}

impl Command {
    async fn run(&self, path: &Path) -> Result<Review, String> {
        if self.cmd.is_empty() {
            return Err("no command given".into());
        }
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c")
            .arg(format!("{} \"$1\"", self.cmd))
            .arg("nbbuild-qa")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout kills what it started too.
        #[cfg(unix)]
        c.process_group(0);
        let mut child = c.spawn().map_err(|e| format!("cannot start: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let finished = tokio::time::timeout(self.timeout, async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (mut stdout, mut stderr) = (stdout.take(MAX_OUTPUT), stderr.take(MAX_OUTPUT));
            let (o, e, status) = tokio::join!(
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
                child.wait(),
            );
            (o.and(e).and(status), out, err)
        })
        .await;

        let (status, out, err) = match finished {
            Ok(done) => done,
            Err(_) => {
                kill_group(pid).await;
                let _ = child.kill().await;
                return Err(format!(
                    "timed out after {:.1} s (killed)",
                    self.timeout.as_secs_f64()
                ));
            }
        };
        let status = status.map_err(|e| format!("failed: {e}"))?;
        let out = String::from_utf8_lossy(&out);
        if !status.success() {
            let err = String::from_utf8_lossy(&err);
            let said = last_line(err.trim()).or_else(|| last_line(out.trim()));
            return Err(match said {
                Some(line) => format!("exited with {status}: {}", excerpt(line, 200)),
                None => format!("exited with {status}"),
            });
        }
        parse_verdict(&out).map_err(|e| format!("printed no usable verdict: {e}"))
    }
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// SIGKILL the process group `pid` leads (best effort).
async fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid {
        let _ = tokio::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    #[cfg(not(unix))]
    let _ = pid;
}
