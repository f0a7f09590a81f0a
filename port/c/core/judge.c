/* judge.c: what an answer means for the step that asked. Python twin: airfsm/core/judge.py;
 * every function names its twin. Answers are read where the AT channel left them: info lines
 * are spans of the response's arena, numbers and fields are read in place (textparse). */
#include <string.h>

#include "airfsm_internal.h"
#include "judge.h"
#include "textparse.h"

#define QUOTE 0x22u
#define SP 0x20u

static const judge_t PASSED = { AIRFSM_OUTCOME_PASS, AIRFSM_REASON_NONE, 0 };

/* Twin: a Judgement tuple. */
static judge_t judged(airfsm_outcome_t outcome, airfsm_reason_t reason, int32_t detail)
{
    judge_t j;
    j.outcome = outcome;
    j.reason = reason;
    j.detail = detail;
    return j;
}

/* Twin: bytes.find(token, start, end) >= 0 over the arena. */
static int32_t judge_find(const uint8_t *buf, size_t start, size_t end, const char *token,
                          size_t len)
{
    size_t i;

    if (end < start || end - start < len) {
        return -1;
    }
    for (i = start; i + len <= end; i++) {
        if (memcmp(buf + i, token, len) == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

/* Twin: AtResponse.find_line(ANSWERS[check].prefix). */
static int judge_find_line(const at_response_t *resp, airfsm_check_t check)
{
    const airfsm_text_t *prefix = &airfsm_check_answers[check].prefix;
    return at_response_find(resp, (const uint8_t *)prefix->text, prefix->len);
}

/* Twin: judge.answer_reason(). */
airfsm_reason_t judge_answer_reason(const at_response_t *resp, airfsm_reason_t unanswered,
                                    airfsm_reason_t error, airfsm_reason_t cme_error,
                                    int32_t *detail)
{
    if (resp->result == AIRFSM_AT_RESULT_TIMEOUT) {
        *detail = 0;
        return unanswered;
    }
    *detail = resp->cme_error;
    return resp->result == AIRFSM_AT_RESULT_CME_ERROR ? cme_error : error;
}

/* Twin: judge._answer_uint(): the check's field of the first info line with its prefix. */
static int32_t judge_answer_uint(const at_response_t *resp, airfsm_check_t check)
{
    int i = judge_find_line(resp, check);
    if (i < 0) {
        return -1;
    }
    return textparse_field_uint(resp->arena, (size_t)airfsm_check_answers[check].field,
                                resp->line_start[i], at_response_line_end(resp, (size_t)i));
}

/* Twin: judge.signal_of(). */
int32_t judge_signal(const at_response_t *resp)
{
    int32_t value = judge_answer_uint(resp, AIRFSM_CHECK_SIGNAL);
    return value >= 0 ? value : 99;
}

/* Twin: judge.mqtt_status(). */
int32_t judge_mqtt_status(const at_response_t *resp)
{
    return judge_answer_uint(resp, AIRFSM_CHECK_MQTT_STATUS);
}

/* Twin: judge.firmware_version(). */
int32_t judge_firmware_version(const uint8_t *buf, size_t start, size_t end)
{
    const airfsm_text_t *token = &airfsm_check_answers[AIRFSM_CHECK_VERSION].token;
    int32_t at = judge_find(buf, start, end, token->text, token->len);

    while (at >= 0) {
        size_t digits = (size_t)at + token->len, stop = digits;
        int32_t version;
        while (stop < end && textparse_is_digit(buf[stop])) {
            stop++;
        }
        version = textparse_uint(buf, digits, stop); /* -1 for no digits, or too many */
        if (version >= 0) {
            return version;
        }
        at = judge_find(buf, (size_t)at + token->len, end, token->text, token->len);
    }
    return -1;
}

/* Twin: judge.info_text(). */
void judge_info_text(const uint8_t *buf, int index, size_t start, size_t end, char *out)
{
    size_t first = 0, stop = 0, k;

    out[0] = '\0';
    if (index < 0) {
        return;
    }
    textparse_field(buf, (size_t)index, start, end, &first, &stop);
    while (first < stop && buf[first] == QUOTE) {
        first++;
    }
    while (stop > first && buf[stop - 1] == QUOTE) {
        stop--;
    }
    if (stop - first > AIRFSM_INFO_TEXT_MAX) {
        stop = first + AIRFSM_INFO_TEXT_MAX;
    }
    for (k = first; k < stop; k++) {
        if (buf[k] < SP || buf[k] >= 0x7Fu) {
            return;
        }
    }
    memcpy(out, buf + first, stop - first);
    out[stop - first] = '\0';
}

/* Twin: judge._alphanumeric(): an IMEI or ICCID (not empty: str.isalnum of "" is False). */
static bool judge_alphanumeric(const char *text)
{
    size_t i;
    if (text[0] == '\0') {
        return false;
    }
    for (i = 0; text[i] != '\0'; i++) {
        char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return false;
        }
    }
    return true;
}

/* Twin: judge._learn(): what an informational answer says, into the controller. */
static void judge_learn(airfsm_t *ctl, airfsm_check_t check, const at_response_t *resp)
{
    const airfsm_check_answer_t *answer = &airfsm_check_answers[check];
    int i = judge_find_line(resp, check);
    size_t start = i < 0 ? 0 : resp->line_start[i];
    size_t end = i < 0 ? 0 : at_response_line_end(resp, (size_t)i);
    char text[AIRFSM_INFO_TEXT_MAX + 1];

    if (check == AIRFSM_CHECK_REGISTRATION) {
        ctl->registration =
            i < 0 ? -1 : textparse_field_uint(resp->arena, (size_t)answer->field, start, end);
        return;
    }
    text[0] = '\0';
    if (i >= 0) {
        judge_info_text(resp->arena, answer->text_field, start, end, text);
    }
    if (check == AIRFSM_CHECK_IMEI) {
        memcpy(ctl->imei, text, sizeof text);
        if (!judge_alphanumeric(ctl->imei)) {
            ctl->imei[0] = '\0';
        }
    } else if (check == AIRFSM_CHECK_ICCID) {
        memcpy(ctl->iccid, text, sizeof text);
        if (!judge_alphanumeric(ctl->iccid)) {
            ctl->iccid[0] = '\0';
        }
    } else { /* OPERATOR: `+COPS: 0` alone says the module is on no network now */
        memcpy(ctl->operator_name, text, sizeof text);
        ctl->access_technology =
            i < 0 ? -1 : textparse_field_uint(resp->arena, (size_t)answer->field, start, end);
    }
}

/* Twin: judge._judge_version(). */
static judge_t judge_version(airfsm_t *ctl, const at_response_t *resp)
{
    const uint8_t *arena = resp->arena;
    size_t i;

    for (i = 0; i < resp->line_count; i++) {
        size_t start = resp->line_start[i], end = at_response_line_end(resp, i), n;
        int32_t version = judge_firmware_version(arena, start, end);
        if (version < 0) {
            continue;
        }
        /* What status shows: the line without `+CGMR:` and the quotes around it. */
        if (end - start >= 6 && memcmp(arena + start, "+CGMR:", 6) == 0) {
            start += 6;
            while (start < end && (arena[start] == SP || arena[start] == QUOTE)) {
                start++;
            }
            while (end > start && (arena[end - 1] == SP || arena[end - 1] == QUOTE)) {
                end--;
            }
        }
        n = end - start;
        if (n > AIRFSM_FIRMWARE_TEXT_MAX) {
            n = AIRFSM_FIRMWARE_TEXT_MAX;
        }
        memcpy(ctl->firmware, arena + start, n);
        ctl->firmware[n] = '\0';
        ctl->firmware_version = version;
        if (version < (int32_t)AIRFSM_MIN_FIRMWARE) {
            airfsm_set_failure(ctl, AIRFSM_FAIL_REASON_FIRMWARE, AIRFSM_REASON_FIRMWARE_TOO_OLD,
                               version);
            return judged(AIRFSM_OUTCOME_FATAL, AIRFSM_REASON_FIRMWARE_TOO_OLD, version);
        }
        return PASSED;
    }
    return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_NO_VERSION, 0);
}

/* Twin: judge._judge_bearer(). */
static judge_t judge_bearer(airfsm_t *ctl, const at_response_t *resp)
{
    const airfsm_check_answer_t *answer = &airfsm_check_answers[AIRFSM_CHECK_BEARER_QUERY];
    int i = judge_find_line(resp, AIRFSM_CHECK_BEARER_QUERY);
    size_t start, end, ip_start = 0, ip_end = 0, n;
    int32_t status;

    if (i < 0) {
        return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_BEARER_STATUS, -1);
    }
    start = resp->line_start[i];
    end = at_response_line_end(resp, (size_t)i);
    status = textparse_field_uint(resp->arena, (size_t)answer->field, start, end);
    if (status == answer->pass_value) {
        textparse_field(resp->arena, (size_t)answer->text_field, start, end, &ip_start, &ip_end);
        while (ip_start < ip_end && resp->arena[ip_start] == QUOTE) {
            ip_start++;
        }
        while (ip_end > ip_start && resp->arena[ip_end - 1] == QUOTE) {
            ip_end--;
        }
        n = ip_end - ip_start;
        if (n > AIRFSM_IP_TEXT_MAX) {
            n = AIRFSM_IP_TEXT_MAX;
        }
        memcpy(ctl->ip, resp->arena + ip_start, n);
        ctl->ip[n] = '\0';
        return PASSED;
    }
    if (status == 0) {
        return judged(AIRFSM_OUTCOME_NOT_YET, AIRFSM_REASON_BEARER_CONNECTING, 0);
    }
    return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_BEARER_STATUS, status);
}

