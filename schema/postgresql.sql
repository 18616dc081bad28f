-- The nexus schema on PostgreSQL at revision 0009 (head): every object the
-- Alembic revisions in migrations/versions create, grouped by kind, sorted by name.
-- Generated from PostgreSQL 15 (the catalogs; another major version may print differently).
-- Do not edit: regenerate with `python -m nexus.storage.schema_dump --write`
-- (PostgreSQL from the server in NEXUS_TEST_POSTGRES_URL); a test compares this file.


-- Tables

CREATE TABLE alembic_version (
    version_num character varying(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE file_metadata (
    path_id character varying(36) NOT NULL,
    key character varying(255) NOT NULL,
    value jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT pk_file_metadata PRIMARY KEY (path_id, key),
    CONSTRAINT file_metadata_path_id_fkey FOREIGN KEY (path_id) REFERENCES file_paths(path_id) ON DELETE CASCADE
);

CREATE TABLE file_paths (
    path_id character varying(36) DEFAULT gen_random_uuid()::text NOT NULL,
    tenant_id character varying(255) DEFAULT 'default'::character varying NOT NULL,
    virtual_path text NOT NULL,
    size_bytes bigint DEFAULT '0'::bigint NOT NULL,
    content_hash character varying(128),
    file_type character varying(255),
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    deleted_at timestamp with time zone,
    CONSTRAINT file_paths_pkey PRIMARY KEY (path_id),
    CONSTRAINT uq_file_paths_tenant_path UNIQUE (tenant_id, virtual_path)
);

CREATE TABLE nexus_role_tenants (
    role_name text NOT NULL,
    tenant_id character varying(255) NOT NULL,
    CONSTRAINT nexus_role_tenants_pkey PRIMARY KEY (role_name)
);

CREATE TABLE work_counters (
    tenant_id character varying(255) NOT NULL,
    counter character varying(16) NOT NULL,
    shard integer NOT NULL,
    n bigint NOT NULL,
    CONSTRAINT pk_work_counters PRIMARY KEY (tenant_id, counter, shard)
);

CREATE TABLE work_dependencies (
    path_id character varying(36) NOT NULL,
    depends_on_ref text NOT NULL,
    tenant_id character varying(255) NOT NULL,
    CONSTRAINT pk_work_dependencies PRIMARY KEY (path_id, depends_on_ref),
    CONSTRAINT work_dependencies_path_id_fkey FOREIGN KEY (path_id) REFERENCES file_paths(path_id) ON DELETE CASCADE
);

CREATE TABLE work_event_counts (
    tenant_id character varying(255) NOT NULL,
    counter character varying(64) NOT NULL,
    shard integer NOT NULL,
    n bigint NOT NULL,
    total double precision NOT NULL,
    CONSTRAINT pk_work_event_counts PRIMARY KEY (tenant_id, counter, shard)
);

CREATE TABLE work_event_hourly (
    tenant_id character varying(255) NOT NULL,
    hour timestamp with time zone NOT NULL,
    event character varying(32) NOT NULL,
    shard integer NOT NULL,
    n bigint NOT NULL,
    CONSTRAINT pk_work_event_hourly PRIMARY KEY (tenant_id, hour, event, shard)
);

CREATE TABLE work_history (
    id bigint DEFAULT nextval('work_history_id_seq'::regclass) NOT NULL,
    path_id character varying(36) NOT NULL,
    tenant_id character varying(255) NOT NULL,
    event character varying(32) NOT NULL,
    at timestamp with time zone NOT NULL,
    worker_id text,
    detail jsonb,
    CONSTRAINT work_history_pkey PRIMARY KEY (id)
);

CREATE TABLE work_idempotency (
    tenant_id character varying(255) NOT NULL,
    idempotency_key character varying(255) NOT NULL,
    path_id character varying(36) NOT NULL,
    CONSTRAINT pk_work_idempotency PRIMARY KEY (tenant_id, idempotency_key),
    CONSTRAINT work_idempotency_path_id_fkey FOREIGN KEY (path_id) REFERENCES file_paths(path_id) ON DELETE CASCADE
);

CREATE TABLE work_items (
    path_id character varying(36) NOT NULL,
    tenant_id character varying(255) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    status character varying(16) NOT NULL,
    priority bigint,
    tags jsonb,
    worker_id text,
    started_at timestamp with time zone,
    run_after timestamp with time zone,
    lease_token character varying(64),
    lease_expires_at timestamp with time zone,
    attempts integer DEFAULT 0 NOT NULL,
    max_attempts integer,
    unresolved_count integer DEFAULT 0 NOT NULL,
    lease_seconds double precision,
    last_error text,
    finished_at timestamp with time zone,
    CONSTRAINT work_items_pkey PRIMARY KEY (path_id),
    CONSTRAINT work_items_path_id_fkey FOREIGN KEY (path_id) REFERENCES file_paths(path_id) ON DELETE CASCADE
);


-- Sequences

CREATE SEQUENCE work_history_id_seq AS bigint
    START WITH 1 INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1
    OWNED BY work_history.id;


-- Views

CREATE VIEW blocked_work_items WITH (security_invoker=true) AS
 SELECT w.path_id,
    p.virtual_path,
    w.tenant_id,
    w.status,
    w.priority,
    w.created_at,
    p.updated_at,
    p.size_bytes,
    p.content_hash,
    w.unresolved_count AS blocker_count
   FROM work_items w
     JOIN file_paths p ON p.path_id::text = w.path_id::text
  WHERE w.unresolved_count > 0 AND (w.status::text = ANY (ARRAY['ready'::character varying, 'pending'::character varying, 'blocked'::character varying]::text[])) AND p.deleted_at IS NULL
  ORDER BY w.unresolved_count DESC, w.priority, w.created_at, w.path_id;

CREATE VIEW in_progress_work WITH (security_invoker=true) AS
 SELECT w.path_id,
    p.virtual_path,
    w.tenant_id,
    w.status,
    w.priority,
    w.created_at,
    p.updated_at,
    p.size_bytes,
    p.content_hash,
    w.worker_id,
    w.started_at
   FROM work_items w
     JOIN file_paths p ON p.path_id::text = w.path_id::text
  WHERE w.status::text = 'in_progress'::text AND p.deleted_at IS NULL
  ORDER BY w.started_at DESC NULLS LAST, w.path_id;

CREATE VIEW path_metadata WITH (security_invoker=true) AS
 SELECT m.path_id,
    m.key,
    m.value,
    m.created_at,
    m.updated_at
   FROM file_metadata m
  WHERE m.value <> '{"$nexus": "work_items"}'::jsonb
UNION ALL
 SELECT w.path_id,
    'status'::character varying AS key,
    to_jsonb(w.status) AS value,
    w.created_at,
    COALESCE(w.finished_at, w.started_at, w.created_at) AS updated_at
   FROM work_items w
UNION ALL
 SELECT w.path_id,
    'worker_id'::character varying AS key,
    to_jsonb(w.worker_id) AS value,
    w.created_at,
    COALESCE(w.finished_at, w.started_at, w.created_at) AS updated_at
   FROM work_items w
  WHERE w.worker_id IS NOT NULL
UNION ALL
 SELECT w.path_id,
    'started_at'::character varying AS key,
    to_jsonb(to_char((w.started_at AT TIME ZONE 'UTC'::text), 'YYYY-MM-DD"T"HH24:MI:SS.MS'::text) || '+00:00'::text) AS value,
    w.created_at,
    COALESCE(w.finished_at, w.started_at, w.created_at) AS updated_at
   FROM work_items w
  WHERE w.started_at IS NOT NULL;

CREATE VIEW pending_work_items WITH (security_invoker=true) AS
 SELECT w.path_id,
    p.virtual_path,
    w.tenant_id,
    w.status,
    w.priority,
    w.created_at,
    p.updated_at,
    p.size_bytes,
    p.content_hash
   FROM work_items w
     JOIN file_paths p ON p.path_id::text = w.path_id::text
  WHERE w.status::text = 'pending'::text AND p.deleted_at IS NULL
  ORDER BY w.priority, w.created_at, w.path_id;

CREATE VIEW ready_work_items WITH (security_invoker=true) AS
 SELECT w.path_id,
    p.virtual_path,
    w.tenant_id,
    w.status,
    w.priority,
    w.created_at,
    p.updated_at,
    p.size_bytes,
    p.content_hash
   FROM work_items w
     JOIN file_paths p ON p.path_id::text = w.path_id::text
  WHERE w.status::text = 'ready'::text AND w.unresolved_count = 0 AND p.deleted_at IS NULL AND (w.run_after IS NULL OR w.run_after <= now())
  ORDER BY w.priority, w.created_at, w.path_id;

CREATE VIEW work_by_priority WITH (security_invoker=true) AS
 SELECT w.path_id,
    p.virtual_path,
    w.tenant_id,
    w.status,
    w.priority,
    w.created_at,
    p.updated_at,
    p.size_bytes,
    p.content_hash,
    w.tags
   FROM work_items w
     JOIN file_paths p ON p.path_id::text = w.path_id::text
  WHERE p.deleted_at IS NULL
  ORDER BY w.priority, w.created_at, w.path_id;

CREATE VIEW work_failures_by_error WITH (security_invoker=true) AS
 SELECT h.detail ->> 'error'::text AS error,
    count(*) AS failures,
    max(h.at) AS last_at
   FROM work_history h
  WHERE h.event::text = ANY (ARRAY['failed'::character varying, 'retried'::character varying]::text[])
  GROUP BY (h.detail ->> 'error'::text)
  ORDER BY (count(*)) DESC, (h.detail ->> 'error'::text);

CREATE VIEW work_throughput_hourly WITH (security_invoker=true) AS
 SELECT date_trunc('hour'::text, h.at) AS hour,
    sum(
        CASE
            WHEN h.event::text = 'completed'::text THEN 1
            ELSE 0
        END) AS completed,
    sum(
        CASE
            WHEN h.event::text = 'failed'::text THEN 1
            ELSE 0
        END) AS failed,
    sum(
        CASE
            WHEN h.event::text = 'retried'::text THEN 1
            ELSE 0
        END) AS retried
   FROM work_history h
  WHERE h.event::text = ANY (ARRAY['completed'::character varying, 'failed'::character varying, 'retried'::character varying]::text[])
  GROUP BY (date_trunc('hour'::text, h.at))
  ORDER BY (date_trunc('hour'::text, h.at));

CREATE VIEW work_timing_hourly WITH (security_invoker=true) AS
 SELECT date_trunc('hour'::text, h.at) AS hour,
    sum(
        CASE
            WHEN h.event::text = 'claimed'::text THEN 1
            ELSE 0
        END) AS claims,
    avg(
        CASE
            WHEN h.event::text = 'claimed'::text THEN (h.detail ->> 'wait_seconds'::text)::double precision
            ELSE NULL::double precision
        END) AS mean_wait_seconds,
    sum(
        CASE
            WHEN h.event::text = 'completed'::text THEN 1
            ELSE 0
        END) AS completions,
    avg(
        CASE
            WHEN h.event::text = 'completed'::text THEN (h.detail ->> 'run_seconds'::text)::double precision
            ELSE NULL::double precision
        END) AS mean_run_seconds
   FROM work_history h
  WHERE h.event::text = ANY (ARRAY['claimed'::character varying, 'completed'::character varying]::text[])
  GROUP BY (date_trunc('hour'::text, h.at))
  ORDER BY (date_trunc('hour'::text, h.at));


-- Indexes (by table)

CREATE INDEX ix_file_paths_content_hash ON public.file_paths USING btree (content_hash);

CREATE INDEX ix_file_paths_prefix ON public.file_paths USING btree (tenant_id, virtual_path COLLATE "C") WHERE (deleted_at IS NULL);

CREATE INDEX ix_work_dependencies_ref ON public.work_dependencies USING btree (depends_on_ref);

CREATE INDEX ix_work_history_path ON public.work_history USING btree (path_id, id);

CREATE INDEX ix_work_items_blocked ON public.work_items USING btree (unresolved_count DESC, priority, created_at, path_id) WHERE ((unresolved_count > 0) AND ((status)::text = ANY ((ARRAY['ready'::character varying, 'pending'::character varying, 'blocked'::character varying])::text[])));

CREATE INDEX ix_work_items_deferred ON public.work_items USING btree (tenant_id, run_after) WHERE (((status)::text = 'ready'::text) AND (unresolved_count = 0) AND (run_after IS NOT NULL));

CREATE INDEX ix_work_items_failed ON public.work_items USING btree (tenant_id, COALESCE(finished_at, created_at) DESC, path_id DESC) WHERE ((status)::text = 'failed'::text);

CREATE INDEX ix_work_items_in_progress ON public.work_items USING btree (started_at DESC NULLS LAST, path_id) WHERE ((status)::text = 'in_progress'::text);

CREATE INDEX ix_work_items_pending ON public.work_items USING btree (priority, created_at, path_id) WHERE ((status)::text = 'pending'::text);

CREATE INDEX ix_work_items_priority ON public.work_items USING btree (priority, created_at, path_id);

CREATE INDEX ix_work_items_ready ON public.work_items USING btree (priority, created_at, path_id) INCLUDE (run_after) WHERE (((status)::text = 'ready'::text) AND (unresolved_count = 0));

CREATE INDEX ix_work_items_ready_since ON public.work_items USING btree (tenant_id, COALESCE(run_after, created_at)) WHERE (((status)::text = 'ready'::text) AND (unresolved_count = 0));

CREATE INDEX ix_work_items_tags ON public.work_items USING gin (tags);


-- Functions

CREATE OR REPLACE FUNCTION public.nexus_blocker_count(p_path_id text)
 RETURNS integer
 LANGUAGE sql
 STABLE
AS $function$
        -- A reference resolves only to a completed item of the edge's own tenant.
        SELECT count(*)::integer FROM work_dependencies d
        WHERE d.path_id = p_path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed')
    $function$;

CREATE OR REPLACE FUNCTION public.nexus_count_events()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
DECLARE
    my_shard integer := pg_backend_pid() % 64;
BEGIN
    INSERT INTO work_event_counts (tenant_id, counter, shard, n, total)
    SELECT d.tenant_id, d.counter, my_shard, count(*), coalesce(sum(d.v), 0)
    FROM (
        SELECT r.tenant_id, r.event AS counter, NULL::double precision AS v FROM new_rows r
        UNION ALL SELECT r.tenant_id, 'dead_letter', NULL FROM new_rows r
            WHERE r.event = 'failed' OR (r.event = 'reclaimed' AND r.detail ->> 'to' = 'failed')
        UNION ALL SELECT r.tenant_id, 'run_seconds', (r.detail ->> 'run_seconds')::double precision FROM new_rows r WHERE r.event = 'completed' AND jsonb_typeof(r.detail -> 'run_seconds') = 'number'
        UNION ALL SELECT r.tenant_id, 'run_le:' || CASE WHEN (r.detail ->> 'run_seconds')::double precision <= 0.01 THEN '0.01' WHEN (r.detail ->> 'run_seconds')::double precision <= 0.05 THEN '0.05' WHEN (r.detail ->> 'run_seconds')::double precision <= 0.1 THEN '0.1' WHEN (r.detail ->> 'run_seconds')::double precision <= 0.5 THEN '0.5' WHEN (r.detail ->> 'run_seconds')::double precision <= 1 THEN '1' WHEN (r.detail ->> 'run_seconds')::double precision <= 5 THEN '5' WHEN (r.detail ->> 'run_seconds')::double precision <= 10 THEN '10' WHEN (r.detail ->> 'run_seconds')::double precision <= 30 THEN '30' WHEN (r.detail ->> 'run_seconds')::double precision <= 60 THEN '60' WHEN (r.detail ->> 'run_seconds')::double precision <= 300 THEN '300' WHEN (r.detail ->> 'run_seconds')::double precision <= 1800 THEN '1800' WHEN (r.detail ->> 'run_seconds')::double precision <= 3600 THEN '3600' ELSE '+Inf' END, NULL FROM new_rows r WHERE r.event = 'completed' AND jsonb_typeof(r.detail -> 'run_seconds') = 'number') d
    GROUP BY d.tenant_id, d.counter
    ORDER BY d.tenant_id, d.counter
    ON CONFLICT (tenant_id, counter, shard) DO UPDATE
        SET n = work_event_counts.n + excluded.n, total = work_event_counts.total + excluded.total;

    INSERT INTO work_event_hourly (tenant_id, hour, event, shard, n)
    SELECT r.tenant_id, date_trunc('hour', r.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           r.event, my_shard, count(*)
    FROM new_rows r WHERE r.event IN ('completed', 'failed', 'retried')
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, hour, event, shard) DO UPDATE
        SET n = work_event_hourly.n + excluded.n;
    RETURN NULL;
END $function$;

CREATE OR REPLACE FUNCTION public.nexus_count_work()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
    DECLARE
        -- One shard per backend: concurrent transactions update different counter rows.
        my_shard integer := pg_backend_pid() % 64;
    BEGIN
        -- Statement triggers fire for statements that changed no row: nothing to do then.
        IF TG_OP = 'DELETE' THEN
            PERFORM 1 FROM old_rows LIMIT 1;
        ELSE
            PERFORM 1 FROM new_rows LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'INSERT' THEN
            INSERT INTO work_counters (tenant_id, counter, shard, n)
            SELECT t, c, my_shard, sum(d) FROM (SELECT r.tenant_id AS t, r.status AS c, 1 AS d FROM new_rows r
                UNION ALL SELECT r.tenant_id, CASE WHEN r.unresolved_count > 0 AND r.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN r.status = 'ready' THEN 'eligible' END, 1 FROM new_rows r) deltas
            WHERE c IS NOT NULL
            GROUP BY t, c HAVING sum(d) <> 0
            ORDER BY t, c
            ON CONFLICT (tenant_id, counter, shard) DO UPDATE SET n = work_counters.n + excluded.n;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO work_counters (tenant_id, counter, shard, n)
            SELECT t, c, my_shard, sum(d) FROM (SELECT r.tenant_id AS t, r.status AS c, -1 AS d FROM old_rows r
                UNION ALL SELECT r.tenant_id, CASE WHEN r.unresolved_count > 0 AND r.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN r.status = 'ready' THEN 'eligible' END, -1 FROM old_rows r) deltas
            WHERE c IS NOT NULL
            GROUP BY t, c HAVING sum(d) <> 0
            ORDER BY t, c
            ON CONFLICT (tenant_id, counter, shard) DO UPDATE SET n = work_counters.n + excluded.n;
        ELSE
            INSERT INTO work_counters (tenant_id, counter, shard, n)
            SELECT t, c, my_shard, sum(d) FROM (SELECT r.tenant_id AS t, r.status AS c, -1 AS d FROM old_rows r
                UNION ALL SELECT r.tenant_id, CASE WHEN r.unresolved_count > 0 AND r.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN r.status = 'ready' THEN 'eligible' END, -1 FROM old_rows r
                UNION ALL SELECT r.tenant_id AS t, r.status AS c, 1 AS d FROM new_rows r
                UNION ALL SELECT r.tenant_id, CASE WHEN r.unresolved_count > 0 AND r.status IN ('ready', 'pending', 'blocked') THEN 'waiting' WHEN r.status = 'ready' THEN 'eligible' END, 1 FROM new_rows r) deltas
            WHERE c IS NOT NULL
            GROUP BY t, c HAVING sum(d) <> 0
            ORDER BY t, c
            ON CONFLICT (tenant_id, counter, shard) DO UPDATE SET n = work_counters.n + excluded.n;
        END IF;
        RETURN NULL;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_current_tenant()
 RETURNS text
 LANGUAGE sql
 STABLE
AS $function$ SELECT coalesce((SELECT r.tenant_id FROM nexus_role_tenants r WHERE r.role_name = current_user), nullif(current_setting('nexus.tenant_id', true), '')) $function$;

CREATE OR REPLACE FUNCTION public.nexus_delete_path_metadata()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
    BEGIN
        -- Deleting a key through path_metadata deletes it wherever it lives.
        DELETE FROM file_metadata WHERE path_id = OLD.path_id AND key = OLD.key;
        IF OLD.key = 'status' THEN
            DELETE FROM work_items WHERE path_id = OLD.path_id;
        ELSIF OLD.key = 'worker_id' THEN
            UPDATE work_items SET worker_id = NULL WHERE path_id = OLD.path_id;
        ELSIF OLD.key = 'started_at' THEN
            UPDATE work_items SET started_at = NULL WHERE path_id = OLD.path_id;
        ELSIF OLD.key IN ('priority', 'tags') THEN
            -- Made inside a trigger, the DELETE above is not projected by itself.
            PERFORM nexus_refresh_projected(ARRAY[OLD.path_id]);
        ELSIF OLD.key = 'depends_on' THEN
            PERFORM nexus_rebuild_edges(ARRAY[OLD.path_id]);
        END IF;
        RETURN OLD;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_lock_refs(p_refs text[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
    BEGIN
        -- Serialises a change of a dependency target's completed-ness with concurrent
        -- writers of edges naming it, so neither counts from a stale snapshot. Bucketed:
        -- a bulk transaction holds at most 512 locks, taken in bucket
        -- order. PL/pgSQL keeps the plan (a SQL function would plan it at every call).
        PERFORM pg_advisory_xact_lock(7400001, h) FROM (
            SELECT DISTINCT abs(hashtext(r) % 512) AS h
            FROM unnest(p_refs) AS r WHERE r IS NOT NULL ORDER BY 1) AS locks;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_notify_ready()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
            BEGIN
                PERFORM pg_notify('nexus_work_ready', '');
                RETURN NULL;
            END $function$;

CREATE OR REPLACE FUNCTION public.nexus_parse_ts(s text)
 RETURNS timestamp with time zone
 LANGUAGE plpgsql
 STABLE
AS $function$
    DECLARE
        y integer;
        m integer;
        d integer;
        parsed timestamptz;
    BEGIN
        -- Exactly the forms SQLite's date functions read, so both databases project alike;
        -- anything else (and impossible dates) is NULL rather than an error in a trigger.
        IF s IS NULL OR s !~ '^\d{4}-\d{2}-\d{2}([ T]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$' THEN
            RETURN NULL;
        END IF;
        y := substr(s, 1, 4)::integer;
        m := substr(s, 6, 2)::integer;
        d := substr(s, 9, 2)::integer;
        IF y < 1 OR m < 1 OR m > 12 OR d < 1
           OR d > extract(day FROM make_date(y, m, 1) + interval '1 month - 1 day') THEN
            RETURN NULL;
        END IF;
        IF s ~ '([Zz]|[+-]\d{2}:\d{2})$' THEN
            parsed := s::timestamptz;
        ELSE
            -- Naive timestamps are UTC, as on SQLite.
            parsed := s::timestamp AT TIME ZONE 'UTC';
        END IF;
        RETURN date_trunc('milliseconds', parsed);
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_priority_of(v jsonb)
 RETURNS bigint
 LANGUAGE sql
 IMMUTABLE
AS $function$
        SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}') ~ '^-?\d{1,19}$'
                         AND (v #>> '{}')::numeric
                             BETWEEN -9223372036854775808 AND 9223372036854775807
                    THEN (v #>> '{}')::bigint END
    $function$;

CREATE OR REPLACE FUNCTION public.nexus_project_metadata()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
    DECLARE
        routed text[];
        projected text[];
        edges text[];
    BEGIN
        -- Writes made by nexus's own rules (routing, a path's soft delete) are final.
        IF pg_trigger_depth() > 1 THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'DELETE' THEN
            SELECT array_agg(DISTINCT path_id) FILTER (WHERE key IN ('priority', 'tags')),
                   array_agg(DISTINCT path_id) FILTER (WHERE key = 'depends_on')
            INTO projected, edges FROM old_rows;
            -- Deleting a routed key's pointer (plain SQL) deletes the key.
            DELETE FROM work_items w USING old_rows o
            WHERE o.key = 'status' AND o.value = '{"$nexus":"work_items"}'::jsonb
              AND w.path_id = o.path_id;
            UPDATE work_items w SET worker_id = NULL FROM old_rows o
            WHERE o.key = 'worker_id' AND o.value = '{"$nexus":"work_items"}'::jsonb
              AND w.path_id = o.path_id;
            UPDATE work_items w SET started_at = NULL FROM old_rows o
            WHERE o.key = 'started_at' AND o.value = '{"$nexus":"work_items"}'::jsonb
              AND w.path_id = o.path_id;
        ELSE
            SELECT array_agg(DISTINCT path_id)
                       FILTER (WHERE key IN ('status', 'worker_id', 'started_at')
                               AND value <> '{"$nexus":"work_items"}'::jsonb),
                   array_agg(DISTINCT path_id) FILTER (WHERE key IN ('priority', 'tags')),
                   array_agg(DISTINCT path_id) FILTER (WHERE key = 'depends_on')
            INTO routed, projected, edges FROM new_rows;
            IF TG_OP = 'UPDATE' THEN
                -- Rows moved away from a key or path (plain SQL only) leave it too.
                SELECT array_cat(projected, array_agg(DISTINCT o.path_id)
                                 FILTER (WHERE o.key IN ('priority', 'tags'))),
                       array_cat(edges, array_agg(DISTINCT o.path_id)
                                 FILTER (WHERE o.key = 'depends_on'))
                INTO projected, edges
                FROM old_rows o
                WHERE NOT EXISTS (SELECT 1 FROM new_rows n
                                  WHERE n.path_id = o.path_id AND n.key = o.key);
            END IF;
        END IF;
        IF edges IS NOT NULL THEN
            PERFORM nexus_rebuild_edges(edges);
        END IF;
        IF projected IS NOT NULL AND TG_OP = 'INSERT' THEN
            -- New rows carry the values: no look-up (an enqueue's rows change nothing).
            UPDATE work_items w SET priority = nexus_priority_of(n.value)
            FROM new_rows n
            WHERE n.key = 'priority' AND w.path_id = n.path_id
              AND w.priority IS DISTINCT FROM nexus_priority_of(n.value);
            UPDATE work_items w SET tags = nexus_tags_of(n.value)
            FROM new_rows n
            WHERE n.key = 'tags' AND w.path_id = n.path_id
              AND w.tags IS DISTINCT FROM nexus_tags_of(n.value);
        ELSIF projected IS NOT NULL THEN
            PERFORM nexus_refresh_projected(projected);
        END IF;
        IF routed IS NOT NULL THEN
            PERFORM nexus_route(routed);
        END IF;
        RETURN NULL;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_project_path()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM work_items WHERE path_id = OLD.path_id;
            -- No foreign key (its check would lock the path at every history row).
            DELETE FROM work_history WHERE path_id = OLD.path_id;
            PERFORM nexus_resolve(ARRAY[OLD.path_id, OLD.virtual_path], ARRAY[OLD.tenant_id]);
            RETURN NULL;
        END IF;
        IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
            UPDATE work_dependencies SET tenant_id = NEW.tenant_id WHERE path_id = NEW.path_id;
        END IF;
        IF NEW.deleted_at IS NOT NULL THEN
            PERFORM nexus_unroute(NEW.path_id);
        ELSE
            UPDATE work_items SET tenant_id = NEW.tenant_id, created_at = NEW.created_at
            WHERE path_id = NEW.path_id
              AND (tenant_id, created_at) IS DISTINCT FROM (NEW.tenant_id, NEW.created_at);
            IF OLD.deleted_at IS NOT NULL THEN
                PERFORM nexus_route(ARRAY[NEW.path_id]);
            END IF;
            UPDATE work_items SET unresolved_count = nexus_blocker_count(path_id)
            WHERE path_id = NEW.path_id;
        END IF;
        PERFORM nexus_resolve(ARRAY[NEW.path_id, OLD.virtual_path, NEW.virtual_path],
                              ARRAY[OLD.tenant_id, NEW.tenant_id]);
        RETURN NULL;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_promote_work()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
    BEGIN
        -- A row trigger whose WHEN clause (evaluated without calling this function) admits
        -- only a blocked row whose last blocker just resolved: claims and completions pay
        -- nothing for it.
        UPDATE work_items SET status = 'ready'
        WHERE path_id = NEW.path_id AND status = 'blocked' AND unresolved_count = 0;
        IF FOUND THEN
            INSERT INTO work_history (path_id, tenant_id, event, at)
            VALUES (NEW.path_id, NEW.tenant_id, 'promoted', date_trunc('milliseconds', now()));
        END IF;
        RETURN NULL;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_rebuild_edges(p_ids text[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
    BEGIN
        DELETE FROM work_dependencies d USING unnest(p_ids) AS t(id) WHERE d.path_id = t.id;
        INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
        SELECT DISTINCT m.path_id, r.ref, p.tenant_id
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata m ON m.path_id = t.id AND m.key = 'depends_on'
        JOIN file_paths p ON p.path_id = m.path_id,
        LATERAL (
            SELECT m.value #>> '{}' AS ref WHERE jsonb_typeof(m.value) = 'string'
            UNION ALL
            SELECT e #>> '{}' FROM jsonb_array_elements(
                CASE WHEN jsonb_typeof(m.value) = 'array' THEN m.value ELSE '[]'::jsonb END) e
            WHERE jsonb_typeof(e) = 'string'
        ) r
        WHERE true;
        PERFORM nexus_lock_refs(ARRAY(SELECT d.depends_on_ref
                                      FROM unnest(p_ids) AS t(id)
                                      JOIN work_dependencies d ON d.path_id = t.id));
        UPDATE work_items w SET unresolved_count = nexus_blocker_count(w.path_id)
        FROM unnest(p_ids) AS t(id)
        WHERE w.path_id = t.id
          AND w.unresolved_count IS DISTINCT FROM nexus_blocker_count(w.path_id);
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_record_enqueued()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
    BEGIN
        -- Statement triggers fire for statements that changed no row: nothing to do then.
        IF TG_OP = 'DELETE' THEN
            PERFORM 1 FROM old_rows LIMIT 1;
        ELSE
            PERFORM 1 FROM new_rows LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        INSERT INTO work_history (path_id, tenant_id, event, at, detail)
        SELECT path_id, tenant_id, 'enqueued', date_trunc('milliseconds', now()),
               jsonb_build_object('status', status)
        FROM new_rows ORDER BY path_id;
        RETURN NULL;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_refresh_projected(p_ids text[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
    BEGIN
        UPDATE work_items w SET priority = (SELECT nexus_priority_of(m.value) FROM file_metadata m WHERE m.path_id = w.path_id AND m.key = 'priority'),
                                tags = (SELECT nexus_tags_of(m.value) FROM file_metadata m WHERE m.path_id = w.path_id AND m.key = 'tags')
        FROM unnest(p_ids) AS t(id)
        WHERE w.path_id = t.id
          AND (w.priority, w.tags) IS DISTINCT FROM
              ((SELECT nexus_priority_of(m.value) FROM file_metadata m WHERE m.path_id = w.path_id AND m.key = 'priority'), (SELECT nexus_tags_of(m.value) FROM file_metadata m WHERE m.path_id = w.path_id AND m.key = 'tags'));
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_resolve(p_refs text[], p_tenants text[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
    BEGIN
        IF coalesce(array_length(p_refs, 1), 0) = 0 THEN
            RETURN;
        END IF;
        PERFORM nexus_lock_refs(p_refs);
        -- A new statement, so a fresh snapshot: it sees edges committed while we waited.
        -- Most items have no dependents: then no UPDATE (whose triggers would run for
        -- nothing) is issued at all.
        PERFORM 1 FROM unnest(p_refs) AS r(ref)
        JOIN work_dependencies d ON d.depends_on_ref = r.ref LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        -- Lock the dependents first: a concurrent resolution of another of their
        -- dependencies is then committed before the recount below, which runs in a new
        -- statement (a fresh snapshot) and so counts it.
        PERFORM 1 FROM work_items w
        WHERE w.path_id IN (SELECT d.path_id FROM unnest(p_refs) AS r(ref)
                            JOIN work_dependencies d ON d.depends_on_ref = r.ref
                            WHERE d.tenant_id = ANY (p_tenants))
        ORDER BY w.path_id
        FOR UPDATE OF w;
        UPDATE work_items w SET unresolved_count = nexus_blocker_count(w.path_id)
        WHERE w.path_id IN (SELECT d.path_id FROM unnest(p_refs) AS r(ref)
                            JOIN work_dependencies d ON d.depends_on_ref = r.ref
                            WHERE d.tenant_id = ANY (p_tenants))
          AND w.unresolved_count IS DISTINCT FROM nexus_blocker_count(w.path_id);
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_resolve_work()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
    DECLARE
        refs text[];
        tenants text[];
    BEGIN
        -- Statement triggers fire for statements that changed no row: nothing to do then.
        IF TG_OP = 'DELETE' THEN
            PERFORM 1 FROM old_rows LIMIT 1;
        ELSE
            PERFORM 1 FROM new_rows LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(r.ref), array_agg(DISTINCT c.tenant_id) INTO refs, tenants
            FROM (SELECT path_id, tenant_id FROM new_rows WHERE status = 'completed') c
            JOIN file_paths p ON p.path_id = c.path_id,
            LATERAL (VALUES (c.path_id), (p.virtual_path)) AS r(ref);
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(r.ref), array_agg(DISTINCT c.tenant_id) INTO refs, tenants
            FROM (SELECT path_id, tenant_id FROM old_rows WHERE status = 'completed') c
            LEFT JOIN file_paths p ON p.path_id = c.path_id,
            LATERAL (VALUES (c.path_id), (p.virtual_path)) AS r(ref);
        ELSE
            SELECT array_agg(r.ref), array_agg(DISTINCT c.tenant_id) INTO refs, tenants
            FROM (SELECT n.path_id, n.tenant_id FROM new_rows n
                  JOIN old_rows o ON o.path_id = n.path_id
                  WHERE (n.status = 'completed') IS DISTINCT FROM (o.status = 'completed')) c
            JOIN file_paths p ON p.path_id = c.path_id,
            LATERAL (VALUES (c.path_id), (p.virtual_path)) AS r(ref);
        END IF;
        IF refs IS NOT NULL THEN
            PERFORM nexus_resolve(refs, tenants);
        END IF;
        RETURN NULL;
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_route(p_ids text[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
    BEGIN
        -- Route the routed keys of p_ids found in file_metadata into their work rows: a
        -- valid status updates or creates the row (built from the path's metadata), an
        -- invalid one removes it; routed rows then hold the pointer (ROUTED).
        -- Every statement is driven by unnest(p_ids) joined on primary keys: a plan that
        -- stays right when a bulk load has left the tables without statistics.
        UPDATE work_items w SET status = nexus_status_of(s.value)
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata s ON s.path_id = t.id AND s.key = 'status'
        WHERE w.path_id = t.id AND nexus_status_of(s.value) IS NOT NULL
          AND w.status IS DISTINCT FROM nexus_status_of(s.value);
        INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags,
                                worker_id, started_at, attempts, unresolved_count)
        SELECT p.path_id, p.tenant_id, p.created_at, nexus_status_of(s.value),
               (SELECT nexus_priority_of(m.value) FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'priority'), (SELECT nexus_tags_of(m.value) FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'tags'),
               (SELECT nexus_text_of(m.value) FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'worker_id'), (SELECT nexus_ts_of(m.value) FROM file_metadata m WHERE m.path_id = p.path_id AND m.key = 'started_at'),
               0, nexus_blocker_count(p.path_id)
        FROM unnest(p_ids) AS t(id)
        JOIN file_paths p ON p.path_id = t.id
        JOIN file_metadata s ON s.path_id = t.id AND s.key = 'status'
        WHERE p.deleted_at IS NULL AND nexus_status_of(s.value) IS NOT NULL
        ORDER BY p.path_id
        ON CONFLICT (path_id) DO NOTHING;
        DELETE FROM work_items w USING unnest(p_ids) AS t(id), file_metadata s
        WHERE w.path_id = t.id AND s.path_id = t.id AND s.key = 'status'
          AND nexus_status_of(s.value) IS NULL AND s.value <> '{"$nexus":"work_items"}'::jsonb;
        -- A worker_id/started_at row present is the value (NULL when it has the wrong type).
        UPDATE work_items w SET worker_id = nexus_text_of(m.value)
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata m ON m.path_id = t.id AND m.key = 'worker_id'
        WHERE w.path_id = t.id AND m.value <> '{"$nexus":"work_items"}'::jsonb
          AND w.worker_id IS DISTINCT FROM nexus_text_of(m.value);
        UPDATE work_items w SET started_at = nexus_ts_of(m.value)
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata m ON m.path_id = t.id AND m.key = 'started_at'
        WHERE w.path_id = t.id AND m.value <> '{"$nexus":"work_items"}'::jsonb
          AND w.started_at IS DISTINCT FROM nexus_ts_of(m.value);
        UPDATE file_metadata m SET value = '{"$nexus":"work_items"}'::jsonb
        FROM unnest(p_ids) AS t(id)
        WHERE m.path_id = t.id AND m.key IN ('status', 'worker_id', 'started_at')
          AND m.value <> '{"$nexus":"work_items"}'::jsonb
          AND EXISTS (SELECT 1 FROM work_items w WHERE w.path_id = t.id)
          AND EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = t.id
                      AND p.deleted_at IS NULL)
          AND ((m.key = 'status' AND nexus_status_of(m.value) IS NOT NULL)
               OR (m.key = 'worker_id' AND nexus_text_of(m.value) IS NOT NULL)
               OR (m.key = 'started_at' AND nexus_ts_of(m.value) IS NOT NULL));
    END $function$;

CREATE OR REPLACE FUNCTION public.nexus_status_of(v jsonb)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
AS $function$
        SELECT CASE WHEN jsonb_typeof(v) = 'string' AND (v #>> '{}') IN ('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed')
                    THEN v #>> '{}' END
    $function$;

CREATE OR REPLACE FUNCTION public.nexus_tags_of(v jsonb)
 RETURNS jsonb
 LANGUAGE sql
 IMMUTABLE
AS $function$
        SELECT CASE WHEN jsonb_typeof(v) = 'array'
                         AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v) e
                                         WHERE jsonb_typeof(e) <> 'string')
                    THEN v END
    $function$;

CREATE OR REPLACE FUNCTION public.nexus_text_of(v jsonb)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
AS $function$
        SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END
    $function$;

CREATE OR REPLACE FUNCTION public.nexus_ts_of(v jsonb)
 RETURNS timestamp with time zone
 LANGUAGE sql
 STABLE
AS $function$
        SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN nexus_parse_ts(v #>> '{}') END
    $function$;

CREATE OR REPLACE FUNCTION public.nexus_unroute(p_path_id text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
    BEGIN
        -- A path leaving the live set: its routed keys go back to file_metadata.
        INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
        SELECT w.path_id, k.key, k.value, now(), now()
        FROM work_items w CROSS JOIN LATERAL (VALUES
            ('status', to_jsonb(w.status)),
            ('worker_id', to_jsonb(w.worker_id)),
            ('started_at', to_jsonb(to_char(w.started_at AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.MS') || '+00:00'))
        ) AS k(key, value)
        WHERE w.path_id = p_path_id AND k.value IS NOT NULL AND k.value <> 'null'::jsonb
        ON CONFLICT (path_id, key) DO UPDATE
            SET value = excluded.value, updated_at = excluded.updated_at;
        DELETE FROM work_items WHERE path_id = p_path_id;
    END $function$;


-- Triggers (by table or view)

CREATE TRIGGER trg_nexus_project_delete AFTER DELETE ON file_metadata REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_project_metadata();

CREATE TRIGGER trg_nexus_project_insert AFTER INSERT ON file_metadata REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_project_metadata();

CREATE TRIGGER trg_nexus_project_update AFTER UPDATE ON file_metadata REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_project_metadata();

CREATE TRIGGER trg_nexus_project_path_delete AFTER DELETE ON file_paths FOR EACH ROW EXECUTE FUNCTION nexus_project_path();

CREATE TRIGGER trg_nexus_project_path_update AFTER UPDATE OF deleted_at, virtual_path, tenant_id, created_at ON file_paths FOR EACH ROW WHEN (old.deleted_at IS DISTINCT FROM new.deleted_at OR old.virtual_path IS DISTINCT FROM new.virtual_path OR old.tenant_id::text IS DISTINCT FROM new.tenant_id::text OR old.created_at IS DISTINCT FROM new.created_at) EXECUTE FUNCTION nexus_project_path();

CREATE TRIGGER trg_nexus_path_metadata_delete INSTEAD OF DELETE ON path_metadata FOR EACH ROW EXECUTE FUNCTION nexus_delete_path_metadata();

CREATE TRIGGER trg_nexus_event_counts AFTER INSERT ON work_history REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_count_events();

CREATE TRIGGER trg_nexus_count_delete AFTER DELETE ON work_items REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_count_work();

CREATE TRIGGER trg_nexus_count_insert AFTER INSERT ON work_items REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_count_work();

CREATE TRIGGER trg_nexus_count_update AFTER UPDATE ON work_items REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_count_work();

CREATE TRIGGER trg_nexus_enqueued_insert AFTER INSERT ON work_items REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_record_enqueued();

CREATE TRIGGER trg_nexus_promote AFTER UPDATE OF unresolved_count ON work_items FOR EACH ROW WHEN (new.unresolved_count = 0 AND old.unresolved_count > 0 AND new.status::text = 'blocked'::text) EXECUTE FUNCTION nexus_promote_work();

CREATE TRIGGER trg_nexus_resolve_delete AFTER DELETE ON work_items REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_resolve_work();

CREATE TRIGGER trg_nexus_resolve_insert AFTER INSERT ON work_items REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_resolve_work();

CREATE TRIGGER trg_nexus_resolve_update AFTER UPDATE ON work_items REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nexus_resolve_work();

CREATE TRIGGER trg_work_items_notify_insert AFTER INSERT ON work_items FOR EACH ROW WHEN (new.status::text = 'ready'::text AND new.unresolved_count = 0) EXECUTE FUNCTION nexus_notify_ready();

CREATE TRIGGER trg_work_items_notify_update AFTER UPDATE OF status, unresolved_count, run_after ON work_items FOR EACH ROW WHEN (new.status::text = 'ready'::text AND new.unresolved_count = 0 AND (old.status::text <> 'ready'::text OR old.unresolved_count <> 0 OR old.run_after IS DISTINCT FROM new.run_after)) EXECUTE FUNCTION nexus_notify_ready();


-- Row-level security

ALTER TABLE nexus_role_tenants ENABLE ROW LEVEL SECURITY;

CREATE POLICY nexus_tenant_isolation ON file_metadata
    USING ((EXISTS ( SELECT 1
   FROM file_paths p
  WHERE p.path_id::text = file_metadata.path_id::text AND p.tenant_id::text = COALESCE(( SELECT r.tenant_id
           FROM nexus_role_tenants r
          WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)))
    WITH CHECK ((EXISTS ( SELECT 1
   FROM file_paths p
  WHERE p.path_id::text = file_metadata.path_id::text AND p.tenant_id::text = COALESCE(( SELECT r.tenant_id
           FROM nexus_role_tenants r
          WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)));

CREATE POLICY nexus_tenant_isolation ON file_paths
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);

CREATE POLICY nexus_own_pin ON nexus_role_tenants FOR SELECT
    USING (role_name = CURRENT_USER);

CREATE POLICY nexus_tenant_isolation ON work_counters
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);

CREATE POLICY nexus_tenant_isolation ON work_dependencies
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);

CREATE POLICY nexus_tenant_isolation ON work_event_counts
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);

CREATE POLICY nexus_tenant_isolation ON work_event_hourly
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);

CREATE POLICY nexus_tenant_isolation ON work_history
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);

CREATE POLICY nexus_tenant_isolation ON work_idempotency
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);

CREATE POLICY nexus_tenant_isolation ON work_items
    USING (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text)
    WITH CHECK (tenant_id::text = COALESCE(( SELECT r.tenant_id
   FROM nexus_role_tenants r
  WHERE r.role_name = CURRENT_USER), NULLIF(current_setting('nexus.tenant_id'::text, true), ''::text)::character varying)::text);


-- Grants (to roles other than the owner)

GRANT SELECT ON TABLE nexus_role_tenants TO PUBLIC;
