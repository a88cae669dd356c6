//! Minimal RFC 4180 record splitting for one line: comma separated, fields may be
//! double-quoted, `""` inside quotes is a literal quote. MovieLens CSVs have no
//! embedded newlines, so records are lines.

/// Splits one CSV line into fields. Errors describe the problem (the caller adds
/// file and line).
pub(crate) fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut field_was_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                    match chars.peek() {
                        None | Some(',') => {}
                        Some(other) => {
                            return Err(format!("unexpected {other:?} after closing quote"))
                        }
                    }
                }
            } else {
                cur.push(c);
            }
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            field_was_quoted = false;
        } else if c == '"' {
            if !cur.is_empty() || field_was_quoted {
                return Err("quote inside an unquoted field".to_string());
            }
            in_quotes = true;
            field_was_quoted = true;
        } else {
            cur.push(c);
        }
    }
    if in_quotes {
        return Err("unterminated quoted field".to_string());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::split_line;

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(
            split_line("1,Toy Story (1995),A|B").unwrap(),
            ["1", "Toy Story (1995)", "A|B"]
        );
        assert_eq!(
            split_line("11,\"American President, The (1995)\",Comedy").unwrap(),
            ["11", "American President, The (1995)", "Comedy"]
        );
        assert_eq!(
            split_line("1,\"say \"\"hi\"\"\",x").unwrap(),
            ["1", "say \"hi\"", "x"]
        );
        assert_eq!(split_line("a,,b").unwrap(), ["a", "", "b"]);
        assert_eq!(split_line("a,").unwrap(), ["a", ""]);
    }

    #[test]
    fn rejects_broken_quotes() {
        assert!(split_line("1,\"open,x").is_err());
        assert!(split_line("1,ab\"c,x").is_err());
        assert!(split_line("1,\"ab\"c,x").is_err());
    }
}
