/* airfsm_config.h: every buffer size of the C port, in one place.
 *
 * Two kinds of numbers live here:
 *   - limits the protocol fixes (AT+MCONFIG takes at most 256 bytes a field, a DNS name is at most
 *     253 characters, ...). They are the same numbers as the Python reference's and changing them
 *     breaks the lockstep with it: they are not guarded by #ifndef.
 *   - sizes a port may tune (-DAIRFSM_JSON_MAX_DEPTH=16 on the compiler's command line, or a
 *     header of its own included before this one). Each says what it costs and what it must hold.
 *
 * The channel's buffers (the AT line, the +HTTPREAD body and +MSUB payload, the info arena, the
 * command line) are sized by the Python reference's settings.py and reach C through the generated
 * table, so they have one source: AIRFSM_LINE_CAPACITY, AIRFSM_DATA_CAPACITY, AIRFSM_INFO_ARENA,
 * AIRFSM_MAX_INFO_LINES, AIRFSM_CMD_CAPACITY (airfsm_table.h, included here). The channel takes
 * its buffers from the caller with their capacities, so a port that must save RAM can hand it
 * smaller ones (a line longer than its line buffer is then dropped and counted, a payload larger
 * than its data buffer read and discarded) without touching the table.
 */
#ifndef AIRFSM_CONFIG_H
#define AIRFSM_CONFIG_H

#include "airfsm_table.h"

/* --- fixed by the protocol (twins: the constants of airfsm/core/aliyun.py) -------------------- */

/* aliyun.MAX_CREDENTIAL_LEN: iotId and iotToken go inside AT+MCONFIG="…", ≤ 256 bytes each. */
#define AIRFSM_MAX_CREDENTIAL_LEN 256
/* aliyun.MAX_HOST_LEN: a DNS name (the MQTT host an auth reply may name). */
#define AIRFSM_MAX_HOST_LEN 253
/* The identity's field limits (aliyun._PRODUCT_KEY, _DEVICE_NAME, _CLIENT_ID, _REGION). */
#define AIRFSM_MAX_PRODUCT_KEY_LEN 64
#define AIRFSM_MIN_DEVICE_NAME_LEN 4
#define AIRFSM_MAX_DEVICE_NAME_LEN 32
#define AIRFSM_MAX_CLIENT_ID_LEN 64
#define AIRFSM_MAX_REGION_LEN 64
#define AIRFSM_MAX_INSTANCE_ID_LEN 64 /* aliyun.MAX_INSTANCE_ID_LEN: iot-06z00ax1o4qxxxx */
/* The longest auth body: productKey=<64>&sign=<64 hex>&clientId=<64, each char up to %XX>
 * &deviceName=<32, up to %XX each>&timestamp=<20 digits>&signmethod=hmacsha256
 * &resources=mqtt = 523 bytes (the controller asks for resources=mqtt). */
#define AIRFSM_AUTH_BODY_MAX                                                                   \
    (sizeof "productKey=" - 1 + AIRFSM_MAX_PRODUCT_KEY_LEN + sizeof "&sign=" - 1 + 64 +        \
     sizeof "&clientId=" - 1 + 3 * AIRFSM_MAX_CLIENT_ID_LEN + sizeof "&deviceName=" - 1 +       \
     3 * AIRFSM_MAX_DEVICE_NAME_LEN + sizeof "&timestamp=" - 1 + 20 +                          \
     sizeof "&signmethod=hmacsha256" - 1 + sizeof "&resources=mqtt" - 1)

/* --- tunable ---------------------------------------------------------------------------------- */

/* How deeply the auth reply's JSON may nest before the scan calls it unparseable. The reply the
 * server sends nests 3 deep (data.resources.mqtt); each level costs one byte of stack during the
 * scan. The Python twin has the same bound (aliyun.JSON_MAX_DEPTH): change both together. */
#ifndef AIRFSM_JSON_MAX_DEPTH
#define AIRFSM_JSON_MAX_DEPTH 32
#endif

/* The controller's settings (twins: settings.APN_MAX; the DeviceSecret has no bound in Python,
 * Alibaba Cloud's are 32 characters). */
#define AIRFSM_APN_MAX 64
#ifndef AIRFSM_MAX_SECRET_LEN
#define AIRFSM_MAX_SECRET_LEN 128
#endif

/* The RAM outbox inside airfsm_t (outbox.h): how many messages it holds, each up to
 * AIRFSM_OUTBOX_PAYLOAD_MAX bytes (the longest payload AT+MPUB carries in text mode). Each slot
 * costs about 1.2 KB: an MCU that publishes one reading at a time needs one or two; a host
 * (or a port with a flash queue) hands the controller its own outbox instead. The Python
 * MemoryOutbox holds AIRFSM_OUTBOX_RING by default. */
#ifndef AIRFSM_OUTBOX_SLOTS
#define AIRFSM_OUTBOX_SLOTS 2
#endif
#define AIRFSM_OUTBOX_PAYLOAD_MAX AIRFSM_MAX_PAYLOAD_TEXT

/* Text the controller keeps of what the module said (the Python keeps str of any length; what
 * the C cuts never changes a decision): the firmware line, the IP address, and the line of a
 * URC that overtook its final code (+HTTPACTION: 1,200,164: its status is read from it). */
#define AIRFSM_FIRMWARE_TEXT_MAX 64
#define AIRFSM_IP_TEXT_MAX 64
#define AIRFSM_URC_LINE_MAX 128
/* https://<instance_id>.auth.iothub.aliyuncs.com/auth/devicename, the longer of the two forms
 * (https://iot-auth.<region>.aliyuncs.com/auth/devicename) */
#define AIRFSM_AUTH_URL_MAX                                                                    \
    (sizeof "https://" - 1 + AIRFSM_MAX_INSTANCE_ID_LEN +                                      \
     sizeof ".auth.iothub.aliyuncs.com/auth/devicename" - 1)
/* https://iot-auth.<region>.aliyuncs.com/auth/register/device */
#define AIRFSM_REGISTER_URL_MAX                                                                \
    (sizeof "https://iot-auth." - 1 + AIRFSM_MAX_REGION_LEN +                                  \
     sizeof ".aliyuncs.com/auth/register/device" - 1)

#endif /* AIRFSM_CONFIG_H */
