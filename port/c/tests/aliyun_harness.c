/* aliyun_harness.c: the C aliyun functions on piped inputs, to compare with airfsm/core/aliyun.py.
 *
 * Requests (byte strings as harness_io.h says: "x<hex>", or "-" for NULL):
 *   body <method> <timestamp|-> <cap> <product_key> <device_name> <secret> <region> <client_id>
 *        [<resources 0|1> <product_secret> <instance_id>]
 *        → "ok <sign> <body>" or "error <status>"   (the body is built in exactly `cap` bytes;
 *          with resources 1 it is aliyun_auth_params(..., true) encoded: resources=mqtt)
 *   register <method> <nonce> <cap> <product_key> <device_name> <secret> <region> <client_id>
 *        <product_secret> <instance_id>
 *        → "ok <sign> <body>" or "error <status>"
 *   mqttsign <method> <timestamp|-> <product_key> <device_name> <secret> <region> <client_id>
 *        <product_secret> <instance_id>
 *        → "ok <client_id> <username> <password>" or "error <status>"
 *   sign <method> <secret> <name> <value> [<name> <value> ...]
 *        → "ok <sign>" or "error <status>"
 *   reply <body>
 *        → "code=<n> reason=<reason> id=<x..> token=<x..> host=<x..> port=<n>"
 *   regreply <body>
 *        → "code=<n> reason=<reason> secret=<x..> ok=<0|1>"
 *          (the body is copied to a buffer of exactly its length: ASan sees any read past it)
 * method is a number (0 hmacmd5, 1 hmacsha1, 2 hmacsha256; others test the refusal).
 */
#include <stdbool.h>

#include "../core/aliyun.h"
#include "harness_io.h"

#define MAX_TOKENS (3 + 2 * ALIYUN_MAX_PARAMS + 2)

static const char *status_name(aliyun_status_t status)
{
    switch (status) {
    case ALIYUN_OK: return "OK";
    case ALIYUN_BAD_PRODUCT_KEY: return "BAD_PRODUCT_KEY";
    case ALIYUN_BAD_DEVICE_NAME: return "BAD_DEVICE_NAME";
    case ALIYUN_BAD_DEVICE_SECRET: return "BAD_DEVICE_SECRET";
    case ALIYUN_BAD_REGION: return "BAD_REGION";
    case ALIYUN_BAD_CLIENT_ID: return "BAD_CLIENT_ID";
    case ALIYUN_BAD_METHOD: return "BAD_METHOD";
    case ALIYUN_BAD_PARAMS: return "BAD_PARAMS";
    case ALIYUN_NO_ROOM: return "NO_ROOM";
    case ALIYUN_BAD_PRODUCT_SECRET: return "BAD_PRODUCT_SECRET";
    case ALIYUN_BAD_INSTANCE_ID: return "BAD_INSTANCE_ID";
    case ALIYUN_NOT_REGISTERED: return "NOT_REGISTERED";
    case ALIYUN_NO_PRODUCT_SECRET: return "NO_PRODUCT_SECRET";
    }
    return "?";
}

static const char *reason_name(aliyun_reply_reason_t reason)
{
    switch (reason) {
    case ALIYUN_REPLY_OK: return "OK";
    case ALIYUN_REPLY_NOT_UTF8: return "NOT_UTF8";
    case ALIYUN_REPLY_EMPTY: return "EMPTY";
    case ALIYUN_REPLY_NOT_JSON: return "NOT_JSON";
    case ALIYUN_REPLY_NOT_OBJECT: return "NOT_OBJECT";
    case ALIYUN_REPLY_NO_CODE: return "NO_CODE";
    case ALIYUN_REPLY_REFUSED: return "REFUSED";
    case ALIYUN_REPLY_NO_DATA: return "NO_DATA";
    case ALIYUN_REPLY_NO_IOT_ID: return "NO_IOT_ID";
    case ALIYUN_REPLY_BAD_IOT_ID: return "BAD_IOT_ID";
    case ALIYUN_REPLY_NO_IOT_TOKEN: return "NO_IOT_TOKEN";
    case ALIYUN_REPLY_BAD_IOT_TOKEN: return "BAD_IOT_TOKEN";
    case ALIYUN_REPLY_NO_DEVICE_SECRET: return "NO_DEVICE_SECRET";
    case ALIYUN_REPLY_BAD_DEVICE_SECRET: return "BAD_DEVICE_SECRET";
    }
    return "?";
}

