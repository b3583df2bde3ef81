-- Assignment order is global (MAX(seq) + 1 at insert, under the write lock), so several
-- processes on one file never hand out the same number; the index keeps MAX(seq) cheap.
CREATE INDEX assignments_seq ON assignments(seq);
