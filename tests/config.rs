//! A configuration file with three databases: mounts resolved to the right one with their
//! target paths, read-only mounts, EXDEV between databases, grants on target paths, and clear
//! errors for bad configurations.

mod common;

use std::path::Path;

use common::Mounted;

fn write_config(dir: &Path, gov_read_only: bool) -> std::path::PathBuf {
    let cfg = format!(
        r#"
node_data_source = "local"
[data_sources.local]
url = "sqlite:{d}/local.db"
[data_sources.config_db]
url = "sqlite:{d}/config.db"
[data_sources.gov_db]
url = "sqlite:{d}/gov.db"
[remote_instances.config]
data_source = "config_db"
[remote_instances.gov]
data_source = "gov_db"
read_only = {gov_read_only}
[[mounts]]
path = "/_system/config"
instance = "config"
target_path = "/_system/nodes/esb"
[[mounts]]
path = "/_system/governance"
instance = "gov"
target_path = "/_system/governance"
[user_management]
data_source = "config_db"
"#,
        d = dir.display()
    );
    let file = dir.join("regfs.toml");
    std::fs::write(&file, cfg).unwrap();
    file
}

#[test]
fn mounts_resolve_to_their_databases_and_target_paths() {
    let dir = common::open_tempdir();
    let dbs = dir.path().join("dbs");
    std::fs::create_dir_all(&dbs).unwrap();
    // Seed governance with content, then remount it read-only.
    let cfg = write_config(&dbs, false);
    let cfg_arg = cfg.to_string_lossy().to_string();
    {
        let d = tempfile::Builder::new()
            .prefix("regfs-test-")
            .tempdir()
            .unwrap();
        let m = Mounted::with_data(d, dbs.join("unused"), &["--config", &cfg_arg]);
        m.sh(&m.mnt, "echo wsdl > _system/governance/svc.wsdl");
    }
    let cfg = write_config(&dbs, true);
    let m = Mounted::with_data(
        dir,
        dbs.join("unused"),
        &["--config", &cfg.to_string_lossy()],
    );

    // /_system/config lives in config.db under its target path.
    m.sh(
        &m.mnt,
        "mkdir -p _system/config/app && echo '<a/>' > _system/config/app/app.xml",
    );
    assert_eq!(
        common::sql_count(
            &dbs.join("config.db"),
            "SELECT COUNT(*) FROM REG_PATH WHERE REG_PATH_VALUE = '/_system/nodes/esb/app'"
        ),
        1
    );
    assert_eq!(
        common::sql_count(
            &dbs.join("config.db"),
            "SELECT COUNT(*) FROM REG_RESOURCE r JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID \
             WHERE p.REG_PATH_VALUE = '/_system/nodes/esb/app' AND r.REG_NAME = 'app.xml'"
        ),
        1
    );
    // The node-local partition is never written into a shared database.
    m.sh(&m.mnt, "echo node > _system/local/node.txt");
    for shared in ["config.db", "gov.db"] {
        assert_eq!(
            common::sql_count(
                &dbs.join(shared),
                "SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'node.txt'"
            ),
            0
        );
    }
    assert_eq!(
        common::sql_count(
            &dbs.join("local.db"),
            "SELECT COUNT(*) FROM REG_PATH WHERE REG_PATH_VALUE LIKE '/_system/nodes%'"
        ),
        0
    );
    // The local database records the mount as Carbon does, with the target path.
    assert_eq!(
        common::sql_count(
            &dbs.join("local.db"),
            "SELECT COUNT(*) FROM REG_PROPERTY WHERE REG_NAME = 'registry.linkrestoration' \
             AND REG_VALUE = '/_system/config;config;/_system/nodes/esb;wso2.system.user'"
        ),
        1
    );

    // Read-only mount: reads work, writes are EROFS.
    assert_eq!(
        std::fs::read_to_string(m.p("_system/governance/svc.wsdl")).unwrap(),
        "wsdl\n"
    );
    let err = std::fs::write(m.p("_system/governance/new.txt"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = std::fs::remove_file(m.p("_system/governance/svc.wsdl")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    // Renames across databases: EXDEV.
    let err = std::fs::rename(
        m.p("_system/config/app/app.xml"),
        m.p("_system/local/app.xml"),
    )
    .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
    // Inside one database they work.
    std::fs::rename(
        m.p("_system/config/app/app.xml"),
        m.p("_system/config/app.xml"),
    )
    .unwrap();

    // Grants are stored on the target path, in the configured UM database.
    let cfg = cfg.to_string_lossy();
    common::run_regfs_ok([
        "perm",
        "grant",
        "Internal/everyone",
        "/_system/config/app.xml",
        "add",
        "--config",
        &cfg,
    ]);
    assert_eq!(
        common::sql_count(
            &dbs.join("config.db"),
            "SELECT COUNT(*) FROM UM_PERMISSION WHERE UM_RESOURCE_ID = '/_system/nodes/esb/app.xml'"
        ),
        1
    );
}

#[test]
fn bad_configurations_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cases: [(&str, &str); 5] = [
        (
            "node_data_source = \"local\"\n[data_sources.local]\nurl = \"sqlite:/tmp/x.db\"\nbogus = 1\n",
            "bogus",
        ),
        (
            "node_data_source = \"nope\"\n[data_sources.local]\nurl = \"sqlite:/tmp/x.db\"\n",
            "node_data_source: no data source \"nope\"",
        ),
        (
            "node_data_source = \"local\"\n[data_sources.local]\nurl = \"sqlite:/tmp/x.db\"\n[[mounts]]\npath = \"/a\"\ninstance = \"missing\"\ntarget_path = \"/a\"\n",
            "mounts[0].instance: no remote instance \"missing\"",
        ),
        (
            "node_data_source = \"local\"\n[data_sources.local]\nurl = \"jdbc:h2:./repository/database/WSO2CARBON_DB\"\n",
            "H2 (Carbon's embedded default) has no Rust driver",
        ),
        (
            "node_data_source = \"local\"\n[data_sources.local]\nurl = \"sqlite:/tmp/x.db\"\n[remote_instances.r]\ndata_source = \"local\"\n[[mounts]]\npath = \"/_system/local/x\"\ninstance = \"r\"\ntarget_path = \"/x\"\n",
            "node-local",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = common::run_regfs([
            std::ffi::OsStr::new("mount"),
            "--foreground".as_ref(),
            "--config".as_ref(),
            file.as_os_str(),
            mnt.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} mounted");
        assert!(err.contains(&file.display().to_string()), "case {i}: {err}");
        assert!(
            err.contains(expected),
            "case {i}: expected {expected:?} in {err}"
        );
        assert!(!common::is_mounted(&mnt));
    }
}

#[test]
fn the_example_config_parses() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/regfs.toml");
    regfs::config::FileConfig::load(Path::new(file)).unwrap();
}
