//! `fetch-weights` against a loopback server (download, rerun, resume, refusals), its options, and the resnet18 table.

mod support;

use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::{Metadata, TensorInfo, TensorView};
use sha2::{Digest, Sha256};
use support::TempDir;
use support::server::{Route, Server};
use tiny_nn::Module;
use xtask::fetch::part_path;
use xtask::fetch_weights::header::{self, Header, TensorSpec, spec};
use xtask::fetch_weights::resnet18::RESNET18;
use xtask::fetch_weights::resnet34::RESNET34;
use xtask::fetch_weights::resnet50::RESNET50;
use xtask::fetch_weights::{Args, Outcome, Plan, WEIGHTS, run, unverified_path};
use xtask::progress::{Reporter, Style};

const PATH: &str = "/model.safetensors";

/// A resnet-shaped table small enough to download in a test.
const TINY: &[TensorSpec] = &[
    spec("conv1.weight", &[4, 3, 3, 3]),
    spec("bn1.weight", &[4]),
    spec("bn1.bias", &[4]),
    spec("bn1.running_mean", &[4]),
    spec("bn1.running_var", &[4]),
    spec("fc.weight", &[2, 4]),
    spec("fc.bias", &[2]),
];

fn quiet() -> Reporter {
    Reporter::new(Style::Silent)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn plan(url: String, dest: &Path) -> Plan {
    let target = dest.join("weights").join("tiny.safetensors");
    Plan { name: "tiny".to_owned(), url, target, tensors: TINY, sha256: None, attempts: 1 }
}

/// The tensors of a table, all in `dtype`.
fn tensors_of(table: &[TensorSpec], dtype: Dtype) -> Vec<(String, Dtype, Vec<usize>)> {
    table.iter().map(|s| (s.name.to_owned(), dtype, s.shape.to_vec())).collect()
}

/// A safetensors file of zeros holding these tensors.
fn safetensors_file(tensors: &[(String, Dtype, Vec<usize>)]) -> Vec<u8> {
    let datas: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, dtype, shape)| vec![0; shape.iter().product::<usize>() * dtype.bitsize() / 8])
        .collect();
    let views = tensors.iter().zip(&datas).map(|((name, dtype, shape), data)| {
        (name.clone(), TensorView::new(*dtype, shape.clone(), data).expect("a consistent tensor view"))
    });
    safetensors::serialize(views, None).expect("serialize the test file")
}

/// The header alone (length and JSON) of a safetensors file holding these tensors, without their data.
fn header_only(tensors: &[(String, Dtype, Vec<usize>)]) -> Vec<u8> {
    let mut offset = 0;
    let infos = tensors.iter().map(|(name, dtype, shape)| {
        let len = shape.iter().product::<usize>() * dtype.bitsize() / 8;
        offset += len;
        (name.clone(), TensorInfo { dtype: *dtype, shape: shape.clone(), data_offsets: (offset - len, offset) })
    });
    let metadata = Metadata::new(None, infos.collect()).expect("consistent offsets");
    let json = serde_json::to_vec(&metadata).expect("serialize the header");
    [(json.len() as u64).to_le_bytes().as_slice(), &json].concat()
}

/// Returns a loopback address where nothing listens, so connecting to it is refused.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}{PATH}")
}

