-- A placeholder for migration 0003 (the tenant registry's), which is
-- written on another branch of issue 16: migrations are numbered without
-- gaps, and the queue's is 0004. When the branches merge, this file goes
-- and 0003 is the tenant registry's.
SELECT 1;
