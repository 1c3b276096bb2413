//! The train and predict examples as a user runs them, as child processes on a small generated set: bad files,
//! Ctrl-C, metrics, and a model exported by one process and used by another.
//!
//! `cargo test` builds the examples before it runs any test; these tests find the binaries beside their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary of example `name`, built by `cargo test` into `target/<profile>/examples/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let path = profile.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the whole `cargo test -p tiny-learner`, which builds the examples first",
        path.display()
    );
    path
}

/// A fresh folder under the system's temp folder, unique to this process and `label`.
fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tiny-examples-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A synthetic Imagenette of about 270 JPEGs in `dir/data`.
fn small_set(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    tiny_data::synth::generate_with(&data, 0.02, 7, 2).unwrap();
    data
}

/// The train example on `data` at 16 px with `args`, ready to run (to redirect its output first, say).
fn train_command(data: &Path, args: &[&str]) -> Command {
    let base = ["--size", "16", "--bs", "16", "--workers", "1", "--threads", "1"];
    let mut cmd = Command::new(example("train"));
    cmd.arg("--data").arg(data).args(base).args(args).env("RUST_BACKTRACE", "0");
    cmd
}

/// Runs the train example on `data` at 16 px with `args`, and waits for it.
fn train(data: &Path, args: &[&str]) -> Output {
    train_command(data, args).output().expect("run the train example")
}

/// The JSON line the train example ends with.
fn json_line(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default().to_owned()
}

/// Runs the train example like `train`, checks that it succeeded, and returns its JSON summary.
fn train_json(data: &Path, args: &[&str]) -> serde_json::Value {
    let out = train(data, args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&json_line(&out)).unwrap()
}

