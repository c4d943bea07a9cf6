"""Escape attempts against the SQL sandbox, per dialect; ``{port}`` is a loopback listener that must
never see a connection, ``{lake}`` the lake's folder, ``{catalog}`` its SQLite catalog.

Each is either refused before it runs or, for the resource attacks (RUNAWAY), stopped inside its
time or memory limit."""

from __future__ import annotations

# Attempts every dialect shares (the sandbox applies one set of rules).
COMMON = [
    # several statements, and statements that are not a SELECT
    "SELECT 1; SELECT 2",
    "SELECT count(*) FROM events; DROP TABLE events",
    "SELECT count(*) FROM events /* ; */ ; DELETE FROM events",
    "DELETE FROM events",
    "DROP TABLE events",
    "INSERT INTO events SELECT * FROM events",
    "UPDATE events SET body = ''",
    "CREATE TABLE x AS SELECT 1",
    "CREATE VIEW v AS SELECT * FROM events",
    "ALTER TABLE events ADD COLUMN x INT",
    "TRUNCATE TABLE events",
    "SET max_memory_usage = 0",
    "EXPLAIN SELECT * FROM events",
    "SHOW TABLES",
    "DESCRIBE events",
    # other tables: system catalogues, information schema, qualified names, CTE shadowing
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM INFORMATION_SCHEMA.COLUMNS",
    'SELECT * FROM "information_schema"."tables"',
    "SELECT * FROM main.events",
    "SELECT * FROM lakebench.events",
    "WITH events AS (SELECT 1 AS x) SELECT * FROM events",
    "SELECT * FROM events WHERE entity_id IN (SELECT table_name FROM information_schema.tables)",
    "SELECT * FROM events e JOIN information_schema.tables t ON true",
    # a CTE of the same name, visible elsewhere, must not make a table legal where it is read
    "SELECT * FROM secrets, (WITH secrets AS (SELECT 1) SELECT 1) AS x",
    "WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1) SELECT * FROM a",
    "SELECT (SELECT count(*) FROM secrets) FROM (WITH secrets AS (SELECT 1) SELECT 1) AS x",
    # named and numbered parameters instead of '?'
    "SELECT * FROM events WHERE entity_id = $1",
    "SELECT * FROM events WHERE entity_id = :id",
]

# DuckDB (lake-sql, lake-indexed).
DUCKDB = [
    *COMMON,
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM \"read_csv\"('/etc/passwd')",
    "SELECT * FROM read_csv/**/('/etc/passwd')",
    "SELECT * FROM READ_CSV_AUTO('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT name, setting FROM pg_settings, (WITH pg_settings AS (SELECT 1) SELECT 1) AS x",
    'SELECT * FROM "{lake}/dlq/*/*.ndjson", (WITH "{lake}/dlq/*/*.ndjson" AS (SELECT 1) SELECT 1) AS x',
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_parquet('{lake}/events/data/*.parquet')",
    "SELECT * FROM parquet_metadata('{lake}/events/data/x.parquet')",
    "SELECT * FROM iceberg_scan('{lake}/events')",
    "SELECT * FROM sqlite_scan('{catalog}', 'iceberg_tables')",
    "SELECT * FROM read_json_auto('http://127.0.0.1:{port}/x.json')",
    "SELECT * FROM read_csv('http://127.0.0.1:{port}/x.csv')",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "SELECT * FROM events UNION ALL SELECT * FROM read_csv('http://127.0.0.1:{port}/y.csv')",
    "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x",
    "SELECT (SELECT content FROM read_text('/etc/passwd'))",
    "SELECT * FROM events, LATERAL read_csv('/etc/passwd')",
    "SELECT * FROM events JOIN read_csv('/etc/passwd') ON true",
    "SELECT * FROM query_table('events')",
    "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM pragma_version()",
    "SELECT current_setting('allowed_directories')",
    "SELECT getenv('HOME')",
    "SELECT getvariable('x')",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET memory_limit",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "ATTACH '/tmp/lakebench-attack.db' AS x",
    "ATTACH 'postgres:host=127.0.0.1 port={port}' AS pg (TYPE postgres)",
    "COPY events TO '/tmp/lakebench-attack.csv'",
    "COPY (SELECT 1) TO 'http://127.0.0.1:{port}/out.csv'",
    "EXPORT DATABASE '/tmp/lakebench-attack'",
    "INSTALL httpfs",
    "LOAD '/tmp/x.duckdb_extension'",
    "CREATE SECRET s (TYPE s3, ENDPOINT '127.0.0.1:{port}')",
    "SELECT range(1000000000000)",
    "SELECT repeat('x', 2000000000)",
    "SELECT lpad('x', 2000000000, 'y')",
]

