//! Labels from a CSV file or from file names: fastai's `ImageDataLoaders.from_csv`, `from_name_re` and `from_name_func`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::image_folder::random_split;
use crate::{DataError, FolderConfig, ImageFolder, LeftOut, Result, walk_image_files};

/// fastai's `valid_pct` when a source has no split of its own and none is given.
pub const DEFAULT_VALID_PCT: f32 = 0.2;

/// A column of a CSV file, by its position (from 0, as fastai's `fn_col=0, label_col=1`) or by its header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// The column at this position, counted from 0.
    Index(usize),
    /// The column whose header is this name.
    Name(String),
}

impl From<&str> for Column {
    /// A number is a position, anything else a header name.
    fn from(s: &str) -> Self {
        s.parse().map_or_else(|_| Column::Name(s.to_owned()), Column::Index)
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Index(i) => write!(f, "column {i}"),
            Column::Name(name) => write!(f, "column {name:?}"),
        }
    }
}

/// Where `from_csv` finds its images and labels, with fastai's defaults: file names in column 0, labels in
/// column 1, images in the data folder itself, and a random split unless a validation column is named.
#[derive(Debug, Clone)]
pub struct CsvColumns {
    /// The file name column (fastai's `fn_col`).
    pub file: Column,
    /// The label column (fastai's `label_col`).
    pub label: Column,
    /// A column of `true`/`false` (or `1`/`0`) saying which rows validate (fastai's `valid_col`, often
    /// `is_valid`); without one the rows are split at random by `FolderConfig::valid_pct`.
    pub valid: Option<Column>,
    /// The folder of the images, relative to the data folder (fastai's `folder`); `None` is the data folder.
    pub folder: Option<PathBuf>,
    /// Appended to every file name (fastai's `suffix`, for CSVs that name images without their extension).
    pub suffix: String,
    /// fastai's `label_delim`: with one, a label field holds any number of classes separated by it (`"dog cat"`
    /// with `' '`), and the data is multi-label, each image's target a multi-hot row. A field with no class then
    /// means an image of none of them. Without one, each field is one class and must not be empty.
    pub label_delim: Option<char>,
}

impl Default for CsvColumns {
    fn default() -> Self {
        CsvColumns {
            file: Column::Index(0),
            label: Column::Index(1),
            valid: None,
            folder: None,
            suffix: String::new(),
            label_delim: None,
        }
    }
}

