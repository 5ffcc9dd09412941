//! Runs the interop scripts and returns their JSON: `tests/interop/rmq_client.py` (the real
//! RocketMQ C++ client), `tests/interop/ali_ons_client.js` (ali-ons, a JavaScript client) and
//! `tests/interop/rust-rmq` (rocketmq-client-rust, the Apache RocketMQ Rust client).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::write_file;
use crate::setup;

/// Extra time the Rust side grants the script beyond its own deadline before killing it.
pub const KILL_GRACE: Duration = Duration::from_secs(20);

/// Runs one script command with `spec` as its input; returns its output document. Fails the
/// test (with the script's stderr and the C++ client's logs) when the script does not finish
/// within `deadline` + [`KILL_GRACE`] or writes no output.
pub fn run(
    command: &str,
    namesrv: &str,
    spec: &serde_json::Value,
    deadline: Duration,
    work: &Path,
) -> serde_json::Value {
    let script = setup::interop_dir().join("rmq_client.py");
    run_script(
        Command::new(setup::python()).arg(&script),
        command,
        namesrv,
        spec,
        deadline,
        work,
    )
}

/// [`run`] for the JavaScript client's script (`node`, with ali-ons from
/// [`setup::node_modules`]).
pub fn run_js(
    command: &str,
    namesrv: &str,
    spec: &serde_json::Value,
    deadline: Duration,
    work: &Path,
) -> serde_json::Value {
    let script = setup::interop_dir().join("ali_ons_client.js");
    let mut cmd = Command::new("node");
    cmd.arg(&script).env("NODE_PATH", setup::node_modules());
    run_script(&mut cmd, command, namesrv, spec, deadline, work)
}

/// [`run`] for the rocketmq-client-rust driver ([`setup::rust_rmq_driver`]).
pub fn run_rust(
    command: &str,
    namesrv: &str,
    spec: &serde_json::Value,
    deadline: Duration,
    work: &Path,
) -> serde_json::Value {
    let mut cmd = Command::new(setup::rust_rmq_driver());
    // Its log lines go to stdout (kept in the work dir for failures).
    cmd.env("RUST_LOG", "warn");
    run_script(&mut cmd, command, namesrv, spec, deadline, work)
}

fn run_script(
    program: &mut Command,
    command: &str,
    namesrv: &str,
    spec: &serde_json::Value,
    deadline: Duration,
    work: &Path,
) -> serde_json::Value {
    let spec_path = write_file(
        work,
        &format!("{command}-spec.json"),
        spec.to_string().as_bytes(),
    );
    let out_path = work.join(format!("{command}-out.json"));
    let log_dir = work.join(format!("{command}-cpp-logs"));
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        panic!("cannot create {}: {e}", log_dir.display());
    }
    let stdout_path = work.join(format!("{command}-stdout.txt"));
    let stderr_path = work.join(format!("{command}-stderr.txt"));
    let open = |p: &Path| match std::fs::File::create(p) {
        Ok(f) => f,
        Err(e) => panic!("cannot create {}: {e}", p.display()),
    };
    let mut child = match program
        .arg(command)
        .arg("--namesrv")
        .arg(namesrv)
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&out_path)
        .arg("--log-dir")
        .arg(&log_dir)
        .arg("--deadline-s")
        .arg(deadline.as_secs_f64().to_string())
        // The C++ client writes its own logs under $HOME/logs; keep them in the work dir.
        .env("HOME", work)
        .stdin(Stdio::null())
        .stdout(Stdio::from(open(&stdout_path)))
        .stderr(Stdio::from(open(&stderr_path)))
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot start {program:?}: {e}"),
    };
    let limit = deadline + KILL_GRACE;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let diagnostics = || {
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let mut logs = String::new();
        for dir in [log_dir.clone(), work.join("logs").join("rocketmq-cpp")] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let text = read(&e.path());
                    let tail: Vec<&str> = text.lines().rev().take(60).collect();
                    logs.push_str(&format!("--- {} (last lines) ---\n", e.path().display()));
                    for l in tail.iter().rev() {
                        logs.push_str(l);
                        logs.push('\n');
                    }
                }
            }
        }
        format!(
            "stdout:\n{}\nstderr:\n{}\nC++ client logs:\n{}",
            read(&stdout_path),
            read(&stderr_path),
            logs
        )
    };
    let Some(status) = status else {
        panic!(
            "interop script `{command}` did not finish within {limit:?}\n{}",
            diagnostics()
        );
    };
    let text = match std::fs::read_to_string(&out_path) {
        Ok(t) => t,
        Err(e) => panic!(
            "interop script `{command}` exited {status} without output ({e})\n{}",
            diagnostics()
        ),
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => panic!("interop script output is not JSON ({e}): {text}"),
    };
    let errors = value
        .get("errors")
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default();
    if !status.success() || !errors.is_empty() {
        panic!(
            "interop script `{command}` reported errors (exit {status}):\n{}\noutput (long strings cut): {}\n{}",
            errors
                .iter()
                .map(|e| e.as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            compact(&value),
            diagnostics()
        );
    }
    value
}

/// `value` as JSON text with every string longer than [`COMPACT_STRING_CHARS`] cut, so that a
/// failure message stays readable.
pub fn compact(value: &serde_json::Value) -> String {
    fn cut(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) if s.chars().count() > COMPACT_STRING_CHARS => {
                let head: String = s.chars().take(COMPACT_STRING_CHARS).collect();
                serde_json::Value::String(format!("{head}...({} chars)", s.chars().count()))
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(cut).collect()),
            serde_json::Value::Object(o) => {
                serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), cut(v))).collect())
            }
            other => other.clone(),
        }
    }
    cut(value).to_string()
}

/// Strings longer than this are cut in failure messages.
pub const COMPACT_STRING_CHARS: usize = 48;