# ClickHouse (chDB).
CLICKHOUSE = [
    *COMMON,
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM `file`('/etc/passwd', 'LineAsString')",
    "SELECT * FROM \"file\"('/etc/passwd', 'LineAsString')",
    "SELECT * FROM file/**/('/etc/passwd', 'LineAsString')",
    "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/passwd')",
    "SELECT * FROM file('{lake}/events/data/**/*.parquet')",
    "SELECT * FROM sqlite('{catalog}', 'iceberg_tables')",
    "SELECT * FROM url('http://127.0.0.1:{port}/x', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:{port}/b/k', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1:{port}', system.one)",
    "SELECT * FROM remoteSecure('127.0.0.1:{port}', system.one)",
    "SELECT * FROM mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
    "SELECT * FROM mongodb('127.0.0.1:{port}', 'db', 'c', 'u', 'p', 'x String')",
    "SELECT * FROM redis('127.0.0.1:{port}', 'k', 'k String')",
    "SELECT * FROM hdfs('hdfs://127.0.0.1:{port}/x', 'TSV', 'a String')",
    "SELECT * FROM azureBlobStorage('http://127.0.0.1:{port}/a', 'c', 'b')",
    "SELECT * FROM odbc('DSN=x', 't')",
    "SELECT * FROM executable('x.sh', 'TSV', 'a String')",
    "SELECT * FROM input('a String')",
    "SELECT * FROM numbers(1000000000000)",
    "SELECT * FROM generateRandom('a String')",
    "SELECT * FROM merge(currentDatabase(), '.*')",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM system.tables",
    'SELECT * FROM "system"."tables"',
    "SELECT * FROM `system`.`one`",
    "SELECT * FROM events WHERE entity_id IN (SELECT name FROM system.tables)",
    "SELECT 0 IN system.one",
    "SELECT count() FROM events WHERE entity_id IN system.tables",
    "SELECT system.one.dummy FROM events",
    "SELECT * FROM events UNION ALL SELECT * FROM url('http://127.0.0.1:{port}/u', 'LineAsString')",
    "WITH x AS (SELECT * FROM file('/etc/passwd', 'LineAsString')) SELECT * FROM x",
    "SELECT count() FROM events SETTINGS max_execution_time = 0",
    "SELECT count() FROM events SETTINGS readonly = 0, max_memory_usage = 0",
    "SELECT count() FROM (SELECT * FROM events SETTINGS max_execution_time = 0)",
    "SELECT count() FROM events /*",
    "SELECT * FROM events FORMAT TSV",
    "SELECT * FROM events INTO OUTFILE '/tmp/lakebench-attack'",
    "INSERT INTO FUNCTION file('/tmp/lakebench-attack') SELECT 1",
    "SELECT getSetting('max_memory_usage')",
    "SELECT currentDatabase(), hostName(), version()",
    "SELECT dictGet('d', 'a', 1)",
    "SELECT joinGet('j', 'a', 1)",
    "SELECT arrayWithConstant(1000000000, 'x')",
    "SELECT sleep(3)",
    "SYSTEM SHUTDOWN",
    "SELECT @@version",
    "SELECT * FROM events WHERE entity_id = {id:String}",
    "KILL QUERY WHERE 1",
]

