/* aliyun.c: the auth form and the auth reply scan. See aliyun.h.
 * Python twin: airfsm/core/aliyun.py. */
#include "aliyun.h"

#include <string.h>

#include "digest.h"

/* --- the identity ----------------------------------------------------------------------------- */

static bool is_alnum(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* aliyun._DEVICE_NAME / _CLIENT_ID's character set: letters, digits and _ . @ : - */
static bool is_name_char(uint8_t c)
{
    return is_alnum(c) || c == '_' || c == '.' || c == '@' || c == ':' || c == '-';
}

static bool is_region_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static bool is_secret_char(uint8_t c)
{
    return c >= 0x20 && c <= 0x7e && c != '"' && c != '\'';
}

/* re.fullmatch("[chars]{min,max}", text) for a NUL-terminated text. */
static bool text_matches(const char *text, bool (*allowed)(uint8_t), size_t min, size_t max)
{
    size_t n = 0;

    if (text == NULL) {
        return false;
    }
    for (; text[n] != '\0'; n++) {
        if (n >= max || !allowed((uint8_t)text[n])) {
            return false;
        }
    }
    return n >= min;
}

const char *aliyun_sign_method_name(aliyun_sign_method_t method)
{
    switch (method) {
    case ALIYUN_HMACMD5:
        return "hmacmd5";
    case ALIYUN_HMACSHA1:
        return "hmacsha1";
    case ALIYUN_HMACSHA256:
        return "hmacsha256";
    }
    return NULL;
}

/* aliyun._is_instance_char: letters, digits and - */
static bool is_instance_char(uint8_t c)
{
    return is_alnum(c) || c == '-';
}

/* "" for NULL: an optional text of the identity. */
static const char *text_or_empty(const char *text)
{
    return text != NULL ? text : "";
}

/* Twin: DeviceIdentity.validate */
aliyun_status_t aliyun_identity_check(const aliyun_identity_t *identity)
{
    const char *region = identity->region ? identity->region : ALIYUN_DEFAULT_REGION;
    const char *secret = text_or_empty(identity->device_secret);
    const char *product_secret = text_or_empty(identity->product_secret);

    if (!text_matches(identity->product_key, is_alnum, 1, AIRFSM_MAX_PRODUCT_KEY_LEN)) {
        return ALIYUN_BAD_PRODUCT_KEY;
    }
    if (!text_matches(identity->device_name, is_name_char, AIRFSM_MIN_DEVICE_NAME_LEN,
                      AIRFSM_MAX_DEVICE_NAME_LEN)) {
        return ALIYUN_BAD_DEVICE_NAME;
    }
    if (secret[0] == '\0' && product_secret[0] == '\0') {
        return ALIYUN_BAD_DEVICE_SECRET; /* neither secret: nothing to sign with */
    }
    if (secret[0] != '\0' && !text_matches(secret, is_secret_char, 1, SIZE_MAX)) {
        return ALIYUN_BAD_DEVICE_SECRET;
    }
    if (product_secret[0] != '\0' && !text_matches(product_secret, is_secret_char, 1, SIZE_MAX)) {
        return ALIYUN_BAD_PRODUCT_SECRET;
    }
    if (!text_matches(region, is_region_char, 1, AIRFSM_MAX_REGION_LEN)) {
        return ALIYUN_BAD_REGION;
    }
    if (identity->client_id != NULL &&
        !text_matches(identity->client_id, is_name_char, 0, AIRFSM_MAX_CLIENT_ID_LEN)) {
        return ALIYUN_BAD_CLIENT_ID;
    }
    if (identity->instance_id != NULL && identity->instance_id[0] != '\0' &&
        !text_matches(identity->instance_id, is_instance_char, 1, AIRFSM_MAX_INSTANCE_ID_LEN)) {
        return ALIYUN_BAD_INSTANCE_ID;
    }
    return ALIYUN_OK;
}

/* Twin: DeviceIdentity.validate, then `if not identity.registered` (the auth form and the
 * direct sign need the DeviceSecret), then _digest_for(method). */
static aliyun_status_t check_signable(const aliyun_identity_t *identity, aliyun_sign_method_t method)
{
    aliyun_status_t status = aliyun_identity_check(identity);

    if (status != ALIYUN_OK) {
        return status;
    }
    if (text_or_empty(identity->device_secret)[0] == '\0') {
        return ALIYUN_NOT_REGISTERED;
    }
    if (aliyun_sign_method_name(method) == NULL) {
        return ALIYUN_BAD_METHOD;
    }
    return ALIYUN_OK;
}

/* Twin: DeviceIdentity.effective_client_id */
const char *aliyun_client_id(const aliyun_identity_t *identity)
{
    if (identity->client_id != NULL && identity->client_id[0] != '\0') {
        return identity->client_id;
    }
    return identity->device_name;
}

/* --- signing ---------------------------------------------------------------------------------- */

/* aliyun.UNSIGNED_PARAMS: submitted but never signed (Alibaba Cloud's rule). */
static bool is_unsigned_param(const char *name)
{
    return strcmp(name, "sign") == 0 || strcmp(name, "signmethod") == 0 ||
           strcmp(name, "version") == 0 || strcmp(name, "resources") == 0;
}

static bool digest_for(aliyun_sign_method_t method, digest_kind_t *kind)
{
    switch (method) {
    case ALIYUN_HMACMD5:
        *kind = DIGEST_MD5;
        return true;
    case ALIYUN_HMACSHA1:
        *kind = DIGEST_SHA1;
        return true;
    case ALIYUN_HMACSHA256:
        *kind = DIGEST_SHA256;
        return true;
    }
    return false;
}

/* Twin: aliyun.sign. The sorted concatenation is fed to the HMAC piece by piece, so it needs no
 * buffer: each round picks the smallest name not yet taken (a selection sort over a bit set;
 * strcmp's byte order is Python's code point order for UTF-8 text). */
aliyun_status_t aliyun_sign(const aliyun_param_t *params, size_t count, const char *device_secret,
                            aliyun_sign_method_t method, char sign_hex[ALIYUN_SIGN_HEX_SIZE])
{
    hmac_ctx_t hmac;
    digest_kind_t kind;
    uint8_t mac[DIGEST_MAX_SIZE];
    uint32_t taken = 0; /* bit i: params[i] is signed already */
    size_t round, i;

    if (!digest_for(method, &kind)) {
        return ALIYUN_BAD_METHOD;
    }
    if (count > ALIYUN_MAX_PARAMS) {
        return ALIYUN_BAD_PARAMS;
    }
    hmac_init(&hmac, kind, device_secret, strlen(device_secret));
    for (round = 0; round < count; round++) {
        size_t next = count;
        for (i = 0; i < count; i++) {
            if (!(taken & (UINT32_C(1) << i)) &&
                (next == count || strcmp(params[i].name, params[next].name) < 0)) {
                next = i;
            }
        }
        taken |= UINT32_C(1) << next;
        if (!is_unsigned_param(params[next].name)) {
            hmac_update(&hmac, params[next].name, strlen(params[next].name));
            hmac_update(&hmac, params[next].value, strlen(params[next].value));
        }
    }
    hmac_final(&hmac, mac);
    digest_hex(mac, digest_size(kind), sign_hex);
    return ALIYUN_OK;
}

/* str(n) for a uint64_t, without printf. */
static void format_u64(uint64_t n, char out[ALIYUN_TIMESTAMP_SIZE])
{
    char reversed[ALIYUN_TIMESTAMP_SIZE];
    size_t len = 0, i;

    do {
        reversed[len++] = (char)('0' + (int)(n % 10u));
        n /= 10u;
    } while (n > 0);
    for (i = 0; i < len; i++) {
        out[i] = reversed[len - 1 - i];
    }
    out[len] = '\0';
}

/* Twin: aliyun.auth_params */
aliyun_status_t aliyun_auth_params(const aliyun_identity_t *identity, aliyun_sign_method_t method,
                                   const uint64_t *timestamp_ms, bool resources,
                                   aliyun_auth_params_t *out)
{
    /* The signed set; aliyun_sign sorts it (clientId, deviceName, productKey, timestamp). */
    aliyun_param_t signed_params[4];
    size_t n_signed = 3;
    aliyun_status_t status = check_signable(identity, method);

    if (status != ALIYUN_OK) {
        return status;
    }
    memset(out, 0, sizeof *out);
    signed_params[0].name = "productKey";
    signed_params[0].value = identity->product_key;
    signed_params[1].name = "clientId";
    signed_params[1].value = aliyun_client_id(identity);
    signed_params[2].name = "deviceName";
    signed_params[2].value = identity->device_name;
    if (timestamp_ms != NULL) {
        format_u64(*timestamp_ms, out->timestamp);
        signed_params[3].name = "timestamp";
        signed_params[3].value = out->timestamp;
        n_signed = 4;
    }
    status = aliyun_sign(signed_params, n_signed, identity->device_secret, method, out->sign);
    if (status != ALIYUN_OK) {
        return status;
    }
    /* The seed's order: productKey, sign, clientId, deviceName, [timestamp], [signmethod],
     * [resources]. */
    out->params[0] = signed_params[0];
    out->params[1].name = "sign";
    out->params[1].value = out->sign;
    out->params[2] = signed_params[1];
    out->params[3] = signed_params[2];
    out->count = 4;
    if (timestamp_ms != NULL) {
        out->params[out->count++] = signed_params[3];
    }
    if (method != ALIYUN_HMACMD5) {
        out->params[out->count].name = "signmethod";
        out->params[out->count].value = aliyun_sign_method_name(method);
        out->count++;
    }
    if (resources) {
        out->params[out->count].name = "resources";
        out->params[out->count].value = "mqtt";
        out->count++;
    }
    return ALIYUN_OK;
}

/* Twin: aliyun.register_form */
aliyun_status_t aliyun_register_form(const aliyun_identity_t *identity, uint64_t nonce,
                                     aliyun_sign_method_t method, char *out, size_t cap,
                                     size_t *len, char sign_hex[ALIYUN_SIGN_HEX_SIZE])
{
    char random[ALIYUN_TIMESTAMP_SIZE];
    aliyun_param_t params[5];
    aliyun_status_t status = aliyun_identity_check(identity);

    if (status != ALIYUN_OK) {
        return status;
    }
    if (text_or_empty(identity->product_secret)[0] == '\0') {
        return ALIYUN_NO_PRODUCT_SECRET;
    }
    if (aliyun_sign_method_name(method) == NULL) {
        return ALIYUN_BAD_METHOD;
    }
    format_u64(nonce, random);
    /* The signed set (deviceName, productKey, random) is the first three of the form. */
    params[0].name = "productKey";
    params[0].value = identity->product_key;
    params[1].name = "deviceName";
    params[1].value = identity->device_name;
    params[2].name = "random";
    params[2].value = random;
    status = aliyun_sign(params, 3, identity->product_secret, method, sign_hex);
    if (status != ALIYUN_OK) {
        return status;
    }
    params[3].name = "sign";
    params[3].value = sign_hex;
    params[4].name = "signMethod"; /* aliyun.REGISTER_SIGN_PARAM: this API's spelling */
    params[4].value = aliyun_sign_method_name(method);
    return aliyun_form_encode(params, 5, out, cap, len);
}

/* `text` appended at out[*n] (NUL kept); false when it does not fit `cap`. */
static bool append_text(char *out, size_t cap, size_t *n, const char *text)
{
    size_t len = strlen(text);

    if (*n + len >= cap) {
        return false;
    }
    memcpy(out + *n, text, len + 1);
    *n += len;
    return true;
}

/* Twin: aliyun.mqtt_sign */
aliyun_status_t aliyun_mqtt_sign(const aliyun_identity_t *identity, aliyun_sign_method_t method,
                                 const uint64_t *timestamp_ms, aliyun_mqtt_sign_t *out)
{
    char timestamp[ALIYUN_TIMESTAMP_SIZE];
    aliyun_param_t signed_params[4];
    size_t n_signed = 3, n = 0;
    const char *client_id = aliyun_client_id(identity);
    aliyun_status_t status = check_signable(identity, method);
    bool fits;

    if (status != ALIYUN_OK) {
        return status;
    }
    memset(out, 0, sizeof *out);
    signed_params[0].name = "clientId";
    signed_params[0].value = client_id;
    signed_params[1].name = "deviceName";
    signed_params[1].value = identity->device_name;
    signed_params[2].name = "productKey";
    signed_params[2].value = identity->product_key;
    if (timestamp_ms != NULL) {
        format_u64(*timestamp_ms, timestamp);
        signed_params[3].name = "timestamp";
        signed_params[3].value = timestamp;
        n_signed = 4;
    }
    status = aliyun_sign(signed_params, n_signed, identity->device_secret, method, out->password);
    if (status != ALIYUN_OK) {
        return status;
    }
    /* <id>|securemode=2,signmethod=<m>[,timestamp=<t>]| and <dn>&<pk>: the identity's limits
     * make them fit (ALIYUN_MAX_MQTT_CLIENT_ID_LEN); checked all the same. */
    fits = append_text(out->client_id, sizeof out->client_id, &n, client_id) &&
           append_text(out->client_id, sizeof out->client_id, &n, "|securemode=2,signmethod=") &&
           append_text(out->client_id, sizeof out->client_id, &n, aliyun_sign_method_name(method));
    if (fits && timestamp_ms != NULL) {
        fits = append_text(out->client_id, sizeof out->client_id, &n, ",timestamp=") &&
               append_text(out->client_id, sizeof out->client_id, &n, timestamp);
    }
    fits = fits && append_text(out->client_id, sizeof out->client_id, &n, "|");
    n = 0;
    fits = fits && append_text(out->username, sizeof out->username, &n, identity->device_name) &&
           append_text(out->username, sizeof out->username, &n, "&") &&
           append_text(out->username, sizeof out->username, &n, identity->product_key);
    if (!fits) {
        memset(out, 0, sizeof *out);
        return ALIYUN_NO_ROOM;
    }
    return ALIYUN_OK;
}

/* urllib.parse.quote(s, safe=''): everything but letters, digits and _ . - ~ as %XX. Appends to
 * out[*len ...] while it fits in `cap`; returns false when it does not. */
static bool quote_into(const char *text, char *out, size_t cap, size_t *len)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *text != '\0'; text++) {
        uint8_t c = (uint8_t)*text;
        if (is_alnum(c) || c == '_' || c == '.' || c == '-' || c == '~') {
            if (*len + 1 > cap) {
                return false;
            }
            out[(*len)++] = (char)c;
        } else {
            if (*len + 3 > cap) {
                return false;
            }
            out[(*len)++] = '%';
            out[(*len)++] = hex[c >> 4];
            out[(*len)++] = hex[c & 0x0fu];
        }
    }
    return true;
}

