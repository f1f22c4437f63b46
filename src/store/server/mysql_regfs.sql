-- regfs's own objects, which `regfs init` adds to a registry database (Carbon's or its own).
-- Nothing here changes a Carbon table, and Carbon ignores all of it. (The index on
-- REG_RESOURCE(REG_CONTENT_ID) that PostgreSQL needs is there already: InnoDB makes one for
-- Carbon's foreign key.)

-- regfs's own: POSIX attributes (see the SQLite DDL for the meaning of each column).
CREATE TABLE IF NOT EXISTS REGFS_ATTR (
    REG_UUID VARCHAR(100) NOT NULL,
    REG_TENANT_ID INTEGER NOT NULL DEFAULT 0,
    MODE BIGINT NOT NULL,
    UID BIGINT NOT NULL,
    GID BIGINT NOT NULL,
    RDEV BIGINT NOT NULL DEFAULT 0,
    ATIME_NS BIGINT NOT NULL,
    MTIME_NS BIGINT NOT NULL,
    CTIME_NS BIGINT NOT NULL,
    REG_VERSION INTEGER NOT NULL,
    PRIMARY KEY (REG_UUID, REG_TENANT_ID)
) ENGINE INNODB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
;

-- regfs's own: changes the registry's activity log (REG_LOG) does not record, chmod, chown and
-- utimens, so that other nodes hear of them. Rows older than a few minutes are deleted by the
-- nodes that read them (see the change feed in src/store/server/feed.rs).
CREATE TABLE IF NOT EXISTS REGFS_CHANGE (
    REGFS_CHANGE_ID BIGINT NOT NULL AUTO_INCREMENT,
    REG_TENANT_ID INTEGER NOT NULL DEFAULT 0,
    REG_PATH VARCHAR(2000) NOT NULL,
    REGFS_TIME_MS BIGINT NOT NULL,
    PRIMARY KEY (REGFS_CHANGE_ID)
) ENGINE INNODB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin
