-- The nexus schema on SQLite at revision 0009 (head): every object the
-- Alembic revisions in migrations/versions create, grouped by kind, sorted by name.
-- Generated from sqlite_master (the CREATE texts as SQLite keeps them).
-- Do not edit: regenerate with `python -m nexus.storage.schema_dump --write`
-- (PostgreSQL from the server in NEXUS_TEST_POSTGRES_URL); a test compares this file.


-- Tables

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE file_metadata (
	path_id VARCHAR(36) NOT NULL,
	"key" VARCHAR(255) NOT NULL,
	value TEXT NOT NULL,
	created_at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')) NOT NULL,
	updated_at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')) NOT NULL,
	CONSTRAINT pk_file_metadata PRIMARY KEY (path_id, "key"),
	CONSTRAINT ck_file_metadata_value_is_json CHECK (json_valid(value)),
	FOREIGN KEY(path_id) REFERENCES file_paths (path_id) ON DELETE CASCADE
)
 WITHOUT ROWID;

CREATE TABLE file_paths (
	path_id VARCHAR(36) DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) NOT NULL,
	tenant_id VARCHAR(255) DEFAULT 'default' NOT NULL,
	virtual_path TEXT NOT NULL,
	size_bytes BIGINT DEFAULT '0' NOT NULL,
	content_hash VARCHAR(128),
	file_type VARCHAR(255),
	created_at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')) NOT NULL,
	updated_at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')) NOT NULL,
	deleted_at TEXT,
	PRIMARY KEY (path_id),
	CONSTRAINT uq_file_paths_tenant_path UNIQUE (tenant_id, virtual_path)
);

CREATE TABLE work_counters (
	tenant_id VARCHAR(255) NOT NULL,
	counter VARCHAR(16) NOT NULL,
	shard INTEGER NOT NULL,
	n BIGINT NOT NULL,
	CONSTRAINT pk_work_counters PRIMARY KEY (tenant_id, counter, shard)
);

CREATE TABLE work_dependencies (
	path_id VARCHAR(36) NOT NULL,
	depends_on_ref TEXT NOT NULL,
	tenant_id VARCHAR(255) NOT NULL,
	CONSTRAINT pk_work_dependencies PRIMARY KEY (path_id, depends_on_ref),
	FOREIGN KEY(path_id) REFERENCES file_paths (path_id) ON DELETE CASCADE
);

CREATE TABLE work_event_counts (
	tenant_id VARCHAR(255) NOT NULL,
	counter VARCHAR(64) NOT NULL,
	shard INTEGER NOT NULL,
	n BIGINT NOT NULL,
	total FLOAT NOT NULL,
	CONSTRAINT pk_work_event_counts PRIMARY KEY (tenant_id, counter, shard)
);

CREATE TABLE work_event_hourly (
	tenant_id VARCHAR(255) NOT NULL,
	hour TEXT NOT NULL,
	event VARCHAR(32) NOT NULL,
	shard INTEGER NOT NULL,
	n BIGINT NOT NULL,
	CONSTRAINT pk_work_event_hourly PRIMARY KEY (tenant_id, hour, event, shard)
);

CREATE TABLE work_history (
	id INTEGER NOT NULL,
	path_id VARCHAR(36) NOT NULL,
	tenant_id VARCHAR(255) NOT NULL,
	event VARCHAR(32) NOT NULL,
	at TEXT NOT NULL,
	worker_id TEXT,
	detail TEXT,
	PRIMARY KEY (id),
	FOREIGN KEY(path_id) REFERENCES file_paths (path_id) ON DELETE CASCADE
);

CREATE TABLE work_idempotency (
	tenant_id VARCHAR(255) NOT NULL,
	idempotency_key VARCHAR(255) NOT NULL,
	path_id VARCHAR(36) NOT NULL,
	CONSTRAINT pk_work_idempotency PRIMARY KEY (tenant_id, idempotency_key),
	FOREIGN KEY(path_id) REFERENCES file_paths (path_id) ON DELETE CASCADE
);

CREATE TABLE work_items (
	path_id VARCHAR(36) NOT NULL,
	tenant_id VARCHAR(255) NOT NULL,
	created_at TEXT NOT NULL,
	status VARCHAR(16) NOT NULL,
	priority BIGINT,
	tags TEXT,
	worker_id TEXT,
	started_at TEXT,
	run_after TEXT,
	lease_token VARCHAR(64),
	lease_expires_at TEXT,
	attempts INTEGER DEFAULT '0' NOT NULL,
	max_attempts INTEGER,
	unresolved_count INTEGER DEFAULT '0' NOT NULL, lease_seconds FLOAT, last_error TEXT, finished_at TEXT,
	PRIMARY KEY (path_id),
	FOREIGN KEY(path_id) REFERENCES file_paths (path_id) ON DELETE CASCADE
);


-- Views

CREATE VIEW blocked_work_items AS
            SELECT w.path_id, p.virtual_path, w.tenant_id, w.status, w.priority, w.created_at,
    p.updated_at, p.size_bytes, p.content_hash, w.unresolved_count AS blocker_count
            FROM work_items w INDEXED BY ix_work_items_blocked JOIN file_paths p ON p.path_id = w.path_id
            WHERE w.unresolved_count > 0 AND w.status IN ('ready', 'pending', 'blocked')
              AND p.deleted_at IS NULL
            ORDER BY w.unresolved_count DESC, w.priority IS NULL, w.priority, w.created_at, w.path_id;

CREATE VIEW in_progress_work AS
            SELECT w.path_id, p.virtual_path, w.tenant_id, w.status, w.priority, w.created_at,
    p.updated_at, p.size_bytes, p.content_hash, w.worker_id, w.started_at
            FROM work_items w INDEXED BY ix_work_items_in_progress JOIN file_paths p ON p.path_id = w.path_id
            WHERE w.status = 'in_progress' AND p.deleted_at IS NULL
            ORDER BY w.started_at DESC, w.path_id;

CREATE VIEW path_metadata AS
    SELECT m.path_id, m.key, m.value, m.created_at, m.updated_at FROM file_metadata m
    WHERE m.value <> '{"$nexus":"work_items"}'
    UNION ALL
    SELECT w.path_id, 'status', json_quote(w.status), w.created_at, coalesce(w.finished_at, w.started_at, w.created_at) FROM work_items w
    UNION ALL
    SELECT w.path_id, 'worker_id', json_quote(w.worker_id), w.created_at, coalesce(w.finished_at, w.started_at, w.created_at) FROM work_items w
    WHERE w.worker_id IS NOT NULL
    UNION ALL
    SELECT w.path_id, 'started_at', json_quote(strftime('%Y-%m-%dT%H:%M:%f', w.started_at) || '+00:00'), w.created_at, coalesce(w.finished_at, w.started_at, w.created_at) FROM work_items w
    WHERE w.started_at IS NOT NULL;

CREATE VIEW pending_work_items AS
            SELECT w.path_id, p.virtual_path, w.tenant_id, w.status, w.priority, w.created_at,
    p.updated_at, p.size_bytes, p.content_hash FROM work_items w INDEXED BY ix_work_items_pending JOIN file_paths p ON p.path_id = w.path_id
            WHERE w.status = 'pending' AND p.deleted_at IS NULL
            ORDER BY w.priority IS NULL, w.priority, w.created_at, w.path_id;

CREATE VIEW ready_work_items AS
            SELECT w.path_id, p.virtual_path, w.tenant_id, w.status, w.priority, w.created_at,
    p.updated_at, p.size_bytes, p.content_hash FROM work_items w INDEXED BY ix_work_items_ready JOIN file_paths p ON p.path_id = w.path_id
            WHERE w.status = 'ready' AND w.unresolved_count = 0 AND p.deleted_at IS NULL
              AND (w.run_after IS NULL OR w.run_after <= strftime('%Y-%m-%d %H:%M:%f', 'now'))
            ORDER BY w.priority IS NULL, w.priority, w.created_at, w.path_id;

CREATE VIEW work_by_priority AS
            SELECT w.path_id, p.virtual_path, w.tenant_id, w.status, w.priority, w.created_at,
    p.updated_at, p.size_bytes, p.content_hash, w.tags FROM work_items w INDEXED BY ix_work_items_priority JOIN file_paths p ON p.path_id = w.path_id
            WHERE p.deleted_at IS NULL
            ORDER BY w.priority IS NULL, w.priority, w.created_at, w.path_id;

CREATE VIEW work_failures_by_error AS
            SELECT json_extract(h.detail, '$.error') AS error, count(*) AS failures, max(h.at) AS last_at
            FROM work_history h
            WHERE h.event IN ('failed', 'retried')
            GROUP BY json_extract(h.detail, '$.error')
            ORDER BY 2 DESC, 1;

CREATE VIEW work_throughput_hourly AS
            SELECT strftime('%Y-%m-%d %H:00:00', h.at) AS hour,
                   sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END) AS completed,
                   sum(CASE WHEN h.event = 'failed' THEN 1 ELSE 0 END) AS failed,
                   sum(CASE WHEN h.event = 'retried' THEN 1 ELSE 0 END) AS retried
            FROM work_history h
            WHERE h.event IN ('completed', 'failed', 'retried')
            GROUP BY strftime('%Y-%m-%d %H:00:00', h.at)
            ORDER BY 1;

CREATE VIEW work_timing_hourly AS
            SELECT strftime('%Y-%m-%d %H:00:00', h.at) AS hour,
                   sum(CASE WHEN h.event = 'claimed' THEN 1 ELSE 0 END) AS claims,
                   avg(CASE WHEN h.event = 'claimed' THEN json_extract(h.detail, '$.wait_seconds') END) AS mean_wait_seconds,
                   sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END) AS completions,
                   avg(CASE WHEN h.event = 'completed' THEN json_extract(h.detail, '$.run_seconds') END) AS mean_run_seconds
            FROM work_history h
            WHERE h.event IN ('claimed', 'completed')
            GROUP BY strftime('%Y-%m-%d %H:00:00', h.at)
            ORDER BY 1;


-- Indexes (by table)

CREATE INDEX ix_file_paths_content_hash ON file_paths (content_hash);

CREATE INDEX ix_work_dependencies_ref ON work_dependencies (depends_on_ref);

CREATE INDEX ix_work_history_path ON work_history (path_id, id);

CREATE INDEX ix_work_items_blocked ON work_items
       (unresolved_count DESC, priority IS NULL, priority, created_at, path_id)
       WHERE unresolved_count > 0 AND status IN ('ready', 'pending', 'blocked');

CREATE INDEX ix_work_items_deferred ON work_items (tenant_id, run_after)
        WHERE status = 'ready' AND unresolved_count = 0 AND run_after IS NOT NULL;

CREATE INDEX ix_work_items_failed
ON work_items (tenant_id, coalesce(finished_at, created_at) DESC, path_id DESC)
WHERE status = 'failed';

CREATE INDEX ix_work_items_in_progress ON work_items (started_at DESC, path_id)
       WHERE status = 'in_progress';

CREATE INDEX ix_work_items_pending ON work_items
       (priority IS NULL, priority, created_at, path_id) WHERE status = 'pending';

CREATE INDEX ix_work_items_priority ON work_items
       (priority IS NULL, priority, created_at, path_id);

CREATE INDEX ix_work_items_ready ON work_items
       (priority IS NULL, priority, created_at, path_id, run_after)
       WHERE status = 'ready' AND unresolved_count = 0;

CREATE INDEX ix_work_items_ready_since
ON work_items (tenant_id, coalesce(run_after, created_at))
WHERE status = 'ready' AND unresolved_count = 0;


-- Triggers (by table or view)

CREATE TRIGGER trg_nexus_project_deps_delete AFTER DELETE ON file_metadata
        WHEN OLD.key = 'depends_on'
        BEGIN
    DELETE FROM work_dependencies WHERE path_id = OLD.path_id;
    INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
    SELECT DISTINCT m.path_id, e.value, p.tenant_id
    FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
    WHERE m.path_id = OLD.path_id AND m.key = 'depends_on'
      AND json_type(m.value) IN ('text', 'array') AND e.type = 'text';
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id = OLD.path_id; END;

CREATE TRIGGER trg_nexus_project_deps_insert AFTER INSERT ON file_metadata
        WHEN NEW.key = 'depends_on'
        BEGIN
    DELETE FROM work_dependencies WHERE path_id = NEW.path_id;
    INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
    SELECT DISTINCT m.path_id, e.value, p.tenant_id
    FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
    WHERE m.path_id = NEW.path_id AND m.key = 'depends_on'
      AND json_type(m.value) IN ('text', 'array') AND e.type = 'text';
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id = NEW.path_id; END;

CREATE TRIGGER trg_nexus_project_deps_update AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = 'depends_on' AND OLD.key = NEW.key AND OLD.path_id = NEW.path_id AND OLD.value IS NOT NEW.value
        BEGIN
    DELETE FROM work_dependencies WHERE path_id = NEW.path_id;
    INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
    SELECT DISTINCT m.path_id, e.value, p.tenant_id
    FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
    WHERE m.path_id = NEW.path_id AND m.key = 'depends_on'
      AND json_type(m.value) IN ('text', 'array') AND e.type = 'text';
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id = NEW.path_id; END;

