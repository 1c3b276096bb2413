//! The `fetch-data` subcommand: options, the three Imagenette variants, and the run from download to unpacked data.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::fetch::{self, Download};
use crate::flags::{Flags, Token};
use crate::progress::{Reporter, Style};
use crate::untar::{self, MARKER};
use crate::verify::{self, Expected};

/// How `cargo xtask fetch-data` is used.
pub const USAGE: &str = "\
usage: cargo xtask fetch-data [--size 160|320|full] [--dest DIR] [--url URL [--md5 HEX]] [--archive FILE]

Downloads Imagenette, checks its size and MD5, and unpacks it to DIR/imagenette2-160/ (or -320, or imagenette2/).
A second run finds the complete data and does nothing; an interrupted download resumes where it stopped.

options:
  --size 160|320|full  which variant to fetch (default 160)
  --dest DIR           where the archive and the data set go (default: data/ in the workspace)
  --url URL            download from a mirror instead of fast.ai's bucket
  --md5 HEX            the MD5 the archive must have (default: the variant's own)
  --archive FILE       unpack an archive that is already on disk instead of downloading, into DIR/ under
                       the name of the archive's top folder; without a known MD5 it may unpack to at most
                       20 times its size (at least 64 MiB)";

/// What to do when the download cannot reach its server.
pub const OFFLINE_HINT: &str =
    "download the archive elsewhere and pass `--archive FILE`, or pass `--url URL --md5 HEX` for a mirror";

/// One published variant of Imagenette.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The value of `--size` that selects it.
    pub size: &'static str,
    /// The folder it unpacks to, which is also the archive's name without `.tgz`.
    pub name: &'static str,
    /// Where fast.ai publishes it.
    pub url: &'static str,
    /// The archive's size in bytes, when recorded.
    pub bytes: Option<u64>,
    /// The MD5 of the whole archive, as recorded by torchvision.
    pub md5: &'static str,
}

/// The three variants; the first is the default.
pub const VARIANTS: [Variant; 3] = [
    Variant {
        size: "160",
        name: "imagenette2-160",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
        bytes: Some(99_003_388),
        md5: "e793b78cc4c9e9a4ccc0c1155377a412",
    },
    Variant {
        size: "320",
        name: "imagenette2-320",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
        bytes: Some(341_663_724),
        md5: "3df6f0d01a2c9592104656642f5e78a3",
    },
    Variant {
        size: "full",
        name: "imagenette2",
        url: "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
        bytes: None,
        md5: "fe2fc210e6bb7c5664d602c3cd71e612",
    },
];

/// Looks up a variant by its `--size` value.
pub fn variant(size: &str) -> Result<&'static Variant> {
    VARIANTS.iter().find(|v| v.size == size).ok_or_else(|| anyhow!("unknown size `{size}`: use 160, 320 or full"))
}

/// The command-line options, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `--size`.
    pub size: Option<String>,
    /// `--dest`.
    pub dest: Option<PathBuf>,
    /// `--url`.
    pub url: Option<String>,
    /// `--md5`.
    pub md5: Option<String>,
    /// `--archive`.
    pub archive: Option<PathBuf>,
}

impl Args {
    /// Parses the arguments after `fetch-data`; returns `None` when help was asked for.
    pub fn parse(args: &[String]) -> Result<Option<Args>> {
        let mut parsed = Args::default();
        let mut flags = Flags::new(args);
        while let Some(token) = flags.next_token() {
            let flag = match token {
                Token::Help => return Ok(None),
                Token::Flag(flag) => flag,
                Token::Unknown(word) | Token::Positional(word) => bail!("unknown option `{word}`\n\n{USAGE}"),
            };
            match flag {
                "--size" => parsed.size = Some(flags.value(flag)?),
                "--dest" => parsed.dest = Some(flags.value(flag)?.into()),
                "--url" => parsed.url = Some(flags.value(flag)?),
                "--md5" => parsed.md5 = Some(flags.value(flag)?),
                "--archive" => parsed.archive = Some(flags.value(flag)?.into()),
                _ => bail!("unknown option `{flag}`\n\n{USAGE}"),
            }
        }
        Ok(Some(parsed))
    }
}

/// Where the archive comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Downloaded from this address to `DEST/NAME.tgz`.
    Download(String),
    /// Already on disk.
    Archive(PathBuf),
}

/// Everything one run needs, resolved from the options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The folder name of the data set under `dest`.
    pub name: String,
    /// Where the archive comes from.
    pub source: Source,
    /// What the archive must look like.
    pub expected: Expected,
    /// The folder that receives the archive and the data set.
    pub dest: PathBuf,
}