/* The identity of fields[0..4] (and [5], [6]: product secret, instance id, when given). */
static aliyun_identity_t identity_of(const field_t *fields, bool extended)
{
    aliyun_identity_t identity;
    identity.product_key = (const char *)fields[0].bytes;
    identity.device_name = (const char *)fields[1].bytes;
    identity.device_secret = (const char *)fields[2].bytes;
    identity.region = (const char *)fields[3].bytes;
    identity.client_id = (const char *)fields[4].bytes;
    identity.product_secret = extended ? (const char *)fields[5].bytes : NULL;
    identity.instance_id = extended ? (const char *)fields[6].bytes : NULL;
    return identity;
}

static void do_body(char **tokens, size_t n, field_t *fields)
{
    aliyun_identity_t identity;
    aliyun_auth_params_t form;
    aliyun_sign_method_t method = (aliyun_sign_method_t)strtol(tokens[1], NULL, 10);
    uint64_t timestamp = 0;
    size_t cap = (size_t)strtoul(tokens[3], NULL, 10), len = 0;
    char *body = malloc(cap > 0 ? cap : 1);
    aliyun_status_t status;

    bool resources = n == 12 && strcmp(tokens[9], "1") == 0;

    if (strcmp(tokens[2], "-") != 0) {
        timestamp = (uint64_t)strtoull(tokens[2], NULL, 10);
    }
    identity = identity_of(fields, n == 12); /* tokens[9], the flag, is no field */
    status = aliyun_auth_params(&identity, method, strcmp(tokens[2], "-") ? &timestamp : NULL,
                                resources, &form);
    if (status == ALIYUN_OK && resources) {
        status = aliyun_form_encode(form.params, form.count, body, cap, &len);
    } else if (status == ALIYUN_OK) {
        status = aliyun_auth_body(&identity, method, strcmp(tokens[2], "-") ? &timestamp : NULL,
                                  body, cap, &len);
    }
    if (status == ALIYUN_OK && strlen(body) != len) {
        printf("error length and NUL disagree\n");
    } else if (status == ALIYUN_OK) {
        printf("ok %s %s\n", form.sign, body);
    } else {
        printf("error %s\n", status_name(status));
    }
    free(body);
}

static void do_register(char **tokens, field_t *fields)
{
    aliyun_identity_t identity = identity_of(fields, true);
    size_t cap = (size_t)strtoul(tokens[3], NULL, 10), len = 0;
    char *body = malloc(cap > 0 ? cap : 1);
    char sign[ALIYUN_SIGN_HEX_SIZE];
    aliyun_status_t status = aliyun_register_form(
        &identity, (uint64_t)strtoull(tokens[2], NULL, 10),
        (aliyun_sign_method_t)strtol(tokens[1], NULL, 10), body, cap, &len, sign);

    if (status == ALIYUN_OK && strlen(body) != len) {
        printf("error length and NUL disagree\n");
    } else if (status == ALIYUN_OK) {
        printf("ok %s %s\n", sign, body);
    } else {
        printf("error %s\n", status_name(status));
    }
    free(body);
}

static void do_mqtt_sign(char **tokens, field_t *fields)
{
    aliyun_identity_t identity = identity_of(fields, true);
    aliyun_mqtt_sign_t out;
    uint64_t timestamp = 0;
    aliyun_status_t status;

    if (strcmp(tokens[2], "-") != 0) {
        timestamp = (uint64_t)strtoull(tokens[2], NULL, 10);
    }
    status = aliyun_mqtt_sign(&identity, (aliyun_sign_method_t)strtol(tokens[1], NULL, 10),
                              strcmp(tokens[2], "-") ? &timestamp : NULL, &out);
    if (status == ALIYUN_OK) {
        printf("ok ");
        field_print(out.client_id, strlen(out.client_id));
        putchar(' ');
        field_print(out.username, strlen(out.username));
        printf(" %s\n", out.password);
    } else {
        printf("error %s\n", status_name(status));
    }
}

