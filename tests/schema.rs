//! Builds a sample tree through a real mount, then reads the tables back with plain SQL and
//! checks the rows against WSO2's conventions (docs: ../shared/docs/wso2-registry-reference.md).

mod common;

use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use common::Mounted;

async fn open(path: &std::path::Path) -> SqlitePool {
    common::ro_pool(path).await
}

async fn path_id(db: &SqlitePool, p: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = ? AND REG_TENANT_ID = -1234",
    )
    .bind(p)
    .fetch_one(db)
    .await
    .unwrap_or_else(|e| panic!("REG_PATH row for {p}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_laid_out_as_carbon_lays_them_out() {
    let mut m = Mounted::new();
    let gov = m.p("_system/governance");
    m.sh(
        &gov,
        "mkdir -p trunk/services && printf '<wsdl/>' > trunk/services/echo.wsdl \
         && printf '<wsdl v=2/>' > trunk/services/echo.wsdl \
         && mv trunk/services/echo.wsdl trunk/services/echo2.wsdl \
         && mkdir gone && rmdir gone && echo tmp > trunk/tmp.txt && rm trunk/tmp.txt",
    );
    m.unmount();

    let shared = open(&m.data.join("shared.db")).await;
    let local = open(&m.data.join("local.db")).await;

    // REG_PATH: full paths, parent ids, root parent -1, tenant -1234, never deleted.
    let root: (i64, i64) = sqlx::query_as(
        "SELECT REG_PATH_PARENT_ID, REG_TENANT_ID FROM REG_PATH WHERE REG_PATH_VALUE = '/'",
    )
    .fetch_one(&shared)
    .await
    .unwrap();
    assert_eq!(root, (-1, -1234));
    let gov_id = path_id(&shared, "/_system/governance").await;
    let trunk_id = path_id(&shared, "/_system/governance/trunk").await;
    let services_id = path_id(&shared, "/_system/governance/trunk/services").await;
    let parent_of = |id: i64| {
        let shared = shared.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT REG_PATH_PARENT_ID FROM REG_PATH WHERE REG_PATH_ID = ?",
            )
            .bind(id)
            .fetch_one(&shared)
            .await
            .unwrap()
        }
    };
    assert_eq!(parent_of(trunk_id).await, gov_id);
    assert_eq!(parent_of(services_id).await, trunk_id);
    // The removed collection keeps its REG_PATH row but has no REG_RESOURCE row.
    let gone_id = path_id(&shared, "/_system/governance/gone").await;
    let gone_rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_PATH_ID = ?")
            .bind(gone_id)
            .fetch_one(&shared)
            .await
            .unwrap();
    assert_eq!(gone_rows, 0);

    // Collections: REG_NAME NULL, no content, no media type.
    let coll = sqlx::query(
        "SELECT REG_NAME, REG_CONTENT_ID, REG_MEDIA_TYPE, REG_CREATOR, REG_TENANT_ID FROM REG_RESOURCE \
         WHERE REG_PATH_ID = ? AND REG_NAME IS NULL",
    )
    .bind(services_id)
    .fetch_one(&shared)
    .await
    .unwrap();
    assert_eq!(coll.get::<Option<String>, _>(0), None);
    assert_eq!(coll.get::<Option<i64>, _>(1), None);
    assert_eq!(coll.get::<Option<String>, _>(2), None);
    assert_eq!(coll.get::<String, _>(3), "admin");
    assert_eq!(coll.get::<i64, _>(4), -1234);

    // The resource: parent's path id + leaf name, content row, one live row.
    let res = sqlx::query(
        "SELECT r.REG_VERSION, r.REG_CONTENT_ID, c.REG_CONTENT_DATA, r.REG_CREATOR, r.REG_LAST_UPDATOR, \
         r.REG_UUID, r.REG_MEDIA_TYPE FROM REG_RESOURCE r JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
         WHERE r.REG_PATH_ID = ? AND r.REG_NAME = 'echo2.wsdl' AND r.REG_TENANT_ID = -1234",
    )
    .bind(services_id)
    .fetch_all(&shared)
    .await
    .unwrap();
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].get::<Vec<u8>, _>(2), b"<wsdl v=2/>");
    assert_eq!(res[0].get::<String, _>(3), "admin");
    assert_eq!(res[0].get::<String, _>(4), "admin");
    assert!(!res[0].get::<String, _>(5).is_empty());
    // No row is left for the old name, and an update replaced the version row: the live
    // version is newer than the first one written for this path.
    let old: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'echo.wsdl'")
            .fetch_one(&shared)
            .await
            .unwrap();
    assert_eq!(old, 0);
    // Only the live content row remains (the replaced one was deleted with its version).
    let contents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM REG_CONTENT")
        .fetch_one(&shared)
        .await
        .unwrap();
    assert_eq!(contents, 1);

    // REG_LOG: action codes, user, paths.
    let log: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT REG_PATH, REG_USER_ID, REG_ACTION, REG_ACTION_DATA FROM REG_LOG \
         WHERE REG_PATH LIKE '/_system/governance/%' AND REG_USER_ID = 'admin' ORDER BY REG_LOG_ID",
    )
    .fetch_all(&shared)
    .await
    .unwrap();
    let has = |p: &str, action: i64, data: Option<&str>| {
        log.iter()
            .any(|(lp, _, a, d)| lp == p && *a == action && d.as_deref() == data)
    };
    let svc = "/_system/governance/trunk/services";
    assert!(has("/_system/governance/trunk", 0, None), "{log:?}");
    assert!(has(&format!("{svc}/echo.wsdl"), 0, None), "{log:?}");
    assert!(has(&format!("{svc}/echo.wsdl"), 1, None), "{log:?}");
    assert!(
        has(
            &format!("{svc}/echo2.wsdl"),
            9,
            Some(&format!("{svc}/echo.wsdl"))
        ),
        "{log:?}"
    );
    assert!(has("/_system/governance/gone", 7, None), "{log:?}");
    assert!(has("/_system/governance/trunk/tmp.txt", 7, None), "{log:?}");

    // Base collections, created by wso2.system.user in both databases.
    for db in [&shared, &local] {
        for p in [
            "/",
            "/_system",
            "/_system/local",
            "/_system/local/repository",
        ] {
            let creator: String = sqlx::query_scalar(
                "SELECT r.REG_CREATOR FROM REG_RESOURCE r JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID \
                 WHERE p.REG_PATH_VALUE = ? AND r.REG_NAME IS NULL",
            )
            .bind(p)
            .fetch_one(db)
            .await
            .unwrap_or_else(|e| panic!("base collection {p}: {e}"));
            assert_eq!(creator, "wso2.system.user");
        }
    }

    // Mount bookkeeping in the node's own database: link collections and mount records.
    for mount in ["/_system/config", "/_system/governance"] {
        let id = path_id(&local, mount).await;
        let media: Option<String> = sqlx::query_scalar(
            "SELECT REG_MEDIA_TYPE FROM REG_RESOURCE WHERE REG_PATH_ID = ? AND REG_NAME IS NULL",
        )
        .bind(id)
        .fetch_one(&local)
        .await
        .unwrap();
        assert_eq!(media.as_deref(), Some("application/vnd.wso2-link"));
        let restoration: String = sqlx::query_scalar(
            "SELECT pr.REG_VALUE FROM REG_RESOURCE_PROPERTY rp JOIN REG_PROPERTY pr ON pr.REG_ID = rp.REG_PROPERTY_ID \
             WHERE rp.REG_PATH_ID = ? AND rp.REG_RESOURCE_NAME IS NULL AND pr.REG_NAME = 'registry.linkrestoration'",
        )
        .bind(id)
        .fetch_one(&local)
        .await
        .unwrap();
        assert_eq!(restoration, format!("{mount};gov;{mount};wso2.system.user"));
        let record = mount.replace('/', "-");
        let records = path_id(
            &local,
            "/_system/local/repository/components/org.wso2.carbon.registry/mount",
        )
        .await;
        let props: Vec<(String, String)> = sqlx::query_as(
            "SELECT pr.REG_NAME, pr.REG_VALUE FROM REG_RESOURCE_PROPERTY rp JOIN REG_PROPERTY pr ON pr.REG_ID = rp.REG_PROPERTY_ID \
             WHERE rp.REG_PATH_ID = ? AND rp.REG_RESOURCE_NAME = ? ORDER BY pr.REG_NAME",
        )
        .bind(records)
        .bind(&record)
        .fetch_all(&local)
        .await
        .unwrap();
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("path"), Some(mount));
        assert_eq!(get("target"), Some("gov"));
        assert_eq!(get("subPath"), Some(mount));
        assert_eq!(get("registry.fixedmount"), Some("true"));
        let media: String = sqlx::query_scalar(
            "SELECT REG_MEDIA_TYPE FROM REG_RESOURCE WHERE REG_PATH_ID = ? AND REG_NAME = ?",
        )
        .bind(records)
        .bind(&record)
        .fetch_one(&local)
        .await
        .unwrap();
        assert_eq!(media, "application/vnd.wso2.mount");
        // Carbon's createLink puts the link with activity logging off: the link path's log
        // has the base collection's ADD, its DELETE_RESOURCE (overwrite="true" replaced it)
        // and CREATE_REMOTE_LINK with `instance;targetPath`, and no ADD of the link itself.
        let actions: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT REG_ACTION, REG_ACTION_DATA FROM REG_LOG WHERE REG_PATH = ? ORDER BY REG_LOG_ID",
        )
        .bind(mount)
        .fetch_all(&local)
        .await
        .unwrap();
        assert_eq!(
            actions,
            vec![(0, None), (7, None), (12, Some(format!("gov;{mount}")))],
            "{mount}"
        );
    }
    // The partitions' content lives only in the shared database.
    let in_local: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM REG_PATH WHERE REG_PATH_VALUE LIKE '/_system/governance/trunk%'",
    )
    .fetch_one(&local)
    .await
    .unwrap();
    assert_eq!(in_local, 0);
}
