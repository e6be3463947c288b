//! Payload compression at rest. A webhook body is mostly repeated JSON keys
//! and URLs: LZ4 shrinks it about four-fold for a few microseconds of the
//! caller's CPU, which cuts what the single writer must write and sync per
//! group commit. Decoding gives back the exact bytes received.

use bytes::Bytes;

use super::StoreError;

/// Stored as-is.
pub const RAW: i64 = 0;
/// LZ4 block with the uncompressed size prepended.
pub const LZ4: i64 = 1;

/// Below this size compression saves too little to be worth it.
const MIN_COMPRESSED_SIZE: usize = 512;

/// The bytes to store and their codec.
pub fn encode(payload: &Bytes) -> (Bytes, i64) {
    if payload.len() < MIN_COMPRESSED_SIZE {
        return (payload.clone(), RAW);
    }
    let compressed = lz4_flex::block::compress_prepend_size(payload);
    // Keep the original when compression does not pay (already compressed data).
    if compressed.len() + compressed.len() / 8 >= payload.len() {
        (payload.clone(), RAW)
    } else {
        (Bytes::from(compressed), LZ4)
    }
}

/// The exact bytes that were appended.
pub fn decode(stored: Vec<u8>, codec: i64) -> Result<Bytes, StoreError> {
    match codec {
        RAW => Ok(Bytes::from(stored)),
        LZ4 => lz4_flex::block::decompress_size_prepended(&stored)
            .map(Bytes::from)
            .map_err(|e| StoreError::Corrupt(format!("payload does not decompress: {e}"))),
        other => Err(StoreError::Corrupt(format!("unknown payload codec {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_compressed_and_comes_back_exactly() {
        let body = Bytes::from(r#"{"url":"https://api.github.com/repos/o/r/issues/1","x":1}"#.repeat(50));
        let (stored, codec) = encode(&body);
        assert_eq!(codec, LZ4);
        assert!(stored.len() < body.len() / 4);
        assert_eq!(decode(stored.to_vec(), codec).expect("decodes"), body);
    }

    #[test]
    fn small_or_incompressible_payloads_are_kept_raw() {
        let small = Bytes::from_static(b"{}");
        assert_eq!(encode(&small), (small.clone(), RAW));
        // xorshift64: bytes with no structure for LZ4 to find.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let noise = Bytes::from(noise);
        assert_eq!(encode(&noise).1, RAW);
    }

    #[test]
    fn a_corrupt_payload_is_an_error_not_a_panic() {
        assert!(decode(vec![0xff, 0xff, 0xff, 0x7f, 1, 2, 3], LZ4).is_err());
        assert!(decode(vec![1], 9).is_err());
    }
}
