//! Tests of labels from a CSV (fastai's `from_csv`) and from file names (`from_name_re`, `from_name_func`): the
//! splits they make, the loaders they feed, and one error naming the file, the line and the fault for bad input.

mod common;

use std::path::Path;

use common::{TempDir, write, write_jpeg};
use tiny_data::{Column, CsvColumns, DataError, Dataset, FolderConfig, ImageDataLoaders, ImageFolder};

fn cfg() -> FolderConfig {
    FolderConfig { bs: 4, size: 8, seed: 3, ..FolderConfig::default() }
}

/// `root/images/<name>.jpg` for each name.
fn images(root: &Path, names: &[&str]) {
    for name in names {
        write_jpeg(&root.join("images").join(format!("{name}.jpg")), 20, 12);
    }
}

/// The labels CSV `root/labels.csv`.
fn labels_csv(root: &Path, text: &str) {
    write(&root.join("labels.csv"), text.as_bytes());
}

fn in_images() -> CsvColumns {
    CsvColumns { folder: Some("images".into()), ..CsvColumns::default() }
}

/// Each image of a split as its file name (without folders) and its class.
type Named = Vec<(String, String)>;

/// The file name and class of every training and validation image.
fn labelled(f: &ImageFolder) -> (Named, Named) {
    let named = |files: &[std::path::PathBuf], labels: &[u32]| {
        files
            .iter()
            .zip(labels)
            .map(|(p, &l)| {
                (p.file_name().unwrap().to_string_lossy().into_owned(), f.vocab.names()[l as usize].to_string())
            })
            .collect::<Vec<_>>()
    };
    (named(&f.splits.train, f.train_labels.as_slice()), named(&f.splits.valid, f.valid_labels.as_slice()))
}

#[test]
fn a_csv_with_an_is_valid_column_gives_its_split_and_labels() {
    let dir = TempDir::new("csv-valid");
    images(dir.path(), &["a", "b", "c", "d", "e", "f"]);
    // Quoted fields with commas, spaces around values and pandas' True/False, as real CSVs have them.
    labels_csv(
        dir.path(),
        "fname,label,is_valid\na.jpg,cat,False\n\"b.jpg\",\"dog, big\",False\nc.jpg, cat ,True\nd.jpg,dog, big,0\n\
         e.jpg,cat,0\nf.jpg,\"dog, big\",1\n",
    );
    let columns = CsvColumns {
        file: Column::from("fname"),
        label: Column::from("label"),
        valid: Some(Column::from("is_valid")),
        ..in_images()
    };
    // "d.jpg,dog, big,0" has four fields: the label is "dog" and the valid column " big" is not a boolean.
    let err = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap_err();
    assert!(matches!(err, DataError::Csv { line: 5, .. }), "{err}");
    assert!(err.to_string().contains("labels.csv, line 5") && err.to_string().contains("\"big\""), "{err}");
    labels_csv(
        dir.path(),
        "fname,label,is_valid\na.jpg,cat,False\n\"b.jpg\",\"dog, big\",False\nc.jpg, cat ,True\n\
         d.jpg,\"dog, big\",0\ne.jpg,cat,0\nf.jpg,\"dog, big\",1\n",
    );
    let f = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap();
    assert_eq!(f.vocab.names(), ["cat", "dog, big"]);
    let (train, valid) = labelled(&f);
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(train, pairs(&[("a.jpg", "cat"), ("b.jpg", "dog, big"), ("d.jpg", "dog, big"), ("e.jpg", "cat")]));
    assert_eq!(valid, pairs(&[("c.jpg", "cat"), ("f.jpg", "dog, big")]));
}

#[test]
fn a_csv_without_a_valid_column_is_split_at_random_by_position_and_suffix() {
    let dir = TempDir::new("csv-random");
    let names: Vec<String> = (0..10).map(|i| format!("img{i}")).collect();
    images(dir.path(), &names.iter().map(String::as_str).collect::<Vec<_>>());
    let rows: String = names.iter().enumerate().map(|(i, n)| format!("{n},{}\n", ["x", "y"][i % 2])).collect();
    labels_csv(dir.path(), &format!("name,class\n{rows}"));
    // fastai's defaults: fn_col=0, label_col=1, valid_pct=0.2; the CSV names images without their extension.
    let columns = CsvColumns { suffix: ".jpg".into(), ..in_images() };
    let f = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap();
    assert_eq!((f.splits.train.len(), f.splits.valid.len()), (8, 2));
    let again = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap();
    assert_eq!(again.splits.valid, f.splits.valid, "the same seed gives the same split");
    for (file, &label) in f.splits.train.iter().zip(f.train_labels.as_slice()) {
        let i: usize = file.file_stem().unwrap().to_str().unwrap()[3..].parse().unwrap();
        assert_eq!(f.vocab.names()[label as usize], ["x", "y"][i % 2], "{}", file.display());
    }
    // And it trains: one batch through the loaders.
    let dls = ImageDataLoaders::from_image_folder(f, &cfg()).unwrap();
    assert_eq!(dls.train.dataset().len(), 8);
    let batch = dls.train.iter_epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.x.shape(), [4, 8, 8, 3]);
}