impl ImageFolder {
    /// Reads labels from the CSV file `csv` (with a header line; relative to `root` unless absolute) for images
    /// under `root` (or `columns.folder` below it), as fastai's `ImageDataLoaders.from_csv`; multi-label with
    /// `columns.label_delim`. The split is the
    /// validation column's, else random with `cfg.valid_pct` ([`DEFAULT_VALID_PCT`] when `None`) and `cfg.seed`.
    ///
    /// # Errors
    /// [`DataError::Csv`], naming the file, the line and the fault, for a column missing from the header or a
    /// row, an empty file name or label, a file name that is not an image under the folder, a file named twice,
    /// or a validation value that is not `true`/`false`/`1`/`0`; [`DataError::Io`] when the CSV cannot be read;
    /// [`DataError::MissingFolder`]; the split errors of [`ImageFolder::scan`].
    pub fn from_csv(
        root: impl AsRef<Path>,
        csv: impl AsRef<Path>,
        columns: &CsvColumns,
        cfg: &FolderConfig,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let csv = root.join(csv.as_ref());
        let images = columns.folder.as_ref().map_or_else(|| root.clone(), |f| root.join(f));
        if !images.is_dir() {
            return Err(DataError::MissingFolder { path: images });
        }
        let fault = |line: u64, why: String| DataError::Csv { path: csv.clone(), line, why };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_path(&csv)
            .map_err(|e| csv_error(&csv, e))?;
        let header = reader.headers().map_err(|e| csv_error(&csv, e))?.clone();
        let position = |col: &Column| match col {
            Column::Index(i) => Ok(*i),
            Column::Name(name) => header.iter().position(|h| h == name).ok_or_else(|| {
                let names: Vec<&str> = header.iter().collect();
                fault(1, format!("no column named {name:?}; the header has {names:?}"))
            }),
        };
        let (file_at, label_at) = (position(&columns.file)?, position(&columns.label)?);
        let valid_at = columns.valid.as_ref().map(&position).transpose()?;
        // Each row's file, label and (with a validation column) split, and where each file was first named.
        let mut rows: Vec<(PathBuf, Vec<String>, Option<bool>)> = Vec::new();
        let mut seen: HashMap<String, u64> = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(&csv, e))?;
            let line = record.position().map_or(0, csv::Position::line);
            let field = |at: usize, col: &Column| {
                record
                    .get(at)
                    .map(str::trim)
                    .ok_or_else(|| fault(line, format!("the row has {} fields, so no {col}", record.len())))
            };
            let name = field(file_at, &columns.file)?;
            let label = field(label_at, &columns.label)?;
            if name.is_empty() {
                return Err(fault(line, format!("the file name ({}) is empty", columns.file)));
            }
            let classes: Vec<String> = match columns.label_delim {
                None if label.is_empty() => {
                    return Err(fault(line, format!("the label of {name} ({}) is empty", columns.label)));
                }
                None => vec![label.to_owned()],
                Some(delim) => {
                    let mut set: Vec<String> =
                        label.split(delim).map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect();
                    set.sort();
                    set.dedup();
                    set
                }
            };
            if let Some(first) = seen.insert(name.to_owned(), line) {
                return Err(fault(line, format!("{name} was already labelled on line {first}")));
            }
            let file = images.join(format!("{name}{}", columns.suffix));
            if !file.is_file() {
                return Err(fault(line, format!("no image {} for {name}", file.display())));
            }
            let split = match (valid_at, &columns.valid) {
                (Some(at), Some(col)) => Some(match field(at, col)?.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => return Err(fault(line, format!("{col} is {other:?}, not true/false or 1/0"))),
                }),
                _ => None,
            };
            rows.push((file, classes, split));
        }
        if rows.is_empty() {
            return Err(fault(1, "no rows below the header".into()));
        }
        let valid = match valid_at {
            Some(_) => rows.iter().map(|r| r.2.unwrap_or(false)).collect(),
            None => random_split(rows.len(), cfg.valid_pct.unwrap_or(DEFAULT_VALID_PCT), cfg.seed)?,
        };
        let kept = rows.into_iter().zip(valid).map(|((file, label, _), valid)| (file, !valid, label)).collect();
        let names =
            if valid_at.is_some() { ["train (is_valid false)", "valid (is_valid true)"] } else { ["train", "valid"] };
        Self::labelled(root, kept, LeftOut::default(), cfg, names, columns.label_delim.is_some())
    }

    /// Labels every image under `root` (walked as [`ImageFolder::scan`] walks) by the first capture group of
    /// `pattern` matched against its file name, as fastai's `from_name_re` (the pets' `r'^(.*)_\d+.jpg$'`), split
    /// at random with `cfg.valid_pct` ([`DEFAULT_VALID_PCT`] when `None`).
    ///
    /// # Errors
    /// [`DataError::LabelPattern`] for a pattern that is not a regular expression or has no capture group;
    /// [`DataError::NameWithoutLabel`] for the first file whose name it does not match; the errors of
    /// [`ImageFolder::from_name_func`].
    pub fn from_name_re(root: impl AsRef<Path>, pattern: &str, cfg: &FolderConfig) -> Result<Self> {
        let bad = |why: String| DataError::LabelPattern { pattern: pattern.to_owned(), why };
        let re = regex::Regex::new(pattern).map_err(|e| bad(e.to_string()))?;
        if re.captures_len() < 2 {
            return Err(bad("it has no capture group, (...), to take the label from".into()));
        }
        Self::from_name_func(root, cfg, |name| {
            let caps = re.captures(name).ok_or_else(|| format!("{pattern:?} does not match it"))?;
            caps.get(1).map(|m| m.as_str().to_owned()).ok_or_else(|| format!("{pattern:?} matched without group 1"))
        })
    }

    /// Labels every image under `root` by `label_of` its file name (fastai's `from_name_func`; an `Err` says why
    /// a name has no label), split at random with `cfg.valid_pct` ([`DEFAULT_VALID_PCT`] when `None`).
    ///
    /// # Errors
    /// [`DataError::MissingFolder`]; [`DataError::BadEntry`] as [`ImageFolder::scan`]; [`DataError::NoImages`];
    /// [`DataError::NameWithoutLabel`] for the first name that is not UTF-8, or that `label_of` refuses or
    /// labels with an empty string; the split errors of [`ImageFolder::scan`].
    pub fn from_name_func(
        root: impl AsRef<Path>,
        cfg: &FolderConfig,
        label_of: impl Fn(&str) -> std::result::Result<String, String>,
    ) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let (files, left_out) = walk_image_files(&root, cfg.on_bad_file)?;
        if files.is_empty() {
            return Err(DataError::NoImages { path: root });
        }
        let mut labels = Vec::with_capacity(files.len());
        for file in &files {
            let name = file.file_name().unwrap_or_default();
            let name = name.to_str().ok_or_else(|| DataError::NameWithoutLabel {
                path: file.clone(),
                why: "the file name is not valid UTF-8".into(),
            })?;
            let label = label_of(name).map_err(|why| DataError::NameWithoutLabel { path: file.clone(), why })?;
            if label.is_empty() {
                return Err(DataError::NameWithoutLabel { path: file.clone(), why: "the label is empty".into() });
            }
            labels.push(label);
        }
        let valid = random_split(files.len(), cfg.valid_pct.unwrap_or(DEFAULT_VALID_PCT), cfg.seed)?;
        let kept = files.into_iter().zip(labels).zip(valid).map(|((file, label), v)| (file, !v, vec![label])).collect();
        Self::labelled(root, kept, left_out, cfg, ["train", "valid"], false)
    }
}

/// A `csv` crate error as a [`DataError`]: an I/O failure as [`DataError::Io`], the rest with its line.
fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = e.position().map_or(0, csv::Position::line);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io { path: path.to_path_buf(), source },
        csv::ErrorKind::Utf8 { err, .. } => DataError::Csv { path: path.to_path_buf(), line, why: err.to_string() },
        other => DataError::Csv { path: path.to_path_buf(), line, why: format!("{other:?}") },
    }
}
