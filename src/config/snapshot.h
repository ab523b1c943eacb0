/* Publishing and lifetime of compiled snapshots. The control thread compiles a snapshot
 * (config/compile.c) and publishes it; workers pick up the current one between events. */
#ifndef PT_CONFIG_SNAPSHOT_H
#define PT_CONFIG_SNAPSHOT_H

#include "config/snapshot-t.h"

/* pt_snapshot_current: the snapshot in force, as the control thread sees it (admin, diag);
 * NULL until the first configuration is live. Control thread only: workers receive snapshots
 * through their mailboxes (pt_workers_publish). */
struct pt_snapshot *pt_snapshot_current(void);

/* pt_snapshot_set_current: records <s> (taking over the caller's reference) as current and
 * releases the previous one. Control thread only. */
void pt_snapshot_set_current(struct pt_snapshot *s);

/* pt_snapshot_ref / pt_snapshot_release: reference counting; the last release frees it,
 * from whichever thread it happens on. */
void pt_snapshot_ref(struct pt_snapshot *s);
void pt_snapshot_release(struct pt_snapshot *s);

/* pt_snapshot_find_listener: the listener of <s> on <port>, or NULL. */
struct pt_listener *pt_snapshot_find_listener(struct pt_snapshot *s, int port);

#endif
