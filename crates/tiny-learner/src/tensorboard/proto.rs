//! The few protocol-buffer messages of an event file (`Event`, `Summary`, `Summary.Value`, `Summary.Image`), by hand.

/// One value of a summary: a scalar or a PNG image.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `Summary.Value.simple_value`.
    Scalar(f32),
    /// `Summary.Value.image`: an encoded PNG and its size.
    Image { width: u32, height: u32, png: Vec<u8> },
}

/// One event: TensorBoard's `Event` with the fields tiny writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// The training step the values belong to.
    pub step: i64,
    /// Set on the first event of a file only: `brain.Event:2`.
    pub file_version: Option<String>,
    /// The summary's values, by tag.
    pub values: Vec<(String, Value)>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

impl Event {
    /// The event's protocol-buffer encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0x09];
        out.extend_from_slice(&self.wall_time.to_le_bytes());
        varint(&mut out, 2 << 3);
        varint(&mut out, self.step as u64);
        if let Some(v) = &self.file_version {
            bytes_field(&mut out, 3, v.as_bytes());
        }
        if !self.values.is_empty() {
            let mut summary = Vec::new();
            for (tag, value) in &self.values {
                let mut v = Vec::new();
                bytes_field(&mut v, 1, tag.as_bytes());
                match value {
                    Value::Scalar(x) => {
                        v.push(2 << 3 | 5);
                        v.extend_from_slice(&x.to_le_bytes());
                    }
                    Value::Image { width, height, png } => {
                        let mut image = Vec::new();
                        for (field, n) in [(1, *height), (2, *width), (3, 3)] {
                            varint(&mut image, field << 3);
                            varint(&mut image, u64::from(n));
                        }
                        bytes_field(&mut image, 4, png);
                        bytes_field(&mut v, 4, &image);
                    }
                }
                bytes_field(&mut summary, 1, &v);
            }
            bytes_field(&mut out, 5, &summary);
        }
        out
    }

    /// Decodes an event, keeping the fields tiny writes and skipping the others.
    ///
    /// # Errors
    /// A message cut short or with a wire type it cannot skip, described.
    pub fn decode(bytes: &[u8]) -> Result<Event, String> {
        let mut e = Event { wall_time: 0.0, step: 0, file_version: None, values: Vec::new() };
        for (field, f) in fields(bytes)? {
            match (field, f) {
                (1, Field::Fixed64(b)) => e.wall_time = f64::from_le_bytes(b),
                (2, Field::Varint(v)) => e.step = v as i64,
                (3, Field::Bytes(b)) => e.file_version = Some(String::from_utf8_lossy(b).into_owned()),
                (5, Field::Bytes(summary)) => {
                    for (field, v) in fields(summary)? {
                        if let (1, Field::Bytes(v)) = (field, v) {
                            e.values.push(decode_value(v)?);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(e)
    }
}

fn decode_value(bytes: &[u8]) -> Result<(String, Value), String> {
    let (mut tag, mut value) = (String::new(), None);
    for (field, f) in fields(bytes)? {
        match (field, f) {
            (1, Field::Bytes(b)) => tag = String::from_utf8_lossy(b).into_owned(),
            (2, Field::Fixed32(b)) => value = Some(Value::Scalar(f32::from_le_bytes(b))),
            (4, Field::Bytes(image)) => {
                let (mut width, mut height, mut png) = (0, 0, Vec::new());
                for (field, f) in fields(image)? {
                    match (field, f) {
                        (1, Field::Varint(v)) => height = v as u32,
                        (2, Field::Varint(v)) => width = v as u32,
                        (4, Field::Bytes(b)) => png = b.to_vec(),
                        _ => {}
                    }
                }
                value = Some(Value::Image { width, height, png });
            }
            _ => {}
        }
    }
    Ok((tag.clone(), value.ok_or_else(|| format!("value {tag:?} holds neither a scalar nor an image"))?))
}

/// One field's payload.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

/// The fields of a message, in order.
fn fields(mut bytes: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    fn read_varint(bytes: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first().ok_or("a varint is cut short")?;
            *bytes = rest;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("a field is cut short".into());
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let f = match key & 7 {
            0 => Field::Varint(read_varint(&mut bytes)?),
            1 => Field::Fixed64(take(&mut bytes, 8)?.try_into().map_err(|_| "fixed64")?),
            2 => {
                let n = usize::try_from(read_varint(&mut bytes)?).map_err(|_| "a length overflows")?;
                Field::Bytes(take(&mut bytes, n)?)
            }
            5 => Field::Fixed32(take(&mut bytes, 4)?.try_into().map_err(|_| "fixed32")?),
            w => return Err(format!("wire type {w} is not one an event uses")),
        };
        out.push((key >> 3, f));
    }
    Ok(out)
}
