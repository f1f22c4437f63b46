//! Carbon's registry dump format, as `Repository.dump` writes it and `Repository.restore` (and
//! so Carbon's checkin-client and `Registry.dump`/`restore`) reads it: one `<resource>`
//! element per collection or resource, its metadata as child elements, a resource's content
//! in base64, a collection's children inside `<children>`:
//!
//! ```xml
//! <resource name="app" status="dump" isCollection="true">
//!   <mediaType/> <version>12</version> <creator>admin</creator>
//!   <createdTime>1733650000000</createdTime> <lastUpdater>admin</lastUpdater>
//!   <lastModified>1733650000000</lastModified> <uuid>...</uuid> <description/>
//!   <properties><property key="lifecycle">Development</property></properties>
//!   <comments><comment><user>admin</user><text>ok</text></comment></comments>
//!   <taggings><tagging><user/><date/><tagName/></tagging></taggings>
//!   <ratings><rating><user/><date/><rate/></rating></ratings>
//!   <associations><association><source/><destination/><type/></association></associations>
//!   <posix mode="40755" uid="0" gid="0" rdev="0" atimeNs="..." mtimeNs="..."/>
//!   <children> <resource name="a.xml" ...> ... <content>PGEvPg==</content></resource> </children>
//! </resource>
//! ```
//!
//! Times are milliseconds since the epoch. A multi-valued property is one `<property>` per
//! value. Association paths are relative to the resource (Carbon's
//! `getRelativeAssociationPath`); an external destination (a URL) starts with `:`.
//! `<posix>` is regfs's own: what the WSO2 tables have no column for (POSIX type and mode,
//! owner, device number, nanosecond times). Carbon's reader passes over elements it does not
//! know, so a dump with it still restores in Carbon; a dump without it (Carbon's) loads with
//! the defaults of a resource Carbon wrote. Versions are not part of the format.

use std::io::Write;

use base64::Engine;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};

use crate::err;
use crate::error::Result;
use crate::xml::Element;

/// One collection or resource of a dump, with its subtree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The name it was dumped under (the root's is replaced by where it is loaded).
    pub name: String,
    pub collection: bool,
    pub media_type: Option<String>,
    /// `REG_VERSION` where it was dumped: informational (a load writes new versions).
    pub version: Option<i64>,
    pub creator: Option<String>,
    pub created_ms: Option<i64>,
    pub last_updater: Option<String>,
    pub last_modified_ms: Option<i64>,
    pub uuid: Option<String>,
    pub description: Option<String>,
    /// (name, value), a multi-valued property once per value, in order.
    pub properties: Vec<(String, String)>,
    pub comments: Vec<Said>,
    pub taggings: Vec<Said>,
    pub ratings: Vec<Rated>,
    pub associations: Vec<Association>,
    pub posix: Option<Posix>,
    /// A resource's content (`None` for a collection, or a resource with none).
    pub content: Option<Vec<u8>>,
    pub children: Vec<Node>,
}

/// A comment (its text) or a tagging (the tag name), with who and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Said {
    pub user: String,
    /// Milliseconds since the epoch; comments carry no time in Carbon's dumps.
    pub time_ms: Option<i64>,
    pub text: String,
}

/// A rating (1 to 5), with who and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rated {
    pub user: String,
    pub time_ms: Option<i64>,
    pub rate: i64,
}

/// An association from `source` to `destination` (registry paths, or a URL destination), of
/// a kind (`type`: depends, uses, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Association {
    pub source: String,
    pub destination: String,
    pub kind: String,
}

/// What `REGFS_ATTR` holds (`<posix>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Posix {
    /// Type and permission bits (`S_IFREG | 0644`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
}

impl Node {
    /// How many collections and resources the subtree holds, itself included.
    pub fn count(&self) -> u64 {
        1 + self.children.iter().map(Node::count).sum::<u64>()
    }
}

