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
    // An existing file is refused at its open, not at a close whose error goes unseen.
    let err = std::fs::write(m.p("_system/governance/svc.wsdl"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = std::fs::OpenOptions::new()
        .append(true)
        .open(m.p("_system/governance/svc.wsdl"))
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(
        std::fs::read_to_string(m.p("_system/governance/svc.wsdl")).unwrap(),
        "wsdl\n"
    );

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
    let config = regfs::config::FileConfig::load(Path::new(file)).unwrap();
    let spool = config.cache.spool_policy();
    assert_eq!(spool.memory_limit, 4 << 20);
}

/// examples/two-databases.toml as documented: /_system/config in PostgreSQL under
/// /_system/nodes/esb, /_system/governance and the UM tables in MariaDB, the node's own
/// registry in SQLite. Only the hosts, ports, database names and secrets are the test's.
#[test]
fn the_two_database_example_works_as_documented() {
    let pg = common::servers::postgres();
    let maria = common::servers::mariadb();
    let (config_db, gov_db) = (pg.fresh_db(), maria.fresh_db());
    let dir = common::open_tempdir();
    let password = dir.path().join("governance.password");
    std::fs::write(&password, format!("{}\n", maria.password().unwrap())).unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-databases.toml"),
    )
    .unwrap();
    let cfg = example
        .replace(
            "postgres://regfs@127.0.0.1:5432/regfs_config",
            &pg.url(&config_db),
        )
        .replace(
            "mysql://regfs@127.0.0.1:3306/regfs_governance",
            &maria.url(&gov_db),
        )
        .replace(
            "/etc/regfs/governance.password",
            &password.to_string_lossy(),
        )
        .replace(
            "/var/lib/regfs/local.db",
            &dir.path().join("local.db").to_string_lossy(),
        );
    assert_ne!(cfg, example);
    let file = dir.path().join("two-databases.toml");
    std::fs::write(&file, cfg).unwrap();
    let d = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    // The test PostgreSQL trusts loopback, so this password is sent but not checked; the
    // variable must be set all the same.
    let init = std::process::Command::new(common::regfs_bin())
        .arg("init")
        .arg("--config")
        .arg(&file)
        .env("REGFS_CONFIG_DB_PASSWORD", "unused-by-trust-auth")
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "regfs init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let m = Mounted::with_env(
        d,
        file.clone(),
        &[],
        &[("REGFS_CONFIG_DB_PASSWORD", "unused-by-trust-auth")],
    );
    m.sh(
        &m.mnt,
        "mkdir -p _system/config/app && echo '<a/>' > _system/config/app/app.xml \
         && echo wsdl > _system/governance/svc.wsdl && echo mine > _system/local/node.txt",
    );
    // config: PostgreSQL, under its target path.
    let row = pg.sql_in(
        &config_db,
        "SELECT convert_from(c.reg_content_data, 'UTF8') FROM reg_resource r \
         JOIN reg_path p ON p.reg_path_id = r.reg_path_id \
         JOIN reg_content c ON c.reg_content_id = r.reg_content_id \
         WHERE p.reg_path_value = '/_system/nodes/esb/app' AND r.reg_name = 'app.xml'",
    );
    assert_eq!(row.trim(), "<a/>");
    assert_eq!(
        pg.sql_in(
            &config_db,
            "SELECT COUNT(*) FROM reg_path WHERE reg_path_value LIKE '/_system/config/app%'"
        )
        .trim(),
        "0"
    );
    // governance and the UM tables: MariaDB.
    let row = maria.sql_in(
        &gov_db,
        "SELECT CAST(c.REG_CONTENT_DATA AS CHAR) FROM REG_RESOURCE r \
         JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID \
         JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
         WHERE p.REG_PATH_VALUE = '/_system/governance' AND r.REG_NAME = 'svc.wsdl'",
    );
    // mariadb -B prints a newline inside a value as \n.
    assert_eq!(row.trim(), "wsdl\\n");
    assert_eq!(
        maria
            .sql_in(
                &gov_db,
                "SELECT COUNT(*) FROM UM_USER WHERE UM_USER_NAME = 'admin'"
            )
            .trim(),
        "1"
    );
    // The local partition never reaches a shared database.
    for (count, what) in [
        (
            pg.sql_in(
                &config_db,
                "SELECT COUNT(*) FROM reg_resource WHERE reg_name = 'node.txt'",
            ),
            "PostgreSQL",
        ),
        (
            maria.sql_in(
                &gov_db,
                "SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'node.txt'",
            ),
            "MariaDB",
        ),
    ] {
        assert_eq!(count.trim(), "0", "node.txt leaked into {what}");
    }
    assert_eq!(
        common::sql_count(
            &dir.path().join("local.db"),
            "SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'node.txt'"
        ),
        1
    );
    // A rename between the two databases is EXDEV, so mv copies and deletes.
    let r = std::fs::rename(
        m.p("_system/config/app/app.xml"),
        m.p("_system/governance/app.xml"),
    );
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EXDEV));
    m.sh(
        &m.mnt,
        "mv _system/config/app/app.xml _system/governance/app.xml",
    );
    assert_eq!(
        std::fs::read_to_string(m.p("_system/governance/app.xml")).unwrap(),
        "<a/>\n"
    );
    // Grants are stored in the UM database on the target path.
    let out = std::process::Command::new(common::regfs_bin())
        .args(["perm", "grant", "--config"])
        .arg(&file)
        .args(["Internal/everyone", "/_system/config/app", "add"])
        .env("REGFS_CONFIG_DB_PASSWORD", "unused-by-trust-auth")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        maria
            .sql_in(
                &gov_db,
                "SELECT COUNT(*) FROM UM_PERMISSION WHERE UM_RESOURCE_ID = '/_system/nodes/esb/app'"
            )
            .trim(),
        "1"
    );
}

