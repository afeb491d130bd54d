-- gemini-backend data model. Apply with:  psql -v ON_ERROR_STOP=1 -1 -f schema.sql
-- Idempotent: every change sits in a numbered step that runs once and is recorded in schema_version, so
-- re-running the file on a live database is harmless. Add changes as new steps at the end; never edit a
-- step that has shipped.

SET client_min_messages = warning;

-- Serialise concurrent appliers (two processes starting at once); released at the end of the transaction.
DO $$ BEGIN PERFORM pg_advisory_xact_lock(7240001); END $$;

CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 1) THEN

    CREATE TABLE users (
        id             bigserial PRIMARY KEY,
        mobile         text NOT NULL UNIQUE,
        name           text,
        email          text,
        password_hash  text,
        token_version  integer NOT NULL DEFAULT 0,   -- bumped on password change/reset: older JWTs die
        tier           text NOT NULL DEFAULT 'basic' CHECK (tier IN ('basic', 'pro')),
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now()
    );

    -- The current OTP of a mobile for one purpose; a new one replaces it (same primary key).
    CREATE TABLE otps (
        user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        purpose     text NOT NULL CHECK (purpose IN ('login', 'password_reset')),
        code_hash   bytea NOT NULL,                  -- HMAC-SHA256, never the code
        expires_at  timestamptz NOT NULL,
        attempts    integer NOT NULL DEFAULT 0,      -- wrong tries; burned at 5
        used_at     timestamptz,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, purpose)
    );

    -- Every OTP send, for the per-mobile send limits (1 per 30 s, 10 per hour, per purpose).
    CREATE TABLE otp_sends (
        id       bigserial PRIMARY KEY,
        user_id  bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        purpose  text NOT NULL,
        sent_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX otp_sends_lookup ON otp_sends (user_id, purpose, sent_at);

    CREATE TABLE chatrooms (
        id             bigserial PRIMARY KEY,
        user_id        bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title          text NOT NULL DEFAULT 'New chat',
        message_count  integer NOT NULL DEFAULT 0,   -- every message, replies included
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX chatrooms_user_activity ON chatrooms (user_id, updated_at DESC, id DESC);

    CREATE TABLE messages (
        id            bigserial PRIMARY KEY,
        chatroom_id   bigint NOT NULL REFERENCES chatrooms(id) ON DELETE CASCADE,
        user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role          text NOT NULL CHECK (role IN ('user', 'model')),
        content       text NOT NULL DEFAULT '',
        status        text NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
        error         text,
        attempts      integer NOT NULL DEFAULT 0,    -- upstream attempts made for a model reply
        next_attempt_at timestamptz,                 -- a pending reply is not retried before this
        created_at    timestamptz NOT NULL DEFAULT now(),
        completed_at  timestamptz
    );
    CREATE INDEX messages_room ON messages (chatroom_id, id DESC);
    CREATE INDEX messages_pending ON messages (created_at) WHERE status = 'pending';

    -- Accepted user messages per UTC day; the row lock makes the daily limit atomic.
    CREATE TABLE daily_usage (
        user_id  bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        day      date NOT NULL,
        used     integer NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, day)
    );

    -- Idempotency-Key on POST message: the first response is replayed for 24 h.
    CREATE TABLE idempotency_keys (
        user_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        key          text NOT NULL,
        status       integer NOT NULL,
        body         text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, key)
    );

    CREATE TABLE subscriptions (
        user_id                 bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        stripe_customer_id      text,
        stripe_subscription_id  text UNIQUE,
        status                  text NOT NULL,       -- Stripe's subscription status
        current_period_end      timestamptz,
        last_event_created      bigint NOT NULL DEFAULT 0, -- newest event applied; older ones are ignored
        updated_at              timestamptz NOT NULL DEFAULT now()
    );

    -- Every Stripe event applied, so a repeat changes nothing (inserted in the same transaction as its effect).
    CREATE TABLE stripe_events (
        id           text PRIMARY KEY,
        type         text NOT NULL,
        created      bigint NOT NULL,
        received_at  timestamptz NOT NULL DEFAULT now()
    );

    INSERT INTO schema_version (version) VALUES (1);
END IF;
END
$step$;

-- Step 2: worker leases. A worker claims a pending reply for one upstream call by setting lease_until (and
-- lease_owner, "host:pid"); other workers leave it alone until the lease ends, so the reply of a killed worker
-- is taken again once its lease has expired. A finished or handed-back reply has both NULL.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 2) THEN

    ALTER TABLE messages ADD COLUMN lease_until timestamptz, ADD COLUMN lease_owner text;

    INSERT INTO schema_version (version) VALUES (2);