/* Twin: aliyun._form_encode */
aliyun_status_t aliyun_form_encode(const aliyun_param_t *params, size_t count, char *out,
                                   size_t cap, size_t *len)
{
    size_t used = 0, i;
    size_t room = cap > 0 ? cap - 1 : 0; /* keep one byte for the NUL */

    if (cap == 0) {
        return ALIYUN_NO_ROOM;
    }
    for (i = 0; i < count; i++) {
        if (i > 0) {
            if (used + 1 > room) {
                return ALIYUN_NO_ROOM;
            }
            out[used++] = '&';
        }
        if (!quote_into(params[i].name, out, room, &used) || used + 1 > room) {
            return ALIYUN_NO_ROOM;
        }
        out[used++] = '=';
        if (!quote_into(params[i].value, out, room, &used)) {
            return ALIYUN_NO_ROOM;
        }
    }
    out[used] = '\0';
    *len = used;
    return ALIYUN_OK;
}

/* Twin: aliyun.auth_body */
aliyun_status_t aliyun_auth_body(const aliyun_identity_t *identity, aliyun_sign_method_t method,
                                 const uint64_t *timestamp_ms, char *out, size_t cap, size_t *len)
{
    aliyun_auth_params_t form;
    aliyun_status_t status = aliyun_auth_params(identity, method, timestamp_ms, false, &form);

    if (status != ALIYUN_OK) {
        return status;
    }
    return aliyun_form_encode(form.params, form.count, out, cap, len);
}

