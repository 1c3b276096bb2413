//! TFRecord framing, as TensorBoard's event files use it: length, masked CRC-32C of the length, data, masked CRC of it.

use std::io::{Read, Write};

/// The CRC-32C (Castagnoli) lookup table, reflected polynomial `0x82F63B78`.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32C of `bytes` (the checksum TFRecord uses; `crc32c(b"123456789") == 0xE3069283`).
pub fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant, so that a CRC of CRCs stays well spread.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// Writes one record holding `data`.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// Reads every record of `input`, checking both checksums of each.
///
/// # Errors
/// A record cut short or a checksum that does not match, by record number, as an `InvalidData` error.
pub fn read_records(input: &mut impl Read) -> std::io::Result<Vec<Vec<u8>>> {
    let bad =
        |i: usize, what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("record {i}: {what}"));
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes)?;
    let (mut at, mut records) = (0, Vec::new());
    while at < bytes.len() {
        let i = records.len();
        let head = bytes.get(at..at + 12).ok_or_else(|| bad(i, "its header is cut short"))?;
        let (len, crc) = head.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            return Err(bad(i, "the checksum of its length does not match"));
        }
        let n = usize::try_from(u64::from_le_bytes(len.try_into().unwrap_or_default())).unwrap_or(usize::MAX);
        let data = bytes.get(at + 12..(at + 12).saturating_add(n)).ok_or_else(|| bad(i, "its data is cut short"))?;
        let crc = bytes.get(at + 12 + n..at + 16 + n).ok_or_else(|| bad(i, "its data checksum is cut short"))?;
        if masked_crc(data).to_le_bytes() != crc {
            return Err(bad(i, "the checksum of its data does not match"));
        }
        records.push(data.to_vec());
        at += 16 + n;
    }
    Ok(records)
}
