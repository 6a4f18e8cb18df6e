"""What the first schema's `Base.metadata.create_all` made on SQLite, frozen (this file holds no tests).

Dumped from `sqlite_master` of a database opened by commit 701c63e (the last one before migrations):
the test migration's pre-migration databases are made with exactly this SQL, and revision 0001 must
produce it.
"""

FIRST_SCHEMA_SQL = """
CREATE TABLE comparisons (
	id VARCHAR(32) NOT NULL,
	created_at DATETIME NOT NULL,
	lineup VARCHAR(100) NOT NULL,
	mode VARCHAR(16) NOT NULL,
	session_id VARCHAR(64) NOT NULL,
	turn INTEGER NOT NULL,
	parent_id VARCHAR(32),
	system_prompt TEXT,
	prompt TEXT NOT NULL,
	n_responses INTEGER NOT NULL,
	CONSTRAINT pk_comparisons PRIMARY KEY (id),
	CONSTRAINT ck_comparisons_mode CHECK (mode IN ('named', 'arena')),
	CONSTRAINT ck_comparisons_turn CHECK (turn >= 0),
	CONSTRAINT ck_comparisons_n_responses CHECK (n_responses >= 2),
	CONSTRAINT fk_comparisons_parent_id_comparisons FOREIGN KEY(parent_id) REFERENCES comparisons (id) ON DELETE SET NULL
);
CREATE INDEX ix_comparisons_parent_id ON comparisons (parent_id);
CREATE INDEX ix_comparisons_session_id ON comparisons (session_id);
CREATE INDEX ix_comparisons_created_at ON comparisons (created_at);
CREATE TABLE responses (
	id VARCHAR(32) NOT NULL,
	comparison_id VARCHAR(32) NOT NULL,
	position INTEGER NOT NULL,
	contender VARCHAR(200) NOT NULL,
	weights_id VARCHAR(500) NOT NULL,
	weights_revision VARCHAR(100),
	messages JSON NOT NULL,
	prompt_rendered TEXT NOT NULL,
	params JSON NOT NULL,
	seed BIGINT,
	text TEXT NOT NULL,
	finish_reason VARCHAR(16) NOT NULL,
	error TEXT,
	prompt_tokens INTEGER NOT NULL,
	completion_tokens INTEGER NOT NULL,
	time_to_first_token_s DOUBLE,
	duration_s DOUBLE NOT NULL,
	tokens_per_s DOUBLE,
	created_at DATETIME NOT NULL,
	CONSTRAINT pk_responses PRIMARY KEY (id),
	CONSTRAINT uq_responses_comparison_id_position UNIQUE (comparison_id, position),
	CONSTRAINT uq_responses_comparison_id_contender UNIQUE (comparison_id, contender),
	CONSTRAINT ck_responses_position CHECK (position >= 0),
	CONSTRAINT ck_responses_finish_reason CHECK (finish_reason IN ('stop', 'length', 'stopped', 'error')),
	CONSTRAINT ck_responses_error_iff_failed CHECK ((finish_reason = 'error' AND error IS NOT NULL) OR (finish_reason <> 'error' AND error IS NULL)),
	CONSTRAINT fk_responses_comparison_id_comparisons FOREIGN KEY(comparison_id) REFERENCES comparisons (id) ON DELETE CASCADE
);
CREATE INDEX ix_responses_contender ON responses (contender);
CREATE TABLE ratings (
	id VARCHAR(32) NOT NULL,
	comparison_id VARCHAR(32) NOT NULL,
	created_at DATETIME NOT NULL,
	kind VARCHAR(16) NOT NULL,
	choice VARCHAR(16),
	strength VARCHAR(32),
	comment TEXT,
	blind BOOLEAN NOT NULL,
	CONSTRAINT pk_ratings PRIMARY KEY (id),
	CONSTRAINT ck_ratings_kind CHECK (kind IN ('pairwise', 'scores')),
	CONSTRAINT ck_ratings_choice CHECK (choice IS NULL OR choice IN ('a', 'b', 'tie', 'both_bad')),
	CONSTRAINT ck_ratings_strength CHECK (strength IS NULL OR strength IN ('significantly_better', 'better', 'slightly_better', 'negligibly_better')),
	CONSTRAINT ck_ratings_choice_iff_pairwise CHECK ((kind = 'pairwise' AND choice IS NOT NULL) OR (kind <> 'pairwise' AND choice IS NULL)),
	CONSTRAINT ck_ratings_strength_only_for_a_or_b CHECK (strength IS NULL OR choice IN ('a', 'b')),
	CONSTRAINT uq_ratings_comparison_id UNIQUE (comparison_id),
	CONSTRAINT fk_ratings_comparison_id_comparisons FOREIGN KEY(comparison_id) REFERENCES comparisons (id) ON DELETE CASCADE
);
CREATE INDEX ix_ratings_created_at ON ratings (created_at);
CREATE TABLE answer_judgements (
	rating_id VARCHAR(32) NOT NULL,
	response_id VARCHAR(32) NOT NULL,
	score INTEGER,
	unsafe BOOLEAN NOT NULL,
	unsafe_reason TEXT,
	CONSTRAINT pk_answer_judgements PRIMARY KEY (rating_id, response_id),
	CONSTRAINT ck_answer_judgements_score CHECK (score IS NULL OR (score >= 1 AND score <= 5)),
	CONSTRAINT ck_answer_judgements_reason_only_if_unsafe CHECK (unsafe_reason IS NULL OR unsafe),
	CONSTRAINT fk_answer_judgements_rating_id_ratings FOREIGN KEY(rating_id) REFERENCES ratings (id) ON DELETE CASCADE,
	CONSTRAINT fk_answer_judgements_response_id_responses FOREIGN KEY(response_id) REFERENCES responses (id) ON DELETE CASCADE
);
CREATE INDEX ix_answer_judgements_response_id ON answer_judgements (response_id);
"""