/* --- the reply: text -----------------------------------------------------------------------------
 *
 * Python decodes the body as strict UTF-8, strips it (str.strip(), then NULs, then str.strip()
 * again) and hands the rest to json.loads. The scan does the same on the bytes: validate, find the
 * stripped range, then read JSON from it the way Python's json module does.
 */

/* One UTF-8 sequence at p (strict, as Python's decoder: no overlong forms, no surrogates, nothing
 * past U+10FFFF). Returns its length and the code point, or 0 when invalid or cut short. */
static size_t utf8_decode(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    uint8_t c = p[0];
    size_t len, i;
    uint32_t value, min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        value = c & 0x1fu;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        value = c & 0x0fu;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        value = c & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0u) != 0x80u) {
            return 0;
        }
        value = value << 6 | (p[i] & 0x3fu);
    }
    if (value < min || value > 0x10ffffu || (value >= 0xd800u && value <= 0xdfffu)) {
        return 0;
    }
    *cp = value;
    return len;
}

/* str.isspace(): the code points Python strips. */
static bool is_python_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 ||
           cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* The code point that ends just before `end` (the text is valid UTF-8: step back to its lead). */
static const uint8_t *utf8_last(const uint8_t *start, const uint8_t *end, uint32_t *cp)
{
    const uint8_t *p = end - 1;

    while (p > start && (*p & 0xc0u) == 0x80u) {
        p--;
    }
    (void)utf8_decode(p, end, cp);
    return p;
}

