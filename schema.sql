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

-- Step 9: a user deleted in SQL (by an operator) loses its Redis state within about a second: the delete puts
-- the user id into the outbox cache_invalidations, whose drain by the worker tombstones the cached chatroom
-- list and drops the token version mirror, so the next request with one of its tokens asks PostgreSQL, which
-- says the user no longer exists (401). Without it a cached list could be served for its 10-minute TTL.
DO $step$
BEGIN
IF NOT EXISTS (SELECT 1 FROM schema_version WHERE version = 9) THEN

    CREATE FUNCTION users_deleted_outbox() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        INSERT INTO cache_invalidations (user_id) VALUES (OLD.id)
        ON CONFLICT (user_id) DO UPDATE SET noted_at = clock_timestamp();
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER users_deleted_outbox AFTER DELETE ON users FOR EACH ROW EXECUTE FUNCTION users_deleted_outbox();

    INSERT INTO schema_version (version) VALUES (9);
END IF;
END
$step$;
