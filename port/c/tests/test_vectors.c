/* test_vectors.c: the published known answers for the core's hashes, HMACs and the auth sign.
 *
 * MD5: RFC 1321 appendix A.5. SHA-1 and SHA-256: the FIPS 180 examples ("abc", the 448- and
 * 896-bit messages, one million 'a'). HMAC-MD5: RFC 2104 / RFC 2202; HMAC-SHA1: RFC 2202;
 * HMAC-SHA256: RFC 4231 (test case 5 is truncated to 128 bits there, and here). The sign: the
 * seed transcript (PROTOCOL.md).
 *
 * Built twice: for the host (`make check`, under ASan+UBSan; prints and exits with the number of
 * failures) and for the mps2-an385 board (-DVECTORS_ON_MPS2: the same checks on the Cortex-M3,
 * reported on the log UART, the result as QEMU's exit status).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "aliyun.h"
#include "digest.h"

#ifdef VECTORS_ON_MPS2
#include "board.h"
#define setup() board_init()
#define report(line) board_log(line)
#define finish(failures) board_exit(failures)
#else
#include <stdio.h>
#include <stdlib.h>
static void setup(void) {}
static void report(const char *line) { printf("%s\n", line); }
static void finish(int failures) { exit(failures > 0 ? 1 : 0); }
#endif

/* Bytes a vector hashes: a text, or `len` copies of `fill`, or the bytes start, start+1, ... */
typedef struct {
    const char *text;
    uint8_t fill;
    uint8_t start;
    size_t len;
} bytes_t;

#define TEXT(s) {s, 0, 0, 0}
#define FILL(byte, n) {NULL, byte, 0, n}
#define COUNT_FROM(first, n) {NULL, 0, first, n}

typedef struct {
    const char *name;
    digest_kind_t kind;
    bool hmac;
    bytes_t key;
    bytes_t data;
    size_t repeat; /* the data, this many times over (the million 'a') */
    const char *expected; /* lowercase hex; shorter than the digest when the RFC truncates */
} vector_t;