typedef enum { STRIP_SPACE, STRIP_NUL } strip_what_t;

static bool strip_matches(strip_what_t what, uint32_t cp)
{
    return what == STRIP_SPACE ? is_python_space(cp) : cp == 0;
}

/* str.strip() (STRIP_SPACE) or str.strip("\x00") (STRIP_NUL) on [*start, *end). */
static void strip(const uint8_t **start, const uint8_t **end, strip_what_t what)
{
    uint32_t cp;

    while (*start < *end) {
        size_t n = utf8_decode(*start, *end, &cp);
        if (!strip_matches(what, cp)) {
            break;
        }
        *start += n;
    }
    while (*end > *start) {
        const uint8_t *last = utf8_last(*start, *end, &cp);
        if (!strip_matches(what, cp)) {
            break;
        }
        *end = last;
    }
}

/* --- the reply: what a JSON string is collected into ---------------------------------------------
 *
 * The scan reads strings as code points (escapes decoded) and hands each to a sink; the sink keeps
 * what its field needs within a fixed buffer and notes whether the string could still be what the
 * field accepts. That is how duplicate keys, escaped keys ("\u0063ode" is "code") and values too
 * long for a buffer are judged exactly as Python judges the decoded string, without storing it.
 */

typedef enum {
    SINK_SKIP, /* a value nobody needs: only validated */
    SINK_TEXT, /* printable ASCII without " or \ kept in buf; anything else makes it unclean */
    SINK_INT   /* _as_int's text: str.strip(), then -?[0-9]{1,9} */
} sink_mode_t;

typedef struct {
    sink_mode_t mode;
    char *buf;     /* SINK_TEXT / SINK_INT: `cap` bytes plus a NUL */
    size_t cap;
    size_t len;    /* bytes in buf */
    size_t count;  /* code points seen */
    bool clean;    /* SINK_TEXT: every code point fitted and was allowed */
    bool trailing; /* SINK_INT: in the whitespace after the digits */
} sink_t;

#define INT_TEXT_MAX 10u /* "-" and 9 digits: aliyun._INT_TEXT */

static void sink_start(sink_t *sink, sink_mode_t mode, char *buf, size_t cap)
{
    sink->mode = mode;
    sink->buf = buf;
    sink->cap = cap;
    sink->len = 0;
    sink->count = 0;
    sink->clean = true;
    sink->trailing = false;
    if (buf != NULL) {
        buf[0] = '\0';
    }
}

static void sink_put(sink_t *sink, uint32_t cp)
{
    sink->count++;
    switch (sink->mode) {
    case SINK_SKIP:
        return;
    case SINK_TEXT:
        if (cp < 0x20 || cp > 0x7e || cp == '"' || cp == '\\' || sink->len >= sink->cap) {
            sink->clean = false;
            return;
        }
        break;
    case SINK_INT:
        if (is_python_space(cp)) {
            sink->trailing = sink->len > 0; /* leading space is stripped, trailing ends it */
            return;
        }
        if (sink->trailing || sink->len >= sink->cap || cp > 0x7e) {
            sink->clean = false; /* text after the trailing space, too long, or not ASCII */
            return;
        }
        break;
    }
    if (sink->clean) {
        sink->buf[sink->len++] = (char)cp;
        sink->buf[sink->len] = '\0';
    }
}

/* _INT_TEXT.fullmatch on the stripped text: -?[0-9]{1,9} (so it fits an int32_t). */
static bool parse_int_text(const char *text, size_t len, int32_t *value)
{
    size_t i = 0;
    int32_t n = 0;
    bool negative = len > 0 && text[0] == '-';

    if (negative) {
        i = 1;
    }
    if (len == i || len - i > 9) {
        return false;
    }
    for (; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        n = n * 10 + (text[i] - '0');
    }
    *value = negative ? -n : n;
    return true;
}