impl Plan {
    /// Resolves the options: `--md5` replaces the variant's checksum (and drops its size, since it names another
    /// file); `--archive` is checked against the variant whose archive has its file name, or the `--size` given.
    /// Any other archive unpacks to the name of its own top folder (or, without one, its file name less `.tgz`).
    pub fn new(args: Args, default_dest: &Path) -> Result<Plan> {
        let chosen = variant(args.size.as_deref().unwrap_or("160"))?;
        let dest = args.dest.unwrap_or_else(|| default_dest.to_path_buf());
        let md5 = args.md5.as_deref().map(verify::parse_md5).transpose()?;
        let builtin = |v: &Variant| Expected { size: v.bytes, md5: Some(v.md5.to_owned()) };
        let Some(archive) = args.archive else {
            let url = args.url.unwrap_or_else(|| chosen.url.to_owned());
            let expected = match md5 {
                Some(md5) => Expected { size: None, md5: Some(md5) },
                None => builtin(chosen),
            };
            return Ok(Plan { name: chosen.name.to_owned(), source: Source::Download(url), expected, dest });
        };
        if args.url.is_some() {
            bail!("`--archive` and `--url` exclude each other: the archive is either on disk or downloaded");
        }
        let file_name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = ["tgz", "tar.gz", "tar"].iter().find_map(|ext| file_name.strip_suffix(&format!(".{ext}")));
        let by_name = VARIANTS.iter().find(|v| stem == Some(v.name));
        let named = if args.size.is_some() { Some(chosen) } else { by_name };
        let name = match (named, stem) {
            (Some(v), _) => v.name.to_owned(),
            // The archive's own top folder, so that `imagenette2-160 (1).tgz` still lands in imagenette2-160/.
            (None, Some(stem)) if !stem.is_empty() => untar::top_folder(&archive).unwrap_or_else(|| stem.to_owned()),
            _ => bail!("cannot name the data set after {}: pass --size or a FILE ending in .tgz", archive.display()),
        };
        let expected = match (md5, named) {
            (Some(md5), _) => Expected { size: None, md5: Some(md5) },
            (None, Some(v)) => builtin(v),
            (None, None) => Expected::default(),
        };
        Ok(Plan { name, source: Source::Archive(archive), expected, dest })
    }

    /// The folder the data set ends up in.
    pub fn folder(&self) -> PathBuf {
        self.dest.join(&self.name)
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The data set was already complete, so nothing was done.
    AlreadyPresent(PathBuf),
    /// The data set was unpacked into this folder, with this many entries.
    Installed(PathBuf, u64),
}

/// Runs `fetch-data` from parsed arguments, showing progress as a bar on a terminal and as lines otherwise.
pub fn main(args: &[String], default_dest: &Path) -> Result<()> {
    let Some(args) = Args::parse(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    run(&Plan::new(args, default_dest)?, Reporter::new(Style::detect())).map(|_| ())
}

/// Carries out a plan: skip complete data, get and verify the archive, and unpack it safely into place.
pub fn run(plan: &Plan, reporter: Reporter) -> Result<Outcome> {
    let folder = plan.folder();
    // A local archive with no known MD5 is measured first, so that an earlier marker counts only when it was
    // written for this very archive (another file of the same name is unpacked afresh).
    let expected = match &plan.source {
        Source::Archive(archive) if plan.expected.md5.is_none() => {
            let size =
                std::fs::metadata(archive).with_context(|| format!("could not read {}", archive.display()))?.len();
            Expected { size: Some(size), md5: Some(verify::md5_file(archive)?) }
        }
        _ => plan.expected.clone(),
    };
    if is_complete(&folder, &expected) {
        reporter.say(format!("{} is already present and complete; nothing to do", folder.display()));
        return Ok(Outcome::AlreadyPresent(folder));
    }
    std::fs::create_dir_all(&plan.dest).with_context(|| format!("could not create {}", plan.dest.display()))?;
    let archive = match &plan.source {
        Source::Archive(archive) => {
            if plan.expected == Expected::default() {
                reporter.say(format!("no checksum is known for {}; unpacking it unverified", archive.display()));
            }
            verify::check(archive, &plan.expected)?;
            archive.clone()
        }
        Source::Download(url) => {
            let target = plan.dest.join(format!("{}.tgz", plan.name));
            if target.exists() {
                match verify::check(&target, &plan.expected) {
                    Ok(()) => reporter.say(format!("using the verified archive {}", target.display())),
                    Err(err) => {
                        reporter.say(format!("{err:#}; downloading it again"));
                        std::fs::remove_file(&target)
                            .with_context(|| format!("could not remove {}", target.display()))?;
                    }
                }
            }
            if !target.exists() {
                let expected = &plan.expected;
                let offline_hint = OFFLINE_HINT;
                fetch::download(&Download { url, target: &target, expected, attempts: 3, reporter, offline_hint })?;
            }
            target
        }
    };
    let md5 = match &expected.md5 {
        Some(md5) => md5.clone(),
        None => verify::md5_file(&archive)?,
    };
    let size = std::fs::metadata(&archive).with_context(|| format!("could not read {}", archive.display()))?.len();
    let stamp = format!("{md5} {size}");
    reporter.say(format!("unpacking {} into {}", archive.display(), folder.display()));
    // Without a known checksum the archive could be anything, a decompression bomb included.
    let cap = plan.expected.md5.is_none().then(|| untar::size_cap(size));
    let entries = untar::install(&archive, &folder, &stamp, cap)?;
    reporter.say(format!("unpacked {entries} entries into {}", folder.display()));
    Ok(Outcome::Installed(folder, entries))
}

/// Tells whether `folder` holds a data set marked complete, from the expected archive when its MD5 is known.
/// The marker holds the archive's MD5 and size (`MD5 SIZE`); both are compared when known.
pub fn is_complete(folder: &Path, expected: &Expected) -> bool {
    let Ok(stamp) = std::fs::read_to_string(folder.join(MARKER)) else { return false };
    let mut fields = stamp.split_whitespace();
    let (md5, size) = (fields.next(), fields.next().and_then(|s| s.parse::<u64>().ok()));
    let md5_ok = expected.md5.as_deref().is_none_or(|want| md5 == Some(want));
    let size_ok = match (expected.size, size) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    };
    md5_ok && size_ok
}