CREATE TRIGGER trg_nexus_project_move AFTER UPDATE OF key, path_id ON file_metadata
        WHEN OLD.key IS NOT NEW.key OR OLD.path_id IS NOT NEW.path_id
        BEGIN
    DELETE FROM work_dependencies WHERE path_id = OLD.path_id;
    INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
    SELECT DISTINCT m.path_id, e.value, p.tenant_id
    FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
    WHERE m.path_id = OLD.path_id AND m.key = 'depends_on'
      AND json_type(m.value) IN ('text', 'array') AND e.type = 'text';
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id = OLD.path_id;
    UPDATE work_items SET priority = (SELECT CASE WHEN json_type(m.value) = 'integer' AND typeof(json_extract(m.value, '$')) = 'integer' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = OLD.path_id AND m.key = 'priority'),
        tags = (SELECT CASE WHEN json_type(m.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(m.value) e WHERE e.type <> 'text') THEN m.value END FROM file_metadata m WHERE m.path_id = OLD.path_id AND m.key = 'tags')
    WHERE path_id = OLD.path_id;

    DELETE FROM work_dependencies WHERE path_id = NEW.path_id;
    INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
    SELECT DISTINCT m.path_id, e.value, p.tenant_id
    FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
    WHERE m.path_id = NEW.path_id AND m.key = 'depends_on'
      AND json_type(m.value) IN ('text', 'array') AND e.type = 'text';
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id = NEW.path_id;
    UPDATE work_items SET priority = (SELECT CASE WHEN json_type(m.value) = 'integer' AND typeof(json_extract(m.value, '$')) = 'integer' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'priority'),
        tags = (SELECT CASE WHEN json_type(m.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(m.value) e WHERE e.type <> 'text') THEN m.value END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'tags')
    WHERE path_id = NEW.path_id;

    UPDATE work_items SET status = (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}')
    WHERE path_id = NEW.path_id AND (NEW.key IN ('status', 'worker_id', 'started_at') AND (SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL)
      AND (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}') IS NOT NULL
      AND status IS NOT (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}');
    INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags, worker_id,
                            started_at, attempts, unresolved_count)
    SELECT p.path_id, p.tenant_id, p.created_at, CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END,
           (SELECT CASE WHEN json_type(m.value) = 'integer' AND typeof(json_extract(m.value, '$')) = 'integer' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'priority'), (SELECT CASE WHEN json_type(m.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(m.value) e WHERE e.type <> 'text') THEN m.value END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'tags'),
           (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'worker_id'), (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'started_at'),
           0, (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = p.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    FROM file_paths p JOIN file_metadata s ON s.path_id = p.path_id AND s.key = 'status'
    WHERE p.path_id = NEW.path_id AND (NEW.key IN ('status', 'worker_id', 'started_at') AND (SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL) AND p.deleted_at IS NULL AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id);
    DELETE FROM work_items WHERE path_id = NEW.path_id AND (NEW.key IN ('status', 'worker_id', 'started_at') AND (SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL)
      AND EXISTS (SELECT 1 FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}' AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NULL);
    UPDATE work_items SET
        worker_id = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'worker_id' AND r.value IS NOT '{"$nexus":"work_items"}')
                         THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'worker_id') ELSE worker_id END,
        started_at = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'started_at' AND r.value IS NOT '{"$nexus":"work_items"}')
                          THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'started_at') ELSE started_at END
    WHERE path_id = NEW.path_id AND (NEW.key IN ('status', 'worker_id', 'started_at') AND (SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL);
    UPDATE file_metadata SET value = '{"$nexus":"work_items"}'
    WHERE path_id = NEW.path_id AND (NEW.key IN ('status', 'worker_id', 'started_at') AND (SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL) AND key IN ('status', 'worker_id', 'started_at')
      AND value IS NOT '{"$nexus":"work_items"}' AND (key = 'status' AND CASE WHEN json_type(value) = 'text' AND json_extract(value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(value, '$') END IS NOT NULL OR key = 'worker_id' AND CASE WHEN json_type(value) = 'text' THEN json_extract(value, '$') END IS NOT NULL OR key = 'started_at' AND CASE WHEN json_type(value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(value, '$'), 1, 10))) = substr(json_extract(value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(value, '$')) END END IS NOT NULL)
      AND EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id)
      AND EXISTS (SELECT 1 FROM file_paths x WHERE x.path_id = NEW.path_id
                  AND x.deleted_at IS NULL);
        END;

CREATE TRIGGER trg_nexus_project_priority_delete AFTER DELETE ON file_metadata
        WHEN OLD.key = 'priority'
        BEGIN UPDATE work_items SET priority = NULL WHERE path_id = OLD.path_id; END;

CREATE TRIGGER trg_nexus_project_priority_insert AFTER INSERT ON file_metadata
        WHEN NEW.key = 'priority'
        BEGIN UPDATE work_items SET priority = CASE WHEN json_type(NEW.value) = 'integer' AND typeof(json_extract(NEW.value, '$')) = 'integer' THEN json_extract(NEW.value, '$') END WHERE path_id = NEW.path_id AND priority IS NOT CASE WHEN json_type(NEW.value) = 'integer' AND typeof(json_extract(NEW.value, '$')) = 'integer' THEN json_extract(NEW.value, '$') END; END;

CREATE TRIGGER trg_nexus_project_priority_update AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = 'priority' AND OLD.key = NEW.key AND OLD.path_id = NEW.path_id AND OLD.value IS NOT NEW.value
        BEGIN UPDATE work_items SET priority = CASE WHEN json_type(NEW.value) = 'integer' AND typeof(json_extract(NEW.value, '$')) = 'integer' THEN json_extract(NEW.value, '$') END WHERE path_id = NEW.path_id AND priority IS NOT CASE WHEN json_type(NEW.value) = 'integer' AND typeof(json_extract(NEW.value, '$')) = 'integer' THEN json_extract(NEW.value, '$') END; END;

CREATE TRIGGER trg_nexus_project_tags_delete AFTER DELETE ON file_metadata
        WHEN OLD.key = 'tags'
        BEGIN UPDATE work_items SET tags = NULL WHERE path_id = OLD.path_id; END;

CREATE TRIGGER trg_nexus_project_tags_insert AFTER INSERT ON file_metadata
        WHEN NEW.key = 'tags'
        BEGIN UPDATE work_items SET tags = CASE WHEN json_type(NEW.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(NEW.value) e WHERE e.type <> 'text') THEN NEW.value END WHERE path_id = NEW.path_id AND tags IS NOT CASE WHEN json_type(NEW.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(NEW.value) e WHERE e.type <> 'text') THEN NEW.value END; END;

CREATE TRIGGER trg_nexus_project_tags_update AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = 'tags' AND OLD.key = NEW.key AND OLD.path_id = NEW.path_id AND OLD.value IS NOT NEW.value
        BEGIN UPDATE work_items SET tags = CASE WHEN json_type(NEW.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(NEW.value) e WHERE e.type <> 'text') THEN NEW.value END WHERE path_id = NEW.path_id AND tags IS NOT CASE WHEN json_type(NEW.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(NEW.value) e WHERE e.type <> 'text') THEN NEW.value END; END;

CREATE TRIGGER trg_nexus_route_delete AFTER DELETE ON file_metadata
        WHEN OLD.key IN ('status', 'worker_id', 'started_at') AND OLD.value IS '{"$nexus":"work_items"}'
        BEGIN
        DELETE FROM work_items WHERE OLD.key = 'status' AND path_id = OLD.path_id;
        UPDATE work_items SET worker_id = NULL
        WHERE OLD.key = 'worker_id' AND path_id = OLD.path_id;
        UPDATE work_items SET started_at = NULL
        WHERE OLD.key = 'started_at' AND path_id = OLD.path_id;
        END;

CREATE TRIGGER trg_nexus_route_insert AFTER INSERT ON file_metadata
        WHEN NEW.key IN ('status', 'worker_id', 'started_at') AND NEW.value IS NOT '{"$nexus":"work_items"}' AND (SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL
        BEGIN
    UPDATE work_items SET status = (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}')
    WHERE path_id = NEW.path_id AND (1)
      AND (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}') IS NOT NULL
      AND status IS NOT (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}');
    INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags, worker_id,
                            started_at, attempts, unresolved_count)
    SELECT p.path_id, p.tenant_id, p.created_at, CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END,
           (SELECT CASE WHEN json_type(m.value) = 'integer' AND typeof(json_extract(m.value, '$')) = 'integer' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'priority'), (SELECT CASE WHEN json_type(m.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(m.value) e WHERE e.type <> 'text') THEN m.value END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'tags'),
           (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'worker_id'), (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'started_at'),
           0, (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = p.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    FROM file_paths p JOIN file_metadata s ON s.path_id = p.path_id AND s.key = 'status'
    WHERE p.path_id = NEW.path_id AND (1) AND p.deleted_at IS NULL AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id);
    DELETE FROM work_items WHERE path_id = NEW.path_id AND (1)
      AND EXISTS (SELECT 1 FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}' AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NULL);
    UPDATE work_items SET
        worker_id = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'worker_id' AND r.value IS NOT '{"$nexus":"work_items"}')
                         THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'worker_id') ELSE worker_id END,
        started_at = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'started_at' AND r.value IS NOT '{"$nexus":"work_items"}')
                          THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'started_at') ELSE started_at END
    WHERE path_id = NEW.path_id AND (1);
    UPDATE file_metadata SET value = '{"$nexus":"work_items"}'
    WHERE path_id = NEW.path_id AND (1) AND key IN ('status', 'worker_id', 'started_at')
      AND value IS NOT '{"$nexus":"work_items"}' AND (key = 'status' AND CASE WHEN json_type(value) = 'text' AND json_extract(value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(value, '$') END IS NOT NULL OR key = 'worker_id' AND CASE WHEN json_type(value) = 'text' THEN json_extract(value, '$') END IS NOT NULL OR key = 'started_at' AND CASE WHEN json_type(value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(value, '$'), 1, 10))) = substr(json_extract(value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(value, '$')) END END IS NOT NULL)
      AND EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id)
      AND EXISTS (SELECT 1 FROM file_paths x WHERE x.path_id = NEW.path_id
                  AND x.deleted_at IS NULL); END;

