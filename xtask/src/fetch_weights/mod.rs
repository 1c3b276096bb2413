//! The `fetch-weights` subcommand: pretrained weights downloaded, checked tensor by tensor, hashed and put in place.
//!
//! The download is [`crate::fetch::download`]'s, resumable from a `.part` file, into a staging file next to the
//! target (`resnet18.safetensors.unverified`). Only once its safetensors header holds the table's names and shapes
//! (and its SHA-256 is the one asked for, if any) is it renamed to the target; a file that fails is removed.

pub mod header;
pub mod resnet18;
pub mod resnet34;
pub mod resnet50;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use sha2::Sha256;

use crate::fetch::remove;
use crate::fetch::{self, Download};
use crate::flags::{Flags, Token};
use crate::progress::{Reporter, Style};
use crate::verify::{self, Expected};
use header::TensorSpec;

/// How `cargo xtask fetch-weights` is used.
pub const USAGE: &str = "\
usage: cargo xtask fetch-weights resnet18|resnet34|resnet50 [--dest DIR] [--url URL] [--sha256 HEX]

Downloads torchvision's ImageNet weights of the model as safetensors (timm/NAME.tv_in1k on the Hugging Face hub)
to DIR/NAME.safetensors, checks that it holds every tensor of torchvision's model with its shape, and prints
its SHA-256. A second run finds the verified file and does nothing; an interrupted download resumes where it
stopped.

options:
  --dest DIR    where the weights go (default: data/weights/ in the workspace)
  --url URL     download from a mirror instead of the Hugging Face hub
  --sha256 HEX  the SHA-256 the file must have (default: any, once its tensors check out)";

/// One set of published weights that `fetch-weights` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// The name on the command line.
    pub name: &'static str,
    /// Where the safetensors file is published.
    pub url: &'static str,
    /// The file name it is saved under in the destination folder.
    pub file: &'static str,
    /// The tensors it must hold.
    pub tensors: &'static [TensorSpec],
}

/// The weights `fetch-weights` knows.
pub const WEIGHTS: [Weights; 3] = [
    Weights {
        name: "resnet18",
        url: "https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors",
        file: "resnet18.safetensors",
        tensors: resnet18::RESNET18,
    },
    Weights {
        name: "resnet34",
        url: "https://huggingface.co/timm/resnet34.tv_in1k/resolve/main/model.safetensors",
        file: "resnet34.safetensors",
        tensors: resnet34::RESNET34,
    },
    Weights {
        name: "resnet50",
        url: "https://huggingface.co/timm/resnet50.tv_in1k/resolve/main/model.safetensors",
        file: "resnet50.safetensors",
        tensors: resnet50::RESNET50,
    },
];

/// Looks up weights by name.
pub fn weights(name: &str) -> Result<&'static Weights> {
    WEIGHTS.iter().find(|w| w.name == name).ok_or_else(|| anyhow!("unknown weights `{name}`: use {}", known()))
}

/// The names of the known weights, for messages.
fn known() -> String {
    WEIGHTS.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
}

/// The command-line options, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// The weights' name, the one positional argument.
    pub name: Option<String>,
    /// `--dest`.
    pub dest: Option<PathBuf>,
    /// `--url`.
    pub url: Option<String>,
    /// `--sha256`.
    pub sha256: Option<String>,
}

impl Args {
    /// Parses the arguments after `fetch-weights`; returns `None` when help was asked for.
    pub fn parse(args: &[String]) -> Result<Option<Args>> {
        let mut parsed = Args::default();
        let mut flags = Flags::new(args);
        while let Some(token) = flags.next_token() {
            match token {
                Token::Help => return Ok(None),
                Token::Flag("--dest") => parsed.dest = Some(flags.value("--dest")?.into()),
                Token::Flag("--url") => parsed.url = Some(flags.value("--url")?),
                Token::Flag("--sha256") => parsed.sha256 = Some(flags.value("--sha256")?),
                Token::Flag(flag) | Token::Unknown(flag) => bail!("unknown option `{flag}`\n\n{USAGE}"),
                Token::Positional(arg) if parsed.name.is_some() => {
                    bail!("unexpected argument `{arg}`: name one set of weights\n\n{USAGE}")
                }
                Token::Positional(arg) => parsed.name = Some(arg.to_owned()),
            }
        }
        Ok(Some(parsed))
    }
}

/// Everything one run needs, resolved from the options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The weights' name, for messages.
    pub name: String,
    /// Where the file is downloaded from.
    pub url: String,
    /// The final path of the verified file.
    pub target: PathBuf,
    /// The tensors the file must hold.
    pub tensors: &'static [TensorSpec],
    /// The SHA-256 the file must have, as 64 lowercase hexadecimal digits, when one was given.
    pub sha256: Option<String>,
    /// How many requests one run makes before an interrupted transfer becomes an error.
    pub attempts: u32,
}

