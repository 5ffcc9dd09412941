//! One-time setup shared by every test process: the target directory, the release `ramjet`
//! binary (built on demand) and the Python venv with the real RocketMQ C++ client. Each step
//! runs once per process (`OnceLock`) and once across processes (an exclusive `flock`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// PyPI package and version of the C++ client binding the interop tests use.
pub const ROCKETMQ_PIP_SPEC: &str = "rocketmq==0.4.4";
/// The JavaScript RocketMQ client the interop tests drive (npm).
pub const ALI_ONS_NPM_SPEC: &str = "ali-ons@3.12.0";

/// An exclusive advisory lock on a file, released on drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> FileLock {
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => panic!("cannot open lock file {}: {e}", path.display()),
        };
        // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            panic!(
                "flock({}) failed: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        FileLock { _file: file }
    }
}

/// The cargo profile directory this test binary runs from (`<target>/release`).
pub fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => panic!("cannot find the test executable: {e}"),
        };
        // <target>/<profile>/deps/<test binary>
        match exe.parent().and_then(Path::parent) {
            Some(p) => p.to_path_buf(),
            None => panic!(
                "test executable {} is not inside a cargo target dir",
                exe.display()
            ),
        }
    })
}

/// The cargo target directory.
pub fn target_dir() -> &'static Path {
    let profile = profile_dir();
    match profile.parent() {
        Some(p) => p,
        None => panic!("profile dir {} has no parent", profile.display()),
    }
}

/// Where tests put their temporary directories (on the same disk as the target dir, never a
/// tmpfs: the broker opens its files with O_DIRECT).
pub fn scratch_root() -> PathBuf {
    let dir = target_dir().join("e2e-tmp");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// A fresh temporary directory under [`scratch_root`].
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    match tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
    {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temp dir: {e}"),
    }
}

fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("Cargo.toml")
}

/// The release `ramjet` binary. `RAMJET_BIN` overrides; otherwise `cargo build --release
/// --workspace --tests --bin ramjet` runs once (a no-op when up to date) into this test's own
/// target dir, so the tests always run the binary built from the current sources.
///
/// `--workspace --tests` makes cargo resolve features exactly as `cargo test --workspace` does
/// (dev-dependencies and every member included), so the libraries the binary links are the ones
/// the test build just compiled and only the binary itself is compiled here. A plain `cargo
/// build --bin ramjet` resolves fewer features and rebuilt half the dependency tree (glommio, the
/// ramjet crates, serde, ...): about 150 s of a fresh clone's CI run on a 2-core VM, spent
/// inside the first end-to-end test.
pub fn ramjet_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RAMJET_BIN") {
            let p = PathBuf::from(p);
            if !p.is_file() {
                panic!("RAMJET_BIN={} is not a file", p.display());
            }
            return p;
        }
        let profile = profile_dir();
        let bin = profile.join("ramjet");
        let _lock = FileLock::acquire(&target_dir().join(".e2e-build.lock"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
            .arg("--workspace")
            .arg("--tests")
            .arg("--bin")
            .arg("ramjet")
            .arg("--manifest-path")
            .arg(workspace_manifest());
        match profile.file_name().and_then(|n| n.to_str()) {
            Some("release") => {
                cmd.arg("--release");
            }
            Some("debug") => {}
            Some(other) => {
                cmd.arg("--profile").arg(other);
            }
            None => panic!("odd profile dir {}", profile.display()),
        }
        cmd.env("CARGO_TARGET_DIR", target_dir());
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => panic!("cannot run {:?} to build the ramjet binary: {e}", cargo),
        };
        if !out.status.success() {
            panic!(
                "building the ramjet binary failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !bin.is_file() {
            panic!(
                "cargo built the ramjet binary but {} does not exist",
                bin.display()
            );
        }
        bin
    })
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("{what}: cannot run {cmd:?}: {e}")),
    }
}