CREATE TRIGGER trg_nexus_route_update AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key IN ('status', 'worker_id', 'started_at') AND OLD.key = NEW.key AND OLD.path_id = NEW.path_id AND OLD.value IS NOT NEW.value
             AND NEW.value IS NOT '{"$nexus":"work_items"}' AND (SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL
        BEGIN
    UPDATE work_items SET status = (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}')
    WHERE path_id = NEW.path_id AND (1)
      AND (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}') IS NOT NULL
      AND status IS NOT (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}');
    INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags, worker_id,
                            started_at, attempts, unresolved_count)
    SELECT p.path_id, p.tenant_id, p.created_at, CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END,
           (SELECT CASE WHEN json_type(m.value) = 'integer' AND typeof(json_extract(m.value, '$')) = 'integer' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'priority'), (SELECT CASE WHEN json_type(m.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(m.value) e WHERE e.type <> 'text') THEN m.value END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'tags'),
           (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'worker_id'), (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'started_at'),
           0, (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = p.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    FROM file_paths p JOIN file_metadata s ON s.path_id = p.path_id AND s.key = 'status'
    WHERE p.path_id = NEW.path_id AND (1) AND p.deleted_at IS NULL AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id);
    DELETE FROM work_items WHERE path_id = NEW.path_id AND (1)
      AND EXISTS (SELECT 1 FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}' AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NULL);
    UPDATE work_items SET
        worker_id = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'worker_id' AND r.value IS NOT '{"$nexus":"work_items"}')
                         THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'worker_id') ELSE worker_id END,
        started_at = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'started_at' AND r.value IS NOT '{"$nexus":"work_items"}')
                          THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'started_at') ELSE started_at END
    WHERE path_id = NEW.path_id AND (1);
    UPDATE file_metadata SET value = '{"$nexus":"work_items"}'
    WHERE path_id = NEW.path_id AND (1) AND key IN ('status', 'worker_id', 'started_at')
      AND value IS NOT '{"$nexus":"work_items"}' AND (key = 'status' AND CASE WHEN json_type(value) = 'text' AND json_extract(value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(value, '$') END IS NOT NULL OR key = 'worker_id' AND CASE WHEN json_type(value) = 'text' THEN json_extract(value, '$') END IS NOT NULL OR key = 'started_at' AND CASE WHEN json_type(value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(value, '$'), 1, 10))) = substr(json_extract(value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(value, '$')) END END IS NOT NULL)
      AND EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id)
      AND EXISTS (SELECT 1 FROM file_paths x WHERE x.path_id = NEW.path_id
                  AND x.deleted_at IS NULL); END;

CREATE TRIGGER trg_nexus_path_delete AFTER DELETE ON file_paths
        BEGIN
        DELETE FROM file_metadata WHERE path_id = OLD.path_id;
        DELETE FROM work_items WHERE path_id = OLD.path_id;
        DELETE FROM work_dependencies WHERE path_id = OLD.path_id;

    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id IN (SELECT d.path_id FROM work_dependencies d
                      WHERE d.depends_on_ref IN (OLD.path_id, OLD.virtual_path) AND d.tenant_id IN (OLD.tenant_id));
        END;

