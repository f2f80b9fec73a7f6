-- Reserved for the migration being written beside this one (issue 16's
-- stores); replaced by it when the branches merge.
SELECT 1;
