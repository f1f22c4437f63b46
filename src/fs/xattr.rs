//! Extended attributes: a resource's (or collection's) registry properties as `user.NAME`,
//! and its registry metadata as `user.regfs.*` (read-only but for the media type and the
//! description). A multi-valued property reads as
//! its values joined by newlines, and a value written with newlines is stored as several
//! values. Other namespaces (`security.*`, `system.*`, `trusted.*`) hold nothing.
//!
//! The metadata is read by name and not listed: `mv` between databases, `cp -a` and
//! `rsync -X` copy what `listxattr` names, and would fail on attributes they cannot set.

use std::ffi::OsStr;

use tracing::debug;

use super::{Ino, RegFs};
use crate::err;
use crate::error::Result;
use crate::fs::Caller;
use crate::store::{Field, Metadata, SetMode};

/// The namespace properties live in.
const USER: &str = "user.";

/// Below `user.`, the read-only metadata (and a prefix no property may take).
const RESERVED: &str = "regfs.";

/// Carbon's schema: REG_PROPERTY.REG_NAME is VARCHAR(100), REG_VALUE VARCHAR(1000).
pub const PROPERTY_NAME_MAX: usize = 100;
pub const PROPERTY_VALUE_MAX: usize = 1000;

/// How one piece of metadata is read from [`Metadata`].
type Getter = fn(&Metadata) -> Option<String>;