/* --- the reply: the JSON reader ------------------------------------------------------------------
 *
 * Python's json module, read without recursion: the open containers are a stack of bytes (one per
 * level, AIRFSM_JSON_MAX_DEPTH of them). It accepts what json.loads accepts, Python's
 * extensions included (NaN, Infinity, -Infinity, unpaired \uD800 surrogates), and rejects what it
 * rejects (control characters in strings, leading zeros, trailing commas, an integer of more than
 * 4300 digits).
 *
 * Which value is which field follows from the path: the top object's "code" and "data", data's
 * "iotId", "iotToken" and "resources", resources' "mqtt", mqtt's "host" and "port". A key starts
 * its field afresh, so the last duplicate wins, as in a Python dict.
 */

#define PY_INT_MAX_DIGITS 4300u /* sys.get_int_max_str_digits(): longer integers are a ValueError */

typedef enum {
    FIELD_NONE, FIELD_ROOT, FIELD_CODE, FIELD_DATA, FIELD_IOT_ID, FIELD_IOT_TOKEN,
    FIELD_RESOURCES, FIELD_MQTT, FIELD_HOST, FIELD_PORT, FIELD_DEVICE_SECRET
} field_t;

/* What an object is, by the key that holds it (its fields are looked up by this). */
typedef enum { ROLE_OTHER, ROLE_TOP, ROLE_DATA, ROLE_RESOURCES, ROLE_MQTT } role_t;

#define FRAME_ARRAY 0x80u /* a stack byte: the role, plus this bit for an array */

typedef enum { FOUND_ABSENT, FOUND_USABLE, FOUND_UNUSABLE } found_t;

typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
    aliyun_auth_reply_t *reply;  /* the auth reply's buffers (NULL: the register reply's scan) */
    char *device_secret;         /* the register reply's buffer (NULL: the auth reply's scan) */
    bool root_is_object;
    bool has_code; /* code is an integer (json int or int text) that fits */
    int32_t code;
    bool data_is_object;
    found_t iot_id, iot_token, device_secret_found;
    bool host_ok, port_ok;
    int32_t port;
} scan_t;

static bool at(const scan_t *s, char c) { return s->pos < s->end && *s->pos == (uint8_t)c; }

static void skip_json_space(scan_t *s)
{
    while (s->pos < s->end &&
           (*s->pos == ' ' || *s->pos == '\t' || *s->pos == '\n' || *s->pos == '\r')) {
        s->pos++;
    }
}

static bool take_literal(scan_t *s, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(s->end - s->pos) < n || memcmp(s->pos, word, n) != 0) {
        return false;
    }
    s->pos += n;
    return true;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* The 4 hex digits of a \u escape (the "\u" already taken). */
static bool take_hex4(scan_t *s, uint32_t *value)
{
    size_t i;

    if (s->end - s->pos < 4) {
        return false;
    }
    *value = 0;
    for (i = 0; i < 4; i++) {
        int digit = hex_value(s->pos[i]);
        if (digit < 0) {
            return false;
        }
        *value = *value << 4 | (uint32_t)digit;
    }
    s->pos += 4;
    return true;
}

/* A JSON string at s->pos (its opening quote), its code points into `sink`. A \uXXXX escape is
 * passed on as the code unit it names, without joining surrogate pairs as Python does: every
 * sink refuses anything outside printable ASCII, a pair as much as its halves, so the verdict is
 * the same and the code smaller. */
static bool read_string(scan_t *s, sink_t *sink)
{
    s->pos++; /* the opening quote */
    for (;;) {
        uint32_t cp;
        if (s->pos >= s->end) {
            return false; /* unterminated */
        }
        if (*s->pos == '"') {
            s->pos++;
            return true;
        }
        if (*s->pos < 0x20) {
            return false; /* json's strict mode: no raw control characters */
        }
        if (*s->pos != '\\') {
            s->pos += utf8_decode(s->pos, s->end, &cp); /* valid: checked before the scan */
            sink_put(sink, cp);
            continue;
        }
        s->pos++; /* the backslash */
        if (s->pos >= s->end) {
            return false;
        }
        switch (*s->pos++) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = 0x08; break;
        case 'f': cp = 0x0c; break;
        case 'n': cp = 0x0a; break;
        case 'r': cp = 0x0d; break;
        case 't': cp = 0x09; break;
        case 'u':
            if (!take_hex4(s, &cp)) {
                return false;
            }
            break;
        default:
            return false; /* an escape json does not know */
        }
        sink_put(sink, cp);
    }
}

/* A JSON number (or -Infinity) at s->pos. `*int_ok` tells whether it is an integer of at most
 * 9 digits, then in `*value`. Python's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? */