/// `regfs mount --wso2-conf`: a product's registry.xml, user-mgt.xml and master-datasources.xml
/// as Carbon ships them, pointed at PostgreSQL with JDBC URLs.
#[test]
fn wso2_conf_directory_is_mounted_as_that_node_sees_it() {
    let pg = common::servers::postgres();
    let (carbon_db, shared_db) = (pg.fresh_db(), pg.fresh_db());
    let dir = common::open_tempdir();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("datasources")).unwrap();
    let jdbc = |db: &str| {
        format!(
            "jdbc:postgresql://127.0.0.1:{}/{db}?ssl=false&amp;autoReconnect=true",
            pg.port
        )
    };
    std::fs::write(
        conf.join("datasources/master-datasources.xml"),
        format!(
            r#"<datasources-configuration xmlns:svns="http://org.wso2.securevault/configuration">
  <providers><provider>org.wso2.carbon.ndatasource.rdbms.RDBMSDataSourceReader</provider></providers>
  <datasources>
    <datasource>
      <name>WSO2_CARBON_DB</name>
      <description>The datasource used for registry and user manager</description>
      <jndiConfig><name>jdbc/WSO2CarbonDB</name></jndiConfig>
      <definition type="RDBMS"><configuration>
        <url>{carbon}</url>
        <username>postgres</username>
        <password>wso2carbon</password>
        <driverClassName>org.postgresql.Driver</driverClassName>
        <maxActive>50</maxActive><maxWait>60000</maxWait>
        <testOnBorrow>true</testOnBorrow><validationQuery>SELECT 1</validationQuery>
        <validationInterval>30000</validationInterval><defaultAutoCommit>false</defaultAutoCommit>
      </configuration></definition>
    </datasource>
    <datasource>
      <name>WSO2_SHARED_DB</name>
      <jndiConfig><name>jdbc/SHARED_DB</name></jndiConfig>
      <definition type="RDBMS"><configuration>
        <url>{shared}</url>
        <username>postgres</username>
        <password>wso2carbon</password>
        <driverClassName>org.postgresql.Driver</driverClassName>
      </configuration></definition>
    </datasource>
  </datasources>
</datasources-configuration>"#,
            carbon = jdbc(&carbon_db),
            shared = jdbc(&shared_db)
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("registry.xml"),
        r#"<wso2registry>
    <currentDBConfig>wso2registry</currentDBConfig>
    <readOnly>false</readOnly>
    <enableCache>true</enableCache>
    <registryRoot>/</registryRoot>
    <dbConfig name="wso2registry"><dataSource>jdbc/WSO2CarbonDB</dataSource></dbConfig>
    <dbConfig name="govregistry"><dataSource>jdbc/SHARED_DB</dataSource></dbConfig>
    <remoteInstance url="https://localhost">
        <id>gov</id>
        <cacheId>wso2carbon@jdbc:postgresql://localhost/shared</cacheId>
        <dbConfig>govregistry</dbConfig>
        <readOnly>false</readOnly>
        <enableCache>true</enableCache>
        <registryRoot>/</registryRoot>
    </remoteInstance>
    <mount path="/_system/governance" overwrite="true">
        <instanceId>gov</instanceId>
        <targetPath>/_system/governance</targetPath>
    </mount>
    <mount path="/_system/config" overwrite="true">
        <instanceId>gov</instanceId>
        <targetPath>/_system/nodes/esb</targetPath>
    </mount>
    <versionResourcesOnChange>false</versionResourcesOnChange>
</wso2registry>"#,
    )
    .unwrap();
    std::fs::write(
        conf.join("user-mgt.xml"),
        r#"<UserManager>
    <Realm>
        <Configuration>
            <AddAdmin>true</AddAdmin>
            <AdminRole>admin</AdminRole>
            <AdminUser><UserName>admin</UserName><Password>admin</Password></AdminUser>
            <EveryOneRoleName>everyone</EveryOneRoleName>
            <Property name="isCascadeDeleteEnabled">true</Property>
            <Property name="dataSource">jdbc/SHARED_DB</Property>
        </Configuration>
        <UserStoreManager class="org.wso2.carbon.user.core.jdbc.UniqueIDJDBCUserStoreManager">
            <Property name="PasswordDigest">SHA-256</Property>
        </UserStoreManager>
    </Realm>
</UserManager>"#,
    )
    .unwrap();
    let d = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let conf_arg = conf.to_string_lossy().to_string();
    // What the DBA runs once: regfs's own tables beside the ones Carbon's would be.
    common::run_regfs_ok(["init", "--wso2-conf", &conf_arg]);
    let m = Mounted::with_data(d, dir.path().join("unused"), &["--wso2-conf", &conf_arg]);
    m.sh(
        &m.mnt,
        "echo c > _system/config/c.txt && echo g > _system/governance/g.txt \
         && echo l > _system/local/l.txt",
    );
    let count = |db: &str, sql: &str| pg.sql_in(db, sql).trim().to_string();
    assert_eq!(
        count(
            &shared_db,
            "SELECT COUNT(*) FROM reg_resource r JOIN reg_path p ON p.reg_path_id = r.reg_path_id \
             WHERE p.reg_path_value = '/_system/nodes/esb' AND r.reg_name = 'c.txt'"
        ),
        "1"
    );
    assert_eq!(
        count(
            &shared_db,
            "SELECT COUNT(*) FROM reg_resource r JOIN reg_path p ON p.reg_path_id = r.reg_path_id \
             WHERE p.reg_path_value = '/_system/governance' AND r.reg_name = 'g.txt'"
        ),
        "1"
    );
    assert_eq!(
        count(
            &carbon_db,
            "SELECT COUNT(*) FROM reg_resource r JOIN reg_path p ON p.reg_path_id = r.reg_path_id \
             WHERE p.reg_path_value = '/_system/local' AND r.reg_name = 'l.txt'"
        ),
        "1"
    );
    // The mount records Carbon writes, in the node's own database.
    assert_eq!(
        count(
            &carbon_db,
            "SELECT COUNT(*) FROM reg_resource WHERE reg_media_type = 'application/vnd.wso2.mount'"
        ),
        "2"
    );
    // Users and grants live where user-mgt.xml says: the shared database.
    assert_eq!(
        count(
            &shared_db,
            "SELECT COUNT(*) FROM um_user WHERE um_user_name = 'admin'"
        ),
        "1"
    );
    assert!(m.log().contains("postgres://"), "{}", m.log());
}

