/* aliyun.h: Alibaba Cloud IoT "one device, one secret" HTTPS pre-auth.
 * Python twin: airfsm/core/aliyun.py.
 *
 * The device POSTs a form to https://iot-auth.<region>.aliyuncs.com/auth/devicename (an
 * instance's: https://<instance_id>.auth.iothub.aliyuncs.com/...), signed with its DeviceSecret,
 * and gets back an iotId (the MQTT username) and an iotToken (the password). This file builds
 * that form and scans the reply; it also builds the dynamic registration's form ("one type, one
 * secret": signed with the ProductSecret, answered with the DeviceSecret) and scans its reply,
 * and makes the direct MQTT sign (clientId, username, password without the HTTPS round trip). It is pure: no I/O, no clock, no allocation,
 * no logging; every buffer is the caller's, every length explicit.
 *
 * What ends up inside an AT command (the credentials in AT+MCONFIG="…", the host in
 * AT+SSLMIPSTART="…") is checked free of quotes, backslashes and line breaks here, so a hostile
 * reply can never inject a command.
 */
#ifndef AIRFSM_ALIYUN_H
#define AIRFSM_ALIYUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airfsm_config.h"

/* aliyun.SIGN_METHODS, in that order; hmacmd5 is the server's default. */
typedef enum {
    ALIYUN_HMACMD5 = 0,
    ALIYUN_HMACSHA1 = 1,
    ALIYUN_HMACSHA256 = 2
} aliyun_sign_method_t;

#define ALIYUN_DEFAULT_REGION "cn-shanghai" /* aliyun.DEFAULT_REGION */
#define ALIYUN_MQTT_PORT 1883u              /* aliyun.MQTT_PORT: TLS runs on it */
#define ALIYUN_SIGN_HEX_SIZE 65u            /* the longest sign (SHA-256, 64 hex digits) + NUL */
#define ALIYUN_TIMESTAMP_SIZE 21u           /* a uint64_t in decimal + NUL */
#define ALIYUN_MAX_PARAMS 32u               /* aliyun_sign() takes at most this many */

/* Why a call refused its input: the C form of the Python ValueError, naming the field (never
 * its value: it might be a secret pasted into the wrong field). */
typedef enum {
    ALIYUN_OK = 0,
    ALIYUN_BAD_PRODUCT_KEY,   /* not 1-64 letters or digits */
    ALIYUN_BAD_DEVICE_NAME,   /* not 4-32 of letters, digits and _ . @ : - */
    ALIYUN_BAD_DEVICE_SECRET, /* empty, or not printable ASCII, or holds a quote */
    ALIYUN_BAD_REGION,        /* not 1-64 of lowercase letters, digits and - */
    ALIYUN_BAD_CLIENT_ID,     /* over 64, or not letters, digits and _ . @ : - */
    ALIYUN_BAD_METHOD,        /* not one of aliyun_sign_method_t */
    ALIYUN_BAD_PARAMS,        /* more than ALIYUN_MAX_PARAMS parameters */
    ALIYUN_NO_ROOM,           /* the caller's buffer is too small */
    ALIYUN_BAD_PRODUCT_SECRET, /* not printable ASCII, or holds a quote */
    ALIYUN_BAD_INSTANCE_ID,   /* not 1-64 letters, digits and - */
    ALIYUN_NOT_REGISTERED,    /* no DeviceSecret yet: register the device first */
    ALIYUN_NO_PRODUCT_SECRET  /* registering needs the ProductSecret */
} aliyun_status_t;

/* aliyun.DeviceIdentity: NUL-terminated strings the caller keeps alive. */
typedef struct {
    const char *product_key;
    const char *device_name;
    const char *device_secret;  /* "": not known yet (dynamic registration earns it) */
    const char *region;         /* NULL: ALIYUN_DEFAULT_REGION */
    const char *client_id;      /* NULL or "": the device name */
    const char *product_secret; /* NULL or "": none ("one type, one secret" registers with it) */
    const char *instance_id;    /* NULL or "": the legacy regional endpoints */
} aliyun_identity_t;

/* aliyun.INSTANCE_DOMAIN: an instance's endpoints are <id>.auth.<it> and <id>.mqtt.<it>. */
#define ALIYUN_INSTANCE_DOMAIN "iothub.aliyuncs.com"
/* aliyun.MAX_MQTT_CLIENT_ID_LEN: <id 64>|securemode=2,signmethod=hmacsha256,timestamp=<20>| */
#define ALIYUN_MAX_MQTT_CLIENT_ID_LEN                                                           \
    (AIRFSM_MAX_CLIENT_ID_LEN + sizeof "|securemode=2,signmethod=hmacsha256" - 1 +              \
     sizeof ",timestamp=" - 1 + 20 + 1)
/* aliyun.REGISTER_BODY_MAX: productKey=<64>&deviceName=<32, up to %XX each>&random=<20 digits>
 * &sign=<64 hex>&signMethod=hmacsha256. */
