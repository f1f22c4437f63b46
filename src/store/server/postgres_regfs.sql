-- regfs's own objects, which `regfs init` adds to a registry database (Carbon's or its own).
-- Nothing here changes a Carbon table's columns; Carbon ignores all of it.
SET client_min_messages = warning;

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
);

-- The foreign-key check of a REG_CONTENT delete needs it (see the SQLite DDL).
CREATE INDEX IF NOT EXISTS REGFS_RESOURCE_IND_BY_CONTENT_ID ON REG_RESOURCE(REG_CONTENT_ID, REG_TENANT_ID);
