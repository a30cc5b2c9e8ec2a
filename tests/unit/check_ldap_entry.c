/*
 * check_ldap_entry.c - the ldap store's filter building (RFC 4515
 * escaping), filter template checks, GeneralizedTime parsing, DN
 * escaping (RFC 4514) and record -> modification mapping.  No server:
 * tests/integration/test_ldap.sh covers the plugin against slapd.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ldapstore.h"

static const char *TMPL = "(&(objectClass=apiKey)(apiKeyHash={hash}))";

static char *filt(const char *v, size_t n)
{
    char *f = kg__ldap_filter(TMPL, v, n);
    ck_assert_ptr_nonnull(f);
    return f;
}

START_TEST(test_filter_plain)
{
    char *f = filt("ab01", 4);
    ck_assert_str_eq(f, "(&(objectClass=apiKey)(apiKeyHash=ab01))");
    free(f);
}
END_TEST

START_TEST(test_filter_star)
{
    char *f = filt("*", 1);
    ck_assert_str_eq(f, "(&(objectClass=apiKey)(apiKeyHash=\\2A))");
    free(f);
}
END_TEST

START_TEST(test_filter_injection)
{
    const char *v = "*)(objectClass=*";
    char *f = filt(v, strlen(v));
    /* Still one assertion on apiKeyHash, its value every byte escaped
     * that could end it. */
    ck_assert_str_eq(f, "(&(objectClass=apiKey)(apiKeyHash=\\2A\\29\\28objectClass=\\2A))");
    ck_assert_ptr_null(strstr(f, ")(objectClass=*"));
    free(f);
}
END_TEST

START_TEST(test_filter_nul_backslash)
{
    char *f = filt("a\0b\\c", 5);
    ck_assert_str_eq(f, "(&(objectClass=apiKey)(apiKeyHash=a\\00b\\5Cc))");
    free(f);
}
END_TEST