END IF;
END
$step$;

-- Step 3: one subscriptions row per Stripe subscription (a user may have several: two checkout tabs, a new
-- subscription after a cancellation), keyed by Stripe's id. user_id is NULL until an event tells whose it is
-- (an event can arrive before the one naming our user). users.tier is derived from these rows by the webhook
-- (pro iff one of the user's subscriptions is active, trialing or past_due). The old one-row-per-user table
-- is migrated: rows with a Stripe subscription id keep their state; rows without one (nothing to key them by)
-- are dropped. The tier of every user with a migrated row is set to the derived one (past_due now grants);
-- users without any are left as they are.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 3) THEN

    CREATE TABLE subscriptions_v3 (
        id                  text PRIMARY KEY CHECK (id <> ''),          -- Stripe's sub_...
        user_id             bigint REFERENCES users(id) ON DELETE CASCADE, -- NULL until we know whose it is
        stripe_customer_id  text,
        status              text NOT NULL,                               -- Stripe's subscription status
        current_period_end  timestamptz,
        last_event_created  bigint NOT NULL DEFAULT 0,  -- created of the newest event applied; older ones are ignored
        created_at          timestamptz NOT NULL DEFAULT now(),
        updated_at          timestamptz NOT NULL DEFAULT now()
    );

    INSERT INTO subscriptions_v3 (id, user_id, stripe_customer_id, status, current_period_end, last_event_created,
                                  created_at, updated_at)
        SELECT stripe_subscription_id, user_id, stripe_customer_id, status, current_period_end, last_event_created,
               updated_at, updated_at
        FROM subscriptions WHERE stripe_subscription_id IS NOT NULL AND stripe_subscription_id <> '';

    DROP TABLE subscriptions;
    ALTER TABLE subscriptions_v3 RENAME TO subscriptions;
    ALTER INDEX subscriptions_v3_pkey RENAME TO subscriptions_pkey;
    ALTER TABLE subscriptions RENAME CONSTRAINT subscriptions_v3_id_check TO subscriptions_id_check;
    ALTER TABLE subscriptions RENAME CONSTRAINT subscriptions_v3_user_id_fkey TO subscriptions_user_id_fkey;
    CREATE INDEX subscriptions_user ON subscriptions (user_id);
    CREATE INDEX subscriptions_customer ON subscriptions (stripe_customer_id);

    UPDATE users u SET tier = d.tier, updated_at = now()
    FROM (SELECT user_id,
                 CASE WHEN bool_or(status IN ('active', 'trialing', 'past_due')) THEN 'pro' ELSE 'basic' END AS tier
          FROM subscriptions WHERE user_id IS NOT NULL GROUP BY user_id) d
    WHERE u.id = d.user_id AND u.tier <> d.tier;

    INSERT INTO schema_version (version) VALUES (3);
END IF;
END
$step$;

-- Step 4: chat. (a) idempotency_keys.fingerprint: SHA-256 of the request a key was first used with (room id,
-- a NUL, the trimmed content); a reuse with another request is refused (409). NULL for keys stored before this
-- step (replayed as before). (b) cache_invalidations: the outbox of chatroom-list invalidations that could not
-- reach Redis; the worker writes the tombstone, then deletes the row (only if noted_at is still what it read:
-- a row re-stamped by a newer lost invalidation meanwhile stays for the next round).
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 4) THEN

    ALTER TABLE idempotency_keys ADD COLUMN fingerprint bytea;

    CREATE TABLE cache_invalidations (
        user_id   bigint PRIMARY KEY,                       -- no foreign key: recording must never fail
        noted_at  timestamptz NOT NULL DEFAULT clock_timestamp()
    );

    INSERT INTO schema_version (version) VALUES (4);
END IF;
END
$step$;

-- Step 5: worker heartbeats, for /healthz. Each worker process (host:pid) upserts its row every 2 s; a row
-- older than a day (a worker that is gone) is dropped by the next beat of any worker. A table rather than a
-- Redis key so that the heartbeat is written and read while Redis is down.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 5) THEN

    CREATE TABLE worker_heartbeats (
        worker   text PRIMARY KEY,                          -- host:pid, the worker's stream consumer name
        beat_at  timestamptz NOT NULL
    );

    INSERT INTO schema_version (version) VALUES (5);
END IF;
END
$step$;