#define ALIYUN_REGISTER_BODY_MAX                                                                \
    (sizeof "productKey=" - 1 + AIRFSM_MAX_PRODUCT_KEY_LEN + sizeof "&deviceName=" - 1 +       \
     3 * AIRFSM_MAX_DEVICE_NAME_LEN + sizeof "&random=" - 1 + 20 + sizeof "&sign=" - 1 + 64 +  \
     sizeof "&signMethod=hmacsha256" - 1)

/* One form parameter (a row of the Python dict). */
typedef struct {
    const char *name;
    const char *value;
} aliyun_param_t;

/* The auth form's parameters (the dict aliyun.auth_params returns), in the order they are sent.
 * `params` points into this struct (sign, timestamp) and into the identity: use it in place,
 * do not copy it. */
typedef struct {
    aliyun_param_t params[7];
    size_t count;
    char sign[ALIYUN_SIGN_HEX_SIZE];
    char timestamp[ALIYUN_TIMESTAMP_SIZE];
} aliyun_auth_params_t;

/* aliyun.AUTH_OK / aliyun.AUTH_UNPARSEABLE */
#define ALIYUN_AUTH_OK 200
#define ALIYUN_AUTH_UNPARSEABLE (-1)

/* What the reply scan found. Each is one of the messages of aliyun.parse_auth_reply. */
typedef enum {
    ALIYUN_REPLY_OK = 0,        /* code 200 with a usable iotId and iotToken */
    ALIYUN_REPLY_NOT_UTF8,      /* "reply is not UTF-8 text" */
    ALIYUN_REPLY_EMPTY,         /* "reply is empty" */
    ALIYUN_REPLY_NOT_JSON,      /* "reply is not valid JSON" (also: nested too deeply) */
    ALIYUN_REPLY_NOT_OBJECT,    /* "reply is not a JSON object" */
    ALIYUN_REPLY_NO_CODE,       /* "reply has no integer code" (also: not a small integer) */
    ALIYUN_REPLY_REFUSED,       /* a code other than 200: the server said no (see `code`) */
    ALIYUN_REPLY_NO_DATA,       /* "reply has code 200 but no data object" */
    ALIYUN_REPLY_NO_IOT_ID,     /* "reply has code 200 but no iotId" */
    ALIYUN_REPLY_BAD_IOT_ID,    /* "reply iotId is unusable (...)" */
    ALIYUN_REPLY_NO_IOT_TOKEN,  /* "reply has code 200 but no iotToken" */
    ALIYUN_REPLY_BAD_IOT_TOKEN, /* "reply iotToken is unusable (...)" */
    ALIYUN_REPLY_NO_DEVICE_SECRET, /* the register reply: "code 200 but no deviceSecret" */
    ALIYUN_REPLY_BAD_DEVICE_SECRET /* the register reply: "deviceSecret is unusable (...)" */
} aliyun_reply_reason_t;

/* aliyun.AuthReply in caller-owned fixed buffers (about 780 bytes at the default sizes).
 * Unless the reason is ALIYUN_REPLY_OK, iot_id, iot_token and mqtt_host are empty. */
typedef struct {
    int32_t code; /* the server's code, or ALIYUN_AUTH_UNPARSEABLE */
    aliyun_reply_reason_t reason;
    char iot_id[AIRFSM_MAX_CREDENTIAL_LEN + 1];
    char iot_token[AIRFSM_MAX_CREDENTIAL_LEN + 1]; /* the MQTT password: a secret */
    char mqtt_host[AIRFSM_MAX_HOST_LEN + 1];       /* data.resources.mqtt.host, or "" */
    uint16_t mqtt_port;                            /* data.resources.mqtt.port, or 0 */
} aliyun_auth_reply_t;

/* aliyun.RegisterReply: the register server's answer. device_secret (a secret) is "" unless
 * the reason is ALIYUN_REPLY_OK. */
typedef struct {
    int32_t code; /* the server's code, or ALIYUN_AUTH_UNPARSEABLE */
    aliyun_reply_reason_t reason;
    char device_secret[AIRFSM_MAX_CREDENTIAL_LEN + 1];
} aliyun_register_reply_t;

/* aliyun.MqttSign: the AT+MCONFIG triple of a direct-sign connect; password is a secret. */
typedef struct {
    char client_id[ALIYUN_MAX_MQTT_CLIENT_ID_LEN + 1];
    char username[AIRFSM_MAX_DEVICE_NAME_LEN + 1 + AIRFSM_MAX_PRODUCT_KEY_LEN + 1];
    char password[ALIYUN_SIGN_HEX_SIZE];
} aliyun_mqtt_sign_t;

/* aliyun.SIGN_METHODS[method]: "hmacmd5", "hmacsha1", "hmacsha256"; NULL for anything else. */
const char *aliyun_sign_method_name(aliyun_sign_method_t method);