#[test]
fn bad_csvs_get_one_error_naming_the_file_line_and_fault() {
    let dir = TempDir::new("csv-bad");
    images(dir.path(), &["a", "b", "c"]);
    let cases: [(&str, CsvColumns, u64, &str); 7] = [
        (
            "name,label\na.jpg,cat\n",
            CsvColumns { label: Column::from("class"), ..in_images() },
            1,
            "no column named \"class\"",
        ),
        ("name,label\na.jpg,cat\nb.jpg\n", in_images(), 3, "the row has 1 fields, so no column 1"),
        ("name,label\na.jpg,cat\nb.jpg,\n", in_images(), 3, "the label of b.jpg (column 1) is empty"),
        ("name,label\na.jpg,cat\n,dog\n", in_images(), 3, "the file name (column 0) is empty"),
        ("name,label\na.jpg,cat\nzz.jpg,dog\n", in_images(), 3, "no image"),
        ("name,label\na.jpg,cat\nb.jpg,dog\na.jpg,dog\n", in_images(), 4, "a.jpg was already labelled on line 2"),
        ("name,label\n", in_images(), 1, "no rows below the header"),
    ];
    for (text, columns, line, fault) in cases {
        labels_csv(dir.path(), text);
        let err = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Csv { line: l, .. } if l == line), "{text:?}: {msg}");
        assert!(msg.contains("labels.csv") && msg.contains(fault), "{text:?}: {msg}");
    }
    let err = ImageFolder::from_csv(dir.path(), "missing.csv", &in_images(), &cfg()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("missing.csv"), "{err}");
    let columns = CsvColumns { folder: Some("nowhere".into()), ..CsvColumns::default() };
    let err = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap_err();
    assert!(matches!(err, DataError::MissingFolder { .. }), "{err}");
}

#[test]
fn pets_style_names_are_labelled_by_the_pattern() {
    let dir = TempDir::new("name-re");
    // The pets data set's names: the breed, an underscore and a number; in nested folders, as the walk finds them.
    let names = ["great_pyrenees_1", "great_pyrenees_2", "Abyssinian_1", "Abyssinian_12", "pug_3", "pug_40"];
    for (i, name) in names.iter().enumerate() {
        write_jpeg(&dir.path().join(["a", "b/c"][i % 2]).join(format!("{name}.jpg")), 16, 16);
    }
    let cfg = FolderConfig { valid_pct: Some(0.5), accept_missing_classes: true, ..cfg() };
    let f = ImageFolder::from_name_re(dir.path(), r"^(.+)_\d+\.jpg$", &cfg).unwrap();
    assert_eq!(f.vocab.names(), ["Abyssinian", "great_pyrenees", "pug"]);
    assert_eq!((f.splits.train.len(), f.splits.valid.len()), (3, 3));
    let (train, valid) = labelled(&f);
    for (file, class) in train.iter().chain(&valid) {
        assert!(file.starts_with(class.as_str()), "{file} labelled {class}");
    }
    // A function of the name does the same (fastai's from_name_func: upper case is a cat).
    let by_case = |name: &str| Ok(if name.starts_with(char::is_uppercase) { "cat" } else { "dog" }.to_string());
    let f = ImageFolder::from_name_func(dir.path(), &cfg, by_case).unwrap();
    assert_eq!(f.vocab.names(), ["cat", "dog"]);
}

