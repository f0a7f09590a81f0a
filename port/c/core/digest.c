/* digest.c: MD5, SHA-1, SHA-256 and HMAC. See digest.h; Python twins: hashlib and hmac.
 *
 * The three hashes are Merkle–Damgård constructions over 64-byte blocks with the same padding
 * (0x80, zeros, the message length in bits as 8 bytes), so one update/final serves all three and
 * only `compress` differs. MD5 reads its words and writes its length little-endian; the SHAs are
 * big-endian. The round constants are the ones the standards define (MD5: floor(|sin(i+1)|·2^32);
 * SHA-256: the fractional parts of the cube roots of the first 64 primes).
 */
#include "digest.h"

#include <string.h>

static uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32u - n)); }
static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void store_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* --- MD5 (RFC 1321 section 3.4) --------------------------------------------------------------- */

static const uint32_t md5_sine[64] = {
    0xd76aa478u, 0xe8c7b756u, 0x242070dbu, 0xc1bdceeeu, 0xf57c0fafu, 0x4787c62au, 0xa8304613u,
    0xfd469501u, 0x698098d8u, 0x8b44f7afu, 0xffff5bb1u, 0x895cd7beu, 0x6b901122u, 0xfd987193u,
    0xa679438eu, 0x49b40821u, 0xf61e2562u, 0xc040b340u, 0x265e5a51u, 0xe9b6c7aau, 0xd62f105du,
    0x02441453u, 0xd8a1e681u, 0xe7d3fbc8u, 0x21e1cde6u, 0xc33707d6u, 0xf4d50d87u, 0x455a14edu,
    0xa9e3e905u, 0xfcefa3f8u, 0x676f02d9u, 0x8d2a4c8au, 0xfffa3942u, 0x8771f681u, 0x6d9d6122u,
    0xfde5380cu, 0xa4beea44u, 0x4bdecfa9u, 0xf6bb4b60u, 0xbebfbc70u, 0x289b7ec6u, 0xeaa127fau,
    0xd4ef3085u, 0x04881d05u, 0xd9d4d039u, 0xe6db99e5u, 0x1fa27cf8u, 0xc4ac5665u, 0xf4292244u,
    0x432aff97u, 0xab9423a7u, 0xfc93a039u, 0x655b59c3u, 0x8f0ccc92u, 0xffeff47du, 0x85845dd1u,
    0x6fa87e4fu, 0xfe2ce6e0u, 0xa3014314u, 0x4e0811a1u, 0xf7537e82u, 0xbd3af235u, 0x2ad7d2bbu,
    0xeb86d391u,
};

/* Left-rotation amounts: four per round, each used for every fourth step of that round. */
static const uint8_t md5_shift[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};

static void md5_compress(uint32_t state[8], const uint8_t block[DIGEST_BLOCK_SIZE])
{
    uint32_t m[16];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    unsigned i;

    for (i = 0; i < 16; i++) {
        m[i] = load_le32(block + 4 * i);
    }
    for (i = 0; i < 64; i++) {
        unsigned round = i / 16;
        uint32_t f;
        unsigned word;
        if (round == 0) {
            f = (b & c) | (~b & d);
            word = i;
        } else if (round == 1) {
            f = (b & d) | (c & ~d);
            word = (5 * i + 1) % 16;
        } else if (round == 2) {
            f = b ^ c ^ d;
            word = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            word = (7 * i) % 16;
        }
        f = a + f + md5_sine[i] + m[word];
        a = d;
        d = c;
        c = b;
        b = b + rotl(f, md5_shift[round * 4 + i % 4]);
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
}

/* --- SHA-1 (FIPS 180-4 section 6.1.2), with the 16-word rolling schedule of its section 6.1.3 - */

static void sha1_compress(uint32_t state[8], const uint8_t block[DIGEST_BLOCK_SIZE])
{
    uint32_t w[16];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
    unsigned t;

    for (t = 0; t < 16; t++) {
        w[t] = load_be32(block + 4 * t);
    }
    for (t = 0; t < 80; t++) {
        uint32_t f, k, temp;
        if (t >= 16) {
            w[t % 16] = rotl(w[(t + 13) % 16] ^ w[(t + 8) % 16] ^ w[(t + 2) % 16] ^ w[t % 16], 1);
        }
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999u;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1u;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdcu;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6u;
        }
        temp = rotl(a, 5) + f + e + k + w[t % 16];
        e = d;
        d = c;
        c = rotl(b, 30);
        b = a;
        a = temp;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
}

/* --- SHA-256 (FIPS 180-4 section 6.2.2) ------------------------------------------------------- */

static const uint32_t sha256_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

static void sha256_compress(uint32_t state[8], const uint8_t block[DIGEST_BLOCK_SIZE])
{
    uint32_t w[16];
    uint32_t v[8]; /* a..h */
    unsigned t, i;

    for (t = 0; t < 16; t++) {
        w[t] = load_be32(block + 4 * t);
    }
    memcpy(v, state, sizeof v);
    for (t = 0; t < 64; t++) {
        uint32_t s0, s1, ch, maj, t1, t2;
        if (t >= 16) {
            uint32_t w15 = w[(t + 1) % 16], w2 = w[(t + 14) % 16];
            s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >> 3);
            s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >> 10);
            w[t % 16] += s0 + w[(t + 9) % 16] + s1;
        }
        s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
        ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
        t1 = v[7] + s1 + ch + sha256_k[t] + w[t % 16];
        s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
        maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
        t2 = s0 + maj;
        for (i = 7; i > 0; i--) {
            v[i] = v[i - 1];
        }
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (i = 0; i < 8; i++) {
        state[i] += v[i];
    }
}

