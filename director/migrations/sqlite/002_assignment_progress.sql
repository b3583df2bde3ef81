-- Each ECU's latest download/install progress, kept on its open assignment.
ALTER TABLE assignments ADD COLUMN progress TEXT NOT NULL DEFAULT '{}';
