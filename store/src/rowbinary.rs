//! ClickHouse's `RowBinary` format, the subset tailscope reads and writes: integers
//! (little-endian), strings (LEB128 length, then bytes), arrays and maps (LEB128
//! count, then the items). `LowCardinality(String)` travels as a plain string,
//! `DateTime64(9)` as an `Int64` of nanoseconds, a `Map(K, V)` as an array of pairs.

/// A `RowBinary` buffer read front to back; every read says what was cut short.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The input ended inside a value, or a string is not UTF-8.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("RowBinary: {what} at byte {at}")]
pub struct Truncated {
    pub what: &'static str,
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(Truncated { what, at: self.pos })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// An unsigned LEB128 length or count.
    pub fn varint(&mut self) -> Result<usize, Truncated> {
        let mut out: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1, "a length")?[0];
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(out).map_err(|_| Truncated {
                    what: "a length too large",
                    at: self.pos,
                });
            }
        }
        Err(Truncated {
            what: "a length of more than 10 bytes",
            at: self.pos,
        })
    }

    pub fn i64(&mut self) -> Result<i64, Truncated> {
        let b = self.take(8, "an Int64")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.take(1, "a UInt8")?[0])
    }

    pub fn i32(&mut self) -> Result<i32, Truncated> {
        let b = self.take(4, "an Int32")?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(i32::from_le_bytes(a))
    }

    pub fn f64(&mut self) -> Result<f64, Truncated> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A `Nullable(Int64)`: the null flag, then the value unless null.
    pub fn opt_i64(&mut self) -> Result<Option<i64>, Truncated> {
        Ok(if self.u8()? == 1 {
            None
        } else {
            Some(self.i64()?)
        })
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        let b = self.take(8, "a UInt64")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn str(&mut self) -> Result<&'a str, Truncated> {
        let n = self.varint()?;
        let at = self.pos;
        let b = self.take(n, "a String")?;
        std::str::from_utf8(b).map_err(|_| Truncated {
            what: "a String that is not UTF-8",
            at,
        })
    }

    pub fn string(&mut self) -> Result<String, Truncated> {
        self.str().map(str::to_owned)
    }

    /// `Array(T)`, each item read by `item`.
    pub fn array<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, Truncated>,
    ) -> Result<Vec<T>, Truncated> {
        let n = self.varint()?;
        // a count is not trusted for the allocation: each item takes at least a byte
        let mut out = Vec::with_capacity(n.min(self.buf.len() - self.pos));
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// `Map(String, String)` as (key, value) pairs in stored order.
    pub fn string_map(&mut self) -> Result<Vec<(String, String)>, Truncated> {
        self.array(|r| Ok((r.string()?, r.string()?)))
    }
}

/// A `RowBinary` buffer written front to back.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn varint(&mut self, mut n: usize) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(b);
                return;
            }
            self.buf.push(b | 0x80);
        }
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    pub fn str(&mut self, s: &str) {
        self.varint(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// `Map(String, String)`.
    pub fn string_map<'s>(&mut self, pairs: &[(&'s str, std::borrow::Cow<'s, str>)]) {
        self.varint(pairs.len());
        for (k, v) in pairs {
            self.str(k);
            self.str(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn values_round_trip() {
        let mut w = Writer::default();
        w.varint(300);
        w.i64(-5);
        w.str("héllo");
        w.string_map(&[("k", Cow::Borrowed("v")), ("a", Cow::Owned("b".into()))]);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(
            r.string_map().unwrap(),
            vec![("k".into(), "v".into()), ("a".into(), "b".into())]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn cut_input_is_an_error_not_a_panic() {
        let mut w = Writer::default();
        w.str("a long enough string");
        for cut in 0..w.buf.len() {
            assert!(Reader::new(&w.buf[..cut]).str().is_err(), "cut at {cut}");
        }
        // a count far larger than the input does not allocate it
        let mut w = Writer::default();
        w.varint(usize::MAX >> 8);
        assert!(Reader::new(&w.buf).array(Reader::i64).is_err());
    }
}
