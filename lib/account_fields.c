/* account_fields: the rules of the account endpoints' input fields (declared in account.h). Pure: no I/O,
 * nothing answered; the caller turns a -1 into 400 validation_error with the message left in err. */
#include "account.h"

#include <stdio.h>
#include <string.h>

#include "password.h"
#include "util.h"

int account_printable(const char *s)
{
    size_t left = strlen(s);
    while (left) {
        unsigned cp;
        size_t n = utf8_decode(s, left, &cp);
        if (n == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
            (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
            return 0;
        s += n;
        left -= n;
    }
    return 1;
}

int account_valid_email(const char *s)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || strchr(at + 1, '@') || !account_printable(s) || strchr(s, ' '))
        return 0;
    int labels = 0;
    for (const char *p = at + 1;; p++) {
        size_t n = strcspn(p, ".");
        if (n == 0)
            return 0; /* empty label: "a@.b", "a@b..c", "a@b." */
        labels++;
        p += n;
        if (!*p)
            break;
    }
    return labels >= 2;
}

int account_name_field(json_object *body, char out[ACCOUNT_NAME_BUF], char *err)
{
    int rc = jsonv_string(body, "name", 0, 1, 1, ACCOUNT_NAME_MAX, out, ACCOUNT_NAME_BUF, err);
    if (rc == 0 && !account_printable(out)) {
        snprintf(err, ACCOUNT_ERRLEN, "name must not contain control or text-direction characters.");
        return -1;
    }
    return rc;
}

int account_email_field(json_object *body, char out[ACCOUNT_EMAIL_BUF], char *err)
{
    int rc = jsonv_string(body, "email", 0, 1, ACCOUNT_EMAIL_MIN, ACCOUNT_EMAIL_MAX, out, ACCOUNT_EMAIL_BUF, err);
    if (rc == 0 && !account_valid_email(out)) {
        snprintf(err, ACCOUNT_ERRLEN, "email must be a valid email address.");
        return -1;
    }
    return rc;
}

int account_password_field(json_object *body, const char *field, int required, const char **pw, size_t *len, char *err)
{
    json_object *v = NULL;

    *pw = NULL;
    *len = 0;
    if (!json_object_object_get_ex(body, field, &v) || !v) {
        if (!required)
            return 1;
        snprintf(err, ACCOUNT_ERRLEN, "%s is required.", field);
        return -1;
    }
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, ACCOUNT_ERRLEN, "%s must be a string.", field);
        return -1;
    }
    *pw = json_object_get_string(v);
    *len = (size_t)json_object_get_string_len(v);
    return 0;
}

int account_new_password_field(json_object *body, const char *field, int required, const char **pw, size_t *len,
                               char *err)
{
    char why[JSONV_ERRLEN];
    int rc = account_password_field(body, field, required, pw, len, err);

    if (rc == 0 && password_policy(*pw, *len, why, sizeof why) != 0) {
        /* the policy says "password must ...": the field's own name in its place, as the other rules read */
        const char *rest = strncmp(why, "password ", 9) == 0 ? why + 8 : why;
        snprintf(err, ACCOUNT_ERRLEN, "%s%s%s.", field, rest == why ? ": " : "", rest);
        *pw = NULL;
        return -1;
    }
    return rc;
}

int account_otp_field(json_object *body, char code[OTP_DIGITS + 1], char *err)
{
    if (jsonv_string(body, "otp", 1, 1, 1, 16, code, OTP_DIGITS + 1, err) != 0) {
        if (!strstr(err, "required"))
            snprintf(err, ACCOUNT_ERRLEN, "otp must be a 6-digit code.");
        return -1;
    }
    if (strlen(code) != OTP_DIGITS || strspn(code, "0123456789") != OTP_DIGITS) {
        snprintf(err, ACCOUNT_ERRLEN, "otp must be a 6-digit code.");
        return -1;
    }
    return 0;
}