#[test]
fn skip_bad_files_leaves_them_out_and_counts_them() {
    // Issue 19: BadFilePolicy::Skip had no switch, so a bad validation file threw away a finished training epoch.
    let dir = temp_dir("skip");
    let data = small_set(&dir);
    let jpegs = |split: &str| tiny_data::get_image_files(data.join(split)).unwrap();
    let (bad_train, bad_valid) = (jpegs("train")[3].clone(), jpegs("val")[0].clone());
    let bytes = std::fs::read(&bad_train).unwrap();
    std::fs::write(&bad_train, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(&bad_valid, b"not a JPEG at all").unwrap();

    let out = train(&data, &["--epochs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad file stops the fit without the switch");
    // The validation images' headers are read first, before the fit, so the bad validation file is named.
    assert!(stderr.contains("--skip-bad-files") && stderr.contains(&*bad_valid.to_string_lossy()), "{stderr}");

    let out = train(&data, &["--epochs", "1", "--skip-bad-files"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(json_line(&out).contains("\"skipped_files\":2"), "{}", json_line(&out));
    assert!(
        stderr.contains("skipped 2 unreadable files") && stderr.contains(&*bad_valid.to_string_lossy()),
        "{stderr}"
    );

    // Issue 29: after the fit, the interpretation views and TTA leave out the files the fit skipped (they failed
    // on the count, and on the bad file).
    let views = dir.join("views");
    let view_args = ["--epochs", "1", "--skip-bad-files", "--tta", "--interpret"];
    let out = train(&data, &[&view_args[..], &[views.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json_line(&out)).unwrap();
    assert!(json["tta_acc"].as_f64().is_some_and(f64::is_finite), "{json}");
    assert!(views.join("confusion.png").is_file() || std::fs::read_dir(&views).unwrap().count() > 0, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_validation_image_stops_the_run_before_the_first_epoch() {
    // Issue 29: a bad validation image was found only after the first epoch's training.
    let dir = temp_dir("bad-valid");
    let data = small_set(&dir);
    let bad = tiny_data::get_image_files(data.join("val")).unwrap()[1].clone();
    std::fs::write(&bad, b"not an image").unwrap();
    let out = train(&data, &["--epochs", "1"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success());
    assert!(stderr.contains("before the fit") && stderr.contains(&*bad.to_string_lossy()), "{stderr}");
    assert!(!stdout.lines().any(|l| l.starts_with("0 ")), "no epoch ran: {stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_says_where_the_fit_stopped_and_which_checkpoint_is_the_last() {
    // Issue 19: SIGINT printed nothing, neither where the fit stopped nor which checkpoint was the last good one.
    interrupted_by("INT");
}

#[test]
fn sigterm_stops_the_fit_as_ctrl_c_does() {
    // Issue 29: SIGTERM (a job scheduler's stop) ended the process at once, exit 143, with no word of the checkpoint.
    interrupted_by("TERM");
}

/// Sends `signal` to a training run once its first checkpoint is written, and checks that the fit ends after its
/// batch, saying which checkpoint to resume from, with exit code 130.
fn interrupted_by(signal: &str) {
    let dir = temp_dir(&format!("sig{}", signal.to_lowercase()));
    let data = small_set(&dir);
    let save = dir.join("ck-{epoch}.safetensors");
    let child = Command::new(example("train"))
        .arg("--data")
        .arg(&data)
        .args(["--size", "16", "--bs", "8", "--workers", "1", "--threads", "1", "--epochs", "100000", "--save"])
        .arg(&save)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the train example");
    let first = dir.join("ck-0.safetensors");
    let start = Instant::now();
    while !first.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(first.exists(), "the first epoch's checkpoint appears");
    let kill = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("run kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait for the train example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "the conventional exit code of an interrupted run: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("interrupted in epoch")).unwrap_or_else(|| panic!("{stderr}"));
    // The last file written names the epoch before the one that was interrupted.
    let epoch: usize = line["interrupted in epoch ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(epoch >= 1, "{line}");
    let last = dir.join(format!("ck-{}.safetensors", epoch - 1));
    assert!(line.contains(&format!("--resume {}", last.display())), "{line}");
    assert!(last.exists() && !dir.join(format!("ck-{epoch}.safetensors")).exists(), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_exported_model_predicts_in_a_fresh_process_what_get_preds_gave() {
    // Issue 14: train --export, then --example predict from another process, without the data folder, gives the
    // classes that get_preds gave in the training process (which --interpret writes to preds.csv).
    let dir = temp_dir("export");
    let data = small_set(&dir);
    let (model, views) = (dir.join("model.safetensors"), dir.join("views"));
    let args = ["--epochs", "2", "--metrics", "accuracy,error_rate,top_k:3,f1", "--export"];
    let out = train(&data, &[&args[..], &[model.to_str().unwrap(), "--interpret", views.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = json_line(&out);
    for name in ["\"accuracy\":", "\"error_rate\":", "\"top_3_accuracy\":", "\"f1_score\":"] {
        assert!(json.contains(name), "{name} missing from {json}");
    }
    for view in ["confusion_matrix.png", "confusion_matrix.txt", "most_confused.txt", "top_losses.png"] {
        assert!(views.join(view).is_file(), "{view}");
    }
    for view in ["show_batch.png", "loss.png", "preds.csv"] {
        assert!(views.join(view).is_file(), "{view}");
    }
    // preds.csv: file,actual,predicted,probability,loss, one row per validation image, in the validation order.
    let csv = std::fs::read_to_string(views.join("preds.csv")).unwrap();
    let rows: Vec<Vec<String>> =
        csv.lines().skip(1).map(|l| l.split(',').map(|f| f.trim_matches('"').to_owned()).collect()).collect();
    assert!(rows.len() > 20, "{} rows", rows.len());
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let copies: Vec<PathBuf> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let to = images.join(format!("{i}.jpg"));
            std::fs::copy(&row[0], &to).unwrap();
            to
        })
        .collect();
    std::fs::remove_dir_all(&data).unwrap();

    let out = Command::new(example("predict"))
        .arg(&model)
        .args(&copies)
        .args(["--json", "--top", "1"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the predict example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let predictions = line["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), rows.len());
    for (i, (p, row)) in predictions.iter().zip(&rows).enumerate() {
        assert_eq!(p["class"].as_str(), Some(row[2].as_str()), "image {i}");
        let (prob, want): (f64, f64) = (p["prob"].as_f64().unwrap(), row[3].parse().unwrap());
        assert!((prob - want).abs() < 1e-5, "image {i}: {prob} vs {want}");
    }
    // The text form names the file and its classes.
    let out = Command::new(example("predict")).arg(&model).arg(&copies[0]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("{}: {}", copies[0].display(), rows[0][2])), "{text}");

    // Issue 29: a missing or broken file no longer hides the others' predictions; a folder stands for its images,
    // and after `--` a name that starts with `--` is a file.
    let odd = images.join("--odd.jpg");
    std::fs::copy(&copies[1], &odd).unwrap();
    let broken = dir.join("broken.jpg");
    std::fs::write(&broken, b"not a JPEG").unwrap();
    let out = Command::new(example("predict"))
        .arg(&model)
        .arg(&copies[0])
        .arg(dir.join("missing.jpg"))
        .arg(&broken)
        .arg(&images)
        .arg("--")
        .arg(&odd)
        .output()
        .unwrap();
    let (text, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(text.lines().count(), 1 + copies.len() + 1 + 1, "the good files, the folder's and --odd.jpg: {text}");
    assert!(
        stderr.contains("cannot predict") && stderr.contains("missing.jpg") && stderr.contains("broken.jpg"),
        "{stderr}"
    );
    assert!(stderr.contains("2 of"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_or_closed_stdout_is_an_error_after_the_work_not_a_panic() {
    // Issue 29: `train ... > /dev/full` panicked in the progress table (exit 101) and never wrote the export;
    // `predict ... | head -1` panicked too.
    let dir = temp_dir("full-stdout");
    let data = small_set(&dir);
    let export = dir.join("model.tiny");
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("open /dev/full");
    let out = train_command(&data, &["--epochs", "1", "--export", export.to_str().unwrap()])
        .stdout(full())
        .output()
        .expect("run the train example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "an error, not a panic: {stderr}");
    assert!(stderr.contains("the fit goes on without it"), "said once, as the progress stops: {stderr}");
    assert!(stderr.contains("writing the JSON line to standard output"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(export.is_file(), "the export is written before the JSON line: {stderr}");

    let image = tiny_data::get_image_files(data.join("val")).unwrap()[0].clone();
    let out = Command::new(example("predict")).arg(&export).arg(&image).stdout(full()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writing the predictions to standard output") && !stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_output_that_is_a_folder_or_named_twice_is_refused_before_any_data_is_read() {
    // Issue 29: `--export DIR` failed only after the fit, and `--save X --export X` let the export replace the
    // checkpoint.
    let dir = temp_dir("outputs");
    let out = train(Path::new("/no/such/folder"), &["--export", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("it is a folder"), "{stderr}");
    assert!(!stderr.contains("no such folder"), "the output is checked first: {stderr}");
    let same = dir.join("model.safetensors");
    let out =
        train(Path::new("/no/such/folder"), &["--save", same.to_str().unwrap(), "--export", same.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--save and --export both name"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resumed_fit_normalises_with_the_checkpoints_statistics() {
    // Issue 29: --resume recomputed the statistics from its own first batch, so the same checkpoint gave another
    // validation accuracy at another batch size.
    let dir = temp_dir("resume-stats");
    let data = small_set(&dir);
    let save = dir.join("ck-{epoch}.safetensors");
    let stats = "0.25,0.5,0.75,0.125,0.25,0.375";
    let first = train_json(&data, &["--epochs", "1", "--stats", stats, "--save", save.to_str().unwrap()]);
    assert_eq!(first["stats_from"], "--stats", "{first}");
    let ck = dir.join("ck-0.safetensors");
    let resumed = train_json(&data, &["--epochs", "2", "--resume", ck.to_str().unwrap()]);
    assert_eq!(resumed["stats_from"], "the checkpoint", "{resumed}");
    assert_eq!(resumed["stats_mean"], serde_json::json!([0.25, 0.5, 0.75]), "{resumed}");
    assert_eq!(resumed["stats_std"], serde_json::json!([0.125, 0.25, 0.375]), "{resumed}");
    let fresh = train_json(&data, &["--epochs", "1"]);
    assert_eq!(fresh["stats_from"], "the first training batch", "{fresh}");
    // An export given to --init brings its statistics (ImageNet's were used before).
    let export = dir.join("model.safetensors");
    train_json(&data, &["--epochs", "1", "--stats", stats, "--export", export.to_str().unwrap()]);
    let init = train_json(&data, &["--epochs", "1", "--init", export.to_str().unwrap()]);
    assert_eq!(init["stats_from"], "the --init export", "{init}");
    assert_eq!(init["stats_mean"], serde_json::json!([0.25, 0.5, 0.75]), "{init}");
    // --stats still wins.
    let fixed = train_json(&data, &["--epochs", "2", "--stats", "imagenet", "--resume", ck.to_str().unwrap()]);
    assert_eq!(fixed["stats_from"], "--stats", "{fixed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn surprising_flag_combinations_are_warned_of() {
    // Issue 29: --fine-tune without pretrained weights trained a random body without a word, and --lr-find ignored
    // --export and --save silently (and printed its stop as `LrAboveMax`).
    let dir = temp_dir("warnings");
    let data = small_set(&dir);
    let out = train(&data, &["--fine-tune", "1", "--freeze-epochs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("--fine-tune without --pretrained or --init"), "{stderr}");
    let export = dir.join("m.safetensors");
    // From `dir`, where the finder writes its lr_find.png.
    let out =
        train_command(&data, &["--lr-find", "--export", export.to_str().unwrap()]).current_dir(&dir).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stderr.contains("--export not used"), "{stderr}");
    assert!(!stdout.contains("LrAboveMax") && !export.exists(), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_run_on_the_same_save_path_is_refused() {
    // Issue 29: two runs on one --save clobbered each other's checkpoints silently.
    let dir = temp_dir("save-lock");
    let data = small_set(&dir);
    let save = dir.join("ck-{epoch}.safetensors");
    let lock = dir.join(".ck-{epoch}.safetensors.lock");
    // A live process (this test) holds the lock: the run is refused, naming it, and the lock stays.
    std::fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let out = train(&data, &["--epochs", "1", "--save", save.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&format!("process {}", std::process::id())), "{stderr}");
    assert!(lock.exists() && !dir.join("ck-0.safetensors").exists());
    // A lock whose process is gone is taken over, and the run's own lock is removed when it ends.
    std::fs::write(&lock, "4294967294\n").unwrap();
    let out = train(&data, &["--epochs", "1", "--save", save.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("taking over"), "{stderr}");
    assert!(dir.join("ck-0.safetensors").exists() && !lock.exists(), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_metric_is_refused_before_any_data_is_read() {
    let out = train(Path::new("/no/such/folder"), &["--metrics", "accuracy,acuracy"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown metric \"acuracy\"") && stderr.contains("error_rate, top_k:K, f1"), "{stderr}");
    assert!(!stderr.contains("no such folder"), "the metric is checked first: {stderr}");
}

#[test]
fn fine_tune_from_given_weights_runs_its_two_stages_with_imagenet_statistics() {
    // Issue 15: `train --init W --fine-tune N --freeze-epochs 1 --aug`, W a state_dict with a head of another size.
    let dir = temp_dir("finetune");
    let data = small_set(&dir);
    let weights = dir.join("w.safetensors");
    tiny_nn::save_state_dict(&tiny_nn::simple_cnn(1000).unwrap(), &weights).unwrap();
    let w = weights.to_str().unwrap();
    let out = train(&data, &["--init", w, "--fine-tune", "1", "--freeze-epochs", "1", "--aug", "--accum", "32"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("its head does not fit 10 classes"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json_line(&out)).unwrap();
    assert_eq!(json["fine_tune"], 1);
    assert_eq!(json["epochs"], 2, "one frozen epoch and one more");
    assert_eq!(json["stats_mean"][0].as_f64().map(|m| (m * 1000.0).round()), Some(485.0), "ImageNet's statistics");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.contains(" True ")).count(), 2, "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn contradictory_or_bad_flags_are_refused_before_any_data_is_read() {
    let missing = Path::new("/no/such/folder");
    for (args, needle) in [
        (&["--fine-tune", "1", "--resume", "x.safetensors"][..], "cannot --resume"),
        (&["--pretrained"][..], "add --model with one of resnet18, resnet34, resnet50"),
        (&["--label-smoothing", "2"][..], "epsilon in [0, 1]"),
        (&["--opt", "lamb"][..], "possible values: sgd, adam, adamw"),
        (&["--accum", "0"][..], "at least 1"),
        (&["--model", "resnet18", "--pretrained"][..], "cargo xtask fetch-weights resnet18"),
        (&["--cache", "always"][..], "expected off, auto or on"),
        (&["--precision", "fp16"][..], "supported: fp32, bf16"),
    ] {
        let out = train(missing, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(needle) && !stderr.contains("no such folder"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_decode_once_cache_changes_no_number_and_reports_each_epochs_loader_share() {
    let dir = temp_dir("cache");
    let data = small_set(&dir);
    let run = |extra: &[&str]| train_json(&data, &[&["--epochs", "2"][..], extra].concat());
    let (auto, off, budget) = (run(&[]), run(&["--cache", "off"]), run(&["--cache-mb", "0"]));
    for key in ["train_loss", "valid_loss", "valid_acc"] {
        assert_eq!(auto[key], off[key], "{key}");
        assert_eq!(auto[key], budget[key], "{key}: a budget of 0 caches nothing and decodes everything");
    }
    assert_eq!(auto["epoch_data_wait_pct"].as_array().map(Vec::len), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn label_smoothing_reaches_the_loss() {
    let dir = temp_dir("smooth");
    let data = small_set(&dir);
    let valid_loss =
        |extra: &[&str]| train_json(&data, &[&["--epochs", "0"][..], extra].concat())["valid_loss"].as_f64().unwrap();
    let (plain, zero, smooth) =
        (valid_loss(&[]), valid_loss(&["--label-smoothing", "0"]), valid_loss(&["--label-smoothing", "0.5"]));
    assert_eq!(plain, zero, "eps 0 is the chapter's cross entropy");
    assert_ne!(plain, smooth);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn precision_bf16_trains_close_to_fp32_and_says_so() {
    let dir = temp_dir("bf16");
    let data = small_set(&dir);
    let run = |extra: &[&str]| train_json(&data, &[&["--epochs", "1"][..], extra].concat());
    let (default, fp32, bf16) = (run(&[]), run(&["--precision", "fp32"]), run(&["--precision", "bf16"]));
    // fp32 is the default, and its line names no precision, as before the flag existed.
    assert!(default.get("precision").is_none() && fp32.get("precision").is_none());
    assert_eq!(default["train_loss"], fp32["train_loss"]);
    assert_eq!(bf16["precision"], "bf16");
    let (a, b) = (fp32["train_loss"].as_f64().unwrap(), bf16["train_loss"].as_f64().unwrap());
    assert!(a != b && (a - b).abs() < 0.05 * a, "fp32 {a} vs bf16 {b}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn labels_from_a_csv_or_from_file_names_train_one_epoch() {
    let dir = temp_dir("labels");
    // The small set's train/ images, copied flat into images/ with their class in a CSV and in their names.
    let src = small_set(&dir).join("train");
    let flat = dir.join("flat");
    std::fs::create_dir_all(flat.join("images")).unwrap();
    let mut rows = String::from("name,breed,is_valid\n");
    let mut n = 0usize;
    for class in std::fs::read_dir(&src).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let label = class.file_name().unwrap().to_string_lossy().into_owned();
        for image in std::fs::read_dir(&class).unwrap().flatten().map(|e| e.path()) {
            let name = format!("{label}_{n}.jpg");
            std::fs::copy(&image, flat.join("images").join(&name)).unwrap();
            rows.push_str(&format!("{name},{label},{}\n", if n.is_multiple_of(4) { "True" } else { "False" }));
            n += 1;
        }
    }
    std::fs::write(flat.join("labels.csv"), &rows).unwrap();
    let csv = ["--labels-csv", "labels.csv", "--folder", "images", "--label-col", "breed", "--valid-col", "is_valid"];
    let json = train_json(&flat, &[&["--epochs", "1", "--accept-missing-classes"][..], &csv[..]].concat());
    assert_eq!(json["n_valid"].as_u64().unwrap(), n.div_ceil(4) as u64, "{json}");
    assert!(json["valid_loss"].as_f64().unwrap().is_finite(), "{json}");

    let json = train_json(
        &flat.join("images"),
        &["--epochs", "1", "--accept-missing-classes", "--label-re", r"^(.+)_\d+\.jpg$", "--valid-pct", "0.25"],
    );
    assert_eq!(json["n_train"].as_u64().unwrap() + json["n_valid"].as_u64().unwrap(), n as u64, "{json}");

    // A bad row stops before any training, naming the file and the line.
    std::fs::write(flat.join("labels.csv"), format!("{rows}missing.jpg,x,False\n")).unwrap();
    let out = train(&flat, &[&["--epochs", "1"][..], &csv[..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("labels.csv, line {}", n + 2)), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unsplit_folder_trains_with_valid_pct_and_the_json_line_counts_what_was_left_out() {
    let dir = temp_dir("unsplit");
    // The small set's train/ alone is one folder of class folders, fastai's layout for from_folder(valid_pct=).
    let data = small_set(&dir).join("train");
    let class = std::fs::read_dir(&data).unwrap().flatten().map(|e| e.path()).find(|p| p.is_dir()).unwrap();
    let image = std::fs::read_dir(&class).unwrap().flatten().map(|e| e.path()).next().unwrap();
    std::fs::create_dir_all(class.join("deeper")).unwrap();
    std::fs::copy(&image, class.join("deeper/nested.JPEG")).unwrap();
    std::fs::write(data.join("README.txt"), "not an image").unwrap();

    let out = train(&data, &["--epochs", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--valid-pct"), "{}", String::from_utf8_lossy(&out.stderr));

    let json = train_json(&data, &["--epochs", "1", "--valid-pct", "0.2", "--accept-missing-classes"]);
    let (n_train, n_valid) = (json["n_train"].as_u64().unwrap(), json["n_valid"].as_u64().unwrap());
    assert_eq!(n_valid, (n_train + n_valid) / 5, "{json}");
    assert_eq!(json["left_out"]["not_an_image"], 1, "{json}");
    assert!(json["valid_loss"].as_f64().unwrap().is_finite(), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_zoos_resnets_train_fine_tune_from_torchvision_named_weights_export_and_predict() {
    // Issue 30: resnet34 and xresnet18 train by name (resnet34 after its summary); resnet50 fine-tunes from a state_dict with torchvision's names and a
    // 1000-class head, exports, and predicts in a fresh process.
    let dir = temp_dir("zoo");
    let data = small_set(&dir);
    let out = train(&data, &["--model", "resnet34", "--epochs", "1", "--summary"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ResNet (Input shape: 16 x 3 x 16 x 16)"), "{stdout}");
    assert!(stdout.contains("Total params: 21,289,802"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&json_line(&out)).unwrap();
    assert_eq!(json["model"], "resnet34", "{json}");
    let weights = dir.join("r50.safetensors");
    tiny_nn::save_state_dict(&tiny_nn::resnet50(1000).unwrap(), &weights).unwrap();
    let model = dir.join("r50-export.safetensors");
    let (w, m) = (weights.to_str().unwrap(), model.to_str().unwrap());
    let args = ["--model", "resnet50", "--init", w, "--fine-tune", "1", "--freeze-epochs", "1"];
    let out = train(&data, &[&args[..], &["--export", m]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("its head does not fit 10 classes"), "{stderr}");
    let image = tiny_data::get_image_files(data.join("val")).unwrap().remove(0);
    let out = Command::new(example("predict")).arg(&model).arg(&image).args(["--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(line["predictions"].as_array().map(Vec::len), Some(1), "{line}");
    // fastai's xresnet trains at a size its shortcuts can pool (a multiple of 32), and refuses 16 px before any work.
    let out = train(&data, &["--model", "xresnet18", "--epochs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("must be a multiple of 32"), "{stderr}");
    let base = ["--bs", "16", "--workers", "1", "--threads", "1", "--size", "32", "--epochs", "1"];
    let out =
        Command::new(example("train")).arg("--data").arg(&data).args(base).args(["--model", "xresnet18"]).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(json_line(&out).contains("\"model\":\"xresnet18\""), "{}", json_line(&out));
    // fastai's vision_learner model: the torchvision file's body under create_head, fine-tuned in fastai's three
    // groups, exported with its head and predicted from in a fresh process.
    let r18 = dir.join("r18.safetensors");
    tiny_nn::save_state_dict(&tiny_nn::resnet18(1000).unwrap(), &r18).unwrap();
    let fastai_export = dir.join("fastai-head.safetensors");
    let args = ["--model", "resnet18", "--head", "fastai", "--fine-tune", "1", "--freeze-epochs", "1", "--init"];
    let out =
        train(&data, &[&args[..], &[r18.to_str().unwrap(), "--export", fastai_export.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("its head does not fit 10 classes; 1.2.bias"), "{stderr}");
    assert!(json_line(&out).contains("\"head\":\"fastai\""), "{}", json_line(&out));
    let out = Command::new(example("predict")).arg(&fastai_export).arg(&image).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = train(&data, &["--model", "xresnet18", "--head", "fastai"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("fastai's head goes on a torchvision resnet body"), "{stderr}");
    // --pretrained names the model's own weights file in the workspace's data/weights (issue 29: run from another
    // folder, train reads and writes the workspace's data, never ./data) and how to fetch it; simple_cnn has none.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let weights = workspace.join("data/weights/resnet50.safetensors");
    if !weights.exists() {
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let out = train_command(&data, &["--model", "resnet50", "--pretrained"]).current_dir(&elsewhere).output();
        let out = out.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&weights.display().to_string()) && stderr.contains("fetch-weights resnet50"),
            "{stderr}"
        );
        assert!(!elsewhere.join("data").exists());
    }
    let out = train(&data, &["--model", "simple_cnn", "--pretrained"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no ImageNet weights for simple_cnn"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ema_trains_validates_on_the_average_and_refuses_a_decay_of_one() {
    // Issue 30: --ema DECAY [--ema-warmup], here with --tensorboard (issue 29) too.
    let dir = temp_dir("ema");
    let data = small_set(&dir);
    let logs = dir.join("logs");
    let json =
        train_json(&data, &["--epochs", "2", "--ema", "0.99", "--ema-warmup", "--tensorboard", logs.to_str().unwrap()]);
    // Issue 29: --tensorboard's event file holds the batches, the epochs and the confusion matrix as a PNG.
    let file = std::fs::read_dir(&logs).unwrap().next().unwrap().unwrap().path();
    let events = tiny_learner::tensorboard::read_events(&file).unwrap();
    let tags: std::collections::BTreeSet<&str> =
        events.iter().flat_map(|e| e.values.iter().map(|(t, _)| t.as_str())).collect();
    for tag in ["train_loss", "lr_0", "mom_0", "valid_loss", "accuracy", "confusion_matrix"] {
        assert!(tags.contains(tag), "{tag} missing from {tags:?}");
    }
    let image = events.iter().flat_map(|e| &e.values).find(|(t, _)| t == "confusion_matrix").unwrap();
    let tiny_learner::tensorboard::Value::Image { width, png, .. } = &image.1 else { panic!("not an image") };
    assert!(*width > 100 && png.starts_with(b"\x89PNG"), "{width}");
    assert_eq!(json["ema"].as_f64().map(|d| (d * 100.0).round()), Some(99.0), "{json}");
    let plain = train_json(&data, &["--epochs", "2"]);
    assert!(plain.get("ema").is_none(), "{plain}");
    assert_ne!(json["valid_loss"], plain["valid_loss"], "validation ran on the average");
    let out = train(&data, &["--epochs", "1", "--ema", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("the decay must be in [0, 1), got 1"), "{stderr}");
    let out = train(&data, &["--epochs", "1", "--ema-warmup"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--ema"));
    // Issue 29: a batch no machine holds is refused by name before the first one is loaded, not killed.
    let out = Command::new(example("train")).arg("--data").arg(&data).args(["--size", "4096", "--bs", "64"]).output();
    let out = out.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("64 images at 4096 px") && stderr.contains("(--bs)"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_multi_label_csv_trains_exports_and_predicts_a_fresh_folder() {
    // fastbook chapter 6 through the examples: space-separated labels in a CSV, binary cross entropy, accuracy_multi
    // and f1_multi at a threshold, the per-class views, then predict on a folder of images the fit never saw.
    let dir = temp_dir("multi");
    let data = dir.join("shapes");
    let set = tiny_data::synth::shapes::ShapesConfig { train: 96, valid: 32, size: 32, seed: 5 };
    tiny_data::synth::shapes::generate(&data, &set).unwrap();
    let (model, views) = (dir.join("model.safetensors"), dir.join("views"));
    let csv = ["--labels-csv", "labels.csv", "--folder", "images", "--label-col", "labels", "--valid-col", "is_valid"];
    let multi = ["--label-delim", " ", "--thresh", "0.4", "--metrics", "accuracy,f1_multi", "--epochs", "2"];
    let ckpt = dir.join("ckpt.safetensors");
    let out =
        ["--export", model.to_str().unwrap(), "--interpret", views.to_str().unwrap(), "--save", ckpt.to_str().unwrap()];
    let json = train_json(&data, &[&csv[..], &multi[..], &out[..]].concat());
    let acc = json["metrics"]["accuracy_multi"].as_f64().unwrap_or(f64::NAN);
    assert!((0.0..=1.0).contains(&acc) && json["metrics"]["f1_score"].as_f64().is_some(), "{json}");
    for view in ["per_class_confusion.txt", "top_losses.png", "show_batch.png", "loss.png", "preds.csv"] {
        assert!(views.join(view).is_file(), "{view}");
    }
    let table = std::fs::read_to_string(views.join("per_class_confusion.txt")).unwrap();
    assert_eq!(table.lines().count(), 6, "{table}");

    // A fresh folder: the predict example gives every class above the export's threshold, or --thresh's.
    let fresh = dir.join("fresh");
    let other = tiny_data::synth::shapes::ShapesConfig { train: 1, valid: 3, size: 40, seed: 99 };
    tiny_data::synth::shapes::generate(&fresh, &other).unwrap();
    let predict = |extra: &[&str]| {
        let out = Command::new(example("predict"))
            .arg(&model)
            .arg(fresh.join("images"))
            .args(["--json", "--top", "5"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<serde_json::Value>(&json_line(&out)).unwrap()
    };
    for (extra, thresh) in [(&[][..], 0.4), (&["--thresh", "0.9"][..], 0.9)] {
        let json = predict(extra);
        let items = json["predictions"].as_array().unwrap();
        assert_eq!(items.len(), 4, "{json}");
        for item in items {
            let mut above: Vec<String> = item["top"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["prob"].as_f64().unwrap() > thresh)
                .map(|t| t["class"].as_str().unwrap().to_owned())
                .collect();
            above.sort();
            let labels: Vec<String> = serde_json::from_value(item["labels"].clone()).unwrap();
            assert_eq!(labels, above, "{item}");
        }
    }

    // A single-label metric on multi-label data, and the reverse, are refused before any data is read.
    let out = train(&data, &[&csv[..], &["--label-delim", " ", "--metrics", "error_rate"][..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("single-label metric"), "{err}");
    let out = train(&data, &["--metrics", "accuracy_multi"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("multi-label metric"));
    // Its checkpoint resumed as single-label data: refused, naming both kinds.
    let resume = ["--resume", ckpt.to_str().unwrap(), "--epochs", "3"];
    let out = train(&data, &[&csv[..], &resume[..]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("checkpoint is of a multi-label model"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
