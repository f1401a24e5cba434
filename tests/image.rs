//! The image for real: `scripts/build-image` builds `deploy/image/Containerfile.scratch` (the
//! Dockerfile's runtime stage on an empty base, so nothing is pulled) with buildah, and runc runs
//! `tidegate --version` and the image's ENTRYPOINT with `--check --no-environment` in it.
//!
//! Needs root (runc and buildah run rootful here) and the Debian packages `buildah`, `runc`,
//! `ca-certificates`, `tzdata` and `binutils` (scripts/test installs them). Buildah's storage
//! and runc's state live in a temporary folder, removed at the end.
//!
//! The static binary: `TIDEGATE_IMAGE_BINARY` if set (e.g. `target/ship/tidegate` from
//! scripts/build-release, to check the shipped build), otherwise this test links one with
//! `cargo rustc --bin tidegate -- -C target-feature=+crt-static`: the test build's profile and
//! features, so every dependency and the library are reused and only the executable is linked
//! again (seconds). That link replaces `target/<profile>/tidegate` for a moment; the test puts
//! the dynamic one back with `cargo build --bin tidegate` (cargo keeps both in `deps/`, so that
//! only copies). Cargo runs test binaries one after another, so no other test sees the swap.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const TAG: &str = "localhost/tidegate:image-test";
const VALID: &str =
    "/etc/tidegate/config.yaml: configuration valid (files, secrets and environment not checked)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `name` on PATH or in the sbin folders (runc is in /usr/sbin), or a failure naming the package.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found: install the Debian package `{package}` \
                 (scripts/test installs it when run as root)"
            )
        })
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run `cmd`, fail the test with its output unless it succeeds, return its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cargo arguments that select the test build of the binary: profile, target directory,
/// target triple (when the build had one) and features, read from `CARGO_BIN_EXE_tidegate`
/// (`<target dir>/[<triple>/]<profile dir>/tidegate`).
fn build_args() -> (PathBuf, PathBuf, Vec<String>) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tidegate"));
    let profile_dir = bin.parent().expect("the binary's folder");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => panic!("no profile folder in {}", bin.display()),
    };
    let above = profile_dir.parent().expect("the target folder");
    let mut args = vec![
        "--bin".into(),
        "tidegate".into(),
        "--profile".into(),
        profile,
    ];
    // Cargo keeps `.rustc_info.json` at the top of a target folder (`CACHEDIR.TAG` too, but
    // only when cargo created the folder: scripts/test creates it first on a clean clone).
    let top =
        |dir: &Path| dir.join(".rustc_info.json").is_file() || dir.join("CACHEDIR.TAG").is_file();
    let target_dir = if top(above) {
        above.to_path_buf()
    } else {
        let triple = above.file_name().and_then(|n| n.to_str()).expect("triple");
        args.extend(["--target".into(), triple.to_owned()]);
        above.parent().expect("the target folder").to_path_buf()
    };
    args.extend(["--target-dir".into(), target_dir.display().to_string()]);
    if !cfg!(feature = "lab") {
        args.push("--no-default-features".into());
    }
    (bin, target_dir, args)
}

/// Cargo as the developer ran it: without the variables cargo sets for test processes. Build
/// scripts that watch one (ring's watches `CARGO_MANIFEST_DIR`) would otherwise see a changed
/// environment and rebuild, here and again in the next `cargo test`.
fn cargo(target_dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
        if set_for_tests {
            cmd.env_remove(&*name);
        }
    }
    // Cargo put the build's library folders and the toolchain's in front of the search path.
    let path = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|p| !p.starts_with(target_dir) && !p.to_string_lossy().contains("/toolchains/"))
        .collect();
    if kept.is_empty() {
        cmd.env_remove("LD_LIBRARY_PATH");
    } else {
        cmd.env("LD_LIBRARY_PATH", std::env::join_paths(kept).expect("join"));
    }
    cmd
}

/// A static tidegate in `dir` (see the module comment), or `TIDEGATE_IMAGE_BINARY`.
fn static_binary(dir: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("TIDEGATE_IMAGE_BINARY") {
        return PathBuf::from(path);
    }
    let (bin, target_dir, args) = build_args();
    let flags = [
        "--",
        "-C",
        "target-feature=+crt-static",
        "-C",
        "strip=symbols",
    ];
    ok(cargo(&target_dir).arg("rustc").args(&args).args(flags));
    let copy = dir.join("tidegate");
    std::fs::copy(&bin, &copy).expect("copy the static binary");
    ok(cargo(&target_dir).arg("build").args(&args));
    let dynamic = std::fs::metadata(&bin).expect("stat the test binary").len();
    assert!(
        dynamic != std::fs::metadata(&copy).expect("stat").len(),
        "{} is still the static build after `cargo build`",
        bin.display()
    );
    copy
}

