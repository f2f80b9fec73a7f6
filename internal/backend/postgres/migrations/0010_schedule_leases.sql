-- Several nodes on one database (issue 17): a node claims the due
-- entries of the schedule it will attempt by writing a lease on them (its
-- node name and an expiry by the database's clock), renews the lease
-- while the attempt runs, and Record deletes the entry, lease and all.
-- An entry whose lease has expired (its node died) is claimed again.
-- internal/backend/postgres/lease.go has the statements; docs/postgresql.md
-- ("Several nodes") the design.
--
-- Expand only: nodes of the previous release ignore the columns.
ALTER TABLE schedule ADD COLUMN lease_node text;
ALTER TABLE schedule ADD COLUMN lease_until timestamptz;
-- The claim counts the live leases per domain (delivery.domain_concurrency
-- holds for the cluster): only leased entries are in this index, a few
-- per worker of each node.
CREATE INDEX schedule_leased ON schedule (lease_until, domain) WHERE lease_until IS NOT NULL;
