/* outbox.c: the outbox's calls and the RAM ring. Python twin: airfsm/core/outbox.py
 * (Outbox, MemoryOutbox); every function names its twin. */
#include <string.h>

#include "outbox.h"
#include "payload.h"

/* Twin: Outbox.peek(). */
airfsm_outbox_status_t outbox_peek(const airfsm_outbox_t *outbox, airfsm_message_t *out)
{
    return outbox->ops->peek(outbox->store, out);
}

/* Twin: Outbox.mark_attempt(). */
airfsm_outbox_status_t outbox_mark_attempt(const airfsm_outbox_t *outbox, uint32_t id,
                                           uint32_t *attempts)
{
    return outbox->ops->mark_attempt(outbox->store, id, attempts);
}

/* Twin: Outbox.ack(). */
airfsm_outbox_status_t outbox_ack(const airfsm_outbox_t *outbox, uint32_t id)
{
    return outbox->ops->ack(outbox->store, id);
}

/* Twin: Outbox.dead_letter(). */
airfsm_outbox_status_t outbox_dead_letter(const airfsm_outbox_t *outbox, uint32_t id,
                                          airfsm_reason_t reason, int32_t detail)
{
    return outbox->ops->dead_letter(outbox->store, id, reason, detail);
}

/* --- the RAM ring ------------------------------------------------------------------------- */

/* Twin: MemoryOutbox.__init__(). */
void outbox_ring_init(outbox_ring_t *ring, outbox_slot_t *slots, outbox_dead_t *dead,
                      size_t capacity)
{
    memset(ring, 0, sizeof *ring);
    ring->slots = slots;
    ring->dead = dead;
    ring->capacity = capacity;
    ring->next_id = 1;
}

/* Twin: MemoryOutbox._slot(): the slot of the k-th oldest message. */
static size_t outbox_slot(const outbox_ring_t *ring, size_t k)
{
    return (ring->head + k) % ring->capacity;
}

/* Twin: MemoryOutbox._find(): k of the message with this id; -1 if none. */
static int32_t outbox_find(const outbox_ring_t *ring, uint32_t id)
{
    size_t k;
    for (k = 0; k < ring->count; k++) {
        if (ring->slots[outbox_slot(ring, k)].id == id) {
            return (int32_t)k;
        }
    }
    return -1;
}

/* Twin: MemoryOutbox._remove(): take the k-th oldest out; the younger ones move up a slot. */
static void outbox_remove(outbox_ring_t *ring, size_t k)
{
    size_t j;
    for (j = k; j + 1 < ring->count; j++) {
        ring->slots[outbox_slot(ring, j)] = ring->slots[outbox_slot(ring, j + 1)];
    }
    ring->count--;
}

/* Twin: MemoryOutbox.enqueue(). */
int32_t outbox_enqueue(outbox_ring_t *ring, const uint8_t *topic, size_t topic_len,
                       const uint8_t *payload, size_t payload_len, int32_t qos)
{
    outbox_slot_t *slot;

    if (payload_topic_fault(topic, topic_len, NULL) != PAYLOAD_TOPIC_OK) {
        return OUTBOX_BAD_TOPIC;
    }
    if (!payload_qos_ok(qos)) {
        return OUTBOX_BAD_QOS;
    }
    if (payload_form(payload, payload_len, true) == PAYLOAD_FORM_REFUSED) {
        return OUTBOX_UNSENDABLE;
    }
    if (payload_len > AIRFSM_OUTBOX_PAYLOAD_MAX || topic_len > AIRFSM_MAX_TOPIC) {
        return OUTBOX_TOO_LONG;
    }
    if (ring->count >= ring->capacity) {
        return OUTBOX_FULL;
    }
    slot = &ring->slots[outbox_slot(ring, ring->count)];
    slot->id = ring->next_id++;
    slot->attempts = 0;
    slot->qos = (uint8_t)qos;
    slot->topic_len = (uint16_t)topic_len;
    slot->payload_len = (uint16_t)payload_len;
    memcpy(slot->topic, topic, topic_len);
    if (payload_len > 0) {
        memcpy(slot->payload, payload, payload_len);
    }
    ring->count++;
    return (int32_t)slot->id;
}