/// Buildah and runc with their state in one temporary folder; containers removed on drop.
struct Engine {
    dir: tempfile::TempDir,
    buildah: PathBuf,
    runc: PathBuf,
    runs: std::cell::Cell<u32>,
}

impl Engine {
    fn new() -> Self {
        let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
        assert_eq!(
            uid, 0,
            "tests/image.rs runs buildah and runc as root (as scripts/test does in CI); \
             run the tests as root"
        );
        Engine {
            dir: tempfile::tempdir().expect("tempdir"),
            buildah: tool("buildah", "buildah"),
            runc: tool("runc", "runc"),
            runs: std::cell::Cell::new(0),
        }
    }

    fn storage_args(&self) -> Vec<String> {
        let at = |sub: &str| self.dir.path().join(sub).display().to_string();
        vec![
            "--root".into(),
            at("storage"),
            "--runroot".into(),
            at("run"),
        ]
    }

    fn buildah(&self) -> Command {
        let mut cmd = Command::new(&self.buildah);
        cmd.args(["--storage-driver", "vfs"])
            .args(self.storage_args());
        cmd
    }

    fn runc(&self) -> Command {
        let mut cmd = Command::new(&self.runc);
        cmd.arg("--root").arg(self.dir.path().join("runc"));
        cmd
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for n in 0..self.runs.get() {
            let _ = self
                .runc()
                .args(["delete", "--force", &container_id(n)])
                .output();
        }
        let _ = self.buildah().args(["rm", "--all"]).output();
    }
}

fn container_id(n: u32) -> String {
    format!("tidegate-image-{}-{n}", std::process::id())
}

/// Size in bytes of the image's layers (uncompressed, as buildah stores them).
fn image_bytes(engine: &Engine) -> u64 {
    let inspect: Value = serde_json::from_str(&ok(engine
        .buildah()
        .args(["inspect", "--type", "image", TAG])))
    .expect("buildah inspect prints JSON");
    let manifest: Value =
        serde_json::from_str(inspect["Manifest"].as_str().expect("Manifest")).expect("manifest");
    let layers = manifest["layers"].as_array().expect("layers");
    layers.iter().filter_map(|l| l["size"].as_u64()).sum()
}

/// The image's OCI configuration (`config` of the image's OCI v1 document).
fn image_config(engine: &Engine) -> Value {
    let inspect: Value = serde_json::from_str(&ok(engine
        .buildah()
        .args(["inspect", "--type", "image", TAG])))
    .expect("buildah inspect prints JSON");
    inspect["OCIv1"]["config"].clone()
}

/// The `ENTRYPOINT [...]` line of a Dockerfile, as a list.
fn entrypoint(dockerfile: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(dockerfile)).expect("read Dockerfile");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .unwrap_or_else(|| panic!("{dockerfile} has no ENTRYPOINT"));
    serde_json::from_str(line).expect("ENTRYPOINT in JSON form")
}

/// Run `args` in a container of the mounted image at `rootfs` as the image's user, with its
/// environment, a read-only root, a tmpfs /tmp and `config` bind-mounted at
/// /etc/tidegate/config.yaml, as the pod has them.
fn run_in(engine: &Engine, rootfs: &Path, config: &Path, args: &[&str]) -> Output {
    let n = engine.runs.get();
    engine.runs.set(n + 1);
    let bundle = engine.dir.path().join(format!("bundle-{n}"));
    std::fs::create_dir_all(&bundle).expect("bundle");
    ok(engine.runc().arg("spec").arg("--bundle").arg(&bundle));
    let path = bundle.join("config.json");
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read spec")).expect("spec");
    let image = image_config(engine);
    let user = image["User"].as_str().expect("User");
    let (uid, gid) = user.split_once(':').expect("User is uid:gid");
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    let process = &mut spec["process"];
    process["terminal"] = false.into();
    process["args"] = serde_json::json!(args);
    process["env"] = image["Env"].clone();
    process["cwd"] = "/".into();
    process["user"] = serde_json::json!({
        "uid": uid.parse::<u32>().expect("numeric uid"),
        "gid": gid.parse::<u32>().expect("numeric gid"),
    });
    let mounts = spec["mounts"].as_array_mut().expect("mounts");
    mounts.push(
        serde_json::json!({"destination": "/etc/tidegate/config.yaml", "type": "bind",
        "source": config, "options": ["rbind", "ro"]}),
    );
    mounts.push(
        serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=65536k"]}),
    );
    std::fs::write(&path, spec.to_string()).expect("write spec");
    let mut cmd = engine.runc();
    cmd.arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(container_id(n));
    output(&mut cmd)
}

