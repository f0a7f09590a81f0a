/* digest.h: MD5 (RFC 1321), SHA-1 and SHA-256 (FIPS 180-4) and HMAC over each (RFC 2104).
 *
 * Python twins: hashlib.md5 / hashlib.sha1 / hashlib.sha256 and hmac.new(key, msg, digest),
 * which airfsm/core/aliyun.py uses to sign the auth form. Written for a small MCU: no allocation,
 * no library call beyond memcpy/memset, one context type for the three hashes (they share the
 * 64-byte block and the padding; only the compression function and the byte order differ).
 *
 * Use: digest_init → digest_update (any number of times) → digest_final. The same for hmac_*.
 */
#ifndef AIRFSM_DIGEST_H
#define AIRFSM_DIGEST_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DIGEST_MD5 = 0,
    DIGEST_SHA1 = 1,
    DIGEST_SHA256 = 2
} digest_kind_t;

#define DIGEST_BLOCK_SIZE 64u /* all three hash 64-byte blocks */
#define DIGEST_MAX_SIZE 32u   /* SHA-256's output; MD5 gives 16, SHA-1 20 */

typedef struct {
    uint32_t state[8];                /* MD5 uses 4 words, SHA-1 5, SHA-256 8 */
    uint64_t length;                  /* bytes hashed so far */
    uint8_t block[DIGEST_BLOCK_SIZE]; /* the partial block not yet compressed */
    digest_kind_t kind;
} digest_ctx_t;

typedef struct {
    digest_ctx_t inner; /* H((K ^ ipad) || message) */
    digest_ctx_t outer; /* H((K ^ opad) || inner digest), primed at init */
} hmac_ctx_t;

/* The output length of `kind` in bytes (hashlib's digest_size). */
size_t digest_size(digest_kind_t kind);

/* hashlib.new(name): start a hash. */
void digest_init(digest_ctx_t *ctx, digest_kind_t kind);
/* hash.update(data) */
void digest_update(digest_ctx_t *ctx, const void *data, size_t len);
/* hash.digest(): writes digest_size(kind) bytes to `out`; the context is spent afterwards. */
void digest_final(digest_ctx_t *ctx, uint8_t out[DIGEST_MAX_SIZE]);

/* hmac.new(key, digestmod=kind): a key longer than a block is hashed first (RFC 2104). */
void hmac_init(hmac_ctx_t *ctx, digest_kind_t kind, const void *key, size_t key_len);
/* hmac.update(data) */
void hmac_update(hmac_ctx_t *ctx, const void *data, size_t len);
/* hmac.digest(): writes digest_size(kind) bytes to `out`. */
void hmac_final(hmac_ctx_t *ctx, uint8_t out[DIGEST_MAX_SIZE]);

/* bytes.hex(): 2*len lowercase hex digits and a NUL into `hex` (room for 2*len + 1). */
void digest_hex(const uint8_t *bytes, size_t len, char *hex);

#endif /* AIRFSM_DIGEST_H */
