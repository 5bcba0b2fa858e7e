package postgres

// v2 adds the message queues (pgjournal's queue.Store): the rules of
// internal/queuesm on tables. Instants are UnixNano (bigint), the caller's
// clock, as in queuesm. p_cutoff is the instant at or before which an id
// that left the store (acknowledged, purged, applied on acceptance) is
// forgotten: now minus the retention, NULL when nothing can be forgotten
// yet.
const v2 = `
-- Every message the store holds or remembers, by id. state: p pending,
-- s scheduled, d dead, g gone (left the store at 'at', remembered until
-- the retention has passed, then pruned). seq is the message's current
-- Seq (0 when gone), first_seq and accepted_at its first acceptance's
-- (first_seq 0: applied on acceptance). next_at is NextAt when pending
-- and DeliverAt when scheduled; at is DeadAt when dead and when it left
-- when gone. body is queue.MarshalMessage of what the sender set, with
-- AcceptedAt; the stamped fields are columns.
CREATE TABLE {s}.queue_messages (
	id          bytea PRIMARY KEY,
	actor       bytea NOT NULL,
	type        bytea NOT NULL,
	state       "char" NOT NULL,
	seq         bigint NOT NULL,
	first_seq   bigint NOT NULL,
	accepted_at bigint NOT NULL,
	ordered     boolean NOT NULL,
	next_at     bigint NOT NULL,
	at          bigint NOT NULL,
	attempts    bigint NOT NULL,
	last_error  bytea NOT NULL,
	body        bytea
);
CREATE INDEX queue_unordered ON {s}.queue_messages (actor, next_at, seq) WHERE state = 'p' AND NOT ordered;
CREATE INDEX queue_ordered ON {s}.queue_messages (actor, seq) WHERE state = 'p' AND ordered;
CREATE INDEX queue_scheduled ON {s}.queue_messages (actor, next_at, seq) WHERE state = 's';
CREATE INDEX queue_dead ON {s}.queue_messages (at, seq) WHERE state = 'd';
CREATE INDEX queue_gone ON {s}.queue_messages (at) WHERE state = 'g';
CREATE INDEX queue_types ON {s}.queue_messages (type, accepted_at) WHERE state = 'p';

-- Seq: acceptance order across the store.
CREATE SEQUENCE {s}.queue_seq AS bigint MINVALUE 1 NO CYCLE;

-- rec is queue.MarshalReminder with DueAt.
CREATE TABLE {s}.queue_reminders (
	actor  bytea NOT NULL,
	name   bytea NOT NULL,
	type   bytea NOT NULL,
	due_at bigint NOT NULL,
	rec    bytea NOT NULL,
	PRIMARY KEY (actor, name)
);
CREATE INDEX queue_timers ON {s}.queue_reminders (actor, due_at, name);

-- Each actor's earliest actionable instant (queuesm's Wake): its first
-- due message, scheduled message or reminder. Ready reads it.
CREATE TABLE {s}.queue_wake (
	actor bytea PRIMARY KEY,
	at    bigint NOT NULL
);
CREATE INDEX queue_wake_at ON {s}.queue_wake (at, actor);

-- queue_forgotten: an id in state p_state that left at p_at is forgotten.
CREATE FUNCTION {s}.queue_forgotten(p_state "char", p_at bigint, p_cutoff bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(p_state = 'g' AND p_at <= p_cutoff, false)
$$;

-- queue_lock takes the transaction-level advisory lock of p_actor's
-- queue. Every write to an actor's queue takes it before it reads or
-- locks any of the actor's messages: it serialises the writes to one
-- actor's queue, in one order (so two transactions do not deadlock over
-- an actor's messages and its wake), and the later of two writes
-- computes the wake after the earlier committed. (Two actors whose keys
-- hash alike share a lock: they are serialised for nothing, no more.)
CREATE FUNCTION {s}.queue_lock(p_actor bytea) RETURNS void
LANGUAGE sql AS $$
	SELECT pg_advisory_xact_lock(hashtextextended('loom queue {s} ' || encode(p_actor, 'hex'), 0))
$$;

-- queue_refresh recomputes p_actor's wake, under its queue's lock, and
-- returns it (NULL: none).
CREATE FUNCTION {s}.queue_refresh(p_actor bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_at bigint;
BEGIN
	PERFORM {s}.queue_lock(p_actor);
	v_at := least(
		(SELECT next_at FROM {s}.queue_messages WHERE actor = p_actor AND state = 'p' AND NOT ordered ORDER BY next_at, seq LIMIT 1),
		(SELECT next_at FROM {s}.queue_messages WHERE actor = p_actor AND state = 'p' AND ordered ORDER BY seq LIMIT 1),
		(SELECT next_at FROM {s}.queue_messages WHERE actor = p_actor AND state = 's' ORDER BY next_at, seq LIMIT 1),
		(SELECT due_at FROM {s}.queue_reminders WHERE actor = p_actor ORDER BY due_at LIMIT 1));
	IF v_at IS NULL THEN
		DELETE FROM {s}.queue_wake WHERE actor = p_actor;
	ELSE
		INSERT INTO {s}.queue_wake (actor, at) VALUES (p_actor, v_at)
			ON CONFLICT (actor) DO UPDATE SET at = excluded.at WHERE queue_wake.at <> excluded.at;
	END IF;
	RETURN v_at;
END $$;

-- queue_prune forgets up to 64 ids gone at or before p_cutoff, the oldest
-- first, skipping rows another transaction holds.
CREATE FUNCTION {s}.queue_prune(p_cutoff bigint) RETURNS void
LANGUAGE sql AS $$
	DELETE FROM {s}.queue_messages WHERE id IN (
		SELECT id FROM {s}.queue_messages WHERE state = 'g' AND at <= p_cutoff
		ORDER BY at LIMIT 64 FOR UPDATE SKIP LOCKED)
$$;

-- queue_put accepts a message (queuesm's enqueue): a known id answers
-- its first acceptance (o_dup); otherwise the message gets the next Seq
-- and is pending (or scheduled, p_sched) with NextAt p_next.
CREATE FUNCTION {s}.queue_put(p_now bigint, p_cutoff bigint, p_id bytea, p_actor bytea, p_type bytea,
	p_body bytea, p_ordered boolean, p_sched boolean, p_next bigint,
	OUT o_seq bigint, OUT o_accepted_at bigint, OUT o_dup boolean)
LANGUAGE plpgsql AS $$
DECLARE
	v     {s}.queue_messages;
	v_old boolean;
	v_st  "char" := CASE WHEN p_sched THEN 's' ELSE 'p' END;
BEGIN
	LOOP
		SELECT * INTO v FROM {s}.queue_messages WHERE id = p_id FOR UPDATE;
		v_old := FOUND;
		IF v_old AND NOT {s}.queue_forgotten(v.state, v.at, p_cutoff) THEN
			o_seq := v.first_seq;
			o_accepted_at := v.accepted_at;
			o_dup := true;
			RETURN;
		END IF;
		o_seq := nextval('{s}.queue_seq');
		o_accepted_at := p_now;
		o_dup := false;
		IF v_old THEN -- gone and forgotten, not yet pruned: its row is reused
			UPDATE {s}.queue_messages SET actor = p_actor, type = p_type, state = v_st, seq = o_seq,
				first_seq = o_seq, accepted_at = p_now, ordered = p_ordered, next_at = p_next, at = 0,
				attempts = 0, last_error = '', body = p_body
				WHERE id = p_id;
			RETURN;
		END IF;
		INSERT INTO {s}.queue_messages (id, actor, type, state, seq, first_seq, accepted_at, ordered, next_at, at, attempts, last_error, body)
			VALUES (p_id, p_actor, p_type, v_st, o_seq, o_seq, p_now, p_ordered, p_next, 0, 0, '', p_body)
			ON CONFLICT (id) DO NOTHING;
		IF FOUND THEN
			RETURN;
		END IF;
		-- A concurrent acceptance of the id committed first: answer it.
	END LOOP;
END $$;

CREATE FUNCTION {s}.queue_enqueue(p_now bigint, p_cutoff bigint, p_id bytea, p_actor bytea, p_type bytea,
	p_body bytea, p_ordered boolean, p_sched boolean, p_next bigint,
	OUT o_seq bigint, OUT o_accepted_at bigint, OUT o_dup boolean, OUT o_wake bigint)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM {s}.queue_lock(p_actor);
	SELECT * INTO o_seq, o_accepted_at, o_dup
		FROM {s}.queue_put(p_now, p_cutoff, p_id, p_actor, p_type, p_body, p_ordered, p_sched, p_next);
	IF NOT o_dup THEN
		o_wake := {s}.queue_refresh(p_actor);
	END IF;
	PERFORM {s}.queue_prune(p_cutoff);
END $$;

-- queue_fail records a failed delivery: Retry (p_dead false: NextAt
-- p_at) or DeadLetter (DeadAt p_at). o_status: ok, nf (not pending in
-- p_actor's queue), stale (o_attempts differs).
CREATE FUNCTION {s}.queue_fail(p_dead boolean, p_cutoff bigint, p_actor bytea, p_id bytea,
	p_attempts bigint, p_reason bytea, p_at bigint,
	OUT o_status text, OUT o_attempts bigint, OUT o_wake bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v {s}.queue_messages;
BEGIN
	PERFORM {s}.queue_lock(p_actor);
	SELECT * INTO v FROM {s}.queue_messages WHERE id = p_id FOR UPDATE;
	IF NOT FOUND OR v.state <> 'p' OR v.actor <> p_actor THEN
		o_status := 'nf';
		RETURN;
	END IF;
	IF v.attempts <> p_attempts THEN
		o_status := 'stale';
		o_attempts := v.attempts;
		RETURN;
	END IF;
	IF p_dead THEN
		UPDATE {s}.queue_messages SET state = 'd', at = p_at, attempts = least(p_attempts + 1, 4294967295), last_error = p_reason
			WHERE id = p_id;
	ELSE
		UPDATE {s}.queue_messages SET next_at = p_at, attempts = least(p_attempts + 1, 4294967295), last_error = p_reason
			WHERE id = p_id;
	END IF;
	o_status := 'ok';
	o_wake := {s}.queue_refresh(p_actor);
	PERFORM {s}.queue_prune(p_cutoff);
END $$;

-- journal_append_queue is journal_append for an append that carries
-- message entries (queuesm's journal hook): the journal's rules, then
-- the direct messages' (kid: known id, nh: an ordered message pending)
-- and the acknowledgements' (nf: not pending, or twice; nh: an earlier
-- ordered message pending), reported in o_code and o_code_id with
-- nothing written; then the entries, the acknowledgements, the direct
-- messages' ids and the sends. o_wake_actors and o_wake_ats are the
-- wakes of the actors it changed.
CREATE FUNCTION {s}.journal_append_queue(p_actor bytea, p_token numeric, p_expected numeric, p_recs bytea[],
	p_now bigint, p_cutoff bigint, p_type bytea, p_acks bytea[], p_directs bytea[], p_direct_ordered boolean[],
	p_send_ids bytea[], p_send_actors bytea[], p_send_types bytea[], p_send_bodies bytea[],
	p_send_ordered boolean[], p_send_sched boolean[], p_send_next bigint[],
	OUT o_ok boolean, OUT o_tail numeric, OUT o_token numeric, OUT o_snap_seq numeric,
	OUT o_code text, OUT o_code_id bytea, OUT o_wake_actors bytea[], OUT o_wake_ats bigint[])
LANGUAGE plpgsql AS $$
DECLARE
	v_head    {s}.journal_heads;
	v         {s}.queue_messages;
	v_acked   bigint[] := '{}';
	v_touched bytea[] := '{}';
	v_dup     boolean;
	v_at      bigint;
	v_actor   bytea;
	i         integer;
BEGIN
	SELECT * INTO v_head FROM {s}.journal_head(p_actor, p_expected = 0);
	o_ok := false;
	o_tail := coalesce(v_head.tail, 0);
	o_token := coalesce(v_head.token, 0);
	o_snap_seq := v_head.snap_seq;
	IF p_token < o_token OR p_expected <> o_tail THEN
		RETURN;
	END IF;
	PERFORM {s}.queue_lock(p_actor);
	FOR i IN 1 .. coalesce(array_length(p_directs, 1), 0) LOOP
		o_code_id := p_directs[i];
		IF p_directs[i] = ANY (p_directs[1:i-1]) THEN
			o_code := 'kid';
			RETURN;
		END IF;
		SELECT * INTO v FROM {s}.queue_messages WHERE id = p_directs[i] FOR UPDATE;
		IF FOUND AND NOT {s}.queue_forgotten(v.state, v.at, p_cutoff) THEN
			o_code := 'kid';
			RETURN;
		END IF;
		IF p_direct_ordered[i] AND EXISTS (SELECT 1 FROM {s}.queue_messages WHERE actor = p_actor AND state = 'p' AND ordered) THEN
			o_code := 'nh';
			RETURN;
		END IF;
	END LOOP;
	FOR i IN 1 .. coalesce(array_length(p_acks, 1), 0) LOOP
		o_code_id := p_acks[i];
		IF p_acks[i] = ANY (p_acks[1:i-1]) THEN
			o_code := 'nf';
			RETURN;
		END IF;
		SELECT * INTO v FROM {s}.queue_messages WHERE id = p_acks[i] FOR UPDATE;
		IF NOT FOUND OR v.state <> 'p' OR v.actor <> p_actor THEN
			o_code := 'nf';
			RETURN;
		END IF;
		IF v.ordered AND EXISTS (SELECT 1 FROM {s}.queue_messages WHERE actor = p_actor AND state = 'p' AND ordered
				AND seq < v.seq AND NOT (seq = ANY (v_acked))) THEN
			o_code := 'nh';
			RETURN;
		END IF;
		v_acked := v_acked || v.seq;
	END LOOP;
	o_code_id := NULL;

	INSERT INTO {s}.journal_entries (actor, seq, rec)
		SELECT p_actor, (p_expected + u.ord)::bigint, u.rec FROM unnest(p_recs) WITH ORDINALITY AS u(rec, ord);
	UPDATE {s}.journal_heads SET tail = p_expected + cardinality(p_recs), token = p_token WHERE actor = p_actor;
	IF cardinality(p_acks) > 0 THEN
		UPDATE {s}.queue_messages SET state = 'g', seq = 0, next_at = 0, at = p_now, attempts = 0, last_error = '', body = NULL
			WHERE id = ANY (p_acks);
		v_touched := v_touched || p_actor;
	END IF;
	FOR i IN 1 .. coalesce(array_length(p_directs, 1), 0) LOOP
		INSERT INTO {s}.queue_messages (id, actor, type, state, seq, first_seq, accepted_at, ordered, next_at, at, attempts, last_error, body)
			VALUES (p_directs[i], p_actor, p_type, 'g', 0, 0, p_now, p_direct_ordered[i], 0, p_now, 0, '', NULL)
			ON CONFLICT (id) DO UPDATE SET actor = excluded.actor, type = excluded.type, state = 'g', seq = 0, first_seq = 0,
				accepted_at = excluded.accepted_at, ordered = excluded.ordered, next_at = 0, at = excluded.at,
				attempts = 0, last_error = '', body = NULL
			WHERE {s}.queue_forgotten(queue_messages.state, queue_messages.at, p_cutoff);
		IF NOT FOUND THEN
			-- Accepted by another transaction since it was checked: refuse
			-- the whole transaction; sent again alone, it is refused as known.
			RAISE EXCEPTION 'queue: direct message id accepted concurrently' USING ERRCODE = '40001';
		END IF;
	END LOOP;
	FOR i IN 1 .. coalesce(array_length(p_send_ids, 1), 0) LOOP
		PERFORM {s}.queue_lock(p_send_actors[i]);
		SELECT o_dup INTO v_dup FROM {s}.queue_put(p_now, p_cutoff, p_send_ids[i], p_send_actors[i], p_send_types[i],
			p_send_bodies[i], p_send_ordered[i], p_send_sched[i], p_send_next[i]);
		IF NOT v_dup AND NOT (p_send_actors[i] = ANY (v_touched)) THEN
			v_touched := v_touched || p_send_actors[i];
		END IF;
	END LOOP;
	o_wake_actors := '{}';
	o_wake_ats := '{}';
	FOREACH v_actor IN ARRAY v_touched LOOP
		v_at := {s}.queue_refresh(v_actor);
		IF v_at IS NOT NULL THEN
			o_wake_actors := o_wake_actors || v_actor;
			o_wake_ats := o_wake_ats || v_at;
		END IF;
	END LOOP;
	PERFORM {s}.queue_prune(p_cutoff);
	o_ok := true;
END $$;

-- queue_release moves p_actor's scheduled messages due by p_now into its
-- queue, each with a new Seq, then fires its reminders due by p_now:
-- those the caller read (p_names, with their records p_old), for each of
-- which it computed the message (p_fire_*) and the next firing (p_new_due,
-- p_new_rec; NULL: delete). If the due reminders are not those, o_status
-- is stale and nothing is written. o_n counts the messages that entered
-- the queue.
CREATE FUNCTION {s}.queue_release(p_actor bytea, p_type bytea, p_now bigint, p_cutoff bigint,
	p_names bytea[], p_old bytea[], p_new_due bigint[], p_new_rec bytea[],
	p_fire_ids bytea[], p_fire_bodies bytea[], p_fire_ordered boolean[],
	OUT o_status text, OUT o_n integer, OUT o_wake bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r     record;
	n     integer := coalesce(array_length(p_names, 1), 0);
	i     integer := 0;
	v_dup boolean;
BEGIN
	PERFORM {s}.queue_lock(p_actor);
	FOR r IN SELECT name, rec FROM {s}.queue_reminders WHERE actor = p_actor AND due_at <= p_now
			ORDER BY due_at, name FOR UPDATE LOOP
		i := i + 1;
		IF i > n OR r.name <> p_names[i] OR r.rec <> p_old[i] THEN
			o_status := 'stale';
			RETURN;
		END IF;
	END LOOP;
	IF i <> n THEN
		o_status := 'stale';
		RETURN;
	END IF;
	o_n := 0;
	FOR r IN SELECT id FROM {s}.queue_messages WHERE actor = p_actor AND state = 's' AND next_at <= p_now
			ORDER BY next_at, seq FOR UPDATE LOOP
		UPDATE {s}.queue_messages SET state = 'p', seq = nextval('{s}.queue_seq') WHERE id = r.id;
		o_n := o_n + 1;
	END LOOP;
	FOR i IN 1 .. n LOOP
		SELECT o_dup INTO v_dup FROM {s}.queue_put(p_now, p_cutoff, p_fire_ids[i], p_actor, p_type,
			p_fire_bodies[i], p_fire_ordered[i], false, p_now);
		IF NOT v_dup THEN
			o_n := o_n + 1;
		END IF;
		IF p_new_due[i] IS NULL THEN
			DELETE FROM {s}.queue_reminders WHERE actor = p_actor AND name = p_names[i];
		ELSE
			UPDATE {s}.queue_reminders SET due_at = p_new_due[i], rec = p_new_rec[i] WHERE actor = p_actor AND name = p_names[i];
		END IF;
	END LOOP;
	o_status := 'ok';
	o_wake := {s}.queue_refresh(p_actor);
END $$;

-- queue_dead selects the dead letters of a filter (NULL: any), oldest
-- DeadAt first, at most p_limit (0: no limit).
CREATE FUNCTION {s}.queue_dead(p_type bytea, p_actor bytea, p_before bigint, p_limit integer, p_ids bytea[])
RETURNS SETOF {s}.queue_messages LANGUAGE sql STABLE AS $$
	SELECT * FROM {s}.queue_messages
	WHERE state = 'd'
		AND (p_ids IS NULL OR id = ANY (p_ids))
		AND (p_actor IS NULL OR actor = p_actor)
		AND (p_type IS NULL OR substr(actor, 1, length(p_type) + 1) = p_type || '/'::bytea)
		AND (p_before IS NULL OR at < p_before)
	ORDER BY at, seq
	LIMIT CASE WHEN p_limit > 0 THEN p_limit END
$$;

-- queue_replay moves the dead letters selected back into their queues,
-- each with a new Seq, Attempts 0, NextAt p_now and no LastError.
CREATE FUNCTION {s}.queue_replay(p_now bigint, p_type bytea, p_actor bytea, p_before bigint, p_limit integer, p_ids bytea[],
	OUT o_n integer, OUT o_wake_actors bytea[], OUT o_wake_ats bigint[])
LANGUAGE plpgsql AS $$
DECLARE
	r         record;
	v_touched bytea[] := '{}';
	v_actor   bytea;
	v_at      bigint;
BEGIN
	o_n := 0;
	FOR r IN SELECT id, actor FROM {s}.queue_messages WHERE id IN (SELECT id FROM {s}.queue_dead(p_type, p_actor, p_before, p_limit, p_ids))
			AND state = 'd' ORDER BY at, seq FOR UPDATE LOOP
		UPDATE {s}.queue_messages SET state = 'p', seq = nextval('{s}.queue_seq'), attempts = 0, next_at = p_now, at = 0, last_error = ''
			WHERE id = r.id;
		o_n := o_n + 1;
		IF NOT (r.actor = ANY (v_touched)) THEN
			v_touched := v_touched || r.actor;
		END IF;
	END LOOP;
	o_wake_actors := '{}';
	o_wake_ats := '{}';
	FOREACH v_actor IN ARRAY v_touched LOOP
		v_at := {s}.queue_refresh(v_actor);
		IF v_at IS NOT NULL THEN
			o_wake_actors := o_wake_actors || v_actor;
			o_wake_ats := o_wake_ats || v_at;
		END IF;
	END LOOP;
END $$;

-- queue_purge deletes the dead letters selected, remembering their ids
-- as gone at p_now.
CREATE FUNCTION {s}.queue_purge(p_now bigint, p_cutoff bigint, p_type bytea, p_actor bytea, p_before bigint, p_limit integer, p_ids bytea[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	v_n integer;
BEGIN
	UPDATE {s}.queue_messages SET state = 'g', seq = 0, next_at = 0, at = p_now, attempts = 0, last_error = '', body = NULL
		WHERE id IN (SELECT id FROM {s}.queue_dead(p_type, p_actor, p_before, p_limit, p_ids)) AND state = 'd';
	GET DIAGNOSTICS v_n = ROW_COUNT;
	PERFORM {s}.queue_prune(p_cutoff);
	RETURN v_n;
END $$;

CREATE FUNCTION {s}.queue_set_reminder(p_cutoff bigint, p_actor bytea, p_type bytea, p_name bytea, p_due bigint, p_rec bytea)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	v_at bigint;
BEGIN
	PERFORM {s}.queue_lock(p_actor);
	INSERT INTO {s}.queue_reminders (actor, name, type, due_at, rec) VALUES (p_actor, p_name, p_type, p_due, p_rec)
		ON CONFLICT (actor, name) DO UPDATE SET due_at = excluded.due_at, rec = excluded.rec;
	v_at := {s}.queue_refresh(p_actor);
	PERFORM {s}.queue_prune(p_cutoff);
	RETURN v_at;
END $$;

CREATE FUNCTION {s}.queue_delete_reminder(p_cutoff bigint, p_actor bytea, p_name bytea)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM {s}.queue_lock(p_actor);
	DELETE FROM {s}.queue_reminders WHERE actor = p_actor AND name = p_name;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	PERFORM {s}.queue_refresh(p_actor);
	PERFORM {s}.queue_prune(p_cutoff);
	RETURN true;
END $$;
`
