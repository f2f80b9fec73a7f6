-- Reserved for issue 14's migration, being written on another branch
-- at the same time as 0008; it is replaced by that one at the merge.
SELECT 1;
