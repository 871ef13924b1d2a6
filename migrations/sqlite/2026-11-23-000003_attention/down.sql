ALTER TABLE cases DROP COLUMN merged_into;
DROP TABLE case_redirects;
DROP TABLE attention;
