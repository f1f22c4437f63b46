//! Registry paths: absolute, `/`-separated, no trailing slash, root is `/`.
//! Also the naming rules regfs enforces on top of POSIX (see SEMANTICS.md, "Names").

use crate::err;
use crate::error::Result;

/// Longest name a registry column holds (`REG_NAME VARCHAR(256)`), kept to the POSIX NAME_MAX.
pub const NAME_MAX: usize = 255;

/// A path inside one database, under a mount's target: what a registry path is in the store
/// that holds it. The two differ wherever a mount's target is not its path, and both are
/// strings, so this type keeps them apart: the mount table makes them
/// ([`crate::mount_table::MountTable::resolve`]), and what speaks target paths (the permission
/// tree, a store's change feed) takes this type, not a `&str`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetPath(String);

impl TargetPath {
    /// A path already known to be a target path: one a database itself gave (its change feed,
    /// its permission rows), or the mount table made.
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TargetPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Joins a collection path and a child name.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// The parent collection of a path; `None` for the root.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last segment of a path (empty for the root).
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Whether `path` is `ancestor` or lies below it.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// Normalizes a user-supplied registry path: leading `/`, no trailing `/`, `//` collapsed.
pub fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", parts.join("/"))
    }
}

/// WSO2's path of an archived version, `PATH;version:N` (N a REG_SNAPSHOT id): the path and N.
/// `None` for any other path.
pub fn split_version(p: &str) -> Option<(&str, i64)> {
    let (base, n) = p.rsplit_once(";version:")?;
    let name_ok = !base.is_empty() && !base.ends_with('/') && !base.contains(';');
    let n_ok = !n.is_empty() && n.len() <= 18 && n.bytes().all(|b| b.is_ascii_digit());
    match name_ok && n_ok {
        true => Some((base, n.parse().ok()?)),
        false => None,
    }
}

/// The name a lookup may ask for: a valid entry name ([`check_name`]), or one followed by
/// `;version:N`, an archived version of it (see [`split_version`]).
pub fn check_lookup_name(name: &std::ffi::OsStr) -> Result<&str> {
    if let Some(s) = name.to_str()
        && let Some((base, _)) = split_version(s)
    {
        check_name(std::ffi::OsStr::new(base))?;
        return Ok(s);
    }
    check_name(name)
}

/// Checks a new entry name against the rules in SEMANTICS.md ("Names"):
/// valid UTF-8 (the columns are text), at most 255 bytes, no `;` (WSO2's parameter separator,
/// as in `file;version:3`), and not `.meta` (reserved by Carbon).
pub fn check_name(name: &std::ffi::OsStr) -> Result<&str> {
    use std::os::unix::ffi::OsStrExt;
    if name.as_bytes().len() > NAME_MAX {
        return Err(err!(
            ENAMETOOLONG,
            "name is {} bytes, the registry holds at most {NAME_MAX}",
            name.as_bytes().len()
        ));
    }
    let s = name.to_str().ok_or_else(|| {
        err!(
            EILSEQ,
            "name {:?} is not valid UTF-8; registry columns hold text only",
            name
        )
    })?;
    if s.contains(';') {
        return Err(err!(
            EINVAL,
            "name {s:?} contains ';', which the registry reserves for parameters like ';version:N'"
        ));
    }
    if s == ".meta" {
        return Err(err!(
            EINVAL,
            "name '.meta' is reserved by the WSO2 registry"
        ));
    }
    Ok(s)
}

/// The registry path a symlink at `link` whose text is `text` points to, when `text` is a
/// relative path in normal form (`../` only at its start, no `.`, empty or trailing
/// components) that stays inside the registry: such a link can be Carbon's own, and its text
/// reads back unchanged ([`relative_to`]). `None` for an absolute target, one that climbs out
/// of the registry root, or one written in another form: those stay regfs's own symlinks.
pub fn link_target(link: &str, text: &str) -> Option<String> {
    if text.is_empty() || text.starts_with('/') || text.ends_with('/') {
        return None;
    }
    let mut dir: Vec<&str> = parent(link)?.split('/').filter(|c| !c.is_empty()).collect();
    let mut climbing = true;
    for part in text.split('/') {
        match part {
            ".." if climbing => {
                dir.pop()?;
            }
            "" | "." | ".." => return None,
            name => {
                climbing = false;
                dir.push(name);
            }
        }
    }
    Some(format!("/{}", dir.join("/")))
}

/// The relative path from the collection `dir` to `target` (both registry paths): what a
/// symlink in `dir` holds to point at `target`.
pub fn relative_to(dir: &str, target: &str) -> String {
    let from: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    let to: Vec<&str> = target.split('/').filter(|c| !c.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn version_paths() {
        assert_eq!(split_version("/a/b.xml;version:12"), Some(("/a/b.xml", 12)));
        assert_eq!(split_version("/a/b.xml"), None);
        assert_eq!(split_version("/a/b.xml;version:"), None);
        assert_eq!(split_version("/a/b.xml;version:1x"), None);
        assert_eq!(split_version("/a/;version:1"), None);
        assert_eq!(split_version("/a/b;c;version:1"), None);
        assert_eq!(
            check_lookup_name(OsStr::new("b.xml;version:3")).unwrap(),
            "b.xml;version:3"
        );
        assert_eq!(
            check_lookup_name(OsStr::new("b;x")).unwrap_err().errno(),
            libc::EINVAL
        );
    }

    #[test]
    fn joins_and_splits() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(name("/a/b"), "b");
        assert_eq!(name("/"), "");
    }

    #[test]
    fn within() {
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(!is_within("/ab", "/a"));
        assert!(is_within("/x", "/"));
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize("//a//b/"), "/a/b");
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("a"), "/a");
    }

    #[test]
    fn name_rules() {
        assert!(check_name(OsStr::new("file~")).is_ok());
        assert!(check_name(OsStr::new(".#file")).is_ok());
        assert!(check_name(OsStr::new("a b@c#d")).is_ok());
        assert_eq!(
            check_name(OsStr::new("a;b")).unwrap_err().errno(),
            libc::EINVAL
        );
        assert_eq!(
            check_name(OsStr::new(".meta")).unwrap_err().errno(),
            libc::EINVAL
        );
        let long = "x".repeat(256);
        assert_eq!(
            check_name(OsStr::new(&long)).unwrap_err().errno(),
            libc::ENAMETOOLONG
        );
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            check_name(OsStr::from_bytes(b"\xff")).unwrap_err().errno(),
            libc::EILSEQ
        );
    }

    #[test]
    fn link_targets_in_normal_form_round_trip() {
        let link = "/_system/config/app/lnk";
        for (text, target) in [
            ("x.xml", "/_system/config/app/x.xml"),
            ("../../governance/svc", "/_system/governance/svc"),
            ("sub/dir", "/_system/config/app/sub/dir"),
            ("..", "/_system/config"),
        ] {
            assert_eq!(
                super::link_target(link, text).as_deref(),
                Some(target),
                "{text}"
            );
            assert_eq!(super::relative_to("/_system/config/app", target), text);
        }
        for text in [
            "/etc/passwd",
            "../../../../x",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            "",
        ] {
            assert_eq!(super::link_target(link, text), None, "{text}");
        }
        assert_eq!(super::relative_to("/a", "/a"), ".");
    }
}
