//! TensorBoard event files: TFRecord framing and CRC-32C, the events round trip, and the callback's log of a fit.

mod common;

use common::{point_learner, point_loaders, temp_dir};
use tiny_learner::tensorboard::{Event, EventWriter, Value, crc32c, masked_crc, read_events};
use tiny_learner::{Callback, Recorder, TensorBoard};

#[test]
fn crc32c_has_its_check_value_and_tfrecords_mask() {
    // The CRC-32C check value (RFC 3720's iSCSI polynomial), and TensorFlow's mask of it.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
    let c: u32 = 0xE306_9283;
    assert_eq!(masked_crc(b"123456789"), c.rotate_right(15).wrapping_add(0xA282_EAD8));
}

#[test]
fn events_round_trip_and_a_damaged_file_is_refused_by_record() {
    let dir = temp_dir("tb-roundtrip");
    let mut w = EventWriter::create(&dir.join("run")).unwrap();
    w.scalars(3, &[("loss".into(), 0.5), ("lr_0".into(), 1e-3)]).unwrap();
    w.image(4, "picture", (2, 1), vec![1, 2, 3]).unwrap();
    w.flush().unwrap();
    let path = w.path().to_path_buf();
    assert!(path.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
    let events = read_events(&path).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    assert_eq!(events[1].step, 3);
    assert_eq!(events[1].values, [("loss".into(), Value::Scalar(0.5)), ("lr_0".into(), Value::Scalar(1e-3))]);
    assert_eq!(events[2].values, [("picture".into(), Value::Image { width: 2, height: 1, png: vec![1, 2, 3] })]);
    let e = Event { wall_time: 1.5, step: -1, file_version: None, values: vec![] };
    assert_eq!(Event::decode(&e.encode()).unwrap(), e);
    // One flipped bit in the last record's data, then a file cut short: each named.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = read_events(&path).unwrap_err().to_string();
    assert!(err.contains("record 2") && err.contains("checksum of its data"), "{err}");
    std::fs::write(&path, &bytes[..n - 2]).unwrap();
    assert!(read_events(&path).unwrap_err().to_string().contains("cut short"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_callback_logs_each_batchs_loss_and_hyper_parameters_and_each_epochs_validation() {
    let dir = temp_dir("tb-fit");
    let cbs: Vec<Box<dyn Callback>> = vec![Box::new(TensorBoard::new(dir.join("logs")))];
    let mut learn = point_learner(point_loaders(48, 16, 8, Some(1)), 0.2, cbs);
    learn.fit(2).unwrap();
    let file = std::fs::read_dir(dir.join("logs")).unwrap().next().unwrap().unwrap().path();
    let events = read_events(&file).unwrap();
    let scalar = |tag: &str| -> Vec<(i64, f32)> {
        events
            .iter()
            .flat_map(|e| e.values.iter().filter(|(t, _)| t == tag).map(move |(_, v)| (e.step, v.clone())))
            .map(|(s, v)| match v {
                Value::Scalar(x) => (s, x),
                other => panic!("{tag} is {other:?}"),
            })
            .collect()
    };
    let rec = learn.callback::<Recorder>().unwrap();
    let losses = scalar("train_loss");
    assert_eq!(losses.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    // fastai's smoothed loss of the Recorder's batch losses.
    let smoothed = tiny_learner::callbacks::smooth(&rec.losses, 0.98);
    assert_eq!(losses.iter().map(|(_, l)| *l).collect::<Vec<_>>(), smoothed);
    assert_eq!(scalar("lr_0"), (1..=12).map(|s| (s, 0.2)).collect::<Vec<_>>());
    assert_eq!(scalar("wd_0"), (1..=12).map(|s| (s, 0.0)).collect::<Vec<_>>());
    let valid = scalar("valid_loss");
    assert_eq!(valid.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [6, 12]);
    assert_eq!(valid[1].1, rec.epochs[1].valid_loss.unwrap());
    assert_eq!(scalar("accuracy").len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
