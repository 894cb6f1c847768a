//! Who may send telemetry: the bearer token of remote collection (the OpenTelemetry
//! Collector's `bearertokenauth` convention: gRPC metadata or HTTP header
//! `authorization: Bearer <token>`), compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What a client without the right token is told (401 / UNAUTHENTICATED).
pub(crate) const REFUSED: &str =
    "missing or wrong bearer token: send `authorization: Bearer <token>` (OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>)";

/// Whether `a` and `b` are equal, in time that depends on their lengths only (not on
/// where they first differ), so that a client cannot guess a token byte by byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Why a token could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token {from} is empty")]
    Empty { from: String },
    #[error("the token {from} holds characters an HTTP header cannot carry (use printable ASCII without spaces)")]
    NotHeaderSafe { from: String },
}

/// The token that requests must carry. Its `Debug` does not show it.
#[derive(Clone)]
pub struct BearerToken(Arc<[u8]>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// `token` without surrounding whitespace; `from` says where it came from, for errors
    /// ("in the file x", "in TAILSCOPE_TOKEN").
    pub fn new(token: &str, from: &str) -> Result<Self, TokenError> {
        let t = token.trim();
        if t.is_empty() {
            return Err(TokenError::Empty { from: from.into() });
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotHeaderSafe { from: from.into() });
        }
        Ok(Self(t.as_bytes().into()))
    }

    /// The token in the file at `path` (surrounding whitespace and the final newline
    /// are not part of it).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(&text, &format!("in the file {}", path.display()))
    }

    /// Whether an `authorization` value (`Bearer <token>`; the scheme is
    /// case-insensitive) carries this token.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(v) = authorization else {
            return false;
        };
        let Some((scheme, rest)) = v.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        constant_time_eq(rest.trim_ascii(), &self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn bearer_values() {
        let t = BearerToken::new("  abc.DEF-123\n", "in test").unwrap();
        assert!(t.accepts(Some(b"Bearer abc.DEF-123")));
        assert!(t.accepts(Some(b"bearer abc.DEF-123")));
        assert!(!t.accepts(Some(b"Bearer abc.DEF-12")));
        assert!(!t.accepts(Some(b"Bearer abc.DEF-1234")));
        assert!(!t.accepts(Some(b"Basic abc.DEF-123")));
        assert!(!t.accepts(Some(b"abc.DEF-123")));
        assert!(!t.accepts(Some(b"Bearer ")));
        assert!(!t.accepts(None));
        assert_eq!(format!("{t:?}"), "BearerToken(..)");
        assert!(matches!(
            BearerToken::new(" \n", "in TAILSCOPE_TOKEN"),
            Err(TokenError::Empty { .. })
        ));
        assert!(matches!(
            BearerToken::new("two words", "x"),
            Err(TokenError::NotHeaderSafe { .. })
        ));
    }
}