-- Step 6: mobiles are stored in E.164 with the '+' (the API strips spaces and dashes and adds a missing '+', so
-- "15551234567" and "+1 555-123-4567" are one account). Earlier versions stored a mobile sent without '+' as
-- bare digits. When both forms of one number exist already (two accounts), the older account (created_at, then
-- id) keeps the number; the other one keeps all its data (chatrooms, subscriptions, tokens stay valid) but its
-- mobile becomes '<+E.164>#dup-<its id>', which no request can name (mobiles are digits only), so nothing is
-- lost and an operator can merge or delete it by hand:
--     SELECT id, mobile, created_at FROM users WHERE mobile LIKE '%#dup-%';
-- Rows that are not digits with an optional leading '+' are left alone. OTPs issued before this step were
-- bound to the old form and no longer verify (they live 300 s): ask for a new one.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 6) THEN

    WITH numbers AS (
        SELECT id, '+' || ltrim(mobile, '+') AS e164,
               row_number() OVER (PARTITION BY ltrim(mobile, '+') ORDER BY created_at, id) AS nth
        FROM users
        WHERE mobile ~ '^\+?[0-9]+$'
    )
    UPDATE users u SET mobile = n.e164 || '#dup-' || u.id, updated_at = now()
    FROM numbers n
    WHERE u.id = n.id AND n.nth > 1;

    UPDATE users SET mobile = '+' || mobile, updated_at = now() WHERE mobile ~ '^[0-9]+$';

    INSERT INTO schema_version (version) VALUES (6);
END IF;
END
$step$;