static const vector_t vectors[] = {
    {"md5 empty", DIGEST_MD5, false, TEXT(""), TEXT(""), 1, "d41d8cd98f00b204e9800998ecf8427e"},
    {"md5 a", DIGEST_MD5, false, TEXT(""), TEXT("a"), 1, "0cc175b9c0f1b6a831c399e269772661"},
    {"md5 abc", DIGEST_MD5, false, TEXT(""), TEXT("abc"), 1, "900150983cd24fb0d6963f7d28e17f72"},
    {"md5 message digest", DIGEST_MD5, false, TEXT(""), TEXT("message digest"), 1,
     "f96b697d7cb7938d525a2f31aaf161d0"},
    {"md5 alphabet", DIGEST_MD5, false, TEXT(""), TEXT("abcdefghijklmnopqrstuvwxyz"), 1,
     "c3fcd3d76192e4007dfb496cca67e13b"},
    {"md5 alphanumeric", DIGEST_MD5, false, TEXT(""),
     TEXT("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"), 1,
     "d174ab98d277d9f5a5611c2c9f419d9f"},
    {"md5 digits x8", DIGEST_MD5, false, TEXT(""), TEXT("1234567890"), 8,
     "57edf4a22be3c955ac49da2e2107b67a"},

    {"sha1 empty", DIGEST_SHA1, false, TEXT(""), TEXT(""), 1,
     "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
    {"sha1 abc", DIGEST_SHA1, false, TEXT(""), TEXT("abc"), 1,
     "a9993e364706816aba3e25717850c26c9cd0d89d"},
    {"sha1 448 bits", DIGEST_SHA1, false, TEXT(""),
     TEXT("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"), 1,
     "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
    {"sha1 896 bits", DIGEST_SHA1, false, TEXT(""),
     TEXT("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
          "lmnopqrsmnopqrstnopqrstu"),
     1, "a49b2446a02c645bf419f995b67091253a04a259"},
    {"sha1 million a", DIGEST_SHA1, false, TEXT(""), FILL('a', 1000), 1000,
     "34aa973cd4c4daa4f61eeb2bdbad27316534016f"},

    {"sha256 empty", DIGEST_SHA256, false, TEXT(""), TEXT(""), 1,
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"sha256 abc", DIGEST_SHA256, false, TEXT(""), TEXT("abc"), 1,
     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"sha256 448 bits", DIGEST_SHA256, false, TEXT(""),
     TEXT("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"), 1,
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"sha256 896 bits", DIGEST_SHA256, false, TEXT(""),
     TEXT("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
          "lmnopqrsmnopqrstnopqrstu"),
     1, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    {"sha256 million a", DIGEST_SHA256, false, TEXT(""), FILL('a', 1000), 1000,
     "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},

    {"hmac-md5 rfc2202 1", DIGEST_MD5, true, FILL(0x0b, 16), TEXT("Hi There"), 1,
     "9294727a3638bb1c13f48ef8158bfc9d"},
    {"hmac-md5 rfc2202 2", DIGEST_MD5, true, TEXT("Jefe"), TEXT("what do ya want for nothing?"), 1,
     "750c783e6ab0b503eaa86e310a5db738"},
    {"hmac-md5 rfc2202 3", DIGEST_MD5, true, FILL(0xaa, 16), FILL(0xdd, 50), 1,
     "56be34521d144c88dbb8c733f0e8b3f6"},
    {"hmac-md5 rfc2202 4", DIGEST_MD5, true, COUNT_FROM(0x01, 25), FILL(0xcd, 50), 1,
     "697eaf0aca3a3aea3a75164746ffaa79"},
    {"hmac-md5 rfc2202 5", DIGEST_MD5, true, FILL(0x0c, 16), TEXT("Test With Truncation"), 1,
     "56461ef2342edc00f9bab995690efd4c"},
    {"hmac-md5 rfc2202 6", DIGEST_MD5, true, FILL(0xaa, 80),
     TEXT("Test Using Larger Than Block-Size Key - Hash Key First"), 1,
     "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"},
    {"hmac-md5 rfc2202 7", DIGEST_MD5, true, FILL(0xaa, 80),
     TEXT("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"), 1,
     "6f630fad67cda0ee1fb1f562db3aa53e"},

    {"hmac-sha1 rfc2202 1", DIGEST_SHA1, true, FILL(0x0b, 20), TEXT("Hi There"), 1,
     "b617318655057264e28bc0b6fb378c8ef146be00"},
    {"hmac-sha1 rfc2202 2", DIGEST_SHA1, true, TEXT("Jefe"), TEXT("what do ya want for nothing?"),
     1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
    {"hmac-sha1 rfc2202 3", DIGEST_SHA1, true, FILL(0xaa, 20), FILL(0xdd, 50), 1,
     "125d7342b9ac11cd91a39af48aa17b4f63f175d3"},
    {"hmac-sha1 rfc2202 4", DIGEST_SHA1, true, COUNT_FROM(0x01, 25), FILL(0xcd, 50), 1,
     "4c9007f4026250c6bc8414f9bf50c86c2d7235da"},
    {"hmac-sha1 rfc2202 5", DIGEST_SHA1, true, FILL(0x0c, 20), TEXT("Test With Truncation"), 1,
     "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"},
    {"hmac-sha1 rfc2202 6", DIGEST_SHA1, true, FILL(0xaa, 80),
     TEXT("Test Using Larger Than Block-Size Key - Hash Key First"), 1,
     "aa4ae5e15272d00e95705637ce8a3b55ed402112"},
    {"hmac-sha1 rfc2202 7", DIGEST_SHA1, true, FILL(0xaa, 80),
     TEXT("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"), 1,
     "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"},

    {"hmac-sha256 rfc4231 1", DIGEST_SHA256, true, FILL(0x0b, 20), TEXT("Hi There"), 1,
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {"hmac-sha256 rfc4231 2", DIGEST_SHA256, true, TEXT("Jefe"),
     TEXT("what do ya want for nothing?"), 1,
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {"hmac-sha256 rfc4231 3", DIGEST_SHA256, true, FILL(0xaa, 20), FILL(0xdd, 50), 1,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
    {"hmac-sha256 rfc4231 4", DIGEST_SHA256, true, COUNT_FROM(0x01, 25), FILL(0xcd, 50), 1,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    {"hmac-sha256 rfc4231 5", DIGEST_SHA256, true, FILL(0x0c, 20), TEXT("Test With Truncation"), 1,
     "a3b6167473100ee06e0c796c2955552b"},
    {"hmac-sha256 rfc4231 6", DIGEST_SHA256, true, FILL(0xaa, 131),
     TEXT("Test Using Larger Than Block-Size Key - Hash Key First"), 1,
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {"hmac-sha256 rfc4231 7", DIGEST_SHA256, true, FILL(0xaa, 131),
     TEXT("This is a test using a larger than block-size key and a larger than block-size data. "
          "The key needs to be hashed before being used by the HMAC algorithm."),
     1, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
};

/* The bytes of `spec` into `buf` (room for 1000); returns their length. */
static size_t build(const bytes_t *spec, uint8_t buf[1000])
{
    size_t i;

    if (spec->text != NULL) {
        size_t len = strlen(spec->text);
        memcpy(buf, spec->text, len);
        return len;
    }
    for (i = 0; i < spec->len; i++) {
        buf[i] = spec->start != 0 ? (uint8_t)(spec->start + i) : spec->fill;
    }
    return spec->len;
}

static int failures;

static void check(const char *name, const char *got, const char *expected)
{
    /* Compare only as much as the vector gives (RFC 4231 case 5 is a truncated MAC). */
    bool ok = strncmp(got, expected, strlen(expected)) == 0;
    char line[160];
    size_t n = 0, i;
    const char *parts[4];

    parts[0] = ok ? "ok   " : "FAIL ";
    parts[1] = name;
    parts[2] = ok ? "" : " got ";
    parts[3] = ok ? "" : got;
    for (i = 0; i < 4; i++) {
        size_t len = strlen(parts[i]);
        if (n + len >= sizeof line) {
            len = sizeof line - 1 - n;
        }
        memcpy(line + n, parts[i], len);
        n += len;
    }
    line[n] = '\0';
    report(line);
    if (!ok) {
        failures++;
    }
}

static void run_vector(const vector_t *v)
{
    static uint8_t key[1000], data[1000];
    size_t key_len = build(&v->key, key), data_len = build(&v->data, data), i;
    uint8_t out[DIGEST_MAX_SIZE];
    char hex[2 * DIGEST_MAX_SIZE + 1];

    if (v->hmac) {
        hmac_ctx_t ctx;
        hmac_init(&ctx, v->kind, key, key_len);
        for (i = 0; i < v->repeat; i++) {
            hmac_update(&ctx, data, data_len);
        }
        hmac_final(&ctx, out);
    } else {
        digest_ctx_t ctx;
        digest_init(&ctx, v->kind);
        for (i = 0; i < v->repeat; i++) {
            digest_update(&ctx, data, data_len);
        }
        digest_final(&ctx, out);
    }
    digest_hex(out, digest_size(v->kind), hex);
    check(v->name, hex, v->expected);
}

/* The seed transcript's device (PROTOCOL.md): the sign, and the body AT+HTTPDATA announces. */
static void run_seed(void)
{
    static const aliyun_identity_t seed = {"b0FMK1Ga5cp", "862991419835241",
                                           "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q", NULL, NULL,
                                           NULL, NULL};
    aliyun_auth_params_t form;
    char body[AIRFSM_AUTH_BODY_MAX + 1];
    char length[8];
    size_t len = 0;
    aliyun_status_t status = aliyun_auth_params(&seed, ALIYUN_HMACMD5, NULL, false, &form);

    check("seed sign", status == ALIYUN_OK ? form.sign : "(refused)",
          "1eb96463ad2345b6c261e2f7cc78a7a0");
    status = aliyun_auth_body(&seed, ALIYUN_HMACMD5, NULL, body, sizeof body, &len);
    length[0] = (char)('0' + (int)(len / 100 % 10));
    length[1] = (char)('0' + (int)(len / 10 % 10));
    length[2] = (char)('0' + (int)(len % 10));
    length[3] = '\0';
    check("seed body length", status == ALIYUN_OK ? length : "(refused)", "112");
    check("seed body", status == ALIYUN_OK ? body : "(refused)",
          "productKey=b0FMK1Ga5cp&sign=1eb96463ad2345b6c261e2f7cc78a7a0&clientId=862991419835241"
          "&deviceName=862991419835241");
}

/* Issue 13's signs (hmacsha256), the expected values stated with Python's hmac alone
 * (tests/test_c_aliyun.py checks the same for every method): the register sign over
 * deviceName...productKey...random... with the ProductSecret, the direct MQTT sign without and
 * with a timestamp. */
static void run_issue13(void)
{
    static const aliyun_identity_t registering = {"a1B2c3D4e5F", "sensor-0001", "", NULL, NULL,
                                                  "pRoDuCtSeCrEt0123456789abcdefABCD", NULL};
    static const aliyun_identity_t device = {"a1B2c3D4e5F", "sensor-0001",
                                             "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q", NULL, NULL,
                                             NULL, NULL};
    static const uint64_t timestamp = UINT64_C(1700000000123);
    static char body[ALIYUN_REGISTER_BODY_MAX + 1];
    static aliyun_mqtt_sign_t signed_triple;
    char sign[ALIYUN_SIGN_HEX_SIZE];
    size_t len = 0;
    aliyun_status_t status = aliyun_register_form(&registering, UINT64_C(8446744073709551615),
                                                  ALIYUN_HMACSHA256, body, sizeof body, &len,
                                                  sign);

    check("register sign", status == ALIYUN_OK ? sign : "(refused)",
          "73d1ef92cabe3fce974ab43e0294d99c11f5fbd050d61a6676f8171614ed7f1d");
    check("register body", status == ALIYUN_OK ? body : "(refused)",
          "productKey=a1B2c3D4e5F&deviceName=sensor-0001&random=8446744073709551615"
          "&sign=73d1ef92cabe3fce974ab43e0294d99c11f5fbd050d61a6676f8171614ed7f1d"
          "&signMethod=hmacsha256");
    status = aliyun_mqtt_sign(&device, ALIYUN_HMACSHA256, NULL, &signed_triple);
    check("direct sign", status == ALIYUN_OK ? signed_triple.password : "(refused)",
          "17f881cd35462d7c5244d51f8a1bd046b3a56b544ebe7df38d5e81c272159cb6");
    check("direct sign client id", status == ALIYUN_OK ? signed_triple.client_id : "(refused)",
          "sensor-0001|securemode=2,signmethod=hmacsha256|");
    status = aliyun_mqtt_sign(&device, ALIYUN_HMACSHA256, &timestamp, &signed_triple);
    check("direct sign, timestamped", status == ALIYUN_OK ? signed_triple.password : "(refused)",
          "35f5ac15ad14a8ef46dc7b18f49e1c988192e8435ae552f2f6077fd2e664ed0c");
    check("direct sign username", status == ALIYUN_OK ? signed_triple.username : "(refused)",
          "sensor-0001&a1B2c3D4e5F");
}

int main(void)
{
    size_t i;

    setup();
    for (i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        run_vector(&vectors[i]);
    }
    run_seed();
    run_issue13();
    report(failures == 0 ? "all vectors pass" : "some vectors FAIL");
    finish(failures);
    return failures > 0 ? 1 : 0;
}