/// Asserts that neither the target nor its staging file nor the staging file's `.part` is on disk.
fn assert_nothing_left(target: &Path) {
    let staging = unverified_path(target);
    for path in [target.to_path_buf(), staging.clone(), part_path(&staging)] {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
}

#[test]
fn downloads_verifies_and_hashes_the_weights() {
    let body = safetensors_file(&tensors_of(TINY, Dtype::F32));
    let server = Server::start(vec![(PATH, Route::new(body.clone()))]);
    let tmp = TempDir::new("weights");
    let mut plan = plan(server.url(PATH), tmp.path());
    plan.sha256 = Some(sha256_hex(&body));
    let outcome = run(&plan, quiet()).unwrap();
    assert_eq!(outcome, Outcome::Installed { path: plan.target.clone(), sha256: sha256_hex(&body) });
    assert_eq!(std::fs::read(&plan.target).unwrap(), body);
    let staging = unverified_path(&plan.target);
    assert!(!staging.exists() && !part_path(&staging).exists());
}

#[test]
fn a_second_run_finds_the_verified_file_and_uses_no_network() {
    let body = safetensors_file(&tensors_of(TINY, Dtype::F16));
    let server = Server::start(vec![(PATH, Route::new(body.clone()))]);
    let tmp = TempDir::new("weights-rerun");
    run(&plan(server.url(PATH), tmp.path()), quiet()).unwrap();
    let again = run(&plan(closed_port_url(), tmp.path()), quiet()).unwrap();
    let target = plan(String::new(), tmp.path()).target;
    assert_eq!(again, Outcome::AlreadyPresent { path: target, sha256: sha256_hex(&body) });
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn an_interrupted_download_keeps_its_part_and_the_next_run_resumes_it() {
    let body = safetensors_file(&tensors_of(TINY, Dtype::BF16));
    let cut = body.len() / 2;
    let server = Server::start(vec![(PATH, Route::dropping_after(body.clone(), cut))]);
    let tmp = TempDir::new("weights-resume");
    let plan = plan(server.url(PATH), tmp.path());
    let err = format!("{:#}", run(&plan, quiet()).unwrap_err());
    assert!(err.contains(&format!("interrupted after {cut} of {} bytes", body.len())), "{err}");
    let part = part_path(&unverified_path(&plan.target));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64);
    assert!(!plan.target.exists());
    assert!(matches!(run(&plan, quiet()).unwrap(), Outcome::Installed { .. }));
    assert_eq!(std::fs::read(&plan.target).unwrap(), body);
    let ranges: Vec<_> = server.seen().into_iter().map(|s| s.range).collect();
    assert_eq!(ranges, vec![None, Some(format!("bytes={cut}-"))]);
}

#[test]
fn wrong_names_and_shapes_are_refused_named_and_removed() {
    let mut tensors = tensors_of(TINY, Dtype::F32);
    tensors[5].0 = "head.weight".to_owned();
    tensors[6].2 = vec![3];
    let server = Server::start(vec![(PATH, Route::new(safetensors_file(&tensors)))]);
    let tmp = TempDir::new("weights-names");
    let plan = plan(server.url(PATH), tmp.path());
    let err = format!("{:#}", run(&plan, quiet()).unwrap_err());
    assert!(err.contains("does not hold the tiny weights"), "{err}");
    assert!(err.contains("1 tensor missing (fc.weight)"), "{err}");
    assert!(err.contains("1 tensor unexpected (head.weight)"), "{err}");
    assert!(err.contains("fc.bias: expected [2], found [3]"), "{err}");
    assert!(err.contains("was removed"), "{err}");
    assert_nothing_left(&plan.target);
}

#[test]
fn a_weight_in_an_integer_dtype_is_refused() {
    let mut tensors = tensors_of(TINY, Dtype::F32);
    tensors[0].1 = Dtype::I32;
    let server = Server::start(vec![(PATH, Route::new(safetensors_file(&tensors)))]);
    let tmp = TempDir::new("weights-dtype");
    let plan = plan(server.url(PATH), tmp.path());
    let err = format!("{:#}", run(&plan, quiet()).unwrap_err());
    assert!(err.contains("conv1.weight: I32"), "{err}");
    assert_nothing_left(&plan.target);
}

#[test]
fn batch_counters_may_be_present() {
    let mut tensors = tensors_of(TINY, Dtype::F32);
    tensors.push(("bn1.num_batches_tracked".to_owned(), Dtype::I64, vec![]));
    let server = Server::start(vec![(PATH, Route::new(safetensors_file(&tensors)))]);
    let tmp = TempDir::new("weights-counters");
    assert!(matches!(run(&plan(server.url(PATH), tmp.path()), quiet()).unwrap(), Outcome::Installed { .. }));
}

#[test]
fn a_file_shorter_than_its_header_says_is_refused() {
    let mut body = safetensors_file(&tensors_of(TINY, Dtype::F32));
    let full = body.len();
    body.truncate(full - 8);
    let server = Server::start(vec![(PATH, Route::new(body))]);
    let tmp = TempDir::new("weights-short");
    let plan = plan(server.url(PATH), tmp.path());
    let err = format!("{:#}", run(&plan, quiet()).unwrap_err());
    assert!(err.contains(&format!("is {} bytes long, but its header describes {full} bytes", full - 8)), "{err}");
    assert_nothing_left(&plan.target);
}

#[test]
fn a_sha256_mismatch_names_both_hashes_and_leaves_nothing() {
    let body = safetensors_file(&tensors_of(TINY, Dtype::F32));
    let server = Server::start(vec![(PATH, Route::new(body.clone()))]);
    let tmp = TempDir::new("weights-sha");
    let mut plan = plan(server.url(PATH), tmp.path());
    let wrong = "0123456789abcdef".repeat(4);
    plan.sha256 = Some(wrong.clone());
    let err = format!("{:#}", run(&plan, quiet()).unwrap_err());
    assert!(err.contains(&format!("expected SHA-256 {wrong}")), "{err}");
    assert!(err.contains(&format!("found SHA-256 {}", sha256_hex(&body))), "{err}");
    assert_nothing_left(&plan.target);
}

#[test]
fn a_copy_put_in_place_by_hand_is_verified_offline_and_kept() {
    let body = safetensors_file(&tensors_of(TINY, Dtype::F32));
    let tmp = TempDir::new("weights-by-hand");
    let plan = plan(closed_port_url(), tmp.path());
    std::fs::create_dir_all(plan.target.parent().unwrap()).unwrap();
    std::fs::write(&plan.target, &body).unwrap();
    let outcome = run(&plan, quiet()).unwrap();
    assert_eq!(outcome, Outcome::AlreadyPresent { path: plan.target.clone(), sha256: sha256_hex(&body) });
}

#[test]
fn an_unreachable_server_says_where_a_copy_may_go() {
    let tmp = TempDir::new("weights-offline");
    let plan = plan(closed_port_url(), tmp.path());
    let err = format!("{:#}", run(&plan, quiet()).unwrap_err());
    assert!(err.contains(&format!("put it at {}", plan.target.display())), "{err}");
    assert!(!err.contains("--archive") && !err.contains("--md5"), "fetch-data's options are not offered: {err}");
}

#[test]
fn a_broken_file_in_place_is_downloaded_again() {
    let body = safetensors_file(&tensors_of(TINY, Dtype::F32));
    let server = Server::start(vec![(PATH, Route::new(body.clone()))]);
    let tmp = TempDir::new("weights-broken");
    let plan = plan(server.url(PATH), tmp.path());
    std::fs::create_dir_all(plan.target.parent().unwrap()).unwrap();
    std::fs::write(&plan.target, b"not safetensors").unwrap();
    assert!(matches!(run(&plan, quiet()).unwrap(), Outcome::Installed { .. }));
    assert_eq!(std::fs::read(&plan.target).unwrap(), body);
}

#[test]
fn a_broken_file_in_place_is_kept_when_the_download_fails() {
    // Issue 29: offline, a hand-placed file that failed the check was deleted before the download was tried.
    let tmp = TempDir::new("weights-broken-offline");
    let plan = plan(closed_port_url(), tmp.path());
    std::fs::create_dir_all(plan.target.parent().unwrap()).unwrap();
    std::fs::write(&plan.target, b"not safetensors").unwrap();
    let err = format!("{:#}", run(&plan, quiet()).unwrap_err());
    assert_eq!(std::fs::read(&plan.target).unwrap(), b"not safetensors", "the file is left as it was");
    assert!(err.contains("failed the check and was left as it is"), "{err}");
    assert!(!unverified_path(&plan.target).exists());
}

#[test]
fn a_header_with_torchvision_resnet18s_tensors_passes_the_real_table() {
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let mut tensors = tensors_of(RESNET18, dtype);
        tensors.push(("layer2.0.downsample.1.num_batches_tracked".to_owned(), Dtype::I64, vec![]));
        let header = Header::read(&mut header_only(&tensors).as_slice()).unwrap();
        assert_eq!(header::check(&header, RESNET18), Ok(()), "{dtype:?}");
    }
}