static bool read_number(scan_t *s, bool *int_ok, int32_t *value)
{
    bool negative = false, fraction = false;
    size_t digits = 0;
    int32_t n = 0;

    *int_ok = false;
    if (at(s, '-')) {
        s->pos++;
        negative = true;
        if (take_literal(s, "Infinity")) {
            return true;
        }
    }
    if (at(s, '0')) {
        s->pos++;
        digits = 1;
    } else {
        while (s->pos < s->end && *s->pos >= '0' && *s->pos <= '9') {
            if (digits < 9) {
                n = n * 10 + (*s->pos - '0');
            }
            digits++;
            s->pos++;
        }
    }
    if (digits == 0) {
        return false;
    }
    if (at(s, '.')) {
        s->pos++;
        if (!(s->pos < s->end && *s->pos >= '0' && *s->pos <= '9')) {
            return false;
        }
        while (s->pos < s->end && *s->pos >= '0' && *s->pos <= '9') {
            s->pos++;
        }
        fraction = true;
    }
    if (at(s, 'e') || at(s, 'E')) {
        s->pos++;
        if (at(s, '+') || at(s, '-')) {
            s->pos++;
        }
        if (!(s->pos < s->end && *s->pos >= '0' && *s->pos <= '9')) {
            return false;
        }
        while (s->pos < s->end && *s->pos >= '0' && *s->pos <= '9') {
            s->pos++;
        }
        fraction = true;
    }
    if (fraction) {
        return true; /* a float: never an integer code or port */
    }
    if (digits > PY_INT_MAX_DIGITS) {
        return false; /* Python's int() refuses it, and json.loads with it */
    }
    if (digits <= 9) {
        *int_ok = true;
        *value = negative ? -n : n;
    }
    return true;
}

/* The field a key names inside an object of `role`. */
static field_t field_of(role_t role, const char *key, size_t len, bool clean)
{
    static const struct {
        role_t role;
        const char *key;
        field_t field;
    } fields[] = {
        {ROLE_TOP, "code", FIELD_CODE},           {ROLE_TOP, "data", FIELD_DATA},
        {ROLE_DATA, "iotId", FIELD_IOT_ID},       {ROLE_DATA, "iotToken", FIELD_IOT_TOKEN},
        {ROLE_DATA, "resources", FIELD_RESOURCES}, {ROLE_RESOURCES, "mqtt", FIELD_MQTT},
        {ROLE_MQTT, "host", FIELD_HOST},           {ROLE_MQTT, "port", FIELD_PORT},
        {ROLE_DATA, "deviceSecret", FIELD_DEVICE_SECRET},
    };
    size_t i;

    if (!clean) {
        return FIELD_NONE;
    }
    for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].role == role && strlen(fields[i].key) == len &&
            memcmp(fields[i].key, key, len) == 0) {
            return fields[i].field;
        }
    }
    return FIELD_NONE;
}

/* A key was read: what its value held before no longer counts (the last duplicate wins). */
static void forget_field(scan_t *s, field_t field)
{
    switch (field) {
    case FIELD_CODE:
        s->has_code = false;
        break;
    case FIELD_DATA:
        s->data_is_object = false;
        s->iot_id = s->iot_token = s->device_secret_found = FOUND_ABSENT;
        s->host_ok = s->port_ok = false;
        break;
    case FIELD_DEVICE_SECRET:
        s->device_secret_found = FOUND_ABSENT;
        break;
    case FIELD_IOT_ID:
        s->iot_id = FOUND_ABSENT;
        break;
    case FIELD_IOT_TOKEN:
        s->iot_token = FOUND_ABSENT;
        break;
    case FIELD_RESOURCES:
    case FIELD_MQTT:
        s->host_ok = s->port_ok = false;
        break;
    case FIELD_HOST:
        s->host_ok = false;
        break;
    case FIELD_PORT:
        s->port_ok = false;
        break;
    case FIELD_NONE:
    case FIELD_ROOT:
        break;
    }
}

/* _HOSTNAME: [A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])? (length checked by the sink). */
static bool is_hostname(const char *host, size_t len)
{
    size_t i;

    if (len == 0 || !is_alnum((uint8_t)host[0]) || !is_alnum((uint8_t)host[len - 1])) {
        return false;
    }
    for (i = 0; i < len; i++) {
        uint8_t c = (uint8_t)host[i];
        if (!is_alnum(c) && c != '.' && c != '-') {
            return false;
        }
    }
    return true;
}

