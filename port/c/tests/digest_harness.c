/* digest_harness.c: hashes and HMACs of piped inputs, for the cross-check against hashlib/hmac.
 *
 * Request:  <op> <key> <data> <chunk>   op: md5 sha1 sha256 hmac-md5 hmac-sha1 hmac-sha256
 *                                       key: "-" for a plain hash; chunk: feed the data in pieces
 *                                       of this many bytes (0: in one call)
 * Answer:   the digest in lowercase hex, or "error <why>"
 */
#include <stdbool.h>

#include "../core/digest.h"
#include "harness_io.h"

static bool kind_of(const char *name, digest_kind_t *kind)
{
    if (strcmp(name, "md5") == 0) {
        *kind = DIGEST_MD5;
    } else if (strcmp(name, "sha1") == 0) {
        *kind = DIGEST_SHA1;
    } else if (strcmp(name, "sha256") == 0) {
        *kind = DIGEST_SHA256;
    } else {
        return false;
    }
    return true;
}

static void answer(const char *op, const field_t *key, const field_t *data, size_t chunk)
{
    bool hmac = strncmp(op, "hmac-", 5) == 0;
    digest_kind_t kind;
    digest_ctx_t hash;
    hmac_ctx_t mac;
    uint8_t out[DIGEST_MAX_SIZE];
    char hex[2 * DIGEST_MAX_SIZE + 1];
    size_t done = 0;

    if (!kind_of(hmac ? op + 5 : op, &kind)) {
        printf("error unknown op\n");
        return;
    }
    if (hmac) {
        hmac_init(&mac, kind, key->bytes, key->len);
    } else {
        digest_init(&hash, kind);
    }
    do {
        size_t n = chunk == 0 || data->len - done < chunk ? data->len - done : chunk;
        if (hmac) {
            hmac_update(&mac, data->bytes + done, n);
        } else {
            digest_update(&hash, data->bytes + done, n);
        }
        done += n;
    } while (done < data->len);
    if (hmac) {
        hmac_final(&mac, out);
    } else {
        digest_final(&hash, out);
    }
    digest_hex(out, digest_size(kind), hex);
    printf("%s\n", hex);
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;

    while (getline(&line, &cap, stdin) > 0) {
        char *tokens[4];
        field_t key = {NULL, 0}, data = {NULL, 0};
        if (split(line, tokens, 4) != 4 || field_decode(tokens[1], &key) != 0 ||
            field_decode(tokens[2], &data) != 0) {
            printf("error malformed request\n");
        } else {
            answer(tokens[0], &key, &data, (size_t)strtoul(tokens[3], NULL, 10));
        }
        free(key.bytes);
        free(data.bytes);
        fflush(stdout);
    }
    free(line);
    return 0;
}