/* Twin: judge._judge_auth(). */
static judge_t judge_auth(airfsm_t *ctl, const at_response_t *resp)
{
    aliyun_auth_reply_t *reply = &ctl->reply.auth;
    bool ok = aliyun_parse_auth_reply(resp->arena + resp->data_start, resp->data_length, reply);

    ctl->auth_code = reply->code;
    if (reply->iot_token[0] != '\0') {
        airfsm_emit_secret(ctl, reply->iot_token, false);
    }
    if (!ok) {
        /* A reply we could not parse is a transport problem, a code is the server's verdict. */
        if (reply->code == ALIYUN_AUTH_UNPARSEABLE || reply->code == ALIYUN_AUTH_OK) {
            return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_AUTH_REPLY_UNUSABLE, reply->code);
        }
        return judged(AIRFSM_OUTCOME_REJECTED, AIRFSM_REASON_AUTH_REJECTED, reply->code);
    }
    airfsm_take_credentials(ctl);
    return PASSED;
}

/* Twin: judge._judge_register(): the /auth/register/device reply: the DeviceSecret (a secret
 * before anything else is done with it), or the server's refusal. */
static judge_t judge_register(airfsm_t *ctl, const at_response_t *resp)
{
    aliyun_register_reply_t *reply = &ctl->reply.reg;
    bool ok = aliyun_parse_register_reply(resp->arena + resp->data_start, resp->data_length,
                                          reply);

    ctl->auth_code = reply->code;
    if (reply->device_secret[0] != '\0') {
        airfsm_emit_secret(ctl, reply->device_secret, true);
    }
    if (!ok) {
        if (reply->code == ALIYUN_AUTH_UNPARSEABLE || reply->code == ALIYUN_AUTH_OK) {
            return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_REGISTER_REPLY_UNUSABLE, reply->code);
        }
        return judged(AIRFSM_OUTCOME_REJECTED, AIRFSM_REASON_REGISTER_REJECTED, reply->code);
    }
    airfsm_take_device_secret(ctl);
    return PASSED;
}