CREATE TRIGGER trg_nexus_path_update
        AFTER UPDATE OF deleted_at, virtual_path, tenant_id, created_at ON file_paths
        WHEN OLD.deleted_at IS NOT NEW.deleted_at OR OLD.virtual_path IS NOT NEW.virtual_path
             OR OLD.tenant_id IS NOT NEW.tenant_id OR OLD.created_at IS NOT NEW.created_at
        BEGIN
        UPDATE work_dependencies SET tenant_id = NEW.tenant_id
        WHERE path_id = NEW.path_id AND tenant_id IS NOT NEW.tenant_id;

    INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
    SELECT w.path_id, 'status', json_quote(w.status), strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now')
    FROM work_items w WHERE w.path_id = NEW.path_id AND w.status IS NOT NULL AND (NEW.deleted_at IS NOT NULL)
    ON CONFLICT (path_id, key) DO UPDATE SET value = excluded.value,
        updated_at = excluded.updated_at;
    INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
    SELECT w.path_id, 'worker_id', json_quote(w.worker_id), strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now')
    FROM work_items w WHERE w.path_id = NEW.path_id AND w.worker_id IS NOT NULL AND (NEW.deleted_at IS NOT NULL)
    ON CONFLICT (path_id, key) DO UPDATE SET value = excluded.value,
        updated_at = excluded.updated_at;
    INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
    SELECT w.path_id, 'started_at', json_quote(strftime('%Y-%m-%dT%H:%M:%f', w.started_at) || '+00:00'), strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now')
    FROM work_items w WHERE w.path_id = NEW.path_id AND w.started_at IS NOT NULL AND (NEW.deleted_at IS NOT NULL)
    ON CONFLICT (path_id, key) DO UPDATE SET value = excluded.value,
        updated_at = excluded.updated_at;
    DELETE FROM work_items WHERE path_id = NEW.path_id AND (NEW.deleted_at IS NOT NULL);
        UPDATE work_items SET tenant_id = NEW.tenant_id, created_at = NEW.created_at
        WHERE path_id = NEW.path_id
          AND (tenant_id IS NOT NEW.tenant_id OR created_at IS NOT NEW.created_at);

    UPDATE work_items SET status = (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}')
    WHERE path_id = NEW.path_id AND (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL)
      AND (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}') IS NOT NULL
      AND status IS NOT (SELECT CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}');
    INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags, worker_id,
                            started_at, attempts, unresolved_count)
    SELECT p.path_id, p.tenant_id, p.created_at, CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END,
           (SELECT CASE WHEN json_type(m.value) = 'integer' AND typeof(json_extract(m.value, '$')) = 'integer' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'priority'), (SELECT CASE WHEN json_type(m.value) = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(m.value) e WHERE e.type <> 'text') THEN m.value END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'tags'),
           (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'worker_id'), (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'started_at'),
           0, (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = p.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    FROM file_paths p JOIN file_metadata s ON s.path_id = p.path_id AND s.key = 'status'
    WHERE p.path_id = NEW.path_id AND (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL) AND p.deleted_at IS NULL AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id);
    DELETE FROM work_items WHERE path_id = NEW.path_id AND (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL)
      AND EXISTS (SELECT 1 FROM file_metadata s WHERE s.path_id = NEW.path_id AND s.key = 'status' AND s.value IS NOT '{"$nexus":"work_items"}' AND CASE WHEN json_type(s.value) = 'text' AND json_extract(s.value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(s.value, '$') END IS NULL);
    UPDATE work_items SET
        worker_id = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'worker_id' AND r.value IS NOT '{"$nexus":"work_items"}')
                         THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN json_extract(m.value, '$') END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'worker_id') ELSE worker_id END,
        started_at = CASE WHEN EXISTS (SELECT 1 FROM file_metadata r WHERE r.path_id = NEW.path_id AND r.key = 'started_at' AND r.value IS NOT '{"$nexus":"work_items"}')
                          THEN (SELECT CASE WHEN json_type(m.value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(m.value, '$'), 1, 10))) = substr(json_extract(m.value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(m.value, '$')) END END FROM file_metadata m WHERE m.path_id = NEW.path_id AND m.key = 'started_at') ELSE started_at END
    WHERE path_id = NEW.path_id AND (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL);
    UPDATE file_metadata SET value = '{"$nexus":"work_items"}'
    WHERE path_id = NEW.path_id AND (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL) AND key IN ('status', 'worker_id', 'started_at')
      AND value IS NOT '{"$nexus":"work_items"}' AND (key = 'status' AND CASE WHEN json_type(value) = 'text' AND json_extract(value, '$') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed') THEN json_extract(value, '$') END IS NOT NULL OR key = 'worker_id' AND CASE WHEN json_type(value) = 'text' THEN json_extract(value, '$') END IS NOT NULL OR key = 'started_at' AND CASE WHEN json_type(value) = 'text' THEN CASE WHEN date(julianday(substr(json_extract(value, '$'), 1, 10))) = substr(json_extract(value, '$'), 1, 10) THEN strftime('%Y-%m-%d %H:%M:%f', json_extract(value, '$')) END END IS NOT NULL)
      AND EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = NEW.path_id)
      AND EXISTS (SELECT 1 FROM file_paths x WHERE x.path_id = NEW.path_id
                  AND x.deleted_at IS NULL);
        UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
        WHERE path_id = NEW.path_id;

    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id IN (SELECT d.path_id FROM work_dependencies d
                      WHERE d.depends_on_ref IN (NEW.path_id, OLD.virtual_path, NEW.virtual_path) AND d.tenant_id IN (OLD.tenant_id, NEW.tenant_id));
        END;