static void do_register_reply(const field_t *body)
{
    aliyun_register_reply_t reply;
    unsigned char *exact = malloc(body->len > 0 ? body->len : 1);
    bool ok;

    memcpy(exact, body->bytes, body->len);
    ok = aliyun_parse_register_reply(exact, body->len, &reply);
    free(exact);
    printf("code=%ld reason=%s secret=", (long)reply.code, reason_name(reply.reason));
    field_print(reply.device_secret, strlen(reply.device_secret));
    printf(" ok=%d\n", ok ? 1 : 0);
}

static void do_sign(char **tokens, size_t n, field_t *fields)
{
    aliyun_param_t params[ALIYUN_MAX_PARAMS + 1];
    size_t count = (n - 3) / 2, i;
    char sign[ALIYUN_SIGN_HEX_SIZE];
    aliyun_status_t status;

    for (i = 0; i < count && i < ALIYUN_MAX_PARAMS + 1; i++) {
        params[i].name = (const char *)fields[1 + 2 * i].bytes;
        params[i].value = (const char *)fields[2 + 2 * i].bytes;
    }
    status = aliyun_sign(params, count, (const char *)fields[0].bytes,
                         (aliyun_sign_method_t)strtol(tokens[1], NULL, 10), sign);
    if (status == ALIYUN_OK) {
        printf("ok %s\n", sign);
    } else {
        printf("error %s\n", status_name(status));
    }
}

static void do_reply(const field_t *body)
{
    aliyun_auth_reply_t reply;
    unsigned char *exact = malloc(body->len > 0 ? body->len : 1);

    memcpy(exact, body->bytes, body->len);
    (void)aliyun_parse_auth_reply(exact, body->len, &reply);
    free(exact);
    printf("code=%ld reason=%s id=", (long)reply.code, reason_name(reply.reason));
    field_print(reply.iot_id, strlen(reply.iot_id));
    printf(" token=");
    field_print(reply.iot_token, strlen(reply.iot_token));
    printf(" host=");
    field_print(reply.mqtt_host, strlen(reply.mqtt_host));
    printf(" port=%u\n", (unsigned)reply.mqtt_port);
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;

    while (getline(&line, &cap, stdin) > 0) {
        char *tokens[MAX_TOKENS];
        field_t fields[MAX_TOKENS];
        size_t n = split(line, tokens, MAX_TOKENS), first = 1, i;
        bool ok = n > 0 && n <= MAX_TOKENS;

        memset(fields, 0, sizeof fields);
        if (ok && strcmp(tokens[0], "body") == 0 && n == 12) {
            first = 4; /* body <method> <timestamp> <cap> 5 byte strings <flag> 2 more */
            for (i = first; ok && i < n; i++) {
                if (i != 9) {
                    ok = field_decode(tokens[i], &fields[i - first - (i > 9)]) == 0;
                }
            }
            first = n; /* decoded */
        } else if (ok && (strcmp(tokens[0], "body") == 0 || strcmp(tokens[0], "register") == 0)) {
            first = 4; /* body|register <method> <timestamp|nonce> <cap> then byte strings */
        } else if (ok && strcmp(tokens[0], "mqttsign") == 0) {
            first = 3; /* mqttsign <method> <timestamp> then byte strings */
        } else if (ok && strcmp(tokens[0], "sign") == 0) {
            first = 2; /* sign <method> then byte strings */
        }
        for (i = first; ok && i < n; i++) {
            ok = field_decode(tokens[i], &fields[i - first]) == 0;
        }
        if (!ok || n == 0) {
            printf("error malformed request\n");
        } else if (strcmp(tokens[0], "body") == 0 && (n == 9 || n == 12)) {
            do_body(tokens, n, fields);
        } else if (strcmp(tokens[0], "register") == 0 && n == 11) {
            do_register(tokens, fields);
        } else if (strcmp(tokens[0], "mqttsign") == 0 && n == 10) {
            do_mqtt_sign(tokens, fields);
        } else if (strcmp(tokens[0], "regreply") == 0 && n == 2) {
            do_register_reply(&fields[0]);
        } else if (strcmp(tokens[0], "sign") == 0 && n >= 3 && (n - 3) % 2 == 0) {
            do_sign(tokens, n, fields);
        } else if (strcmp(tokens[0], "reply") == 0 && n == 2) {
            do_reply(&fields[0]);
        } else {
            printf("error malformed request\n");
        }
        for (i = 0; i < MAX_TOKENS; i++) {
            free(fields[i].bytes);
        }
        fflush(stdout);
    }
    free(line);
    return 0;
}
