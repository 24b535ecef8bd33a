/* The embedded schema migrations, generated from the src/store/migrations/NNNN_name.sql files
 * by cmake/embed_sql.cmake. Ordered by version, versions strictly rising. */
#ifndef BATON_STORE_MIGRATIONS_H
#define BATON_STORE_MIGRATIONS_H

typedef struct bt_migration {
    int version;
    const char *name;
    const char *sql;
} bt_migration_t;

extern const bt_migration_t bt_migrations[];
extern const int bt_migrations_count;

#endif
