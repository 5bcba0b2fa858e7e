package postgres

// The schema's versions. migrations[i] takes a schema from version i to
// version i+1; each is run once, in order, inside Migrate's transaction,
// with "{s}" standing for the schema (see Expand). A released migration
// never changes: a change is a new one, appended.
//
// Caller-supplied names (actor keys, lock keys, session owners) are
// stored as bytea: Loom treats them as opaque byte strings, and text
// would refuse a NUL byte or invalid UTF-8. Journal tokens and sequence
// numbers are uint64 on the Go side, stored as numeric(20,0) so that
// every value compares exactly; entry sequence numbers within a log are
// bigint (a log cannot outgrow 2^63 entries). Lock tokens come from a
// bigint sequence.
//
// Every function that decides something takes the instant to decide at
// as an argument (p_now): the callers pass now(), the database's clock,
// so that no client's clock is ever trusted; the tests pass a clock of
// their own. Functions report refusals as results, never as exceptions:
// a batch of statements is one transaction, and an exception would roll
// back the others' work.
var migrations = []string{v1, v2}

// SchemaVersion is the schema version this code makes and knows.
var SchemaVersion = len(migrations)

const v1 = `
-- Locks (pglock). A session is alive while now < expires_at; a lock is
-- held while its row names an alive session. Destroyed sessions get
-- expires_at -infinity. lock_sweep deletes what lapsed and destroyed
-- sessions leave behind, a bounded amount per call.
CREATE TABLE {s}.lock_sessions (
	id         text PRIMARY KEY,
	owner      bytea NOT NULL,
	ttl        interval NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX lock_sessions_expires_at ON {s}.lock_sessions (expires_at);
CREATE INDEX lock_sessions_owner ON {s}.lock_sessions (owner);

CREATE TABLE {s}.locks (
	key        bytea PRIMARY KEY,
	session_id text,            -- NULL only inside the transaction granting it
	token      bigint NOT NULL
);
CREATE INDEX locks_session_id ON {s}.locks (session_id);

-- Fencing tokens: one sequence for every key, never reset, so the tokens
-- of a key strictly increase over its grants, and are never 0.
CREATE SEQUENCE {s}.lock_tokens AS bigint MINVALUE 1 NO CYCLE;
CREATE SEQUENCE {s}.lock_session_numbers AS bigint MINVALUE 1 NO CYCLE;

CREATE FUNCTION {s}.lock_sweep(p_now timestamptz, p_budget integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	v_sid text;
	v_n   integer;
BEGIN
	FOR v_sid IN SELECT id FROM {s}.lock_sessions WHERE expires_at <= p_now
			ORDER BY expires_at LIMIT 16 FOR UPDATE SKIP LOCKED LOOP
		EXIT WHEN p_budget <= 0;
		DELETE FROM {s}.locks WHERE session_id = v_sid
			AND key IN (SELECT key FROM {s}.locks WHERE session_id = v_sid LIMIT p_budget);
		GET DIAGNOSTICS v_n = ROW_COUNT;
		p_budget := p_budget - v_n;
		IF NOT EXISTS (SELECT 1 FROM {s}.locks WHERE session_id = v_sid) THEN
			DELETE FROM {s}.lock_sessions WHERE id = v_sid;
		END IF;
	END LOOP;
END $$;

CREATE FUNCTION {s}.lock_create(p_owner bytea, p_ttl_us bigint, p_nonce text, p_now timestamptz, p_budget integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	v_id text := nextval('{s}.lock_session_numbers')::text || '-' || p_nonce;
	v_ttl interval := p_ttl_us * interval '1 microsecond';
BEGIN
	INSERT INTO {s}.lock_sessions (id, owner, ttl, expires_at) VALUES (v_id, p_owner, v_ttl, p_now + v_ttl);
	PERFORM {s}.lock_sweep(p_now, p_budget);
	RETURN v_id;
END $$;

-- A renewal never moves a deadline back: one sent earlier and applied
-- later (its transaction began before the other's) keeps the later one.
CREATE FUNCTION {s}.lock_renew(p_sid text, p_now timestamptz, p_budget integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	UPDATE {s}.lock_sessions SET expires_at = greatest(expires_at, p_now + ttl)
		WHERE id = p_sid AND expires_at > p_now;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	PERFORM {s}.lock_sweep(p_now, p_budget);
	RETURN true;
END $$;

CREATE FUNCTION {s}.lock_destroy(p_sid text, p_now timestamptz, p_budget integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	UPDATE {s}.lock_sessions SET expires_at = '-infinity' WHERE id = p_sid AND expires_at > p_now;
	PERFORM {s}.lock_sweep(p_now, p_budget);
END $$;

-- o_status: 0 the session is not alive; 1 the lock is the session's
-- (granted now, or before: o_token is that grant's); 2 another alive
-- session holds it (o_token and o_holder, its owner). A token is drawn
-- only while the key's row is locked, so grants of one key draw their
-- tokens in the order they commit.
CREATE FUNCTION {s}.lock_acquire(p_sid text, p_key bytea, p_now timestamptz,
	OUT o_status integer, OUT o_token bigint, OUT o_holder bytea)
LANGUAGE plpgsql AS $$
DECLARE
	v_sid text;
	v_token bigint;
BEGIN
	PERFORM 1 FROM {s}.lock_sessions WHERE id = p_sid AND expires_at > p_now;
	IF NOT FOUND THEN
		o_status := 0;
		RETURN;
	END IF;
	LOOP
		SELECT session_id, token INTO v_sid, v_token FROM {s}.locks WHERE key = p_key FOR UPDATE;
		IF FOUND THEN
			IF v_sid = p_sid THEN
				o_status := 1;
				o_token := v_token;
				RETURN;
			END IF;
			SELECT owner INTO o_holder FROM {s}.lock_sessions WHERE id = v_sid AND expires_at > p_now;
			IF FOUND THEN
				o_status := 2;
				o_token := v_token;
				RETURN;
			END IF;
			o_token := nextval('{s}.lock_tokens');
			UPDATE {s}.locks SET session_id = p_sid, token = o_token WHERE key = p_key;
			o_status := 1;
			RETURN;
		END IF;
		-- No row: make one (free), then lock it on the next turn. A
		-- concurrent maker wins or loses here; either way the row exists.
		INSERT INTO {s}.locks (key, session_id, token) VALUES (p_key, NULL, 0) ON CONFLICT (key) DO NOTHING;
	END LOOP;
END $$;

-- Journals (pgjournal). An actor's head holds its tail, its highest
-- token and the Seq of its snapshot (NULL: none); its entries are
-- journal.MarshalEntry records, its snapshot a journal.MarshalSnapshot
-- record. An actor never written has no rows.
CREATE TABLE {s}.journal_heads (
	actor    bytea PRIMARY KEY,
	tail     numeric(20,0) NOT NULL,
	token    numeric(20,0) NOT NULL,
	snap_seq numeric(20,0)
);

CREATE TABLE {s}.journal_entries (
	actor bytea NOT NULL,
	seq   bigint NOT NULL,
	rec   bytea NOT NULL,
	PRIMARY KEY (actor, seq)
);

CREATE TABLE {s}.journal_snapshots (
	actor bytea PRIMARY KEY,
	rec   bytea NOT NULL
);

-- journal_head locks actor's head row, making it (tail 0, token 0) if
-- p_make and the actor has none, and returns it; no row when the actor
-- has none and p_make is false.
CREATE FUNCTION {s}.journal_head(p_actor bytea, p_make boolean)
RETURNS SETOF {s}.journal_heads LANGUAGE plpgsql AS $$
DECLARE
	v_head {s}.journal_heads;
BEGIN
	LOOP
		SELECT * INTO v_head FROM {s}.journal_heads WHERE actor = p_actor FOR UPDATE;
		IF FOUND THEN
			RETURN NEXT v_head;
			RETURN;
		END IF;
		IF NOT p_make THEN
			RETURN;
		END IF;
		INSERT INTO {s}.journal_heads (actor, tail, token) VALUES (p_actor, 0, 0) ON CONFLICT (actor) DO NOTHING;
	END LOOP;
END $$;

-- The mutations return o_ok and the head as they found it (after
-- waiting for its lock). They refuse exactly what journal.ActorState's
-- rules refuse, which the caller checks again to make the error.
CREATE FUNCTION {s}.journal_append(p_actor bytea, p_token numeric, p_expected numeric, p_recs bytea[],
	OUT o_ok boolean, OUT o_tail numeric, OUT o_token numeric, OUT o_snap_seq numeric)
LANGUAGE plpgsql AS $$
DECLARE
	v_head {s}.journal_heads;
BEGIN
	-- A never-written actor (tail 0, token 0) accepts only expected 0.
	SELECT * INTO v_head FROM {s}.journal_head(p_actor, p_expected = 0);
	o_ok := false;
	o_tail := coalesce(v_head.tail, 0);
	o_token := coalesce(v_head.token, 0);
	o_snap_seq := v_head.snap_seq;
	IF p_token < o_token OR p_expected <> o_tail THEN
		RETURN;
	END IF;
	INSERT INTO {s}.journal_entries (actor, seq, rec)
		SELECT p_actor, (p_expected + u.ord)::bigint, u.rec FROM unnest(p_recs) WITH ORDINALITY AS u(rec, ord);
	UPDATE {s}.journal_heads SET tail = p_expected + cardinality(p_recs), token = p_token WHERE actor = p_actor;
	o_ok := true;
END $$;

CREATE FUNCTION {s}.journal_snapshot(p_actor bytea, p_token numeric, p_seq numeric, p_rec bytea,
	OUT o_ok boolean, OUT o_tail numeric, OUT o_token numeric, OUT o_snap_seq numeric)
LANGUAGE plpgsql AS $$
DECLARE
	v_head {s}.journal_heads;
BEGIN
	-- A never-written actor accepts only a snapshot at seq 0.
	SELECT * INTO v_head FROM {s}.journal_head(p_actor, p_seq = 0);
	o_ok := false;
	o_tail := coalesce(v_head.tail, 0);
	o_token := coalesce(v_head.token, 0);
	o_snap_seq := v_head.snap_seq;
	IF p_token < o_token OR p_seq > o_tail OR p_seq < o_snap_seq THEN
		RETURN;
	END IF;
	INSERT INTO {s}.journal_snapshots (actor, rec) VALUES (p_actor, p_rec)
		ON CONFLICT (actor) DO UPDATE SET rec = excluded.rec;
	UPDATE {s}.journal_heads SET token = p_token, snap_seq = p_seq WHERE actor = p_actor;
	o_ok := true;
END $$;

CREATE FUNCTION {s}.journal_truncate(p_actor bytea, p_token numeric, p_through numeric,
	OUT o_ok boolean, OUT o_tail numeric, OUT o_token numeric, OUT o_snap_seq numeric)
LANGUAGE plpgsql AS $$
DECLARE
	v_head {s}.journal_heads;
BEGIN
	-- A never-written actor accepts only a truncation through 0.
	SELECT * INTO v_head FROM {s}.journal_head(p_actor, p_through = 0);
	o_ok := false;
	o_tail := coalesce(v_head.tail, 0);
	o_token := coalesce(v_head.token, 0);
	o_snap_seq := v_head.snap_seq;
	IF p_token < o_token OR p_through > coalesce(o_snap_seq, 0) THEN
		RETURN;
	END IF;
	IF p_through > 0 THEN
		DELETE FROM {s}.journal_entries WHERE actor = p_actor AND seq <= p_through::bigint;
	END IF;
	UPDATE {s}.journal_heads SET token = p_token WHERE actor = p_actor;
	o_ok := true;
END $$;
`