/* Twin: MemoryOutbox.peek(). */
static airfsm_outbox_status_t ring_peek(void *store, airfsm_message_t *out)
{
    const outbox_ring_t *ring = store;
    const outbox_slot_t *slot;

    if (ring->count == 0) {
        return AIRFSM_OUTBOX_STATUS_EMPTY;
    }
    slot = &ring->slots[ring->head];
    out->id = slot->id;
    out->topic = slot->topic;
    out->topic_len = slot->topic_len;
    out->payload = slot->payload;
    out->payload_len = slot->payload_len;
    out->qos = slot->qos;
    out->attempts = slot->attempts;
    return AIRFSM_OUTBOX_STATUS_OK;
}

/* Twin: MemoryOutbox.mark_attempt(). */
static airfsm_outbox_status_t ring_mark_attempt(void *store, uint32_t id, uint32_t *attempts)
{
    outbox_ring_t *ring = store;
    int32_t k = outbox_find(ring, id);

    if (k < 0) {
        *attempts = 0;
        return AIRFSM_OUTBOX_STATUS_OK;
    }
    *attempts = ++ring->slots[outbox_slot(ring, (size_t)k)].attempts;
    return AIRFSM_OUTBOX_STATUS_OK;
}

/* Twin: MemoryOutbox.ack(). */
static airfsm_outbox_status_t ring_ack(void *store, uint32_t id)
{
    outbox_ring_t *ring = store;
    int32_t k = outbox_find(ring, id);

    if (k >= 0) {
        outbox_remove(ring, (size_t)k);
    }
    return AIRFSM_OUTBOX_STATUS_OK;
}

/* Twin: MemoryOutbox._take_dead(0) for a full dead ring: the oldest goes. */
static void outbox_drop_oldest_dead(outbox_ring_t *ring)
{
    ring->dead_head = (ring->dead_head + 1) % ring->capacity;
    ring->dead_count--;
    ring->dead_letters_dropped++;
}

/* Twin: MemoryOutbox.dead_letter(). */
static airfsm_outbox_status_t ring_dead_letter(void *store, uint32_t id, airfsm_reason_t reason,
                                               int32_t detail)
{
    outbox_ring_t *ring = store;
    int32_t k = outbox_find(ring, id);
    outbox_dead_t *dead;
    uint32_t attempts;

    if (k < 0) {
        return AIRFSM_OUTBOX_STATUS_OK;
    }
    attempts = ring->slots[outbox_slot(ring, (size_t)k)].attempts;
    outbox_remove(ring, (size_t)k);
    if (ring->dead_count == ring->capacity) {
        outbox_drop_oldest_dead(ring); /* so that this one is kept */
    }
    dead = &ring->dead[(ring->dead_head + ring->dead_count) % ring->capacity];
    dead->id = id;
    dead->attempts = attempts;
    dead->reason = reason;
    dead->detail = detail;
    ring->dead_count++;
    return AIRFSM_OUTBOX_STATUS_OK;
}

/* Twin: MemoryOutbox.count(). */
size_t outbox_count(const outbox_ring_t *ring)
{
    return ring->count;
}

/* Twin: MemoryOutbox.dead_count(). */
size_t outbox_dead_count(const outbox_ring_t *ring)
{
    return ring->dead_count;
}

/* Twin: MemoryOutbox._dead_at(). */
const outbox_dead_t *outbox_dead_at(const outbox_ring_t *ring, size_t k)
{
    return &ring->dead[(ring->dead_head + k) % ring->capacity];
}

static const airfsm_outbox_ops_t RING_OPS = {
    ring_peek, ring_mark_attempt, ring_ack, ring_dead_letter,
};

/* Twin: a MemoryOutbox passed as the controller's Outbox. */
airfsm_outbox_t outbox_ring_outbox(outbox_ring_t *ring)
{
    airfsm_outbox_t outbox;
    outbox.ops = &RING_OPS;
    outbox.store = ring;
    return outbox;
}
