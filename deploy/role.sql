-- A least-privilege role for mvrefresher.
--
-- mvrefresher needs to: stream from a replication slot (REPLICATION), create
-- its publication (CREATE on the database) and add the source tables to it
-- (ownership of those tables), refresh the managed views (ownership; on
-- PostgreSQL 17 the MAINTAIN privilege is enough), and write its refresh log
-- (CREATE on the log table's schema, or own a pre-created table).
--
-- Ownership is the awkward one: PostgreSQL only lets a table's owner add it
-- to a publication and only a view's owner refresh it. The usual answer is a
-- group role that owns the analytics objects, granted to mvrefresher.

CREATE ROLE mvrefresher LOGIN REPLICATION PASSWORD 'change-me';

-- The role that owns the views and their source tables (created by your
-- migrations): mvrefresher acts as it, without being it.
GRANT analytics_owner TO mvrefresher;

-- Create the publication.
GRANT CREATE ON DATABASE app TO mvrefresher;

-- Read the catalog and the schemas it manages.
GRANT USAGE ON SCHEMA analytics, core TO mvrefresher;

-- The refresh log, created on first start: in a schema of its own
-- (refresh_log_table: mvrefresher.refresh_log), since PostgreSQL 15 no
-- longer lets every role create in public. To keep the default
-- public.mv_refresh_log instead: GRANT CREATE ON SCHEMA public TO mvrefresher;
CREATE SCHEMA mvrefresher AUTHORIZATION mvrefresher;

-- PostgreSQL 17 and later, instead of ownership of the views:
-- GRANT MAINTAIN ON ALL TABLES IN SCHEMA analytics TO mvrefresher;

-- pg_hba.conf: replication connections to a database use the ordinary
-- database lines, e.g.
--   host  app  mvrefresher  10.0.0.0/8  scram-sha-256
