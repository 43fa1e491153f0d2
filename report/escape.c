/*
 * escape.c - untrusted text into HTML, Markdown, YAML, code blocks and
 * gnuplot labels. All escapers share one UTF-8 walk: invalid sequences
 * become U+FFFD, C0 controls and DEL become their visible pictures
 * (U+2400..U+2421), C1 controls and bidirectional overrides U+FFFD, so no
 * output can hide or reorder text.
 */
#include <string.h>

#include "mergescope/report.h"
#include "mergescope/banned.h"

#define CP_INVALID 0xFFFDu

/* ==== UTF-8 ==== */

/* Decode one code point at s (NUL-terminated); *adv gets its length. An
 * invalid or overlong sequence (ms_utf8_seq's rule) decodes as CP_INVALID of
 * length 1. */
static unsigned next_cp(const unsigned char *s, size_t *adv)
{
    static const unsigned lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    size_t n = ms_utf8_seq(s, strnlen((const char *)s, 4));
    *adv = 1;
    if (!n)
        return CP_INVALID;
    unsigned cp = s[0] & lead_mask[n];
    for (size_t i = 1; i < n; i++)
        cp = (cp << 6) | (s[i] & 0x3F);
    *adv = n;
    return cp;
}

static bool put_cp(ms_sb *sb, unsigned cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp; n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    return ms_sb_addn(sb, b, n);
}

/* Code points that must not appear as themselves: bidi controls, C1. */
static bool cp_hidden(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E || cp == 0x200F ||
           cp == 0x061C;
}

/* The visible stand-in for a control or hidden code point, else cp. */
static unsigned cp_visible(unsigned cp)
{
    if (cp < 0x20)
        return 0x2400 + cp;
    if (cp == 0x7F)
        return 0x2421;
    if (cp_hidden(cp))
        return CP_INVALID;
    return cp;
}

/* ==== HTML ==== */

bool ms_esc_html(ms_sb *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    bool ok = true;
    while (*p && ok) {
        size_t adv;
        unsigned cp = cp_visible(next_cp(p, &adv));
        p += adv;
        switch (cp) {
        case '&': ok = ms_sb_add(sb, "&amp;"); break;
        case '<': ok = ms_sb_add(sb, "&lt;"); break;
        case '>': ok = ms_sb_add(sb, "&gt;"); break;
        case '"': ok = ms_sb_add(sb, "&quot;"); break;
        case '\'': ok = ms_sb_add(sb, "&#39;"); break;
        default: ok = put_cp(sb, cp); break;
        }
    }
    return ok;
}

/* ==== Markdown ==== */

/* ASCII characters with a meaning in CommonMark/GFM inline or block
 * syntax, or in the HTML it may pass through. */
static bool md_special(unsigned cp)
{
    return cp < 0x80 && strchr("\\`*_{}[]<>()#+-!|~&$=", (int)cp) != NULL;
}

bool ms_esc_md(ms_sb *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    bool ok = true, digits_only = true;
    while (*p && ok) {
        size_t adv;
        unsigned cp = cp_visible(next_cp(p, &adv));
        p += adv;
        /* "12." at the start of a list item would start an ordered list */
        bool list_dot = cp == '.' && digits_only;
        if (md_special(cp) || list_dot)
            ok = ms_sb_addc(sb, '\\');
        digits_only = digits_only && cp >= '0' && cp <= '9';
        ok = ok && put_cp(sb, cp);
    }
    return ok;
}

/* ==== YAML ==== */

bool ms_esc_yaml(ms_sb *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    bool ok = ms_sb_addc(sb, '"');
    while (*p && ok) {
        size_t adv;
        unsigned cp = next_cp(p, &adv);
        p += adv;
        if (cp == '"' || cp == '\\')
            ok = ms_sb_addc(sb, '\\') && ms_sb_addc(sb, (char)cp);
        else if (cp < 0x20 || cp == 0x7F)
            ok = ms_sb_addf(sb, "\\x%02X", cp);
        else if (cp_hidden(cp) || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF)
            ok = ms_sb_addf(sb, "\\u%04X", cp);
        else
            ok = put_cp(sb, cp);
    }
    return ok && ms_sb_addc(sb, '"');
}

/* ==== code blocks ==== */

size_t ms_esc_code_block(ms_sb *sb, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t run = 0, longest = 0;
    bool ok = true;
    while (*p && ok) {
        size_t adv;
        unsigned cp = next_cp(p, &adv);
        p += adv;
        run = cp == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
        if (cp != '\n' && cp != '\t')
            cp = cp_visible(cp);
        ok = put_cp(sb, cp);
    }
    if (!ok)
        return 0;
    return longest >= 3 ? longest + 1 : 3;
}

/* ==== gnuplot ==== */

void ms_esc_gnuplot(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    bool gap = false;
    if (!cap)
        return;
    for (const char *p = s ? s : ""; *p && n + 1 < cap; p++) {
        char c = *p;
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' ||
                    c == '-';
        if (keep) {
            dst[n++] = c;
            gap = false;
        } else if (!gap) {
            dst[n++] = '_';
            gap = true;
        }
    }
    if (n == 0)
        dst[n++] = '_';
    dst[n] = '\0';
}