/* A string value for `field`: collected into the reply's buffer, or validated only. */
static bool read_string_value(scan_t *s, field_t field)
{
    char int_text[INT_TEXT_MAX + 1];
    sink_t sink;
    int32_t value = 0;

    switch (field) {
    case FIELD_CODE:
    case FIELD_PORT:
        sink_start(&sink, SINK_INT, int_text, INT_TEXT_MAX);
        break;
    case FIELD_IOT_ID:
        if (s->reply != NULL) {
            sink_start(&sink, SINK_TEXT, s->reply->iot_id, AIRFSM_MAX_CREDENTIAL_LEN);
        } else {
            sink_start(&sink, SINK_SKIP, NULL, 0);
        }
        break;
    case FIELD_IOT_TOKEN:
        if (s->reply != NULL) {
            sink_start(&sink, SINK_TEXT, s->reply->iot_token, AIRFSM_MAX_CREDENTIAL_LEN);
        } else {
            sink_start(&sink, SINK_SKIP, NULL, 0);
        }
        break;
    case FIELD_HOST:
        if (s->reply != NULL) {
            sink_start(&sink, SINK_TEXT, s->reply->mqtt_host, AIRFSM_MAX_HOST_LEN);
        } else {
            sink_start(&sink, SINK_SKIP, NULL, 0);
        }
        break;
    case FIELD_DEVICE_SECRET:
        if (s->device_secret != NULL) {
            sink_start(&sink, SINK_TEXT, s->device_secret, AIRFSM_MAX_CREDENTIAL_LEN);
        } else {
            sink_start(&sink, SINK_SKIP, NULL, 0);
        }
        break;
    default:
        sink_start(&sink, SINK_SKIP, NULL, 0);
        break;
    }
    if (!read_string(s, &sink)) {
        return false;
    }
    switch (field) {
    case FIELD_CODE:
        s->has_code = sink.clean && parse_int_text(int_text, sink.len, &s->code);
        break;
    case FIELD_PORT:
        s->port_ok = sink.clean && parse_int_text(int_text, sink.len, &value);
        s->port = value;
        break;
    case FIELD_IOT_ID:
        /* _credential: "" is absent; over 256 bytes or a disallowed character is unusable */
        s->iot_id = sink.count == 0 ? FOUND_ABSENT : sink.clean ? FOUND_USABLE : FOUND_UNUSABLE;
        break;
    case FIELD_IOT_TOKEN:
        s->iot_token = sink.count == 0 ? FOUND_ABSENT
                       : sink.clean    ? FOUND_USABLE
                                       : FOUND_UNUSABLE;
        break;
    case FIELD_HOST:
        s->host_ok = s->reply != NULL && sink.clean && is_hostname(s->reply->mqtt_host, sink.len);
        break;
    case FIELD_DEVICE_SECRET:
        s->device_secret_found = sink.count == 0 ? FOUND_ABSENT
                                 : sink.clean    ? FOUND_USABLE
                                                 : FOUND_UNUSABLE;
        break;
    default:
        break;
    }
    return true;
}

/* A scalar value (anything but an object or array) for `field`. */
static bool read_scalar(scan_t *s, field_t field)
{
    bool int_ok;
    int32_t value = 0;

    if (at(s, '"')) {
        return read_string_value(s, field);
    }
    if (take_literal(s, "true") || take_literal(s, "false") || take_literal(s, "null") ||
        take_literal(s, "NaN") || take_literal(s, "Infinity")) {
        return true; /* none of them is an integer (True is not, for _as_int) or a string */
    }
    if (!read_number(s, &int_ok, &value)) {
        return false;
    }
    if (field == FIELD_CODE) {
        s->has_code = int_ok;
        s->code = value;
    } else if (field == FIELD_PORT) {
        s->port_ok = int_ok;
        s->port = value;
    }
    return true;
}

/* An object's key and its colon; sets `*field` to what the value that follows is. */
static bool read_key(scan_t *s, role_t role, field_t *field)
{
    char key[16];
    sink_t sink;

    skip_json_space(s);
    if (!at(s, '"')) {
        return false; /* a key must be a string (and no trailing comma) */
    }
    sink_start(&sink, SINK_TEXT, key, sizeof key - 1);
    if (!read_string(s, &sink)) {
        return false;
    }
    *field = field_of(role, key, sink.len, sink.clean);
    forget_field(s, *field);
    skip_json_space(s);
    if (!at(s, ':')) {
        return false;
    }
    s->pos++;
    return true;
}

/* The role an object gets from the field it is the value of. */
static role_t role_of(field_t field)
{
    switch (field) {
    case FIELD_ROOT:
        return ROLE_TOP;
    case FIELD_DATA:
        return ROLE_DATA;
    case FIELD_RESOURCES:
        return ROLE_RESOURCES;
    case FIELD_MQTT:
        return ROLE_MQTT;
    default:
        return ROLE_OTHER;
    }
}

/* The whole document: one value, then only whitespace. */
static bool read_document(scan_t *s)
{
    uint8_t stack[AIRFSM_JSON_MAX_DEPTH];
    size_t depth = 0;
    field_t field = FIELD_ROOT;

    for (;;) {
        /* A value for `field`. */
        skip_json_space(s);
        if (at(s, '{') || at(s, '[')) {
            bool array = at(s, '[');
            role_t role = array ? ROLE_OTHER : role_of(field);
            if (depth == AIRFSM_JSON_MAX_DEPTH) {
                return false;
            }
            if (!array) {
                if (field == FIELD_ROOT) {
                    s->root_is_object = true;
                } else if (field == FIELD_DATA) {
                    s->data_is_object = true;
                }
            }
            stack[depth++] = (uint8_t)((unsigned)role | (array ? FRAME_ARRAY : 0u));
            s->pos++;
            skip_json_space(s);
            if (!at(s, array ? ']' : '}')) {
                if (array) {
                    field = FIELD_NONE;
                } else if (!read_key(s, role, &field)) {
                    return false;
                }
                continue; /* the container's first value */
            }
            s->pos++;
            depth--; /* empty: closed at once */
        } else if (!read_scalar(s, field)) {
            return false;
        }

        /* After a value: a comma starts the next one, a bracket closes containers. */
        for (;;) {
            uint8_t frame;
            skip_json_space(s);
            if (depth == 0) {
                return s->pos == s->end; /* json's "Extra data" otherwise */
            }
            frame = stack[depth - 1];
            if (at(s, ',')) {
                s->pos++;
                if (frame & FRAME_ARRAY) {
                    field = FIELD_NONE;
                } else if (!read_key(s, (role_t)frame, &field)) {
                    return false;
                }
                break;
            }
            if (!at(s, (frame & FRAME_ARRAY) ? ']' : '}')) {
                return false;
            }
            s->pos++;
            depth--;
        }
    }
}

