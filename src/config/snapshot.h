/* Lifetime of compiled snapshots (config/snapshot.c). config/compile.c builds them; the control
 * layer applies and publishes them (control/reload.c); workers pick up the one published
 * between events and release it when their last request on it ends. */
#ifndef PT_CONFIG_SNAPSHOT_H
#define PT_CONFIG_SNAPSHOT_H

#include "model/snapshot-t.h"

/* pt_snapshot_free_overrides: frees what compiled error_response_overrides <o> own and empties
 * it (config/compile.c builds them). */
void pt_snapshot_free_overrides(struct pt_error_overrides *o);

/* pt_snapshot_ref / pt_snapshot_release: reference counting; the last release runs the
 * snapshot's on_free hook (what the control layer attached) and frees it, from whichever
 * thread it happens on. Releasing NULL does nothing. */
void pt_snapshot_ref(struct pt_snapshot *s);
void pt_snapshot_release(struct pt_snapshot *s);

/* pt_snapshot_find_listener: the listener of <s> on <port>, or NULL. */
struct pt_listener *pt_snapshot_find_listener(struct pt_snapshot *s, int port);

/* pt_snapshot_drop_listener: removes listener <i> of <s> (freeing what it owns), keeping the
 * order of the others. For the control layer, when a listener's port cannot be bound. */
void pt_snapshot_drop_listener(struct pt_snapshot *s, uint32_t i);

#endif