START_TEST(test_filter_check)
{
    char err[256];
    ck_assert_int_eq(kg__ldap_filter_check(TMPL, err, sizeof(err)), 0);
    ck_assert_int_eq(kg__ldap_filter_check("(apiKeyHash={hash})", err, sizeof(err)), 0);
    ck_assert_int_ne(kg__ldap_filter_check("(apiKeyHash=x)", err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "{hash}"));
    ck_assert_int_ne(kg__ldap_filter_check("(|(a={hash})(b={hash}))", err, sizeof(err)), 0);
    ck_assert_int_ne(kg__ldap_filter_check("apiKeyHash={hash}", err, sizeof(err)), 0);
    ck_assert_int_ne(kg__ldap_filter_check("(&(a={hash})", err, sizeof(err)), 0);
    ck_assert_int_ne(kg__ldap_filter_check("(a={hash}))(b=c)", err, sizeof(err)), 0);
    ck_assert_int_ne(kg__ldap_filter_check("(a={hash})(b=c)", err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_time)
{
    int64_t t;
    char buf[20];
    ck_assert_int_eq(kg__ldap_parse_time("20261231235959Z", &t), 0);
    ck_assert_int_eq(t, 1798761599);
    ck_assert_int_eq(kg__ldap_parse_time("20261231235959.123Z", &t), 0);
    ck_assert_int_eq(t, 1798761599);
    ck_assert_int_eq(kg__ldap_parse_time("2027010101+0100", &t), 0);
    ck_assert_int_eq(t, 1798761600);
    ck_assert_int_eq(kg__ldap_parse_time("202612312359Z", &t), 0);
    ck_assert_int_eq(t, 1798761540);
    /* A local time (no zone) is ambiguous, and junk is junk. */
    ck_assert_int_ne(kg__ldap_parse_time("20261231235959", &t), 0);
    ck_assert_int_ne(kg__ldap_parse_time("2026-12-31", &t), 0);
    ck_assert_int_ne(kg__ldap_parse_time("20261331000000Z", &t), 0);
    ck_assert_int_ne(kg__ldap_parse_time("20261231235959Zjunk", &t), 0);
    kg__ldap_format_time(1798761599, buf);
    ck_assert_str_eq(buf, "20261231235959Z");
}
END_TEST

static kg__ldap *store(void)
{
    static kg__ldap l;
    size_t i;
    memset(&l, 0, sizeof(l));
    for (i = 0; i < KG__LA_COUNT; i++)
        l.attrs[i] = kg__ldap_attr_default[i];
    l.rdn_attr = (char *)l.attrs[KG__LA_ID];
    l.base_dn = (char *)"ou=keys,dc=example,dc=com";
    l.object_class = (char *)"apiKey";
    return &l;
}

START_TEST(test_dn)
{
    char *dn = kg__ldap_new_dn(store(), "k_0123");
    ck_assert_str_eq(dn, "apiKeyId=k_0123,ou=keys,dc=example,dc=com");
    free(dn);
    dn = kg__ldap_new_dn(store(), "#a,b+c=d ");
    ck_assert_str_eq(dn, "apiKeyId=\\#a\\,b\\+c\\=d\\ ,ou=keys,dc=example,dc=com");
    free(dn);
}
END_TEST

static LDAPMod *find_mod(LDAPMod **m, const char *type)
{
    for (; *m; m++)
        if (strcmp((*m)->mod_type, type) == 0)
            return *m;
    return NULL;
}

START_TEST(test_mods)
{
    kg_record *r = kg_record_new();
    unsigned char h[KG_HASH_LEN];
    LDAPMod **m, *x;

    memset(h, 0xab, sizeof(h));
    kg_record_set_id(r, "k_1");
    kg_record_set_plan(r, "pro");
    kg_record_set_hash(r, h);
    kg_record_add_permission(r, "scrape:read");
    kg_record_add_permission(r, "jobs:write");
    kg_record_add_cidr(r, "10.0.0.0/8");
    kg_record_add_limit(r, "hourly", 500, 3600, 50);
    kg_record_set_expires(r, 1798761599);

    m = kg__ldap_record_mods(store(), r, 1);
    ck_assert_ptr_nonnull(m);
    x = find_mod(m, "objectClass");
    ck_assert_ptr_nonnull(x);
    ck_assert_str_eq(x->mod_values[0], "apiKey");
    x = find_mod(m, "apiKeyPermission");
    ck_assert_str_eq(x->mod_values[0], "scrape:read");
    ck_assert_str_eq(x->mod_values[1], "jobs:write");
    ck_assert_ptr_null(x->mod_values[2]);
    ck_assert_str_eq(find_mod(m, "apiKeyLimit")->mod_values[0], "hourly=500/3600:50");
    ck_assert_str_eq(find_mod(m, "apiKeyExpires")->mod_values[0], "20261231235959Z");
    ck_assert_str_eq(find_mod(m, "apiKeyHash")->mod_values[0],
                     "abababababababababababababababababababababababababababababababab");
    ck_assert_str_eq(find_mod(m, "apiKeyStatus")->mod_values[0], "active");
    /* An add leaves out what the record does not have. */
    ck_assert_ptr_null(find_mod(m, "apiKeyName"));
    kg__ldap_mods_free(m);

    /* A replace names every mapped attribute but the id, so that what
     * the record lost is deleted from the entry. */
    kg_record_clear_cidrs(r);
    m = kg__ldap_record_mods(store(), r, 0);
    ck_assert_ptr_null(find_mod(m, "apiKeyId"));
    ck_assert_ptr_null(find_mod(m, "objectClass"));
    x = find_mod(m, "apiKeyAllowedCidr");
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(x->mod_op, LDAP_MOD_REPLACE);
    ck_assert_ptr_null(x->mod_values);
    kg__ldap_mods_free(m);
    kg_record_unref(r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ldap_entry");
    TCase *t = tcase_create("filter");
    tcase_add_test(t, test_filter_plain);
    tcase_add_test(t, test_filter_star);
    tcase_add_test(t, test_filter_injection);
    tcase_add_test(t, test_filter_nul_backslash);
    tcase_add_test(t, test_filter_check);
    suite_add_tcase(s, t);
    t = tcase_create("mapping");
    tcase_add_test(t, test_time);
    tcase_add_test(t, test_dn);
    tcase_add_test(t, test_mods);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