/* Twin: judge.judge_answer(). */
judge_t judge_answer(airfsm_t *ctl, const airfsm_step_t *step, const at_response_t *resp)
{
    airfsm_check_t check = step->check;
    airfsm_reason_t reason;
    int32_t detail;
    int i;

    if (check == AIRFSM_CHECK_ANY) {
        return PASSED; /* clean-up: whatever came, even nothing */
    }
    if (check == AIRFSM_CHECK_IMEI || check == AIRFSM_CHECK_ICCID ||
        check == AIRFSM_CHECK_OPERATOR || check == AIRFSM_CHECK_REGISTRATION) {
        if (resp->result == AIRFSM_AT_RESULT_OK) {
            judge_learn(ctl, check, resp);
        }
        return PASSED;
    }
    if (resp->result == AIRFSM_AT_RESULT_TIMEOUT) {
        return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_NO_ANSWER, 0);
    }
    if (check == AIRFSM_CHECK_BEARER_OPEN) {
        /* ERROR / +CME ERROR: 3 usually means "already open": the query step decides. */
        return PASSED;
    }
    if (resp->result != AIRFSM_AT_RESULT_OK) {
        if (check == AIRFSM_CHECK_SIM_READY && resp->result == AIRFSM_AT_RESULT_CME_ERROR) {
            return judged(AIRFSM_OUTCOME_NOT_YET, AIRFSM_REASON_SIM_NOT_READY, resp->cme_error);
        }
        reason = judge_answer_reason(resp, AIRFSM_REASON_NO_ANSWER, AIRFSM_REASON_ERROR,
                                     AIRFSM_REASON_CME_ERROR, &detail);
        return judged(AIRFSM_OUTCOME_FAIL, reason, detail);
    }
    switch (check) {
    case AIRFSM_CHECK_OK:
        return PASSED;
    case AIRFSM_CHECK_VERSION:
        return judge_version(ctl, resp);
    case AIRFSM_CHECK_SIM_READY: {
        const airfsm_text_t *token = &airfsm_check_answers[check].token;
        i = judge_find_line(resp, check);
        if (i >= 0 && judge_find(resp->arena, resp->line_start[i],
                                 at_response_line_end(resp, (size_t)i), token->text,
                                 token->len) >= 0) {
            return PASSED;
        }
        return judged(AIRFSM_OUTCOME_NOT_YET, AIRFSM_REASON_SIM_NOT_READY, -1);
    }
    case AIRFSM_CHECK_SIGNAL:
        airfsm_take_signal(ctl, judge_signal(resp));
        return PASSED;
    case AIRFSM_CHECK_ATTACHED:
        if (judge_answer_uint(resp, check) == airfsm_check_answers[check].pass_value) {
            return PASSED;
        }
        return judged(AIRFSM_OUTCOME_NOT_YET, AIRFSM_REASON_NOT_ATTACHED, 0);
    case AIRFSM_CHECK_BEARER_QUERY:
        return judge_bearer(ctl, resp);
    case AIRFSM_CHECK_HTTP_STATUS:
        return PASSED; /* the status comes in the +HTTPACTION URC */
    case AIRFSM_CHECK_AUTH_REPLY:
        if (resp->truncated) {
            return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_AUTH_REPLY_TRUNCATED, 0);
        }
        return judge_auth(ctl, resp);
    case AIRFSM_CHECK_REGISTER_REPLY:
        if (resp->truncated) {
            return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_AUTH_REPLY_TRUNCATED, 0);
        }
        return judge_register(ctl, resp);
    case AIRFSM_CHECK_MQTT_STATUS:
        detail = judge_mqtt_status(resp);
        if (detail == airfsm_check_answers[check].pass_value) {
            return PASSED;
        }
        return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_MQTT_STATUS, detail);
    default:
        return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_UNKNOWN_CHECK, (int32_t)check);
    }
}

