/* outbox.h: the outbox the controller publishes from: its calls (a small vtable) and the RAM
 * ring. Python twin: airfsm/core/outbox.py (Outbox, MemoryOutbox).
 *
 * airfsm_outbox_t is all the controller asks of an outbox: the oldest message, counting an
 * attempt, deleting it once delivered, moving it to the dead letters once given up. Each call
 * returns an airfsm_outbox_status_t: OK, EMPTY (peek found nothing) or UNAVAILABLE (the store
 * cannot do it now - locked, disk full, read-only: nothing changed, the controller backs off and
 * asks again). A host's durable store implements the same four calls; none of them may wait.
 *
 * outbox_ring_t is the one in the core: a ring of caller-owned slots addressed by index (the
 * twin of MemoryOutbox), with a ring of as many dead letters. Unlike the Python ring, a dead
 * letter keeps its id, attempts, reason and detail but not its bytes: an MCU has no operator to
 * re-queue it, and the slot is free for the next message at once. It never returns UNAVAILABLE.
 */
#ifndef AIRFSM_OUTBOX_H
#define AIRFSM_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airfsm_config.h"

/* Twin: messages.OutboundMessage, as a view: topic and payload point into the outbox's own
 * storage and stay valid until the next call that changes the outbox (ack, dead_letter,
 * enqueue). Ids start at 1 and increase with enqueue order. */
typedef struct {
    uint32_t id;
    const uint8_t *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
    uint32_t attempts; /* sends (and refused mode switches) already spent on it */
} airfsm_message_t;

/* Twin: outbox.Outbox (the Protocol): each call does all of its work and returns OK, or does
 * none and returns UNAVAILABLE. */
typedef struct {
    /* Twin: Outbox.peek(): the oldest queued message into *out (OK), or EMPTY. */
    airfsm_outbox_status_t (*peek)(void *store, airfsm_message_t *out);
    /* Twin: Outbox.mark_attempt(): one more attempt counted; the new count in *attempts (0 if
     * the message is gone). */
    airfsm_outbox_status_t (*mark_attempt)(void *store, uint32_t id, uint32_t *attempts);
    /* Twin: Outbox.ack(): delivered, remove it for good (unknown ids are ignored). */
    airfsm_outbox_status_t (*ack)(void *store, uint32_t id);
    /* Twin: Outbox.dead_letter(): given up on, moved to the dead letters with why. */
    airfsm_outbox_status_t (*dead_letter)(void *store, uint32_t id, airfsm_reason_t reason,
                                          int32_t detail);
} airfsm_outbox_ops_t;

/* An outbox: its calls and the store they work on. */
typedef struct {
    const airfsm_outbox_ops_t *ops;
    void *store;
} airfsm_outbox_t;

/* Twin: the outbox calls of online.py, one place that calls through the vtable. */
airfsm_outbox_status_t outbox_peek(const airfsm_outbox_t *outbox, airfsm_message_t *out);
airfsm_outbox_status_t outbox_mark_attempt(const airfsm_outbox_t *outbox, uint32_t id,
                                           uint32_t *attempts);
airfsm_outbox_status_t outbox_ack(const airfsm_outbox_t *outbox, uint32_t id);
airfsm_outbox_status_t outbox_dead_letter(const airfsm_outbox_t *outbox, uint32_t id,
                                          airfsm_reason_t reason, int32_t detail);

/* --- the RAM ring (twin: MemoryOutbox) ------------------------------------------------------ */

/* One queued message: its bytes are kept in the slot. */
typedef struct {
    uint32_t id;
    uint32_t attempts;
    uint16_t topic_len;
    uint16_t payload_len;
    uint8_t qos;
    uint8_t topic[AIRFSM_MAX_TOPIC];
    uint8_t payload[AIRFSM_OUTBOX_PAYLOAD_MAX];
} outbox_slot_t;

/* One dead letter (twin: outbox._Dead, without the message's bytes). */
typedef struct {
    uint32_t id;
    uint32_t attempts;
    airfsm_reason_t reason;
    int32_t detail;
} outbox_dead_t;

/* Twin: MemoryOutbox. `capacity` slots and as many dead letters, both the caller's. */
typedef struct {
    outbox_slot_t *slots;
    outbox_dead_t *dead;
    size_t capacity;
    size_t head;        /* the slot of the oldest message */
    size_t count;
    size_t dead_head;
    size_t dead_count;
    uint32_t next_id;
    uint32_t dead_letters_dropped; /* the oldest dead letter forgotten to keep a newer one */
} outbox_ring_t;

/* Why outbox_enqueue() refused (twin: the ValueError / OutboxFullError of enqueue()). */
#define OUTBOX_BAD_TOPIC (-1)   /* payload.check_topic refused it */
#define OUTBOX_BAD_QOS (-2)
#define OUTBOX_UNSENDABLE (-3)  /* the payload can travel neither as text nor as hex */
#define OUTBOX_FULL (-4)
#define OUTBOX_TOO_LONG (-5)    /* longer than a slot holds (AIRFSM_OUTBOX_PAYLOAD_MAX) */

/* Twin: MemoryOutbox.__init__(capacity): over the caller's `capacity` slots and dead letters. */
void outbox_ring_init(outbox_ring_t *ring, outbox_slot_t *slots, outbox_dead_t *dead,
                      size_t capacity);

/* Twin: MemoryOutbox.enqueue(): the new message's id (> 0), or a negative OUTBOX_* code. */
int32_t outbox_enqueue(outbox_ring_t *ring, const uint8_t *topic, size_t topic_len,
                       const uint8_t *payload, size_t payload_len, int32_t qos);

/* Twin: MemoryOutbox.count(). */
size_t outbox_count(const outbox_ring_t *ring);

/* Twin: MemoryOutbox.dead_count(): dead letters kept. */
size_t outbox_dead_count(const outbox_ring_t *ring);

/* The k-th oldest dead letter (k < outbox_dead_count()). */
const outbox_dead_t *outbox_dead_at(const outbox_ring_t *ring, size_t k);

/* The ring as an airfsm_outbox_t (its calls over `ring`). */
airfsm_outbox_t outbox_ring_outbox(outbox_ring_t *ring);

#endif /* AIRFSM_OUTBOX_H */
