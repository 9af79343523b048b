-- pgbench script: the three inserts of a new SMS delivery report as receiver's ingest runs them
-- (raw request, message, status event; ON CONFLICT DO NOTHING on their unique keys), in one
-- transaction, with random provider ids. It measures the database's side alone, e.g. how it
-- slows as the tables outgrow shared_buffers (docs/benchmarks.md, "Ingest"):
--
--   pgbench -h 127.0.0.1 -U postgres -n -f bench/ingest/pgbench_inserts.sql -c 4 -j 2 -T 30 DBNAME
--
-- DBNAME: a database migrated by `receiver db upgrade` (empty, or one bench/query.py built).
\set n random(1, 2000000000)
BEGIN;
INSERT INTO raw_events (source, received_at, method, path, query_string, headers, body, sha256, fingerprint, state, processed_at) VALUES ('bench', now(), 'POST', '/hooks/bench', '', '{}', '\x7b7d', md5(:n::text || 'a') || md5(:n::text), md5(:client_id::text || :n::text) || md5(:n::text), 'processed', now()) ON CONFLICT (source, fingerprint) DO NOTHING;
INSERT INTO messages (id, source, channel, mobile, status, provider_status, created_at, updated_at) VALUES (md5(:n::text || :client_id::text) || ':1', 'bench', 'sms', '91' || :n::text, 'delivered', 'DELIVRD', now(), now()) ON CONFLICT (id) DO NOTHING;
INSERT INTO message_events (message_id, raw_event_id, source, status, provider_status, occurred_at, received_at) VALUES (md5(:n::text || :client_id::text) || ':1', currval('raw_events_id_seq'), 'bench', 'delivered', 'DELIVRD', now(), now()) ON CONFLICT (message_id, provider_status) DO NOTHING;
COMMIT;