/* Twin: `urc in ids` of a step's URC rows. */
static bool judge_urc_in(const uint8_t *ids, uint8_t n, int urc)
{
    uint8_t k;
    for (k = 0; k < n; k++) {
        if ((int)ids[k] == urc) {
            return true;
        }
    }
    return false;
}

/* Twin: judge.judge_urc(). */
judge_t judge_urc(airfsm_t *ctl, const airfsm_step_t *step, int urc, const uint8_t *line,
                  size_t len)
{
    if (judge_urc_in(step->urc_fail, step->n_urc_fail, urc)) {
        /* A bare final code after the OK is the server's no (AT+MCONNECT: the CONNECT was
         * refused): the credentials' fault, where the step says what fetches new ones. */
        bool refused = airfsm_urcs[urc].kind == AIRFSM_URC_KIND_FINAL &&
                       step->on_fail == AIRFSM_TRIGGER_TOKEN_REJECTED;
        return judged(refused ? AIRFSM_OUTCOME_REJECTED : AIRFSM_OUTCOME_FAIL,
                      AIRFSM_REASON_FAILING_URC, urc);
    }
    if (step->check == AIRFSM_CHECK_HTTP_STATUS) {
        /* +HTTPACTION: 1,<status>,<len>   (also without the space) */
        const airfsm_check_answer_t *answer = &airfsm_check_answers[AIRFSM_CHECK_HTTP_STATUS];
        int32_t status = textparse_field_uint(line, (size_t)answer->field, 0, len);
        ctl->http_status = status > 0 ? status : 0;
        if (ctl->http_status == answer->pass_value) {
            return PASSED;
        }
        return judged(AIRFSM_OUTCOME_FAIL, AIRFSM_REASON_HTTP_STATUS, ctl->http_status);
    }
    return PASSED;
}