CREATE TRIGGER trg_nexus_path_metadata_delete INSTEAD OF DELETE ON path_metadata
        BEGIN
        DELETE FROM file_metadata WHERE path_id = OLD.path_id AND key = OLD.key;
        DELETE FROM work_items WHERE OLD.key = 'status' AND path_id = OLD.path_id;
        UPDATE work_items SET worker_id = NULL
        WHERE OLD.key = 'worker_id' AND path_id = OLD.path_id;
        UPDATE work_items SET started_at = NULL
        WHERE OLD.key = 'started_at' AND path_id = OLD.path_id;
        END;

CREATE TRIGGER trg_nexus_event_counts AFTER INSERT ON work_history
BEGIN
    -- Missing rows first (never a conflict: see 0005 on conflict handling in triggers).
    INSERT INTO work_event_counts (tenant_id, counter, shard, n, total)
    SELECT c.tenant_id, c.counter, 0, 0, 0 FROM (
        SELECT NEW.tenant_id AS tenant_id, NEW.event AS counter, NULL AS v
        UNION ALL SELECT NEW.tenant_id, 'dead_letter', NULL
            WHERE NEW.event = 'failed'
               OR (NEW.event = 'reclaimed' AND CASE WHEN json_valid(NEW.detail) THEN json_extract(NEW.detail, '$.to') END = 'failed')
        UNION ALL SELECT NEW.tenant_id, 'run_seconds', CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END
            WHERE NEW.event = 'completed' AND CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END IS NOT NULL
        UNION ALL SELECT NEW.tenant_id, 'run_le:' || CASE WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.01 THEN '0.01' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.05 THEN '0.05' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.1 THEN '0.1' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.5 THEN '0.5' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 1 THEN '1' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 5 THEN '5' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 10 THEN '10' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 30 THEN '30' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 60 THEN '60' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 300 THEN '300' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 1800 THEN '1800' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 3600 THEN '3600' ELSE '+Inf' END, NULL
            WHERE NEW.event = 'completed' AND CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END IS NOT NULL) c
    WHERE NOT EXISTS (SELECT 1 FROM work_event_counts x WHERE x.tenant_id = c.tenant_id
                      AND x.counter = c.counter AND x.shard = 0);
    UPDATE work_event_counts
    SET n = n + 1, total = total + CASE WHEN counter = 'run_seconds' THEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END
                                        ELSE 0 END
    WHERE tenant_id = NEW.tenant_id AND shard = 0
      AND counter IN (SELECT c.counter FROM (
        SELECT NEW.tenant_id AS tenant_id, NEW.event AS counter, NULL AS v
        UNION ALL SELECT NEW.tenant_id, 'dead_letter', NULL
            WHERE NEW.event = 'failed'
               OR (NEW.event = 'reclaimed' AND CASE WHEN json_valid(NEW.detail) THEN json_extract(NEW.detail, '$.to') END = 'failed')
        UNION ALL SELECT NEW.tenant_id, 'run_seconds', CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END
            WHERE NEW.event = 'completed' AND CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END IS NOT NULL
        UNION ALL SELECT NEW.tenant_id, 'run_le:' || CASE WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.01 THEN '0.01' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.05 THEN '0.05' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.1 THEN '0.1' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 0.5 THEN '0.5' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 1 THEN '1' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 5 THEN '5' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 10 THEN '10' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 30 THEN '30' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 60 THEN '60' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 300 THEN '300' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 1800 THEN '1800' WHEN CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END <= 3600 THEN '3600' ELSE '+Inf' END, NULL
            WHERE NEW.event = 'completed' AND CASE WHEN json_valid(NEW.detail) AND json_type(NEW.detail, '$.run_seconds') IN ('integer', 'real') THEN json_extract(NEW.detail, '$.run_seconds') END IS NOT NULL) c);
END;

CREATE TRIGGER trg_nexus_event_hourly AFTER INSERT ON work_history
WHEN NEW.event IN ('completed', 'failed', 'retried')
BEGIN
    INSERT INTO work_event_hourly (tenant_id, hour, event, shard, n)
    SELECT NEW.tenant_id, substr(NEW.at, 1, 13) || ':00:00.000', NEW.event, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM work_event_hourly x WHERE x.tenant_id = NEW.tenant_id
                      AND x.hour = substr(NEW.at, 1, 13) || ':00:00.000' AND x.event = NEW.event AND x.shard = 0);
    UPDATE work_event_hourly SET n = n + 1
    WHERE tenant_id = NEW.tenant_id AND hour = substr(NEW.at, 1, 13) || ':00:00.000' AND event = NEW.event
      AND shard = 0;
END;

CREATE TRIGGER trg_nexus_count_delete AFTER DELETE ON work_items
        BEGIN
    UPDATE work_counters SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND counter = OLD.status AND shard = 0;
    UPDATE work_counters SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND counter = CASE WHEN OLD.unresolved_count > 0 AND OLD.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN OLD.status = 'ready' THEN 'eligible' END AND shard = 0; END;

CREATE TRIGGER trg_nexus_count_first BEFORE INSERT ON work_items
        WHEN NOT EXISTS (SELECT 1 FROM work_counters WHERE tenant_id = NEW.tenant_id
                         AND counter = 'ready' AND shard = 0)
        BEGIN
    INSERT INTO work_counters (tenant_id, counter, shard, n)
    SELECT NEW.tenant_id, c.name, 0, 0 FROM (SELECT 'ready' AS name UNION ALL SELECT 'pending' AS name UNION ALL SELECT 'blocked' AS name UNION ALL SELECT 'in_progress' AS name UNION ALL SELECT 'completed' AS name UNION ALL SELECT 'failed' AS name UNION ALL SELECT 'eligible' AS name UNION ALL SELECT 'waiting' AS name) AS c
    WHERE NOT EXISTS (SELECT 1 FROM work_counters x WHERE x.tenant_id = NEW.tenant_id
                      AND x.counter = c.name AND x.shard = 0); END;