#[test]
fn wso2_conf_with_h2_says_what_to_do_instead() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path();
    std::fs::create_dir_all(conf.join("datasources")).unwrap();
    std::fs::write(
        conf.join("registry.xml"),
        "<wso2registry><currentDBConfig>wso2registry</currentDBConfig>\
         <dbConfig name=\"wso2registry\"><dataSource>jdbc/WSO2CarbonDB</dataSource></dbConfig>\
         </wso2registry>",
    )
    .unwrap();
    std::fs::write(
        conf.join("datasources/master-datasources.xml"),
        "<datasources-configuration><datasources><datasource><name>WSO2_CARBON_DB</name>\
         <jndiConfig><name>jdbc/WSO2CarbonDB</name></jndiConfig><definition type=\"RDBMS\">\
         <configuration><url>jdbc:h2:./repository/database/WSO2CARBON_DB;DB_CLOSE_ON_EXIT=FALSE\
         </url></configuration></definition></datasource></datasources></datasources-configuration>",
    )
    .unwrap();
    std::fs::write(conf.join("user-mgt.xml"), "<UserManager/>").unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = common::run_regfs([
        "mount".as_ref(),
        "--foreground".as_ref(),
        "--wso2-conf".as_ref(),
        conf.as_os_str(),
        mnt.as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("registry.xml") && err.contains("H2") && err.contains("PostgreSQL or MySQL"),
        "{err}"
    );
    assert!(!common::is_mounted(&mnt));
}
