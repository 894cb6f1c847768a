//! The read-only guard for user SQL: every statement must start with a keyword that
//! only reads. The read-only connection is the second line of defence.

use crate::StoreError;

const READ_KEYWORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "FROM",
    "VALUES",
    "TABLE",
    "SHOW",
    "DESCRIBE",
    "DESC",
    "EXPLAIN",
    "SUMMARIZE",
    "PIVOT",
    "UNPIVOT",
];

/// Splits SQL into statements on `;` outside quotes and comments; comments removed.
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                cur.push(c);
                for d in chars.by_ref() {
                    cur.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        cur.push(' ');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
                cur.push(' ');
            }
            ';' => {
                if !cur.trim().is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

pub(crate) fn leading_keyword(stmt: &str) -> String {
    stmt.trim_start()
        .trim_start_matches('(')
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Refuses SQL that is empty or has a statement that does not start with a reading keyword.
pub fn check_read_only(sql: &str) -> Result<(), StoreError> {
    let stmts = statements(sql);
    if stmts.is_empty() {
        return Err(StoreError::WriteRefused("empty".into()));
    }
    for s in &stmts {
        let kw = leading_keyword(s);
        if !READ_KEYWORDS.contains(&kw.as_str()) {
            return Err(StoreError::WriteRefused(kw));
        }
        // `EXPLAIN ANALYZE INSERT ...` and `WITH ... INSERT` still write.
        let upper = s.to_ascii_uppercase();
        for w in [
            "INSERT", "UPDATE", "DELETE", "COPY", "ATTACH", "CREATE", "DROP", "ALTER",
        ] {
            if upper
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '\'')
                .any(|tok| tok == w)
                && (kw == "EXPLAIN" || kw == "WITH")
            {
                return Err(StoreError::WriteRefused(w.to_owned()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_writes_are_named() {
        assert!(check_read_only("select 1").is_ok());
        assert!(check_read_only("  -- hi\n WITH x AS (select 1) select * from x;").is_ok());
        assert!(check_read_only("select ';drop table spans'").is_ok());
        assert!(check_read_only("(select 1) union (select 2)").is_ok());
        let e = check_read_only("select 1; DELETE FROM spans").unwrap_err();
        assert!(
            matches!(e, StoreError::WriteRefused(ref k) if k == "DELETE"),
            "{e}"
        );
        let e = check_read_only("/* x */ insert into spans values (1)").unwrap_err();
        assert!(
            matches!(e, StoreError::WriteRefused(ref k) if k == "INSERT"),
            "{e}"
        );
        assert!(check_read_only("EXPLAIN ANALYZE INSERT INTO t SELECT 1").is_err());
        assert!(check_read_only("copy spans to 'x.csv'").is_err());
        assert!(check_read_only("  ;; ").is_err());
    }
}