#[test]
fn the_real_table_names_what_a_header_lacks_or_gets_wrong() {
    let mut tensors = tensors_of(RESNET18, Dtype::F32);
    tensors.retain(|(name, ..)| name != "layer4.1.bn2.bias");
    let fc = tensors.iter_mut().find(|(name, ..)| name == "fc.weight").unwrap();
    fc.2 = vec![10, 512];
    tensors.push(("classifier.weight".to_owned(), Dtype::F32, vec![10, 512]));
    let header = Header::read(&mut header_only(&tensors).as_slice()).unwrap();
    let err = header::check(&header, RESNET18).unwrap_err().to_string();
    assert_eq!(
        err,
        "1 tensor missing (layer4.1.bn2.bias); 1 tensor unexpected (classifier.weight); \
         1 tensor with the wrong shape (fc.weight: expected [1000, 512], found [10, 512])"
    );
}

#[test]
fn each_table_is_tiny_nns_state_dict_of_that_model() {
    type Build = fn(usize) -> tiny_nn::Result<tiny_nn::ResNet>;
    /// The table's length, its parameters and its running statistics.
    type Counts = (usize, usize, usize);
    let models: [(&str, Build, &[TensorSpec], Counts); 3] = [
        ("resnet18", tiny_nn::resnet18, RESNET18, (102, 11_689_512, 9_600)),
        ("resnet34", tiny_nn::resnet34, RESNET34, (182, 21_797_672, 17_024)),
        ("resnet50", tiny_nn::resnet50, RESNET50, (267, 25_557_032, 53_120)),
    ];
    for (name, build, table, counts) in models {
        let model = build(1000).unwrap();
        let ours: Vec<(String, Vec<usize>)> = model
            .state_dict()
            .into_iter()
            .filter(|(name, _)| !name.ends_with(".num_batches_tracked"))
            .map(|(name, t)| (name, t.shape().to_vec()))
            .collect();
        let theirs: Vec<(String, Vec<usize>)> = table.iter().map(|s| (s.name.to_owned(), s.shape.to_vec())).collect();
        let (mut ours_sorted, mut table_sorted) = (ours, theirs);
        ours_sorted.sort();
        table_sorted.sort();
        assert_eq!(table_sorted, ours_sorted, "{name}");
        let count = |running: bool| -> usize {
            let specs = table.iter().filter(|s| s.name.contains(".running_") == running);
            specs.map(|s| s.shape.iter().product::<usize>()).sum()
        };
        assert_eq!((table.len(), count(false), count(true)), counts, "{name}");
        let weights = WEIGHTS.iter().find(|w| w.name == name).unwrap();
        assert_eq!(weights.tensors.len(), table.len(), "{name}");
        assert_eq!(weights.url, format!("https://huggingface.co/timm/{name}.tv_in1k/resolve/main/model.safetensors"));
    }
}

