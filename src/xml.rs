//! Enough of a DOM to read the XML regfs takes in: Carbon's configuration files (`--wso2-conf`)
//! and Carbon's registry dumps (`regfs load`). Text is kept exactly as the document has it,
//! entity and character references resolved; callers trim where the format allows.

use std::collections::BTreeMap;

use quick_xml::events::Event;

use crate::err;
use crate::error::Result;

/// A parsed XML element. Names are local names (a namespace prefix is dropped).
#[derive(Debug, Default, Clone)]
pub struct Element {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    /// The text directly inside the element (between its children too), unescaped.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child `name`, `None` if there is none or it is blank.
    pub fn text_of(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(|c| c.text.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// Descendants named `name`, depth first.
    pub fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            }
            c.find_all(name, out);
        }
    }
}

/// Parses `text`, the document `origin` names in error messages; returns its document element.
/// Errors are EINVAL and say where the document is not well-formed.
pub fn parse(text: &str, origin: &str) -> Result<Element> {
    let mut reader = quick_xml::Reader::from_str(text);
    let bad = |e: &dyn std::fmt::Display, at: u64| {
        err!(EINVAL, "{origin}: not well-formed XML at byte {at}: {e}")
    };
    let local = |n: &[u8]| {
        let n = String::from_utf8_lossy(n).into_owned();
        // Namespaced names (svns:secretAlias) keep their local part.
        n.rsplit(':').next().unwrap_or(&n).to_string()
    };
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let at = reader.buffer_position();
        let event = reader.read_event().map_err(|e| bad(&e, at))?;
        let element = |s: &quick_xml::events::BytesStart| -> Result<Element> {
            let mut el = Element {
                name: local(s.name().as_ref()),
                ..Element::default()
            };
            for a in s.attributes() {
                let a = a.map_err(|e| bad(&e, at))?;
                let v = a.unescape_value().map_err(|e| bad(&e, at))?.into_owned();
                el.attrs.insert(local(a.key.as_ref()), v);
            }
            Ok(el)
        };
        fn top(stack: &mut [Element]) -> Result<&mut Element> {
            // The bottom of the stack stands for the document: only an unbalanced end tag
            // takes it away.
            stack
                .last_mut()
                .ok_or_else(|| err!(EINVAL, "not well-formed XML: unbalanced end tag"))
        }
        match event {
            Event::Start(s) => stack.push(element(&s)?),
            Event::Empty(s) => {
                let el = element(&s)?;
                top(&mut stack)?.children.push(el);
            }
            Event::Text(t) => {
                let t = t.decode().map_err(|e| bad(&e, at))?;
                top(&mut stack)?.text.push_str(&t);
            }
            // `&amp;`, `&#10;`: quick-xml hands references over apart from the text around them.
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| bad(&e, at))? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| bad(&e, at))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| bad(&format!("unknown entity &{name};"), at))?
                            .to_string()
                    }
                };
                top(&mut stack)?.text.push_str(&resolved);
            }
            Event::CData(t) => {
                let t = String::from_utf8_lossy(&t).into_owned();
                top(&mut stack)?.text.push_str(&t);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| bad(&"unbalanced end tag", at))?;
                stack
                    .last_mut()
                    .ok_or_else(|| bad(&"unbalanced end tag", at))?
                    .children
                    .push(el);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let root = stack
        .pop()
        .ok_or_else(|| bad(&"empty document", text.len() as u64))?;
    if !stack.is_empty() {
        return Err(bad(
            &format!("<{}> is not closed", root.name),
            text.len() as u64,
        ));
    }
    root.children
        .into_iter()
        .next()
        .ok_or_else(|| bad(&"no document element", text.len() as u64))
}

/// [`parse`] of the file at `file`.
pub fn parse_file(file: &std::path::Path) -> Result<Element> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| err!(ENOENT, "cannot read {}: {e}", file.display()))?;
    parse(&text, &file.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_spaces_are_kept() {
        let doc = parse(
            "<a x=\"1 &amp; 2\"><b> one &amp; two&#10;three </b><c/></a>",
            "test",
        )
        .unwrap();
        assert_eq!(doc.attrs["x"], "1 & 2");
        assert_eq!(doc.child("b").unwrap().text, " one & two\nthree ");
        assert!(doc.child("c").is_some());
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in ["<a><b></a>", "<a>", "", "<a>&nope;</a>"] {
            let e = parse(bad, "doc.xml").unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{bad}: {e}");
            assert!(e.to_string().contains("doc.xml"), "{e}");
        }
    }
}