/// Carbon's `getRelativeAssociationPath`: `p` relative to the collection of `reference`.
pub fn relative_association(p: &str, reference: &str) -> String {
    let dir = crate::path::parent(reference).unwrap_or("/");
    match crate::path::relative_to(dir, p).as_str() {
        // The collection itself: Carbon writes its path as it is.
        "." => p.to_string(),
        rel => rel.to_string(),
    }
}

/// Carbon's `getAbsoluteAssociationPath`: a relative association path back to a registry path,
/// against the collection of `reference` (`..` past the root stays at the root).
pub fn absolute_association(rel: &str, reference: &str) -> String {
    if rel.starts_with('/') {
        return crate::path::normalize(rel);
    }
    let mut parts: Vec<&str> = crate::path::parent(reference)
        .unwrap_or("/")
        .split('/')
        .filter(|c| !c.is_empty())
        .collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether XML 1.0 can carry `c` at all (escaped or not).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Writes a dump as it is walked: [`DumpWriter::open`] a node (its metadata and content), its
/// children in turn, then [`DumpWriter::close`] it. Nothing is held but the node at hand.
pub struct DumpWriter<W: Write> {
    xml: quick_xml::Writer<W>,
}

impl<W: Write> DumpWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            xml: quick_xml::Writer::new_with_indent(out, b' ', 1),
        }
    }

    /// The writer back, flushed.
    pub fn into_inner(self) -> Result<W> {
        let mut out = self.xml.into_inner();
        out.flush()?;
        Ok(out)
    }

    fn event(&mut self, e: Event<'_>) -> Result<()> {
        self.xml
            .write_event(e)
            .map_err(|e| err!(EIO, "cannot write the dump: {e}"))
    }

    /// `text` as the content of an element `name` with `attrs`; characters XML cannot carry
    /// are refused (`at` names the registry path), carriage returns escaped so that a reader
    /// keeps them.
    fn text_element(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        text: &str,
        at: &str,
    ) -> Result<()> {
        let start = self.start_with(name, attrs, at)?;
        // An empty value is an empty element: an indenting writer would put a line break
        // between a start and an end tag with nothing in between.
        if text.is_empty() {
            return self.event(Event::Empty(start));
        }
        check_text(text, name, at)?;
        self.event(Event::Start(start))?;
        let escaped = quick_xml::escape::escape(text).replace('\r', "&#13;");
        self.event(Event::Text(BytesText::from_escaped(escaped)))?;
        self.event(Event::End(BytesEnd::new(name)))
    }

    fn optional(&mut self, name: &str, text: Option<&str>, at: &str) -> Result<()> {
        self.text_element(name, &[], text.unwrap_or(""), at)
    }

    fn start_with(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        at: &str,
    ) -> Result<BytesStart<'static>> {
        let mut start = BytesStart::new(name.to_string());
        for (k, v) in attrs {
            check_text(v, k, at)?;
            // Line ends and tabs in an attribute are escaped: a reader would turn them into
            // spaces otherwise (attribute value normalization).
            let escaped = quick_xml::escape::escape(*v)
                .replace('\n', "&#10;")
                .replace('\r', "&#13;")
                .replace('\t', "&#9;");
            start.push_attribute(quick_xml::events::attributes::Attribute {
                key: quick_xml::name::QName(k.as_bytes()),
                value: escaped.into_bytes().into(),
            });
        }
        Ok(start)
    }

    /// Writes `n` (its children not included) at registry path `at`: for a collection the
    /// `<children>` element is left open for them.
    pub fn open(&mut self, n: &Node, at: &str) -> Result<()> {
        let kind = if n.collection { "true" } else { "false" };
        let start = self.start_with(
            "resource",
            &[
                ("name", &n.name),
                ("status", "dump"),
                ("isCollection", kind),
            ],
            at,
        )?;
        self.event(Event::Start(start))?;
        self.optional("mediaType", n.media_type.as_deref(), at)?;
        self.optional("version", n.version.map(|v| v.to_string()).as_deref(), at)?;
        self.optional("creator", n.creator.as_deref(), at)?;
        self.optional(
            "createdTime",
            n.created_ms.map(|v| v.to_string()).as_deref(),
            at,
        )?;
        self.optional("lastUpdater", n.last_updater.as_deref(), at)?;
        self.optional(
            "lastModified",
            n.last_modified_ms.map(|v| v.to_string()).as_deref(),
            at,
        )?;
        self.optional("uuid", n.uuid.as_deref(), at)?;
        self.optional("description", n.description.as_deref(), at)?;
        if !n.properties.is_empty() {
            self.event(Event::Start(BytesStart::new("properties")))?;
            for (key, value) in &n.properties {
                // Refused by the property's name, not as "property".
                check_text(value, key, at)?;
                self.text_element("property", &[("key", key)], value, at)?;
            }
            self.event(Event::End(BytesEnd::new("properties")))?;
        }
        let comments = n
            .comments
            .iter()
            .map(|c| vec![("user", c.user.clone()), ("text", c.text.clone())]);
        self.list("comments", "comment", comments, at)?;
        let taggings = n.taggings.iter().map(|t| {
            vec![
                ("user", t.user.clone()),
                ("date", t.time_ms.unwrap_or(0).to_string()),
                ("tagName", t.text.clone()),
            ]
        });
        self.list("taggings", "tagging", taggings, at)?;
        let ratings = n.ratings.iter().map(|r| {
            vec![
                ("user", r.user.clone()),
                ("date", r.time_ms.unwrap_or(0).to_string()),
                ("rate", r.rate.to_string()),
            ]
        });
        self.list("ratings", "rating", ratings, at)?;
        let associations = n.associations.iter().map(|a| {
            vec![
                ("source", a.source.clone()),
                ("destination", a.destination.clone()),
                ("type", a.kind.clone()),
            ]
        });
        self.list("associations", "association", associations, at)?;
        if let Some(p) = &n.posix {
            let fields = [
                ("mode", format!("{:o}", p.mode)),
                ("uid", p.uid.to_string()),
                ("gid", p.gid.to_string()),
                ("rdev", p.rdev.to_string()),
                ("atimeNs", p.atime_ns.to_string()),
                ("mtimeNs", p.mtime_ns.to_string()),
            ];
            let attrs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let start = self.start_with("posix", &attrs, at)?;
            self.event(Event::Empty(start))?;
        }
        if let Some(content) = &n.content {
            let b64 = base64::engine::general_purpose::STANDARD.encode(content);
            self.text_element("content", &[], &b64, at)?;
        }
        if n.collection {
            self.event(Event::Start(BytesStart::new("children")))?;
        }
        Ok(())
    }

    /// `<outer>` holding one `<inner>` per item, each item its fields as text elements;
    /// nothing when there are no items (as Carbon writes it).
    fn list(
        &mut self,
        outer: &str,
        inner: &str,
        items: impl Iterator<Item = Vec<(&'static str, String)>>,
        at: &str,
    ) -> Result<()> {
        let mut items = items.peekable();
        if items.peek().is_none() {
            return Ok(());
        }
        self.event(Event::Start(BytesStart::new(outer)))?;
        for fields in items {
            self.event(Event::Start(BytesStart::new(inner)))?;
            for (name, text) in fields {
                self.text_element(name, &[], &text, at)?;
            }
            self.event(Event::End(BytesEnd::new(inner)))?;
        }
        self.event(Event::End(BytesEnd::new(outer)))
    }

    /// Ends the node last opened (`collection`: its `<children>` too).
    pub fn close(&mut self, collection: bool) -> Result<()> {
        if collection {
            self.event(Event::End(BytesEnd::new("children")))?;
        }
        self.event(Event::End(BytesEnd::new("resource")))
    }

    /// Writes `n` with its whole subtree at `at`.
    pub fn write_tree(&mut self, n: &Node, at: &str) -> Result<()> {
        self.open(n, at)?;
        for child in &n.children {
            self.write_tree(child, &crate::path::join(at, &child.name))?;
        }
        self.close(n.collection)
    }
}