impl Plan {
    /// Resolves the options; without `--dest` the file goes to `data_dir/weights/`.
    pub fn new(args: Args, data_dir: &Path) -> Result<Plan> {
        let name = args.name.ok_or_else(|| anyhow!("name the weights to fetch: {}\n\n{USAGE}", known()))?;
        let chosen = weights(&name)?;
        let dest = args.dest.unwrap_or_else(|| data_dir.join("weights"));
        Ok(Plan {
            name,
            url: args.url.unwrap_or_else(|| chosen.url.to_owned()),
            target: dest.join(chosen.file),
            tensors: chosen.tensors,
            sha256: args.sha256.as_deref().map(parse_sha256).transpose()?,
            attempts: 3,
        })
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A verified file was already in place, so nothing was done.
    AlreadyPresent {
        /// The file.
        path: PathBuf,
        /// Its SHA-256.
        sha256: String,
    },
    /// The file was downloaded, verified and put in place.
    Installed {
        /// The file.
        path: PathBuf,
        /// Its SHA-256.
        sha256: String,
    },
}

impl Outcome {
    /// The SHA-256 of the file in place.
    pub fn sha256(&self) -> &str {
        match self {
            Outcome::AlreadyPresent { sha256, .. } | Outcome::Installed { sha256, .. } => sha256,
        }
    }
}

/// Runs `fetch-weights` from parsed arguments and prints `SHA256  PATH` (as `sha256sum` does) on standard output.
pub fn main(args: &[String], data_dir: &Path) -> Result<()> {
    let Some(args) = Args::parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let plan = Plan::new(args, data_dir)?;
    let outcome = run(&plan, Reporter::new(Style::detect()))?;
    println!("{}  {}", outcome.sha256(), plan.target.display());
    Ok(())
}

/// The staging file that a download goes to until it is verified: the target's name with `.unverified` appended.
pub fn unverified_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".unverified");
    PathBuf::from(name)
}

/// Carries out a plan: keep a verified file, or download one, verify it and rename it into place.
pub fn run(plan: &Plan, reporter: Reporter) -> Result<Outcome> {
    let target = &plan.target;
    if target.exists() {
        match verify(target, plan) {
            Ok(sha256) => {
                reporter.say(format!("{} is already present and verified; nothing to do", target.display()));
                return Ok(Outcome::AlreadyPresent { path: target.clone(), sha256 });
            }
            // The file stays until a verified download replaces it: it may be a copy put there by hand for an
            // offline machine, which the user can then inspect (or that a failed download must not cost them).
            Err(err) => reporter.say(format!(
                "{err:#}; downloading a verified copy to replace it (it stays there until one is verified)"
            )),
        }
    }
    if let Some(dest) = target.parent() {
        std::fs::create_dir_all(dest).with_context(|| format!("could not create {}", dest.display()))?;
    }
    let staging = unverified_path(target);
    // A staging file left behind was never verified; its `.part`, if any, is what a rerun resumes.
    remove(&staging)?;
    let expected = Expected::default();
    let hint = format!(
        "download the file elsewhere and put it at {}, where the next run checks it, or pass `--url URL` for a \
         mirror",
        target.display()
    );
    let attempts = plan.attempts.max(1);
    let download =
        Download { url: &plan.url, target: &staging, expected: &expected, attempts, reporter, offline_hint: &hint };
    fetch::download(&download).with_context(|| {
        let kept = if target.exists() {
            format!(" ({} failed the check and was left as it is)", target.display())
        } else {
            String::new()
        };
        format!("could not fetch the {} weights{kept}", plan.name)
    })?;
    reporter.say(format!("checking the tensors in {}", staging.display()));
    let sha256 = match verify(&staging, plan) {
        Ok(sha256) => sha256,
        Err(err) => {
            remove(&staging)?;
            return Err(err.context(format!("the download from {} was removed", plan.url)));
        }
    };
    std::fs::rename(&staging, target)
        .with_context(|| format!("could not rename {} to {}", staging.display(), target.display()))?;
    let count = plan.tensors.len();
    reporter.say(format!("installed {}: all {count} tensors of {} are there", target.display(), plan.name));
    if plan.sha256.is_none() {
        reporter.say(format!("its SHA-256 is {sha256}; pass --sha256 {sha256} to insist on this very file"));
    }
    Ok(Outcome::Installed { path: target.clone(), sha256 })
}

/// Checks the file at `path` against the plan, tensors first and then the SHA-256, and returns its SHA-256.
pub fn verify(path: &Path, plan: &Plan) -> Result<String> {
    let header = header::inspect(path)?;
    header::check(&header, plan.tensors)
        .with_context(|| format!("{} does not hold the {} weights", path.display(), plan.name))?;
    let actual = sha256_file(path)?;
    if let Some(want) = &plan.sha256
        && *want != actual
    {
        bail!("checksum mismatch for {}: expected SHA-256 {want}, found SHA-256 {actual}", path.display());
    }
    Ok(actual)
}

/// Normalises a SHA-256 given on the command line to lowercase hex, refusing anything but 64 hexadecimal digits.
pub fn parse_sha256(text: &str) -> Result<String> {
    verify::parse_hex(text, 64, "a SHA-256")
}

/// Computes the SHA-256 of the whole file at `path`, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    verify::hash_file::<Sha256>(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_empty_file_is_the_well_known_one() {
        let path = std::env::temp_dir().join(format!("xtask-sha256-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let sha = sha256_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn parse_sha256_accepts_uppercase_and_refuses_an_md5() {
        let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(parse_sha256(upper).unwrap(), upper.to_ascii_lowercase());
        assert!(parse_sha256("d41d8cd98f00b204e9800998ecf8427e").is_err());
    }

    #[test]
    fn the_staging_file_sits_next_to_the_target() {
        let target = Path::new("data/weights/resnet18.safetensors");
        assert_eq!(unverified_path(target), Path::new("data/weights/resnet18.safetensors.unverified"));
    }
}
