/* Renders the {{ }} templates of a task's operator fields for one attempt:
 * a deep copy of the spec whose every string field (nested messages,
 * repeated strings, map values) went through bt_template_render. Walks the
 * protobuf-c descriptors, so a new operator field is rendered without code
 * here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/render.h"

static bt_err_t render_msg(ProtobufCMessage *m, const bt_template_ctx_t *ctx, char *err,
                           size_t errlen, int depth);

static bt_err_t render_str(char **slot, const bt_template_ctx_t *ctx, const char *field,
                           char *err, size_t errlen)
{
    char *out = NULL, why[256] = "";
    if (!*slot || !strstr(*slot, "{{"))
        return BT_OK;
    bt_err_t e = bt_template_render(*slot, ctx, &out, why, sizeof why);
    if (e != BT_OK) {
        snprintf(err, errlen, "%s: %s", field, why);
        return e;
    }
    if (*slot != protobuf_c_empty_string)
        free(*slot);
    *slot = out;
    return BT_OK;
}

static bt_err_t render_msg(ProtobufCMessage *m, const bt_template_ctx_t *ctx, char *err,
                           size_t errlen, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (depth > 8)
        return BT_OK;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *base = (char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(size_t *)((char *)m + f->quantifier_offset);
            void **arr = *(void ***)base;
            for (size_t k = 0; k < n; k++) {
                bt_err_t e = BT_OK;
                if (f->type == PROTOBUF_C_TYPE_STRING)
                    e = render_str((char **)&arr[k], ctx, f->name, err, errlen);
                else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                    e = render_msg(arr[k], ctx, err, errlen, depth + 1);
                if (e != BT_OK)
                    return e;
            }
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(uint32_t *)((char *)m + f->quantifier_offset);
            if (which != f->id)
                continue;
        }
        bt_err_t e = BT_OK;
        if (f->type == PROTOBUF_C_TYPE_STRING)
            e = render_str((char **)base, ctx, f->name, err, errlen);
        else if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(ProtobufCMessage **)base)
            e = render_msg(*(ProtobufCMessage **)base, ctx, err, errlen, depth + 1);
        if (e != BT_OK)
            return e;
    }
    return BT_OK;
}

bt_err_t task_spec_render(const ProtobufCBinaryData *in, const bt_template_ctx_t *ctx,
                          bt_task_spec_t **out, char *err, size_t errlen)
{
    bt_task_spec_t *copy = baton__v1__task_spec__unpack(NULL, in->len, in->data);
    if (!copy) {
        snprintf(err, errlen, "the stored task spec does not decode");
        return BT_E_NOMEM;
    }
    /* only the operator: id, pool and the like are not templates */
    for (unsigned i = 0; i < copy->base.descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &copy->base.descriptor->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || f->id != (unsigned)copy->operator_case)
            continue;
        ProtobufCMessage *op = *(ProtobufCMessage **)((char *)copy + f->offset);
        bt_err_t e = op ? render_msg(op, ctx, err, errlen, 0) : BT_OK;
        if (e != BT_OK) {
            baton__v1__task_spec__free_unpacked(copy, NULL);
            return e;
        }
    }
    *out = copy;
    return BT_OK;
}