# R2 SQL (Apache DataFusion, PostgreSQL-like); the test stand-in executes on DuckDB.
R2SQL = [
    *COMMON,
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT lo_import('/etc/passwd')",
    "COPY events FROM '/etc/passwd'",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "SELECT * FROM dblink('host=127.0.0.1 port={port}', 'SELECT 1') AS t(x int)",
    "SELECT * FROM postgres_scan('host=127.0.0.1 port={port}', 'public', 't')",
    "SELECT * FROM read_csv('http://127.0.0.1:{port}/x.csv')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM pg_catalog.pg_tables",
    "SELECT * FROM pg_tables",
    "SELECT current_setting('data_directory')",
    "SELECT set_config('x', 'y', false)",
    "SELECT * FROM generate_series(1, 1000000000000)",
    "SELECT pg_sleep(10)",
    "SELECT version()",
    "SHOW ALL",
    "SET statement_timeout = 0",
    "SELECT @@version",
    "SELECT * FROM pg_stat_activity",
    "SELECT inet_server_addr()",
]

# Queries that pass the checks and must be stopped by the time or memory limit while running.
RUNAWAY = {
    "duckdb": [
        "SELECT count(*) FROM events a, events b, events c, events d, events e",
        "SELECT string_agg(a.body || b.body || c.body, '') FROM events a, events b, events c",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        # one value amplified past any buffer DuckDB tracks: only the worker's OS limit stops it
        "SELECT length(replace(replace(body, ' ', body), ' ', replace(body, ' ', body))) FROM events",
    ],
    "clickhouse": [
        "SELECT count() FROM events a, events b, events c, events d, events e",
        # a trailing comment would cut off a SETTINGS clause appended to the text; not to the parse tree
        "SELECT count() FROM events a, events b, events c, events d, events e --",
        "SELECT length(groupArray(concat(a.body, b.body, c.body))) FROM events a, events b, events c",
        "SELECT length(replaceAll(replaceAll(body, ' ', body), ' ', replaceAll(body, ' ', body))) FROM events",
    ],
    "postgres": [
        "SELECT count(*) FROM events a, events b, events c, events d, events e",
    ],
}

# Ordinary questions a user asks: the sandbox must let them through on every engine.
LEGITIMATE = {
    "duckdb": [
        "SELECT entity_ns, count(*) AS n FROM events WHERE ts >= ? GROUP BY 1 ORDER BY n DESC",
        "SELECT date_trunc('day', ts) AS d, count(*) FROM events GROUP BY d ORDER BY d",
        "SELECT entity_id, row_number() OVER (PARTITION BY entity_ns ORDER BY ts DESC) AS rn FROM events "
        "QUALIFY rn = 1",
        "WITH latest AS (SELECT * FROM events WHERE type <> 'delete') SELECT count(DISTINCT entity_id) FROM latest",
        "SELECT json_extract_string(attributes, '$.n') AS n FROM events WHERE attributes IS NOT NULL LIMIT 5",
        "SELECT e.entity_id, length(e.body) FROM events e WHERE e.entity_id LIKE ? ORDER BY 2 DESC LIMIT 3",
    ],
    "clickhouse": [
        "SELECT entity_ns, count() AS n FROM events WHERE entity_ns <> ? GROUP BY entity_ns ORDER BY n DESC",
        "SELECT toDate(ts) AS d, count() FROM events GROUP BY d ORDER BY d",
        "SELECT entity_id FROM events ORDER BY ts DESC LIMIT 1 BY entity_ns, entity_id",
        "SELECT uniqExact(entity_id), argMax(title, ts) FROM events",
        "SELECT JSONExtractString(attributes, 'id') FROM events WHERE hasToken(lowerUTF8(body), 'the') LIMIT 5",
        "SELECT e.entity_id, lengthUTF8(e.body) FROM events e WHERE e.entity_id LIKE ? ORDER BY 2 DESC LIMIT 3",
    ],
    "postgres": [
        "SELECT entity_ns, count(*) AS n FROM events WHERE ts >= ? GROUP BY entity_ns ORDER BY n DESC",
        "SELECT entity_id, version FROM events WHERE entity_ns = ? ORDER BY entity_id LIMIT 10",
        "SELECT e.entity_id, length(e.body) FROM events e WHERE e.entity_id LIKE ? ORDER BY 2 DESC LIMIT 3",
    ],
}
