/* Private to src/sched: rendering a task spec's templates for one attempt. */
#ifndef BATON_SCHED_RENDER_H
#define BATON_SCHED_RENDER_H

#include "baton/template.h"
#include "baton/workflow.h"

/* The task spec packed in `in`, unpacked, with every template in its
 * operator rendered (free with baton__v1__task_spec__free_unpacked(*out,
 * NULL)). On failure err names the field and the reason. */
bt_err_t task_spec_render(const ProtobufCBinaryData *in, const bt_template_ctx_t *ctx,
                             bt_task_spec_t **out, char *err, size_t errlen);

#endif