CREATE TRIGGER trg_nexus_count_insert AFTER INSERT ON work_items
        BEGIN
    UPDATE work_counters SET n = n + 1
    WHERE tenant_id = NEW.tenant_id AND counter = NEW.status AND shard = 0;
    UPDATE work_counters SET n = n + 1
    WHERE tenant_id = NEW.tenant_id AND counter = CASE WHEN NEW.unresolved_count > 0 AND NEW.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN NEW.status = 'ready' THEN 'eligible' END AND shard = 0; END;

CREATE TRIGGER trg_nexus_count_tenant BEFORE UPDATE OF tenant_id ON work_items
        WHEN OLD.tenant_id IS NOT NEW.tenant_id
        BEGIN
    INSERT INTO work_counters (tenant_id, counter, shard, n)
    SELECT NEW.tenant_id, c.name, 0, 0 FROM (SELECT 'ready' AS name UNION ALL SELECT 'pending' AS name UNION ALL SELECT 'blocked' AS name UNION ALL SELECT 'in_progress' AS name UNION ALL SELECT 'completed' AS name UNION ALL SELECT 'failed' AS name UNION ALL SELECT 'eligible' AS name UNION ALL SELECT 'waiting' AS name) AS c
    WHERE NOT EXISTS (SELECT 1 FROM work_counters x WHERE x.tenant_id = NEW.tenant_id
                      AND x.counter = c.name AND x.shard = 0); END;

CREATE TRIGGER trg_nexus_count_update AFTER UPDATE OF status, unresolved_count, tenant_id
        ON work_items
        WHEN OLD.status IS NOT NEW.status OR OLD.tenant_id IS NOT NEW.tenant_id
             OR (CASE WHEN OLD.unresolved_count > 0 AND OLD.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN OLD.status = 'ready' THEN 'eligible' END) IS NOT (CASE WHEN NEW.unresolved_count > 0 AND NEW.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN NEW.status = 'ready' THEN 'eligible' END)
        BEGIN
    UPDATE work_counters SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND counter = OLD.status AND shard = 0;
    UPDATE work_counters SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND counter = CASE WHEN OLD.unresolved_count > 0 AND OLD.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN OLD.status = 'ready' THEN 'eligible' END AND shard = 0;
    UPDATE work_counters SET n = n + 1
    WHERE tenant_id = NEW.tenant_id AND counter = NEW.status AND shard = 0;
    UPDATE work_counters SET n = n + 1
    WHERE tenant_id = NEW.tenant_id AND counter = CASE WHEN NEW.unresolved_count > 0 AND NEW.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN NEW.status = 'ready' THEN 'eligible' END AND shard = 0; END;

CREATE TRIGGER trg_nexus_enqueued AFTER INSERT ON work_items
        BEGIN
        INSERT INTO work_history (path_id, tenant_id, event, at, detail)
        VALUES (NEW.path_id, NEW.tenant_id, 'enqueued', strftime('%Y-%m-%d %H:%M:%f', 'now'),
                json_object('status', NEW.status));
        END;

CREATE TRIGGER trg_nexus_promote AFTER UPDATE OF unresolved_count ON work_items
        WHEN NEW.unresolved_count = 0 AND OLD.unresolved_count > 0 AND NEW.status = 'blocked'
        BEGIN
        INSERT INTO work_history (path_id, tenant_id, event, at)
        VALUES (NEW.path_id, NEW.tenant_id, 'promoted', strftime('%Y-%m-%d %H:%M:%f', 'now'));
        UPDATE work_items SET status = 'ready' WHERE path_id = NEW.path_id;
        END;

CREATE TRIGGER trg_nexus_resolve_delete AFTER DELETE ON work_items
        WHEN OLD.status = 'completed'
        BEGIN
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id IN (SELECT d.path_id FROM work_dependencies d
                      WHERE d.depends_on_ref IN (OLD.path_id, (SELECT virtual_path FROM file_paths WHERE path_id = OLD.path_id)) AND d.tenant_id IN (OLD.tenant_id)); END;

CREATE TRIGGER trg_nexus_resolve_insert AFTER INSERT ON work_items
        WHEN NEW.status = 'completed'
        BEGIN
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id IN (SELECT d.path_id FROM work_dependencies d
                      WHERE d.depends_on_ref IN (NEW.path_id, (SELECT virtual_path FROM file_paths WHERE path_id = NEW.path_id)) AND d.tenant_id IN (NEW.tenant_id)); END;

CREATE TRIGGER trg_nexus_resolve_update AFTER UPDATE OF status ON work_items
        WHEN (OLD.status = 'completed') IS NOT (NEW.status = 'completed')
        BEGIN
    UPDATE work_items SET unresolved_count = (SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = work_items.path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))
    WHERE path_id IN (SELECT d.path_id FROM work_dependencies d
                      WHERE d.depends_on_ref IN (NEW.path_id, (SELECT virtual_path FROM file_paths WHERE path_id = NEW.path_id)) AND d.tenant_id IN (NEW.tenant_id)); END;
