//! Input limits: every file runbook reads is a capped read of a regular file,
//! through the binary, for every kind of file and every way it can be wrong.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::run::text;

/// How long a child may take before the test kills it and fails: a refused
/// file is refused at once, so this is only a guard against a hang.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Runs `cmd` to completion, killing it (and failing) if it hangs.
pub(crate) fn bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the runbook binary runs");
    let started = Instant::now();
    loop {
        if child
            .try_wait()
            .expect("the child can be waited on")
            .is_some()
        {
            return child.wait_with_output().expect("the child's output");
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let out = child.wait_with_output().expect("the killed child's output");
            panic!("runbook hung: {:?}\n{}", cmd.get_args(), text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `runbook ARGS` in the package dir, with no credentials, and `HOME` and
/// the state dir in `home`.
fn runbook(args: &[&str], home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("HOME", home)
        .env("RUNBOOK_STATE_DIR", home.join("state"))
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .env_remove("ALIBABA_CLOUD_PROFILE")
        .env_remove("RUST_LOG");
    cmd
}

/// What stands at a file's path instead of a readable file.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// A symlink to `/dev/zero` (endless zeros).
    DevZero,
    /// A FIFO nobody writes to (opening it would wait forever).
    Fifo,
    /// A directory.
    Directory,
    /// A (sparse) regular file one byte over the cap.
    OverCap,
}

impl Bad {
    const ALL: [Bad; 4] = [Bad::DevZero, Bad::Fifo, Bad::Directory, Bad::OverCap];

    fn make(self, path: &Path, cap: u64) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        match self {
            Bad::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            Bad::Fifo => {
                let status = Command::new("mkfifo").arg(path).status().unwrap();
                assert!(status.success(), "mkfifo {}", path.display());
            }
            Bad::Directory => std::fs::create_dir(path).unwrap(),
            Bad::OverCap => std::fs::File::create(path)
                .unwrap()
                .set_len(cap + 1)
                .unwrap(),
        }
    }

    /// The words the error must say about the file.
    fn words(self, cap: u64) -> String {
        match self {
            Bad::DevZero => "is a character device, not a regular file".to_owned(),
            Bad::Fifo => "is a FIFO, not a regular file".to_owned(),
            Bad::Directory => "is a directory, not a regular file".to_owned(),
            Bad::OverCap => format!(
                "is larger than the {} limit",
                runbook::limits::format_bytes(cap)
            ),
        }
    }
}

/// One kind of file runbook reads: where it goes, its cap, the command that
/// reads it and the exit code of the refusal.
struct Kind {
    name: &'static str,
    /// The file's path relative to the test's temp dir (`HOME`).
    file: &'static str,
    cap: u64,
    args: fn(&str) -> Vec<String>,
    exit: i32,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

const KINDS: &[Kind] = &[
    Kind {
        name: "playbook (validate)",
        file: "pb.yaml",
        cap: runbook::limits::PLAYBOOK_BYTES,
        args: |f| strings(&["validate", f]),
        exit: 3,
    },
    Kind {
        name: "playbook (plan)",
        file: "pb.yaml",
        cap: runbook::limits::PLAYBOOK_BYTES,
        args: |f| strings(&["plan", f]),
        exit: 3,
    },
    Kind {
        name: "playbook (graph)",
        file: "pb.yaml",
        cap: runbook::limits::PLAYBOOK_BYTES,
        args: |f| strings(&["graph", f]),
        exit: 3,
    },
    Kind {
        name: "params",
        file: "params.yaml",
        cap: runbook::limits::PARAMS_BYTES,
        args: |f| strings(&["plan", "playbooks/stop-di-job.yaml", "--params", f]),
        exit: 2,
    },
    Kind {
        name: "plan",
        file: "plan.json",
        cap: runbook::limits::PLAN_BYTES,
        args: |f| strings(&["run", f, "--sim"]),
        exit: 3,
    },
    Kind {
        name: "fixtures",
        file: "fixtures.yaml",
        cap: runbook::limits::FIXTURES_BYTES,
        args: |f| {
            strings(&[
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--access-key-id",
                "k",
                "--access-key-secret",
                "s",
                "--fixtures",
                f,
            ])
        },
        exit: 2,
    },
    Kind {
        name: "aliyun config",
        file: ".aliyun/config.json",
        cap: runbook::limits::CONFIG_BYTES,
        args: |_| {
            strings(&[
                "plan",
                "playbooks/stop-di-job.yaml",
                "-p",
                "di_job_id=1",
                "--refresh",
            ])
        },
        exit: 4,
    },
];

#[test]
fn every_file_read_is_a_capped_read_of_a_regular_file() {
    for kind in KINDS {
        for bad in Bad::ALL {
            let home = tempfile::tempdir().unwrap();
            let path = home.path().join(kind.file);
            bad.make(&path, kind.cap);
            let shown = path.to_string_lossy().into_owned();
            let out = bounded(runbook(
                &(kind.args)(&shown)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                home.path(),
            ));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = format!("{} as {bad:?}: {}", kind.name, text(&out));
            assert_eq!(out.status.code(), Some(kind.exit), "{why}");
            assert!(stderr.contains(&shown), "names the file: {why}");
            assert!(stderr.contains(&bad.words(kind.cap)), "says why: {why}");
            assert!(!stderr.contains("panicked"), "{why}");
        }
    }
}

#[test]
fn validate_refuses_dev_zero_itself() {
    let home = tempfile::tempdir().unwrap();
    let out = bounded(runbook(&["validate", "/dev/zero"], home.path()));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("playbook `/dev/zero` is a character device, not a regular file"),
        "{}",
        text(&out)
    );
}