#[test]
fn a_bad_pattern_or_an_unmatched_name_is_an_error_naming_it() {
    let dir = TempDir::new("name-re-bad");
    write_jpeg(&dir.path().join("pug_1.jpg"), 8, 8);
    write_jpeg(&dir.path().join("nodigits.jpg"), 8, 8);
    let cfg = cfg();
    for (pattern, fault) in [(r"^(.+_\d+", "unclosed group"), (r"^.+_\d+", "no capture group")] {
        let err = ImageFolder::from_name_re(dir.path(), pattern, &cfg).unwrap_err();
        assert!(matches!(err, DataError::LabelPattern { .. }), "{err}");
        assert!(err.to_string().contains(&format!("{pattern:?}")) && err.to_string().contains(fault), "{err}");
    }
    let err = ImageFolder::from_name_re(dir.path(), r"^(.+)_\d+\.jpg$", &cfg).unwrap_err();
    assert!(matches!(&err, DataError::NameWithoutLabel { path, .. } if path.ends_with("nodigits.jpg")), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn a_csv_with_a_label_delimiter_gives_multi_hot_targets_and_batches() {
    // fastai's planet layout: space-separated tags, an is_valid column; a tag listed twice counts once, and an empty
    // field is an image of none of the classes.
    let dir = TempDir::new("csv-multi");
    images(dir.path(), &["a", "b", "c", "d", "e", "f"]);
    labels_csv(
        dir.path(),
        "fname,tags,is_valid\na.jpg,cat dog,False\nb.jpg, dog ,False\nc.jpg,,False\nd.jpg,bird cat cat,False\n\
         e.jpg,dog bird,True\nf.jpg,cat,True\n",
    );
    let columns = CsvColumns {
        label: Column::from("tags"),
        valid: Some(Column::from("is_valid")),
        label_delim: Some(' '),
        ..in_images()
    };
    let f = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap();
    assert_eq!(f.vocab.names(), ["bird", "cat", "dog"]);
    assert!(f.train_labels.is_multi_label() && f.valid_labels.is_multi_label());
    assert_eq!((f.train_labels.len(), f.train_labels.width()), (4, 3));
    assert_eq!(f.train_labels.as_slice(), [0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0]);
    assert_eq!(f.valid_labels.as_slice(), [1, 0, 1, 0, 1, 0]);
    assert_eq!(f.train_labels.label_set(3), [0, 1]);
    // The loaders carry the rows through collate: one [n, 3] row per image, in the loader's order.
    let dls = ImageDataLoaders::from_image_folder(f, &FolderConfig { bs: 4, size: 8, ..cfg() }).unwrap();
    assert!(dls.multi_label());
    let batch = dls.valid.iter_epoch(0).next().unwrap().unwrap();
    assert_eq!((batch.len(), batch.y.width(), batch.y.as_slice()), (2, 3, &[1, 0, 1, 0, 1, 0][..]));
    let item = dls.train.dataset().get(2).unwrap();
    assert_eq!(item.target.as_slice(), [0, 0, 0]);
    // A rare tag that only the training split has is a warning for multi-label data, as fastai accepts it.
    labels_csv(dir.path(), "fname,tags,is_valid\na.jpg,cat rare,False\nb.jpg,cat,True\n");
    let f = ImageFolder::from_csv(dir.path(), "labels.csv", &columns, &cfg()).unwrap();
    assert!(f.warnings.iter().any(|w| w.contains("\"rare\" has images in")), "{:?}", f.warnings);
    // Without the delimiter the same field is one class, "bird cat cat".
    let single = CsvColumns { label_delim: None, ..columns };
    labels_csv(dir.path(), "fname,tags,is_valid\na.jpg,cat dog,False\nb.jpg,dog,True\n");
    let f = ImageFolder::from_csv(dir.path(), "labels.csv", &single, &cfg()).unwrap_err();
    assert!(f.to_string().contains("cat dog"), "{f}");
}

#[test]
fn collate_refuses_items_of_two_kinds_of_target() {
    use tiny_data::{ImageItem, Targets, collate};
    let item = |target: Targets| ImageItem { pixels: vec![0; 12], height: 2, width: 2, target };
    let err = collate(&[item(vec![1].into()), item(Targets::multi_hot(vec![0, 1], 2).unwrap())]).unwrap_err();
    assert!(err.to_string().contains("multi-hot rows of 2 classes beside class indices"), "{err}");
    let rows =
        collate(&[item(Targets::multi_hot(vec![0, 1], 2).unwrap()), item(Targets::multi_hot(vec![1, 1], 2).unwrap())]);
    assert_eq!(rows.unwrap().y.as_slice(), [0, 1, 1, 1]);
    assert!(Targets::multi_hot(vec![0, 2], 2).is_err() && Targets::multi_hot(vec![0, 1, 1], 2).is_err());
    assert!(Targets::from_label_sets(&[vec![3]], 3).is_err());
}