/* --- the shared Merkle–Damgård frame ---------------------------------------------------------- */

static const uint32_t md5_sha1_iv[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u,
                                        0xc3d2e1f0u};
static const uint32_t sha256_iv[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                      0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};

size_t digest_size(digest_kind_t kind)
{
    switch (kind) {
    case DIGEST_MD5:
        return 16;
    case DIGEST_SHA1:
        return 20;
    case DIGEST_SHA256:
        return 32;
    }
    return 0;
}

static void compress(digest_ctx_t *ctx, const uint8_t block[DIGEST_BLOCK_SIZE])
{
    switch (ctx->kind) {
    case DIGEST_MD5:
        md5_compress(ctx->state, block);
        break;
    case DIGEST_SHA1:
        sha1_compress(ctx->state, block);
        break;
    case DIGEST_SHA256:
        sha256_compress(ctx->state, block);
        break;
    }
}

void digest_init(digest_ctx_t *ctx, digest_kind_t kind)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->kind = kind;
    if (kind == DIGEST_SHA256) {
        memcpy(ctx->state, sha256_iv, sizeof sha256_iv);
    } else {
        /* MD5 and SHA-1 start from the same four words; SHA-1 adds a fifth. */
        memcpy(ctx->state, md5_sha1_iv, sizeof md5_sha1_iv);
    }
}

void digest_update(digest_ctx_t *ctx, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t used = (size_t)(ctx->length % DIGEST_BLOCK_SIZE);

    if (len == 0) {
        return; /* and `data` may then be NULL */
    }
    ctx->length += len;
    if (used > 0) {
        size_t take = DIGEST_BLOCK_SIZE - used;
        if (take > len) {
            take = len;
        }
        memcpy(ctx->block + used, p, take);
        p += take;
        len -= take;
        if (used + take < DIGEST_BLOCK_SIZE) {
            return;
        }
        compress(ctx, ctx->block);
    }
    while (len >= DIGEST_BLOCK_SIZE) {
        compress(ctx, p);
        p += DIGEST_BLOCK_SIZE;
        len -= DIGEST_BLOCK_SIZE;
    }
    if (len > 0) {
        memcpy(ctx->block, p, len);
    }
}

void digest_final(digest_ctx_t *ctx, uint8_t out[DIGEST_MAX_SIZE])
{
    uint64_t bits = ctx->length * 8u;
    size_t used = (size_t)(ctx->length % DIGEST_BLOCK_SIZE);
    size_t words = digest_size(ctx->kind) / 4;
    int little_endian = ctx->kind == DIGEST_MD5;
    size_t i;

    ctx->block[used++] = 0x80;
    if (used > DIGEST_BLOCK_SIZE - 8) { /* no room for the length: it goes in one more block */
        memset(ctx->block + used, 0, DIGEST_BLOCK_SIZE - used);
        compress(ctx, ctx->block);
        used = 0;
    }
    memset(ctx->block + used, 0, DIGEST_BLOCK_SIZE - 8 - used);
    for (i = 0; i < 8; i++) {
        unsigned shift = (unsigned)(little_endian ? i : 7 - i) * 8u;
        ctx->block[DIGEST_BLOCK_SIZE - 8 + i] = (uint8_t)(bits >> shift);
    }
    compress(ctx, ctx->block);
    for (i = 0; i < words; i++) {
        if (little_endian) {
            store_le32(out + 4 * i, ctx->state[i]);
        } else {
            store_be32(out + 4 * i, ctx->state[i]);
        }
    }
}

/* --- HMAC (RFC 2104) -------------------------------------------------------------------------- */

/* memset through a volatile pointer: a plain memset of a dying buffer may be optimised away. */
static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n-- > 0) {
        *v++ = 0;
    }
}

void hmac_init(hmac_ctx_t *ctx, digest_kind_t kind, const void *key, size_t key_len)
{
    uint8_t pad[DIGEST_BLOCK_SIZE];
    size_t i;

    memset(pad, 0, sizeof pad);
    if (key_len > DIGEST_BLOCK_SIZE) {
        digest_init(&ctx->inner, kind);
        digest_update(&ctx->inner, key, key_len);
        digest_final(&ctx->inner, pad); /* DIGEST_MAX_SIZE ≤ the block: fits */
    } else if (key_len > 0) {
        memcpy(pad, key, key_len);
    }
    for (i = 0; i < DIGEST_BLOCK_SIZE; i++) {
        pad[i] ^= 0x36u;
    }
    digest_init(&ctx->inner, kind);
    digest_update(&ctx->inner, pad, sizeof pad);
    for (i = 0; i < DIGEST_BLOCK_SIZE; i++) {
        pad[i] ^= 0x36u ^ 0x5cu; /* from K ^ ipad to K ^ opad */
    }
    digest_init(&ctx->outer, kind);
    digest_update(&ctx->outer, pad, sizeof pad);
    wipe(pad, sizeof pad); /* the key does not outlive the call on the stack */
}

void hmac_update(hmac_ctx_t *ctx, const void *data, size_t len)
{
    digest_update(&ctx->inner, data, len);
}

void hmac_final(hmac_ctx_t *ctx, uint8_t out[DIGEST_MAX_SIZE])
{
    uint8_t inner[DIGEST_MAX_SIZE];

    digest_final(&ctx->inner, inner);
    digest_update(&ctx->outer, inner, digest_size(ctx->inner.kind));
    digest_final(&ctx->outer, out);
}

void digest_hex(const uint8_t *bytes, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 0x0fu];
    }
    hex[2 * len] = '\0';
}
