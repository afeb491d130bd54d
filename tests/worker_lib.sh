# shellcheck shell=bash
# tests/worker_lib.sh: helpers for the worker's end-to-end scripts (tests/e2e/3x_*.sh), on top of tests/lib.sh.
#
#   worker_user                      signup_and_login, then make the user pro (no daily limit): TOKEN, USER_ID
#   new_room                         POST /chatroom as TOKEN: sets ROOM
#   post_msg ROOM CONTENT            POST /chatroom/ROOM/message: sets MSG_ID, REPLY_ID (fails the script if not 202)
#   sql_pending ROOM CONTENT         the same rows straight in PostgreSQL (user message + pending reply), no enqueue:
#                                    sets MSG_ID, REPLY_ID
#   enqueue ID                       XADD the reply id like the API does
#   reply_field ID COLUMN            one column of a messages row
#   wait_replies SECS ID...          wait until none of the replies is pending (bounded); 0 if so, 1 on timeout
#   wait_fake_count SECS N JQ_FILTER wait until the fake has recorded N requests matching a jq filter over each
#                                    recorded request (e.g. 'select(.body.contents[-1].parts[-1].text == "x")')
#   fake_count JQ_FILTER             how many recorded requests match
#   worker_restart [VAR=VALUE...]    stop the stack's worker (SIGTERM) and start it again with these settings
#   worker_restore                   back to the stack's own worker settings (installed as an EXIT trap by
#                                    worker_restart)
#   uniq_tag                         a random tag to make message contents unique across runs
#   has STR SUB / lacks STR SUB      STR contains / does not contain SUB;   at_most N STR: STR has <= N characters
#   not CMD...                       CMD fails
#   is_consumer NAME                 NAME is a consumer of the workers group;  group_exists: the group exists

[[ -n ${_GB_WORKER_LIB_LOADED:-} ]] && return 0
_GB_WORKER_LIB_LOADED=1

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKER_SETTINGS=(AI_PROVIDER AI_TIMEOUT_MS AI_MAX_ATTEMPTS WORKER_RECOVER_SECONDS WORKER_CONCURRENCY
    AI_HISTORY_MESSAGES GEMINI_API_KEY OPENAI_MODEL)
declare -A _WL_SAVED=()
for _v in "${WORKER_SETTINGS[@]}"; do
    _WL_SAVED[$_v]=${!_v-__unset__}
done
unset _v

has() { [[ $1 == *"$2"* ]]; }
lacks() { [[ $1 != *"$2"* ]]; }
not() { ! "$@"; }
at_most() { ((${#2} <= $1)); }
is_consumer() { redis_cli XINFO CONSUMERS gb:replies workers | grep -qxF "$1"; }
group_exists() { redis_cli XINFO GROUPS gb:replies | grep -qx workers; }

uniq_tag() {
    od -An -N6 -tx1 /dev/urandom | tr -d ' \n'
}

worker_user() {
    signup_and_login || return 1
    psql_q "UPDATE users SET tier = 'pro' WHERE id = $USER_ID" >/dev/null
}

new_room() {
    auth_req "$TOKEN" POST /chatroom '{"title":"worker test"}'
    ROOM=$(jget .id)
    [[ $STATUS == 201 && $ROOM =~ ^[0-9]+$ ]] || {
        echo "new_room: POST /chatroom -> $STATUS $BODY" >&2
        return 1
    }
}

post_msg() {
    local body
    body=$(jq -nc --arg c "$2" '{content: $c}')
    auth_req "$TOKEN" POST "/chatroom/$1/message" "$body"
    MSG_ID=$(jget '.message.id // empty')
    REPLY_ID=$(jget '.reply.id // empty')
    [[ $STATUS == 202 && $REPLY_ID =~ ^[0-9]+$ ]] || {
        echo "post_msg: POST /chatroom/$1/message -> $STATUS $BODY" >&2
        return 1
    }
}

sql_pending() {
    local ids
    ids=$(psql_q "WITH r AS (UPDATE chatrooms SET message_count = message_count + 2, updated_at = now()
                             WHERE id = $1 RETURNING id, user_id)
                  INSERT INTO messages (chatroom_id, user_id, role, content, status)
                  SELECT r.id, r.user_id, v.role, v.content, v.status FROM r,
                  (VALUES (1, 'user', \$c\$$2\$c\$, 'completed'), (2, 'model', '', 'pending')) v(n, role, content, status)
                  ORDER BY v.n RETURNING id" | tr '\n' ' ')
    # shellcheck disable=SC2034 # MSG_ID is for the caller
    read -r MSG_ID REPLY_ID <<<"$ids"
    [[ $REPLY_ID =~ ^[0-9]+$ ]]
}

enqueue() {
    redis_cli XADD gb:replies MAXLEN '~' 100000 '*' reply_id "$1" >/dev/null
}

reply_field() {
    psql_q "SELECT $2 FROM messages WHERE id = $1"
}

wait_replies() {
    local secs=$1 deadline ids
    shift
    ids=$(
        IFS=,
        echo "$*"
    )
    deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        [[ $(psql_q "SELECT count(*) FROM messages WHERE id IN ($ids) AND status = 'pending'" 2>/dev/null) == 0 ]] &&
            return 0
        sleep 0.2
    done
    return 1
}

# wait_for SECS CMD...: 0 as soon as CMD succeeds (tried every 0.1 s), 1 when it has not within SECS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    while ((SECONDS < deadline)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

fake_count() {
    curl -s --max-time 10 "$FAKE_AI_URL/__requests" | jq "[.[] | $1] | length"
}

wait_fake_count() {
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        (($(fake_count "$3") >= $2)) && return 0
        sleep 0.2
    done
    return 1
}

worker_restart() {
    stack_worker_stop TERM || return 1
    (
        for kv in "$@"; do
            export "${kv?}"
        done
        stack_worker_start
    ) || return 1
    trap worker_restore EXIT
}

worker_restore() {
    stack_worker_stop TERM || true
    (
        for v in "${WORKER_SETTINGS[@]}"; do
            if [[ ${_WL_SAVED[$v]} == __unset__ ]]; then
                unset "$v"
            else
                export "$v=${_WL_SAVED[$v]}"
            fi
        done
        stack_worker_start
    ) || true
}