static void clear_strings(aliyun_auth_reply_t *reply)
{
    memset(reply->iot_id, 0, sizeof reply->iot_id);
    memset(reply->iot_token, 0, sizeof reply->iot_token);
    memset(reply->mqtt_host, 0, sizeof reply->mqtt_host);
    reply->mqtt_port = 0;
}

static bool judge(aliyun_auth_reply_t *reply, int32_t code, aliyun_reply_reason_t reason)
{
    reply->code = code;
    reply->reason = reason;
    if (reason != ALIYUN_REPLY_OK) {
        clear_strings(reply); /* a partial token never lingers in a refused reply */
    }
    return reason == ALIYUN_REPLY_OK;
}

/* Twin: aliyun._scan_reply: the bounded scan of a JSON reply up to the verdict every reply
 * shares: ALIYUN_REPLY_OK (the scan's fields in `s`) when the body is an object with code 200
 * and a data object; why not otherwise, with the code in *code. */
static aliyun_reply_reason_t scan_reply(const uint8_t *body, size_t len, scan_t *s, int32_t *code)
{
    static const uint8_t nothing = 0;
    const uint8_t *start, *end, *p;
    uint32_t cp;

    *code = ALIYUN_AUTH_UNPARSEABLE;
    if (body == NULL) { /* an empty reply; NULL + 0 would be undefined */
        body = &nothing;
        len = 0;
    }
    start = body;
    end = body + len;
    for (p = start; p < end;) {
        size_t n = utf8_decode(p, end, &cp);
        if (n == 0) {
            return ALIYUN_REPLY_NOT_UTF8;
        }
        p += n;
    }
    strip(&start, &end, STRIP_SPACE);
    strip(&start, &end, STRIP_NUL);
    strip(&start, &end, STRIP_SPACE);
    if (start == end) {
        return ALIYUN_REPLY_EMPTY;
    }
    s->pos = start;
    s->end = end;
    if (!read_document(s)) {
        return ALIYUN_REPLY_NOT_JSON;
    }
    if (!s->root_is_object) {
        return ALIYUN_REPLY_NOT_OBJECT;
    }
    if (!s->has_code) {
        return ALIYUN_REPLY_NO_CODE;
    }
    *code = s->code;
    if (s->code != ALIYUN_AUTH_OK) {
        return ALIYUN_REPLY_REFUSED;
    }
    if (!s->data_is_object) {
        return ALIYUN_REPLY_NO_DATA;
    }
    return ALIYUN_REPLY_OK;
}

/* Twin: aliyun.parse_auth_reply (and _as_int, _credential, _mqtt_resource). */
bool aliyun_parse_auth_reply(const uint8_t *body, size_t len, aliyun_auth_reply_t *reply)
{
    scan_t s;
    int32_t code;
    aliyun_reply_reason_t reason;

    clear_strings(reply);
    memset(&s, 0, sizeof s);
    s.reply = reply;
    reason = scan_reply(body, len, &s, &code);
    if (reason != ALIYUN_REPLY_OK) {
        return judge(reply, code, reason);
    }
    if (s.iot_id != FOUND_USABLE) {
        return judge(reply, s.code,
                     s.iot_id == FOUND_ABSENT ? ALIYUN_REPLY_NO_IOT_ID : ALIYUN_REPLY_BAD_IOT_ID);
    }
    if (s.iot_token != FOUND_USABLE) {
        return judge(reply, s.code,
                     s.iot_token == FOUND_ABSENT ? ALIYUN_REPLY_NO_IOT_TOKEN
                                                 : ALIYUN_REPLY_BAD_IOT_TOKEN);
    }
    /* _mqtt_resource: a port without its host means nothing */
    if (!s.host_ok) {
        memset(reply->mqtt_host, 0, sizeof reply->mqtt_host);
    } else if (s.port_ok && s.port > 0 && s.port < 65536) {
        reply->mqtt_port = (uint16_t)s.port;
    }
    return judge(reply, s.code, ALIYUN_REPLY_OK);
}

/* Twin: aliyun.parse_register_reply */
bool aliyun_parse_register_reply(const uint8_t *body, size_t len, aliyun_register_reply_t *reply)
{
    scan_t s;
    int32_t code;
    aliyun_reply_reason_t reason;

    memset(reply->device_secret, 0, sizeof reply->device_secret);
    memset(&s, 0, sizeof s);
    s.device_secret = reply->device_secret;
    reason = scan_reply(body, len, &s, &code);
    if (reason == ALIYUN_REPLY_OK && s.device_secret_found != FOUND_USABLE) {
        reason = s.device_secret_found == FOUND_ABSENT ? ALIYUN_REPLY_NO_DEVICE_SECRET
                                                       : ALIYUN_REPLY_BAD_DEVICE_SECRET;
    }
    /* It must also be a DeviceSecret the identity takes (no '), or no sign could use it. */
    if (reason == ALIYUN_REPLY_OK &&
        !text_matches(reply->device_secret, is_secret_char, 1, SIZE_MAX)) {
        reason = ALIYUN_REPLY_BAD_DEVICE_SECRET;
    }
    reply->code = code;
    reply->reason = reason;
    if (reason != ALIYUN_REPLY_OK) {
        /* a partial secret never lingers in a refused reply */
        memset(reply->device_secret, 0, sizeof reply->device_secret);
        return false;
    }
    return true;
}
