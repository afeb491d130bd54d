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