/* DeviceIdentity.validate(): ALIYUN_OK or the first field that is unusable, checked in the
 * Python's order (product key, device name, device secret - which may be empty when there is a
 * product secret -, product secret, region, client id, instance id). */
aliyun_status_t aliyun_identity_check(const aliyun_identity_t *identity);

/* DeviceIdentity.effective_client_id: the client id, or the device name when it has none. */
const char *aliyun_client_id(const aliyun_identity_t *identity);

/* aliyun.sign(params, device_secret, method): HMAC, keyed with the secret, of every parameter but
 * sign/signmethod/version/resources, sorted by name, as name+value with no separator; lowercase
 * hex into `sign_hex` (ALIYUN_SIGN_HEX_SIZE bytes). */
aliyun_status_t aliyun_sign(const aliyun_param_t *params, size_t count, const char *device_secret,
                            aliyun_sign_method_t method, char sign_hex[ALIYUN_SIGN_HEX_SIZE]);

/* aliyun.auth_params(identity, method, timestamp_ms, resources): productKey, sign, clientId,
 * deviceName, then timestamp (when `timestamp_ms` is not NULL), then signmethod (only when not
 * hmacmd5), then resources=mqtt (with `resources`: the reply names the broker to use).
 * ALIYUN_NOT_REGISTERED for an identity without a DeviceSecret. */
aliyun_status_t aliyun_auth_params(const aliyun_identity_t *identity, aliyun_sign_method_t method,
                                   const uint64_t *timestamp_ms, bool resources,
                                   aliyun_auth_params_t *out);

/* aliyun._form_encode(params): name=value pairs joined by &, each percent-encoded as Python's
 * quote(s, safe='') does. Writes a NUL after the form; `*len` is the form's length (no NUL).
 * ALIYUN_NO_ROOM when `cap` cannot hold the form and its NUL. */
aliyun_status_t aliyun_form_encode(const aliyun_param_t *params, size_t count, char *out,
                                   size_t cap, size_t *len);

/* aliyun.auth_body(identity, method, timestamp_ms): the form-urlencoded POST body; `*len` is the
 * n of AT+HTTPDATA=<n>,<ms>. AIRFSM_AUTH_BODY_MAX + 1 bytes always suffice. */
aliyun_status_t aliyun_auth_body(const aliyun_identity_t *identity, aliyun_sign_method_t method,
                                 const uint64_t *timestamp_ms, char *out, size_t cap, size_t *len);

/* aliyun.register_form(identity, nonce, method): the /auth/register/device POST body
 * (productKey, deviceName, random, sign, signMethod) into out (NUL-terminated, `*len` bytes) and
 * its sign (a secret: an HMAC of the ProductSecret) into sign_hex. ALIYUN_NO_PRODUCT_SECRET
 * without one; ALIYUN_REGISTER_BODY_MAX + 1 bytes always suffice. */
aliyun_status_t aliyun_register_form(const aliyun_identity_t *identity, uint64_t nonce,
                                     aliyun_sign_method_t method, char *out, size_t cap,
                                     size_t *len, char sign_hex[ALIYUN_SIGN_HEX_SIZE]);

/* aliyun.mqtt_sign(identity, method, timestamp_ms): the direct-sign clientId
 * `<id>|securemode=2,signmethod=<m>[,timestamp=<t>]|`, username `<dn>&<pk>` and password (the
 * HMAC of clientId, deviceName, productKey[, timestamp] with the DeviceSecret). */
aliyun_status_t aliyun_mqtt_sign(const aliyun_identity_t *identity, aliyun_sign_method_t method,
                                 const uint64_t *timestamp_ms, aliyun_mqtt_sign_t *out);

/* aliyun.parse_auth_reply(body): scan the auth server's JSON (the +HTTPREAD data, `len` bytes,
 * not NUL-terminated) for code, data.iotId, data.iotToken and data.resources.mqtt.host/port.
 * Returns AuthReply.ok: true when reason is ALIYUN_REPLY_OK. Never reads past body + len.
 *
 * It accepts exactly what the Python twin accepts (the body must be UTF-8 and, once stripped of
 * whitespace and NULs, one JSON object as Python's json module reads it; a later duplicate key
 * wins), with the same two bounds: the JSON may nest at most AIRFSM_JSON_MAX_DEPTH levels, and a
 * code with more than 9 digits is no integer code. */
bool aliyun_parse_auth_reply(const uint8_t *body, size_t len, aliyun_auth_reply_t *reply);

/* aliyun.parse_register_reply(body): the same scan for code and data.deviceSecret (a secret
 * over AIRFSM_MAX_CREDENTIAL_LEN bytes, or with a character that could not travel in a quoted AT
 * argument, is unusable). Returns RegisterReply.ok. Never reads past body + len. */
bool aliyun_parse_register_reply(const uint8_t *body, size_t len,
                                 aliyun_register_reply_t *reply);

#endif /* AIRFSM_ALIYUN_H */
