//! Just enough XML for list answers: the text of every leaf element, with its element path, in
//! document order (`EnumerationResults/Blobs/Blob/Name` → `ltx/0/…`).

/// Why an XML answer cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML answer: {0}")]
    Syntax(#[from] xmlparser::Error),
    #[error("malformed XML answer: </{element}> at byte {offset} closes no open element")]
    UnexpectedClose { element: String, offset: usize },
    #[error("malformed XML answer: <{0}> is never closed")]
    Unclosed(String),
}

/// `(path, text)` of every element that holds text, in document order; entities decoded.
/// Malformed XML is an error naming the byte offset.
pub fn leaves(doc: &str) -> Result<Vec<(String, String)>, XmlError> {
    let mut out = Vec::new();
    // (element name, whether it has child elements)
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut text = String::new();
    for token in xmlparser::Tokenizer::from(doc) {
        let token = token?;
        match token {
            xmlparser::Token::ElementStart { local, .. } => {
                if let Some(parent) = stack.last_mut() {
                    parent.1 = true;
                }
                stack.push((local.as_str().to_string(), false));
                text.clear();
            }
            xmlparser::Token::Text { text: t } => text.push_str(&unescape(t.as_str())),
            xmlparser::Token::Cdata { text: t, .. } => text.push_str(t.as_str()),
            xmlparser::Token::ElementEnd { end, .. } => match end {
                xmlparser::ElementEnd::Open => {}
                xmlparser::ElementEnd::Close(_, local) => {
                    if stack.last().map(|(n, _)| n.as_str()) != Some(local.as_str()) {
                        return Err(XmlError::UnexpectedClose {
                            element: local.as_str().to_string(),
                            offset: local.start(),
                        });
                    }
                    if matches!(stack.last(), Some((_, false))) && !text.is_empty() {
                        let path: Vec<&str> = stack.iter().map(|(n, _)| n.as_str()).collect();
                        out.push((path.join("/"), std::mem::take(&mut text)));
                    }
                    stack.pop();
                    text.clear();
                }
                xmlparser::ElementEnd::Empty => {
                    stack.pop();
                }
            },
            _ => {}
        }
    }
    if let Some((open, _)) = stack.last() {
        return Err(XmlError::Unclosed(open.clone()));
    }
    Ok(out)
}

/// Decodes the five predefined entities and numeric character references.
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Escapes text for an XML body.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_have_paths_and_decoded_text() {
        let doc = r#"<?xml version="1.0" encoding="utf-8"?><R a="1"><L><B><N>x&amp;y</N><E/></B>
            <B><N>z</N></B></L><M>&#x41;&#66;</M></R>"#;
        assert_eq!(
            leaves(doc).unwrap(),
            vec![
                ("R/L/B/N".to_string(), "x&y".to_string()),
                ("R/L/B/N".to_string(), "z".to_string()),
                ("R/M".to_string(), "AB".to_string()),
            ]
        );
    }

    #[test]
    fn malformed_xml_is_an_error() {
        assert!(leaves("<a><b></a>").is_err());
    }

    #[test]
    fn escape_and_unescape() {
        assert_eq!(unescape(&escape("a<&>b")), "a<&>b");
        assert_eq!(unescape("&bogus; & x"), "&bogus; & x");
    }
}
