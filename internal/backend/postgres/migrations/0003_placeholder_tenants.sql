-- Placeholder on the webhooks branch (issue 16, step 3) for the number
-- that the tenant registry's migration takes on its own branch: the loader wants
-- migrations numbered without gaps. The merge keeps the real migration
-- and drops this file.
SELECT 1;
