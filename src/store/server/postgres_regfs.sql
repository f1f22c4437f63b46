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

-- regfs's own: changes the registry's activity log (REG_LOG) does not record, chmod, chown and
-- utimens, so that other nodes hear of them. Rows older than a few minutes are deleted by the
-- nodes that read them (see the change feed in src/store/server/feed.rs).
CREATE TABLE IF NOT EXISTS REGFS_CHANGE (
    REGFS_CHANGE_ID BIGSERIAL PRIMARY KEY,
    REG_TENANT_ID INTEGER NOT NULL DEFAULT 0,
    REG_PATH VARCHAR(2000) NOT NULL,
    REGFS_TIME_MS BIGINT NOT NULL
);

-- The change feed's push half: every row added to REG_LOG (by regfs or by a Carbon node) and
-- to REGFS_CHANGE is announced on the channel `regfs_changes` when its transaction commits.
-- The payload names the tenant, the path (and REG_LOG's action data: a rename's other path)
-- and the sender's application_name, so that a node skips its own changes.
CREATE OR REPLACE FUNCTION regfs_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('regfs_changes', json_build_object('t', NEW.REG_TENANT_ID,
        'p', left(NEW.REG_PATH, 3000), 'd', left(NEW.REG_ACTION_DATA, 3000),
        'n', current_setting('application_name', true))::text);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION regfs_change_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('regfs_changes', json_build_object('t', NEW.REG_TENANT_ID,
        'p', left(NEW.REG_PATH, 3000), 'n', current_setting('application_name', true))::text);
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER regfs_log_notify AFTER INSERT ON REG_LOG
    FOR EACH ROW EXECUTE FUNCTION regfs_log_notify();

CREATE OR REPLACE TRIGGER regfs_change_notify AFTER INSERT ON REGFS_CHANGE
    FOR EACH ROW EXECUTE FUNCTION regfs_change_notify();