/// The metadata shown under `user.regfs.`, each with how to read it.
const META: [(&str, Getter); 12] = [
    ("media-type", |m| m.media_type.clone()),
    ("description", |m| m.description.clone()),
    ("uuid", |m| Some(m.uuid.clone())),
    ("creator", |m| Some(m.creator.clone())),
    ("created", |m| {
        Some(
            m.created
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
    }),
    ("last-updater", |m| m.last_updater.clone()),
    ("version", |m| Some(m.version.to_string())),
    ("tags", |m| lines(m.social.tags.iter().cloned())),
    ("comments", |m| {
        lines(
            m.social
                .comments
                .iter()
                .map(|c| format!("{}: {}", c.user, c.text.replace('\n', " "))),
        )
    }),
    ("associations", |m| {
        lines(
            m.social
                .associations
                .iter()
                .map(|(kind, target)| format!("{kind} {target}")),
        )
    }),
    ("versions", |m| {
        lines(m.social.versions.iter().map(|v| v.to_string()))
    }),
    ("rating", |m| {
        let r = &m.social.ratings;
        (!r.is_empty()).then(|| {
            let sum: i64 = r.iter().map(|r| r.rate).sum();
            let avg = sum as f64 / r.len() as f64;
            format!("{avg:.2} ({} ratings)", r.len())
        })
    }),
];

/// `values` one per line, `None` if there are none.
fn lines(values: impl Iterator<Item = String>) -> Option<String> {
    let all: Vec<String> = values.collect();
    (!all.is_empty()).then(|| all.join("\n"))
}

/// What an attribute name stands for.
#[derive(Debug, PartialEq, Eq)]
enum Named<'a> {
    /// `user.NAME`: the registry property NAME.
    Property(&'a str),
    /// `user.regfs.KEY`: read-only metadata (an index into [`META`]), or an unknown key.
    Meta(Option<usize>, &'a str),
    /// Any other namespace.
    Other,
}

fn named(name: &OsStr) -> Result<Named<'_>> {
    let Some(name) = name.to_str() else {
        return Err(err!(EILSEQ, "attribute names must be UTF-8"));
    };
    let Some(rest) = name.strip_prefix(USER) else {
        return Ok(Named::Other);
    };
    if let Some(key) = rest.strip_prefix(RESERVED) {
        return Ok(Named::Meta(META.iter().position(|(k, _)| *k == key), key));
    }
    if rest.is_empty() {
        return Err(err!(EINVAL, "an attribute name needs a name after {USER}"));
    }
    if rest.chars().count() > PROPERTY_NAME_MAX {
        return Err(err!(
            ERANGE,
            "property name {rest:?} is longer than the registry's {PROPERTY_NAME_MAX} characters"
        ));
    }
    Ok(Named::Property(rest))
}

/// A value as the property's values: UTF-8, one value per line, each within Carbon's width.
fn values(name: &str, value: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(value)
        .map_err(|_| err!(EILSEQ, "the value of property {name} is not UTF-8"))?;
    let values: Vec<String> = text.split('\n').map(str::to_string).collect();
    if let Some(long) = values
        .iter()
        .find(|v| v.chars().count() > PROPERTY_VALUE_MAX)
    {
        return Err(err!(
            E2BIG,
            "a value of property {name} has {} characters; the registry holds {PROPERTY_VALUE_MAX}",
            long.chars().count()
        ));
    }
    Ok(values)
}

impl RegFs {
    /// `ino`'s registry path and the caller's registry user, with the namespace lock held
    /// (the guard) so that the path stays what it is. The metadata hangs off the row: a file
    /// still pending gets its row first (before the lock: the commit takes it).
    async fn xattr_target(
        &self,
        c: Caller,
        ino: Ino,
    ) -> Result<(tokio::sync::RwLockReadGuard<'_, ()>, String, String)> {
        self.insert_pending(ino).await?;
        let ns = self.namespace.read().await;
        let p = self.path(ino)?;
        Ok((ns, p, self.identity.registry_user(c.uid)))
    }

    async fn metadata_of(&self, c: Caller, ino: Ino) -> Result<Metadata> {
        let (_ns, p, user) = self.xattr_target(c, ino).await?;
        self.registry.metadata(&user, &p).await
    }

    /// `getxattr`: the value of `name`.
    pub async fn getxattr(&self, c: Caller, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        let named = named(name)?;
        if named == Named::Other {
            return Err(err!(
                ENODATA,
                "{name:?}: regfs holds only user.* attributes"
            ));
        }
        let m = self.metadata_of(c, ino).await?;
        let value = match named {
            Named::Property(p) => m
                .properties
                .iter()
                .find(|(n, _)| n == p)
                .map(|(_, values)| values.join("\n")),
            Named::Meta(Some(i), _) => (META[i].1)(&m),
            Named::Meta(None, _) | Named::Other => None,
        };
        value
            .map(String::into_bytes)
            .ok_or_else(|| err!(ENODATA, "inode {ino} has no attribute {name:?}"))
    }

    /// `listxattr`: every property's name, each followed by a NUL (not the metadata, see
    /// the module's header).
    pub async fn listxattr(&self, c: Caller, ino: Ino) -> Result<Vec<u8>> {
        let m = self.metadata_of(c, ino).await?;
        let mut out = Vec::new();
        for (name, _) in &m.properties {
            if name.starts_with(RESERVED) {
                continue;
            }
            out.extend_from_slice(USER.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// `setxattr` (`value`) and `removexattr` (`None`) of `name`; `flags` are setxattr's
    /// (`XATTR_CREATE`, `XATTR_REPLACE`).
    pub async fn set_xattr(
        &self,
        c: Caller,
        ino: Ino,
        name: &OsStr,
        value: Option<&[u8]>,
        flags: i32,
    ) -> Result<()> {
        let property = match named(name)? {
            Named::Property(p) => p,
            Named::Meta(_, key @ ("media-type" | "description")) => {
                let field = if key == "media-type" {
                    Field::MediaType
                } else {
                    Field::Description
                };
                let text = value
                    .map(|v| {
                        std::str::from_utf8(v)
                            .map_err(|_| err!(EILSEQ, "the value of {name:?} is not UTF-8"))
                    })
                    .transpose()?;
                if flags & libc::XATTR_CREATE != 0 {
                    return Err(err!(EEXIST, "{name:?} always exists"));
                }
                let (_ns, p, user) = self.xattr_target(c, ino).await?;
                self.registry.set_field(&user, &p, field, text).await?;
                self.stale(ino);
                return Ok(());
            }
            Named::Meta(..) => {
                return Err(err!(
                    EPERM,
                    "{name:?}: user.{RESERVED}* is the registry's own metadata, read-only \
                     (but for media-type and description)"
                ));
            }
            Named::Other => {
                return Err(err!(
                    EOPNOTSUPP,
                    "{name:?}: regfs holds only user.* attributes (registry properties)"
                ));
            }
        };
        let values = value.map(|v| values(property, v)).transpose()?;
        let mode = match (
            flags & libc::XATTR_CREATE != 0,
            flags & libc::XATTR_REPLACE != 0,
        ) {
            (true, true) => return Err(err!(EINVAL, "XATTR_CREATE and XATTR_REPLACE together")),
            (true, false) => SetMode::Create,
            (false, true) => SetMode::Replace,
            (false, false) => SetMode::Any,
        };
        let (_ns, p, user) = self.xattr_target(c, ino).await?;
        self.registry
            .set_property(&user, &p, property, values.as_deref(), mode)
            .await?;
        debug!(
            path = p,
            property,
            removed = value.is_none(),
            "registry property changed"
        );
        // The ctime moved.
        self.stale(ino);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_properties_metadata_or_nothing() {
        fn n(s: &str) -> std::result::Result<Named<'_>, i32> {
            named(OsStr::new(s)).map_err(|e| e.errno())
        }
        assert_eq!(n("user.lifecycle"), Ok(Named::Property("lifecycle")));
        assert_eq!(n("user.regfs.uuid"), Ok(Named::Meta(Some(2), "uuid")));
        assert_eq!(n("user.regfs.nope"), Ok(Named::Meta(None, "nope")));
        assert_eq!(n("security.capability"), Ok(Named::Other));
        assert_eq!(n("system.posix_acl_access"), Ok(Named::Other));
        assert_eq!(n("user."), Err(libc::EINVAL));
        assert_eq!(n(&format!("user.{}", "x".repeat(101))), Err(libc::ERANGE));
        assert!(
            n(&format!("user.{}", "é".repeat(100))).is_ok(),
            "characters, not bytes"
        );
    }

    #[test]
    fn values_are_lines_within_carbons_width() {
        assert_eq!(values("p", b"one").unwrap(), ["one"]);
        assert_eq!(values("p", b"a\nb").unwrap(), ["a", "b"]);
        assert_eq!(values("p", b"").unwrap(), [""]);
        assert_eq!(values("p", &[0xff]).unwrap_err().errno(), libc::EILSEQ);
        let long = "v".repeat(1001);
        assert_eq!(
            values("p", long.as_bytes()).unwrap_err().errno(),
            libc::E2BIG
        );
        assert!(values("p", "v".repeat(1000).as_bytes()).is_ok());
    }
}