/// The Python interpreter of `<target>/venv-rmq`, a venv with the real RocketMQ C++ client
/// (`rocketmq==0.4.4`). Created on first use; a failure to create it fails the test with what
/// pip said (the interop tests are part of CI, they are never skipped).
pub fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = target_dir().join("venv-rmq");
        let py = venv.join("bin").join("python");
        let check = || {
            run_checked(
                Command::new(&py).arg("-c").arg("from rocketmq.client import Producer, PushConsumer, PullConsumer, Message"),
                "importing the rocketmq C++ client binding",
            )
        };
        let _lock = FileLock::acquire(&target_dir().join(".e2e-venv.lock"));
        if py.is_file() && check().is_ok() {
            return py;
        }
        let python3 = std::env::var_os("PYTHON3").unwrap_or_else(|| "python3".into());
        if let Err(e) = run_checked(Command::new(&python3).arg("-m").arg("venv").arg("--clear").arg(&venv), "python3 -m venv") {
            panic!("cannot create the venv for the RocketMQ C++ client interop tests at {}: {e}\n\
                    These tests need python3 with the venv module (Debian/Ubuntu: apt-get install python3-venv).", venv.display());
        }
        if let Err(e) = run_checked(
            Command::new(&py).args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", ROCKETMQ_PIP_SPEC]),
            "pip install rocketmq==0.4.4",
        ) {
            panic!("cannot install the RocketMQ C++ client ({ROCKETMQ_PIP_SPEC}) into {}: {e}\n\
                    The interop tests need network access to PyPI (or a pip mirror via PIP_INDEX_URL) on first run.", venv.display());
        }
        if let Err(e) = check() {
            panic!("the RocketMQ C++ client was installed into {} but does not load: {e}", venv.display());
        }
        py
    })
}

/// `<target>/node-rmq/node_modules`, with the JavaScript RocketMQ client ali-ons
/// ([`ALI_ONS_NPM_SPEC`]). Installed with npm on first use; a failure fails the test with what
/// npm said (never skipped).
pub fn node_modules() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let prefix = target_dir().join("node-rmq");
        let modules = prefix.join("node_modules");
        let check = || {
            run_checked(
                Command::new("node")
                    .arg("-e")
                    .arg("require('ali-ons')")
                    .env("NODE_PATH", &modules),
                "loading ali-ons with node",
            )
        };
        let _lock = FileLock::acquire(&target_dir().join(".e2e-node.lock"));
        if modules.join("ali-ons").is_dir() && check().is_ok() {
            return modules;
        }
        if let Err(e) = std::fs::create_dir_all(&prefix) {
            panic!("cannot create {}: {e}", prefix.display());
        }
        if let Err(e) = run_checked(
            Command::new("npm").arg("install").arg("--prefix").arg(&prefix).args([
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--loglevel=error",
                ALI_ONS_NPM_SPEC,
            ]),
            "npm install ali-ons",
        ) {
            panic!("cannot install the JavaScript RocketMQ client ({ALI_ONS_NPM_SPEC}) into {}: {e}\n\
                    The JavaScript interop tests need node and npm (Debian: apt-get install nodejs npm) \
                    and network access to the npm registry on first run.", prefix.display());
        }
        if let Err(e) = check() {
            panic!("ali-ons was installed into {} but does not load: {e}", modules.display());
        }
        modules
    })
}

/// The driver of rocketmq-client-rust (`tests/interop/rust-rmq`, the Apache RocketMQ Rust
/// client from crates.io), built on first use into `<target>/interop-rust` with its own lock
/// file (a debug build: two minutes on a 2-core VM from nothing, against six for release).
/// A failure to build fails the test with what cargo said (never skipped).
pub fn rust_rmq_driver() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = interop_dir().join("rust-rmq");
        let target = target_dir().join("interop-rust");
        let bin = target.join("debug").join("ramjet-interop-rust-rmq");
        let _lock = FileLock::acquire(&target_dir().join(".e2e-rust-rmq.lock"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        if let Err(e) = run_checked(
            Command::new(&cargo)
                .arg("build")
                .arg("--locked")
                .arg("--manifest-path")
                .arg(dir.join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", &target)
                // The workspace's flags (if any) are not this crate's.
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS"),
            "cargo build of tests/interop/rust-rmq",
        ) {
            panic!(
                "cannot build the rocketmq-client-rust driver: {e}
                    The Rust interop test needs network access to crates.io on first run."
            );
        }
        if !bin.is_file() {
            panic!(
                "cargo built tests/interop/rust-rmq but {} does not exist",
                bin.display()
            );
        }
        bin
    })
}

/// Whether this kernel has cachestat(2) (Linux 6.5), with which the broker tells that a file
/// range is not in the page cache (and otherwise reads it on the shard as before).
pub fn kernel_has_cachestat() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 5)
}

/// The directory of the Python interop scripts.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}