-- Step 7: a post in one round trip. chat_post() does in one statement (one transaction) what
-- POST /chatroom/{id}/message used to do in five: claim the Idempotency-Key (or find the committed first
-- response of it), lock the caller's room (a concurrent DELETE waits, or wins first), take one message from
-- the day's count (the daily_usage row lock serialises a user's concurrent posts, so the limit is exact), insert
-- the user's message and the pending reply (that order: the reply has the larger id), bump the room's
-- counters and store the response under the key. A refusal (no such room, limit reached) writes nothing: the
-- key claimed for it is deleted again, so the key stays free. outcome is one of
--   created       body: the 202 response, reply_id: the pending reply to queue
--   replayed      body: the stored first response of this key (status in status)
--   not_found     the room is not the caller's (or does not exist)
--   limit         the daily limit is reached (p_limit applies to the basic tier; pro is unlimited but counted)
--   key_conflict  the key was first used with another request (another room or content)
--   key_busy      the key is held by a request that has not committed a response (never visible in practice)
-- Messages are rendered by chat_message_json(), the contract's message shape. The users triggers below feed the
-- cache outbox from any change of a user row.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 7) THEN

    -- The contract's message, compact, keys in the contract's order (what the C code's json-c renders).
    CREATE OR REPLACE FUNCTION chat_message_json(p_id bigint, p_chatroom_id bigint, p_role text, p_content text,
                                                 p_status text, p_error text, p_created_at timestamptz)
    RETURNS text LANGUAGE sql STABLE AS $fn$
        SELECT '{"id":' || p_id || ',"chatroom_id":' || p_chatroom_id || ',"role":' || to_json(p_role)
               || ',"content":' || to_json(p_content) || ',"status":' || to_json(p_status) || ',"error":'
               || CASE WHEN p_status = 'failed' AND p_error IS NOT NULL THEN to_json(p_error)::text ELSE 'null' END
               || ',"created_at":"'
               || to_char(p_created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '"}'
    $fn$;

    CREATE OR REPLACE FUNCTION chat_post(p_user bigint, p_room bigint, p_content text, p_day date,
                                         p_limit integer, p_key text, p_fingerprint bytea)
    RETURNS TABLE (outcome text, status integer, body text, reply_id bigint)
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
        v_tier text;
        v_limit integer;
        v_status integer;
        v_body text;
        v_same boolean;
        v_reply bigint;
    BEGIN
        IF p_key IS NOT NULL THEN
            -- A row comes back when this request owns the key (new, or older than 24 h and replaced); a
            -- concurrent first request holding it is waited for here.
            INSERT INTO idempotency_keys AS k (user_id, key, status, body, fingerprint)
            VALUES (p_user, p_key, 0, '', p_fingerprint)
            ON CONFLICT (user_id, key) DO UPDATE SET status = 0, body = '', created_at = now(),
                fingerprint = EXCLUDED.fingerprint
                WHERE k.created_at < now() - interval '24 hours';
            IF NOT FOUND THEN
                -- A committed first request holds it (this statement's new snapshot sees it). A key stored
                -- before fingerprints existed (NULL) counts as the same request.
                SELECT k.status, k.body, k.fingerprint IS NULL OR k.fingerprint = p_fingerprint
                  INTO v_status, v_body, v_same
                  FROM idempotency_keys k WHERE k.user_id = p_user AND k.key = p_key;
                IF NOT FOUND OR v_status NOT BETWEEN 200 AND 599 THEN
                    RETURN QUERY SELECT 'key_busy'::text, 0, NULL::text, NULL::bigint;
                ELSIF NOT v_same THEN
                    RETURN QUERY SELECT 'key_conflict'::text, 0, NULL::text, NULL::bigint;
                ELSE
                    RETURN QUERY SELECT 'replayed'::text, v_status, v_body, NULL::bigint;
                END IF;
                RETURN;
            END IF;
        END IF;

        SELECT u.tier INTO v_tier FROM chatrooms c JOIN users u ON u.id = c.user_id
         WHERE c.id = p_room AND c.user_id = p_user FOR UPDATE OF c;
        IF NOT FOUND THEN
            DELETE FROM idempotency_keys k WHERE k.user_id = p_user AND k.key = p_key;
            RETURN QUERY SELECT 'not_found'::text, 404, NULL::text, NULL::bigint;
            RETURN;
        END IF;

        v_limit := CASE WHEN v_tier = 'pro' THEN NULL ELSE p_limit END;
        INSERT INTO daily_usage AS d (user_id, day, used)
        SELECT p_user, p_day, 1 WHERE v_limit IS NULL OR v_limit > 0
        ON CONFLICT (user_id, day) DO UPDATE SET used = d.used + 1 WHERE v_limit IS NULL OR d.used < v_limit;
        IF NOT FOUND THEN
            DELETE FROM idempotency_keys k WHERE k.user_id = p_user AND k.key = p_key;
            RETURN QUERY SELECT 'limit'::text, 429, NULL::text, NULL::bigint;
            RETURN;
        END IF;

        WITH room AS (
            UPDATE chatrooms SET message_count = message_count + 2, updated_at = now() WHERE id = p_room
        ), ins AS (
            INSERT INTO messages (chatroom_id, user_id, role, content, status)
            VALUES (p_room, p_user, 'user', p_content, 'completed'), (p_room, p_user, 'model', '', 'pending')
            RETURNING id, chatroom_id, role, content, status, error, created_at
        )
        SELECT '{"message":' || u.j || ',"reply":' || r.j || '}', r.id
          FROM (SELECT chat_message_json(i.id, i.chatroom_id, i.role, i.content, i.status, i.error, i.created_at) AS j
                  FROM ins i WHERE i.role = 'user') u,
               (SELECT i.id, chat_message_json(i.id, i.chatroom_id, i.role, i.content, i.status, i.error,
                                               i.created_at) AS j
                  FROM ins i WHERE i.role = 'model') r
          INTO v_body, v_reply;

        IF p_key IS NOT NULL THEN
            UPDATE idempotency_keys k SET status = 202, body = v_body WHERE k.user_id = p_user AND k.key = p_key;
        END IF;
        RETURN QUERY SELECT 'created'::text, 202, v_body, v_reply;
    END
    $fn$;

    -- Any change of a user that a Redis copy shows (the token version mirror, the cached GET /user/me, the
    -- cached list's tier-dependent reads), made by the app or straight in SQL (an operator's UPDATE of the tier,
    -- a DELETE of the user), goes into the outbox: the worker's next drain tombstones the user's cached copies
    -- and drops the mirror (lib/outbox.h), so they cannot outlive it by more than one worker turn.
    CREATE OR REPLACE FUNCTION users_note_cache_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        INSERT INTO cache_invalidations AS ci (user_id) VALUES (OLD.id)
        ON CONFLICT (user_id) DO UPDATE SET noted_at = clock_timestamp();
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER users_cache_change_update AFTER UPDATE ON users FOR EACH ROW
        WHEN (OLD.tier IS DISTINCT FROM NEW.tier OR OLD.token_version IS DISTINCT FROM NEW.token_version
              OR OLD.name IS DISTINCT FROM NEW.name OR OLD.email IS DISTINCT FROM NEW.email
              OR OLD.mobile IS DISTINCT FROM NEW.mobile
              OR (OLD.password_hash IS NULL) IS DISTINCT FROM (NEW.password_hash IS NULL))
        EXECUTE FUNCTION users_note_cache_change();
    CREATE TRIGGER users_cache_change_delete AFTER DELETE ON users FOR EACH ROW
        EXECUTE FUNCTION users_note_cache_change();

    INSERT INTO schema_version (version) VALUES (7);
END IF;
END
$step$;

-- Step 8: abuse counters (issue 16), in PostgreSQL so that every process and machine shares them and they keep
-- working while Redis is down. One row per (scope, subject): scope names what is counted (login_user,
-- login_addr, otp_user, otp_addr, signup_addr), subject is a user id or a client address. count events since
-- window_start (a new window starts when the old one is over); blocked_until is when the subject may try again.
-- Rows whose window and block are over are deleted by the next counting request that finds them (lib/throttle.c).
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 8) THEN

    CREATE TABLE auth_throttle (
        scope          text NOT NULL,
        subject        text NOT NULL,
        count          integer NOT NULL DEFAULT 0,
        window_start   timestamptz NOT NULL DEFAULT now(),
        blocked_until  timestamptz,
        PRIMARY KEY (scope, subject)
    );
    CREATE INDEX auth_throttle_window ON auth_throttle (window_start);

    INSERT INTO schema_version (version) VALUES (8);
END IF;
END
$step$;

-- Step 9: a message points at its room and that room's owner with one foreign key, (chatroom_id, user_id) ->
-- chatrooms (id, user_id), in place of one to chatrooms and one to users. A message can no longer name a user
-- other than its room's owner, and a post checks one key per row instead of two: it no longer locks the user's
-- row (KEY SHARE, a WAL record, a MultiXact when the user has two posts in flight), only the room, which
-- chat_post() has locked already (PostgreSQL's CPU per post -3 to -5 % in alternating bench runs). Deleting a
-- user still deletes its messages (through its rooms), and no longer scans every message for its user_id,
-- which no index covers. Before the key is added, a message whose user_id is not its room's owner (none is
-- ever written by the app; an operator's INSERT could have) is given the owner's id: the owner is who the room's
-- messages belong to. The step locks the messages table (reads and writes wait) while it scans it.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 9) THEN

    CREATE UNIQUE INDEX chatrooms_id_user ON chatrooms (id, user_id);

    UPDATE messages m SET user_id = c.user_id
      FROM chatrooms c WHERE c.id = m.chatroom_id AND m.user_id <> c.user_id;

    ALTER TABLE messages
        DROP CONSTRAINT messages_chatroom_id_fkey,
        DROP CONSTRAINT messages_user_id_fkey,
        ADD CONSTRAINT messages_room_owner_fkey FOREIGN KEY (chatroom_id, user_id)
            REFERENCES chatrooms (id, user_id) ON DELETE CASCADE;

    INSERT INTO schema_version (version) VALUES (9);
END IF;
END
$step$;

-- Step 10: a keyed post writes its key once. chat_post() (step 7) claimed the Idempotency-Key first (an
-- INSERT ... ON CONFLICT with a blank response), stored the response in it last (an UPDATE), and its foreign
-- key to users locked the user's row on every keyed post: five WAL records more than a post without a key, and
-- a MultiXact whenever two posts of one user were in flight. Now the key is looked up first (a committed fresh
-- key answers at once: replayed, key_conflict) and written once, with the response, after the messages: two
-- records more. A concurrent request with the same key that commits first makes this one's INSERT raise
-- unique_violation (23505): the whole post rolls back, and the caller runs it once more, which finds the key
-- (lib/chat_store.c). Refusals (not_found, limit) look at the key again before answering, so a concurrent
-- first request that took the room's lock or the day's last message first is answered as the key's result,
-- as before. A key older than idempotency_ttl() is replaced by the next request with it. The keys of a deleted
-- user go with it through a trigger instead of the foreign key (a keyed post locks its room first, so a delete
-- of the user waits for it, then removes its key). idempotency_ttl() is the one place of the 24 hours, read
-- by the worker's purge too. Outcomes as in step 7.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 10) THEN

    CREATE OR REPLACE FUNCTION idempotency_ttl() RETURNS interval LANGUAGE sql IMMUTABLE AS $fn$
        SELECT interval '24 hours'
    $fn$;

    ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_user_id_fkey;
    DELETE FROM idempotency_keys k WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = k.user_id);
    CREATE OR REPLACE FUNCTION users_drop_idempotency_keys() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        DELETE FROM idempotency_keys k WHERE k.user_id = OLD.id;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER users_idempotency_keys_delete AFTER DELETE ON users FOR EACH ROW
        EXECUTE FUNCTION users_drop_idempotency_keys();

    -- What the committed key p_key of p_user answers: the stored response (the same request: same room and
    -- content, or a key stored before fingerprints), key_conflict (another request), key_busy (no response in
    -- it: a row of step 7 caught in flight). fresh: younger than idempotency_ttl(); an older key answers
    -- nothing and is renewed by the next request with it. No row: no such key.
    CREATE OR REPLACE FUNCTION chat_post_key(p_user bigint, p_key text, p_fingerprint bytea)
    RETURNS TABLE (outcome text, status integer, body text, fresh boolean) LANGUAGE sql STABLE AS $fn$
        SELECT a.outcome, CASE a.outcome WHEN 'replayed' THEN k.status ELSE 0 END,
               CASE a.outcome WHEN 'replayed' THEN k.body END, k.created_at >= now() - idempotency_ttl()
          FROM idempotency_keys k,
               LATERAL (SELECT CASE WHEN k.status NOT BETWEEN 200 AND 599 THEN 'key_busy'
                                    WHEN k.fingerprint IS NOT NULL AND k.fingerprint <> p_fingerprint
                                         THEN 'key_conflict'
                                    ELSE 'replayed' END AS outcome) a
         WHERE k.user_id = p_user AND k.key = p_key
    $fn$;

    CREATE OR REPLACE FUNCTION chat_post(p_user bigint, p_room bigint, p_content text, p_day date,
                                         p_limit integer, p_key text, p_fingerprint bytea)
    RETURNS TABLE (outcome text, status integer, body text, reply_id bigint)
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
        v_tier text;
        v_limit integer;
        v_body text;
        v_reply bigint;
        v_refusal text;
        v_key_outcome text;
        v_key_status integer;
        v_key_body text;
        v_key_fresh boolean;
        v_stale boolean := false;   -- p_key names a row older than idempotency_ttl(): renewed below
    BEGIN
        IF p_key IS NOT NULL THEN
            SELECT * INTO v_key_outcome, v_key_status, v_key_body, v_key_fresh
              FROM chat_post_key(p_user, p_key, p_fingerprint);
            IF v_key_fresh THEN
                RETURN QUERY SELECT v_key_outcome, v_key_status, v_key_body, NULL::bigint;
                RETURN;
            END IF;
            v_stale := FOUND;
        END IF;

        SELECT u.tier INTO v_tier FROM chatrooms c JOIN users u ON u.id = c.user_id
         WHERE c.id = p_room AND c.user_id = p_user FOR UPDATE OF c;
        IF NOT FOUND THEN
            v_refusal := 'not_found';
        ELSE
            v_limit := CASE WHEN v_tier = 'pro' THEN NULL ELSE p_limit END;
            INSERT INTO daily_usage AS d (user_id, day, used)
            SELECT p_user, p_day, 1 WHERE v_limit IS NULL OR v_limit > 0
            ON CONFLICT (user_id, day) DO UPDATE SET used = d.used + 1 WHERE v_limit IS NULL OR d.used < v_limit;
            IF NOT FOUND THEN
                v_refusal := 'limit';
            END IF;
        END IF;
        IF v_refusal IS NOT NULL THEN
            -- this request waited for the room's lock or the day's count: a request with the same key that
            -- held them may have committed meanwhile, and its result is the answer (this statement sees it)
            IF p_key IS NOT NULL THEN
                SELECT * INTO v_key_outcome, v_key_status, v_key_body, v_key_fresh
                  FROM chat_post_key(p_user, p_key, p_fingerprint);
                IF v_key_fresh THEN
                    RETURN QUERY SELECT v_key_outcome, v_key_status, v_key_body, NULL::bigint;
                    RETURN;
                END IF;
            END IF;
            RETURN QUERY SELECT v_refusal, CASE v_refusal WHEN 'limit' THEN 429 ELSE 404 END, NULL::text,
                                NULL::bigint;
            RETURN;
        END IF;

        WITH room AS (
            UPDATE chatrooms SET message_count = message_count + 2, updated_at = now() WHERE id = p_room
        ), ins AS (
            INSERT INTO messages (chatroom_id, user_id, role, content, status)
            VALUES (p_room, p_user, 'user', p_content, 'completed'), (p_room, p_user, 'model', '', 'pending')
            RETURNING id, chatroom_id, role, content, status, error, created_at
        )
        SELECT '{"message":' || u.j || ',"reply":' || r.j || '}', r.id
          FROM (SELECT chat_message_json(i.id, i.chatroom_id, i.role, i.content, i.status, i.error, i.created_at) AS j
                  FROM ins i WHERE i.role = 'user') u,
               (SELECT i.id, chat_message_json(i.id, i.chatroom_id, i.role, i.content, i.status, i.error,
                                               i.created_at) AS j
                  FROM ins i WHERE i.role = 'model') r
          INTO v_body, v_reply;

        IF p_key IS NOT NULL THEN
            IF v_stale THEN
                -- still stale: a concurrent renewal that committed first makes this find nothing, and the
                -- INSERT below raise
                UPDATE idempotency_keys k SET status = 202, body = v_body, fingerprint = p_fingerprint,
                                              created_at = now()
                 WHERE k.user_id = p_user AND k.key = p_key AND k.created_at < now() - idempotency_ttl();
                v_stale := FOUND;
            END IF;
            IF NOT v_stale THEN
                INSERT INTO idempotency_keys (user_id, key, status, body, fingerprint)
                VALUES (p_user, p_key, 202, v_body, p_fingerprint);
            END IF;
        END IF;
        RETURN QUERY SELECT 'created'::text, 202, v_body, v_reply;
    END
    $fn$;

    INSERT INTO schema_version (version) VALUES (10);
END IF;
END
$step$;

-- Step 11: a room's messages are read through messages_room (its rows, in order) whatever the other rooms hold.
-- ANALYZE counts the distinct rooms among the messages. With few rooms (a small or self-hosted install: one user,
-- a busy room and some quiet ones) every room looks like a large share of all messages, and the generic plans of
-- the prepared statements that read a room's newest messages (a room with its messages, a page of them, the
-- worker's history) walk messages_pkey backwards and filter by room: for a quiet room that reads every newer
-- message of the busy one (20,000 rows for 50 in tests/e2e/21_message_plans.sh; 35-61 ms with 300,000). The
-- number of distinct rooms fixed at 1 % of the rows (an average room of 100 messages) makes one room a small
-- share, so messages_room is the cheaper plan for any room; a custom plan for a room that does hold most rows
-- still goes by that room's own statistics. Takes a lock that lets reads and writes go on.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 11) THEN

    ALTER TABLE messages ALTER COLUMN chatroom_id SET (n_distinct = -0.01);
    -- The statistic counts from the next ANALYZE. An empty table (a new install) is left to autovacuum's:
    -- analyzed now, it would be planned as empty while it fills (a one-minute slow start in bench/soak.sh).
    IF EXISTS (SELECT 1 FROM messages) THEN
        ANALYZE messages;
    END IF;

    INSERT INTO schema_version (version) VALUES (11);
END IF;
END
$step$;

-- Step 12: one open Checkout Session per user. POST /subscribe/pro created a new Stripe Checkout Session on every
-- call (only the client's Idempotency-Key deduplicated), so two tabs, a double click or a retry gave two open
-- sessions, and a user who completed both paid twice. checkout_sessions holds each user's current session, one row
-- per user: while it is usable (not closed by a webhook, and at least p_min_left_s before its expires_at, which the
-- app sets explicitly) every POST answers it without calling Stripe. Otherwise one request at a time claims the row
-- for a short lease (claim_token, claim_until) and calls Stripe outside any transaction, then stores the session
-- under its token (checkout_store in lib/billing.c), or gives the claim back when Stripe failed; concurrent requests
-- of the user call checkout_claim() again until the session is there (or the lease has run out: a claimer that died
-- leaves nothing but it). No transaction is held across the Stripe call: a slow Stripe holds no lock and no
-- connection in a transaction, at the cost of waiters polling. checkout.session.completed, .expired and the async
-- payment events set closed_at (lib/billing.c, in the event's transaction).
--   checkout_claim(user, token, lease_s, min_left_s) -> (outcome, session_id, url, expires_at, customer):
--     open     the usable session (session_id, url, expires_at in Unix seconds)
--     claimed  this token holds the claim now (also when it held it already: a repeated call); customer: the
--              Stripe customer of the user's latest subscription that has one (to pass as customer), or NULL
--     busy     another request holds a live claim
-- The row is locked for the statement only; a claim replaces an unusable session (closed, or too close to its end).
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 12) THEN

    CREATE TABLE checkout_sessions (
        user_id      bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        session_id   text UNIQUE,          -- Stripe's cs_...; NULL while a claim is out, or after a failed one
        url          text,                 -- the hosted Checkout page
        expires_at   timestamptz,          -- the session's expires_at at Stripe
        closed_at    timestamptz,          -- completed, expired or paid later (a webhook): never handed out again
        claim_token  text,                 -- the request creating a session now (random), NULL none
        claim_until  timestamptz,          -- the end of its lease: past it another request may claim
        updated_at   timestamptz NOT NULL DEFAULT now()
    );

    CREATE OR REPLACE FUNCTION checkout_claim(p_user bigint, p_token text, p_lease_s integer, p_min_left_s integer)
    RETURNS TABLE (outcome text, session_id text, url text, expires_at bigint, customer text)
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
        r checkout_sessions%ROWTYPE;
    BEGIN
        INSERT INTO checkout_sessions (user_id) VALUES (p_user) ON CONFLICT (user_id) DO NOTHING;
        SELECT * INTO r FROM checkout_sessions c WHERE c.user_id = p_user FOR UPDATE;
        IF r.session_id IS NOT NULL AND r.closed_at IS NULL
           AND r.expires_at >= now() + make_interval(secs => p_min_left_s) THEN
            RETURN QUERY SELECT 'open'::text, r.session_id, r.url, extract(epoch FROM r.expires_at)::bigint, NULL::text;
            RETURN;
        END IF;
        IF r.claim_token IS NOT NULL AND r.claim_token <> p_token AND r.claim_until > now() THEN
            RETURN QUERY SELECT 'busy'::text, NULL::text, NULL::text, NULL::bigint, NULL::text;
            RETURN;
        END IF;
        UPDATE checkout_sessions c SET session_id = NULL, url = NULL, expires_at = NULL, closed_at = NULL,
                                       claim_token = p_token,
                                       claim_until = now() + make_interval(secs => p_lease_s), updated_at = now()
         WHERE c.user_id = p_user;
        RETURN QUERY SELECT 'claimed'::text, NULL::text, NULL::text, NULL::bigint,
                            (SELECT s.stripe_customer_id FROM subscriptions s
                              WHERE s.user_id = p_user AND s.stripe_customer_id IS NOT NULL
                              ORDER BY s.updated_at DESC, s.id DESC LIMIT 1);
    END
    $fn$;

    INSERT INTO schema_version (version) VALUES (12);
END IF;
END
$step$;

-- Step 13: a checkout paid by a delayed method (SEPA Direct Debit, ACH: checkout.session.completed with
-- payment_status unpaid) takes days to be confirmed, and the user stays basic meanwhile; a new session then would
-- let them pay a second time. checkout_sessions.awaiting_payment marks such a session (the webhook sets it with
-- closed_at; checkout.session.async_payment_succeeded or _failed clears it), and checkout_claim() answers
--     awaiting  the user's last checkout is being paid (session_id): no new one (POST /subscribe/pro: 409)
-- for at most 30 days after the completion (Stripe confirms a debit within 14 business days; a lost result must
-- not block the user for ever). Otherwise as step 12.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 13) THEN

    ALTER TABLE checkout_sessions ADD COLUMN IF NOT EXISTS awaiting_payment boolean NOT NULL DEFAULT false;

    CREATE OR REPLACE FUNCTION checkout_claim(p_user bigint, p_token text, p_lease_s integer, p_min_left_s integer)
    RETURNS TABLE (outcome text, session_id text, url text, expires_at bigint, customer text)
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    DECLARE
        r checkout_sessions%ROWTYPE;
    BEGIN
        INSERT INTO checkout_sessions (user_id) VALUES (p_user) ON CONFLICT (user_id) DO NOTHING;
        SELECT * INTO r FROM checkout_sessions c WHERE c.user_id = p_user FOR UPDATE;
        IF r.session_id IS NOT NULL AND r.closed_at IS NULL
           AND r.expires_at >= now() + make_interval(secs => p_min_left_s) THEN
            RETURN QUERY SELECT 'open'::text, r.session_id, r.url, extract(epoch FROM r.expires_at)::bigint, NULL::text;
            RETURN;
        END IF;
        IF r.awaiting_payment AND r.closed_at > now() - interval '30 days' THEN
            RETURN QUERY SELECT 'awaiting'::text, r.session_id, NULL::text, NULL::bigint, NULL::text;
            RETURN;
        END IF;
        IF r.claim_token IS NOT NULL AND r.claim_token <> p_token AND r.claim_until > now() THEN
            RETURN QUERY SELECT 'busy'::text, NULL::text, NULL::text, NULL::bigint, NULL::text;
            RETURN;
        END IF;
        UPDATE checkout_sessions c SET session_id = NULL, url = NULL, expires_at = NULL, closed_at = NULL,
                                       awaiting_payment = false, claim_token = p_token,
                                       claim_until = now() + make_interval(secs => p_lease_s), updated_at = now()
         WHERE c.user_id = p_user;
        RETURN QUERY SELECT 'claimed'::text, NULL::text, NULL::text, NULL::bigint,
                            (SELECT s.stripe_customer_id FROM subscriptions s
                              WHERE s.user_id = p_user AND s.stripe_customer_id IS NOT NULL
                              ORDER BY s.updated_at DESC, s.id DESC LIMIT 1);
    END
    $fn$;

    INSERT INTO schema_version (version) VALUES (13);
END IF;
END
$step$;
