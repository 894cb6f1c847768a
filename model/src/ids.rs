//! Trace and span ids: fixed-size byte arrays shown as lowercase hex.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Why bytes or text are not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} has {got} bytes, want {want}")]
    Length {
        what: &'static str,
        got: usize,
        want: usize,
    },
    #[error("{what} is all zeroes")]
    Zero { what: &'static str },
    #[error("{what} is not hex: {text:?}")]
    NotHex { what: &'static str, text: String },
}

fn from_hex<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], IdError> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return Err(IdError::Length {
            what,
            got: bytes.len() / 2,
            want: N,
        });
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]);
        let lo = hex_val(pair[1]);
        match (hi, lo) {
            (Some(h), Some(l)) => out[i] = (h << 4) | l,
            _ => {
                return Err(IdError::NotHex {
                    what,
                    text: text.chars().take(40).collect(),
                })
            }
        }
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of an id (at most 16 bytes), on the stack.
#[derive(Clone, Copy)]
pub struct Hex {
    buf: [u8; 32],
    len: usize,
}

impl Hex {
    fn of(bytes: &[u8]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 32];
        for (i, b) in bytes.iter().take(16).enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        Self {
            buf,
            len: 2 * bytes.len().min(16),
        }
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::ops::Deref for Hex {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str(Hex::of(bytes).as_str())
}

macro_rules! id_type {
    ($name:ident, $n:expr, $what:expr) => {
        #[doc = concat!("A ", $what, " (", stringify!($n), " bytes, never all zero).")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Validates raw OTLP bytes: exact length, not all zero.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $n] = bytes.try_into().map_err(|_| IdError::Length {
                    what: $what,
                    got: bytes.len(),
                    want: $n,
                })?;
                if arr.iter().all(|b| *b == 0) {
                    return Err(IdError::Zero { what: $what });
                }
                Ok(Self(arr))
            }

            /// Parses lowercase or uppercase hex.
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                let arr = from_hex::<$n>($what, text)?;
                Self::from_bytes(&arr)
            }

            pub fn to_hex(&self) -> String {
                self.hex().as_str().to_owned()
            }

            /// Lowercase hex without allocating.
            pub fn hex(&self) -> Hex {
                Hex::of(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        // Hex in text formats (JSON); the raw bytes in binary ones (the ingest log).
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    Self::from_hex(&s).map_err(serde::de::Error::custom)
                } else {
                    let b = <[u8; $n]>::deserialize(d)?;
                    Self::from_bytes(&b).map_err(serde::de::Error::custom)
                }
            }
        }
    };
}

id_type!(TraceId, 16, "trace_id");
id_type!(SpanId, 8, "span_id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let t = TraceId::from_hex("5B8EFFF798038103D269B633813FC60C").unwrap();
        assert_eq!(t.to_hex(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(TraceId::from_hex(&t.to_hex()).unwrap(), t);
        assert!(matches!(
            SpanId::from_bytes(&[1, 2, 3]),
            Err(IdError::Length {
                got: 3,
                want: 8,
                ..
            })
        ));
        assert!(matches!(
            SpanId::from_bytes(&[0; 8]),
            Err(IdError::Zero { .. })
        ));
        assert!(matches!(
            SpanId::from_hex("zz00000000000001"),
            Err(IdError::NotHex { .. })
        ));
        assert_eq!(
            SpanId::from_hex("00").unwrap_err().to_string(),
            "span_id has 1 bytes, want 8"
        );
    }
}