/// EILSEQ for text XML cannot carry (control characters other than tab and line ends).
fn check_text(text: &str, what: &str, at: &str) -> Result<()> {
    match text.chars().find(|c| !xml_char(*c)) {
        Some(c) => Err(err!(
            EILSEQ,
            "{at}: its {what} holds the character U+{:04X}, which XML (Carbon's dump format) \
             cannot carry",
            c as u32
        )),
        None => Ok(()),
    }
}

/// Reads a dump: the document element must be a `<resource>`. Every problem is EINVAL with
/// the element it is in; nothing is half-read.
pub fn parse(text: &str, origin: &str) -> Result<Node> {
    let root = crate::xml::parse(text, origin)?;
    node_from(&root, origin, "/")
}

fn node_from(e: &Element, origin: &str, at: &str) -> Result<Node> {
    let bad = |what: String| err!(EINVAL, "{origin}: {what} (in the dump's {at})");
    if e.name != "resource" {
        return Err(bad(format!(
            "<{}> where a <resource> was due: not a registry dump",
            e.name
        )));
    }
    // Carbon's newer dumps name each resource; older ones give its full path.
    let name = match (e.attrs.get("name"), e.attrs.get("path")) {
        (Some(n), _) => n.clone(),
        (None, Some(p)) => crate::path::name(p).to_string(),
        (None, None) if at == "/" => String::new(),
        (None, None) => return Err(bad("a <resource> without a name".into())),
    };
    if name.contains('/') || name == "." || name == ".." {
        return Err(bad(format!("{name:?} is not a resource name")));
    }
    let collection = match e.attrs.get("isCollection").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        other => {
            return Err(bad(format!(
                "isCollection is {other:?}: it must be \"true\" or \"false\""
            )));
        }
    };
    if e.attrs.get("status").map(String::as_str) == Some("deleted") {
        return Err(bad(
            "status=\"deleted\": a check-in of deletions, not a dump".into(),
        ));
    }
    let here = if at == "/" && name.is_empty() {
        "/".to_string()
    } else {
        crate::path::join(at, &name)
    };
    // The number in the child `field` of `el`, if it has one.
    let number_in = |el: &Element, field: &str| -> Result<Option<i64>> {
        el.text_of(field)
            .map(|t| {
                t.parse::<i64>()
                    .map_err(|_| bad(format!("<{field}> is {t:?}, not a number")))
            })
            .transpose()
    };
    let number = |field: &str| number_in(e, field);
    // Text fields keep their text as it is, except that an empty element is no value.
    let text = |field: &str| -> Option<String> {
        e.child(field)
            .map(|c| c.text.clone())
            .filter(|t| !t.is_empty())
    };
    let mut n = Node {
        name,
        collection,
        media_type: e.text_of("mediaType"),
        version: number("version")?,
        creator: e.text_of("creator"),
        created_ms: number("createdTime")?,
        last_updater: e.text_of("lastUpdater"),
        last_modified_ms: number("lastModified")?,
        uuid: e.text_of("uuid"),
        description: text("description"),
        ..Node::default()
    };
    if let Some(props) = e.child("properties") {
        for p in props.all("property") {
            let key = p
                .attrs
                .get("key")
                .ok_or_else(|| bad("a <property> without a key".into()))?;
            // Carbon's restore drops a property whose value is empty; a load keeps it, as
            // regfs lets one be set (`setfattr -n user.k -v ""`).
            n.properties.push((key.clone(), p.text.clone()));
        }
    }
    let said = |e: &Element, text_field: &str| -> Result<Said> {
        Ok(Said {
            user: e.text_of("user").unwrap_or_default(),
            time_ms: number_in(e, "date")?,
            text: e
                .child(text_field)
                .map(|c| c.text.clone())
                .unwrap_or_default(),
        })
    };
    if let Some(list) = e.child("comments") {
        for c in list.all("comment") {
            n.comments.push(said(c, "text")?);
        }
    }
    if let Some(list) = e.child("taggings") {
        for t in list.all("tagging") {
            let mut s = said(t, "tagName")?;
            s.text = s.text.trim().to_string();
            n.taggings.push(s);
        }
    }
    if let Some(list) = e.child("ratings") {
        for r in list.all("rating") {
            let s = said(r, "rate")?;
            let rate = s
                .text
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|r| (1..=5).contains(r))
                .ok_or_else(|| bad(format!("<rate> is {:?}: ratings are 1 to 5", s.text)))?;
            n.ratings.push(Rated {
                user: s.user,
                time_ms: s.time_ms,
                rate,
            });
        }
    }
    if let Some(list) = e.child("associations") {
        for a in list.all("association") {
            n.associations.push(Association {
                source: a.text_of("source").unwrap_or_default(),
                destination: a
                    .text_of("destination")
                    .ok_or_else(|| bad("an <association> without a destination".into()))?,
                kind: a
                    .text_of("type")
                    .ok_or_else(|| bad("an <association> without a type".into()))?,
            });
        }
    }
    if let Some(p) = e.child("posix") {
        let int = |k: &str| -> Result<i64> {
            let v = p
                .attrs
                .get(k)
                .ok_or_else(|| bad(format!("<posix> without {k}")))?;
            v.parse()
                .map_err(|_| bad(format!("<posix> {k} is {v:?}, not a number")))
        };
        let mode_text = p
            .attrs
            .get("mode")
            .ok_or_else(|| bad("<posix> without mode".into()))?;
        let mode = u32::from_str_radix(mode_text, 8)
            .map_err(|_| bad(format!("<posix> mode is {mode_text:?}, not octal")))?;
        let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir != collection {
            return Err(bad(format!(
                "<posix> mode {mode_text} does not match isCollection=\"{collection}\""
            )));
        }
        let id = |k: &str| -> Result<u32> {
            u32::try_from(int(k)?).map_err(|_| bad(format!("<posix> {k} is out of range")))
        };
        n.posix = Some(Posix {
            mode,
            uid: id("uid")?,
            gid: id("gid")?,
            rdev: id("rdev")?,
            atime_ns: int("atimeNs")?,
            mtime_ns: int("mtimeNs")?,
        });
    }
    if let Some(c) = e.child("content") {
        if collection {
            return Err(bad("a collection with <content>".into()));
        }
        let b64: String = c
            .text
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| bad(format!("<content> is not base64: {e}")))?;
        n.content = Some(bytes);
    }
    let kids = e.child("children").or_else(|| e.child("childs"));
    if let Some(kids) = kids {
        if !collection {
            return Err(bad(
                "a resource (isCollection=\"false\") with <children>".into()
            ));
        }
        for k in kids.all("resource") {
            let child = node_from(k, origin, &here)?;
            if n.children.iter().any(|c| c.name == child.name) {
                return Err(bad(format!("two children named {:?}", child.name)));
            }
            n.children.push(child);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Node {
        Node {
            name: "app".into(),
            collection: true,
            creator: Some("admin".into()),
            created_ms: Some(1_700_000_000_123),
            last_modified_ms: Some(1_700_000_000_456),
            uuid: Some("u-1".into()),
            properties: vec![
                ("lifecycle".into(), "Development".into()),
                ("multi".into(), "a".into()),
                ("multi".into(), " b & <c>\r\n".into()),
            ],
            posix: Some(Posix {
                mode: libc::S_IFDIR | 0o750,
                uid: 1000,
                gid: 100,
                rdev: 0,
                atime_ns: 1,
                mtime_ns: 2,
            }),
            children: vec![Node {
                name: "a b\n\"x\".xml".into(),
                media_type: Some("application/xml".into()),
                description: Some("  spaced\ttext  ".into()),
                comments: vec![Said {
                    user: "bob".into(),
                    time_ms: None,
                    text: "fine".into(),
                }],
                taggings: vec![Said {
                    user: "bob".into(),
                    time_ms: Some(5),
                    text: "soa".into(),
                }],
                ratings: vec![Rated {
                    user: "bob".into(),
                    time_ms: Some(6),
                    rate: 4,
                }],
                associations: vec![Association {
                    source: "a.xml".into(),
                    destination: ":http://example.org/x".into(),
                    kind: "depends".into(),
                }],
                content: Some(vec![0, 1, 2, 255, b'\n']),
                ..Node::default()
            }],
            ..Node::default()
        }
    }

    #[test]
    fn a_tree_round_trips() {
        let n = sample();
        let mut w = DumpWriter::new(Vec::new());
        w.write_tree(&n, "/app").unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(
            text.starts_with("<resource name=\"app\" status=\"dump\" isCollection=\"true\">"),
            "{text}"
        );
        assert_eq!(parse(&text, "test").unwrap(), n, "{text}");
    }

    #[test]
    fn carbon_s_own_dump_reads() {
        // As Repository.dump writes it: empty elements, no <posix>, base64 content, old
        // `childs`, and an element regfs does not know.
        let text = "<resource name=\"x\" status=\"dump\" isCollection=\"true\"><mediaType></mediaType>\
            <version>3</version><creator>admin</creator><createdTime>1</createdTime>\
            <lastUpdater>admin</lastUpdater><lastModified>2</lastModified><uuid>u</uuid>\
            <description></description><unknown><deep/></unknown><childs>\
            <resource name=\"r.txt\" status=\"dump\" isCollection=\"false\"><mediaType>text/plain</mediaType>\
            <properties><property key=\"k\">v</property><property key=\"empty\"></property></properties>\
            <content>aGVsbG8=</content></resource></childs></resource>";
        let n = parse(text, "t").unwrap();
        assert_eq!(n.version, Some(3));
        assert_eq!(n.description, None);
        assert_eq!(n.children[0].content.as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            n.children[0].properties,
            vec![("k".into(), "v".into()), ("empty".into(), String::new())]
        );
    }

    #[test]
    fn bad_dumps_say_what_is_wrong() {
        for (text, says) in [
            ("<config/>", "not a registry dump"),
            (
                "<resource name=\"a\" isCollection=\"maybe\"/>",
                "isCollection",
            ),
            (
                "<resource name=\"a\" isCollection=\"false\"><content>!!</content></resource>",
                "base64",
            ),
            (
                "<resource name=\"a\" isCollection=\"true\"><children><resource name=\"b\" isCollection=\"false\"/><resource name=\"b\" isCollection=\"false\"/></children></resource>",
                "two children",
            ),
            (
                "<resource name=\"a\" isCollection=\"true\"><children><resource name=\"..\" isCollection=\"false\"/></children></resource>",
                "not a resource name",
            ),
            (
                "<resource name=\"a\" isCollection=\"false\"><ratings><rating><rate>9</rate></rating></ratings></resource>",
                "1 to 5",
            ),
        ] {
            let e = parse(text, "d.xml").unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL);
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn control_characters_are_refused_by_name() {
        let mut n = sample();
        n.children[0].description = Some("bell\u{7}".into());
        let mut w = DumpWriter::new(Vec::new());
        let e = w.write_tree(&n, "/app").unwrap_err();
        assert_eq!(e.errno(), libc::EILSEQ);
        assert!(e.to_string().contains("U+0007"), "{e}");
    }

    #[test]
    fn association_paths_as_carbon_computes_them() {
        assert_eq!(relative_association("/a/b/c", "/a/b/x"), "c");
        assert_eq!(relative_association("/a/z/c", "/a/b/x"), "../z/c");
        assert_eq!(absolute_association("../z/c", "/a/b/x"), "/a/z/c");
        assert_eq!(absolute_association("c", "/a/b/x"), "/a/b/c");
        assert_eq!(absolute_association("/abs/p", "/a/b/x"), "/abs/p");
    }
}