fn parse(args: &[&str]) -> anyhow::Result<Plan> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Plan::new(Args::parse(&args)?.expect("not a help request"), Path::new("/ws/data"))
}

#[test]
fn the_default_is_timms_resnet18_into_data_weights() {
    let plan = parse(&["resnet18"]).unwrap();
    assert_eq!(plan.url, "https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors");
    assert_eq!(plan.target, PathBuf::from("/ws/data/weights/resnet18.safetensors"));
    assert_eq!((plan.tensors, plan.sha256, plan.attempts), (RESNET18, None, 3));
    let names: Vec<&str> = WEIGHTS.iter().map(|w| w.name).collect();
    assert_eq!(names, ["resnet18", "resnet34", "resnet50"]);
    let plan = parse(&["resnet50"]).unwrap();
    assert_eq!(plan.target, PathBuf::from("/ws/data/weights/resnet50.safetensors"));
    assert_eq!(plan.tensors, RESNET50);
}

#[test]
fn dest_url_and_sha256_are_taken_as_given() {
    let hash = "AB".repeat(32);
    let plan = parse(&["--dest=/tmp/w", "resnet18", "--url", "http://mirror/r18.safetensors", "--sha256", &hash]);
    let plan = plan.unwrap();
    assert_eq!(plan.target, PathBuf::from("/tmp/w/resnet18.safetensors"));
    assert_eq!(plan.url, "http://mirror/r18.safetensors");
    assert_eq!(plan.sha256, Some("ab".repeat(32)));
}

#[test]
fn bad_options_say_what_is_wrong() {
    let message = |args: &[&str]| parse(args).unwrap_err().to_string();
    assert!(message(&[]).starts_with("name the weights to fetch: resnet18"));
    assert!(message(&["resnet101"]).contains("unknown weights `resnet101`: use resnet18, resnet34, resnet50"));
    assert!(message(&["resnet18", "resnet18"]).contains("unexpected argument `resnet18`"));
    assert!(message(&["resnet18", "--sha256", "abc"]).contains("not a SHA-256"));
    assert!(message(&["resnet18", "--md5", "abc"]).contains("unknown option `--md5`"));
    assert!(message(&["resnet18", "--url"]).contains("`--url` needs a value"));
    assert_eq!(Args::parse(&["resnet18".to_owned(), "--help".to_owned()]).unwrap(), None);
}
