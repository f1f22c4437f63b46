//! `--wso2-conf PRODUCT_HOME/repository/conf`: a WSO2 product's own configuration read as-is.
//! `registry.xml` gives the node's database (currentDBConfig), the remote instances and the
//! mounts; `datasources/*.xml` (master-datasources.xml and any other) resolve JNDI names to
//! JDBC URLs and credentials; `user-mgt.xml` names the user-management database and the admin.
//! The result is the same [`FileConfig`] a TOML file gives, so the node mounts exactly what
//! that Carbon node would see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{
    CacheConfig, DataSource, FileConfig, LogConfig, MountConfig, Overwrite, RemoteInstance,
    UserManagement,
};
use crate::err;
use crate::error::Result;
use crate::store::SUPER_TENANT_ID;
use crate::xml::parse_file as parse;

/// A datasource from `datasources/*.xml`.
#[derive(Debug, Clone)]
struct JndiSource {
    url: String,
    username: Option<String>,
    password: Option<String>,
    file: PathBuf,
}

fn datasources(conf: &Path) -> Result<BTreeMap<String, JndiSource>> {
    let dir = conf.join("datasources");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| err!(ENOENT, "cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    let mut out = BTreeMap::new();
    for file in files {
        let root = parse(&file)?;
        let mut found = Vec::new();
        root.find_all("datasource", &mut found);
        for ds in found {
            let name = ds.text_of("name").unwrap_or_default();
            let jndi = ds
                .child("jndiConfig")
                .and_then(|j| j.text_of("name"))
                .unwrap_or_else(|| name.clone());
            let Some(config) = ds
                .child("definition")
                .and_then(|d| d.child("configuration"))
            else {
                continue;
            };
            let Some(url) = config.text_of("url") else {
                continue;
            };
            let source = JndiSource {
                url,
                username: config.text_of("username"),
                password: config.text_of("password"),
                file: file.clone(),
            };
            // Both the JNDI name (what registry.xml and user-mgt.xml use) and the datasource
            // name resolve.
            out.insert(jndi, source.clone());
            out.entry(name).or_insert(source);
        }
    }
    Ok(out)
}

fn truthy(s: Option<String>) -> bool {
    s.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Reads a WSO2 product's `repository/conf` directory into a [`FileConfig`].
pub fn load(conf: &Path) -> Result<FileConfig> {
    let registry_xml = conf.join("registry.xml");
    let reg = parse(&registry_xml)?;
    let jndi = datasources(conf)?;
    let at = |what: &str| format!("{}: {what}", registry_xml.display());

    if let Some(root) = reg.text_of("registryRoot").filter(|r| r != "/") {
        return Err(err!(
            EINVAL,
            "{}",
            at(&format!(
                "<registryRoot>{root}</registryRoot>: only \"/\" is supported for the node's own registry"
            ))
        ));
    }
    let node_read_only = truthy(reg.text_of("readOnly"));
    let version_resources_on_change = truthy(reg.text_of("versionResourcesOnChange"));
    let current = reg
        .text_of("currentDBConfig")
        .ok_or_else(|| err!(EINVAL, "{}", at("<currentDBConfig> is missing")))?;

    // dbConfig name -> data source.
    let mut data_sources = BTreeMap::new();
    for db in reg.all("dbConfig") {
        let Some(name) = db.attrs.get("name").cloned() else {
            continue;
        };
        let key = format!("<dbConfig name=\"{name}\">");
        let (url, username, password, origin) = match db.text_of("dataSource") {
            Some(jndi_name) => {
                let s = jndi.get(&jndi_name).ok_or_else(|| {
                    err!(
                        EINVAL,
                        "{}",
                        at(&format!(
                            "{key}: no datasource with JNDI name {jndi_name:?} in {}",
                            conf.join("datasources").display()
                        ))
                    )
                })?;
                (
                    s.url.clone(),
                    s.username.clone(),
                    s.password.clone(),
                    format!("{} (JNDI {jndi_name})", s.file.display()),
                )
            }
            None => (
                db.text_of("url").ok_or_else(|| {
                    err!(
                        EINVAL,
                        "{}",
                        at(&format!("{key}: neither <dataSource> nor <url>"))
                    )
                })?,
                db.text_of("userName"),
                db.text_of("password"),
                registry_xml.display().to_string(),
            ),
        };
        crate::config::translate_jdbc(&url).map_err(|hint| {
            err!(
                EINVAL,
                "{}",
                at(&format!("{key}: {url} (from {origin}): {hint}"))
            )
        })?;
        data_sources.insert(
            name,
            DataSource {
                url,
                username,
                busy_timeout_secs: 10,
                max_connections: None,
                password_env: None,
                password_file: None,
                password,
            },
        );
    }
    if !data_sources.contains_key(&current) {
        return Err(err!(
            EINVAL,
            "{}",
            at(&format!(
                "<currentDBConfig>{current}</currentDBConfig> names no <dbConfig>"
            ))
        ));
    }

    let mut remote_instances = BTreeMap::new();
    let mut roots = BTreeMap::new();
    for ri in reg.all("remoteInstance") {
        let id = ri
            .text_of("id")
            .ok_or_else(|| err!(EINVAL, "{}", at("a <remoteInstance> has no <id>")))?;
        if ri.text_of("username").is_some() {
            return Err(err!(
                EINVAL,
                "{}",
                at(&format!(
                    "<remoteInstance> {id}: Atom/WS remote registries (username/password) are \
                     not supported; mount its database with <dbConfig> instead"
                ))
            ));
        }
        let db = ri.text_of("dbConfig").ok_or_else(|| {
            err!(
                EINVAL,
                "{}",
                at(&format!("<remoteInstance> {id} has no <dbConfig>"))
            )
        })?;
        if !data_sources.contains_key(&db) {
            return Err(err!(
                EINVAL,
                "{}",
                at(&format!(
                    "<remoteInstance> {id}: <dbConfig>{db}</dbConfig> is not defined"
                ))
            ));
        }
        roots.insert(id.clone(), ri.text_of("registryRoot").unwrap_or("/".into()));
        remote_instances.insert(
            id,
            RemoteInstance {
                data_source: db,
                read_only: node_read_only || truthy(ri.text_of("readOnly")),
            },
        );
    }

    let mut mounts = Vec::new();
    for m in reg.all("mount") {
        let (Some(path), Some(instance), Some(target)) = (
            m.attrs.get("path").cloned(),
            m.text_of("instanceId"),
            m.text_of("targetPath"),
        ) else {
            // Carbon skips such a mount with a warning; so do we.
            tracing::warn!(file = %registry_xml.display(), "a <mount> lacks path, instanceId or targetPath: skipped");
            continue;
        };
        let overwrite = match m.attrs.get("overwrite").map(|s| s.to_ascii_lowercase()) {
            Some(o) if o == "true" => Overwrite::True,
            Some(o) if o == "virtual" => Overwrite::Virtual,
            _ => Overwrite::False,
        };
        let root = roots.get(&instance).cloned().unwrap_or_else(|| "/".into());
        let target_path = if root == "/" {
            target
        } else {
            crate::path::normalize(&format!("{root}/{target}"))
        };
        mounts.push(MountConfig {
            path,
            instance,
            target_path,
            overwrite,
        });
    }

    // user-mgt.xml: the UM database and the admin user.
    let um_xml = conf.join("user-mgt.xml");
    let um = parse(&um_xml)?;
    let realm_conf = um.child("Realm").and_then(|r| r.child("Configuration"));
    let admin_user = realm_conf
        .and_then(|c| c.child("AdminUser"))
        .and_then(|a| a.text_of("UserName"))
        .unwrap_or_else(|| crate::um::ADMIN_USER.to_string());
    let um_jndi = realm_conf.and_then(|c| {
        c.all("Property")
            .find(|p| p.attrs.get("name").map(String::as_str) == Some("dataSource"))
            .map(|p| p.text.trim().to_string())
    });
    let um_source = match um_jndi {
        Some(name) => {
            // The UM database is usually one of the registry's; otherwise it gets its own entry.
            let found = data_sources
                .iter()
                .find(|(_, d)| jndi.get(&name).is_some_and(|s| s.url == d.url));
            match found {
                Some((k, _)) => k.clone(),
                None => {
                    let s = jndi.get(&name).ok_or_else(|| {
                        err!(
                            EINVAL,
                            "{}: dataSource {name:?}: no such JNDI name in {}",
                            um_xml.display(),
                            conf.join("datasources").display()
                        )
                    })?;
                    let key = format!("um:{name}");
                    data_sources.insert(
                        key.clone(),
                        DataSource {
                            url: s.url.clone(),
                            username: s.username.clone(),
                            busy_timeout_secs: 10,
                            max_connections: None,
                            password_env: None,
                            password_file: None,
                            password: s.password.clone(),
                        },
                    );
                    key
                }
            }
        }
        None => current.clone(),
    };

    let cfg = FileConfig {
        tenant: SUPER_TENANT_ID,
        node_data_source: current,
        data_sources,
        remote_instances,
        mounts,
        user_management: Some(UserManagement {
            data_source: um_source,
            admin_user,
        }),
        user_map: BTreeMap::new(),
        cache: CacheConfig::default(),
        log: LogConfig::default(),
        version_resources_on_change,
        xattr: false,
    };
    cfg.check()
        .map_err(|e| err!(EINVAL, "{}: {}", conf.display(), e.message()))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn version_resources_on_change_is_read_from_registry_xml() {
        for (setting, expected) in [("", false), ("false", false), ("true", true)] {
            let d = tempfile::tempdir().unwrap();
            let element = match setting {
                "" => String::new(),
                v => format!("<versionResourcesOnChange> {v} </versionResourcesOnChange>"),
            };
            write(
                d.path(),
                "registry.xml",
                &format!(
                    r#"<wso2registry><currentDBConfig>wso2registry</currentDBConfig>
                   <dbConfig name="wso2registry"><dataSource>jdbc/WSO2CarbonDB</dataSource></dbConfig>
                   {element}</wso2registry>"#
                ),
            );
            write(
                d.path(),
                "datasources/master-datasources.xml",
                r#"<datasources-configuration><datasources><datasource>
                   <name>WSO2_CARBON_DB</name><jndiConfig><name>jdbc/WSO2CarbonDB</name></jndiConfig>
                   <definition type="RDBMS"><configuration>
                   <url>jdbc:postgresql://127.0.0.1:5432/carbon</url><username>u</username>
                   </configuration></definition></datasource></datasources>
                   </datasources-configuration>"#,
            );
            write(d.path(), "user-mgt.xml", "<UserManager/>");
            let cfg = load(d.path()).unwrap();
            assert_eq!(cfg.version_resources_on_change, expected, "{setting:?}");
        }
    }

    #[test]
    fn h2_gets_a_clear_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "registry.xml",
            r#"<wso2registry><currentDBConfig>wso2registry</currentDBConfig>
               <dbConfig name="wso2registry"><dataSource>jdbc/WSO2CarbonDB</dataSource></dbConfig>
               </wso2registry>"#,
        );
        write(
            d.path(),
            "datasources/master-datasources.xml",
            r#"<datasources-configuration xmlns:svns="http://org.wso2.securevault/configuration">
               <datasources><datasource><name>WSO2_CARBON_DB</name>
               <jndiConfig><name>jdbc/WSO2CarbonDB</name></jndiConfig>
               <definition type="RDBMS"><configuration>
               <url>jdbc:h2:./repository/database/WSO2CARBON_DB;DB_CLOSE_ON_EXIT=FALSE</url>
               <username>wso2carbon</username><password>wso2carbon</password>
               </configuration></definition></datasource></datasources>
               </datasources-configuration>"#,
        );
        write(d.path(), "user-mgt.xml", "<UserManager/>");
        let e = load(d.path()).unwrap_err();
        let m = e.message();
        assert!(m.contains("registry.xml") && m.contains("H2"), "{m}");
        assert!(m.contains("PostgreSQL or MySQL"), "{m}");
    }
}
