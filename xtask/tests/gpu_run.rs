//! The GPU bundle's run.sh starts the runner beside it with the arguments it was given, from any folder, also
//! when the copy lost the runner's executable bits. The runner itself is tested in crates/tiny-gpu-run.

#[path = "../src/gpu_bundle/script.rs"]
mod script;

use std::process::Command;

#[test]
fn run_sh_starts_the_runner_beside_it_with_its_arguments() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("xtask-run-sh-{}", std::process::id()));
    let bundle = dir.join("repo/.device-bin");
    std::fs::create_dir_all(&bundle).unwrap();
    let run_sh = script::write_run_sh(&bundle).unwrap();
    let runner = bundle.join("gpu-run");
    std::fs::write(&runner, "#!/bin/sh\necho \"runner in $(pwd): $*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("bash").arg(&run_sh).args(["--only", "bench/ x"]).current_dir(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.ends_with(": --only bench/ x\n"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