/// What the image holds besides the binary: CA bundle, zoneinfo, users, the data directory.
fn assert_base_files(rootfs: &Path) {
    let certs = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("the image holds the CA bundle");
    let count = certs.matches("BEGIN CERTIFICATE").count();
    assert!(count > 100, "only {count} CA certificates");
    for zone in ["UTC", "Europe/Berlin", "America/New_York"] {
        let data = std::fs::read(rootfs.join("usr/share/zoneinfo").join(zone))
            .unwrap_or_else(|e| panic!("zoneinfo {zone} missing from the image: {e}"));
        assert!(data.starts_with(b"TZif"), "{zone} is not a TZif file");
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let nss = std::fs::read_to_string(rootfs.join("etc/nsswitch.conf")).expect("nsswitch");
    assert!(nss.contains("hosts: files dns"), "{nss}");
    let data = std::fs::metadata(rootfs.join("var/lib/tidegate")).expect("data directory");
    assert_eq!((data.uid(), data.gid()), (65532, 65532), "data dir owner");
    assert_eq!(data.mode() & 0o7777, 0o750, "data dir mode");
    let home = std::fs::metadata(rootfs.join("home/nonroot")).expect("home directory");
    assert_eq!(
        (home.uid(), home.mode() & 0o7777),
        (65532, 0o750),
        "home dir"
    );
    let lib = std::fs::metadata(rootfs.join("var/lib")).expect("/var/lib");
    assert_eq!(lib.uid(), 0, "/var/lib stays root's");
    let tmp = std::fs::metadata(rootfs.join("tmp")).expect("/tmp");
    assert_eq!(tmp.mode() & 0o7777, 0o1777, "/tmp mode");
}

/// The image's metadata matches the Dockerfile's final stage.
fn assert_image_config(engine: &Engine) {
    let config = image_config(engine);
    assert_eq!(config["User"], "65532:65532", "{config}");
    let env = config["Env"].as_array().expect("Env");
    assert!(env.iter().any(|e| e == "MALLOC_ARENA_MAX=2"), "{config}");
    assert_eq!(config["Entrypoint"], entrypoint("Dockerfile"), "{config}");
    assert!(
        config["Volumes"].get("/var/lib/tidegate").is_some(),
        "{config}"
    );
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
}

#[test]
fn scratch_image_builds_and_runs_version_and_check() {
    let engine = Engine::new();
    let binary = static_binary(engine.dir.path());
    let built = ok(Command::new(repo().join("scripts/build-image"))
        .arg("--binary")
        .arg(&binary)
        .args(["--tag", TAG])
        .args(engine.storage_args()));
    assert!(built.contains(TAG), "{built}");
    let binary_bytes = std::fs::metadata(&binary).expect("binary").len();
    let image = image_bytes(&engine);
    eprintln!("image {image} bytes, of which the binary {binary_bytes}");
    assert!(
        image > binary_bytes && image - binary_bytes < 8_000_000,
        "the image ({image} bytes) should be the binary ({binary_bytes}) plus a few MB of base files"
    );
    assert_image_config(&engine);

    let container = ok(engine.buildah().args(["from", TAG]));
    let rootfs = PathBuf::from(ok(engine.buildah().args(["mount", container.trim()])).trim());
    assert_base_files(&rootfs);

    let config = engine.dir.path().join("config.yaml");
    std::fs::copy(repo().join("config/tidegate.yaml"), &config).expect("copy the config");
    let entry = entrypoint("Dockerfile");
    let entry: Vec<&str> = entry
        .as_array()
        .expect("ENTRYPOINT list")
        .iter()
        .filter_map(Value::as_str)
        .collect();

    let out = run_in(&engine, &rootfs, &config, &[entry[0], "--version"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("tidegate {}", env!("CARGO_PKG_VERSION"))
    );

    let mut check = entry.clone();
    check.extend(["--check", "--no-environment"]);
    let out = run_in(&engine, &rootfs, &config, &check);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), VALID);

    // Plain --check reads the container's filesystem: the Git token Secret is not mounted.
    check.pop();
    let out = run_in(&engine, &rootfs, &config, &check);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/etc/tidegate/git/token"), "{stderr}");
}
