/* queue: the AI reply job queue. PostgreSQL is the source of truth (a reply row with status 'pending');
 * Redis Streams carries the job ids to the workers (stream QUEUE_STREAM, consumer group QUEUE_GROUP,
 * one entry {"reply_id": "<id>"} per job). A job lost in Redis is found again from PostgreSQL by the
 * worker's recovery sweep, so an enqueue failure is not an error for the caller. */
#ifndef GB_QUEUE_H
#define GB_QUEUE_H

#define QUEUE_STREAM "gb:replies"
#define QUEUE_GROUP "workers"
#define QUEUE_MAXLEN "100000" /* approximate cap on the stream length (XADD MAXLEN ~) */

/* Queue reply_id for the workers (XADD). 0 ok, -1 Redis down (the recovery sweep will pick it up). */
int queue_enqueue(long long reply_id);

#endif
